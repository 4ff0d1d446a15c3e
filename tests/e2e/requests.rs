//! Plain requests in every framing and encoding.

use serde_json::{Value, json};
use tcpy_tests::{FrameConn, LineConn, TestHost, object};

#[tokio::test]
async fn add_answers_the_tutorial_through_the_client() {
    let host = TestHost::start().await;
    let mut client = host.client();
    let response = client
        .execute("add", json!({"x": 1, "y": 2}))
        .await
        .expect("executes");
    assert_eq!(Value::Object(response), json!({"success": true, "solution": 3}));
}

#[tokio::test]
async fn frame_mode_json_on_a_persistent_connection() {
    let host = TestHost::start().await;
    let mut conn = FrameConn::connect(host.addr).await;
    for (x, y) in [(1, 2), (-5, 5), (40, 2)] {
        let response = conn.round_trip_json(json!({"cmd": "add", "x": x, "y": y})).await;
        assert_eq!(response, json!({"success": true, "solution": x + y}));
    }
    let echoed = conn
        .round_trip_json(json!({"cmd": "echo", "name": "ann", "n": [1, 2]}))
        .await;
    assert_eq!(echoed, json!({"success": true, "name": "ann", "n": [1, 2]}));
}

#[tokio::test]
async fn frame_mode_msgpack_as_tcpy_0_0_x_sends_it() {
    let host = TestHost::start().await;
    let mut conn = FrameConn::connect(host.addr).await;
    // tcpy 0.0.x: msgpack map, `cmd` beside the params, one request per connection.
    let request = object(json!({"cmd": "add", "x": 20, "y": 22}));
    conn.send_body(&rmp_serde::to_vec_named(&request).expect("encodes"))
        .await;
    let body = conn.recv_body().await.expect("a response");
    assert!(
        (0x80..=0x8f).contains(&body[0]),
        "answered in msgpack, got first byte {:#x}",
        body[0]
    );
    let response: Value = rmp_serde::from_slice(&body).expect("msgpack response");
    assert_eq!(response, json!({"success": true, "solution": 42}));

    // The same connection may switch to JSON for its next request.
    let response = conn.round_trip_json(json!({"cmd": "add", "x": 1, "y": 1})).await;
    assert_eq!(response, json!({"success": true, "solution": 2}));
}

#[tokio::test]
async fn line_mode_through_a_raw_socket() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    conn.send_raw(b"{\"cmd\":\"add\",\"x\":1,\"y\":2}\r\n").await;
    assert_eq!(conn.recv().await, Some(json!({"success": true, "solution": 3})));
    let response = conn.round_trip(json!({"cmd": "echo", "greeting": "hi"})).await;
    assert_eq!(response, json!({"success": true, "greeting": "hi"}));
}

#[tokio::test]
async fn unknown_command_is_named_and_the_connection_goes_on() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    let response = conn.round_trip(json!({"cmd": "nope", "x": 1})).await;
    assert_eq!(response["error"], true);
    assert_eq!(response["code"], "unknown_command");
    assert!(response["message"].as_str().expect("a message").contains("nope"));
    let response = conn.round_trip(json!({"cmd": "add", "x": 2, "y": 3})).await;
    assert_eq!(response["solution"], 5);
}

#[tokio::test]
async fn params_that_do_not_fit_name_the_field() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    let response = conn.round_trip(json!({"cmd": "add", "x": 1})).await;
    assert_eq!(response["error"], true);
    let message = response["message"].as_str().expect("a message");
    assert!(message.contains('y'), "names the missing field: {message}");
}
