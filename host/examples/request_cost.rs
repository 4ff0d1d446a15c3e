//! What one request costs per handler, in process, without the network: for each
//! component, the cold compile, the load from a warm compile cache, and the p50/p90/p99
//! of a request in a fresh instance (new store, instance from the pool, `execute`,
//! response parsed, everything dropped) — what every tcpy request pays — beside two of
//! its parts: "instance only" (a store and an instance made and dropped, nothing
//! called) and "call only" (`execute` on one long-lived instance, the floor). A fresh
//! request costs more than the two together: its call writes to memory no call has
//! written since the instance was made, and dropping the instance resets those pages.
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
use tcpy_protocol::Object;

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
    println!(
        "| handler | size | cold compile | warm cache load | p50 | p90 | p99 | instance only, p50 | call only, p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for path in &paths {
        println!("{}", tokio.block_on(measure(path, requests))?);
    }
    Ok(())
}

/// Measures the handler at `path` over `requests` rounds; returns its table row.
async fn measure(path: &Path, requests: usize) -> Result<String> {
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

    let params = tcpy_tests::object(serde_json::json!({"x": 1, "y": 2}));
    let check = |response: Object| {
        anyhow::ensure!(
            response.get("solution") == Some(&3.into()),
            "{name}: {response:?}"
        );
        Ok(())
    };
    let mut reused = runtime.instantiate_reused(&handler, Box::new(NoClient)).await?;
    let (mut fresh, mut instance_only, mut call_only) = (Vec::new(), Vec::new(), Vec::new());
    // NB: the three are taken in turn, round after round, so a noisy neighbour on the
    // machine weighs on all three alike.
    for round in 0..requests + requests / 10 {
        let started = Instant::now();
        check(
            runtime
                .execute(&handler, params.clone(), Box::new(NoClient), None)
                .await?,
        )?;
        let fresh_time = started.elapsed();

        let started = Instant::now();
        drop(runtime.instantiate_reused(&handler, Box::new(NoClient)).await?);
        let instance_time = started.elapsed();

        let started = Instant::now();
        check(reused.execute(params.clone()).await?)?;
        let call_time = started.elapsed();

        // The first tenth warms the pool slots and caches up; it is not counted.
        if round >= requests / 10 {
            fresh.push(fresh_time);
            instance_only.push(instance_time);
            call_only.push(call_time);
        }
    }
    let (fresh, instance_only, call_only) = (
        Percentiles::of(fresh),
        Percentiles::of(instance_only),
        Percentiles::of(call_only),
    );
    Ok(format!(
        "| {name} | {} KB | {:.2} s | {:.1} ms | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
        bytes.len() / 1024,
        compile.as_secs_f64(),
        warm.as_secs_f64() * 1e3,
        fresh.at(0.5),
        fresh.at(0.9),
        fresh.at(0.99),
        instance_only.at(0.5),
        call_only.at(0.5),
    ))
}

/// Sorted request times.
struct Percentiles(Vec<Duration>);

impl Percentiles {
    fn of(mut times: Vec<Duration>) -> Self {
        times.sort();
        Self(times)
    }

    /// The `q` quantile, in microseconds.
    fn at(&self, q: f64) -> f64 {
        micros(self.0[((self.0.len() - 1) as f64 * q) as usize])
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run on the Rust `add`, so this example cannot rot unnoticed: every
    /// answer is checked, and a wrong one is an error.
    #[tokio::test]
    async fn measures_the_rust_add() {
        let add = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/handlers/add.wasm");
        let row = measure(&add, 20)
            .await
            .expect("built by `cargo xtask build-handlers`");
        assert!(row.starts_with("| add | "), "{row}");
        assert_eq!(row.matches(" µs |").count(), 5, "{row}");
    }
}
