//! The connection over an in-memory stream, in paused time: its timeouts and its
//! last words, with a real dispatcher (no handlers, so every command is unknown).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ConnectionLimits, Settings, serve};
use crate::dispatch::{Dispatcher, Session};
use crate::registry::Registry;
use crate::runtime::{Limits, Runtime};
use crate::status::Status;

const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 8,
    idle_timeout: Duration::from_secs(60),
    read_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(10),
};

fn dispatcher() -> &'static Dispatcher {
    let runtime = Runtime::new(Limits {
        max_in_flight: 2,
        max_waiting: 1,
        ..Limits::default()
    })
    .expect("a runtime");
    let status = Status::new();
    let registry = Arc::new(Registry::new(HashMap::new(), Arc::clone(&status)));
    Box::leak(Box::new(Dispatcher::new(registry, Arc::new(runtime), status)))
}

/// A connection served over an in-memory pipe of `buffer` bytes each way.
struct Served {
    client: BufReader<DuplexStream>,
    closing: CancellationToken,
    server: JoinHandle<()>,
}

impl Served {
    fn start(buffer: usize) -> Self {
        let (client, stream) = tokio::io::duplex(buffer);
        let closing = CancellationToken::new();
        let settings = Settings {
            limits: LIMITS,
            max_message: 1 << 20,
            dispatcher: dispatcher(),
        };
        let server = tokio::spawn(serve(stream, Session::new(None), settings, closing.clone()));
        Self {
            client: BufReader::new(client),
            closing,
            server,
        }
    }

    async fn send(&mut self, text: &str) {
        self.client
            .get_mut()
            .write_all(text.as_bytes())
            .await
            .expect("writes");
    }

    /// The next line from the host, as JSON; `None` once it has closed.
    async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let read = self.client.read_line(&mut line).await.expect("reads");
        (read > 0).then(|| serde_json::from_str(&line).expect("a JSON line"))
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_told_and_closed_after_the_idle_timeout() {
    let mut served = Served::start(4096);
    served.send("{\"cmd\":\"nope\"}\n").await;
    assert_eq!(served.recv().await.expect("an answer")["code"], "unknown_command");
    let idle_since = Instant::now();
    let word = served.recv().await.expect("a last word");
    assert_eq!(word["code"], "idle_timeout", "{word}");
    assert!(
        idle_since.elapsed() >= LIMITS.idle_timeout,
        "{:?}",
        idle_since.elapsed()
    );
    assert_eq!(served.recv().await, None, "closed");
    served.server.await.expect("the connection task ends");
}

#[tokio::test(start_paused = true)]
async fn a_message_not_finished_in_the_read_timeout_is_cut_off() {
    let mut served = Served::start(4096);
    let started = Instant::now();
    served.send("{\"cmd\":").await;
    let word = served.recv().await.expect("a last word");
    assert_eq!(word["code"], "read_timeout", "{word}");
    let waited = started.elapsed();
    assert!(
        waited >= LIMITS.read_timeout && waited < LIMITS.idle_timeout,
        "{waited:?}"
    );
    assert_eq!(served.recv().await, None, "closed");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    // 64 bytes of pipe: the first answer fills it and the host's next write waits.
    let mut served = Served::start(64);
    let started = Instant::now();
    let requests = "{\"cmd\":\"nope\"}\n".repeat(8);
    let _ = tokio::time::timeout(Duration::from_secs(1), served.send(&requests)).await;
    tokio::time::timeout(LIMITS.write_timeout * 2, &mut served.server)
        .await
        .expect("the host gives up on the connection")
        .expect("the connection task ends");
    assert!(
        started.elapsed() >= LIMITS.write_timeout,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn closing_answers_shutting_down_and_closes() {
    let mut served = Served::start(4096);
    served.send("{\"cmd\":\"nope\"}\n").await;
    assert_eq!(served.recv().await.expect("an answer")["code"], "unknown_command");
    served.closing.cancel();
    let word = served.recv().await.expect("a last word");
    assert_eq!(word["code"], "shutting_down", "{word}");
    assert_eq!(served.recv().await, None, "closed");
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_while_closing_is_not_run_but_answered() {
    let mut served = Served::start(4096);
    served.closing.cancel();
    // A client that has said nothing yet has a moment to send its first request.
    served.send(&json!({"cmd": "nope"}).to_string()).await;
    served.send("\n").await;
    let answer = served.recv().await.expect("an answer");
    assert_eq!(answer["code"], "shutting_down", "{answer}");
    assert_eq!(served.recv().await, None, "closed");
    assert_eq!(dispatcher().requests_in_flight(), 0, "nothing was run");
}
