//! A synchronous client, for programs without an async runtime.
//!
//! [`Client`] has the methods of the async [`crate::Client`], each run to completion on
//! a current-thread tokio runtime the client owns (started on first use).
//!
//! # Panics
//! Every method that talks to the host panics when called from async code, that is on
//! a thread that is running a tokio runtime (tokio refuses to nest runtimes, and
//! blocking there would stall the runtime's other tasks): use the async client there.
//! Inside `tokio::task::spawn_blocking` it works.
//!
//! ```no_run
//! # fn run() -> Result<(), tcpy_client::ClientError> {
//! use serde_json::json;
//! use tcpy_client::blocking::Client;
//!
//! let mut client = Client::new("localhost", 7272);
//! let response = client.execute("add", json!({"x": 1, "y": 2}))?;
//! assert_eq!(response["solution"], 3);
//!
//! // Several hosts, failing over between them (see `crate::Client::with_addresses`):
//! let mut client = Client::with_addresses(["tcpy-a:7272", "tcpy-b:7272"])?;
//! let response = client.execute_idempotent("add", json!({"x": 1, "y": 2}))?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tcpy_protocol::{Encoding, Object};
use tokio::runtime::Runtime;

use crate::{ClientError, RetryPolicy, Turn};

/// A blocking client of a tcpy host; see the [module documentation](self).
#[derive(Debug, Default)]
pub struct Client {
    // NB: declared before `runtime` so the connection is dropped while the runtime
    // that registered its socket still exists.
    inner: crate::Client,
    runtime: Option<Runtime>,
}

impl Client {
    /// A client of the host at `host:port`, as [`crate::Client::new`].
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            inner: crate::Client::new(host, port),
            runtime: None,
        }
    }

    /// A client of several hosts that fails over between them, as
    /// [`crate::Client::with_addresses`].
    ///
    /// # Errors
    /// As [`crate::Client::with_addresses`].
    pub fn with_addresses<I>(addresses: I) -> Result<Self, ClientError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(Self {
            inner: crate::Client::with_addresses(addresses)?,
            runtime: None,
        })
    }

    /// Retries requests under `policy`, as [`crate::Client::with_retry`].
    pub fn with_retry(self, policy: RetryPolicy) -> Self {
        self.map(|inner| inner.with_retry(policy))
    }

    /// Sets the timeout of each step, as [`crate::Client::with_timeout`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.map(|inner| inner.with_timeout(timeout))
    }

    /// Sets the encoding of sent messages, as [`crate::Client::with_encoding`].
    pub fn with_encoding(self, encoding: Encoding) -> Self {
        self.map(|inner| inner.with_encoding(encoding))
    }

    /// Sets the message size limit, as [`crate::Client::with_max_message`].
    pub fn with_max_message(self, max_message: usize) -> Self {
        self.map(|inner| inner.with_max_message(max_message))
    }

    /// Connects over TLS, as [`crate::Client::with_tls`].
    pub fn with_tls(self, tls: crate::TlsConfig) -> Self {
        self.map(|inner| inner.with_tls(tls))
    }

    /// Authenticates with `token`, as [`crate::Client::with_token`].
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.map(|inner| inner.with_token(token))
    }

    /// The host and port, as [`crate::Client::addr`].
    pub fn addr(&self) -> String {
        self.inner.addr()
    }

    /// How many attempts beyond the first this client has made, as
    /// [`crate::Client::retries`].
    pub fn retries(&self) -> u64 {
        self.inner.retries()
    }

    /// Whether the client holds a connection, as [`crate::Client::is_connected`].
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Connects, unless already connected; see [`crate::Client::connect`].
    ///
    /// # Errors
    /// As [`crate::Client::connect`], and [`ClientError::Runtime`].
    pub fn connect(&mut self) -> Result<(), ClientError> {
        block_on(&mut self.runtime, self.inner.connect())?
    }

    /// Closes the connection, if any; see [`crate::Client::disconnect`].
    pub fn disconnect(&mut self) {
        // Without a runtime there has never been a connection.
        if let Some(runtime) = &self.runtime {
            runtime.block_on(self.inner.disconnect());
        }
    }

    /// Sends one message as it is; see [`crate::Client::send`].
    ///
    /// # Errors
    /// As [`crate::Client::send`], and [`ClientError::Runtime`].
    pub fn send(&mut self, message: Object) -> Result<(), ClientError> {
        block_on(&mut self.runtime, self.inner.send(message))?
    }

    /// Waits for the next message from the server; see [`crate::Client::recv`].
    ///
    /// # Errors
    /// As [`crate::Client::recv`], and [`ClientError::Runtime`].
    pub fn recv(&mut self) -> Result<Object, ClientError> {
        block_on(&mut self.runtime, self.inner.recv())?
    }

    /// Runs `cmd` with `params` and returns its response as it came; see
    /// [`crate::Client::execute`].
    ///
    /// # Errors
    /// As [`crate::Client::execute`], and [`ClientError::Runtime`].
    pub fn execute(&mut self, cmd: &str, params: impl Into<Value>) -> Result<Object, ClientError> {
        block_on(&mut self.runtime, self.inner.execute(cmd, params))?
    }

    /// Runs a request that is harmless to run twice; see
    /// [`crate::Client::execute_idempotent`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_idempotent`], and [`ClientError::Runtime`].
    pub fn execute_idempotent(&mut self, cmd: &str, params: impl Into<Value>) -> Result<Object, ClientError> {
        block_on(&mut self.runtime, self.inner.execute_idempotent(cmd, params))?
    }

    /// Runs a request with `key` as its idempotency key; see
    /// [`crate::Client::execute_with_key`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_with_key`], and [`ClientError::Runtime`].
    pub fn execute_with_key(
        &mut self,
        cmd: &str,
        params: impl Into<Value>,
        key: impl Into<String>,
    ) -> Result<Object, ClientError> {
        block_on(&mut self.runtime, self.inner.execute_with_key(cmd, params, key))?
    }

    /// Like [`Client::execute`], but an error response is an error; see
    /// [`crate::Client::call`].
    ///
    /// # Errors
    /// As [`crate::Client::call`], and [`ClientError::Runtime`].
    pub fn call(&mut self, cmd: &str, params: impl Into<Value>) -> Result<Object, ClientError> {
        block_on(&mut self.runtime, self.inner.call(cmd, params))?
    }

    /// Like [`Client::execute_idempotent`], but an error response is an error; see
    /// [`crate::Client::call_idempotent`].
    ///
    /// # Errors
    /// As [`crate::Client::call_idempotent`], and [`ClientError::Runtime`].
    pub fn call_idempotent(&mut self, cmd: &str, params: impl Into<Value>) -> Result<Object, ClientError> {
        block_on(&mut self.runtime, self.inner.call_idempotent(cmd, params))?
    }

    /// Starts a conversation; see [`crate::Client::conversation`].
    ///
    /// # Errors
    /// As [`crate::Client::conversation`], and [`ClientError::Runtime`].
    pub fn conversation(
        &mut self,
        cmd: &str,
        params: impl Into<Value>,
    ) -> Result<Conversation<'_>, ClientError> {
        let runtime = runtime(&mut self.runtime)?;
        let inner = runtime.block_on(self.inner.conversation(cmd, params))?;
        Ok(Conversation { inner, runtime })
    }

    fn map(mut self, configure: impl FnOnce(crate::Client) -> crate::Client) -> Self {
        self.inner = configure(self.inner);
        self
    }
}

/// A conversation of a blocking [`Client`]; see [`crate::Conversation`].
#[derive(Debug)]
pub struct Conversation<'a> {
    inner: crate::Conversation<'a>,
    runtime: &'a Runtime,
}

impl Conversation<'_> {
    /// Whether the conversation has ended: its response arrived, or it failed.
    pub fn is_over(&self) -> bool {
        self.inner.is_over()
    }

    /// Sends one message to the handler; see [`crate::Conversation::send`].
    ///
    /// # Errors
    /// As [`crate::Conversation::send`].
    pub fn send(&mut self, message: Object) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.send(message))
    }

    /// Shuts down the sending half of the connection; see
    /// [`crate::Conversation::close_send`].
    ///
    /// # Errors
    /// As [`crate::Conversation::close_send`].
    pub fn close_send(&mut self) -> Result<(), ClientError> {
        self.runtime.block_on(self.inner.close_send())
    }

    /// Waits for the handler's next message, or its response; see
    /// [`crate::Conversation::recv`].
    ///
    /// # Errors
    /// As [`crate::Conversation::recv`].
    pub fn recv(&mut self) -> Result<Turn, ClientError> {
        self.runtime.block_on(self.inner.recv())
    }
}

/// The client's runtime, started on first use: a client that is never used costs
/// no thread or file descriptor.
fn runtime(slot: &mut Option<Runtime>) -> Result<&Runtime, ClientError> {
    let runtime = match slot.take() {
        Some(runtime) => runtime,
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?,
    };
    Ok(slot.insert(runtime))
}

fn block_on<F: Future>(slot: &mut Option<Runtime>, future: F) -> Result<F::Output, ClientError> {
    Ok(runtime(slot)?.block_on(future))
}
