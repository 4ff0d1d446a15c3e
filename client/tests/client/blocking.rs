//! The blocking client, driven from plain threads.

use serde_json::json;
use tcpy_client::{ClientError, Turn, blocking};

use crate::fake::{FakeServer, object};

/// A fake `add` for `n` requests on one connection, then a fake `tally`.
async fn add_then_tally(mut listener: crate::fake::Listener) {
    let mut peer = listener.accept().await;
    let request = peer.recv().await;
    let sum = request["x"].as_i64().expect("x") + request["y"].as_i64().expect("y");
    peer.send(json!({"success": true, "solution": sum})).await;
    peer.recv().await;
    peer.send(json!({"question": "n?"})).await;
    let n = peer.recv().await["n"].clone();
    peer.send(json!({"success": true, "total": n})).await;
    peer.recv().await;
    peer.send(json!({"error": true, "code": "busy", "message": "later"}))
        .await;
}

#[test]
fn the_blocking_client_executes_and_converses() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the fake server");
    let server = runtime.block_on(FakeServer::start(add_then_tally));
    let mut client = blocking::Client::new(server.addr.ip().to_string(), server.addr.port());
    assert!(!client.is_connected());

    let response = client.execute("add", json!({"x": 1, "y": 2})).expect("executes");
    assert_eq!(response["solution"], 3);

    let mut conversation = client.conversation("tally", ()).expect("starts");
    assert_eq!(
        conversation.recv().expect("a question"),
        Turn::Message(object(json!({"question": "n?"})))
    );
    conversation.send(object(json!({"n": 4}))).expect("answers");
    let response = conversation.recv().expect("the response").into_object();
    assert_eq!(response["total"], 4);
    drop(conversation);

    let error = client.call("add", ()).expect_err("an error response");
    assert!(matches!(error, ClientError::Server { .. }), "{error:?}");
    client.disconnect();
    assert!(!client.is_connected());
    runtime.block_on(server.finish());
}

#[tokio::test]
async fn the_blocking_client_works_in_spawn_blocking() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send(json!({"success": true})).await;
    })
    .await;
    let (host, port) = (server.addr.ip().to_string(), server.addr.port());
    let response = tokio::task::spawn_blocking(move || blocking::Client::new(host, port).execute("ping", ()))
        .await
        .expect("the thread ends")
        .expect("executes");
    assert_eq!(response["success"], true);
    server.finish().await;
}
