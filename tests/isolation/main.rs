//! Isolation under memory pressure (issue #11): a request's memory never reaches the
//! next request in the same pool slot, even when the host's pages were swapped out
//! while the first one ran.
//!
//! wasmtime 48's `pagemap_scan` reset asked the kernel only for pages both written and
//! present, so a written page that sat in swap was neither reset nor decommitted, and
//! the next instance in the slot swapped it back in: the next request read the last
//! one's data. This test reproduces that: one pool slot, a request that plants a secret
//! in a static buffer and waits in `recv()`, the whole process paged out to a swap file
//! meanwhile, then a fresh request that reads the buffer and must find only zeros.
//!
//! A binary of its own: paging out a process full of other tests would slow them, and
//! a swap file is machine-wide. It needs root for `swapon` (CI runs as root) and Linux
//! ≥ 5.10 for `process_madvise`; without them it fails, saying why.

mod swap;

use std::time::Duration;

use serde_json::{Value, json};
use tcpy_tests::{LineConn, TestHost, test_limits};

/// Rounds with a page-out between plant and peek.
const PAGED_ROUNDS: usize = 3;

/// The least `VmSwap` a page-out must reach for a round to count: the planted buffer is
/// 1 MiB, and it must be in swap for the round to test anything.
const MIN_SWAPPED: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_never_sees_the_last_requests_swapped_out_memory() {
    let swap = swap::SwapFile::enable(&tcpy_tests::target_dir())
        .unwrap_or_else(|why| panic!("cannot turn swap on: {why}"));

    // One pool slot: every request runs in the instance slot the last one left. Then
    // again with one pre-warmed instance (two slots): instances are then also made
    // ahead, in whichever slot is free, the planter's among them once it is given back.
    for prewarm in [0, 1] {
        let mut limits = test_limits();
        limits.max_in_flight = 1;
        limits.prewarm = prewarm;
        limits.request.timeout = Duration::from_secs(10);
        let host = TestHost::start_with(limits, Duration::from_secs(5)).await;

        // Unpaged first: the ordinary reset, which every wasmtime version gets right.
        assert_eq!(round(&host, 0x11, false).await, 0, "an unpaged round leaked");

        for turn in 0..PAGED_ROUNDS {
            let secret = 0xA5_u8.wrapping_add(u8::try_from(turn).unwrap_or(0));
            let leaked = round(&host, secret, true).await;
            assert_eq!(
                leaked,
                0,
                "paged round {turn} (prewarm {prewarm}): a fresh instance read {leaked} of {} \
                 bytes the last request planted: the pool slot was not reset for pages that \
                 were in swap",
                1 << 20
            );
        }
    }
    drop(swap);
}

/// One round: request A plants `secret` and waits; if `page_out`, the process is paged
/// out meanwhile; A ends; requests B and C, fresh, count the non-zero bytes they find.
/// Returns that count.
async fn round(host: &TestHost, secret: u8, page_out: bool) -> u64 {
    let mut planter = LineConn::connect(host.addr).await;
    planter
        .send(json!({ "cmd": "misbehave", "do": "plant", "secret": secret }))
        .await;
    let planted = planter.recv().await.expect("plant's message");
    assert_eq!(planted, json!({ "planted": true }), "{planted}");

    if page_out {
        let swapped = tokio::task::spawn_blocking(swap::page_out_self)
            .await
            .expect("the page-out runs")
            .unwrap_or_else(|why| panic!("cannot page out: {why}"));
        assert!(
            swapped >= MIN_SWAPPED,
            "the page-out left only {swapped} bytes in swap: the planted buffer was not \
             swapped out, so this round would test nothing"
        );
    }

    planter.send(json!({ "go": true })).await;
    let done = planter.recv().await.expect("plant's response");
    assert_eq!(done["success"], true, "{done}");
    drop(planter);

    // Twice: with a pre-warmed instance, the first peek may take one made before the
    // plant ended; the second gets one made after, in a slot the plant may have left.
    peek(host).await + peek(host).await
}

/// Runs `peek` in a fresh instance, retrying while the one slot is still being given
/// back by the last request.
async fn peek(host: &TestHost) -> u64 {
    let mut peeker = LineConn::connect(host.addr).await;
    for _ in 0..100 {
        let answer: Value = peeker
            .round_trip(json!({ "cmd": "misbehave", "do": "peek" }))
            .await;
        if answer["code"] == "busy" {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        return answer["nonzero"]
            .as_u64()
            .unwrap_or_else(|| panic!("peek answered {answer}"));
    }
    panic!("the one pool slot stayed busy for 2 s after its request ended")
}
