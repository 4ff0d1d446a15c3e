//! What can go wrong talking to a tcpy host.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tcpy_protocol::{CodecError, DecodeError, EncodeError, ErrorCode, Object};

/// Everything a [`Client`](crate::Client) call can fail with.
///
/// Error *responses* are not errors at this level: [`Client::execute`](crate::Client::execute)
/// returns them as they came. Only [`Client::call`](crate::Client::call) turns them into
/// [`ClientError::Server`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}")]
    Connect {
        /// `host:port` as given to the client.
        addr: String,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up: a certificate or key file cannot be used, or the
    /// handshake with the host failed (its certificate is not trusted, …).
    #[error("TLS: {0}")]
    Tls(String),
    /// An established connection failed.
    #[error("connection failed")]
    Io(#[source] std::io::Error),
    /// An operation took longer than the client's timeout.
    #[error("timed out after {after:?} {operation}")]
    Timeout {
        /// What timed out.
        operation: Operation,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// A message was to be sent or received without a connection.
    #[error("not connected")]
    NotConnected,
    /// A message could not be framed: over the size limit, or cut off.
    #[error(transparent)]
    Codec(CodecError),
    /// The server sent a message that is not a protocol object.
    #[error("cannot decode a message from the server")]
    Decode(#[source] DecodeError),
    /// A message could not be encoded.
    #[error("cannot encode a message")]
    Encode(#[source] EncodeError),
    /// The params of a request are not an object of params.
    #[error("invalid params: {reason}")]
    InvalidParams {
        /// What is wrong with them.
        reason: String,
    },
    /// A one-shot request got an intermediate message where its response belonged:
    /// the handler wants a conversation. The client has disconnected, as the
    /// connection is in the middle of that request.
    #[error(
        "expected a response, but the handler sent a message first (it needs a conversation): {}",
        Value::Object(.0.clone())
    )]
    UnexpectedMessage(Object),
    /// The server answered with an error response (only from [`Client::call`](crate::Client::call)).
    #[error(
        "error response{}: {message}",
        .code.as_ref().map(|code| format!(" ({code})")).unwrap_or_default()
    )]
    Server {
        /// The response's `"code"`, when it has a string one.
        code: Option<ServerCode>,
        /// The response's `"message"`, or the whole response as JSON when it has none.
        message: String,
        /// The response as it came.
        response: Object,
    },
    /// The conversation has ended (its response arrived, or it failed); it can no
    /// longer send or receive.
    #[error("the conversation is over")]
    ConversationOver,
    /// A message was to be sent in a conversation after
    /// [`Conversation::close_send`](crate::Conversation::close_send).
    #[error("the client has closed its sending side of the conversation")]
    SendClosed,
    /// An address given to [`Client::with_addresses`](crate::Client::with_addresses)
    /// is not `host:port`.
    #[error("invalid address `{addr}`: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`Client::with_addresses`](crate::Client::with_addresses) was given no address.
    #[error("no address to connect to")]
    NoAddresses,
    /// Under a [`RetryPolicy`](crate::RetryPolicy): the request was sent, then the
    /// connection failed or timed out before the answer. It may have run, so it was not
    /// sent again; a request marked idempotent, or carrying an idempotency key, would
    /// have been.
    #[error(
        "the request was sent to {addr} and no answer came: it may have run, so it was not \
         retried (mark it idempotent or give it an idempotency key to allow that)"
    )]
    MaybeRan {
        /// The host it was sent to, `host:port`.
        addr: String,
        /// How the connection failed.
        #[source]
        source: Box<ClientError>,
    },
    /// Under a [`RetryPolicy`](crate::RetryPolicy): every attempt the policy's time
    /// allowed failed, each in a way that allowed another.
    #[error("gave up after {attempts} attempts within {within:?} at {}", .tried.join(", "))]
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// The policy's total time for one request.
        within: Duration,
        /// Every address tried, `host:port`, in the order first tried.
        tried: Vec<String>,
        /// Why the last attempt failed: for a host's answer that it did not run the
        /// request (`busy`, …), a [`ClientError::Server`] with its code.
        #[source]
        source: Box<ClientError>,
    },
    /// The [`blocking`](crate::blocking) client could not start its runtime.
    #[error("cannot start the blocking client's runtime")]
    Runtime(#[source] std::io::Error),
}

/// The step that timed out, in [`ClientError::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Connecting to the host.
    Connect {
        /// `host:port` as given to the client.
        addr: String,
    },
    /// Sending a message.
    Send,
    /// Waiting for a message from the host.
    Recv,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { addr } => write!(f, "connecting to {addr}"),
            Self::Send => f.write_str("sending a message"),
            Self::Recv => f.write_str("waiting for a message from the server"),
        }
    }
}

/// The `"code"` of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerCode {
    /// A code of the protocol (the host's own errors, and `bad_request` from handlers
    /// whose params do not fit).
    Known(ErrorCode),
    /// Any other code: handlers choose their own, and newer hosts may add some.
    Other(String),
}

impl ServerCode {
    /// Reads a wire code.
    pub fn parse(code: &str) -> Self {
        ErrorCode::parse(code).map_or_else(|| Self::Other(code.to_owned()), Self::Known)
    }

    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(code) => code.as_str(),
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for ServerCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<CodecError> for ClientError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Io(error) => Self::Io(error),
            other => Self::Codec(other),
        }
    }
}

impl ClientError {
    /// [`ClientError::Server`] for an error response.
    pub(crate) fn server(response: Object) -> Self {
        let code = match response.get("code") {
            Some(Value::String(code)) => Some(ServerCode::parse(code)),
            _ => None,
        };
        let message = match response.get("message") {
            Some(Value::String(message)) => message.clone(),
            _ => Value::Object(response.clone()).to_string(),
        };
        Self::Server {
            code,
            message,
            response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use tcpy_protocol::test_support::object;

    #[test]
    fn server_errors_read_code_and_message() {
        let error = ClientError::server(object(json!({"error": true, "code": "busy", "message": "later"})));
        assert!(matches!(
            &error,
            ClientError::Server { code: Some(ServerCode::Known(ErrorCode::Busy)), message, .. } if message == "later"
        ));
        assert_eq!(error.to_string(), "error response (busy): later");
    }

    #[test]
    fn server_errors_without_code_or_message_still_say_something() {
        let error = ClientError::server(object(json!({"error": true, "why": 7})));
        assert_eq!(error.to_string(), r#"error response: {"error":true,"why":7}"#);
        let custom = ClientError::server(object(
            json!({"error": true, "code": "not_found", "message": "no"}),
        ));
        assert!(
            matches!(custom, ClientError::Server { code: Some(ServerCode::Other(code)), .. } if code == "not_found")
        );
    }

    #[test]
    fn timeouts_name_what_timed_out() {
        let error = ClientError::Timeout {
            operation: Operation::Connect {
                addr: "localhost:7272".into(),
            },
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            error.to_string(),
            "timed out after 1.5s connecting to localhost:7272"
        );
    }
}
