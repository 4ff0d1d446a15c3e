//! The admin port over real HTTP, its metrics read back after real requests, and the
//! drain under load over real TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_host::Server;
use tcpy_host::runtime::Runtime;
use tcpy_host::server::Shutdown;
use tcpy_tests::http::{self, send_raw};
use tcpy_tests::{LineConn, TestHost, handlers_dir, test_limits};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The value of the sample `series` (name and labels, as printed) in a Prometheus
/// text exposition; 0 if it is not there.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

#[tokio::test]
async fn every_admin_endpoint_answers_as_documented() {
    let host = TestHost::start().await;
    let admin = host.serve_admin().await;

    let live = http::get(admin, "/livez", &[]).await;
    assert_eq!(live.status, 200, "{live:?}");

    let ready = http::get(admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.header("content-type"), Some("application/json"));
    assert_eq!(ready.json()["ready"], true);
    assert_eq!(ready.json()["phase"], "serving");
    // Which version serves each command: the same as the metrics say.
    let versions = ready.json()["handlers"].clone();
    let add = versions["add"].as_str().expect("a version of add");
    assert_eq!(add.len(), 12, "{versions}");

    let metrics = http::get(admin, "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    let info = format!(r#"tcpy_handler_info{{command="add",version="{add}"}} 1"#);
    assert!(metrics.body.contains(&info), "{}", metrics.body);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    // Before any request: the families with samples, counters named as counters.
    let before = &metrics.body;
    assert!(
        before.contains("# TYPE tcpy_connections_total counter\ntcpy_connections_total 0\n"),
        "{before}"
    );
    assert!(before.contains("tcpy_requests_in_flight 0\n"), "{before}");
    let open = http::get(
        admin,
        "/metrics",
        &["Accept: application/openmetrics-text; version=1.0.0"],
    )
    .await;
    assert!(
        open.header("content-type")
            .is_some_and(|kind| kind.starts_with("application/openmetrics-text")),
        "{open:?}"
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);

    for path in ["/", "/nope", "/metrics/extra", "/livez?x=1/../"] {
        let response = http::get(admin, path, &[]).await;
        let expected = if path.starts_with("/livez") { 200 } else { 404 };
        assert_eq!(response.status, expected, "{path}: {response:?}");
    }
    let post = send_raw(
        admin,
        b"POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(post.expect("an answer").status, 404);
}

#[tokio::test]
async fn malformed_or_oversized_admin_requests_get_4xx_and_are_closed() {
    let host = TestHost::start().await;
    let admin = host.serve_admin().await;
    // `send_raw` reads to the end: each of these returns only once the server closes.
    let garbage = send_raw(admin, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert_eq!(garbage.expect("an answer").status, 400);
    let bad_header = send_raw(admin, b"GET /livez HTTP/1.1\r\nHost x\r\n\r\n").await;
    assert_eq!(bad_header.expect("an answer").status, 400);
    // A body, which no endpoint takes: 400 before it is read, and the connection closed
    // (no `Connection: close` from the client: the server closes it).
    let body = send_raw(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nxx",
    )
    .await;
    let body = body.expect("an answer");
    assert_eq!(body.status, 400, "{body:?}");
    assert_eq!(body.header("connection"), Some("close"));
    let chunked = send_raw(
        admin,
        b"GET /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(chunked.expect("an answer").status, 400);
    // A head over the cap: hyper's 431, then closed.
    let huge = format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let huge = send_raw(admin, huge.as_bytes()).await;
    assert_eq!(huge.expect("an answer").status, 431);
    // And the port still answers.
    assert_eq!(http::get(admin, "/livez", &[]).await.status, 200);
}

#[tokio::test]
async fn metrics_change_by_exactly_the_requests_made() {
    let host = TestHost::start().await;
    let admin = host.serve_admin().await;
    let before = http::get(admin, "/metrics", &[]).await.body;
    let connections_before = sample(&before, "tcpy_connections_total");

    let mut conn = LineConn::connect(host.addr).await;
    for i in 0..5 {
        let answer = conn.round_trip(json!({"cmd": "add", "x": i, "y": 1})).await;
        assert_eq!(answer["success"], true, "{answer}");
    }
    for _ in 0..3 {
        let answer = conn.round_trip(json!({"cmd": "add", "x": 1})).await;
        assert_eq!(answer["error"], true, "the handler's own error: {answer}");
    }
    for i in 0..2 {
        let answer = conn.round_trip(json!({"cmd": format!("nope-{i}")})).await;
        assert_eq!(answer["code"], "unknown_command", "{answer}");
    }
    conn.send_raw(b"{not json}\n").await;
    assert_eq!(conn.recv().await.expect("an answer")["code"], "bad_request");
    for _ in 0..2 {
        let answer = conn.round_trip(json!({"cmd": "misbehave", "do": "panic"})).await;
        assert_eq!(answer["code"], "handler_failed", "{answer}");
    }
    let answer = conn
        .round_trip(json!({"cmd": "misbehave", "do": "huge", "mib": 2}))
        .await;
    assert_eq!(answer["code"], "too_large", "a response over the limit: {answer}");
    let answer = conn.round_trip(json!({"cmd": "misbehave", "do": "loop"})).await;
    assert_eq!(answer["code"], "timeout", "{answer}");

    let after = http::get(admin, "/metrics", &[]).await.body;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        delta(r#"tcpy_requests_total{command="add",outcome="success"}"#),
        5.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_requests_total{command="add",outcome="error"}"#),
        3.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_requests_total{command="",outcome="unknown_command"}"#),
        2.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_requests_total{command="",outcome="bad_request"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_requests_total{command="misbehave",outcome="handler_failed"}"#),
        2.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_request_duration_seconds_count{command="add"}"#),
        8.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_requests_total{command="misbehave",outcome="too_large"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_requests_total{command="misbehave",outcome="timeout"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"tcpy_request_duration_seconds_count{command="misbehave"}"#),
        4.0,
        "{after}"
    );
    assert!(
        delta(r#"tcpy_request_duration_seconds_sum{command="add"}"#) > 0.0,
        "{after}"
    );
    assert!(
        !after.contains("nope-"),
        "an unknown command is no label value: {after}"
    );
    assert_eq!(
        sample(&after, "tcpy_connections_total") - connections_before,
        1.0,
        "{after}"
    );
    assert_eq!(sample(&after, "tcpy_connections_open"), 1.0, "{after}");
    assert_eq!(sample(&after, "tcpy_requests_in_flight"), 0.0, "{after}");

    let commands = host.host().registry().commands();
    assert_eq!(
        sample(&after, r#"tcpy_handler_loads_total{result="loaded"}"#),
        commands.len() as f64,
        "{after}"
    );
    let add = host.host().registry().get("add").expect("add is served");
    let version = format!(
        r#"tcpy_handler_info{{command="add",version="{}"}}"#,
        add.digest().short()
    );
    assert_eq!(sample(&after, &version), 1.0, "{after}");
    let build = format!(r#"tcpy_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&after, &build), 1.0, "{after}");

    drop(conn);
    assert!(
        tcpy_tests::wait_until(Duration::from_secs(5), || host.host().open_connections() == 0).await,
        "the connection closes"
    );
    let closed = http::get(admin, "/metrics", &[]).await.body;
    assert_eq!(sample(&closed, "tcpy_connections_open"), 0.0, "{closed}");
}

#[tokio::test]
async fn promtool_finds_the_metrics_clean() {
    let host = TestHost::start().await;
    let admin = host.serve_admin().await;
    // Every family with samples: requests of several outcomes, a histogram, loads.
    let mut conn = LineConn::connect(host.addr).await;
    conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    conn.round_trip(json!({"cmd": "nope"})).await;
    let text = http::get(admin, "/metrics", &[]).await.body;

    let promtool = tcpy_tests::tool("promtool", "prometheus");
    let output = tokio::task::spawn_blocking(move || {
        let mut check = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool runs");
        let mut stdin = check.stdin.take().expect("piped stdin");
        std::io::Write::write_all(&mut stdin, text.as_bytes()).expect("writes");
        drop(stdin);
        (check.wait_with_output().expect("promtool ran"), text)
    });
    let (output, text) = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("promtool finishes")
        .expect("the promtool task ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

/// What the clients of the drain test saw.
#[derive(Default)]
struct Seen {
    answered: AtomicUsize,
    shutting_down: AtomicUsize,
    unanswered: AtomicUsize,
    refused: AtomicUsize,
}

/// A client that sends `add` after `add` over one connection, reconnecting when the
/// host closes it, until it can no longer connect or `stop` is set.
async fn keep_adding(addr: std::net::SocketAddr, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(addr).await else {
            seen.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        loop {
            if write
                .write_all(b"{\"cmd\":\"add\",\"x\":20,\"y\":22}\n")
                .await
                .is_err()
            {
                // A write the host could not have read is not a request sent.
                break;
            }
            let mut line = String::new();
            let answer = tokio::time::timeout(Duration::from_secs(10), read.read_line(&mut line)).await;
            let answer: Value = match answer {
                Ok(Ok(n)) if n > 0 => serde_json::from_str(&line).expect("a JSON answer"),
                _ => {
                    seen.unanswered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            if answer["solution"] == 42 {
                seen.answered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            assert_eq!(answer["code"], "shutting_down", "{answer}");
            seen.shutting_down.fetch_add(1, Ordering::Relaxed);
            let mut rest = String::new();
            let closed = tokio::time::timeout(Duration::from_secs(5), read.read_line(&mut rest)).await;
            assert!(
                matches!(closed, Ok(Ok(0))),
                "closed after shutting_down, not {rest:?}"
            );
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_under_load_answers_every_request_and_readyz_fails_throughout() {
    let runtime = Runtime::new(test_limits()).expect("runtime builds");
    let server = Server::with_runtime(runtime, &handlers_dir())
        .await
        .expect("loads");
    let shutdown = Shutdown {
        drain_delay: Duration::from_millis(1000),
        grace: Duration::from_secs(5),
    };
    let mut host = TestHost::serve_server(server, shutdown, false).await;
    let admin = host.serve_admin().await;
    assert_eq!(http::get(admin, "/readyz", &[]).await.status, 200);

    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let clients: Vec<_> = (0..16)
        .map(|_| tokio::spawn(keep_adding(host.addr, Arc::clone(&seen), Arc::clone(&stop))))
        .collect();
    // A request still running when the listener closes: answered, then closed.
    let mut slow = LineConn::connect(host.addr).await;
    assert!(
        tcpy_tests::wait_until(Duration::from_secs(5), || seen.answered.load(Ordering::Relaxed)
            > 100)
        .await,
        "the load is running"
    );

    let addr = host.addr;
    let signalled = Instant::now();
    let server = host.begin_shutdown();
    let mut readyz = Vec::new();
    let mut fresh_served = false;
    while !server.is_finished() {
        readyz.push(http::get(admin, "/readyz", &[]).await.status);
        let elapsed = signalled.elapsed();
        if !fresh_served && elapsed < Duration::from_millis(500) {
            // A connection made in the drain delay is accepted and served as usual.
            let mut fresh = LineConn::connect(addr).await;
            let answer = fresh.round_trip(json!({"cmd": "add", "x": 1, "y": 1})).await;
            assert_eq!(answer["solution"], 2, "{answer}");
            fresh_served = true;
            slow.send(json!({"cmd": "misbehave", "do": "sleep", "ms": 1500}))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client ends cleanly");
    }

    assert!(fresh_served, "a connection was made within the drain delay");
    assert!(
        !readyz.is_empty() && readyz.iter().all(|&status| status == 503),
        "{readyz:?}"
    );
    let slow_answer = slow.recv().await.expect("the slow request is answered");
    assert_eq!(slow_answer["slept_ms"], 1500, "{slow_answer}");
    assert_eq!(slow.recv().await.expect("a last word")["code"], "shutting_down");
    assert_eq!(slow.recv().await, None, "then closed");

    let (answered, shutting_down) = (
        seen.answered.load(Ordering::Relaxed),
        seen.shutting_down.load(Ordering::Relaxed),
    );
    assert_eq!(
        seen.unanswered.load(Ordering::Relaxed),
        0,
        "no request left without an answer"
    );
    assert!(shutting_down >= 1, "clients were told: {shutting_down}");
    assert!(
        seen.refused.load(Ordering::Relaxed) >= 1,
        "clients end refused at the closed listener"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
    assert!(
        stopped >= shutdown.drain_delay && stopped < shutdown.drain_delay + shutdown.grace,
        "stopped after {stopped:?}"
    );
    eprintln!("drain: {answered} answered, {shutting_down} shutting_down, stopped after {stopped:?}");
}

#[tokio::test]
async fn a_hot_swap_moves_the_version_metric_and_counts_the_load() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let add = dir.path().join("add.wasm");
    std::fs::write(&add, tcpy_tests::handler_bytes("add")).expect("writes");
    let runtime = Runtime::new(test_limits()).expect("runtime builds");
    let host = TestHost::serve(runtime, dir.path(), Duration::from_secs(5), true).await;
    let admin = host.serve_admin().await;
    let version = |host: &TestHost| host.host().registry().get("add").expect("add").digest().short();
    let first = version(&host);
    let series = |version: &str| format!(r#"tcpy_handler_info{{command="add",version="{version}"}}"#);
    let before = http::get(admin, "/metrics", &[]).await.body;
    assert_eq!(sample(&before, &series(&first)), 1.0, "{before}");

    let mut swaps = host.swaps();
    let partial = dir.path().join(".add.wasm.partial");
    std::fs::write(&partial, tcpy_tests::handler_bytes("echo")).expect("writes");
    std::fs::rename(&partial, &add).expect("renames");
    tcpy_tests::next_swap(&mut swaps, "add").await;
    let second = version(&host);
    assert_ne!(first, second);
    let after = http::get(admin, "/metrics", &[]).await.body;
    assert_eq!(sample(&after, &series(&second)), 1.0, "{after}");
    assert!(
        !after.contains(&first),
        "the old version's series is gone: {after}"
    );
    let loaded = r#"tcpy_handler_loads_total{result="loaded"}"#;
    assert_eq!(sample(&after, loaded) - sample(&before, loaded), 1.0, "{after}");
}
