//! The key-value stores' cost: the `counter` handler (one durable increment a request)
//! against `add` at [`CONNECTIONS`] connections, on a host with the embedded store and
//! on one with `--redis`, interleaved; and `redis-benchmark -t incr` on that same
//! Redis, as the reference of what Redis itself does.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Host, Options};

/// Connections of the comparison (the figure).
const CONNECTIONS: usize = 32;
/// Requests of the redis-benchmark reference run.
const REDIS_REQUESTS: usize = 200_000;

/// One round on one backend: (add, counter) req/s.
pub(super) struct Round {
    add: f64,
    counter: f64,
}

/// What the stores' benchmark found.
pub(super) struct Stores {
    embedded: Vec<Round>,
    redis: Vec<Round>,
    /// redis-benchmark's INCR requests per second at [`CONNECTIONS`] connections.
    redis_incr: f64,
}

/// A `redis-server` on a free loopback port, in memory only (as redis-benchmark's
/// reference figure is taken); stopped when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server")?;
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || server.child.try_wait()?.is_some() {
                bail!("redis-server did not start listening on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // NB: a connect alone may beat the server's loading; one real command proves it.
        server.incr_rate(1000)?;
        Ok(server)
    }

    /// `redis-benchmark -t incr` over [`CONNECTIONS`] connections: requests per second.
    fn incr_rate(&self, requests: usize) -> Result<f64> {
        let output = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-t",
                "incr",
                "-c",
                &CONNECTIONS.to_string(),
                "-n",
                &requests.to_string(),
            ])
            .args(["--csv"])
            .output()
            .context("cannot run redis-benchmark")?;
        let text = String::from_utf8_lossy(&output.stdout);
        // --csv: a header line, then `"INCR","123456.79",…`.
        text.lines()
            .find(|line| line.starts_with("\"INCR\""))
            .and_then(|line| line.split(',').nth(1))
            .and_then(|rate| rate.trim_matches('"').parse().ok())
            .with_context(|| format!("redis-benchmark printed no INCR rate: {text}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `add` then `counter` on `host`, `rounds` times.
fn rounds(bench: &Path, host: &Host, backend: &str, options: &Options) -> Result<Vec<Round>> {
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        eprintln!("round {round}: add then counter over {CONNECTIONS} connections, {backend} store…");
        let add = super::measure(bench, host.addr, "add", CONNECTIONS, options)?;
        let counter = super::measure(bench, host.addr, "counter", CONNECTIONS, options)?;
        rounds.push(Round {
            add: add.req_per_s,
            counter: counter.req_per_s,
        });
    }
    Ok(rounds)
}

/// Measures both backends and the Redis reference.
pub(super) fn measure(binary: &Path, bench: &Path, handlers: &Path, options: &Options) -> Result<Stores> {
    let embedded = {
        let host = Host::start(binary, handlers, &[])?;
        rounds(bench, &host, "embedded", options)?
    };
    let redis = RedisServer::start()?;
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let on_redis = {
        let host = Host::start(binary, handlers, &["--redis", &url])?;
        rounds(bench, &host, "Redis", options)?
    };
    eprintln!("redis-benchmark -t incr over {CONNECTIONS} connections…");
    let redis_incr = redis.incr_rate(REDIS_REQUESTS)?;
    Ok(Stores {
        embedded,
        redis: on_redis,
        redis_incr,
    })
}

/// The comparison as a table: each round on each backend, and the median ratios.
pub(super) fn render(stores: &Stores, options: &Options) -> String {
    let mut out = format!(
        "The key-value stores' cost: `counter` (one durable increment of one key a request) against `add` \
         over {CONNECTIONS} connections, {} s per run, `add` and `counter` interleaved; the embedded store \
         commits to disk (fsync) before it answers, the Redis is in memory (no AOF):\n\n\
         | store | round | `add`, req/s | `counter`, req/s | counter / add |\n|---|---:|---:|---:|---:|\n",
        options.seconds
    );
    let mut medians = Vec::new();
    for (name, rounds) in [("embedded (redb)", &stores.embedded), ("Redis", &stores.redis)] {
        let mut ratios = Vec::new();
        for (round, Round { add, counter }) in rounds.iter().enumerate() {
            ratios.push(counter / add);
            out.push_str(&format!(
                "| {name} | {} | {add:.0} | {counter:.0} | {:.2}× |\n",
                round + 1,
                counter / add
            ));
        }
        ratios.sort_by(f64::total_cmp);
        if let Some(median) = ratios.get(ratios.len() / 2) {
            medians.push(format!("{name} {median:.2}×"));
        }
    }
    out.push_str(&format!(
        "\nMedian counter / add: {} (target: ≥ 0.7× on both). `redis-benchmark -t incr -c {CONNECTIONS}` on the \
         same Redis: {:.0} req/s.\n",
        medians.join(", "),
        stores.redis_incr
    ));
    out
}
