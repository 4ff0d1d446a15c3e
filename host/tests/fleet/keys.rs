//! Idempotency keys across the fleet, through HAProxy, on one Redis: a host `kill -9`ed
//! while 16 clients send keyed increments loses no request and repeats at most the
//! ones it was running; an answer lost on the way back is found by the retry, which
//! another host serves, and the handler ran once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_tests::fleet::Fleet;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Hosts of the fleet.
const HOSTS: usize = 3;
/// Clients sending keyed increments, each on its own connection.
const CLIENTS: usize = 16;
/// The hosts' flags: a short request deadline and store timeout make the lease of a
/// dead host's claim short (1 s + 1 s + 1 s), and duplicates wait 1 s before
/// `in_progress`.
const HOST_ARGS: [&str; 6] = [
    "--max-request-time",
    "1s",
    "--kv-timeout",
    "1s",
    "--idempotency-wait",
    "1s",
];
/// Longest a client waits for one answer before it counts the connection as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one key may take to be answered, retries included: past it, it is lost.
const KEY_DEADLINE: Duration = Duration::from_secs(30);

fn handlers() -> PathBuf {
    let handlers = tcpy_tests::target_dir().join("test-handlers");
    assert!(
        handlers.join("counter.wasm").is_file(),
        "no counter handler in {}: run `cargo xtask test`",
        handlers.display()
    );
    handlers
}

fn start_fleet() -> Fleet {
    Fleet::start(
        Path::new(env!("CARGO_BIN_EXE_tcpy-host")),
        &handlers(),
        HOSTS,
        &HOST_ARGS,
    )
}

/// The value of `counter`'s counter `name`, read in Redis itself.
fn counter_in_redis(fleet: &Fleet, name: &str) -> u64 {
    let value = fleet.redis().command(&format!("GET tcpy:{{default}}:v:{name}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("counter {name}: {value:?}"))
}

/// A line-mode connection through the front.
struct Line {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Line {
    async fn connect(addr: SocketAddr) -> Option<Self> {
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let (read, writer) = stream.into_split();
        Some(Self {
            reader: BufReader::new(read),
            writer,
        })
    }

    async fn write(&mut self, request: &Value) -> bool {
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .await
            .is_ok()
    }

    /// Writes `request` and reads its answer; `None` if the connection failed after
    /// the request went to the front (through HAProxy, even a dead host's connection
    /// takes the write).
    async fn call(&mut self, request: &Value) -> Option<Value> {
        if !self.write(request).await {
            return None;
        }
        let mut line = String::new();
        match tokio::time::timeout(ANSWER_TIMEOUT, self.reader.read_line(&mut line)).await {
            Ok(Ok(read)) if read > 0 => serde_json::from_str(&line).ok(),
            _ => None,
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Keys sent.
    requests: AtomicU64,
    /// Sends beyond each key's first.
    retries: AtomicU64,
    /// Connections lost after a request was written: requests that may have been
    /// running on the killed host (or were just written into its dead connection).
    lost_after_write: AtomicU64,
    /// `in_progress` answers: a retry that found its key claimed by the dead host.
    in_progress: AtomicU64,
    /// Keys never answered within their deadline.
    lost: AtomicU64,
}

/// Sends `counter` increments of `name`, each with a fresh key, retrying each key
/// until it is answered, until `stop`; the keys answered.
async fn keyed_client(
    front: SocketAddr,
    client: usize,
    name: &'static str,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<String> {
    let mut answered = Vec::new();
    let mut line = None;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("crash-{client}-{n}");
        let request = json!({"cmd": "counter", "name": name, "idempotency_key": key});
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + KEY_DEADLINE;
        let mut first = true;
        let done = loop {
            if Instant::now() > deadline {
                break false;
            }
            if !first {
                tally.retries.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            if line.is_none() {
                line = Line::connect(front).await;
            }
            let Some(conn) = line.as_mut() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match conn.call(&request).await {
                Some(answer) if answer["success"] == true => break true,
                Some(answer) => {
                    let code = answer["code"].as_str().unwrap_or_default().to_owned();
                    // Nothing of these ran: the same key again, after a pause.
                    assert!(
                        ["in_progress", "unavailable", "busy", "shutting_down"].contains(&code.as_str()),
                        "a keyed increment failed: {answer}"
                    );
                    if code == "in_progress" {
                        tally.in_progress.fetch_add(1, Ordering::Relaxed);
                    }
                    if code == "shutting_down" {
                        line = None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    tally.lost_after_write.fetch_add(1, Ordering::Relaxed);
                    line = None;
                }
            }
        };
        if done {
            answered.push(key);
        } else {
            tally.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
    answered
}

#[test]
fn a_host_killed_mid_run_loses_nothing_and_repeats_at_most_what_it_was_running() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut fleet = start_fleet();
    let front = fleet.front();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            runtime.spawn(keyed_client(
                front,
                client,
                "crash",
                Arc::clone(&stop),
                Arc::clone(&tally),
            ))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let before_kill = tally.requests.load(Ordering::Relaxed);
    assert!(before_kill > 0, "no request was sent before the kill");
    fleet.kill(0);
    std::thread::sleep(Duration::from_millis(3000));
    stop.store(true, Ordering::Relaxed);
    let mut keys = BTreeSet::new();
    for client in clients {
        let answered = runtime.block_on(client).expect("a client task");
        keys.extend(answered);
    }
    let counter = counter_in_redis(&fleet, "crash");
    let distinct = keys.len() as u64;
    let requests = tally.requests.load(Ordering::Relaxed);
    let lost = tally.lost.load(Ordering::Relaxed);
    let may_have_run = tally.lost_after_write.load(Ordering::Relaxed);
    let duplicated = counter.saturating_sub(distinct);
    println!(
        "crash: requests={requests} answered={distinct} retries={} lost={lost} \
         in_progress={} connections_lost_after_write={may_have_run} counter={counter} \
         duplicated={duplicated} (bound: {may_have_run})",
        tally.retries.load(Ordering::Relaxed),
        tally.in_progress.load(Ordering::Relaxed),
    );
    assert_eq!(lost, 0, "keyed requests were lost");
    assert_eq!(distinct, requests, "every key sent was answered");
    assert!(
        counter >= distinct,
        "an answered increment is missing: {counter} < {distinct}"
    );
    assert!(
        duplicated <= may_have_run,
        "{duplicated} increments ran twice, more than the {may_have_run} requests in flight on the killed host"
    );
    assert!(
        may_have_run > 0,
        "the kill cut no connection: did it happen mid-run?"
    );
}

#[test]
fn an_answer_lost_on_the_way_back_is_found_by_the_retry_and_the_handler_ran_once() {
    const ROUNDS: usize = 20;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let fleet = start_fleet();
    let front = fleet.front();
    let mut replayed = 0;
    runtime.block_on(async {
        for round in 0..ROUNDS {
            let name = format!("lost-{round}");
            let request =
                json!({"cmd": "counter", "name": name, "idempotency_key": format!("lost-key-{round}")});
            // Written, then the client goes away before the answer.
            let mut gone = Line::connect(front).await.expect("connects to the front");
            assert!(gone.write(&request).await, "writes the request");
            drop(gone);
            // The retry, on a new connection (leastconn may pick any host).
            let mut retry = Line::connect(front).await.expect("connects to the front");
            let answer = retry.call(&request).await.expect("the retry is answered");
            assert_eq!(
                answer,
                json!({"success": true, "name": name, "value": 1}),
                "round {round}"
            );
            replayed += 1;
        }
    });
    let ran: u64 = (0..ROUNDS)
        .map(|round| counter_in_redis(&fleet, &format!("lost-{round}")))
        .sum();
    let served: u64 = runtime.block_on(async {
        let mut served = 0;
        for i in 0..HOSTS {
            served += fleet.served(i, "counter").await;
        }
        served
    });
    println!(
        "lost answer: requests={ROUNDS} retries={ROUNDS} answered={replayed} ran={ran} \
         duplicated={} successes_counted_by_hosts={served}",
        ran.saturating_sub(ROUNDS as u64)
    );
    assert_eq!(ran, ROUNDS as u64, "each handler ran exactly once");
}
