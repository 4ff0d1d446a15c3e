//! Malformed input gets `bad_request` and the connection stays usable; oversized
//! input gets `too_large` and the connection closes.

use serde_json::json;
use tcpy_tests::{FrameConn, LineConn, TestHost};

#[tokio::test]
async fn malformed_lines_get_bad_request_and_the_connection_goes_on() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    let bad: [&[u8]; 5] = [
        b"{\"cmd\": \"add\", \"x\": \n",  // bad JSON
        b"{\"x\": 1, \"y\": 2}\n",        // no cmd
        b"{\"cmd\": 7}\n",                // cmd not a string
        b"{\"cmd\": \"add\"}\xff\xfe\n",  // invalid UTF-8
        b"{\"cmd\": \"add\"} trailing\n", // more than one value
    ];
    for line in bad {
        conn.send_raw(line).await;
        let response = conn.recv().await.expect("an answer, not a closed connection");
        assert_eq!(
            response["code"],
            "bad_request",
            "for {:?}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(response["error"], true);
    }
    let response = conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["solution"], 3);
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_goes_on() {
    let host = TestHost::start().await;
    let mut conn = FrameConn::connect(host.addr).await;
    for body in [&b"{not json"[..], b"[1, 2, 3]", b"{\"x\": 1}", b"\x01\x02\x03"] {
        conn.send_body(body).await;
        let response: serde_json::Value =
            serde_json::from_slice(&conn.recv_body().await.expect("an answer")).expect("JSON");
        assert_eq!(
            response["code"],
            "bad_request",
            "for {:?}",
            String::from_utf8_lossy(body)
        );
    }
    // msgpack with a binary value has no JSON form.
    conn.send_body(&[
        0x82, 0xa3, b'c', b'm', b'd', 0xa3, b'a', b'd', b'd', 0xa1, b'x', 0xc4, 0x01, 0x00,
    ])
    .await;
    let response: serde_json::Value =
        rmp_serde::from_slice(&conn.recv_body().await.expect("an answer")).expect("msgpack");
    assert_eq!(response["code"], "bad_request");

    let response = conn.round_trip_json(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["solution"], 3);
}

#[tokio::test]
async fn an_oversized_frame_gets_too_large_then_the_connection_closes() {
    let host = TestHost::start().await;
    let mut conn = FrameConn::connect(host.addr).await;
    let limit = host.host_limits().max_message;
    conn.send_raw(&u32::try_from(limit + 1).expect("fits").to_be_bytes())
        .await;
    let response: serde_json::Value =
        serde_json::from_slice(&conn.recv_body().await.expect("an answer")).expect("JSON");
    assert_eq!(response["code"], "too_large");
    assert_eq!(conn.recv_body().await, None, "closed after too_large");

    // Other connections are untouched.
    let mut other = FrameConn::connect(host.addr).await;
    let response = other.round_trip_json(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["solution"], 3);
}

#[tokio::test]
async fn an_oversized_line_gets_too_large_then_the_connection_closes() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    let padding = "x".repeat(host.host_limits().max_message + 10);
    conn.send_raw(format!("{{\"cmd\": \"echo\", \"pad\": \"{padding}\"}}\n").as_bytes())
        .await;
    let response = conn.recv().await.expect("an answer");
    assert_eq!(response["code"], "too_large");
    assert_eq!(conn.recv().await, None, "closed after too_large");
}
