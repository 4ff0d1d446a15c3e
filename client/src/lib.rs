//! A native Rust client for tcpy hosts.
//!
//! A tcpy host runs one WebAssembly handler per command; a client asks it to
//! `execute` a command with params and gets back one response object, as the 2014
//! Python `TCPClient` did:
//!
//! ```no_run
//! # async fn run() -> Result<(), tcpy_client::ClientError> {
//! use serde_json::json;
//! use tcpy_client::Client;
//!
//! let mut client = Client::new("localhost", 7272);
//! let response = client.execute("add", json!({"x": 1, "y": 2})).await?;
//! assert_eq!(response["solution"], 3); // {"success": true, "solution": 3}
//! # Ok(()) }
//! ```
//!
//! - [`Client`] is async (tokio). It keeps its connection for the requests that
//!   follow, and speaks frame mode with JSON bodies, or msgpack bodies with
//!   [`Client::with_encoding`].
//! - [`Client::execute`] returns error responses as they came; [`Client::call`] turns
//!   them into [`ClientError::Server`].
//! - [`Client::conversation`] is for handlers that talk with their client before they
//!   answer.
//! - [`blocking::Client`] is the same client for synchronous code.
//! - [`Client::send`] and [`Client::recv`] are the raw protocol, one message each.
//! - [`Client::with_addresses`] makes a client of several hosts that fails over
//!   between them under a [`RetryPolicy`]: a request is sent again, to the next host,
//!   only when that is safe — it did not run, or it is marked harmless to run twice
//!   ([`Client::execute_idempotent`]) or carries an idempotency key
//!   ([`Client::execute_with_key`], [`new_idempotency_key`]).
//!
//! The protocol is described in the workspace's `docs/protocol.md`.
#![deny(missing_docs)]

mod address;
pub mod blocking;
mod client;
mod conversation;
mod error;
mod retry;
mod tls;

use std::time::Duration;

pub use client::Client;
pub use conversation::{Conversation, Turn};
pub use error::{ClientError, Operation, ServerCode};
pub use retry::{RetryPolicy, new_idempotency_key};
pub use tcpy_protocol::{
    DEFAULT_HOST, DEFAULT_MAX_MESSAGE, DEFAULT_PORT, Encoding, ErrorCode, IDEMPOTENCY_KEY,
    MAX_IDEMPOTENCY_KEY, Object,
};
pub use tls::TlsConfig;

/// How long a client waits for each step (connecting, sending one message, receiving
/// one message) unless told otherwise with [`Client::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
