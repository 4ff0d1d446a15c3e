//! The wasmtime engine: pooling allocator, epoch interruption and its ticker.

use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{Limits, LoadError};

/// How often the epoch advances: the granularity of deadlines, and the longest a
/// running handler keeps its tokio worker from polling other connections.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Linear memories one component may have (a Rust guest has one; other toolchains more).
const MEMORIES_PER_COMPONENT: u32 = 4;
/// Core instances and tables one component may use (adapters and shims add some).
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const TABLES_PER_COMPONENT: u32 = 8;
/// Memory kept mapped in a pool slot between requests, so the next one need not
/// fault it in again (cheap to reset with `pagemap_scan` where the kernel has it).
const KEEP_RESIDENT: usize = 64 * 1024;
/// Linear memory kept resident where the kernel has `pagemap_scan`: only the pages a
/// request wrote are reset, so this is a cap, not a cost. Chosen by measurement on
/// wasmtime 50 (`bench/examples/pool_settings.rs`, docs/performance.md): against the
/// 1 MiB kept before, 16 MiB made a fresh request faster for all three languages
/// (Python −30 %, JavaScript −46 %, Rust −18 %), since language runtimes write
/// megabytes of heap that were otherwise faulted in again on every request. Without
/// `pagemap_scan` the whole kept range is reset by `memset`, so it stays small there.
///
/// NB: safe only because wasmtime ≥ 50 resets written pages that were swapped out;
/// `tests/isolation` proves it on every CI run. Do not change without it green.
const KEEP_RESIDENT_WITH_PAGEMAP: usize = 16 * 1024 * 1024;

/// Builds an engine whose instance pool holds `limits.max_in_flight` instances (and
/// `limits.prewarm` pre-warmed ones) of at most `limits.ceiling.max_memory` bytes
/// each, and starts its epoch ticker.
pub(super) fn build(limits: &Limits) -> Result<Engine, LoadError> {
    // Requests' instances, and the pre-warmed ones waiting for theirs.
    let slots = limits.max_in_flight.max(1).saturating_add(limits.prewarm);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(slots)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memory_size(limits.ceiling.max_memory)
        .linear_memory_keep_resident(if PoolingAllocationConfig::is_pagemap_scan_available() {
            KEEP_RESIDENT_WITH_PAGEMAP
        } else {
            KEEP_RESIDENT
        })
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(LoadError::Engine)?;
    start_ticker(&engine).map_err(LoadError::Ticker)?;
    Ok(engine)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_ticker(engine: &Engine) -> std::io::Result<()> {
    // NB: the thread holds a weak handle, so dropping the last `Engine` ends it
    // instead of keeping every engine a test ever built alive.
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("tcpy-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}
