//! Hot swap and start-up, end to end over TCP against an in-process host:
//!
//! - `swap latency`: from the rename of a new version of a handler over the old one
//!   to the first response that comes from it, p50 and max over 50 swaps between two
//!   versions, with the compile cache (swapping back to a version loads it) and without;
//! - `start-up`: a host with 20 handlers (distinct components) from start to its first
//!   answered request, with a cold and with a warm compile cache.
//!
//! `cargo bench --bench hot_swap` measures; under `cargo test` (no `--bench` flag) it
//! runs a two-swap smoke version. Needs `cargo xtask build-handlers` first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_host::Server;
use tcpy_host::runtime::{Limits, Runtime};
use tcpy_host::server::Shutdown;
use tcpy_host::watcher::Watcher;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn handler(name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("handlers").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {}: {error}; run `cargo xtask build-handlers`",
            path.display()
        )
    })
}

/// `component` with a custom section appended: a distinct component (another content
/// hash, so another compile and cache entry) that behaves the same.
fn variant(component: &[u8], n: u8) -> Vec<u8> {
    let name = b"tcpy-variant";
    let mut bytes = component.to_vec();
    bytes.extend([0, (1 + name.len() + 1) as u8, name.len() as u8]);
    bytes.extend(name);
    bytes.push(n);
    bytes
}

/// A line-mode connection.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Self {
        Self(BufReader::new(TcpStream::connect(addr).await.expect("connects")))
    }

    async fn ask(&mut self, request: &Value) -> Value {
        let mut line = request.to_string();
        line.push('\n');
        self.0.get_mut().write_all(line.as_bytes()).await.expect("writes");
        let mut answer = String::new();
        self.0.read_line(&mut answer).await.expect("reads");
        serde_json::from_str(&answer).expect("a JSON answer")
    }
}

/// Starts a host on `dir`; returns its address, the host and its watcher.
async fn start(dir: &Path, cache: Option<&Path>) -> (std::net::SocketAddr, Arc<Server>, Watcher) {
    let mut runtime = Runtime::new(Limits::default()).expect("runtime");
    if let Some(cache) = cache {
        runtime = runtime.with_compile_cache(cache).expect("cache");
    }
    let host = Arc::new(Server::with_runtime(runtime, dir).await.expect("host"));
    let watcher = Watcher::start(Arc::clone(&host)).expect("watcher");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(tcpy_host::server::run(
        listener,
        Arc::clone(&host),
        std::future::pending(),
        Shutdown {
            drain_delay: Duration::ZERO,
            grace: Duration::ZERO,
        },
    ));
    (addr, host, watcher)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn swap_latency(swaps: usize, cached: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = tempfile::tempdir().expect("cache dir");
    let target = dir.path().join("v.wasm");
    let versions = [handler("add"), handler("echo")];
    std::fs::write(&target, &versions[0]).expect("writes v");
    let (addr, _host, _watcher) = start(dir.path(), cached.then(|| cache.path())).await;
    let mut conn = Conn::open(addr).await;
    let request = json!({"cmd": "v", "x": 1, "y": 2});
    let mut latencies = Vec::with_capacity(swaps);
    for swap in 1..=swaps {
        let staging = dir.path().join("v.wasm.partial");
        std::fs::write(&staging, &versions[swap % 2]).expect("stages");
        let renamed = Instant::now();
        std::fs::rename(&staging, &target).expect("renames");
        // Version 0 (add) answers `solution`; version 1 (echo) answers `x`.
        let new_key = ["solution", "x"][swap % 2];
        loop {
            let answer = conn.ask(&request).await;
            assert_eq!(
                answer["success"], true,
                "no request fails during a swap: {answer}"
            );
            if answer.get(new_key).is_some() {
                break;
            }
            assert!(
                renamed.elapsed() < Duration::from_secs(30),
                "swap {swap} never took effect"
            );
        }
        latencies.push(renamed.elapsed());
    }
    latencies.sort();
    println!(
        "swap latency ({}): p50 {:.1} ms, max {:.1} ms over {swaps} swaps",
        if cached { "compile cache" } else { "no cache" },
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 1.0).as_secs_f64() * 1e3,
    );
}

async fn start_up(handlers: u8) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = tempfile::tempdir().expect("cache dir");
    let sources = [handler("add"), handler("echo"), handler("tally")];
    for n in 0..handlers {
        let name = if n == 0 { "add".to_owned() } else { format!("h{n}") };
        let bytes = variant(&sources[usize::from(n) % sources.len()], n);
        std::fs::write(dir.path().join(format!("{name}.wasm")), bytes).expect("writes handler");
    }
    for label in ["cold cache", "warm cache"] {
        let started = Instant::now();
        let (addr, host, _watcher) = start(dir.path(), Some(cache.path())).await;
        let answer = Conn::open(addr)
            .await
            .ask(&json!({"cmd": "add", "x": 1, "y": 2}))
            .await;
        let elapsed = started.elapsed();
        assert_eq!(answer["solution"], 3);
        assert_eq!(host.registry().commands().len(), usize::from(handlers));
        println!(
            "start-up with {handlers} handlers ({label}): first response after {:.1} ms",
            elapsed.as_secs_f64() * 1e3
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let (swaps, handlers) = if measuring { (50, 20) } else { (2, 3) };
    swap_latency(swaps, true).await;
    swap_latency(swaps, false).await;
    start_up(handlers).await;
}
