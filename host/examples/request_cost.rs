//! What one request costs per handler, in process, without the network: for each
//! component, the cold compile, the load from a warm compile cache, and the p50/p90/p99
//! of a request in a fresh instance (new store, instance from the pool, `execute`,
//! response parsed, everything dropped) — what every tcpy request pays.
//!
//! ```console
//! $ cargo xtask build-handlers
//! $ cargo run --release -p tcpy-host --example request_cost                 # add, py_add, js_add
//! $ cargo run --release -p tcpy-host --example request_cost -- target/handlers/echo.wasm
//! ```
//! `REQUESTS=N` sets the number of timed requests per handler (default 2000).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tcpy_host::runtime::{Limits, NoClient, Runtime};

fn main() -> Result<()> {
    let mut paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        let handlers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/handlers");
        paths = ["add", "py_add", "js_add"]
            .iter()
            .map(|name| handlers.join(format!("{name}.wasm")))
            .collect();
    }
    let requests = std::env::var("REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("| handler | size | cold compile | warm cache load | p50 | p90 | p99 |");
    println!("|---|---|---|---|---|---|---|");
    for path in &paths {
        tokio.block_on(measure(path, requests))?;
    }
    Ok(())
}

async fn measure(path: &Path, requests: usize) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("handler");
    let cache = tempfile::tempdir()?;

    let cold = Runtime::new(Limits::default())?.with_compile_cache(cache.path())?;
    let started = Instant::now();
    cold.compile(name, &bytes, cold.default_sandbox())?;
    let compile = started.elapsed();
    drop(cold);

    let runtime = Runtime::new(Limits::default())?.with_compile_cache(cache.path())?;
    let started = Instant::now();
    let handler = runtime.compile(name, &bytes, runtime.default_sandbox())?;
    let warm = started.elapsed();

    let params = match serde_json::json!({"x": 1, "y": 2}) {
        serde_json::Value::Object(object) => object,
        _ => unreachable!("a literal object"),
    };
    let mut times = Vec::with_capacity(requests);
    for round in 0..requests + requests / 10 {
        let started = Instant::now();
        let response = runtime
            .execute(&handler, params.clone(), Box::new(NoClient))
            .await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            response.get("solution") == Some(&3.into()),
            "{name}: {response:?}"
        );
        // The first tenth warms the pool slots and caches up; it is not counted.
        if round >= requests / 10 {
            times.push(elapsed);
        }
    }
    times.sort();
    let at = |q: f64| micros(times[((times.len() - 1) as f64 * q) as usize]);
    println!(
        "| {name} | {} KB | {:.2} s | {:.1} ms | {:.1} µs | {:.1} µs | {:.1} µs |",
        bytes.len() / 1024,
        compile.as_secs_f64(),
        warm.as_secs_f64() * 1e3,
        at(0.5),
        at(0.9),
        at(0.99),
    );
    Ok(())
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
