//! What can go wrong loading a handler or running a request.

use std::time::Duration;

use tcpy_protocol::{ErrorCode, Object, is_response};

use super::ConversationError;

/// Why a handler could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine or linker could not be built.
    #[error("cannot set up wasmtime: {0:#}")]
    Engine(wasmtime::Error),
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
    /// The compile cache directory cannot be created.
    #[error("cannot use compile cache directory `{}`: {source}", dir.display())]
    Cache {
        /// The directory.
        dir: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A limit is set above the host's ceiling.
    #[error(transparent)]
    Limits(#[from] super::AboveCeiling),
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    /// The component does not implement the `handler` world (or imports more than it).
    #[error("does not implement the tcpy `handler` world: {0:#}")]
    World(wasmtime::Error),
}

/// Why a request did not produce the handler's response.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The handler ran past its deadline.
    #[error("handler ran past its deadline of {limit:?} (stopped after {elapsed:?})")]
    Timeout {
        /// The deadline.
        limit: Duration,
        /// How long the request had run when it was stopped.
        elapsed: Duration,
    },
    /// The request ran past its total time limit, waits for the client included.
    #[error("request ran past its total time limit of {limit:?}, waits for the client included")]
    TooLong {
        /// The limit.
        limit: Duration,
    },
    /// The handler waited in `recv()` while the host's cap on waiting requests was reached.
    #[error(transparent)]
    TooManyWaiting(#[from] super::TooManyWaiting),
    /// The handler tried to grow its memory past the cap.
    #[error("handler exceeded its memory limit of {} MiB", limit / (1024 * 1024))]
    MemoryExhausted {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The instance pool had no room for this request's instance (a handler with
    /// more memories or core instances than the pool reserves per request).
    #[error("no room in the instance pool: {0}")]
    PoolExhausted(String),
    /// The handler sent more messages than its limit.
    #[error(transparent)]
    TooManySends(#[from] super::TooManySends),
    /// The sandbox could not be set up (e.g. a granted directory is gone).
    #[error("cannot set up the handler's sandbox: {0}")]
    Sandbox(String),
    /// The handler trapped (a panic, `unreachable`, a stack overflow, …).
    #[error("handler trapped: {0}")]
    Trapped(String),
    /// The handler returned text that is not a JSON object.
    #[error("handler returned text that is not a JSON object")]
    NotAnObject,
    /// The handler returned an object that is not a response.
    #[error("handler returned an object with neither \"success\": true nor \"error\": true")]
    NotAResponse,
    /// The handler's response is over the message size limit.
    #[error("handler response of {size} bytes exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The response's size, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client sent something the conversation cannot go on with.
    #[error(transparent)]
    Conversation(ConversationError),
}

impl ExecError {
    /// The error code the client is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Timeout { .. } | Self::TooLong { .. } => ErrorCode::Timeout,
            Self::PoolExhausted(_) | Self::TooManyWaiting(_) => ErrorCode::Busy,
            Self::ResponseTooLarge { .. } => ErrorCode::TooLarge,
            Self::Conversation(conversation) => conversation.code(),
            Self::MemoryExhausted { .. }
            | Self::TooManySends(_)
            | Self::Sandbox(_)
            | Self::Trapped(_)
            | Self::NotAnObject
            | Self::NotAResponse => ErrorCode::HandlerFailed,
        }
    }
}

/// Checks a handler's returned text: a JSON object that is a response, within the size limit.
pub(super) fn parse_response(text: &str, max_message: usize) -> Result<Object, ExecError> {
    if text.len() > max_message {
        return Err(ExecError::ResponseTooLarge {
            size: text.len(),
            limit: max_message,
        });
    }
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(object)) if is_response(&object) => Ok(object),
        Ok(serde_json::Value::Object(_)) => Err(ExecError::NotAResponse),
        _ => Err(ExecError::NotAnObject),
    }
}
