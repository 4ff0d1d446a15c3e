//! Fail-over against fake hosts on 127.0.0.1 that read requests and answer, close or
//! hold as each test says, and count what reached them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tcpy_protocol::{DEFAULT_MAX_MESSAGE, Encoding, WireCodec};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::Framed;

use crate::{Client, ClientError, RetryPolicy, ServerCode, Turn};
use tcpy_protocol::test_support::object;
use tcpy_protocol::{ErrorCode, Message};

/// Bounds every wait of a fake host, so a client that hangs fails the test.
const PATIENCE: Duration = Duration::from_secs(10);

/// What a fake host does with the `n`th request it reads (0 for the first).
#[derive(Clone)]
enum Reply {
    /// Answers this.
    Answer(Value),
    /// Closes the connection without a word, as a host killed mid-request.
    Close,
    /// Keeps the connection and says nothing.
    Hold,
}

/// A fake host; stops when dropped.
struct Fake {
    addr: String,
    seen: Arc<Mutex<Vec<Value>>>,
    accepting: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Fake {
    async fn start(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<dyn Fn(usize) -> Reply + Send + Sync> = Arc::new(reply);
        let accepting = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                // NB: the connections' tasks live in this set, so that aborting the
                // accept loop (on drop) ends them too.
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn(serve(stream, Arc::clone(&seen), Arc::clone(&reply)));
                }
            }
        });
        Self {
            addr,
            seen,
            accepting,
        }
    }

    /// A host that answers every request with `answer`.
    async fn answering(answer: Value) -> Self {
        Self::start(move |_| Reply::Answer(answer.clone())).await
    }

    /// Every request that reached it, in order.
    fn seen(&self) -> Vec<Value> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

async fn serve(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Value>>>,
    reply: Arc<dyn Fn(usize) -> Reply + Send + Sync>,
) {
    let mut connection = Framed::new(stream, WireCodec::detect(DEFAULT_MAX_MESSAGE));
    while let Ok(Some(Ok(message))) = tokio::time::timeout(PATIENCE, connection.next()).await {
        let request = Value::Object(message.decode().expect("an object"));
        let n = {
            let mut seen = seen.lock().expect("not poisoned");
            seen.push(request);
            seen.len() - 1
        };
        match reply(n) {
            Reply::Answer(answer) => {
                let answer = Message::encode(&object(answer), Encoding::Json).expect("encodes");
                connection.send(answer).await.expect("sends");
            }
            Reply::Close => return,
            Reply::Hold => tokio::time::sleep(PATIENCE).await,
        }
    }
}

/// `127.0.0.1:PORT` where nothing listens.
fn dead() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .to_string()
}

/// A client of `addresses` that starts at the first, whatever its shuffle said.
fn client_of(addresses: &[&str]) -> Client {
    let mut client = Client::with_addresses(addresses).expect("valid addresses");
    while client.addr() != addresses[0] {
        client.addresses.advance();
    }
    client
}

fn success() -> Value {
    json!({"success": true})
}

#[tokio::test]
async fn a_dead_address_is_skipped() {
    let live = Fake::answering(json!({"success": true, "solution": 3})).await;
    let dead = dead();
    let mut client = client_of(&[&dead, &live.addr]);
    let response = client
        .call("add", json!({"x": 1, "y": 2}))
        .await
        .expect("answered");
    assert_eq!(response["solution"], 3);
    assert_eq!(
        client.addr(),
        live.addr,
        "the client stays with the host that answers"
    );
    client.call("add", json!({"x": 1, "y": 2})).await.expect("again");
    assert_eq!(live.seen().len(), 2);
    assert_eq!(client.retries(), 1, "one connection refused, then none");
}

#[tokio::test]
async fn a_request_cut_off_unanswered_is_not_sent_again() {
    let cut = Fake::start(|_| Reply::Close).await;
    let other = Fake::answering(success()).await;
    let mut client = client_of(&[&cut.addr, &other.addr]);
    let error = client
        .execute("charge", json!({"cents": 100}))
        .await
        .expect_err("no answer");
    let ClientError::MaybeRan { addr, source } = &error else {
        panic!("expected MaybeRan, got {error:?}");
    };
    assert_eq!(addr, &cut.addr);
    assert!(matches!(**source, ClientError::Closed), "{source:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "the request was sent to {} and no answer came: it may have run, so it was not retried \
             (mark it idempotent or give it an idempotency key to allow that)",
            cut.addr
        )
    );
    assert_eq!(cut.seen().len(), 1, "sent once");
    assert_eq!(other.seen().len(), 0, "and not again elsewhere");
    assert_eq!(client.retries(), 0);
}

#[tokio::test]
async fn an_idempotent_request_cut_off_is_sent_to_the_next_address() {
    let cut = Fake::start(|_| Reply::Close).await;
    let other = Fake::answering(json!({"success": true, "value": 7})).await;
    let mut client = client_of(&[&cut.addr, &other.addr]);
    let response = client
        .call_idempotent("get", json!({"k": 1}))
        .await
        .expect("answered");
    assert_eq!(response["value"], 7);
    assert_eq!((cut.seen().len(), other.seen().len()), (1, 1));
    assert_eq!(other.seen()[0], json!({"cmd": "get", "k": 1}));
    assert_eq!(client.retries(), 1);
}

#[tokio::test]
async fn a_keyed_request_cut_off_is_sent_again_with_its_key() {
    let cut = Fake::start(|_| Reply::Close).await;
    let other = Fake::answering(success()).await;
    let mut client = client_of(&[&cut.addr, &other.addr]);
    let key = crate::new_idempotency_key();
    client
        .execute_with_key("charge", json!({"cents": 100}), key.as_str())
        .await
        .expect("answered");
    let sent = json!({"cmd": "charge", "cents": 100, "idempotency_key": key});
    assert_eq!((cut.seen(), other.seen()), (vec![sent.clone()], vec![sent]));
}

#[tokio::test]
async fn busy_is_sent_elsewhere_even_when_not_idempotent() {
    let busy = Fake::answering(json!({"error": true, "code": "busy", "message": "full"})).await;
    let other = Fake::answering(success()).await;
    let mut client = client_of(&[&busy.addr, &other.addr]);
    client
        .call("charge", json!({"cents": 100}))
        .await
        .expect("answered");
    assert_eq!((busy.seen().len(), other.seen().len()), (1, 1));
}

#[tokio::test]
async fn in_progress_is_asked_again_later_with_the_same_key() {
    let host = Fake::start(|n| match n {
        0 | 1 => Reply::Answer(json!({"error": true, "code": "in_progress", "message": "running"})),
        _ => Reply::Answer(json!({"success": true, "solution": 3})),
    })
    .await;
    let mut client = Client::with_addresses([&host.addr]).expect("valid");
    let response = client
        .execute_with_key("add", json!({"x": 1, "y": 2}), "k-1")
        .await
        .expect("answered");
    assert_eq!(response["solution"], 3);
    let keys: Vec<_> = host
        .seen()
        .iter()
        .map(|request| request["idempotency_key"].clone())
        .collect();
    assert_eq!(keys, ["k-1", "k-1", "k-1"]);
}

#[tokio::test]
async fn all_dead_addresses_fail_within_the_bound_naming_each() {
    let dead = [dead(), dead(), dead()];
    let total = Duration::from_millis(400);
    let mut client = Client::with_addresses(&dead)
        .expect("valid")
        .with_retry(RetryPolicy {
            total,
            ..RetryPolicy::default()
        });
    let started = tokio::time::Instant::now();
    let error = client
        .execute_idempotent("add", ())
        .await
        .expect_err("nothing listens");
    let elapsed = started.elapsed();
    assert!(elapsed <= total + Duration::from_millis(200), "took {elapsed:?}");
    let ClientError::GaveUp {
        attempts,
        within,
        tried,
        source,
    } = &error
    else {
        panic!("expected GaveUp, got {error:?}");
    };
    // The first two waits are at most 50 and 100 ms: a third attempt always fits.
    assert!(*attempts >= 3, "{attempts} attempts");
    assert_eq!(*within, total);
    let mut sorted = tried.clone();
    sorted.sort();
    let mut expected = dead.to_vec();
    expected.sort();
    assert_eq!(sorted, expected, "every address is named once");
    assert!(matches!(**source, ClientError::Connect { .. }), "{source:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("gave up after {attempts} attempts within 400ms at ")),
        "{error}"
    );
}

#[tokio::test]
async fn a_host_that_never_answers_cannot_hold_a_request_past_the_bound() {
    let silent = Fake::start(|_| Reply::Hold).await;
    let total = Duration::from_millis(300);
    let mut client = Client::with_addresses([&silent.addr])
        .expect("valid")
        .with_retry(RetryPolicy {
            total,
            ..RetryPolicy::default()
        });
    let started = tokio::time::Instant::now();
    let error = client
        .execute_idempotent("slow", ())
        .await
        .expect_err("no answer");
    assert!(
        started.elapsed() <= total + Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&error, ClientError::GaveUp { source, .. } if matches!(**source, ClientError::Timeout { .. })),
        "{error:?}"
    );
    let error = client.execute("slow", ()).await.expect_err("no answer");
    assert!(
        matches!(&error, ClientError::MaybeRan { source, .. } if matches!(**source, ClientError::Timeout { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_not_run_answer_that_outlasts_the_bound_is_the_last_error() {
    let busy = Fake::answering(json!({"error": true, "code": "busy", "message": "full"})).await;
    let mut client = Client::new("127.0.0.1", port(&busy.addr)).with_retry(RetryPolicy {
        total: Duration::from_millis(200),
        ..RetryPolicy::default()
    });
    let error = client.execute("add", ()).await.expect_err("always busy");
    let ClientError::GaveUp { source, tried, .. } = &error else {
        panic!("expected GaveUp, got {error:?}");
    };
    assert_eq!(tried, std::slice::from_ref(&busy.addr));
    assert!(
        matches!(
            **source,
            ClientError::Server {
                code: Some(ServerCode::Known(ErrorCode::Busy)),
                ..
            }
        ),
        "{source:?}"
    );
    assert!(busy.seen().len() >= 2, "retried on its one host");
}

#[tokio::test]
async fn a_conversation_fails_over_to_connect_but_is_never_sent_twice() {
    let cut = Fake::start(|_| Reply::Close).await;
    let other = Fake::answering(success()).await;
    let dead = dead();
    let mut client = client_of(&[&dead, &cut.addr, &other.addr]);
    let mut talk = client
        .conversation("tally", ())
        .await
        .expect("connects past the dead one");
    let error = talk.recv().await.expect_err("cut off");
    assert!(matches!(error, ClientError::Closed), "{error:?}");
    assert_eq!((cut.seen().len(), other.seen().len()), (1, 0));
    drop(talk);
    // The next request goes to the live host after the kept connection is gone.
    while client.addr() != other.addr {
        client.addresses.advance();
    }
    let mut talk = client.conversation("tally", ()).await.expect("connects");
    assert!(matches!(talk.recv().await, Ok(Turn::Response(_))));
}

#[test]
fn the_blocking_client_fails_over_too() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the fake host");
    let live = runtime.block_on(Fake::answering(json!({"success": true, "solution": 3})));
    let dead = dead();
    let mut client = crate::blocking::Client::with_addresses([&dead, &live.addr])
        .expect("valid")
        .with_retry(RetryPolicy::default());
    for _ in 0..4 {
        let response = client
            .call_idempotent("add", json!({"x": 1, "y": 2}))
            .expect("answered");
        assert_eq!(response["solution"], 3);
        client.disconnect();
    }
    let error = crate::blocking::Client::with_addresses(["nowhere"]).expect_err("no port");
    assert!(matches!(error, ClientError::InvalidAddress { .. }), "{error:?}");
    drop(live);
}

fn port(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .expect("host:port")
}

#[test]
fn calls_can_be_spawned_on_a_multi_threaded_runtime() {
    fn spawnable(_: &impl Send) {}
    let mut client = Client::new("127.0.0.1", 1);
    spawnable(&client.connect());
    spawnable(&client.execute("add", ()));
    spawnable(&client.execute_idempotent("add", ()));
    spawnable(&client.execute_with_key("add", (), "k"));
    spawnable(&client.call_idempotent("add", ()));
    spawnable(&client.conversation("tally", ()));
}
