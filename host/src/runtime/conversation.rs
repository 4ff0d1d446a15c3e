//! The client end of a conversation, as a running handler sees it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tcpy_protocol::{ErrorCode, Object};

/// A boxed future returned by [`Conversation`] methods.
pub type ConversationFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a handler's `send()` messages go and its `recv()` messages come from: the
/// connection the request arrived on.
pub trait Conversation: Send + 'static {
    /// Delivers one message to the client.
    fn send(&mut self, message: Object) -> ConversationFuture<'_, Result<(), ConversationError>>;

    /// Waits up to `timeout` for the client's next message; `Ok(None)` once the
    /// client has closed.
    fn recv(
        &mut self,
        timeout: Duration,
    ) -> ConversationFuture<'_, Result<Option<Object>, ConversationError>>;
}

/// Why a conversation message could not be delivered or received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// The client sent a message that is not an object; the request ends with `bad_request`.
    #[error("client sent a malformed message mid-conversation: {0}")]
    BadMessage(String),
    /// A message (either way) is over the size limit.
    #[error("message exceeds the limit of {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The client sent nothing while the handler waited in `recv()`.
    #[error("the client sent no message within the recv timeout of {limit:?}")]
    RecvTimeout {
        /// The timeout.
        limit: Duration,
    },
    /// The client started a message but did not finish it in time.
    #[error("the client did not finish its message within the read timeout of {limit:?}")]
    Stalled {
        /// The timeout.
        limit: Duration,
    },
    /// The connection to the client is gone.
    #[error("the client has disconnected")]
    Gone,
}

impl ConversationError {
    /// The error code the client is told when this ends a request.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadMessage(_) => ErrorCode::BadRequest,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::RecvTimeout { .. } => ErrorCode::Timeout,
            Self::Stalled { .. } => ErrorCode::ReadTimeout,
            Self::Gone => ErrorCode::HandlerFailed,
        }
    }
}

/// A conversation with no client behind it: what a handler sends goes nowhere and `recv()`
/// finds the connection closed. For running a handler outside a connection, as the
/// benchmarks do.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClient;

impl Conversation for NoClient {
    fn send(&mut self, _message: Object) -> ConversationFuture<'_, Result<(), ConversationError>> {
        Box::pin(async { Ok(()) })
    }

    fn recv(
        &mut self,
        _timeout: Duration,
    ) -> ConversationFuture<'_, Result<Option<Object>, ConversationError>> {
        Box::pin(async { Ok(None) })
    }
}
