//! The sandbox: compiles handler components once, runs each request in a fresh instance.
//!
//! `Engine`, `Linker` and each handler's `InstancePre` are built at load time; a request
//! gets a new `Store` with its own memory cap, deadline and (empty) WASI context, takes
//! an instance from wasmtime's pooling allocator, and drops it all when it ends.

mod bindings;
mod cache;
mod clock;
mod compiled;
mod conversation;
mod engine;
mod error;
mod keyvalue;
mod limits;
#[cfg(feature = "bench")]
mod reuse;
mod sandbox;
mod state;
mod stdio;
mod warm;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tcpy_protocol::Object;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

pub use cache::Digest;
pub use compiled::CompiledHandler;
pub use conversation::{Conversation, ConversationError, ConversationFuture, NoClient};
pub use error::{ExecError, LoadError};
pub use keyvalue::{Bucket, Cas, MAX_HANDLES};
pub use limits::{AboveCeiling, Limits, RequestLimits};
#[cfg(feature = "bench")]
pub use reuse::ReusedInstance;
pub use sandbox::{Access, DirGrant, IDENTITY_VAR, Sandbox};
pub use state::{TooManySends, TooManyWaiting};
pub use stdio::{MAX_BYTES_PER_REQUEST, MAX_LINES_PER_REQUEST};

use crate::keyvalue::Stores;
use clock::Overrun;
use state::RequestState;

/// Compiles and runs handler components.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RequestState>,
    limits: Limits,
    cache: Option<cache::CompileCache>,
    /// One permit per request that may be in conversation at once (`limits.max_waiting`).
    waiting: Arc<Semaphore>,
    /// The key-value stores handlers may be granted, if the host has any.
    stores: Option<Arc<Stores>>,
    /// Places for pre-warmed instances, host-wide; `None` when pre-warming is off.
    prewarm: Option<Arc<Semaphore>>,
}

impl Runtime {
    /// Builds the engine (pooling allocator sized for `limits.max_in_flight`, epoch
    /// interruption driven by a ticker thread) and the linker: WASI p2 with nothing
    /// granted, plus the `connection` interface.
    ///
    /// # Errors
    /// Fails if the default limits are above the ceiling, or if wasmtime rejects the
    /// configuration (e.g. the pool cannot be reserved).
    pub fn new(limits: Limits) -> Result<Self, LoadError> {
        limits.request.check_within(&limits.ceiling)?;
        let engine = engine::build(&limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(LoadError::Engine)?;
        bindings::Handler::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(LoadError::Engine)?;
        Ok(Self {
            engine,
            linker,
            waiting: Arc::new(Semaphore::new(limits.max_waiting as usize)),
            prewarm: (limits.prewarm > 0).then(|| Arc::new(Semaphore::new(limits.prewarm as usize))),
            limits,
            cache: None,
            stores: None,
        })
    }

    /// Gives handlers the key-value `stores`: each reaches those its manifest grants.
    pub fn with_stores(mut self, stores: Arc<Stores>) -> Self {
        self.stores = Some(stores);
        self
    }

    /// The key-value stores, if the host has any.
    pub fn stores(&self) -> Option<&Arc<Stores>> {
        self.stores.as_ref()
    }

    /// Keeps compiled components in `dir`, so a component already compiled (same
    /// bytes, same engine settings) is loaded instead of compiled again.
    ///
    /// # Errors
    /// Fails if `dir` cannot be created.
    pub fn with_compile_cache(mut self, dir: &Path) -> Result<Self, LoadError> {
        let cache = cache::CompileCache::open(dir, &self.engine).map_err(|source| LoadError::Cache {
            dir: dir.to_owned(),
            source,
        })?;
        self.cache = Some(cache);
        Ok(self)
    }

    /// The limits requests run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The sandbox of a handler with no manifest: the default limits, nothing granted.
    pub fn default_sandbox(&self) -> Sandbox {
        Sandbox::with_limits(self.limits.request)
    }

    /// Compiles `bytes` as the handler for command `name`, to run in `sandbox`, and
    /// checks that it implements the `handler` world. CPU-heavy: call it off the
    /// async threads.
    ///
    /// # Errors
    /// A [`LoadError`] if the sandbox's limits are above the ceiling, or the bytes are
    /// not a component or do not fit the world.
    pub fn compile(&self, name: &str, bytes: &[u8], sandbox: Sandbox) -> Result<CompiledHandler, LoadError> {
        sandbox.limits.check_within(&self.limits.ceiling)?;
        let digest = Digest::of(bytes);
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, &digest))
        {
            return CompiledHandler::link(&self.linker, name, &component, digest, true, sandbox);
        }
        let component = Component::new(&self.engine, bytes).map_err(LoadError::Compile)?;
        // Link before caching: a component that does not fit the world is not kept.
        let handler = CompiledHandler::link(&self.linker, name, &component, digest, false, sandbox)?;
        if let Some(cache) = &self.cache {
            cache.store(&digest, &component);
        }
        Ok(handler)
    }

    /// Runs one request of `caller` (its identity, if the host knows it): a fresh
    /// instance of `handler` executes `params`, talking to the client through
    /// `conversation`. Returns the handler's response object.
    ///
    /// The call races a watchdog: past its deadline (time running, in wasm or in a host
    /// call) or its total time (waits included), the request is stopped wherever it is.
    ///
    /// # Errors
    /// An [`ExecError`] if the handler traps, runs out of time or memory, or answers
    /// something that is not a response.
    pub async fn execute(
        &self,
        handler: &CompiledHandler,
        params: Object,
        conversation: Box<dyn Conversation>,
        caller: Option<&str>,
    ) -> Result<Object, ExecError> {
        let params = serde_json::Value::Object(params).to_string();
        let (mut store, warm) = match handler.shelf().take() {
            Some(warm) => {
                let mut store = warm.store;
                store
                    .data_mut()
                    .begin(handler.sandbox(), caller, conversation)
                    .map_err(|error| ExecError::Sandbox(format!("{error:#}")))?;
                store.set_epoch_deadline(1);
                (store, Some(warm.instance))
            }
            None => (self.new_store(handler, conversation, caller)?, None),
        };
        self.prewarm(handler);
        let (clock, limits) = (Arc::clone(&store.data().clock), store.data().limits);
        let started = Instant::now();
        let call = async {
            let instance = match warm {
                Some(instance) => instance,
                None => handler.pre().instantiate_async(&mut store).await?,
            };
            instance.call_execute(&mut store, &params).await
        };
        let result = tokio::select! {
            // NB: biased, so a call that finished is never reported as overrun.
            biased;
            result = call => result,
            overrun = clock.watchdog(&limits) => {
                // The call's future is dropped here, which cancels it mid-call; the
                // store and its instance go with it.
                return Err(match overrun {
                    Overrun::Deadline => ExecError::Timeout { limit: limits.timeout, elapsed: started.elapsed() },
                    Overrun::TotalTime => ExecError::TooLong { limit: limits.max_request_time },
                });
            }
        };
        match result {
            Ok(text) => error::parse_response(&text, self.limits.max_message),
            Err(error) => Err(self.classify(error, store.data(), started)),
        }
    }

    /// Makes one more pre-warmed instance of `handler`, in a task of its own, if its
    /// shelf and the host's budget have room.
    fn prewarm(&self, handler: &CompiledHandler) {
        let Some(budget) = &self.prewarm else {
            return;
        };
        let shelf = handler.shelf();
        let Some(place) = shelf.reserve(budget, self.limits.prewarm as usize) else {
            return;
        };
        let (shelf, pre) = (Arc::clone(shelf), handler.pre().clone());
        let (name, sandbox) = (Arc::clone(handler.name()), Arc::clone(handler.shared_sandbox()));
        let (engine, waiting, stores) = (
            self.engine.clone(),
            Arc::clone(&self.waiting),
            self.stores.clone(),
        );
        let max_message = self.limits.max_message;
        tokio::spawn(async move {
            // Requests already waiting to run go first.
            tokio::task::yield_now().await;
            let made: wasmtime::Result<warm::Warm> = async {
                let state = RequestState::new(
                    &name,
                    &sandbox,
                    None,
                    Box::new(NoClient),
                    max_message,
                    waiting,
                    stores,
                )?;
                let mut store = fresh_store(&engine, state);
                let instance = pre.instantiate_async(&mut store).await?;
                Ok(warm::Warm::new(store, instance, place))
            }
            .await;
            let warm = made
                .inspect_err(|error: &wasmtime::Error| {
                    tracing::debug!(cmd = %name, error = %error, "cannot pre-warm an instance");
                })
                .ok();
            shelf.made(warm);
        });
    }

    /// A fresh store for one request of `handler` by `caller`: its sandbox, memory cap
    /// and deadline.
    fn new_store(
        &self,
        handler: &CompiledHandler,
        conversation: Box<dyn Conversation>,
        caller: Option<&str>,
    ) -> Result<Store<RequestState>, ExecError> {
        let state = RequestState::new(
            handler.name(),
            handler.sandbox(),
            caller,
            conversation,
            self.limits.max_message,
            Arc::clone(&self.waiting),
            self.stores.clone(),
        )
        .map_err(|error| ExecError::Sandbox(format!("{error:#}")))?;
        Ok(fresh_store(&self.engine, state))
    }

    /// Turns a wasmtime error into the reason a client is told.
    fn classify(&self, error: wasmtime::Error, state: &RequestState, started: Instant) -> ExecError {
        if let Some(conversation) = error.downcast_ref::<ConversationError>() {
            return ExecError::Conversation(conversation.clone());
        }
        if let Some(sends) = error.downcast_ref::<TooManySends>() {
            return ExecError::TooManySends(sends.clone());
        }
        if error.downcast_ref::<TooManyWaiting>().is_some() {
            return ExecError::TooManyWaiting(TooManyWaiting);
        }
        if let Some(pool) = error.downcast_ref::<PoolConcurrencyLimitError>() {
            return ExecError::PoolExhausted(pool.to_string());
        }
        if state.memory.exhausted() {
            return ExecError::MemoryExhausted {
                limit: state.limits.max_memory,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            if state.clock.elapsed() >= state.limits.max_request_time {
                return ExecError::TooLong {
                    limit: state.limits.max_request_time,
                };
            }
            return ExecError::Timeout {
                limit: state.limits.timeout,
                elapsed: started.elapsed(),
            };
        }
        // The client learns what happened; the wasm backtrace is for the operator's log.
        tracing::debug!(cmd = %state.command(), error = ?error, "handler trapped");
        match error.downcast_ref::<Trap>() {
            Some(trap) => ExecError::Trapped(trap.to_string()),
            None => ExecError::Trapped(error.root_cause().to_string()),
        }
    }
}

/// A store for `state`: its memory cap and its epoch deadline, whose callback yields at
/// every tick and stops the call past its time.
fn fresh_store(engine: &Engine, state: RequestState) -> Store<RequestState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        // NB: yielding at every tick keeps a long-running handler from holding a
        // tokio worker thread. It must be tokio's `yield_now`, which lets the
        // worker poll its I/O and timers first; a plain `Yield` re-queues the task
        // at once, and a busy worker then checks its sockets only every 61 polls.
        // The budget excludes time spent waiting in `recv()`.
        if ctx.data().clock.overrun(&ctx.data().limits).is_some() {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        }
    });
    store
}
