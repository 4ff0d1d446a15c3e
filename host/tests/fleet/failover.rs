//! Clients that fail over between real hosts (issue #15): given three addresses, one
//! dead from the start and two live hosts, 8 clients run idempotent `add` requests
//! while one live host is `kill -9`ed, and none fails; a request that is not
//! idempotent, running on a host killed under it, is reported as one that may have
//! run, and not sent to the other host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tcpy_client::{Client, ClientError, RetryPolicy};
use tcpy_tests::process::HostProcess;

/// Clients sending requests at once, each with its own connection.
const CLIENTS: u64 = 8;
/// How long they run; the host is killed halfway through.
const RUN: Duration = Duration::from_secs(2);
/// How long a host may take to load its handlers and listen.
const START_WAIT: Duration = Duration::from_secs(60);
/// Every client's step timeout, and the bound of one call with its retries: a hang
/// fails the test instead of holding it.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn handlers() -> PathBuf {
    let handlers = tcpy_tests::target_dir().join("test-handlers");
    assert!(
        handlers.join("add.wasm").is_file() && handlers.join("misbehave.wasm").is_file(),
        "no add and misbehave handlers in {}: run `cargo xtask build-handlers`",
        handlers.display()
    );
    handlers
}

/// A real `tcpy-host` on 127.0.0.1 port 0 with an admin port; its traffic and admin
/// addresses, once it listens.
struct Host {
    process: HostProcess,
    traffic: SocketAddr,
    admin: SocketAddr,
}

impl Host {
    /// Starts `n` hosts side by side, then waits for each to listen.
    fn start(n: usize) -> Vec<Self> {
        let binary = Path::new(env!("CARGO_BIN_EXE_tcpy-host"));
        let args = ["--host", "127.0.0.1", "--admin", "127.0.0.1:0"];
        let processes: Vec<_> = (0..n)
            .map(|_| HostProcess::start(binary, &handlers(), &args))
            .collect();
        processes
            .into_iter()
            .map(|process| {
                // The admin port is logged before the host listens.
                let admin = HostProcess::address(&process.wait_for("admin port", START_WAIT));
                let traffic = HostProcess::address(&process.wait_for("tcpy-host listening", START_WAIT));
                Self {
                    process,
                    traffic,
                    admin,
                }
            })
            .collect()
    }

    /// `kill -9`: no drain, no answer to what it is running.
    fn kill(&mut self) {
        self.process.child.kill().expect("kills the host");
        self.process.child.wait().expect("reaps the host");
    }

    /// The host's `/metrics` text.
    async fn metrics(&self) -> String {
        tcpy_tests::http::get(self.admin, "/metrics", &[]).await.body
    }
}

/// `127.0.0.1:PORT` where nothing listens: a port bound, then let go.
fn dead_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .to_string()
}

/// The sum of a counter's samples whose labels contain `labels` in `metrics`.
fn sum_of(metrics: &str, name: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    answered: u64,
    failed: u64,
    wrong: u64,
    retries: u64,
}

/// Idempotent `add` requests until `stop`, each checked against its sum.
async fn add_until(addresses: Vec<String>, client_id: u64, stop: Arc<AtomicBool>) -> Tally {
    let mut client = Client::with_addresses(&addresses)
        .expect("valid addresses")
        .with_timeout(STEP_TIMEOUT)
        .with_retry(RetryPolicy {
            total: CALL_TIMEOUT,
            ..RetryPolicy::default()
        });
    let mut tally = Tally::default();
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (x, y) = (client_id * 1_000_000 + n, n);
        match client.call_idempotent("add", json!({"x": x, "y": y})).await {
            Ok(response) if response["solution"] == json!(x + y) => tally.answered += 1,
            Ok(response) => {
                eprintln!("failover: client {client_id}: wrong answer to {x}+{y}: {response:?}");
                tally.wrong += 1;
            }
            Err(error) => {
                eprintln!("failover: client {client_id}: {x}+{y} failed: {error:#}");
                tally.failed += 1;
            }
        }
    }
    tally.retries = client.retries();
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_requests_survive_a_host_killed_under_them() {
    let started = Instant::now();
    let mut hosts = Host::start(2);
    let dead = dead_address();
    let addresses = vec![dead, hosts[0].traffic.to_string(), hosts[1].traffic.to_string()];
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(add_until(addresses.clone(), id, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(RUN / 2).await;
    let before_kill = sum_of(
        &hosts[0].metrics().await,
        "tcpy_requests_total",
        "command=\"add\"",
    );
    hosts[0].kill();
    tokio::time::sleep(RUN / 2).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for client in clients {
        let tally = tokio::time::timeout(CALL_TIMEOUT + STEP_TIMEOUT, client)
            .await
            .expect("every client stops in time")
            .expect("no client panicked");
        total.answered += tally.answered;
        total.failed += tally.failed;
        total.wrong += tally.wrong;
        total.retries += tally.retries;
    }
    let survivor = sum_of(
        &hosts[1].metrics().await,
        "tcpy_requests_total",
        "command=\"add\"",
    );
    println!(
        "failover: {CLIENTS} clients, {:?} over [dead, live, live], one live host killed -9 halfway",
        RUN
    );
    println!(
        "failover: requests {} answered {} failed {} wrong {} lost {}",
        total.answered + total.failed + total.wrong,
        total.answered,
        total.failed,
        total.wrong,
        total.failed
    );
    println!(
        "failover: attempts beyond the first {} (connections refused by the dead address, \
         and requests cut off by the kill, sent again)",
        total.retries
    );
    println!(
        "failover: served by the killed host before the kill >= {before_kill}, by the survivor {survivor}; \
         duplicated: unobservable for add (at most one per client in flight at the kill, <= {CLIENTS})"
    );
    println!("failover: took {:?}", started.elapsed());
    assert_eq!(total.failed, 0, "no idempotent request fails");
    assert_eq!(total.wrong, 0, "every answer is the right sum");
    assert!(total.answered > CLIENTS, "the clients made progress: {total:?}");
    assert!(survivor > 0, "the survivor took over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_running_on_a_killed_host_may_have_run_and_is_not_sent_again() {
    let started = Instant::now();
    let mut hosts = Host::start(2);
    let (victim, survivor) = (hosts[0].traffic.to_string(), hosts[1].traffic.to_string());
    // A client that starts at the victim: its start in the list is random.
    let mut client = (0..1000)
        .map(|_| Client::with_addresses([&victim, &survivor]).expect("valid addresses"))
        .find(|client| client.addr() == victim)
        .expect("a client starting at the victim, one in two");
    let request = tokio::spawn(async move {
        let answer = client
            .execute("misbehave", json!({"do": "sleep", "ms": 1500}))
            .await;
        (answer, client.retries())
    });
    // Well into the handler's sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    hosts[0].kill();
    let (answer, retries) = tokio::time::timeout(STEP_TIMEOUT, request)
        .await
        .expect("the client gives up in time")
        .expect("no panic");
    let error = answer.expect_err("the host died without answering");
    println!("failover: not idempotent, host killed mid-request: {error}");
    let ClientError::MaybeRan { addr, .. } = &error else {
        panic!("expected MaybeRan, got {error:?}");
    };
    assert_eq!(addr, &victim);
    assert_eq!(retries, 0, "not sent again");
    // Past the sleep a resent request would have had: none reached the survivor.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let metrics = hosts[1].metrics().await;
    let misbehave = sum_of(&metrics, "tcpy_requests_total", "command=\"misbehave\"");
    println!(
        "failover: misbehave requests served by the survivor {misbehave} (retries {retries}); took {:?}",
        started.elapsed()
    );
    assert_eq!(misbehave, 0, "the survivor never saw the request:\n{metrics}");
    assert!(metrics.contains("tcpy_requests_in_flight 0\n"), "{metrics}");
}
