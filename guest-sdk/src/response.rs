//! Responses: `{"success": true, ...}` or `{"error": true, "message": ..., ...}`.

use serde::Serialize;
use serde_json::{Map, Value};

/// The keys that mark an object as a response. Only the constructors set them, so a
/// response never ends up with both, or with neither.
const MARKERS: [&str; 2] = ["success", "error"];

/// The answer to a request: a JSON object with `"success": true` or `"error": true`
/// beside any other fields.
///
/// Make one with [`success`] or [`error`], and add fields with [`Response::with`].
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    object: Map<String, Value>,
}

/// A successful response: `{"success": true, ...fields}`.
///
/// `fields` is serialized with serde and merged in by the rule of [`Response::with`]:
/// an object's fields are added, `()` or null adds nothing, and any other value (a
/// number, a string, a list) goes under the key `"value"`.
///
/// ```
/// # use serde_json::json;
/// let response = tcpy_guest::success(json!({ "solution": 3 }));
/// assert_eq!(serde_json::Value::from(response), json!({ "success": true, "solution": 3 }));
/// let response = tcpy_guest::success(42);
/// assert_eq!(serde_json::Value::from(response), json!({ "success": true, "value": 42 }));
/// ```
pub fn success(fields: impl Serialize) -> Response {
    Response::marked("success").with(fields)
}

/// An error response: `{"error": true, "message": message}`. Add more fields with
/// [`Response::with`], e.g. `error("no such user").with(json!({ "user": id }))`.
pub fn error(message: impl Into<String>) -> Response {
    let mut response = Response::marked("error");
    response
        .object
        .insert("message".to_owned(), Value::String(message.into()));
    response
}

impl Response {
    fn marked(marker: &str) -> Self {
        let mut object = Map::new();
        object.insert(marker.to_owned(), Value::Bool(true));
        Self { object }
    }

    /// Adds `fields`, serialized with serde, to the response.
    ///
    /// An object's fields are added, replacing fields of the same name, except that
    /// `"success"` and `"error"` are skipped: whether a response is a success is
    /// settled by the constructor. `()` or null adds nothing; any other value (a
    /// number, a string, a list) is added under the key `"value"`.
    ///
    /// Fields that fail to serialize (a map with non-string keys, a `Serialize`
    /// implementation that fails) turn the response into an error response saying so,
    /// rather than answering the client with something the handler did not mean.
    pub fn with(mut self, fields: impl Serialize) -> Self {
        match serde_json::to_value(fields) {
            Ok(Value::Object(fields)) => {
                for (key, value) in fields {
                    if !MARKERS.contains(&key.as_str()) {
                        self.object.insert(key, value);
                    }
                }
            }
            Ok(Value::Null) => {}
            Ok(value) => {
                self.object.insert("value".to_owned(), value);
            }
            Err(cause) => return error(format!("the handler's response does not serialize: {cause}")),
        }
        self
    }

    /// Whether this is a success response.
    pub fn is_success(&self) -> bool {
        self.object.get("success") == Some(&Value::Bool(true))
    }

    /// The response's fields, markers included.
    pub fn as_object(&self) -> &Map<String, Value> {
        &self.object
    }

    /// The response as JSON text, as it goes to the host.
    pub fn to_json(&self) -> String {
        // Displaying a `Value` cannot fail, unlike `serde_json::to_string`'s signature says.
        Value::Object(self.object.clone()).to_string()
    }
}

impl From<Response> for Map<String, Value> {
    fn from(response: Response) -> Self {
        response.object
    }
}

impl From<Response> for Value {
    fn from(response: Response) -> Self {
        Value::Object(response.object)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn success_merges_object_fields() {
        let response = success(json!({ "solution": 3, "note": "ok" }));
        assert!(response.is_success());
        assert_eq!(
            Value::from(response),
            json!({ "success": true, "solution": 3, "note": "ok" })
        );
    }

    #[test]
    fn unit_and_null_add_nothing() {
        assert_eq!(Value::from(success(())), json!({ "success": true }));
        assert_eq!(Value::from(success(Value::Null)), json!({ "success": true }));
        assert_eq!(Value::from(success(None::<i32>)), json!({ "success": true }));
    }

    #[test]
    fn other_values_go_under_value() {
        assert_eq!(Value::from(success(42)), json!({ "success": true, "value": 42 }));
        assert_eq!(
            Value::from(success([1, 2])),
            json!({ "success": true, "value": [1, 2] })
        );
        assert_eq!(
            Value::from(error("nope").with("why")),
            json!({ "error": true, "message": "nope", "value": "why" })
        );
    }

    #[test]
    fn error_carries_message_and_extra_fields() {
        let response = error("no such user").with(json!({ "user": 7 }));
        assert!(!response.is_success());
        assert_eq!(
            Value::from(response),
            json!({ "error": true, "message": "no such user", "user": 7 })
        );
    }

    #[test]
    fn constructor_markers_win_over_fields() {
        let response = success(json!({ "success": false, "error": true, "x": 1 }));
        assert_eq!(Value::from(response), json!({ "success": true, "x": 1 }));
        let response = error("bad").with(json!({ "error": false, "success": true }));
        assert_eq!(Value::from(response), json!({ "error": true, "message": "bad" }));
    }

    #[test]
    fn later_fields_replace_earlier_ones() {
        let response = success(json!({ "a": 1, "b": 1 })).with(json!({ "b": 2 }));
        assert_eq!(Value::from(response), json!({ "success": true, "a": 1, "b": 2 }));
    }

    #[test]
    fn unserializable_fields_become_an_error() {
        let fields = BTreeMap::from([((1, 2), "tuple keys are not JSON")]);
        let response = success(fields);
        assert!(!response.is_success());
        let message = response.as_object()["message"].as_str().expect("a message");
        assert!(
            message.starts_with("the handler's response does not serialize"),
            "{message}"
        );
    }

    #[test]
    fn to_json_is_the_object() {
        let text = success(json!({ "n": 1 })).to_json();
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed, json!({ "success": true, "n": 1 }));
    }
}
