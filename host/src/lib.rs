//! tcpy-host: a TCP server that runs WebAssembly handler components, one fresh
//! sandboxed instance per request.
//!
//! ```text
//! client ──TCP──▶ connection ──message──▶ dispatch ──cmd──▶ registry ──handler──▶ runtime
//!                     ▲                       │ admission, log line, metrics          │ fresh Store + instance
//!                     └──── response (and conversation messages) ◀────────────────────┘
//! ```
//! [`server::run`] accepts connections and drains them at shutdown; the `connection`
//! module is pure I/O over any byte stream; the [`dispatch::Dispatcher`] parses, admits,
//! runs and accounts for each request; the [`registry::Registry`] maps commands to
//! [`runtime::CompiledHandler`]s; the [`runtime::Runtime`] owns wasmtime. The [`admin`]
//! port reports the [`status::Status`]. The binary (`main.rs`) turns [`config::Cli`]
//! into a running server.
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod config;
mod connection;
pub mod dispatch;
pub mod files;
pub mod idempotency;
pub mod keyvalue;
pub mod loader;
pub mod manifest;
pub mod metrics;
#[cfg(feature = "bench")]
pub mod native;
pub mod registry;
pub mod reload;
pub mod report;
pub mod runtime;
pub mod server;
pub mod status;
pub mod tls;
pub mod units;
pub mod watcher;

pub use connection::ConnectionLimits;
pub use server::{Server, SetupError};
