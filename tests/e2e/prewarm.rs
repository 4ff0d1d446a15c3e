//! Pre-warmed instances (`--prewarm`): made ahead of their requests, each used by
//! exactly one request; never more than the host's budget; discarded by a hot swap.
//! `misbehave`'s `calls` mode counts its calls in a static of the instance, so an
//! instance that served a request before would answer more than 1.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tcpy_host::runtime::{IDENTITY_VAR, Limits, NoClient, Runtime};
use tcpy_tests::{LineConn, TestHost, handler_bytes, next_swap, test_limits, wait_until};

/// The pre-warm budget of these hosts.
const BUDGET: u32 = 3;

fn limits(prewarm: u32) -> Limits {
    Limits {
        prewarm,
        ..test_limits()
    }
}

fn calls() -> Value {
    json!({"cmd": "misbehave", "do": "calls"})
}

/// Pre-warmed instances of `command` on `host` now.
fn warm(host: &TestHost, command: &str) -> usize {
    host.host()
        .registry()
        .get(command)
        .map_or(0, |handler| handler.warm_instances())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_an_instance_no_request_used_before() {
    let host = TestHost::start_with(limits(BUDGET), Duration::from_secs(5)).await;
    assert_eq!(
        warm(&host, "misbehave"),
        0,
        "nothing is warmed before it is called"
    );
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(
        conn.round_trip(calls()).await,
        json!({"success": true, "calls": 1})
    );
    // The first call asked for a replacement: it is made ahead of the next request.
    assert!(
        wait_until(Duration::from_secs(5), || warm(&host, "misbehave") >= 1).await,
        "no instance was pre-warmed"
    );
    // One after the other, and eight connections at once: always a first call.
    for _ in 0..200 {
        assert_eq!(conn.round_trip(calls()).await["calls"], 1);
    }
    let mut clients = Vec::new();
    for _ in 0..8 {
        let addr = host.addr;
        clients.push(tokio::spawn(async move {
            let mut conn = LineConn::connect(addr).await;
            for _ in 0..100 {
                let answer = conn.round_trip(calls()).await;
                assert_eq!(answer, json!({"success": true, "calls": 1}));
            }
        }));
    }
    for client in clients {
        client.await.expect("a client");
    }
    assert!(warm(&host, "misbehave") <= BUDGET as usize, "over the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_bounds_every_handler_together_and_off_means_none() {
    let host = TestHost::start_with(limits(BUDGET), Duration::from_secs(5)).await;
    let mut conn = LineConn::connect(host.addr).await;
    for _ in 0..20 {
        for request in [
            calls(),
            json!({"cmd": "add", "x": 1, "y": 2}),
            json!({"cmd": "echo"}),
        ] {
            assert_eq!(conn.round_trip(request).await["success"], true);
        }
    }
    let all = || {
        ["misbehave", "add", "echo"]
            .iter()
            .map(|cmd| warm(&host, cmd))
            .sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(5), || all() == BUDGET as usize).await,
        "{}",
        all()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(all(), BUDGET as usize, "never more than the budget, in all");

    let off = TestHost::start_with(limits(0), Duration::from_secs(5)).await;
    let mut conn = LineConn::connect(off.addr).await;
    for _ in 0..20 {
        assert_eq!(conn.round_trip(calls()).await["calls"], 1);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(warm(&off, "misbehave"), 0, "--prewarm 0 warms nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swap_discards_the_old_versions_instances() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = dir.path().join("v.wasm");
    std::fs::write(&target, handler_bytes("misbehave")).expect("writes v");
    let runtime = Runtime::new(limits(BUDGET)).expect("runtime");
    let host = TestHost::serve(runtime, dir.path(), Duration::from_secs(5), true).await;
    let mut swaps = host.swaps();
    let mut conn = LineConn::connect(host.addr).await;
    let v_calls = json!({"cmd": "v", "do": "calls"});
    for _ in 0..5 {
        assert_eq!(conn.round_trip(v_calls.clone()).await["calls"], 1);
    }
    let old = host.host().registry().get("v").expect("v is served");
    assert!(wait_until(Duration::from_secs(5), || old.warm_instances() >= 1).await);

    // A new version (the same component with one more custom section).
    let mut bytes = handler_bytes("misbehave");
    bytes.extend_from_slice(&[0, 3, 2, b'v', b'2']);
    replace(&target, &bytes);
    next_swap(&mut swaps, "v").await;
    assert_eq!(
        old.warm_instances(),
        0,
        "the old version's instances were dropped"
    );
    for _ in 0..5 {
        assert_eq!(conn.round_trip(v_calls.clone()).await["calls"], 1);
    }
    let new = host.host().registry().get("v").expect("v is served");
    assert!(!std::sync::Arc::ptr_eq(&old, &new));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(old.warm_instances(), 0, "a retired version is never warmed again");
}

/// Writes `bytes` beside `target`, then renames it over `target`.
fn replace(target: &Path, bytes: &[u8]) {
    let staging = target.with_extension("wasm.partial");
    std::fs::write(&staging, bytes).expect("writes the new version");
    std::fs::rename(&staging, target).expect("renames it into place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_warmed_instance_sees_its_own_requests_caller_and_no_other() {
    let runtime = Runtime::new(limits(BUDGET)).expect("runtime");
    let mut sandbox = runtime.default_sandbox();
    sandbox.access.pass_identity = true;
    let handler = runtime
        .compile("misbehave", &handler_bytes("misbehave"), sandbox)
        .expect("compiles");
    let escape = || {
        tcpy_protocol::test_support::object(
            json!({"do": "escape", "file": "/nothing", "env": IDENTITY_VAR, "connect": "127.0.0.1:9"}),
        )
    };
    // Cold, as `ann`: the call asks for an instance to be made ahead, with no caller.
    let first = runtime
        .execute(&handler, escape(), Box::new(NoClient), Some("ann"))
        .await
        .expect("runs");
    assert_eq!(first["env"], json!({"ok": "ann"}));
    for caller in [Some("bob"), None, Some("carol")] {
        assert!(wait_until(Duration::from_secs(5), || handler.warm_instances() >= 1).await);
        let answer = runtime
            .execute(&handler, escape(), Box::new(NoClient), caller)
            .await
            .expect("runs");
        match caller {
            Some(caller) => assert_eq!(answer["env"], json!({"ok": caller})),
            None => assert!(
                answer["env"].get("err").is_some(),
                "an anonymous caller has none: {answer:?}"
            ),
        }
    }
}
