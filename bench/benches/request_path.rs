//! The request path without the network, for the Rust `add` handler:
//!
//! - `fresh_instance`: what every tcpy request pays — a new store and instance from
//!   the pool, `execute`, the response checked, everything dropped;
//! - `reused_instance`: `execute` again on one long-lived instance, the floor of any
//!   sandbox (tcpy never serves like this);
//! - `native`: the same `add` as plain Rust (the host's `--native-baseline`).
//!
//! Needs the handlers built: `cargo xtask build-handlers` (or `cargo xtask bench`).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tcpy_host::native::Native;
use tcpy_host::runtime::{CompiledHandler, Limits, NoClient, Runtime};
use tcpy_protocol::Object;

/// `target/handlers`, where `cargo xtask build-handlers` puts the example handlers.
fn handlers_dir() -> PathBuf {
    tcpy_tests::target_dir().join("handlers")
}

fn params() -> Object {
    tcpy_tests::object(json!({"x": 1, "y": 2}))
}

fn check(response: &Object) {
    assert_eq!(response.get("solution"), Some(&json!(3)), "{response:?}");
}

fn load_add(runtime: &Runtime) -> CompiledHandler {
    let path = handlers_dir().join("add.wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {}: {error}; run `cargo xtask build-handlers` first",
            path.display()
        )
    });
    runtime
        .compile("add", &bytes, runtime.default_sandbox())
        .expect("add compiles")
}

fn request_path(c: &mut Criterion) {
    // The host's own limits; a current-thread runtime, as one tokio worker runs a request.
    let runtime = Runtime::new(Limits::default()).expect("the runtime starts");
    let add = load_add(&runtime);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio starts");
    let mut group = c.benchmark_group("request/add");

    group.bench_function("fresh_instance", |b| {
        b.iter_custom(|iterations| {
            tokio.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let response = runtime.execute(&add, params(), Box::new(NoClient), None).await;
                    black_box(response.expect("add answers"));
                }
                started.elapsed()
            })
        });
    });

    group.bench_function("reused_instance", |b| {
        let mut instance = tokio
            .block_on(runtime.instantiate_reused(&add, Box::new(NoClient)))
            .expect("an instance");
        b.iter_custom(|iterations| {
            tokio.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    black_box(instance.execute(params()).await.expect("add answers"));
                }
                started.elapsed()
            })
        });
    });

    group.bench_function("native", |b| {
        b.iter(|| black_box(Native::Add.execute(params())));
    });
    group.finish();

    // Each path gives the right answer, or its figure means nothing.
    let response = tokio.block_on(runtime.execute(&add, params(), Box::new(NoClient), None));
    check(&response.expect("add answers"));
    check(&Native::Add.execute(params()));
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = request_path
}
criterion_main!(benches);
