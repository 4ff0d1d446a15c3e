//! Handlers that talk back: `send` and `recv` over the request's own connection.

use serde_json::json;
use tcpy_tests::{FrameConn, LineConn, TestHost};

#[tokio::test]
async fn a_running_total_over_several_rounds() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    conn.send(json!({"cmd": "tally", "start": 10})).await;
    let mut expected = 10;
    for n in [1, 2, 3, 4, 5] {
        expected += n;
        let reply = conn.round_trip(json!({"n": n})).await;
        assert_eq!(reply, json!({"total": expected}));
    }
    let done = conn.round_trip(json!({"done": true})).await;
    assert_eq!(done, json!({"success": true, "total": expected, "count": 5}));
    // The connection serves the next request after the conversation.
    let response = conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["solution"], 3);
}

#[tokio::test]
async fn conversations_through_the_client_library() {
    let host = TestHost::start().await;
    let mut client = host.client();
    let mut conversation = client.conversation("tally", json!({})).await.expect("starts");
    for n in 1..=3 {
        conversation
            .send(tcpy_tests::object(json!({"n": n})))
            .await
            .expect("sends");
        match conversation.recv().await.expect("a reply") {
            tcpy_client::Turn::Message(reply) => assert_eq!(reply["total"], json!(n * (n + 1) / 2)),
            tcpy_client::Turn::Response(response) => panic!("ended early: {response:?}"),
        }
    }
    conversation
        .send(tcpy_tests::object(json!({"done": true})))
        .await
        .expect("sends");
    match conversation.recv().await.expect("the response") {
        tcpy_client::Turn::Response(response) => assert_eq!(response["total"], 6),
        tcpy_client::Turn::Message(message) => panic!("expected the response, got {message:?}"),
    }
}

#[tokio::test]
async fn many_conversations_run_at_once() {
    let host = TestHost::start().await;
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut conn = LineConn::connect(host.addr).await;
        conn.send(json!({"cmd": "tally", "start": i * 1000})).await;
        conns.push(conn);
    }
    // Interleave the rounds: every conversation is waiting in recv() at once.
    for round in 1..=3 {
        for (i, conn) in conns.iter_mut().enumerate() {
            let reply = conn.round_trip(json!({"n": round})).await;
            let expected = i as i64 * 1000 + (1..=round).sum::<i64>();
            assert_eq!(reply, json!({"total": expected}));
        }
    }
    for conn in &mut conns {
        assert_eq!(conn.round_trip(json!({"done": true})).await["success"], true);
    }
}

#[tokio::test]
async fn conversation_messages_follow_the_request_encoding() {
    let host = TestHost::start().await;
    let mut conn = FrameConn::connect(host.addr).await;
    let request = tcpy_tests::object(json!({"cmd": "tally"}));
    conn.send_body(&rmp_serde::to_vec_named(&request).expect("encodes"))
        .await;
    conn.send_body(&rmp_serde::to_vec_named(&tcpy_tests::object(json!({"n": 7}))).expect("encodes"))
        .await;
    let reply: serde_json::Value =
        rmp_serde::from_slice(&conn.recv_body().await.expect("a reply")).expect("msgpack");
    assert_eq!(reply, json!({"total": 7}));
    conn.send_body(&rmp_serde::to_vec_named(&tcpy_tests::object(json!({"done": true}))).expect("encodes"))
        .await;
    let done: serde_json::Value =
        rmp_serde::from_slice(&conn.recv_body().await.expect("done")).expect("msgpack");
    assert_eq!(done["total"], 7);
}

#[tokio::test]
async fn a_malformed_message_mid_conversation_ends_the_request_with_bad_request() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    conn.send(json!({"cmd": "tally"})).await;
    conn.send_raw(b"{\"n\": oops}\n").await;
    let response = conn.recv().await.expect("an answer");
    assert_eq!(response["code"], "bad_request");
    let response = conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["solution"], 3);
}

#[tokio::test]
async fn a_handler_cannot_send_a_message_that_looks_like_the_response() {
    let host = TestHost::start().await;
    let mut conn = LineConn::connect(host.addr).await;
    let response = conn
        .round_trip(json!({"cmd": "misbehave", "do": "send_response"}))
        .await;
    assert_eq!(response["success"], true);
    let refusal = response["send_error"].as_str().expect("send was refused");
    assert!(refusal.contains("response"), "says why: {refusal}");
}
