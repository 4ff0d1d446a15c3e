//! One-shot requests: execute, call, the raw protocol, and failures.

use std::time::Duration;

use serde_json::{Value, json};
use tcpy_client::{ClientError, Encoding, ErrorCode, Operation, ServerCode};
use tcpy_protocol::{CodecError, error_response};

use crate::fake::{FakeServer, client_of_nothing, object};

#[tokio::test]
async fn execute_returns_the_response_on_one_persistent_connection() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        let message = peer.recv_message().await.expect("a request");
        assert_eq!(message.encoding, Encoding::Json);
        let request = Value::Object(message.decode().expect("an object"));
        assert_eq!(request, json!({"cmd": "add", "x": 1, "y": 2}));
        peer.send(json!({"success": true, "solution": 3})).await;
        assert_eq!(peer.recv().await, json!({"cmd": "add", "x": 40, "y": 2}));
        peer.send(json!({"success": true, "solution": 42})).await;
    })
    .await;
    let mut client = server.client();
    let response = client
        .execute("add", json!({"x": 1, "y": 2}))
        .await
        .expect("executes");
    assert_eq!(Value::Object(response), json!({"success": true, "solution": 3}));
    assert!(client.is_connected());
    let response = client
        .execute("add", object(json!({"x": 40, "y": 2})))
        .await
        .expect("again");
    assert_eq!(response["solution"], 42);
    server.finish().await;
}

#[tokio::test]
async fn msgpack_requests_are_sent_and_answered_in_msgpack() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        let message = peer.recv_message().await.expect("a request");
        assert_eq!(message.encoding, Encoding::Msgpack);
        let request = Value::Object(message.decode().expect("a map"));
        assert_eq!(
            request,
            json!({"cmd": "echo", "name": "ann", "tags": [1, -2.5, null]})
        );
        let reply = json!({"success": true, "name": "ann", "nested": {"tags": [1, -2.5, null]}});
        peer.send_in(reply, Encoding::Msgpack).await;
    })
    .await;
    let mut client = server.client().with_encoding(Encoding::Msgpack);
    let params = json!({"name": "ann", "tags": [1, -2.5, null]});
    let response = client.execute("echo", params).await.expect("executes");
    assert_eq!(
        Value::Object(response),
        json!({"success": true, "name": "ann", "nested": {"tags": [1, -2.5, null]}})
    );
    server.finish().await;
}

#[tokio::test]
async fn call_turns_error_responses_into_server_errors() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        for _ in 0..2 {
            peer.recv().await;
            let response = error_response(ErrorCode::UnknownCommand, "unknown command `nope`");
            peer.send(Value::Object(response)).await;
        }
        peer.recv().await;
        peer.send(json!({"error": true, "code": "not_found", "message": "no such user"}))
            .await;
        peer.recv().await;
        peer.send(json!({"success": true})).await;
    })
    .await;
    let mut client = server.client();

    let response = client
        .execute("nope", ())
        .await
        .expect("an error response is a response");
    assert_eq!(response["code"], "unknown_command");

    let error = client.call("nope", ()).await.expect_err("an error response");
    let ClientError::Server {
        code,
        message,
        response,
    } = &error
    else {
        panic!("expected a server error, got {error:?}");
    };
    assert_eq!(code, &Some(ServerCode::Known(ErrorCode::UnknownCommand)));
    assert_eq!(message, "unknown command `nope`");
    assert_eq!(response["error"], true);
    assert_eq!(
        error.to_string(),
        "error response (unknown_command): unknown command `nope`"
    );

    let error = client
        .call("user", json!({"id": 7}))
        .await
        .expect_err("a handler's error");
    assert!(
        matches!(&error, ClientError::Server { code: Some(ServerCode::Other(code)), .. } if code == "not_found"),
        "{error:?}"
    );
    assert!(
        client.is_connected(),
        "an error response leaves the connection usable"
    );
    client.call("ping", ()).await.expect("a success response");
    server.finish().await;
}

#[tokio::test]
async fn execute_refuses_a_message_before_the_response_and_disconnects() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send(json!({"progress": 1})).await;
        peer.send(json!({"success": true})).await;
    })
    .await;
    let mut client = server.client();
    let error = client.execute("chatty", ()).await.expect_err("a conversation");
    let ClientError::UnexpectedMessage(message) = &error else {
        panic!("expected an unexpected message, got {error:?}");
    };
    assert_eq!(Value::Object(message.clone()), json!({"progress": 1}));
    assert!(!client.is_connected());
    server.finish().await;
}

#[tokio::test]
async fn a_closed_connection_is_reported_and_the_next_request_reconnects() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        drop(peer);
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send(json!({"success": true})).await;
    })
    .await;
    let mut client = server.client();
    let error = client.execute("crash", ()).await.expect_err("closed");
    assert!(matches!(error, ClientError::Closed), "{error:?}");
    assert!(!client.is_connected());
    client.execute("ping", ()).await.expect("a fresh connection");
    server.finish().await;
}

#[tokio::test]
async fn a_slow_response_times_out_naming_the_wait() {
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        // Silent until told; the client's raw recv times out meanwhile.
        ready.await.expect("the test goes on");
        peer.send(json!({"success": true, "late": true})).await;
        peer.recv().await;
        assert!(
            peer.recv_message().await.is_none(),
            "execute gives up the connection"
        );
    })
    .await;
    let mut client = server.client().with_timeout(Duration::from_millis(100));
    client.connect().await.expect("connects");
    client.send(object(json!({"cmd": "slow"}))).await.expect("sends");
    let error = client.recv().await.expect_err("times out");
    assert!(
        matches!(error, ClientError::Timeout { operation: Operation::Recv, after } if after == Duration::from_millis(100)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "timed out after 100ms waiting for a message from the server"
    );
    assert!(client.is_connected(), "a raw recv timeout keeps the connection");
    go.send(()).expect("the server waits");
    let late = client.recv().await.expect("the late response");
    assert_eq!(late["late"], true);

    let error = client.execute("slow", ()).await.expect_err("times out");
    assert!(
        matches!(
            error,
            ClientError::Timeout {
                operation: Operation::Recv,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        !client.is_connected(),
        "the response may still come: the connection is out of step"
    );
    server.finish().await;
}

#[tokio::test]
async fn invalid_params_are_refused_before_connecting() {
    // Nothing listens there: had the client tried to connect, it would say so.
    let (mut client, _) = client_of_nothing();
    for params in [json!([1, 2]), json!("x=1"), json!(3), json!({"cmd": "other"})] {
        let error = client
            .execute("add", params.clone())
            .await
            .expect_err("invalid params");
        assert!(
            matches!(error, ClientError::InvalidParams { .. }),
            "{params}: {error:?}"
        );
        let error = client
            .conversation("add", params.clone())
            .await
            .expect_err("invalid params");
        assert!(
            matches!(error, ClientError::InvalidParams { .. }),
            "{params}: {error:?}"
        );
    }
    let error = client.execute("add", json!([1])).await.expect_err("invalid");
    assert_eq!(
        error.to_string(),
        "invalid params: params must be an object, not an array"
    );
    assert!(!client.is_connected());
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_connecting() {
    let (client, _) = client_of_nothing();
    let mut client = client.with_max_message(64);
    let error = client
        .execute("echo", json!({"text": "x".repeat(100)}))
        .await
        .expect_err("too large");
    assert!(
        matches!(error, ClientError::Codec(CodecError::TooLarge { max: 64 })),
        "{error:?}"
    );
}

#[tokio::test]
async fn connect_failures_name_the_address() {
    let (mut client, port) = client_of_nothing();
    let error = client.execute("add", ()).await.expect_err("nothing listens");
    assert!(matches!(&error, ClientError::Connect { addr, .. } if *addr == format!("127.0.0.1:{port}")));
    assert_eq!(error.to_string(), format!("cannot connect to 127.0.0.1:{port}"));
    assert!(
        std::error::Error::source(&error).is_some(),
        "the io error is its source"
    );
}

#[tokio::test]
async fn the_raw_protocol_needs_a_connection() {
    let (mut client, _) = client_of_nothing();
    let error = client
        .send(object(json!({"cmd": "add"})))
        .await
        .expect_err("not connected");
    assert!(matches!(error, ClientError::NotConnected));
    assert!(matches!(client.recv().await, Err(ClientError::NotConnected)));
    client.disconnect().await;
    client.disconnect().await;
}

#[tokio::test]
async fn bad_messages_from_the_server_are_errors_not_panics() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send_raw(b"\0\0\0\x05[1,2]").await;
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send_raw(b"\0\0\0\x03{no").await;
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send(json!({"success": true, "text": "x".repeat(100)})).await;
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send_raw(b"\0\0\0\x09{\"succ").await;
    })
    .await;
    let mut client = server.client().with_max_message(64);
    let error = client.execute("a", ()).await.expect_err("not an object");
    assert!(matches!(error, ClientError::Decode(_)), "{error:?}");
    let error = client.execute("b", ()).await.expect_err("bad JSON");
    assert!(matches!(error, ClientError::Decode(_)), "{error:?}");
    let error = client.execute("c", ()).await.expect_err("too large");
    assert!(
        matches!(error, ClientError::Codec(CodecError::TooLarge { max: 64 })),
        "{error:?}"
    );
    let error = client.execute("d", ()).await.expect_err("cut off");
    assert!(
        matches!(error, ClientError::Codec(CodecError::Truncated)),
        "{error:?}"
    );
    assert!(!client.is_connected());
    server.finish().await;
}

#[tokio::test]
async fn a_request_crossing_shutting_down_is_sent_again_on_a_new_connection() {
    let server = FakeServer::start(|mut listener| async move {
        let mut first = listener.accept().await;
        first.recv().await;
        first.send(json!({"success": true})).await;
        // The host starts closing: the next request is answered unrun, the connection closed.
        assert_eq!(first.recv().await["cmd"], "add");
        first
            .send(json!({"error": true, "code": "shutting_down", "message": "not run"}))
            .await;
        drop(first);
        let mut second = listener.accept().await;
        assert_eq!(second.recv().await["cmd"], "add", "the same request, sent again");
        second.send(json!({"success": true, "host": 2})).await;
    })
    .await;
    let mut client = server.client();
    client.execute("ping", ()).await.expect("the first request");
    let response = client
        .call("add", json!({"x": 1}))
        .await
        .expect("answered by the second host");
    assert_eq!(response["host"], 2);
    server.finish().await;
}

#[tokio::test]
async fn shutting_down_stands_when_no_new_connection_can_be_made() {
    let server = FakeServer::start(|mut listener| async move {
        let mut first = listener.accept().await;
        first.recv().await;
        first.send(json!({"success": true})).await;
        first.recv().await;
        // Nobody listens any more by the time the client reads this.
        drop(listener);
        first
            .send(json!({"error": true, "code": "shutting_down", "message": "not run"}))
            .await;
    })
    .await;
    let mut client = server.client();
    client.execute("ping", ()).await.expect("the first request");
    let error = client
        .call("add", json!({"x": 1}))
        .await
        .expect_err("shutting down");
    match error {
        ClientError::Server { code, .. } => {
            assert_eq!(code, Some(ServerCode::Known(ErrorCode::ShuttingDown)));
        }
        other => panic!("not the host's answer: {other:?}"),
    }
    assert!(!client.is_connected());
    server.finish().await;
}

#[tokio::test]
async fn a_connection_the_host_may_close_is_not_kept() {
    let server = FakeServer::start(|mut listener| async move {
        let mut first = listener.accept().await;
        first.recv().await;
        first
            .send(json!({"error": true, "code": "busy", "message": "too many connections"}))
            .await;
        drop(first);
        let mut second = listener.accept().await;
        second.recv().await;
        second.send(json!({"success": true})).await;
    })
    .await;
    let mut client = server.client();
    let answer = client.execute("add", ()).await.expect("an answer");
    assert_eq!(answer["code"], "busy");
    assert!(!client.is_connected(), "busy may come with a closed connection");
    client.execute("add", ()).await.expect("a new connection");
    assert!(client.is_connected());
    server.finish().await;
}
