//! Responses: `{"success": true, ...}` or `{"error": true, "message": ..., ...}`.

use serde_json::Value;

use crate::Object;

/// The `code` of an error response made by the host itself (handlers' own error
/// responses carry whatever fields they choose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The message is not a request: bad JSON or msgpack, not an object, no string `cmd`.
    BadRequest,
    /// No handler serves the command.
    UnknownCommand,
    /// A message is over the size limit.
    TooLarge,
    /// The handler ran past its deadline, or waited in `recv()` longer than the
    /// client took to answer.
    Timeout,
    /// The connection carried no request for longer than the idle timeout; the host
    /// closes it after saying so. Nothing was run: a request that crossed this answer
    /// is safe to send again on a new connection.
    IdleTimeout,
    /// A message was started but not finished within the read timeout (a stalled or
    /// "slowloris" client); the host closes the connection after saying so.
    ReadTimeout,
    /// The handler trapped, ran out of memory or answered something that is not a response.
    HandlerFailed,
    /// The host is at its limit of requests in flight or of open connections; try
    /// again later.
    Busy,
    /// The host is draining for shutdown: the request was **not** run, so it is
    /// always safe to send again, to another host or later. The connection is closed
    /// after this answer.
    ShuttingDown,
    /// The host asks for a token first (`{"cmd": "auth", "token": "…"}`) and did not
    /// get a good one; the connection is closed.
    Unauthorized,
    /// The caller's identity is not on the handler's access list; the connection
    /// stays open.
    Forbidden,
    /// A request with the same `idempotency_key` is running now (on this host or
    /// another sharing its store) and did not finish within the wait; this one was
    /// not run. Send it again with the same key later: it gets the first one's answer.
    InProgress,
    /// The `idempotency_key` was used before by a request with another command or
    /// other params; this one was not run. A key names one request.
    IdempotencyConflict,
    /// The host could not reach the store that records idempotency keys, so it did
    /// not run the request; safe to send again, here or to another host.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownCommand => "unknown_command",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::ReadTimeout => "read_timeout",
            Self::HandlerFailed => "handler_failed",
            Self::Busy => "busy",
            Self::ShuttingDown => "shutting_down",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InProgress => "in_progress",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::Unavailable => "unavailable",
        }
    }

    /// Every code, in the order the protocol documents them.
    pub const ALL: [Self; 14] = [
        Self::BadRequest,
        Self::UnknownCommand,
        Self::TooLarge,
        Self::Timeout,
        Self::IdleTimeout,
        Self::ReadTimeout,
        Self::HandlerFailed,
        Self::Busy,
        Self::ShuttingDown,
        Self::Unauthorized,
        Self::Forbidden,
        Self::InProgress,
        Self::IdempotencyConflict,
        Self::Unavailable,
    ];

    /// Parses a wire code; `None` for codes this version does not know.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error response made by the host: `{"error": true, "code": ..., "message": ...}`.
pub fn error_response(code: ErrorCode, message: impl Into<String>) -> Object {
    let mut object = Object::new();
    object.insert("error".to_owned(), Value::Bool(true));
    object.insert("code".to_owned(), Value::String(code.as_str().to_owned()));
    object.insert("message".to_owned(), Value::String(message.into()));
    object
}

/// Whether `object` is a response, the message that ends a request: it has
/// `"success": true` or `"error": true`. Messages a handler sends mid-request never do.
pub fn is_response(object: &Object) -> bool {
    ["success", "error"]
        .iter()
        .any(|key| object.get(*key) == Some(&Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::object;
    use serde_json::json;

    #[test]
    fn error_responses_carry_their_code() {
        let response = error_response(ErrorCode::UnknownCommand, "no handler for `nope`");
        assert_eq!(
            Value::Object(response.clone()),
            json!({"error": true, "code": "unknown_command", "message": "no handler for `nope`"})
        );
        assert!(is_response(&response));
        assert_eq!(
            ErrorCode::parse("unknown_command"),
            Some(ErrorCode::UnknownCommand)
        );
        assert_eq!(ErrorCode::parse("nonsense"), None);
    }

    #[test]
    fn only_success_or_error_true_ends_a_request() {
        let message = object(json!({"success": false, "total": 3}));
        let done = object(json!({"success": true}));
        assert!(!is_response(&message));
        assert!(is_response(&done));
    }
}
