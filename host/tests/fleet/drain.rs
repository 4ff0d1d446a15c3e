//! The drain behind a real HAProxy: a host sent SIGTERM is marked DOWN while it still
//! serves, finishes what it runs, closes its persistent connections between requests
//! with `shutting_down`, and exits, while clients reconnect to the others and not one
//! request fails. And requests through the front reach every host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use tcpy_tests::fleet::Fleet;
use tokio::runtime::{Builder, Runtime};

/// Hosts of the fleet.
const HOSTS: usize = 3;
/// Client connections sending `add` without a pause.
const CLIENTS: usize = 16;
/// The hosts' `--drain-delay` and `--grace`.
const DRAIN_DELAY: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(3);
/// Slack for an exit after drain delay + grace, on a loaded machine.
const EXIT_MARGIN: Duration = Duration::from_secs(2);
/// The host the drain test stops: the second.
const VICTIM: usize = 1;
/// Longest a client waits for any one answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

fn handlers() -> PathBuf {
    let dir = tcpy_tests::target_dir().join("test-handlers");
    assert!(
        dir.join("add.wasm").is_file(),
        "no handlers in {}: run `cargo xtask build-handlers`",
        dir.display()
    );
    dir
}

fn start_fleet() -> Fleet {
    let (delay, grace) = (flag(DRAIN_DELAY), flag(GRACE));
    Fleet::start(
        Path::new(env!("CARGO_BIN_EXE_tcpy-host")),
        &handlers(),
        HOSTS,
        &["--drain-delay", &delay, "--grace", &grace],
    )
}

/// `duration` as the host's duration flags take it.
fn flag(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// What the clients have done so far.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    failed: AtomicU64,
    /// The first failures, for the assertion message.
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut failures) = self.failures.lock()
            && failures.len() < 5
        {
            failures.push(what);
        }
    }
}

/// Starts one client on a thread of its own: `add` after `add` on one connection
/// through the front (the client reconnects by itself when a host closes it) until
/// `stop`, each answer checked.
fn spawn_client(fleet: &Fleet, stop: &Arc<AtomicBool>, tally: &Arc<Tally>) -> JoinHandle<()> {
    let mut client = fleet.client().with_timeout(CLIENT_TIMEOUT);
    let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
    std::thread::spawn(move || {
        let runtime = Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut x = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                x += 1;
                match client.execute("add", json!({"x": x, "y": 1})).await {
                    Ok(response) if response.get("solution") == Some(&json!(x + 1)) => {
                        tally.answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(response) => tally.fail(format!("answer {response:?}")),
                    Err(error) => tally.fail(format!("error {error}")),
                }
            }
        });
    })
}

/// Waits until every client has stopped: each answer is bounded by the client's
/// timeout, so a few of them at most.
fn join(clients: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + 4 * CLIENT_TIMEOUT;
    while !clients.iter().all(JoinHandle::is_finished) {
        assert!(Instant::now() < deadline, "a client is stuck");
        std::thread::sleep(Duration::from_millis(10));
    }
    for client in clients {
        client.join().expect("a client does not panic");
    }
}

/// Waits up to 10 s until the clients have answered `n` requests in all.
fn wait_answered(tally: &Tally, n: u64) {
    let started = Instant::now();
    while tally.answered.load(Ordering::SeqCst) < n {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the clients are stuck"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_draining_host_is_marked_down_in_time_and_no_request_fails() {
    let mut fleet = start_fleet();
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| spawn_client(&fleet, &stop, &tally))
        .collect();
    wait_answered(&tally, 50 * CLIENTS as u64);
    let victim = Fleet::name(VICTIM);
    let haproxy = fleet.haproxy();
    let held = haproxy.counter(&victim, "scur");
    assert!(held > 0, "{victim} holds no client connection: nothing to drain");
    let sessions_before = haproxy.counter("FRONTEND", "stot");

    let answered_at_signal = tally.answered.load(Ordering::SeqCst);
    let signalled = Instant::now();
    fleet.terminate(VICTIM);
    fleet.wait_state(VICTIM, "DOWN", DRAIN_DELAY);
    let to_down = signalled.elapsed();
    let answered_at_down = tally.answered.load(Ordering::SeqCst);
    let status = fleet.host(VICTIM).exits_within(DRAIN_DELAY + GRACE + EXIT_MARGIN);
    let to_exit = signalled.elapsed();
    assert!(status.success(), "the drained host exited with {status}");

    // The others go on serving what the drained host had.
    let answered_at_exit = tally.answered.load(Ordering::SeqCst);
    wait_answered(&tally, answered_at_exit + 50 * CLIENTS as u64);
    stop.store(true, Ordering::SeqCst);
    join(clients);

    let haproxy = fleet.haproxy();
    let reconnected = haproxy.counter("FRONTEND", "stot") - sessions_before;
    let connect_retries = haproxy.counter("BACKEND", "wretr") + haproxy.counter("BACKEND", "wredis");
    for other in (0..HOSTS).filter(|&i| i != VICTIM) {
        assert_eq!(fleet.state(other), "UP", "{}", haproxy.log());
    }
    let (answered, failed) = (
        tally.answered.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    println!(
        "drain: {CLIENTS} clients over {HOSTS} hosts; {victim} held {held} connections at SIGTERM \
         (--drain-delay {DRAIN_DELAY:?}, --grace {GRACE:?})"
    );
    println!("drain: requests {answered}, failed {failed}");
    println!(
        "drain: answered between SIGTERM and DOWN {}, between DOWN and exit {}",
        answered_at_down - answered_at_signal,
        answered_at_exit - answered_at_down
    );
    println!(
        "drain: retried (re-sent on a new connection after shutting_down, as sessions opened at the front) {reconnected}; \
         HAProxy connect retries/redispatches {connect_retries}"
    );
    println!("drain: SIGTERM to DOWN {to_down:?}, SIGTERM to exit {to_exit:?}");
    let failures = tally
        .failures
        .lock()
        .map(|list| list.join("; "))
        .unwrap_or_default();
    assert_eq!(failed, 0, "failed requests: {failures}");
    assert!(
        reconnected >= held,
        "{held} connections were on {victim}, {reconnected} came back"
    );
}

#[test]
fn requests_through_the_front_reach_every_host() {
    let fleet = start_fleet();
    let runtime = Runtime::new().expect("a runtime");
    let per_host = runtime.block_on(async {
        // Connections held open: `leastconn` gives each new one to the host with the
        // fewest, so they spread evenly.
        let mut clients = Vec::new();
        for x in 0..4 * HOSTS as i64 {
            let mut client = fleet.client().with_timeout(CLIENT_TIMEOUT);
            let response = client
                .call("add", json!({"x": x, "y": 1}))
                .await
                .expect("an answer");
            assert_eq!(response["solution"], x + 1);
            clients.push(client);
        }
        let mut per_host = Vec::new();
        for i in 0..HOSTS {
            per_host.push(fleet.served(i, "add").await);
        }
        per_host
    });
    println!(
        "drain: {} requests through the front, per host {per_host:?}",
        4 * HOSTS
    );
    assert_eq!(per_host.iter().sum::<u64>(), 4 * HOSTS as u64);
    assert!(
        per_host.iter().all(|&n| n > 0),
        "a host got nothing: {per_host:?}"
    );
}
