//! Per-request store data: WASI context, limits, timing, key-value access and the host
//! side of `connection`.

use std::sync::Arc;

use tcpy_protocol::{Object, is_response};

use crate::keyvalue::Stores;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::tcpy::handler::connection;
use super::clock::RequestClock;
use super::keyvalue::KeyValue;
use super::{Conversation, ConversationError, RequestLimits, Sandbox};

/// Everything one request's `Store` holds. Built fresh for every request.
pub(crate) struct RequestState {
    pub(super) command: Arc<str>,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    /// The stores this request may open, and its open handles.
    pub(super) keyvalue: KeyValue,
    pub(super) memory: MemoryLimiter,
    conversation: Box<dyn Conversation>,
    pub(super) limits: RequestLimits,
    max_message: usize,
    /// Messages sent so far, against `limits.max_sends`.
    sent: u32,
    /// The deadline's and the total time's clocks, shared with the watchdog.
    pub(super) clock: Arc<RequestClock>,
    /// Permits for requests in conversation (that have waited in `recv()`), host-wide.
    waiting: Arc<Semaphore>,
    /// This request's permit, taken at its first `recv()` and kept to its end, so a
    /// conversation under way is never cut off by newcomers between two messages.
    conversing: Option<OwnedSemaphorePermit>,
}

impl RequestState {
    /// The state of one request of `command` by `caller` in `sandbox`.
    ///
    /// # Errors
    /// Fails if a granted directory can no longer be opened.
    pub(super) fn new(
        command: &Arc<str>,
        sandbox: &Sandbox,
        caller: Option<&str>,
        conversation: Box<dyn Conversation>,
        max_message: usize,
        waiting: Arc<Semaphore>,
        stores: Option<Arc<Stores>>,
    ) -> wasmtime::Result<Self> {
        Ok(Self {
            command: command.clone(),
            wasi: sandbox.wasi(command, caller)?,
            table: ResourceTable::new(),
            keyvalue: KeyValue::new(stores, sandbox.keyvalue.clone()),
            memory: MemoryLimiter::new(sandbox.limits.max_memory),
            conversation,
            limits: sandbox.limits,
            max_message,
            sent: 0,
            clock: Arc::new(RequestClock::start()),
            waiting,
            conversing: None,
        })
    }

    /// Makes the state of a pre-warmed instance that of one request, of `caller`,
    /// talking through `conversation`, its clocks starting now.
    ///
    /// # Errors
    /// As [`RequestState::new`].
    pub(super) fn begin(
        &mut self,
        sandbox: &Sandbox,
        caller: Option<&str>,
        conversation: Box<dyn Conversation>,
    ) -> wasmtime::Result<()> {
        // NB: the WASI context is made again, for the caller's identity; the resource
        // table stays, empty, as instantiating puts nothing in it.
        self.wasi = sandbox.wasi(&self.command, caller)?;
        self.conversation = conversation;
        self.clock = Arc::new(RequestClock::start());
        Ok(())
    }

    /// The command this request runs.
    pub(super) fn command(&self) -> &str {
        &self.command
    }

    /// Starts the clocks again, for an instance that serves another call.
    #[cfg(feature = "bench")]
    pub(super) fn restart(&mut self) {
        self.clock.restart();
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl connection::Host for RequestState {
    async fn send(&mut self, message: String) -> wasmtime::Result<Result<(), String>> {
        if self.sent >= self.limits.max_sends {
            // Ends the handler: one that ignores errors could otherwise spin until its deadline.
            return Err(wasmtime::Error::new(TooManySends {
                max: self.limits.max_sends,
            }));
        }
        self.sent += 1;
        Ok(self.deliver(message).await)
    }

    async fn recv(&mut self) -> wasmtime::Result<Option<String>> {
        if self.conversing.is_none() {
            let Ok(permit) = Arc::clone(&self.waiting).try_acquire_owned() else {
                // Ends the handler: its instance goes back to requests that are running.
                return Err(wasmtime::Error::new(TooManyWaiting));
            };
            self.conversing = Some(permit);
        }
        self.clock.begin_wait();
        let received = self.conversation.recv(self.limits.recv_timeout).await;
        self.clock.end_wait();
        match received {
            Ok(message) => Ok(message.map(|object| serde_json::Value::Object(object).to_string())),
            // Ends the handler: the runtime finds this error and tells the client why.
            Err(error) => Err(wasmtime::Error::new(error)),
        }
    }
}

impl RequestState {
    /// Checks one message from the handler and sends it to the client; the error
    /// is the handler's to handle.
    async fn deliver(&mut self, message: String) -> Result<(), String> {
        if message.len() > self.max_message {
            return Err(ConversationError::TooLarge {
                max: self.max_message,
            }
            .to_string());
        }
        let object: Object = match serde_json::from_str(&message) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => return Err("message must be a JSON object".to_owned()),
        };
        if is_response(&object) {
            return Err(
                "a message with \"success\": true or \"error\": true is a response; \
                        return it from execute instead"
                    .to_owned(),
            );
        }
        self.conversation
            .send(object)
            .await
            .map_err(|error| error.to_string())
    }
}

/// A handler sent more messages in one request than its limit allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("handler sent more than its limit of {max} messages in one request")]
pub struct TooManySends {
    /// The limit.
    pub max: u32,
}

/// A `recv()` found the host's cap on requests waiting for their clients reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many requests are waiting for their clients; try again later")]
pub struct TooManyWaiting;

/// Caps each linear memory of an instance and remembers whether the cap was hit,
/// so the client can be told "out of memory" rather than just "trapped".
pub(super) struct MemoryLimiter {
    max_memory: usize,
    exhausted: bool,
}

impl MemoryLimiter {
    fn new(max_memory: usize) -> Self {
        Self {
            max_memory,
            exhausted: false,
        }
    }

    /// Whether the instance asked for more memory than the cap.
    pub(super) fn exhausted(&self) -> bool {
        self.exhausted
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory;
        self.exhausted |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}
