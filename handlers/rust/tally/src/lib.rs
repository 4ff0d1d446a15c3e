//! `tally`: a running total, kept in conversation with the client.
//!
//! The request may give a `start` (an integer, default 0). Then each client message
//! `{"n": <integer>}` adds `n` and is answered with `{"total": <total>}`, until the
//! client sends `{"done": true}` or closes; the response is
//! `{"success": true, "total": <total>, "count": <numbers added>}`. Numbers are i64:
//! a fraction, or a sum past the i64 range, is answered with a warning and not added.

use serde::Deserialize;
use serde_json::{Value, json};
use tcpy_guest::{Handler, Response, recv, send, success};

/// What a client message that is not a step gets back.
const EXPECTED: &str = r#"expected {"n": number} or {"done": true}"#;

/// The params of `tally`.
#[derive(Deserialize)]
struct Tally {
    #[serde(default)]
    start: i64,
}

impl Handler for Tally {
    fn execute(self) -> Response {
        let mut total = self.start;
        let mut count: u64 = 0;
        while let Some(message) = recv() {
            if message.get("done") == Some(&Value::Bool(true)) {
                break;
            }
            let reply = match message.get("n").and_then(Value::as_i64) {
                Some(n) => match total.checked_add(n) {
                    Some(sum) => {
                        total = sum;
                        count += 1;
                        json!({ "total": total })
                    }
                    None => json!({ "warning": format!("adding {n} would overflow the total {total}") }),
                },
                None => json!({ "warning": EXPECTED }),
            };
            // A failed send means the client has gone; the next recv() says so.
            let _ = send(reply);
        }
        success(json!({ "total": total, "count": count }))
    }
}

tcpy_guest::export!(Tally);
