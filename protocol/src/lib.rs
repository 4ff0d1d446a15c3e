//! The tcpy wire protocol, shared by the host and its clients.
//!
//! A connection carries *messages*, each one object. How messages are delimited is
//! chosen by the first byte a client sends (see [`Framing`]); how a frame's body is
//! encoded is chosen per message (see [`Encoding`]). A *request* is a message with a
//! `"cmd"` string beside its params; a *response* is a message with `"success": true`
//! or `"error": true`, and it is always the last message of its request.
//!
//! The full description lives in `docs/protocol.md`.
#![deny(missing_docs)]

mod codec;
mod message;
mod msgpack;
mod request;
mod response;

pub use codec::{CodecError, Framing, WireCodec};
pub use message::{DecodeError, EncodeError, Encoding, Message};
pub use msgpack::{MAX_DEPTH, MsgpackError};
pub use request::{IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY, Request, RequestError};
pub use response::{ErrorCode, error_response, is_response};

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

/// A protocol object: what every request, response and conversation message is.
pub type Object = serde_json::Map<String, serde_json::Value>;

/// The TCP port a tcpy host listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7272;

/// The host name a tcpy host listens on, and a client connects to, unless told otherwise.
pub const DEFAULT_HOST: &str = "localhost";

/// The largest message, in bytes, either side accepts unless configured otherwise.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;
