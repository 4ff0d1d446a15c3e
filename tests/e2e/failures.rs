//! Handlers that fail: each client gets a clear error and everybody else is served.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tcpy_host::runtime::{Conversation, ConversationError, ConversationFuture, Limits, NoClient, Runtime};
use tcpy_protocol::{ErrorCode, Object};
use tcpy_tests::{LineConn, TestHost, handler_bytes, object, request_limits, test_limits};
use tokio::sync::oneshot;

async fn expect_failure(host: &TestHost, mode: &str, code: &str, says: &str) {
    let mut conn = LineConn::connect(host.addr).await;
    let response = conn.round_trip(json!({"cmd": "misbehave", "do": mode})).await;
    assert_eq!(response["error"], true, "{mode}: {response}");
    assert_eq!(response["code"], code, "{mode}: {response}");
    let message = response["message"].as_str().expect("a message");
    assert!(
        message.contains(says),
        "{mode}: `{message}` should mention `{says}`"
    );
    // The same connection, and the host, carry on.
    let response = conn.round_trip(json!({"cmd": "add", "x": 2, "y": 2})).await;
    assert_eq!(response["solution"], 4, "after {mode}");
}

#[tokio::test]
async fn a_panicking_handler_gets_handler_failed() {
    let host = TestHost::start().await;
    expect_failure(&host, "panic", "handler_failed", "trapped").await;
}

#[tokio::test]
async fn answers_that_are_not_responses_get_handler_failed() {
    let host = TestHost::start().await;
    expect_failure(&host, "not_json", "handler_failed", "not a JSON object").await;
    expect_failure(&host, "not_object", "handler_failed", "not a JSON object").await;
    expect_failure(&host, "no_marker", "handler_failed", "neither").await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_cap() {
    let host = TestHost::start_with(
        request_limits(|limits| limits.max_memory = 16 << 20),
        Duration::from_secs(5),
    )
    .await;
    expect_failure(&host, "grow", "handler_failed", "memory limit of 16 MiB").await;
}

#[tokio::test]
async fn an_endless_loop_times_out_while_others_are_served() {
    let host = TestHost::start_with(
        request_limits(|limits| limits.timeout = Duration::from_millis(1500)),
        Duration::from_secs(5),
    )
    .await;
    let addr = host.addr;
    let looping = tokio::spawn(async move {
        let mut conn = LineConn::connect(addr).await;
        conn.round_trip(json!({"cmd": "misbehave", "do": "loop"})).await
    });
    host.wait_in_flight(1).await;
    let mut other = LineConn::connect(host.addr).await;
    for i in 0..10 {
        let response = other.round_trip(json!({"cmd": "add", "x": i, "y": 1})).await;
        assert_eq!(response["solution"], i + 1);
    }
    assert!(!looping.is_finished(), "others were served while the loop ran");
    let response: Value = looping.await.expect("the looping client finishes");
    assert_eq!(response["code"], "timeout", "{response}");
    expect_failure(&host, "panic", "handler_failed", "trapped").await;
}

#[tokio::test]
async fn a_full_instance_pool_answers_busy_at_once() {
    let host = TestHost::start_with(
        Limits {
            max_in_flight: 1,
            ..test_limits()
        },
        Duration::from_secs(5),
    )
    .await;
    let mut sleeper = LineConn::connect(host.addr).await;
    sleeper
        .send(json!({"cmd": "misbehave", "do": "sleep", "ms": 1000}))
        .await;
    host.wait_in_flight(1).await;
    let mut other = LineConn::connect(host.addr).await;
    let response = other.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["code"], "busy", "{response}");
    assert_eq!(
        sleeper.recv().await.expect("the sleeper's answer")["slept_ms"],
        1000
    );
    let response = other.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["solution"], 3);
}

#[tokio::test]
async fn handler_output_does_not_reach_the_client() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    let response = conn.round_trip(json!({"cmd": "misbehave", "do": "print"})).await;
    assert_eq!(response["success"], true, "{response}");
    let response = conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response, json!({"success": true, "solution": 3}));
}

/// A client that answers `recv()` only when the test says so, and says when the
/// handler first waits on it: proof that the handler's instance is running.
struct HeldClient {
    waiting: Option<oneshot::Sender<()>>,
    release: Option<oneshot::Receiver<()>>,
}

impl Conversation for HeldClient {
    fn send(&mut self, _message: Object) -> ConversationFuture<'_, Result<(), ConversationError>> {
        Box::pin(async { Ok(()) })
    }

    fn recv(
        &mut self,
        _timeout: Duration,
    ) -> ConversationFuture<'_, Result<Option<Object>, ConversationError>> {
        Box::pin(async move {
            if let Some(waiting) = self.waiting.take() {
                let _ = waiting.send(());
            }
            if let Some(release) = self.release.take() {
                let _ = release.await;
            }
            Ok(None)
        })
    }
}

#[tokio::test]
async fn an_exhausted_instance_pool_answers_busy_not_a_failure() {
    // One slot, none of them for pre-warmed instances.
    let runtime = Runtime::new(Limits {
        max_in_flight: 1,
        prewarm: 0,
        ..test_limits()
    })
    .expect("the runtime starts");
    let runtime = Arc::new(runtime);
    let handler = runtime
        .compile(
            "misbehave",
            &handler_bytes("misbehave"),
            runtime.default_sandbox(),
        )
        .expect("misbehave compiles");
    let handler = Arc::new(handler);
    // Through a connection the host's in-flight cap answers first; called directly,
    // the second request finds the pool's only slot taken by the first, which waits
    // in recv() until the second has been answered.
    let (waiting, holding) = oneshot::channel();
    let (release, released) = oneshot::channel();
    let holder = tokio::spawn({
        let (runtime, handler) = (Arc::clone(&runtime), Arc::clone(&handler));
        let client = HeldClient {
            waiting: Some(waiting),
            release: Some(released),
        };
        async move {
            let params = object(json!({"do": "recv"}));
            runtime.execute(&handler, params, Box::new(client), None).await
        }
    });
    holding.await.expect("the first request waits in recv()");
    let error = runtime
        .execute(&handler, object(json!({"do": "print"})), Box::new(NoClient), None)
        .await
        .expect_err("no room for a second instance");
    assert_eq!(error.code(), ErrorCode::Busy, "{error}");
    release.send(()).expect("the first request still waits");
    let first = holder.await.expect("the first request finishes");
    assert_eq!(
        first.expect("the first request succeeds"),
        object(json!({"success": true, "got": null}))
    );
}
