//! `tcpy`: runs one command on a tcpy host and prints every message it sends; and,
//! for handler developers, `tcpy new` and `tcpy build` (see [`project`]).

mod project;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::Value;
use tcpy_client::{
    Client, ClientError, DEFAULT_HOST, DEFAULT_PORT, Encoding, IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY, Object,
    Operation, RetryPolicy, TlsConfig, Turn, new_idempotency_key,
};
use tokio::sync::mpsc;

const EXAMPLES: &str = "\
Examples:
  tcpy add x=1 y=2                      {\"success\":true,\"solution\":3}
  tcpy echo name=ann tags='[1,2]'
  tcpy --params '{\"x\": 1, \"y\": 2}' add
  tcpy --talk tally start=10            then type n=5, n=2, ... and Ctrl-D
  tcpy --host a:7272,b:7272 --idempotency-key auto add x=1 y=2   fail over

Exit status: 0 on a success response, 1 on an error response, 2 when the host
cannot be reached or the exchange fails.

Writing handlers (each has its own --help):
  tcpy new NAME --lang rust|python|js [--dir DIR]   write a handler project, DIR/NAME
  tcpy build [DIR] [--out HANDLERS_DIR]             build it; with --out, deploy it there
To call a handler named `new` or `build`, put an option first: tcpy --port 7272 new";

/// Run a command on a tcpy host; print each message it sends as one JSON line.
#[derive(Debug, Parser)]
#[command(name = "tcpy", version, after_help = EXAMPLES)]
struct Args {
    /// The host to connect to, or several, comma-separated, to fail over between
    /// (`a:7272,b:7272`; an entry without a port has --port; IPv6 in brackets).
    #[arg(long, env = "TCPY_HOST", default_value = DEFAULT_HOST)]
    host: String,
    /// The port to connect to.
    #[arg(long, env = "TCPY_PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Seconds to wait for connecting, for sending, and for each message from the host.
    /// With --talk, waiting while stdin is open is not limited: the handler may be
    /// waiting for you.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    timeout: Duration,
    /// Send msgpack bodies, as tcpy 0.0.x clients did, instead of JSON.
    #[arg(long)]
    msgpack: bool,
    /// Connect over TLS, trusting host certificates signed by a CA in this PEM bundle.
    #[arg(long, value_name = "PEM", env = "TCPY_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// With --tls-ca: present this client certificate chain (PEM) to the host.
    #[arg(long, value_name = "PEM", requires_all = ["tls_ca", "tls_key"], env = "TCPY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert", env = "TCPY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// With --tls-ca: the name the host's certificate must carry [default: --host].
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// Authenticate with this token (hosts run with --auth-tokens ask for one).
    #[arg(long, env = "TCPY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The params as one JSON object; KEY=VALUE words are added to it.
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// Talk with the handler: send it each line typed on stdin (a JSON object, or
    /// KEY=VALUE words) until it answers; end of input (Ctrl-D) tells it you are done.
    #[arg(long)]
    talk: bool,
    /// With fail-over: the call is harmless to run twice, so send it again, to the next
    /// host, also when the connection fails after it was sent.
    #[arg(long, conflicts_with = "talk")]
    idempotent: bool,
    /// Send the request with this idempotency key (`auto`: a fresh one, shown if the
    /// call fails), so a host runs it at most once however often it is sent.
    #[arg(long, value_name = "KEY", conflicts_with = "talk", value_parser = parse_key)]
    idempotency_key: Option<String>,
    /// Fail over (or with one host, retry) for at most this many seconds in all
    /// [default with several hosts: 30].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    retry_for: Option<Duration>,
    /// The command to run.
    cmd: String,
    /// A param; VALUE is taken as JSON if it parses (x=1, ok=true, a list or object), else as
    /// a string (name=ann).
    #[arg(value_name = "KEY=VALUE")]
    words: Vec<String>,
}

/// `tcpy new …` and `tcpy build …` are the developer commands; anything else calls a
/// handler, with the same syntax as before they existed.
fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| OsString::from("tcpy"));
    let first = args.next();
    match first.as_ref().and_then(|first| first.to_str()) {
        Some("new") => project::main_new(args),
        Some("build") => project::main_build(args),
        _ => call(Args::parse_from(
            std::iter::once(program).chain(first).chain(args),
        )),
    }
}

/// Calls the handler `args` names; the exit status says how it answered.
#[tokio::main(flavor = "current_thread")]
async fn call(args: Args) -> ExitCode {
    match run(args).await {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::ErrorResponse) => ExitCode::from(1),
        Err(error) => {
            eprintln!("tcpy: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// How a request ended, when it reached its response.
enum Outcome {
    Success,
    ErrorResponse,
}

/// What the talk loop woke up for.
enum Event {
    Turn(Result<Turn, ClientError>),
    Line(Option<std::io::Result<String>>),
}

async fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut params = match &args.params {
        Some(json) => parse_object(json).context("--params must be a JSON object")?,
        None => Object::new(),
    };
    params.extend(parse_words(args.words.iter().map(String::as_str))?);
    let auto_key = add_key(&mut params, args.idempotency_key.as_deref())?;
    let hosts = parse_hosts(&args.host, args.port)?;
    let fails_over = hosts.len() > 1 || args.retry_for.is_some();
    let client = client(&args, &hosts)?;
    if fails_over && !args.talk {
        return one_shot(client, &args.cmd, params, args.idempotent, auto_key).await;
    }
    converse(client, &args.cmd, params, args.talk).await
}

/// Adds the `--idempotency-key` to `params`; returns it if `auto` made it.
fn add_key(params: &mut Object, given: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(given) = given else {
        return Ok(None);
    };
    let key = match given {
        "auto" => new_idempotency_key(),
        given => given.to_owned(),
    };
    if params
        .insert(IDEMPOTENCY_KEY.to_owned(), Value::String(key.clone()))
        .is_some()
    {
        bail!("`{IDEMPOTENCY_KEY}` is given twice");
    }
    Ok((given == "auto").then_some(key))
}

/// The client `args` ask for, of `hosts`: with several, one that fails over.
fn client(args: &Args, hosts: &[(String, u16)]) -> anyhow::Result<Client> {
    let encoding = if args.msgpack {
        Encoding::Msgpack
    } else {
        Encoding::Json
    };
    let mut client = match hosts {
        [(host, port)] => Client::new(host.clone(), *port),
        hosts => Client::with_addresses(hosts.iter().map(|(host, port)| address(host, *port)))?,
    };
    if let Some(total) = args.retry_for {
        client = client.with_retry(RetryPolicy {
            total,
            ..RetryPolicy::default()
        });
    }
    client = client.with_timeout(args.timeout).with_encoding(encoding);
    if let Some(ca) = &args.tls_ca {
        let own = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
        let mut tls = TlsConfig::from_pem_files(ca, own)?;
        if let Some(name) = &args.tls_server_name {
            tls = tls.with_server_name(name)?;
        }
        client = client.with_tls(tls);
    }
    if let Some(token) = &args.token {
        client = client.with_token(token);
    }
    Ok(client)
}

/// One request and its answer, failed over as the library does: the handler must
/// answer without talking first.
async fn one_shot(
    mut client: Client,
    cmd: &str,
    params: Object,
    idempotent: bool,
    auto_key: Option<String>,
) -> anyhow::Result<Outcome> {
    let answer = if idempotent {
        client.execute_idempotent(cmd, params).await
    } else {
        client.execute(cmd, params).await
    };
    let response = answer.inspect_err(|_| {
        if let Some(key) = auto_key {
            eprintln!("tcpy: idempotency key {key}: give it to --idempotency-key to send the request again");
        }
    })?;
    print(&response)?;
    Ok(outcome(&response))
}

/// The request as a conversation: every message of the handler is printed, and with
/// `talk`, each line of stdin is sent to it.
async fn converse(mut client: Client, cmd: &str, params: Object, talk: bool) -> anyhow::Result<Outcome> {
    let mut conversation = client.conversation(cmd, params).await?;
    let mut input = if talk {
        Some(read_stdin())
    } else {
        // Like a tcpy 0.0.x client, say nothing after the request: a handler that
        // waits for input learns at once that none will come.
        conversation.close_send().await?;
        None
    };
    loop {
        let event = match &mut input {
            None => Event::Turn(conversation.recv().await),
            // NB: `Conversation::recv` is cancel-safe, so a line winning the race
            // loses no message from the handler.
            Some(lines) => tokio::select! {
                turn = conversation.recv() => Event::Turn(turn),
                line = lines.recv() => Event::Line(line),
            },
        };
        match event {
            Event::Turn(Ok(Turn::Message(message))) => print(&message)?,
            Event::Turn(Ok(Turn::Response(response))) => {
                print(&response)?;
                return Ok(outcome(&response));
            }
            // The handler may be waiting for the user, who may take their time.
            Event::Turn(Err(ClientError::Timeout {
                operation: Operation::Recv,
                ..
            })) if input.is_some() => {}
            Event::Turn(Err(error)) => return Err(error.into()),
            Event::Line(Some(line)) => match parse_line(&line.context("cannot read stdin")?) {
                Ok(Some(message)) => conversation.send(message).await?,
                Ok(None) => {}
                // One mistyped line should not end the whole conversation.
                Err(error) => eprintln!("tcpy: line not sent: {error:#}"),
            },
            Event::Line(None) => {
                conversation.close_send().await?;
                input = None;
            }
        }
    }
}

fn outcome(response: &Object) -> Outcome {
    if response.get("error") == Some(&Value::Bool(true)) {
        Outcome::ErrorResponse
    } else {
        Outcome::Success
    }
}

/// Lines of stdin, read on a thread of their own: a blocking read cannot be
/// cancelled, and this thread must not keep the process alive once the response is in.
fn read_stdin() -> mpsc::Receiver<std::io::Result<String>> {
    let (lines, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines.blocking_send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn print(object: &Object) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, object).context("cannot write to stdout")?;
    writeln!(stdout).context("cannot write to stdout")
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

fn parse_key(text: &str) -> Result<String, String> {
    if (1..=MAX_IDEMPOTENCY_KEY).contains(&text.len()) {
        Ok(text.to_owned())
    } else {
        Err(format!("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} bytes"))
    }
}

/// `--host`: comma-separated `host[:port]` entries, IPv6 in brackets (`[::1]:7272`);
/// an entry without a port has `port`.
fn parse_hosts(hosts: &str, port: u16) -> anyhow::Result<Vec<(String, u16)>> {
    hosts
        .split(',')
        .map(|entry| parse_host(entry.trim(), port))
        .collect()
}

/// One `--host` entry; a bare IPv6 address (`::1`) is a host without a port.
fn parse_host(entry: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let (host, port) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest
                .split_once(']')
                .with_context(|| format!("--host `{entry}`: no `]`"))?;
            let port = (!after.is_empty())
                .then(|| after.strip_prefix(':'))
                .map(|port| port.with_context(|| format!("--host `{entry}`: `:PORT` follows the `]`")))
                .transpose()?;
            (host, port)
        }
        None => match entry.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (entry, None),
        },
    };
    if host.is_empty() {
        bail!("--host `{entry}`: no host");
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse()
            .with_context(|| format!("--host `{entry}`: `{port}` is not a port"))?,
    };
    Ok((host.to_owned(), port))
}

/// `host:port` as the library reads it, an IPv6 address in brackets.
fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn parse_object(json: &str) -> anyhow::Result<Object> {
    match serde_json::from_str(json)? {
        Value::Object(object) => Ok(object),
        _ => bail!("not an object"),
    }
}

/// A line typed during a conversation: a JSON object, or KEY=VALUE words; `None` for
/// a blank line.
fn parse_line(line: &str) -> anyhow::Result<Option<Object>> {
    let line = line.trim();
    if line.is_empty() {
        Ok(None)
    } else if line.starts_with('{') {
        parse_object(line).map(Some)
    } else {
        parse_words(line.split_whitespace()).map(Some)
    }
}

/// `KEY=VALUE` words as an object, each value JSON if it parses, else a string.
fn parse_words<'a>(words: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Object> {
    let mut object = Object::new();
    for word in words {
        let Some((key, value)) = word.split_once('=').filter(|(key, _)| !key.is_empty()) else {
            bail!("`{word}` is not KEY=VALUE");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        if object.insert(key.to_owned(), value).is_some() {
            bail!("`{key}` is given twice");
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_are_json_when_they_parse_and_strings_otherwise() {
        let object = parse_words(["x=1", "name=ann", "ok=true", "tags=[1,\"a\"]", "empty=", "eq=a=b"])
            .expect("valid words");
        assert_eq!(
            Value::Object(object),
            json!({"x": 1, "name": "ann", "ok": true, "tags": [1, "a"], "empty": "", "eq": "a=b"})
        );
    }

    #[test]
    fn words_need_a_key_and_no_repeats() {
        assert!(parse_words(["x"]).is_err());
        assert!(parse_words(["=1"]).is_err());
        assert!(parse_words(["x=1", "x=2"]).is_err());
    }

    #[test]
    fn lines_are_json_objects_or_words() {
        assert_eq!(parse_line("  ").expect("blank"), None);
        let json = parse_line(r#"{"n": 5}"#).expect("json").map(Value::Object);
        assert_eq!(json, Some(json!({"n": 5})));
        let words = parse_line("n=5 done=true").expect("words").map(Value::Object);
        assert_eq!(words, Some(json!({"n": 5, "done": true})));
        assert!(parse_line("[1]").is_err());
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn a_handler_named_like_a_developer_command_is_called_after_an_option() {
        let args = Args::try_parse_from(["tcpy", "--port", "9", "new", "x=1"]).expect("valid");
        assert_eq!(args.cmd, "new");
        let args = Args::try_parse_from(["tcpy", "--", "build"]).expect("valid");
        assert_eq!(args.cmd, "build");
    }

    #[test]
    fn hosts_are_comma_separated_with_or_without_ports() {
        let hosts = parse_hosts("a:1, b ,[::1]:3,[::2],::3,10.0.0.7", 7272).expect("valid");
        let expected = [
            ("a", 1),
            ("b", 7272),
            ("::1", 3),
            ("::2", 7272),
            ("::3", 7272),
            ("10.0.0.7", 7272),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(host, port)| (host.to_string(), *port))
            .collect();
        assert_eq!(hosts, expected);
        let addresses: Vec<_> = hosts.iter().map(|(host, port)| address(host, *port)).collect();
        assert_eq!(addresses[2..4], ["[::1]:3", "[::2]:7272"]);
        for bad in ["a:x", "a,", "[::1", "[::1]3", ":1", "a:70000"] {
            assert!(parse_hosts(bad, 7272).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_given_or_made() {
        let mut params = Object::new();
        assert_eq!(add_key(&mut params, Some("k-1")).expect("valid"), None);
        assert_eq!(params[IDEMPOTENCY_KEY], "k-1");
        let mut params = Object::new();
        let made = add_key(&mut params, Some("auto")).expect("valid").expect("made");
        assert_eq!(
            (made.len(), &params[IDEMPOTENCY_KEY]),
            (32, &Value::String(made.clone()))
        );
        assert!(add_key(&mut params, Some("k-2")).is_err(), "given twice");
        assert!(parse_key("").is_err());
        assert!(parse_key(&"k".repeat(MAX_IDEMPOTENCY_KEY + 1)).is_err());
    }

    #[test]
    fn fail_over_flags_parse_and_stay_out_of_conversations() {
        let args = Args::try_parse_from([
            "tcpy",
            "--host",
            "a:7272,b",
            "--idempotent",
            "--idempotency-key",
            "auto",
            "--retry-for",
            "2.5",
            "add",
        ])
        .expect("valid");
        assert!(args.idempotent);
        assert_eq!(args.idempotency_key.as_deref(), Some("auto"));
        assert_eq!(args.retry_for, Some(Duration::from_millis(2500)));
        assert!(Args::try_parse_from(["tcpy", "--talk", "--idempotent", "tally"]).is_err());
        assert!(Args::try_parse_from(["tcpy", "--talk", "--idempotency-key", "k", "tally"]).is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let args = Args::try_parse_from(["tcpy", "--port", "9", "--msgpack", "add", "x=1"]).expect("valid");
        assert_eq!((args.port, args.msgpack, args.cmd.as_str()), (9, true, "add"));
        assert_eq!(args.words, ["x=1"]);
    }
}
