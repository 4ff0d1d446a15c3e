//! Conversations: messages both ways until the response.

use std::time::Duration;

use serde_json::{Value, json};
use tcpy_client::{ClientError, Turn};

use crate::fake::{FakeServer, object};

/// A fake `tally`: adds each `n` the client sends, answers on `done`.
async fn tally(peer: &mut crate::fake::Connection) {
    let request = peer.recv().await;
    assert_eq!(request, json!({"cmd": "tally", "start": 10}));
    let mut total = 10;
    loop {
        let message = peer.recv().await;
        if message["done"] == true {
            break;
        }
        total += message["n"].as_i64().expect("a number");
        peer.send(json!({"total": total})).await;
    }
    peer.send(json!({"success": true, "total": total})).await;
}

#[tokio::test]
async fn a_conversation_exchanges_messages_until_the_response() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        tally(&mut peer).await;
        assert_eq!(
            peer.recv().await,
            json!({"cmd": "ping"}),
            "the connection carries on"
        );
        peer.send(json!({"success": true})).await;
    })
    .await;
    let mut client = server.client();
    let mut conversation = client
        .conversation("tally", json!({"start": 10}))
        .await
        .expect("starts");
    for (n, total) in [(5, 15), (2, 17)] {
        conversation.send(object(json!({"n": n}))).await.expect("sends");
        let turn = conversation.recv().await.expect("a message");
        assert_eq!(turn, Turn::Message(object(json!({"total": total}))));
    }
    // A response-shaped message from the client is data like any other.
    conversation
        .send(object(json!({"done": true})))
        .await
        .expect("sends");
    let turn = conversation.recv().await.expect("the response");
    assert_eq!(
        turn,
        Turn::Response(object(json!({"success": true, "total": 17})))
    );
    assert!(conversation.is_over());
    assert!(matches!(
        conversation.recv().await,
        Err(ClientError::ConversationOver)
    ));
    let error = conversation
        .send(object(json!({"n": 1})))
        .await
        .expect_err("over");
    assert!(matches!(error, ClientError::ConversationOver));
    drop(conversation);
    assert!(client.is_connected());
    client.execute("ping", ()).await.expect("the next request");
    server.finish().await;
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        // One message in three pieces, so that many of the client's waits end
        // with half of it read.
        let frame = b"\0\0\0\x0f{\"total\": 1234}";
        for piece in [&frame[..3], &frame[3..9], &frame[9..]] {
            peer.send_raw(piece).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        peer.send(json!({"success": true})).await;
    })
    .await;
    let mut client = server.client();
    let mut conversation = client.conversation("slow", ()).await.expect("starts");
    let mut cancelled = 0;
    let turn = loop {
        tokio::select! {
            turn = conversation.recv() => break turn.expect("a message"),
            () = tokio::time::sleep(Duration::from_millis(5)) => cancelled += 1,
        }
    };
    assert!(cancelled >= 5, "recv was cancelled only {cancelled} times");
    assert_eq!(turn, Turn::Message(object(json!({"total": 1234}))));
    let turn = conversation.recv().await.expect("the response");
    assert!(matches!(turn, Turn::Response(_)));
    server.finish().await;
}

#[tokio::test]
async fn a_recv_timeout_leaves_the_conversation_going() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        peer.send(json!({"success": true})).await;
    })
    .await;
    let mut client = server.client().with_timeout(Duration::from_millis(50));
    let mut conversation = client.conversation("slow", ()).await.expect("starts");
    let error = conversation.recv().await.expect_err("times out");
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert!(!conversation.is_over());
    let turn = loop {
        match conversation.recv().await {
            Err(ClientError::Timeout { .. }) => continue,
            other => break other.expect("the response"),
        }
    };
    assert!(matches!(turn, Turn::Response(_)));
    server.finish().await;
}

#[tokio::test]
async fn dropping_a_conversation_before_its_response_disconnects() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        assert!(peer.recv_message().await.is_none(), "the client hung up");
    })
    .await;
    let mut client = server.client();
    let conversation = client.conversation("tally", ()).await.expect("starts");
    drop(conversation);
    assert!(!client.is_connected());
    server.finish().await;
}

#[tokio::test]
async fn close_send_lets_the_handler_see_the_end_and_still_answer() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        assert_eq!(peer.recv().await, json!({"cmd": "tally", "n": 1}));
        assert_eq!(peer.recv().await, json!({"n": 2}));
        assert!(peer.recv_message().await.is_none(), "the client is done sending");
        peer.send(json!({"note": "no more input"})).await;
        peer.send(json!({"success": true, "total": 3})).await;
    })
    .await;
    let mut client = server.client();
    let mut conversation = client
        .conversation("tally", json!({"n": 1}))
        .await
        .expect("starts");
    conversation.send(object(json!({"n": 2}))).await.expect("sends");
    conversation.close_send().await.expect("closes");
    conversation.close_send().await.expect("closes twice");
    let error = conversation
        .send(object(json!({"n": 3})))
        .await
        .expect_err("closed");
    assert!(matches!(error, ClientError::SendClosed), "{error:?}");
    assert!(matches!(conversation.recv().await, Ok(Turn::Message(_))));
    let response = conversation.recv().await.expect("the response").into_object();
    assert_eq!(Value::Object(response), json!({"success": true, "total": 3}));
    drop(conversation);
    assert!(
        !client.is_connected(),
        "a half-closed connection carries no next request"
    );
    server.finish().await;
}

#[tokio::test]
async fn the_server_closing_mid_conversation_ends_it() {
    let server = FakeServer::start(|mut listener| async move {
        let mut peer = listener.accept().await;
        peer.recv().await;
        peer.send(json!({"question": "n?"})).await;
    })
    .await;
    let mut client = server.client();
    let mut conversation = client.conversation("tally", ()).await.expect("starts");
    assert!(matches!(conversation.recv().await, Ok(Turn::Message(_))));
    let error = conversation.recv().await.expect_err("closed");
    assert!(matches!(error, ClientError::Closed), "{error:?}");
    assert!(conversation.is_over());
    assert!(matches!(
        conversation.recv().await,
        Err(ClientError::ConversationOver)
    ));
    drop(conversation);
    assert!(!client.is_connected());
    server.finish().await;
}
