//! Command-line options of `tcpy-bench`, and how they become a [`Plan`].

use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::Value;
use tcpy_protocol::{Encoding, Framing, Object};

use crate::Plan;
use crate::plan::{MAX_DURATION, Stop, success};

/// Command-line options of `tcpy-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "tcpy-bench",
    version,
    about = "Load a tcpy host on this machine with one request, over and over; report req/s and latency",
    after_help = "Exits with 2 if any answer was wrong, an error response, or missing."
)]
pub struct Args {
    /// The command to run.
    #[arg(default_value = "add")]
    pub cmd: String,
    /// Params as KEY=VALUE words, each value JSON if it parses, else a string.
    #[arg(value_name = "KEY=VALUE")]
    pub words: Vec<String>,
    /// Params as one JSON object; KEY=VALUE words are added to it.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Host to load; must resolve to a loopback address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Its port.
    #[arg(long, default_value_t = tcpy_protocol::DEFAULT_PORT)]
    pub port: u16,
    /// Connections, each sending requests one after another.
    #[arg(short, long, default_value_t = 1)]
    pub connections: usize,
    /// Requests each connection keeps in flight (pipelining depth).
    #[arg(short = 'P', long, default_value_t = 1)]
    pub pipeline: usize,
    /// How long to measure (e.g. 10s, 500ms) [default: 10s, or up to an hour with --requests].
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many measured requests.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Send for this long before measuring (its answers are checked, not reported).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Frame mode (4-byte length + body) or line mode (one JSON object per line).
    #[arg(long, value_enum, default_value_t = FramingArg::Frame)]
    pub framing: FramingArg,
    /// Body encoding in frame mode.
    #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
    pub encoding: EncodingArg,
    /// A JSON object every answer must contain [default: {"success": true}].
    #[arg(long, value_name = "JSON")]
    pub expect: Option<String>,
    /// Seconds to wait for an answer before giving the connection up.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Connect over TLS, trusting host certificates signed by the CA in this PEM file
    /// (the host's certificate must name `localhost`).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// One request per connection: close and reconnect after each answer, to measure
    /// connection set-up (with --tls-ca, TLS handshakes per second).
    #[arg(long)]
    pub churn: bool,
    /// Threads of the load generator's async runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// `--framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FramingArg {
    /// 4-byte big-endian length, then the body.
    Frame,
    /// Newline-delimited JSON.
    Line,
}

/// `--encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncodingArg {
    /// JSON text.
    Json,
    /// A msgpack map.
    Msgpack,
}

/// Why the options do not make a plan.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// `--params` or `--expect` is not a JSON object.
    #[error("{what} must be a JSON object: {reason}")]
    NotAnObject {
        /// Which option.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A word is not `KEY=VALUE`.
    #[error("`{0}` is not KEY=VALUE")]
    NotKeyValue(String),
    /// The host name does not resolve to a loopback address.
    #[error("`{host}` does not resolve to a loopback address (tcpy-bench loads hosts on this machine only)")]
    NotLoopback {
        /// The host name.
        host: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Args {
    /// Resolves the host and builds the plan these options describe.
    ///
    /// # Errors
    /// An [`ArgsError`] if the params or expectation are not objects, or the host does
    /// not resolve to a loopback address.
    pub async fn plan(&self) -> Result<Plan, ArgsError> {
        let mut params = match &self.params {
            Some(json) => parse_object("--params", json)?,
            None => Object::new(),
        };
        for word in &self.words {
            let Some((key, value)) = word.split_once('=').filter(|(key, _)| !key.is_empty()) else {
                return Err(ArgsError::NotKeyValue(word.clone()));
            };
            let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
            params.insert(key.to_owned(), value);
        }
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|source| ArgsError::Resolve {
                host: self.host.clone(),
                source,
            })?
            .find(|addr| addr.ip().is_loopback())
            .ok_or_else(|| ArgsError::NotLoopback {
                host: self.host.clone(),
            })?;
        let duration = match (self.duration, self.requests) {
            (Some(duration), _) => duration,
            (None, Some(_)) => MAX_DURATION,
            (None, None) => Duration::from_secs(10),
        };
        let mut plan = Plan::new(addr, self.cmd.clone(), params);
        plan.connections = self.connections;
        plan.depth = self.pipeline;
        plan.stop = Stop {
            duration,
            requests: self.requests,
        };
        plan.warmup = self.warmup;
        plan.framing = match self.framing {
            FramingArg::Frame => Framing::Frame,
            FramingArg::Line => Framing::Line,
        };
        plan.encoding = match self.encoding {
            EncodingArg::Json => Encoding::Json,
            EncodingArg::Msgpack => Encoding::Msgpack,
        };
        plan.expect = match &self.expect {
            Some(json) => parse_object("--expect", json)?,
            None => success(),
        };
        plan.response_timeout = self.timeout;
        plan.tls_ca = self.tls_ca.clone();
        plan.churn = self.churn;
        plan.progress = !self.quiet;
        Ok(plan)
    }
}

fn parse_object(what: &'static str, json: &str) -> Result<Object, ArgsError> {
    match serde_json::from_str(json) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ArgsError::NotAnObject {
            what,
            reason: "not an object".to_owned(),
        }),
        Err(error) => Err(ArgsError::NotAnObject {
            what,
            reason: error.to_string(),
        }),
    }
}

/// Parses a duration like `500ms`, `10s` or `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|error| format!("`{text}` is not a duration like 10s or 500ms: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn options_become_a_plan() {
        let args = Args::parse_from([
            "tcpy-bench",
            "add",
            "x=1",
            "y=2",
            "-c",
            "32",
            "-P",
            "4",
            "-n",
            "1000",
            "--framing",
            "frame",
            "--encoding",
            "msgpack",
            "--expect",
            r#"{"solution": 3}"#,
        ]);
        let plan = args.plan().await.expect("a plan");
        assert_eq!(
            Value::Object(plan.request()),
            json!({"cmd": "add", "x": 1, "y": 2})
        );
        assert_eq!((plan.connections, plan.depth), (32, 4));
        assert_eq!(plan.stop.requests, Some(1000));
        assert_eq!(plan.encoding, Encoding::Msgpack);
        assert_eq!(Value::Object(plan.expect), json!({"solution": 3}));
        assert!(plan.addr.ip().is_loopback());
    }

    #[tokio::test]
    async fn bad_options_are_refused() {
        let args = Args::parse_from(["tcpy-bench", "add", "--params", "[1]"]);
        assert!(matches!(args.plan().await, Err(ArgsError::NotAnObject { .. })));
        let args = Args::parse_from(["tcpy-bench", "add", "oops"]);
        assert!(matches!(args.plan().await, Err(ArgsError::NotKeyValue(_))));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2").is_err(), "a unit is needed");
    }
}
