//! `cargo xtask bench`: the criterion micro-benchmarks, an end-to-end tcpy-bench run
//! comparing the sandboxed `add` with `native_add` over the same host, the host's
//! memory per idle connection and per waiting conversation, a table of it all, and
//! that table written into docs/performance.md.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Workspace, wasmtime_serve};

mod keyvalue;

/// Where the generated part of docs/performance.md starts and ends.
const BEGIN: &str = "<!-- xtask bench: begin -->";
const END: &str = "<!-- xtask bench: end -->";
/// Connection counts of the end-to-end comparison.
const CONNECTIONS: [usize; 3] = [1, 32, 128];
/// Idle connections and waiting conversations the memory figures are taken at.
const IDLE_CONNECTIONS: usize = 1000;
const CONVERSATIONS: usize = 100;
/// Connections of the admin-port comparison, and how often its host is scraped (far
/// more often than Prometheus would, 15 s being usual).
const ADMIN_CONNECTIONS: usize = 32;
const SCRAPE_EVERY: Duration = Duration::from_millis(100);
/// Connections opening and closing at once in the handshake-rate runs.
const CHURN_CONNECTIONS: usize = 4;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Seconds each end-to-end run measures (after 1 s of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of the end-to-end runs; the table shows the median round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the criterion micro-benchmarks.
    #[arg(long)]
    no_micro: bool,
    /// Print the table only; leave docs/performance.md alone.
    #[arg(long)]
    no_write: bool,
    /// Measure only TLS against plaintext (and the handshake rate); print, write nothing.
    #[arg(long)]
    tls_only: bool,
    /// Measure only the admin port's cost (add with --admin off and on); print, write nothing.
    #[arg(long)]
    admin_only: bool,
    /// Measure only the key-value stores (`counter` against `add`, embedded and on
    /// Redis, and redis-benchmark); print, write nothing.
    #[arg(long)]
    kv_only: bool,
    /// Also measure `wasmtime serve` on a hello component with `wrk` at 32
    /// connections, the nearest peer (installs wasmtime-cli into target/tools first).
    #[arg(long)]
    wasmtime_serve: bool,
}

pub(crate) fn run(workspace: &Workspace, options: &Options) -> Result<()> {
    // Every prerequisite first: a missing tool must not end a run after its first hour.
    crate::system::ensure(&crate::system::BENCH_TOOLS)?;
    workspace.build_handlers()?;
    let mut build = workspace.cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "tcpy-host",
        "--package",
        "tcpy-bench",
        // The native baseline (`--native-baseline`) is only in builds for benchmarks.
        "--features",
        "tcpy-host/bench",
    ]);
    crate::run(build).context("release build of tcpy-host and tcpy-bench failed")?;

    // A directory of its own: target/handlers may hold more handlers, slower to load.
    let handlers = workspace.target.join("bench-handlers");
    let built = workspace.rust_built();
    workspace.copy_rust_handlers(&built, &handlers, &crate::EXAMPLES)?;
    let release = workspace.target.join("release");
    let (binary, bench) = (release.join("tcpy-host"), release.join("tcpy-bench"));
    if options.admin_only {
        let admin = admin_overhead(&binary, &bench, &handlers, options)?;
        println!("\n{}", render_admin(&admin, options));
        return Ok(());
    }
    if options.kv_only {
        let stores = keyvalue::measure(&binary, &bench, &handlers, options)?;
        println!("\n{}", keyvalue::render(&stores, options));
        return Ok(());
    }
    if options.tls_only {
        let tls = tls_overhead(workspace, &binary, &bench, &handlers, options)?;
        println!("\n{}", render_tls(&tls, options));
        return Ok(());
    }
    // Only the full run takes the micro-benchmarks: the `--*-only` runs are quick looks.
    let micro = if options.no_micro {
        Vec::new()
    } else {
        let mut bench = workspace.cargo();
        bench.args(["bench", "--package", "tcpy-bench", "--benches"]);
        crate::run(bench).context("the criterion benchmarks failed")?;
        read_criterion(&workspace.target.join("criterion"))?
    };

    let mut host = Host::start(&binary, &handlers, &[])?;
    let end_to_end = end_to_end(&bench, host.addr, options)?;
    let memory = memory(&host).context("memory measurement failed")?;
    host.stop();
    let admin = admin_overhead(&binary, &bench, &handlers, options)?;
    let tls = tls_overhead(workspace, &binary, &bench, &handlers, options)?;
    let stores = keyvalue::measure(&binary, &bench, &handlers, options)?;
    let peer = if options.wasmtime_serve {
        wasmtime_serve::measure(workspace, options.rounds, options.seconds)?
    } else {
        Vec::new()
    };

    let mut table = render(&micro, &end_to_end, &memory, &peer, options);
    table.push('\n');
    table.push_str(&render_admin(&admin, options));
    table.push('\n');
    table.push_str(&render_tls(&tls, options));
    table.push('\n');
    table.push_str(&keyvalue::render(&stores, options));
    println!("\n{table}");
    if !options.no_write {
        let doc = workspace.root.join("docs/performance.md");
        write_between_markers(&doc, &table)?;
        eprintln!("updated {}", workspace.relative(&doc).display());
    }
    Ok(())
}

/// One criterion benchmark: its id and the median of its samples, in nanoseconds.
struct Micro {
    id: String,
    median_ns: f64,
    low_ns: f64,
    high_ns: f64,
}

/// Reads each benchmark's `new/estimates.json` under criterion's output directory.
fn read_criterion(dir: &Path) -> Result<Vec<Micro>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir()
                && path
                    .file_name()
                    .is_some_and(|name| name != "base" && name != "change")
            {
                pending.push(path);
            } else if path.ends_with("new/estimates.json") {
                found.push(path);
            }
        }
    }
    let mut micro = Vec::new();
    for estimates in found {
        let new = estimates.parent().context("estimates.json has a directory")?;
        let read = |name: &str| -> Result<Value> {
            let path = new.join(name);
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
        };
        let (benchmark, estimates) = (read("benchmark.json")?, read("estimates.json")?);
        let number = |value: &Value| value.as_f64().unwrap_or(f64::NAN);
        micro.push(Micro {
            id: benchmark["full_id"].as_str().unwrap_or("?").to_owned(),
            median_ns: number(&estimates["median"]["point_estimate"]),
            low_ns: number(&estimates["median"]["confidence_interval"]["lower_bound"]),
            high_ns: number(&estimates["median"]["confidence_interval"]["upper_bound"]),
        });
    }
    micro.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(micro)
}

/// A release `tcpy-host` with the native baseline, on a free loopback port.
struct Host {
    child: Child,
    addr: SocketAddr,
    /// Its `--data-dir`, removed when it stops.
    data: PathBuf,
}

impl Host {
    fn start(binary: &Path, handlers: &Path, extra: &[&str]) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data = std::env::temp_dir().join(format!("tcpy-bench-data-{}-{port}", std::process::id()));
        let child = Command::new(binary)
            .args(extra)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--native-baseline",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg("--handlers")
            .arg(handlers)
            // Logging every request would be part of what is measured.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut host = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(host.addr).is_err() {
            if Instant::now() > deadline || host.child.try_wait()?.is_some() {
                host.stop();
                bail!("the host did not start listening on {}", host.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(host)
    }

    /// The host's resident memory, in KiB.
    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One end-to-end measurement.
struct Run {
    cmd: &'static str,
    connections: usize,
    req_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Sandboxed and native `add` at each connection count, interleaved, `rounds` times.
fn end_to_end(bench: &Path, addr: SocketAddr, options: &Options) -> Result<Vec<Vec<Run>>> {
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        let mut runs = Vec::new();
        for connections in CONNECTIONS {
            for cmd in ["add", "native_add"] {
                eprintln!("round {round}: {cmd} over {connections} connection(s)…");
                runs.push(measure(bench, addr, cmd, connections, options)?);
            }
        }
        rounds.push(runs);
    }
    Ok(rounds)
}

/// One tcpy-bench run of `cmd` (an `add`, or `counter`) over `connections` connections.
fn measure(
    bench: &Path,
    addr: SocketAddr,
    cmd: &'static str,
    connections: usize,
    options: &Options,
) -> Result<Run> {
    measure_with(bench, addr, cmd, connections, options, &[])
}

/// [`measure`] with more tcpy-bench options (`--tls-ca`, `--churn`).
fn measure_with(
    bench: &Path,
    addr: SocketAddr,
    cmd: &'static str,
    connections: usize,
    options: &Options,
    extra: &[&str],
) -> Result<Run> {
    // `counter` counts in one key, so its answers differ: only their name is checked.
    let (params, expect): (&[&str], &str) = match cmd {
        "counter" => (&["name=bench"], r#"{"success": true, "name": "bench"}"#),
        _ => (&["x=1", "y=2"], r#"{"success": true, "solution": 3}"#),
    };
    let output = Command::new(bench)
        .args(extra)
        .arg(cmd)
        .args(params)
        .args(["--expect", expect])
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--duration", &format!("{}s", options.seconds), "--warmup", "1s"])
        .args(["--json", "--quiet"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", bench.display()))?;
    let report: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("tcpy-bench printed no report (exit {})", output.status))?;
    if !output.status.success() {
        bail!("{cmd} over {connections} connection(s) had wrong or failed answers: {report}");
    }
    let number = |value: &Value| value.as_f64().unwrap_or(f64::NAN);
    Ok(Run {
        cmd,
        connections,
        req_per_s: number(&report["req_per_s"]),
        p50_us: number(&report["latency"]["p50_us"]),
        p99_us: number(&report["latency"]["p99_us"]),
    })
}

/// `add` at [`ADMIN_CONNECTIONS`] on a host without the admin port and on one with it,
/// scraped every [`SCRAPE_EVERY`], interleaved, `rounds` times: (off, on) req/s.
fn admin_overhead(
    binary: &Path,
    bench: &Path,
    handlers: &Path,
    options: &Options,
) -> Result<Vec<(f64, f64)>> {
    let off = Host::start(binary, handlers, &[])?;
    let admin_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let on = Host::start(binary, handlers, &["--admin", &admin.to_string()])?;
    let scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let scraper = {
        let scraping = std::sync::Arc::clone(&scraping);
        std::thread::spawn(move || -> Result<usize> {
            let mut scrapes = 0;
            while scraping.load(std::sync::atomic::Ordering::Relaxed) {
                let mut stream = TcpStream::connect(admin).context("the admin port is up")?;
                stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
                let mut response = String::new();
                std::io::Read::read_to_string(&mut stream, &mut response)?;
                anyhow::ensure!(
                    response.starts_with("HTTP/1.1 200"),
                    "a scrape failed: {response}"
                );
                scrapes += 1;
                std::thread::sleep(SCRAPE_EVERY);
            }
            Ok(scrapes)
        })
    };
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        eprintln!("round {round}: add over {ADMIN_CONNECTIONS} connections, admin port off, then on…");
        let without = measure(bench, off.addr, "add", ADMIN_CONNECTIONS, options)?;
        let with = measure(bench, on.addr, "add", ADMIN_CONNECTIONS, options)?;
        rounds.push((without.req_per_s, with.req_per_s));
    }
    scraping.store(false, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper
        .join()
        .map_err(|_| anyhow::anyhow!("the scraper panicked"))??;
    eprintln!("{scrapes} scrapes of /metrics during the runs");
    Ok(rounds)
}

/// TLS against plaintext: `add` over [`ADMIN_CONNECTIONS`] persistent connections,
/// and one request per new connection over [`CHURN_CONNECTIONS`] (the handshake rate),
/// interleaved, `rounds` times.
struct TlsRound {
    plain: f64,
    tls: f64,
    plain_connections: f64,
    tls_handshakes: f64,
}

fn tls_overhead(
    workspace: &Workspace,
    binary: &Path,
    bench: &Path,
    handlers: &Path,
    options: &Options,
) -> Result<Vec<TlsRound>> {
    let dir = workspace.target.join("bench-tls");
    let (ca, cert, key) = make_certificates(&dir)?;
    let plain = Host::start(binary, handlers, &[])?;
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let tls = Host::start(binary, handlers, &["--tls-cert", &cert, "--tls-key", &key])?;
    let ca = ca.display().to_string();
    let secure = ["--tls-ca", ca.as_str()];
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        eprintln!(
            "round {round}: add over {ADMIN_CONNECTIONS} connections, plaintext then TLS; then one request per connection…"
        );
        let plain_run = measure(bench, plain.addr, "add", ADMIN_CONNECTIONS, options)?;
        let tls_run = measure_with(bench, tls.addr, "add", ADMIN_CONNECTIONS, options, &secure)?;
        let plain_churn = measure_with(bench, plain.addr, "add", CHURN_CONNECTIONS, options, &["--churn"])?;
        let tls_churn = measure_with(
            bench,
            tls.addr,
            "add",
            CHURN_CONNECTIONS,
            options,
            &["--churn", secure[0], secure[1]],
        )?;
        rounds.push(TlsRound {
            plain: plain_run.req_per_s,
            tls: tls_run.req_per_s,
            plain_connections: plain_churn.req_per_s,
            tls_handshakes: tls_churn.req_per_s,
        });
    }
    Ok(rounds)
}

/// A CA and a certificate for `localhost` signed by it, written into `dir`:
/// (CA, certificate, key) paths.
fn make_certificates(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "tcpy bench CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// The TLS comparison as a table.
fn render_tls(rounds: &[TlsRound], options: &Options) -> String {
    let mut out = format!(
        "TLS (rustls, ring, TLS 1.3, the host's default) against plaintext, {} s per run, interleaved: `add` over \
         {ADMIN_CONNECTIONS} persistent connections, and one `add` per new connection over {CHURN_CONNECTIONS} \
         connections at a time (connection set-up; with TLS, the handshake rate):\n\n\
         | round | plaintext req/s | TLS req/s | TLS / plaintext | new connections/s | TLS handshakes/s |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        options.seconds
    );
    let mut ratios = Vec::new();
    for (index, round) in rounds.iter().enumerate() {
        ratios.push(round.tls / round.plain);
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.1} % | {:.0} | {:.0} |\n",
            index + 1,
            round.plain,
            round.tls,
            100.0 * round.tls / round.plain,
            round.plain_connections,
            round.tls_handshakes
        ));
    }
    ratios.sort_by(f64::total_cmp);
    if let Some(median) = ratios.get(ratios.len() / 2) {
        out.push_str(&format!(
            "\nMedian TLS / plaintext: {:.1} % (target: at least 80 %).\n",
            100.0 * median
        ));
    }
    out
}

/// Resident memory per idle connection and per conversation waiting in `recv()`.
struct Memory {
    idle_kib: f64,
    conversation_kib: f64,
}

fn memory(host: &Host) -> Result<Memory> {
    let settle = || std::thread::sleep(Duration::from_millis(300));
    let connect = || -> Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect(host.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(BufReader::new(stream))
    };
    let round_trip = |conn: &mut BufReader<TcpStream>, line: &str| -> Result<String> {
        conn.get_mut().write_all(line.as_bytes())?;
        let mut answer = String::new();
        conn.read_line(&mut answer)?;
        Ok(answer)
    };

    settle();
    let before = host.rss_kib()?;
    // Idle: each connection has served one request (so its buffers exist) and waits.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let mut conn = connect()?;
        let answer = round_trip(&mut conn, "{\"cmd\":\"native_echo\"}\n")?;
        anyhow::ensure!(answer.contains("\"success\":true"), "unexpected answer {answer}");
        idle.push(conn);
    }
    settle();
    let with_idle = host.rss_kib()?;
    drop(idle);
    settle();

    let before_conversations = host.rss_kib()?;
    // Conversations: `tally` has started and waits in recv() for the client's numbers.
    let mut waiting = Vec::with_capacity(CONVERSATIONS);
    for _ in 0..CONVERSATIONS {
        let mut conn = connect()?;
        let answer = round_trip(&mut conn, "{\"cmd\":\"tally\"}\n{\"n\":1}\n")?;
        anyhow::ensure!(answer.contains("total"), "unexpected answer {answer}");
        waiting.push(conn);
    }
    settle();
    let with_conversations = host.rss_kib()?;
    drop(waiting);

    let per = |after: u64, before: u64, count: usize| after.saturating_sub(before) as f64 / count as f64;
    Ok(Memory {
        idle_kib: per(with_idle, before, IDLE_CONNECTIONS),
        conversation_kib: per(with_conversations, before_conversations, CONVERSATIONS),
    })
}

fn render(
    micro: &[Micro],
    rounds: &[Vec<Run>],
    memory: &Memory,
    peer: &[wasmtime_serve::Run],
    options: &Options,
) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(
        &mut out,
        format!("Measured at commit {} on {}.", commit(), machine()),
    );
    line(&mut out, String::new());
    if !micro.is_empty() {
        line(
            &mut out,
            "In-process (criterion; median of the samples, with its 95 % interval):".into(),
        );
        line(&mut out, String::new());
        line(&mut out, "| benchmark | median | 95 % interval |".into());
        line(&mut out, "|---|---:|---:|".into());
        for bench in micro {
            line(
                &mut out,
                format!(
                    "| `{}` | {} | {} – {} |",
                    bench.id,
                    time(bench.median_ns),
                    time(bench.low_ns),
                    time(bench.high_ns)
                ),
            );
        }
        line(&mut out, String::new());
    }
    line(
        &mut out,
        format!(
            "End to end (tcpy-bench, frame/JSON, pipelining depth 1, {} s per run after 1 s warm-up; \
             median of {} interleaved rounds, with the range of the rounds):",
            options.seconds, options.rounds
        ),
    );
    line(&mut out, String::new());
    line(
        &mut out,
        "| command | connections | req/s (median) | range | p50 | p99 | sandboxed / native |".into(),
    );
    line(&mut out, "|---|---:|---:|---:|---:|---:|---:|".into());
    let mut medians: BTreeMap<(usize, &str), f64> = BTreeMap::new();
    // Each command's median run at the connection count where its throughput peaks.
    let mut peaks: BTreeMap<&str, (usize, &Run)> = BTreeMap::new();
    for connections in CONNECTIONS {
        for cmd in ["add", "native_add"] {
            let mut runs: Vec<&Run> = rounds
                .iter()
                .flatten()
                .filter(|run| run.cmd == cmd && run.connections == connections)
                .collect();
            runs.sort_by(|a, b| a.req_per_s.total_cmp(&b.req_per_s));
            let (Some(low), Some(high)) = (runs.first(), runs.last()) else {
                continue;
            };
            let median = runs[runs.len() / 2];
            medians.insert((connections, cmd), median.req_per_s);
            let peak = peaks.entry(cmd).or_insert((connections, median));
            if median.req_per_s > peak.1.req_per_s {
                *peak = (connections, median);
            }
            let ratio = match (cmd, medians.get(&(connections, "add"))) {
                ("native_add", Some(add)) => format!("{:.0} %", 100.0 * add / median.req_per_s),
                _ => String::new(),
            };
            line(
                &mut out,
                format!(
                    "| `{cmd}` | {connections} | {:.0} | {:.0} – {:.0} | {:.1} µs | {:.1} µs | {ratio} |",
                    median.req_per_s, low.req_per_s, high.req_per_s, median.p50_us, median.p99_us
                ),
            );
        }
    }
    line(&mut out, String::new());
    let peaks: Vec<String> = peaks
        .iter()
        .map(|(cmd, (connections, run))| {
            format!(
                "`{cmd}` at {connections} connections (p50 {:.1} µs, p99 {:.1} µs)",
                run.p50_us, run.p99_us
            )
        })
        .collect();
    if !peaks.is_empty() {
        line(
            &mut out,
            format!("Throughput peaks for {}.", peaks.join(" and for ")),
        );
        line(&mut out, String::new());
    }
    line(
        &mut out,
        format!(
            "Host memory (resident, release build): {:.1} KiB per idle connection ({IDLE_CONNECTIONS} open), \
             {:.1} KiB per conversation waiting in `recv()` ({CONVERSATIONS} `tally` requests).",
            memory.idle_kib, memory.conversation_kib
        ),
    );
    let mut peer: Vec<&wasmtime_serve::Run> = peer.iter().collect();
    peer.sort_by(|a, b| a.req_per_s.total_cmp(&b.req_per_s));
    if let (Some(low), Some(high)) = (peer.first(), peer.last()) {
        let median = peer[peer.len() / 2];
        let connections = wasmtime_serve::CONNECTIONS;
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "The nearest peer, after the runs above: `wasmtime serve` {} on `bench/hello-http` (the same \
                 JSON answer over HTTP/1.1 keep-alive), `wrk -t1 -c{connections}`, {} s per run, median of {} rounds:",
                wasmtime_serve::WASMTIME_VERSION,
                options.seconds,
                peer.len()
            ),
        );
        line(&mut out, String::new());
        line(
            &mut out,
            "| server | connections | req/s (median) | range | p50 | p99 | tcpy `add` / this |".into(),
        );
        line(&mut out, "|---|---:|---:|---:|---:|---:|---:|".into());
        let ratio = medians
            .get(&(connections, "add"))
            .map_or(String::new(), |add| format!("{:.2}×", add / median.req_per_s));
        line(
            &mut out,
            format!(
                "| `wasmtime serve` | {connections} | {:.0} | {:.0} – {:.0} | {:.1} µs | {:.1} µs | {ratio} |",
                median.req_per_s, low.req_per_s, high.req_per_s, median.p50_us, median.p99_us
            ),
        );
    }
    out
}

/// The admin-port comparison as a table: each round, and the median ratio.
fn render_admin(rounds: &[(f64, f64)], options: &Options) -> String {
    let mut out = format!(
        "The admin port's cost: `add` over {ADMIN_CONNECTIONS} connections on a host without `--admin` and on \
         one with it, `/metrics` scraped every {} ms, {} s per run, interleaved:\n\n\
         | round | `--admin` off, req/s | on + scraped, req/s | on / off |\n|---:|---:|---:|---:|\n",
        SCRAPE_EVERY.as_millis(),
        options.seconds
    );
    let mut ratios = Vec::new();
    for (round, (off, on)) in rounds.iter().enumerate() {
        ratios.push(on / off);
        out.push_str(&format!(
            "| {} | {off:.0} | {on:.0} | {:.1} % |\n",
            round + 1,
            100.0 * on / off
        ));
    }
    ratios.sort_by(f64::total_cmp);
    if let Some(median) = ratios.get(ratios.len() / 2) {
        out.push_str(&format!(
            "\nMedian on / off: {:.1} % (target: within 3 %).\n",
            100.0 * median
        ));
    }
    out
}

fn time(ns: f64) -> String {
    if ns < 1000.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{:.2} µs", ns / 1000.0)
    }
}

/// The commit measured, marked when the tree had uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let hash = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("`{hash}` (with uncommitted changes)"),
        _ => format!("`{hash}`"),
    }
}

/// Cores, CPU model and kernel, from /proc.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{cores} cores ({cpu}), Linux {kernel}")
}

/// Replaces what lies between the markers in `doc` with `table`.
fn write_between_markers(doc: &Path, table: &str) -> Result<()> {
    let text = std::fs::read_to_string(doc).with_context(|| format!("cannot read {}", doc.display()))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{} lacks the markers {BEGIN} … {END}", doc.display());
    };
    anyhow::ensure!(
        begin < end,
        "{} has its markers in the wrong order",
        doc.display()
    );
    let updated = format!("{}{BEGIN}\n{table}{}", &text[..begin], &text[end..]);
    std::fs::write(doc, updated).with_context(|| format!("cannot write {}", doc.display()))
}
