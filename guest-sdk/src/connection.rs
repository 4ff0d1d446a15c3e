//! Talking with the client while a request runs.

use serde::Serialize;
use serde_json::Value;

use crate::bindings::tcpy::handler::connection;

/// Why [`send`] failed.
#[derive(Debug)]
pub enum SendError {
    /// The message serializes to something other than a JSON object (a number, a
    /// list, null…): the protocol carries objects only.
    NotAnObject,
    /// The message's `Serialize` implementation failed.
    Serialize(serde_json::Error),
    /// The host refused the message, for the reason it gives: it carries
    /// `"success": true` or `"error": true` (those mark the response, which only
    /// [`Handler::execute`](crate::Handler::execute) returns), it is over the message
    /// size limit, or the client has gone.
    Refused(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("message must serialize to a JSON object"),
            Self::Serialize(cause) => write!(f, "message must serialize to a JSON object: {cause}"),
            Self::Refused(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Serialize(cause) => Some(cause),
            Self::NotAnObject | Self::Refused(_) => None,
        }
    }
}

/// Sends `message` to the client at once, as one message; the request goes on.
///
/// The client gets every message sent, in order, before the response.
///
/// # Errors
/// [`SendError::NotAnObject`] or [`SendError::Serialize`] if `message` does not
/// serialize to a JSON object; [`SendError::Refused`] if the host refuses it (it looks
/// like a response, it is too large, or the client has gone).
pub fn send(message: impl Serialize) -> Result<(), SendError> {
    let text = to_object_text(message)?;
    connection::send(&text).map_err(SendError::Refused)
}

/// Waits for the client's next message; `None` once the client has closed the
/// connection.
///
/// The host passes on JSON objects only; should it ever pass on text that is not
/// JSON, that text arrives as a [`Value::String`] rather than being lost.
pub fn recv() -> Option<Value> {
    let text = connection::recv()?;
    Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn to_object_text(message: impl Serialize) -> Result<String, SendError> {
    match serde_json::to_value(message).map_err(SendError::Serialize)? {
        object @ Value::Object(_) => Ok(object.to_string()),
        _ => Err(SendError::NotAnObject),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn objects_serialize_to_their_text() {
        let text = to_object_text(json!({ "total": 3 })).expect("an object");
        assert_eq!(text, r#"{"total":3}"#);
    }

    #[test]
    fn non_objects_are_refused_before_the_host() {
        let error = to_object_text([1, 2]).expect_err("a list");
        assert!(matches!(error, SendError::NotAnObject));
        assert_eq!(error.to_string(), "message must serialize to a JSON object");

        let error = to_object_text(BTreeMap::from([((1, 2), 3)])).expect_err("tuple keys");
        assert!(matches!(error, SendError::Serialize(_)));
        assert!(
            error
                .to_string()
                .starts_with("message must serialize to a JSON object: ")
        );
    }
}
