//! The server: what every connection shares ([`Server`]), and the accept loop with its
//! drain ([`run`]).

mod listener;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use listener::{Shutdown, run};

use crate::auth::Tokens;
use crate::connection::{ConnectionLimits, Settings};
use crate::dispatch::Dispatcher;
use crate::idempotency::{IdempotencySettings, Ledger};
use crate::loader;
use crate::metrics::LoadResult;
use crate::registry::Registry;
use crate::runtime::{Limits, LoadError, Runtime};
use crate::status::Status;
use crate::tls::Tls;

/// Everything connections share: the handlers, the dispatcher that runs them, the cap
/// on open connections, and the status the admin port reports.
pub struct Server {
    handlers_dir: PathBuf,
    registry: Arc<Registry>,
    dispatcher: Dispatcher,
    runtime: Arc<Runtime>,
    connection_limits: ConnectionLimits,
    /// One permit per connection that may be open.
    connections: Arc<Semaphore>,
    status: Arc<Status>,
    /// If set, every connection is TLS.
    tls: Option<Arc<Tls>>,
    /// The idempotency keys' ledger, in the runtime's stores (none without stores).
    ledger: Option<Arc<Ledger>>,
}

/// Why a server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// wasmtime could not be configured.
    #[error(transparent)]
    Runtime(#[from] LoadError),
    /// The handlers directory could not be read.
    #[error(transparent)]
    Dir(#[from] loader::DirError),
}

impl Server {
    /// Builds a runtime for `limits` (no compile cache) and loads every handler in `dir`.
    ///
    /// # Errors
    /// A [`SetupError`] if wasmtime cannot be configured or `dir` cannot be read. Single
    /// handlers that fail to load are logged and skipped.
    pub async fn load(limits: Limits, dir: &Path) -> Result<Self, SetupError> {
        Self::with_runtime(Runtime::new(limits)?, dir).await
    }

    /// Loads every handler in `dir` into `runtime`, with a status of its own.
    ///
    /// # Errors
    /// As [`Server::new`].
    pub async fn with_runtime(runtime: Runtime, dir: &Path) -> Result<Self, SetupError> {
        Self::new(runtime, dir, Status::new()).await
    }

    /// Loads every handler in `dir` into `runtime`, reporting to `status` (which the
    /// admin port may already be serving).
    ///
    /// # Errors
    /// A [`SetupError`] if `dir` cannot be read. Single handlers that fail to load are
    /// logged, counted and skipped.
    pub async fn new(runtime: Runtime, dir: &Path, status: Arc<Status>) -> Result<Self, SetupError> {
        // NB: absolute (symlinks kept, not resolved): the watcher matches the paths of
        // its events against it, and those are absolute.
        let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let runtime = Arc::new(runtime);
        let loaded = loader::load_dir(&runtime, dir).await?;
        for _ in 0..loaded.handlers.len() {
            status.metrics().handler_load(LoadResult::Loaded);
        }
        for _ in 0..loaded.rejected {
            status.metrics().handler_load(LoadResult::Rejected);
        }
        let registry = Arc::new(Registry::new(loaded.handlers, Arc::clone(&status)));
        let connection_limits = ConnectionLimits::default();
        let server = Self {
            handlers_dir: dir.to_owned(),
            dispatcher: Dispatcher::new(registry.clone(), Arc::clone(&runtime), Arc::clone(&status)),
            registry,
            runtime,
            connections: Arc::new(Semaphore::new(connection_limits.max_connections as usize)),
            connection_limits,
            status,
            tls: None,
            ledger: None,
        };
        Ok(server.with_idempotency(IdempotencySettings::DEFAULT))
    }

    /// Keeps the idempotency keys of requests with `settings`, in the runtime's stores;
    /// a host without stores refuses keyed requests.
    pub fn with_idempotency(mut self, settings: IdempotencySettings) -> Self {
        if let Some(stores) = self.runtime.stores() {
            let ledger = Arc::new(Ledger::new(Arc::clone(stores), settings));
            self.dispatcher = self.dispatcher.with_ledger(Arc::clone(&ledger));
            self.ledger = Some(ledger);
        }
        self
    }

    /// The idempotency keys' ledger, if the host keeps one.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    /// Serves every connection over TLS with `tls`.
    pub fn with_tls(mut self, tls: Arc<Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Asks every connection for one of `tokens` first.
    pub fn with_tokens(mut self, tokens: Arc<Tokens>) -> Self {
        self.dispatcher = self.dispatcher.with_tokens(tokens);
        self
    }

    /// The TLS connections are served with, if any.
    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// Also serves the native baseline: `add` and `echo` as plain Rust functions,
    /// under the names `native_add` and `native_echo` (see [`crate::native`]). A
    /// handler component of the same name wins.
    #[cfg(feature = "bench")]
    pub fn with_native_baseline(mut self) -> Self {
        let baseline = crate::native::Baseline::over(self.registry.clone());
        self.dispatcher = self.dispatcher.with_commands(Arc::new(baseline));
        self
    }

    /// Applies `limits` to the connections served from now on.
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.connections = Arc::new(Semaphore::new(limits.max_connections as usize));
        self.connection_limits = limits;
        self
    }

    /// The limits on connections.
    pub fn connection_limits(&self) -> &ConnectionLimits {
        &self.connection_limits
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        (self.connection_limits.max_connections as usize).saturating_sub(self.connections.available_permits())
    }

    /// Requests running now.
    pub fn requests_in_flight(&self) -> usize {
        self.dispatcher.requests_in_flight()
    }

    /// A slot for one more connection, if the server is below its limit.
    fn admit_connection(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.connections).try_acquire_owned().ok()
    }

    /// What a connection needs to serve its client.
    fn connection_settings(&self) -> Settings<'_> {
        Settings {
            limits: self.connection_limits,
            max_message: self.limits().max_message,
            dispatcher: &self.dispatcher,
        }
    }

    /// The handlers this server serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The directory the handlers come from.
    pub fn handlers_dir(&self) -> &Path {
        &self.handlers_dir
    }

    /// The sandbox runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The limits every request runs under.
    pub fn limits(&self) -> &Limits {
        self.runtime.limits()
    }

    /// The phase and the metrics.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }
}
