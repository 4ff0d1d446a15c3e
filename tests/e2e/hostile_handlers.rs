//! Hostile handlers: each is stopped with a clear error within its limit, the host
//! stays up, and a well-behaved client on another connection has every one of its
//! requests answered correctly all the while.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_tests::{LineConn, TestHost, request_limits};
use tokio::task::JoinHandle;

/// The limits the hostile handlers run into. The deadline counts wall-clock time
/// while the handler runs, so it leaves room for building the 100 MiB response and
/// filling 192 MiB on a loaded machine: at 2 s, one run with both cores taken timed
/// out before the size or memory limit it was meant to reach.
const TIMEOUT: Duration = Duration::from_secs(5);
const RECV_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_SENDS: u32 = 50;
/// Enough memory for the 100 MiB response to be built, so that it is the message
/// size limit that stops it, not the memory cap.
const MAX_MEMORY: usize = 192 << 20;
/// How much later than its limit a failure may be reported on a loaded machine.
const SLACK: Duration = Duration::from_secs(4);

async fn hostile_host() -> TestHost {
    let limits = request_limits(|limits| {
        limits.timeout = TIMEOUT;
        limits.recv_timeout = RECV_TIMEOUT;
        limits.max_sends = MAX_SENDS;
        limits.max_memory = MAX_MEMORY;
    });
    TestHost::start_with(limits, Duration::from_secs(5)).await
}

/// A client that sends `add` requests one after the other until stopped, checking
/// every answer; it returns how many it got.
struct Bystander {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl Bystander {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut conn = LineConn::connect(addr).await;
            let mut answered = 0;
            while !stopped.load(Ordering::Relaxed) {
                let response = conn
                    .round_trip(json!({"cmd": "add", "x": answered, "y": 1}))
                    .await;
                assert_eq!(
                    response,
                    json!({"success": true, "solution": answered + 1}),
                    "the bystander's request {answered}"
                );
                answered += 1;
            }
            answered
        });
        Self { stop, task }
    }

    /// Stops it and returns how many requests it had answered, all correctly.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .expect("every bystander request was answered correctly")
    }
}

/// Sends `params` to `misbehave` and reads until the response, skipping the messages
/// a handler sends first; returns the response, how many messages came before it,
/// and how long it took.
async fn provoke(addr: SocketAddr, params: Value) -> (Value, usize, Duration) {
    let mut conn = LineConn::connect(addr).await;
    let mut request = params;
    request["cmd"] = json!("misbehave");
    let started = Instant::now();
    conn.send(request).await;
    let mut messages = 0;
    loop {
        let message = conn.recv().await.expect("an answer before the connection closes");
        if message.get("success").is_some() || message.get("error").is_some() {
            return (message, messages, started.elapsed());
        }
        messages += 1;
    }
}

#[tokio::test]
async fn every_hostile_handler_is_stopped_while_a_bystander_is_served() {
    let host = hostile_host().await;
    let bystander = Bystander::start(host.addr);
    // (mode and params, the code, what the message says, the limit it runs into)
    let cases = [
        (json!({"do": "loop"}), "timeout", "deadline", TIMEOUT),
        (
            json!({"do": "grow"}),
            "handler_failed",
            "memory limit of 192 MiB",
            TIMEOUT,
        ),
        (json!({"do": "recurse"}), "handler_failed", "trapped", TIMEOUT),
        (json!({"do": "panic"}), "handler_failed", "trapped", TIMEOUT),
        (
            json!({"do": "unreachable"}),
            "handler_failed",
            "unreachable",
            TIMEOUT,
        ),
        (
            json!({"do": "huge", "mib": 100}),
            "too_large",
            "exceeds the limit",
            TIMEOUT,
        ),
        (
            json!({"do": "send_loop"}),
            "handler_failed",
            "limit of 50 messages",
            TIMEOUT,
        ),
        (json!({"do": "recv"}), "timeout", "recv timeout", RECV_TIMEOUT),
    ];
    for (params, code, says, limit) in cases {
        let (response, _, elapsed) = provoke(host.addr, params.clone()).await;
        assert_eq!(response["error"], true, "{params}: {response}");
        assert_eq!(response["code"], code, "{params}: {response}");
        let message = response["message"].as_str().expect("a message");
        assert!(
            message.contains(says),
            "{params}: `{message}` should mention `{says}`"
        );
        assert!(elapsed < limit + SLACK, "{params}: answered after {elapsed:?}");
    }
    let answered = bystander.finish().await;
    assert!(answered > 0, "the bystander was answered meanwhile");
}

#[tokio::test]
async fn a_send_loop_delivers_exactly_its_limit_of_messages() {
    let host = hostile_host().await;
    let (response, messages, _) = provoke(host.addr, json!({"do": "send_loop"})).await;
    assert_eq!(response["code"], "handler_failed", "{response}");
    assert_eq!(messages, MAX_SENDS as usize);
}

#[tokio::test]
async fn a_handler_without_grants_sees_no_file_env_or_network() {
    let host = hostile_host().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let target = listener.local_addr().expect("an address").to_string();
    // The test process has PATH set; the handler must not see it.
    assert!(std::env::var_os("PATH").is_some());
    let (response, _, _) = provoke(
        host.addr,
        json!({"do": "escape", "file": "/etc/passwd", "env": "PATH", "connect": target}),
    )
    .await;
    assert_eq!(response["success"], true, "{response}");
    assert!(response["file"]["err"].is_string(), "file: {response}");
    assert!(response["env"]["err"].is_string(), "env: {response}");
    assert_eq!(response["env_count"], 0, "{response}");
    assert!(response["connect"]["err"].is_string(), "connect: {response}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the handler reached a host socket");
}
