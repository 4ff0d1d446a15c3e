//! Which pool reset settings are fastest here (issue #11): wasmtime's `pagemap_scan`
//! on or off, and how much linear memory a slot keeps resident, for the Rust, Python
//! and JavaScript `add`, measured in one process with the settings taken in turn, so
//! machine noise weighs on all of them alike.
//!
//! Each setting gets an engine configured as `tcpy-host`'s (pooling, epoch
//! interruption, the same per-component maxima), and each request is what a tcpy
//! request costs in the runtime: a store with an empty WASI context, an instance from
//! the pool, `execute`, the store dropped (the slot reset). Whatever the figures say,
//! a setting is only a candidate if the isolation test (`tests/isolation`) passes
//! with it.
//!
//! ```console
//! $ cargo xtask build-handlers
//! $ cargo run --release -p tcpy-bench --example pool_settings     # add, js_add, py_add
//! ```
//! `ROUNDS=N` sets the rounds per setting (default 5).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The settings compared: `pagemap_scan`, and linear memory kept resident per slot.
const SETTINGS: [(bool, usize); 6] = [
    (false, 64 << 10),
    (false, 1 << 20),
    (true, 64 << 10),
    (true, 1 << 20),
    (true, 4 << 20),
    (true, 16 << 20),
];

/// The handlers compared, and requests per round for each.
const HANDLERS: [(&str, usize); 3] = [("add", 2000), ("js_add", 400), ("py_add", 100)];

struct Data {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Data {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One setting's engine with one handler compiled and pre-instantiated.
struct Candidate {
    label: String,
    engine: Engine,
    pre: InstancePre<Data>,
    times: Vec<Duration>,
}

fn engine(pagemap: bool, keep_resident: usize) -> Result<Engine> {
    let slots = 4;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 32)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_core_instances_per_component(32)
        .max_memory_size(256 << 20)
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(64 << 10)
        .pagemap_scan(if pagemap { Enabled::Yes } else { Enabled::No });
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

fn candidate(bytes: &[u8], pagemap: bool, keep_resident: usize) -> Result<Candidate> {
    let engine = engine(pagemap, keep_resident)?;
    let mut linker = Linker::<Data>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // `add` never calls `send` or `recv`: the connection interface only has to link.
    let mut connection = linker.instance("tcpy:handler/connection@0.1.0")?;
    connection.func_wrap(
        "send",
        |_, (_message,): (String,)| -> wasmtime::Result<(Result<(), String>,)> {
            wasmtime::bail!("add does not send")
        },
    )?;
    connection.func_wrap("recv", |_, (): ()| -> wasmtime::Result<(Option<String>,)> {
        wasmtime::bail!("add does not recv")
    })?;
    let component = Component::new(&engine, bytes)?;
    let pre = linker.instantiate_pre(&component)?;
    let label = format!(
        "pagemap_scan {}, keep resident {} KiB",
        if pagemap { "on" } else { "off" },
        keep_resident >> 10
    );
    Ok(Candidate {
        label,
        engine,
        pre,
        times: Vec::new(),
    })
}

/// One fresh request, as tcpy makes it; checks the answer.
async fn request(candidate: &Candidate) -> Result<()> {
    let data = Data {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(&candidate.engine, data);
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = candidate.pre.instantiate_async(&mut store).await?;
    let execute = instance.get_typed_func::<(&str,), (String,)>(&mut store, "execute")?;
    let (answer,) = execute.call_async(&mut store, (r#"{"x":1,"y":2}"#,)).await?;
    let answer: serde_json::Value = serde_json::from_str(&answer)?;
    anyhow::ensure!(answer["solution"] == 3, "{answer}");
    Ok(())
}

fn p50_micros(times: &mut [Duration]) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(f64::NAN, |p50| p50.as_secs_f64() * 1e6)
}

async fn compare(path: &Path, per_round: usize, rounds: usize) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut candidates = SETTINGS
        .iter()
        .map(|&(pagemap, keep)| candidate(&bytes, pagemap, keep))
        .collect::<Result<Vec<_>>>()?;
    for candidate in &candidates {
        for _ in 0..per_round / 10 {
            request(candidate).await?;
        }
    }
    for _ in 0..rounds {
        for candidate in &mut candidates {
            for _ in 0..per_round {
                let started = Instant::now();
                request(candidate).await?;
                candidate.times.push(started.elapsed());
            }
        }
    }
    let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or("?");
    for candidate in &mut candidates {
        println!(
            "| {name} | {} | {:.1} µs |",
            candidate.label,
            p50_micros(&mut candidate.times)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let handlers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/handlers");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("| handler | setting | fresh request, p50 |");
    println!("|---|---|---|");
    for (name, per_round) in HANDLERS {
        tokio.block_on(compare(&handlers.join(format!("{name}.wasm")), per_round, rounds))?;
    }
    Ok(())
}
