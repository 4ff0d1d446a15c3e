//! Helpers for tests (the `test-support` feature): one of each, for every crate.

use serde_json::Value;

use crate::Object;

/// The object a `json!` literal builds; panics if it is not an object.
pub fn object(value: Value) -> Object {
    match value {
        Value::Object(object) => object,
        other => panic!("not an object: {other}"),
    }
}
