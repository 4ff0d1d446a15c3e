//! `add`: the sum of two integers, `{"x": 1, "y": 2}` → `{"success": true, "solution": 3}`.

use serde::Deserialize;
use serde_json::json;
use tcpy_guest::{Handler, Response, error, success};

/// The params of `add`.
#[derive(Deserialize)]
struct Add {
    x: i64,
    y: i64,
}

impl Handler for Add {
    fn execute(self) -> Response {
        match self.x.checked_add(self.y) {
            Some(solution) => success(json!({ "solution": solution })),
            None => error("the sum is outside the 64-bit integer range"),
        }
    }
}

tcpy_guest::export!(Add);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    fn add(params: &str) -> Value {
        serde_json::from_str(&tcpy_guest::run::<super::Add>(params)).expect("JSON")
    }

    #[test]
    fn adds() {
        assert_eq!(
            add(r#"{"x": 1, "y": 2}"#),
            json!({ "success": true, "solution": 3 })
        );
    }

    #[test]
    fn an_overflow_is_an_error() {
        let response = add(&json!({ "x": i64::MAX, "y": 1 }).to_string());
        assert_eq!(response["error"], json!(true), "{response}");
    }
}
