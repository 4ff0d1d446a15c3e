//! `echo`: answers with its params, `{"say": "hi"}` → `{"success": true, "say": "hi"}`.
//!
//! `"success"` and `"error"` are the response's own markers, so params of those
//! names are not echoed.

use serde::Deserialize;
use serde_json::{Map, Value};
use tcpy_guest::{Handler, Response, success};

/// Every param, whatever its name.
#[derive(Deserialize)]
#[serde(transparent)]
struct Echo(Map<String, Value>);

impl Handler for Echo {
    fn execute(self) -> Response {
        success(self.0)
    }
}

tcpy_guest::export!(Echo);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    #[test]
    fn echoes_every_param_but_the_markers() {
        let response = tcpy_guest::run::<super::Echo>(r#"{"say": "hi", "n": [1], "error": true}"#);
        let response: Value = serde_json::from_str(&response).expect("JSON");
        assert_eq!(response, json!({ "success": true, "say": "hi", "n": [1] }));
    }
}
