//! Graceful shutdown: stop accepting, let requests in flight finish, then stop (the
//! drain delay before it, and the drain under load, are in `operations.rs`).

use std::time::Duration;

use serde_json::json;
use tcpy_tests::{LineConn, TestHost, test_limits};

#[tokio::test]
async fn a_request_in_flight_finishes_before_the_server_stops() {
    let mut host = TestHost::start().await;
    let mut idle = LineConn::connect(host.addr).await;
    assert_eq!(
        idle.round_trip(json!({"cmd": "add", "x": 1, "y": 1})).await["solution"],
        2
    );

    let mut busy = LineConn::connect(host.addr).await;
    busy.send(json!({"cmd": "misbehave", "do": "sleep", "ms": 700}))
        .await;
    host.wait_in_flight(1).await;
    let server = host.begin_shutdown();

    // The idle connection is told and closed; the busy one gets its answer, then is
    // told and closed.
    let word = idle.recv().await.expect("a last word");
    assert_eq!(word["code"], "shutting_down", "{word}");
    assert_eq!(idle.recv().await, None, "idle connection closed at shutdown");
    let response = busy.recv().await.expect("the in-flight request is answered");
    assert_eq!(response, json!({"success": true, "slept_ms": 700}));
    let word = busy.recv().await.expect("a last word");
    assert_eq!(word["code"], "shutting_down", "{word}");
    assert_eq!(busy.recv().await, None, "closed after its request");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops once drained")
        .expect("server task ends cleanly");
    assert!(
        tokio::net::TcpStream::connect(host.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let mut host = TestHost::start_with(test_limits(), Duration::from_millis(300)).await;
    let mut waiting = LineConn::connect(host.addr).await;
    // A conversation waiting in recv() for a client that never writes.
    waiting.send(json!({"cmd": "tally"})).await;
    host.wait_in_flight(1).await;
    let server = host.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops after the grace period")
        .expect("server task ends cleanly");
    assert_eq!(waiting.recv().await, None, "the stuck conversation is dropped");
}
