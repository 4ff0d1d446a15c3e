//! Hostile clients (issue #4): random bytes, truncated, oversized and absurdly nested
//! messages, malformed msgpack and `cmd`s, slowloris and idle connections, too many
//! connections, clients that vanish mid-request. Each gets an error answer or a clean
//! close — never a hang — and the host goes on serving everybody else. The clients
//! themselves live in [`tcpy_tests::hostile`], shared with the `leaks` test.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tcpy_host::ConnectionLimits;
use tcpy_protocol::Framing;
use tcpy_tests::hostile::{self, Close, Ending, XorShift};
use tcpy_tests::{FrameConn, LineConn, TestHost, object, wait_until};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// How long a host may take to settle (close a connection, end a request) after a
/// client leaves: generous, for a loaded machine; the waits end as soon as it has.
const SETTLE: Duration = Duration::from_secs(10);

/// An upper bound on how late a timeout of a few hundred milliseconds may fire on a
/// loaded 2-core machine: generous, yet far below the 10 s a missing timeout takes.
const LATE: Duration = Duration::from_secs(3);

#[tokio::test]
async fn random_bytes_get_errors_or_a_close_never_a_hang() {
    const CONNECTIONS: u64 = 300;
    const SEED: u64 = 0x7C_2014;
    let host = TestHost::start().await;
    let addr = host.addr;
    let endings: Vec<Ending> = futures::stream::iter(0..CONNECTIONS)
        .map(|i| async move { hostile::random_client(addr, &mut XorShift::new(SEED + i)).await })
        .buffer_unordered(8)
        .collect()
        .await;

    // The inputs reach past the first checks: some are answered, some too large, some
    // closed without a word (cut off).
    let answered = endings.iter().filter(|e| !e.responses.is_empty()).count();
    let too_large = endings
        .iter()
        .filter(|e| e.codes().contains(&"too_large"))
        .count();
    let silent = endings.iter().filter(|e| e.responses.is_empty()).count();
    let resets = endings.iter().filter(|e| e.close == Close::Reset).count();
    println!(
        "{CONNECTIONS} random connections: {answered} answered, {too_large} too_large, \
         {silent} closed silently, {resets} reset"
    );
    assert!(
        answered > 0 && too_large > 0 && silent > 0,
        "the inputs are varied enough"
    );

    hostile::assert_add_works(addr).await;
    host.assert_settles(SETTLE).await;
}

#[tokio::test]
async fn a_length_prefix_of_4_gib_gets_too_large_then_close() {
    let host = TestHost::start().await;
    let mut conn = FrameConn::connect(host.addr).await;
    conn.send_raw(&hostile::HUGE_LENGTH_PREFIX).await;
    let response = hostile::decode_body(&conn.recv_body().await.expect("an answer"));
    assert_eq!(response["code"], "too_large", "{response}");
    assert_eq!(conn.recv_body().await, None, "closed after too_large");
    hostile::assert_add_works(host.addr).await;
}

#[tokio::test]
async fn truncated_frames_and_lines_close_cleanly() {
    let host = TestHost::start().await;
    let addr = host.addr;

    // Half a frame, then the client's end of the stream: closed without a word.
    let ending = hostile::send_then_shutdown(addr, &hostile::truncated_frame()).await;
    assert_eq!(
        (ending.responses.len(), ending.close),
        (0, Close::Eof),
        "{ending:?}"
    );

    // A whole request, then half a frame: the request is answered, then the close.
    let mut bytes = hostile::frame(br#"{"cmd":"add","x":1,"y":2}"#);
    bytes.extend(hostile::truncated_frame());
    let ending = hostile::send_then_shutdown(addr, &bytes).await;
    assert_eq!(ending.responses, [json!({"success": true, "solution": 3})]);
    assert_eq!(ending.close, Close::Eof);

    // The last line needs no newline, so half a line is a (bad) message of its own.
    let ending = hostile::send_then_shutdown(addr, hostile::TRUNCATED_LINE).await;
    assert_eq!(ending.codes(), ["bad_request"], "{ending:?}");
    assert_eq!(ending.close, Close::Eof);

    // Clients that send half a message and vanish.
    hostile::send_then_drop(addr, &hostile::truncated_frame()).await;
    hostile::send_then_drop(addr, hostile::TRUNCATED_LINE).await;

    host.assert_settles(SETTLE).await;
    hostile::assert_add_works(addr).await;
}

#[tokio::test]
async fn json_nested_100_000_deep_gets_bad_request_and_the_connection_goes_on() {
    const DEPTH: usize = 100_000;
    let host = TestHost::start().await;

    let mut line = LineConn::connect(host.addr).await;
    let mut frames = FrameConn::connect(host.addr).await;
    for open in *b"[{" {
        let body = hostile::deep_json(DEPTH, open);
        let what = format!("{DEPTH} levels of {}", open as char);

        let mut with_newline = body.clone();
        with_newline.push(b'\n');
        line.send_raw(&with_newline).await;
        let response = line.recv().await.expect("an answer, not a closed connection");
        assert_eq!(response["code"], "bad_request", "line mode, {what}: {response}");

        frames.send_body(&body).await;
        let response = hostile::decode_body(&frames.recv_body().await.expect("an answer"));
        assert_eq!(response["code"], "bad_request", "frame mode, {what}: {response}");
    }
    let request = json!({"cmd": "add", "x": 1, "y": 2});
    assert_eq!(line.round_trip(request.clone()).await["solution"], 3);
    assert_eq!(frames.round_trip_json(request).await["solution"], 3);
}

#[tokio::test]
async fn a_10_mb_line_gets_too_large_then_close() {
    let host = TestHost::start().await;
    let ending = hostile::send_huge_line(host.addr, 10 << 20).await;
    assert_eq!(ending.codes(), ["too_large"], "{ending:?}");
    hostile::assert_add_works(host.addr).await;
    host.assert_settles(SETTLE).await;
}

#[tokio::test]
async fn msgpack_with_no_json_form_gets_bad_request() {
    let host = TestHost::start().await;
    let mut conn = FrameConn::connect(host.addr).await;
    // {"cmd": "echo", ...} and one more entry, each with no JSON form.
    let start: &[u8] = &[0x82, 0xa3, b'c', b'm', b'd', 0xa4, b'e', b'c', b'h', b'o'];
    let cases: [(&str, &[u8]); 6] = [
        ("binary", &[0xa1, b'b', 0xc4, 0x02, 0x01, 0x02]),
        ("fixext 1", &[0xa1, b'e', 0xd4, 0x01, 0x00]),
        ("ext 8", &[0xa1, b'e', 0xc7, 0x03, 0x05, 1, 2, 3]),
        ("a timestamp", &[0xa1, b't', 0xd6, 0xff, 0, 0, 0, 1]),
        ("an integer key", &[0x01, 0x02]),
        ("a binary key", &[0xc4, 0x01, b'k', 0x02]),
    ];
    for (what, entry) in cases {
        let body = [start, entry].concat();
        conn.send_body(&body).await;
        let response: Value =
            rmp_serde::from_slice(&conn.recv_body().await.expect("an answer")).expect("a msgpack answer");
        assert_eq!(response["code"], "bad_request", "{what}: {response}");
    }
    // A map key that is not a string, nested.
    let nested = [start, &[0xa1, b'm', 0x81, 0xc3, 0x01]].concat();
    conn.send_body(&nested).await;
    let response: Value =
        rmp_serde::from_slice(&conn.recv_body().await.expect("an answer")).expect("msgpack");
    assert_eq!(
        response["code"], "bad_request",
        "a boolean key, nested: {response}"
    );

    // The connection stays open; the same request with a string does fine.
    let fine = [start, &[0xa1, b's', 0xa2, b'o', b'k']].concat();
    conn.send_body(&fine).await;
    let response: Value =
        rmp_serde::from_slice(&conn.recv_body().await.expect("an answer")).expect("msgpack");
    assert_eq!(response, json!({"success": true, "s": "ok"}));
}

#[tokio::test]
async fn a_cmd_that_is_not_a_string_gets_bad_request() {
    let host = TestHost::start().await;
    let mut line = LineConn::connect(host.addr).await;
    let mut frames = FrameConn::connect(host.addr).await;
    let cmds = [
        json!(7),
        json!(1.5),
        json!(["add"]),
        json!(null),
        json!({"name": "add"}),
        json!(true),
    ];
    for cmd in cmds {
        let request = json!({"cmd": cmd, "x": 1, "y": 2});
        let response = line.round_trip(request.clone()).await;
        assert_eq!(
            response["code"], "bad_request",
            "line mode, cmd {cmd}: {response}"
        );

        let response = frames.round_trip_json(request.clone()).await;
        assert_eq!(
            response["code"], "bad_request",
            "JSON frame, cmd {cmd}: {response}"
        );

        frames
            .send_body(&rmp_serde::to_vec_named(&object(request)).expect("encodes"))
            .await;
        let response = hostile::decode_body(&frames.recv_body().await.expect("an answer"));
        assert_eq!(
            response["code"], "bad_request",
            "msgpack frame, cmd {cmd}: {response}"
        );
    }
    let request = json!({"cmd": "add", "x": 1, "y": 2});
    assert_eq!(line.round_trip(request.clone()).await["solution"], 3);
    assert_eq!(frames.round_trip_json(request).await["solution"], 3);
}

/// What a slowloris client saw: the host's answers, how many bytes it got to send, and
/// how long after its first byte the host closed the connection.
struct Trickled {
    ending: Ending,
    sent: usize,
    closed_after: Duration,
}

/// Sends `bytes` one at a time, one every `every`, on a new connection, until the host
/// closes it; says so on `started` once the first byte is out.
async fn trickle(
    addr: std::net::SocketAddr,
    bytes: Vec<u8>,
    every: Duration,
    started: oneshot::Sender<()>,
) -> Trickled {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (mut read, mut write) = stream.into_split();
    let reading = hostile::read_to_close(&mut read, hostile::framing_of(&bytes));
    tokio::pin!(reading);
    let mut ticks = tokio::time::interval(every);
    let mut started = Some(started);
    let mut first_byte = None;
    let mut sent = 0;
    let mut writing = true;
    let ending = loop {
        tokio::select! {
            ending = &mut reading => break ending,
            _ = ticks.tick(), if writing && sent < bytes.len() => {
                first_byte.get_or_insert_with(Instant::now);
                // A write after the host has closed fails: the reading ends soon.
                writing = write.write_all(&bytes[sent..=sent]).await.is_ok();
                sent += usize::from(writing);
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
            }
        }
    };
    Trickled {
        ending,
        sent,
        closed_after: first_byte.expect("a byte was sent").elapsed(),
    }
}

/// A host whose read timeout is `read_timeout`, and whose idle timeout is far longer.
async fn host_with_read_timeout(read_timeout: Duration) -> TestHost {
    TestHost::start_with_connection_limits(ConnectionLimits {
        read_timeout,
        idle_timeout: Duration::from_secs(60),
        ..ConnectionLimits::default()
    })
    .await
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let read_timeout = Duration::from_millis(500);
    let host = host_with_read_timeout(read_timeout).await;
    let request = json!({"cmd": "add", "x": 1, "y": 2});
    let line = format!("{request}\n").into_bytes();
    let frame = hostile::frame(request.to_string().as_bytes());
    for (framing, bytes) in [("line", line), ("frame", frame)] {
        let (started, first_byte_sent) = oneshot::channel();
        let slow = tokio::spawn(trickle(
            host.addr,
            bytes.clone(),
            Duration::from_millis(200),
            started,
        ));
        first_byte_sent.await.expect("the slow client starts");

        // Meanwhile, another client is served as usual.
        let mut other = LineConn::connect(host.addr).await;
        for i in 0..5 {
            let response = other.round_trip(json!({"cmd": "add", "x": i, "y": 1})).await;
            assert_eq!(response["solution"], i + 1, "{framing}: {response}");
        }

        let slow = slow.await.expect("the slow client ends");
        assert_eq!(
            slow.ending.codes(),
            ["read_timeout"],
            "{framing}: {:?}",
            slow.ending
        );
        assert!(
            slow.sent < bytes.len(),
            "{framing}: cut off before the message was whole ({} of {} bytes)",
            slow.sent,
            bytes.len()
        );
        assert!(
            slow.closed_after >= read_timeout.mul_f32(0.9) && slow.closed_after < LATE,
            "{framing}: closed {:?} after the first byte; the read timeout is {read_timeout:?}",
            slow.closed_after
        );
        println!(
            "{framing} mode: slowloris closed {:?} after its first byte, {} bytes in",
            slow.closed_after, slow.sent
        );
    }
    host.assert_settles(SETTLE).await;
}

#[tokio::test]
async fn a_client_pausing_between_whole_requests_is_not_cut_off() {
    let read_timeout = Duration::from_millis(500);
    let host = host_with_read_timeout(read_timeout).await;
    let mut line = LineConn::connect(host.addr).await;
    let mut frames = FrameConn::connect(host.addr).await;
    for i in 0..3 {
        let request = json!({"cmd": "add", "x": i, "y": 1});
        assert_eq!(line.round_trip(request.clone()).await["solution"], i + 1);
        assert_eq!(frames.round_trip_json(request).await["solution"], i + 1);
        // The pause is what is tested: well past the read timeout, under the idle one.
        tokio::time::sleep(read_timeout * 2).await;
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_after_the_write_timeout() {
    /// Requests sent at most: 100 MiB of them, 100 MiB of answers, far more than
    /// the sockets on both sides can buffer.
    const REQUESTS: usize = 400;
    let host = TestHost::start_with_connection_limits(ConnectionLimits {
        write_timeout: Duration::from_millis(500),
        ..ConnectionLimits::default()
    })
    .await;
    let stream = TcpStream::connect(host.addr).await.expect("connects");
    // The read half is kept, never read: the host's answers pile up.
    let (_unread, mut write) = stream.into_split();
    let request = format!("{}\n", json!({"cmd": "echo", "pad": "x".repeat(256 << 10)}));
    let writer = tokio::spawn(async move {
        for sent in 0..REQUESTS {
            if write.write_all(request.as_bytes()).await.is_err() {
                return sent;
            }
        }
        REQUESTS
    });

    let state = host.host();
    assert!(
        wait_until(SETTLE, || state.open_connections() == 0).await,
        "the host still holds the connection of a client that does not read"
    );
    let sent = tokio::time::timeout(SETTLE, writer)
        .await
        .expect("the client's writes fail once the host has closed")
        .expect("the writer does not panic");
    assert!(sent < REQUESTS, "cut off after {sent} requests");
    println!("a client that never reads was cut off after sending {sent} requests of 256 KiB");
    host.assert_settles(SETTLE).await;
}

/// A host that closes connections idle for 300 ms.
async fn impatient_host() -> (TestHost, Duration) {
    let idle_timeout = Duration::from_millis(300);
    let host = TestHost::start_with_connection_limits(ConnectionLimits {
        idle_timeout,
        ..ConnectionLimits::default()
    })
    .await;
    (host, idle_timeout)
}

#[tokio::test]
async fn an_idle_connection_gets_idle_timeout_then_eof() {
    let (host, idle_timeout) = impatient_host().await;

    // A client that never says a word is answered in frame mode.
    let mut silent = TcpStream::connect(host.addr).await.expect("connects");
    let ending = hostile::read_to_close(&mut silent, Framing::Frame).await;
    assert_eq!(ending.codes(), ["idle_timeout"], "{ending:?}");
    assert_eq!(ending.close, Close::Eof);
    assert!(
        ending.after >= idle_timeout.mul_f32(0.8) && ending.after < LATE,
        "closed after {:?}; the idle timeout is {idle_timeout:?}",
        ending.after
    );

    // A line-mode client that went quiet after a request is told in its own framing.
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(
        conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await["solution"],
        3
    );
    let quiet_since = Instant::now();
    let response = conn.recv().await.expect("the idle_timeout answer");
    assert_eq!(response["code"], "idle_timeout", "{response}");
    assert_eq!(response["error"], true);
    assert!(
        quiet_since.elapsed() < LATE,
        "closed after {:?}",
        quiet_since.elapsed()
    );
    assert_eq!(conn.recv().await, None, "closed after idle_timeout");
    host.assert_settles(SETTLE).await;
}

#[tokio::test]
async fn the_client_library_resends_once_after_idle_timeout() {
    let (host, _) = impatient_host().await;
    let mut client = host.client();
    let response = client
        .execute("add", json!({"x": 1, "y": 2}))
        .await
        .expect("the first add");
    assert_eq!(Value::Object(response), json!({"success": true, "solution": 3}));

    // The host closes the idle connection; the client still holds its end.
    let state = host.host();
    assert!(
        wait_until(SETTLE, || state.open_connections() == 0).await,
        "the idle connection is closed"
    );
    assert!(client.is_connected(), "the client has not noticed yet");

    let response = client
        .execute("add", json!({"x": 2, "y": 3}))
        .await
        .expect("the add after idle_timeout is resent");
    assert_eq!(Value::Object(response), json!({"success": true, "solution": 5}));
}

/// The connections a host limited to `max` holds open, each served once.
async fn fill_up(host: &TestHost, max: usize) -> Vec<LineConn> {
    let mut held = Vec::new();
    for i in 0..max {
        let mut conn = LineConn::connect(host.addr).await;
        let response = conn.round_trip(json!({"cmd": "add", "x": i, "y": 0})).await;
        assert_eq!(response["solution"], i, "connection {i} of {max} is served");
        held.push(conn);
    }
    assert_eq!(host.host().open_connections(), max);
    held
}

#[tokio::test]
async fn connections_past_the_limit_get_busy_in_their_own_framing() {
    const MAX: usize = 4;
    let host = TestHost::start_with_connection_limits(ConnectionLimits {
        max_connections: MAX as u32,
        ..ConnectionLimits::default()
    })
    .await;
    let mut held = fill_up(&host, MAX).await;
    let request = json!({"cmd": "add", "x": 1, "y": 2});
    let is_busy = |response: &Value| {
        response["error"] == true
            && response["code"] == "busy"
            && response["message"]
                .as_str()
                .is_some_and(|m| m.contains("the limit is 4"))
    };

    let mut line = LineConn::connect(host.addr).await;
    let response = line.round_trip(request.clone()).await;
    assert!(is_busy(&response), "line mode: {response}");
    assert_eq!(line.recv().await, None, "line mode: closed after busy");

    let mut frames = FrameConn::connect(host.addr).await;
    let response = frames.round_trip_json(request.clone()).await;
    assert!(is_busy(&response), "JSON frame: {response}");
    assert_eq!(frames.recv_body().await, None, "JSON frame: closed after busy");

    let mut frames = FrameConn::connect(host.addr).await;
    frames
        .send_body(&rmp_serde::to_vec_named(&object(request.clone())).expect("encodes"))
        .await;
    let body = frames.recv_body().await.expect("an answer");
    assert_ne!(body.first(), Some(&b'{'), "answered in msgpack");
    let response = hostile::decode_body(&body);
    assert!(is_busy(&response), "msgpack frame: {response}");
    assert_eq!(frames.recv_body().await, None, "msgpack frame: closed after busy");

    // One that says nothing is not answered, but cannot hold on either.
    let mut silent = TcpStream::connect(host.addr).await.expect("connects");
    let ending = hostile::read_to_close(&mut silent, Framing::Frame).await;
    assert!(ending.responses.is_empty(), "{ending:?}");
    // The host waits 1 s for a refused client's first byte.
    let refusal_wait = Duration::from_secs(1);
    assert!(
        ending.after < refusal_wait + LATE,
        "closed after {:?}",
        ending.after
    );

    // The refused never counted; the four held are still served.
    assert_eq!(host.host().open_connections(), MAX);
    for conn in &mut held {
        assert_eq!(conn.round_trip(request.clone()).await["solution"], 3);
    }

    // One leaves: a newcomer is served.
    drop(held.pop());
    let state = host.host();
    assert!(
        wait_until(SETTLE, || state.open_connections() == MAX - 1).await,
        "a slot frees up: {} open",
        state.open_connections()
    );
    let mut newcomer = LineConn::connect(host.addr).await;
    assert_eq!(newcomer.round_trip(request).await["solution"], 3);
}

#[tokio::test]
async fn a_client_closing_mid_request_leaves_nothing_behind() {
    let host = TestHost::start().await;
    let state = host.host();
    let conn = hostile::start_sleep(host.addr, 500).await;
    assert!(
        wait_until(SETTLE, || state.requests_in_flight() == 1).await,
        "the sleep is running"
    );
    assert_eq!(state.open_connections(), 1);
    drop(conn);
    host.assert_settles(SETTLE).await;
    hostile::assert_add_works(host.addr).await;
}

#[tokio::test]
async fn a_client_closing_mid_conversation_leaves_nothing_behind() {
    let host = TestHost::start().await;
    let state = host.host();
    let conn = hostile::start_tally(host.addr).await;
    assert_eq!(state.requests_in_flight(), 1, "the tally waits in recv()");
    assert_eq!(state.open_connections(), 1);
    drop(conn);
    host.assert_settles(SETTLE).await;
    hostile::assert_add_works(host.addr).await;
}
