//! Many clients at once, every answer checked.

use serde_json::json;
use tcpy_tests::{FrameConn, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_connections_each_doing_many_requests() {
    const CONNECTIONS: i64 = 100;
    const REQUESTS: i64 = 50;
    let host = TestHost::start().await;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let addr = host.addr;
            tokio::spawn(async move {
                let mut conn = FrameConn::connect(addr).await;
                for r in 0..REQUESTS {
                    let (x, y) = (c * 1_000_000 + r, r * 7 - c);
                    let response = conn.round_trip_json(json!({"cmd": "add", "x": x, "y": y})).await;
                    assert_eq!(
                        response,
                        json!({"success": true, "solution": x + y}),
                        "client {c} request {r}"
                    );
                }
                REQUESTS
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        answered += client.await.expect("client task succeeds");
    }
    assert_eq!(answered, CONNECTIONS * REQUESTS);
}
