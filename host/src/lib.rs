//! tcpy-host: a TCP server that runs WebAssembly handler components, one fresh
//! sandboxed instance per request.
//!
//! ```text
//! client ──TCP──▶ connection ──Request{cmd, params}──▶ registry.get(cmd) ──▶ runtime.execute()
//!                     ▲                                                        │ fresh Store + instance
//!                     └─────── response (and conversation messages) ◀─────────┘
//! ```
//! [`server::run`] accepts connections; each is served by the `connection` module; the
//! [`registry::Registry`] maps commands to [`runtime::Handler`]s; the [`runtime::Runtime`]
//! owns wasmtime. The binary (`main.rs`) turns [`config::Cli`] into a running server.
#![deny(missing_docs)]

pub mod config;
mod connection;
pub mod files;
pub mod loader;
pub mod manifest;
pub mod native;
pub mod registry;
pub mod report;
pub mod runtime;
pub mod server;
pub mod units;
pub mod watcher;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use connection::ConnectionLimits;
use registry::Registry;
use runtime::{Limits, LoadError, Runtime};

/// Everything connections share: the sandbox runtime, the handlers, the caps on
/// requests in flight and on open connections.
pub struct Host {
    runtime: Arc<Runtime>,
    handlers_dir: PathBuf,
    registry: Registry,
    /// One permit per instance the pool holds: a request that finds none gets `busy`
    /// at once instead of waiting.
    in_flight: Arc<Semaphore>,
    connection_limits: ConnectionLimits,
    /// One permit per connection that may be open.
    connections: Arc<Semaphore>,
    /// Whether the native `add` and `echo` are served too (`--native-baseline`).
    native_baseline: bool,
}

/// Why a host could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// wasmtime could not be configured.
    #[error(transparent)]
    Runtime(#[from] LoadError),
    /// The handlers directory could not be read.
    #[error(transparent)]
    Dir(#[from] loader::DirError),
}

impl Host {
    /// Builds a runtime for `limits` (no compile cache) and loads every handler in `dir`.
    ///
    /// # Errors
    /// A [`SetupError`] if wasmtime cannot be configured or `dir` cannot be read. Single
    /// handlers that fail to load are logged and skipped.
    pub async fn load(limits: Limits, dir: &Path) -> Result<Self, SetupError> {
        Self::with_runtime(Runtime::new(limits)?, dir).await
    }

    /// Loads every handler in `dir` into `runtime`.
    ///
    /// # Errors
    /// A [`SetupError`] if `dir` cannot be read. Single handlers that fail to load are
    /// logged and skipped.
    pub async fn with_runtime(runtime: Runtime, dir: &Path) -> Result<Self, SetupError> {
        let limits = *runtime.limits();
        let runtime = Arc::new(runtime);
        let handlers = loader::load_dir(&runtime, dir).await?;
        let connection_limits = ConnectionLimits::default();
        Ok(Self {
            handlers_dir: dir.to_owned(),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
            connections: Arc::new(Semaphore::new(connection_limits.max_connections as usize)),
            connection_limits,
            native_baseline: false,
            registry: Registry::new(handlers),
            runtime,
        })
    }

    /// Also serves the native baseline: `add` and `echo` as plain Rust functions,
    /// under the names `native_add` and `native_echo` (see [`native`]). A handler
    /// component of the same name wins.
    pub fn with_native_baseline(mut self) -> Self {
        self.native_baseline = true;
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
        (self.limits().max_in_flight as usize).saturating_sub(self.in_flight.available_permits())
    }

    /// A slot for one more connection, if the host is below its limit.
    fn admit_connection(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.connections).try_acquire_owned().ok()
    }

    /// The native command `cmd` names, if the native baseline is on.
    fn native(&self, cmd: &str) -> Option<native::Native> {
        self.native_baseline
            .then(|| native::Native::lookup(cmd))
            .flatten()
    }

    /// The handlers this host serves.
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
}
