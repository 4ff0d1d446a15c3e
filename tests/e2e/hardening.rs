//! Hardening, round 2 (issue #19): one test per defect found from outside.
//!
//! Grants that cannot be swapped after load, handler files that cannot jam or exhaust
//! the host, a deadline that holds in host calls, a total time and a waiting cap that
//! keep conversations from holding the pool, a bounded log per request, short escaped
//! echoes of what clients send, and a followed `--handlers` symlink.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_host::runtime::{Limits, Runtime};
use tcpy_host::watcher::SwapEvent;
use tcpy_tests::{
    FrameConn, LineConn, TestHost, handler_bytes, logs, next_swap, request_limits, test_limits,
};

const GRACE: Duration = Duration::from_secs(5);

/// Longest a host may take to start on a directory of hostile files.
const START_LIMIT: Duration = Duration::from_secs(20);

fn write_handler(dir: &Path, file: &str, handler: &str) {
    std::fs::write(dir.join(file), handler_bytes(handler)).expect("writes");
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("runs mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

async fn host_on(dir: &Path, limits: Limits, watch: bool) -> TestHost {
    let runtime = Runtime::new(limits).expect("runtime");
    tokio::time::timeout(START_LIMIT, TestHost::serve(runtime, dir, GRACE, watch))
        .await
        .expect("the host starts in time, whatever the directory holds")
}

async fn add(conn: &mut LineConn) -> Value {
    conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await
}

#[tokio::test]
async fn a_granted_directory_swapped_for_a_symlink_after_load_is_not_followed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_handler(dir.path(), "misbehave.wasm", "misbehave");
    std::fs::write(dir.path().join("misbehave.toml"), "[dir]\npath = \"assets\"\n").expect("writes");
    std::fs::create_dir(dir.path().join("assets")).expect("creates");
    std::fs::write(dir.path().join("assets/note.txt"), "granted").expect("writes");
    std::fs::create_dir(dir.path().join("elsewhere")).expect("creates");
    std::fs::write(dir.path().join("elsewhere/note.txt"), "redirected").expect("writes");
    let host = host_on(dir.path(), test_limits(), true).await;
    let mut conn = LineConn::connect(host.addr).await;
    let read = json!({"cmd": "misbehave", "do": "escape", "file": "/data/note.txt", "env": "X", "connect": "127.0.0.1:9"});

    let found = conn.round_trip(read.clone()).await;
    assert_eq!(found["file"], json!({"ok": "granted"}), "{found}");

    // The attack: the granted path now leads somewhere else.
    std::fs::rename(dir.path().join("assets"), dir.path().join("assets.old")).expect("renames");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("assets")).expect("links");
    for _ in 0..3 {
        let found = conn.round_trip(read.clone()).await;
        assert_eq!(
            found["file"],
            json!({"ok": "granted"}),
            "the handler must keep the directory taken at load: {found}"
        );
    }
}

#[tokio::test]
async fn fifos_named_like_handlers_neither_jam_start_up_nor_later_deploys() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_handler(dir.path(), "add.wasm", "add");
    write_handler(dir.path(), "echo.wasm", "echo");
    mkfifo(&dir.path().join("fifo.wasm"));
    mkfifo(&dir.path().join("echo.toml"));
    let host = host_on(dir.path(), test_limits(), true).await;
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(add(&mut conn).await["solution"], 3);
    for cmd in ["fifo", "echo"] {
        let response = conn.round_trip(json!({"cmd": cmd})).await;
        assert_eq!(response["code"], "unknown_command", "{cmd}: {response}");
    }

    // A FIFO appears in the live directory, then a real deploy: the deploy goes in.
    let mut swaps = host.swaps();
    mkfifo(&dir.path().join("jam.wasm"));
    let partial = dir.path().join(".tally.partial");
    std::fs::write(&partial, handler_bytes("tally")).expect("writes");
    std::fs::rename(&partial, dir.path().join("tally.wasm")).expect("renames");
    let event = next_swap(&mut swaps, "tally").await;
    assert!(matches!(event, SwapEvent::Loaded { .. }), "{event:?}");
}

#[tokio::test]
async fn dev_zero_and_huge_sparse_files_are_refused_without_being_read() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_handler(dir.path(), "add.wasm", "add");
    write_handler(dir.path(), "echo.wasm", "echo");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.wasm")).expect("links");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("echo.toml")).expect("links");
    let sparse = std::fs::File::create(dir.path().join("sparse.wasm")).expect("creates");
    sparse.set_len(4 << 30).expect("a 4 GiB sparse file");
    drop(sparse);

    let started = Instant::now();
    let host = host_on(dir.path(), test_limits(), false).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start-up took {:?}: something was read whole",
        started.elapsed()
    );
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(add(&mut conn).await["solution"], 3);
    for cmd in ["zero", "sparse", "echo"] {
        let response = conn.round_trip(json!({"cmd": cmd})).await;
        assert_eq!(response["code"], "unknown_command", "{cmd}: {response}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_waiting_in_recv_never_take_the_whole_pool() {
    const POOL: u32 = 8;
    let mut limits = test_limits();
    limits.max_in_flight = POOL;
    limits.max_waiting = Limits::default_max_waiting(POOL);
    let host = host_on(&tcpy_tests::handlers_dir(), limits, false).await;

    // Twice the pool's size in conversations, each kept alive as a patient client would.
    let mut waiting = Vec::new();
    let mut refused = 0;
    for _ in 0..2 * POOL {
        let mut conn = LineConn::connect(host.addr).await;
        conn.send(json!({"cmd": "tally"})).await;
        let first = conn.round_trip(json!({"n": 1})).await;
        if first == json!({"total": 1}) {
            waiting.push(conn);
        } else {
            assert_eq!(first["code"], "busy", "{first}");
            refused += 1;
        }
    }
    assert!(
        waiting.len() <= limits.max_waiting as usize,
        "{} conversations hold instances; the cap is {}",
        waiting.len(),
        limits.max_waiting
    );
    assert_eq!(refused + waiting.len(), 2 * POOL as usize);

    // A well-behaved client is served while they wait.
    let mut conn = LineConn::connect(host.addr).await;
    for _ in 0..5 {
        assert_eq!(add(&mut conn).await["solution"], 3);
    }
    for mut conn in waiting {
        assert_eq!(conn.round_trip(json!({"done": true})).await["success"], true);
    }
}

#[tokio::test]
async fn a_conversation_cannot_outlast_the_total_request_time() {
    let limits = request_limits(|request| {
        request.max_request_time = Duration::from_millis(800);
        request.recv_timeout = Duration::from_secs(10);
    });
    let host = host_on(&tcpy_tests::handlers_dir(), limits, false).await;
    let mut conn = LineConn::connect(host.addr).await;
    conn.send(json!({"cmd": "tally"})).await;
    let started = Instant::now();
    // A client that answers every 200 ms, well inside the recv timeout, forever.
    let ended = loop {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the conversation was never cut off"
        );
        conn.send(json!({"n": 1})).await;
        let reply = conn.recv().await.expect("a reply");
        if reply.get("total").is_none() {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ended["code"], "timeout", "{ended}");
    let message = ended["message"].as_str().expect("a message");
    assert!(message.contains("total time"), "{message}");
}

#[tokio::test]
async fn the_deadline_stops_a_handler_blocked_in_a_host_call() {
    let limits = request_limits(|request| request.timeout = Duration::from_secs(1));
    let host = host_on(&tcpy_tests::handlers_dir(), limits, false).await;
    let mut conn = LineConn::connect(host.addr).await;
    let started = Instant::now();
    let response = conn
        .round_trip(json!({"cmd": "misbehave", "do": "sleep", "ms": 45_000}))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(response["code"], "timeout", "{response}");
    assert!(elapsed < Duration::from_secs(4), "stopped only after {elapsed:?}");
    assert_eq!(add(&mut conn).await["solution"], 3);
}

#[tokio::test]
async fn one_request_logs_a_bounded_amount() {
    let (_capture, captured) = logs::capture();
    let host = host_on(&tcpy_tests::handlers_dir(), test_limits(), false).await;
    let mut conn = LineConn::connect(host.addr).await;
    let response = conn
        .round_trip(json!({"cmd": "misbehave", "do": "flood", "lines": 20_000, "size": 200}))
        .await;
    assert_eq!(response["success"], true, "{response}");
    drop(conn);
    host.assert_settles(Duration::from_secs(5)).await;

    let text = captured.text();
    let logged = text.lines().filter(|line| line.contains("ffffffffff")).count();
    let max = tcpy_host::runtime::MAX_LINES_PER_REQUEST as usize;
    assert!(
        logged <= max,
        "{logged} lines of output logged; at most {max} may be"
    );
    assert!(logged > 0, "the first lines are logged");
    assert!(
        text.len() < 1 << 20,
        "{} bytes of log for one request",
        text.len()
    );
    let summary = text
        .lines()
        .find(|line| line.contains("over its per-request budget was dropped"))
        .expect("one line says how much was dropped");
    assert!(
        summary.contains(&format!("dropped_lines={}", 20_000 - logged)),
        "{summary}"
    );
}

#[tokio::test]
async fn an_unknown_command_of_a_mebibyte_is_answered_unknown_command_briefly() {
    let host = host_on(&tcpy_tests::handlers_dir(), test_limits(), false).await;
    let name = format!("x\n{}", "y".repeat(1_000_000));
    let mut conn = FrameConn::connect(host.addr).await;
    let response = conn.round_trip_json(json!({"cmd": name})).await;
    assert_eq!(
        response["code"],
        "unknown_command",
        "{}",
        &response.to_string()[..200]
    );
    let message = response["message"].as_str().expect("a message");
    assert!(message.len() < 200, "{} bytes of message", message.len());
    assert!(message.contains("x\\ny"), "escaped: {message}");
}

#[tokio::test]
async fn a_flipped_handlers_symlink_is_followed() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let (v1, v2, current) = (
        root.path().join("v1"),
        root.path().join("v2"),
        root.path().join("current"),
    );
    std::fs::create_dir(&v1).expect("creates");
    std::fs::create_dir(&v2).expect("creates");
    write_handler(&v1, "add.wasm", "add");
    write_handler(&v2, "add.wasm", "add");
    write_handler(&v2, "echo.wasm", "echo");
    std::os::unix::fs::symlink(&v1, &current).expect("links");
    let host = host_on(&current, test_limits(), true).await;
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(
        conn.round_trip(json!({"cmd": "echo"})).await["code"],
        "unknown_command"
    );

    // The atomic flip deploy tools do: a new link renamed over the old one.
    let mut swaps = host.swaps();
    let next = root.path().join("current.next");
    std::os::unix::fs::symlink(&v2, &next).expect("links");
    std::fs::rename(&next, &current).expect("renames");
    let event = next_swap(&mut swaps, "echo").await;
    assert!(matches!(event, SwapEvent::Loaded { .. }), "{event:?}");
    let echoed = conn.round_trip(json!({"cmd": "echo", "said": "v2"})).await;
    assert_eq!(echoed["said"], "v2", "{echoed}");
    assert_eq!(add(&mut conn).await["solution"], 3);
}

#[tokio::test]
async fn a_file_name_with_a_newline_cannot_forge_log_lines() {
    let (_capture, captured) = logs::capture();
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_handler(dir.path(), "add.wasm", "add");
    write_handler(dir.path(), "evil\nINFO forged line.wasm", "add");
    let host = host_on(dir.path(), test_limits(), false).await;
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(add(&mut conn).await["solution"], 3);

    let text = captured.text();
    assert!(
        !text.lines().any(|line| line.starts_with("INFO forged")),
        "a raw newline reached the log:\n{text}"
    );
    assert!(
        text.contains("evil\\nINFO forged line.wasm"),
        "the name, escaped:\n{text}"
    );
}
