//! Idempotency keys, on both backends: a keyed request runs once however often it is
//! sent, its retries get its answer, a duplicate sent while it runs waits for it (or
//! gets `in_progress`), a key reused for another request is refused, and a claim of a
//! request that never ran is given back. The `kvops` handler counts how often it ran
//! in the store itself, so "ran once" is read off the store, not assumed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tcpy_host::Server;
use tcpy_host::idempotency::IdempotencySettings;
use tcpy_host::runtime::Runtime;
use tcpy_host::server::Shutdown;
use tcpy_host::status::Status;
use tcpy_tests::{LineConn, TestHost, handlers_dir, test_limits};

use super::keyvalue::Backend;

/// A host on `backend`'s stores whose duplicates wait up to `wait`.
async fn host(backend: &Backend, wait: Duration, max_in_flight: u32) -> TestHost {
    let mut limits = test_limits();
    limits.max_in_flight = max_in_flight;
    let runtime = Runtime::new(limits)
        .expect("runtime builds")
        .with_stores(Arc::new(stores(backend).await));
    let server = Server::new(runtime, &handlers_dir(), Status::new())
        .await
        .expect("host loads")
        .with_idempotency(IdempotencySettings {
            wait,
            ..IdempotencySettings::DEFAULT
        });
    let shutdown = Shutdown {
        drain_delay: Duration::ZERO,
        grace: Duration::from_secs(5),
    };
    TestHost::serve_server(server, shutdown, false).await
}

/// The stores of `backend`, once the host before has let go of them (an embedded
/// store's file is open in one host at a time; its writer thread ends just after).
async fn stores(backend: &Backend) -> tcpy_host::keyvalue::Stores {
    for _ in 0..100 {
        if let Ok(stores) = backend.try_stores() {
            return stores;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend.stores()
}

/// An increment of counter `key` by one, keyed with `idempotency_key`.
fn increment(key: &str, idempotency_key: &str) -> Value {
    json!({"cmd": "kvops", "op": "increment", "store": "kvtest", "key": key, "delta": 1,
           "idempotency_key": idempotency_key})
}

/// The counter at `key`, read with an unkeyed request.
async fn counter(conn: &mut LineConn, key: &str) -> Value {
    let answer = conn
        .round_trip(json!({"cmd": "kvops", "op": "get", "store": "kvtest", "key": key}))
        .await;
    answer["value"].clone()
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario(super::Backend::embedded()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$scenario(super::Backend::redis()).await;
            }
        }
    )*};
}

on_both_backends!(
    a_keyed_request_runs_once_and_its_retries_get_its_answer,
    a_lost_answer_is_found_by_the_retry,
    a_duplicate_waits_for_the_first,
    a_duplicate_that_cannot_wait_is_told_in_progress,
    a_key_reused_for_another_request_is_refused,
    a_claim_that_never_ran_is_given_back,
    keys_survive_a_host_and_reach_another,
    claims_expire_with_their_lease_and_records_with_their_ttl,
);

async fn a_keyed_request_runs_once_and_its_retries_get_its_answer(backend: Backend) {
    let host = host(&backend, Duration::from_secs(5), 128).await;
    let mut conn = LineConn::connect(host.addr).await;
    let first = conn.round_trip(increment("once", "key-1")).await;
    assert_eq!(first, json!({"success": true, "value": 1}));
    for _ in 0..3 {
        let again = conn.round_trip(increment("once", "key-1")).await;
        assert_eq!(again, first, "a retry gets the first answer");
    }
    assert_eq!(counter(&mut conn, "once").await, "1", "the handler ran once");
    // Another key is another request; no key at all runs every time.
    let other = conn.round_trip(increment("once", "key-2")).await;
    assert_eq!(other["value"], 2);
    let mut unkeyed = increment("once", "");
    unkeyed
        .as_object_mut()
        .expect("an object")
        .remove("idempotency_key");
    assert_eq!(conn.round_trip(unkeyed.clone()).await["value"], 3);
    assert_eq!(conn.round_trip(unkeyed).await["value"], 4);
    // A key that is not a string of 1 to 255 bytes is a bad request; nothing runs.
    let mut bad = increment("once", "");
    bad["idempotency_key"] = json!(7);
    let refused = conn.round_trip(bad).await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert_eq!(counter(&mut conn, "once").await, "4");
    let metrics = host.host().status().metrics().prometheus_text();
    assert!(
        metrics.contains(r#"tcpy_idempotency_keys_total{outcome="ran"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tcpy_idempotency_keys_total{outcome="replayed"} 3"#),
        "{metrics}"
    );
}

async fn a_lost_answer_is_found_by_the_retry(backend: Backend) {
    let host = host(&backend, Duration::from_secs(5), 128).await;
    // The client writes, then goes away before the answer: the request still runs.
    {
        let mut lost = LineConn::connect(host.addr).await;
        lost.send(increment("lost", "lost-1")).await;
    }
    // Its retry, on another connection, gets the recorded answer (waiting for it if
    // the first is still running); the handler ran once.
    let mut conn = LineConn::connect(host.addr).await;
    let retry = conn.round_trip(increment("lost", "lost-1")).await;
    assert_eq!(retry, json!({"success": true, "value": 1}));
    assert_eq!(counter(&mut conn, "lost").await, "1");
}

/// A keyed `misbehave` request that sleeps `ms`.
fn sleep(key: &str, ms: u64) -> Value {
    json!({"cmd": "misbehave", "do": "sleep", "ms": ms, "idempotency_key": key})
}

async fn a_duplicate_waits_for_the_first(backend: Backend) {
    // Waiting longer than the first runs: the duplicate gets its answer.
    let patient = host(&backend, Duration::from_secs(5), 128).await;
    let mut first = LineConn::connect(patient.addr).await;
    first.send(sleep("slow-1", 600)).await;
    patient.wait_in_flight(1).await;
    let mut second = LineConn::connect(patient.addr).await;
    let duplicate = second.round_trip(sleep("slow-1", 600)).await;
    let original = first.recv().await.expect("an answer");
    assert_eq!(original, json!({"success": true, "slept_ms": 600}));
    assert_eq!(duplicate, original, "the duplicate waited for the first's answer");
    let metrics = patient.host().status().metrics().prometheus_text();
    assert!(
        metrics.contains(r#"tcpy_requests_total{command="misbehave",outcome="success"} 1"#),
        "the duplicate ran too: {metrics}"
    );
}

async fn a_duplicate_that_cannot_wait_is_told_in_progress(backend: Backend) {
    // Waiting less than the first runs: in_progress, and the key still runs once.
    let hasty = host(&backend, Duration::from_millis(100), 128).await;
    let mut first = LineConn::connect(hasty.addr).await;
    first.send(sleep("slow-2", 800)).await;
    hasty.wait_in_flight(1).await;
    let mut second = LineConn::connect(hasty.addr).await;
    let refused = second.round_trip(sleep("slow-2", 800)).await;
    assert_eq!(refused["code"], "in_progress", "{refused}");
    let original = first.recv().await.expect("an answer");
    assert_eq!(second.round_trip(sleep("slow-2", 800)).await, original);
}

async fn a_key_reused_for_another_request_is_refused(backend: Backend) {
    let host = host(&backend, Duration::from_secs(5), 128).await;
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(conn.round_trip(increment("reuse", "reused")).await["value"], 1);
    let other_params = conn.round_trip(increment("elsewhere", "reused")).await;
    assert_eq!(other_params["code"], "idempotency_conflict", "{other_params}");
    let other_cmd = conn
        .round_trip(json!({"cmd": "add", "x": 1, "y": 2, "idempotency_key": "reused"}))
        .await;
    assert_eq!(other_cmd["code"], "idempotency_conflict", "{other_cmd}");
    assert_eq!(counter(&mut conn, "elsewhere").await, Value::Null, "nothing ran");
}

async fn a_claim_that_never_ran_is_given_back(backend: Backend) {
    // One request at a time: the second is busy, after its key was claimed.
    let host = host(&backend, Duration::from_millis(50), 1).await;
    let mut running = LineConn::connect(host.addr).await;
    running
        .send(json!({"cmd": "misbehave", "do": "sleep", "ms": 400}))
        .await;
    host.wait_in_flight(1).await;
    let mut conn = LineConn::connect(host.addr).await;
    let busy = conn.round_trip(increment("given-back", "gb-1")).await;
    assert_eq!(busy["code"], "busy", "{busy}");
    running.recv().await.expect("an answer");
    // Not in_progress and not a replay of `busy`: the key runs now.
    let ran = conn.round_trip(increment("given-back", "gb-1")).await;
    assert_eq!(ran, json!({"success": true, "value": 1}));
}

async fn keys_survive_a_host_and_reach_another(backend: Backend) {
    let first = host(&backend, Duration::from_secs(5), 128).await;
    let mut conn = LineConn::connect(first.addr).await;
    let mut first = first;
    let answer = conn.round_trip(increment("shared", "shared-1")).await;
    drop(conn);
    first.begin_shutdown().await.expect("the first host stops");
    drop(first);
    // A later host on the same stores (embedded: the same file, reopened; Redis: the
    // same server) knows the key.
    let second = host(&backend, Duration::from_secs(5), 128).await;
    let mut conn = LineConn::connect(second.addr).await;
    assert_eq!(conn.round_trip(increment("shared", "shared-1")).await, answer);
    assert_eq!(counter(&mut conn, "shared").await, "1");
}

async fn claims_expire_with_their_lease_and_records_with_their_ttl(backend: Backend) {
    // The ledger itself, as a host that died mid-request leaves it.
    let stores = backend.stores();
    let lease = Duration::from_millis(300);
    assert_eq!(stores.claim("dead", b"host-a", lease).await, Ok(None), "claimed");
    assert_eq!(
        stores.claim("dead", b"host-b", lease).await,
        Ok(Some(b"host-a".to_vec())),
        "held while the lease runs"
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(
        stores.claim("dead", b"host-b", lease).await,
        Ok(None),
        "claimed again"
    );
    // The first host's late record does not overwrite the second's claim.
    let late = stores.settle("dead", b"host-a", Some(b"late"), lease).await;
    assert_eq!(late, Ok(false));
    let ttl = Duration::from_millis(300);
    assert_eq!(
        stores.settle("dead", b"host-b", Some(b"done"), ttl).await,
        Ok(true)
    );
    assert_eq!(
        stores.claim("dead", b"host-c", lease).await,
        Ok(Some(b"done".to_vec()))
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    if matches!(backend, Backend::Embedded(_)) {
        assert!(
            stores.sweep_ledger().await.expect("sweeps") >= 1,
            "the expired record is swept"
        );
    }
    assert_eq!(
        stores.claim("dead", b"host-c", lease).await,
        Ok(None),
        "the record expired"
    );
}
