//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::TypedValueParser;

use crate::ConnectionLimits;
use crate::idempotency::IdempotencySettings;
use crate::keyvalue::KvLimits;
use crate::runtime::{Limits, RequestLimits};
use crate::server::Shutdown;
use crate::tls::TlsFiles;
use crate::units::{parse_duration, parse_size};

/// Command-line options of `tcpy-host`.
#[derive(Debug, Parser)]
#[command(
    name = "tcpy-host",
    version,
    about = "Serve WebAssembly handler components over TCP, a fresh sandbox per request"
)]
pub struct Cli {
    /// Directory of handler components: `NAME.wasm` serves command `NAME`.
    #[arg(long, value_name = "DIR")]
    pub handlers: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = tcpy_protocol::DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the log says which).
    #[arg(long, default_value_t = tcpy_protocol::DEFAULT_PORT)]
    pub port: u16,
    /// Worker threads for the async runtime [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Time a request may run, not counting waits for the client in `recv()` (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration, help_heading = LIMITS)]
    pub timeout: Duration,
    /// Largest linear memory of one handler instance (e.g. 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size, help_heading = LIMITS)]
    pub max_memory: usize,
    /// Messages a handler may `send()` in one request.
    #[arg(long, default_value_t = RequestLimits::DEFAULT.max_sends, help_heading = LIMITS)]
    pub max_sends: u32,
    /// Longest a handler's `recv()` waits for the client's next message.
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = LIMITS)]
    pub recv_timeout: Duration,
    /// Longest a whole request may take, including its waits for the client in `recv()`.
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = LIMITS)]
    pub max_request_time: Duration,
    /// The most a handler manifest may set `max_request_time` to.
    #[arg(long, default_value = "10m", value_parser = parse_duration, help_heading = CEILINGS)]
    pub max_request_time_ceiling: Duration,
    /// The most a handler manifest may set `timeout` to.
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = CEILINGS)]
    pub timeout_ceiling: Duration,
    /// The most a handler manifest may set `max_memory` to; sizes the instance pool's slots.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, help_heading = CEILINGS)]
    pub memory_ceiling: usize,
    /// The most a handler manifest may set `max_sends` to.
    #[arg(long, default_value_t = RequestLimits::CEILING.max_sends, help_heading = CEILINGS)]
    pub sends_ceiling: u32,
    /// The most a handler manifest may set `recv_timeout` to.
    #[arg(long, default_value = "5m", value_parser = parse_duration, help_heading = CEILINGS)]
    pub recv_timeout_ceiling: Duration,
    /// Largest message accepted or sent, either way (e.g. 1MiB).
    #[arg(long, default_value = "1MiB", value_parser = parse_size, help_heading = LIMITS)]
    pub max_message: usize,
    /// Requests that may run at once; more get a `busy` error. Sizes the instance pool.
    #[arg(long, alias = "max-requests", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), help_heading = LIMITS)]
    pub max_in_flight: u32,
    /// Instances made ahead of their requests, host-wide, for the handlers called
    /// recently; each serves exactly one request. Worth it for slow-to-instantiate
    /// handlers (Python) whose requests come with pauses; 0, the default, is off.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_PREWARM, help_heading = LIMITS)]
    pub prewarm: u32,
    /// Requests that may wait for their client in `recv()` at once; past it a `recv()`
    /// ends its request with `busy` [default: half of --max-in-flight].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = LIMITS)]
    pub max_waiting: Option<u32>,
    /// Largest handler component (`NAME.wasm`) loaded; larger files are refused.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, help_heading = LIMITS)]
    pub max_component_size: usize,
    /// Largest handler manifest (`NAME.toml`) read; larger files keep the handler out.
    #[arg(long, default_value = "1MiB", value_parser = parse_size, help_heading = LIMITS)]
    pub max_manifest_size: usize,
    /// Connections that may be open at once; more are answered `busy` and closed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), help_heading = LIMITS)]
    pub max_connections: u32,
    /// How long a connection may sit with no request before it is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = LIMITS)]
    pub idle_timeout: Duration,
    /// How long a message may take to arrive once its first byte has (slowloris guard).
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = LIMITS)]
    pub read_timeout: Duration,
    /// How long a client may take to read a message written to it.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = LIMITS)]
    pub write_timeout: Duration,
    /// Do not follow changes to the handlers directory (hot swap is on by default).
    #[arg(long)]
    pub no_watch: bool,
    /// Where compiled handlers are cached [default: $XDG_CACHE_HOME/tcpy or ~/.cache/tcpy].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every handler afresh; keep no compile cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Where the embedded key-value stores are kept (the file `stores.redb` in it)
    /// [default: $XDG_DATA_HOME/tcpy or ~/.local/share/tcpy].
    #[arg(long, value_name = "DIR", help_heading = STATE)]
    pub data_dir: Option<PathBuf>,
    /// Keep every key-value store in this Redis instead (e.g. redis://127.0.0.1:6379/0),
    /// shared by every host given the same URL.
    #[arg(long, value_name = "URL", help_heading = STATE)]
    pub redis: Option<String>,
    /// Longest key-value key, in bytes.
    #[arg(long, default_value_t = KvLimits::DEFAULT.max_key, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize), help_heading = STATE)]
    pub kv_max_key: usize,
    /// Largest key-value value (e.g. 512KiB) [default: --max-message].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = STATE)]
    pub kv_max_value: Option<usize>,
    /// Most keys in one key-value batch call.
    #[arg(long, default_value_t = KvLimits::DEFAULT.max_batch, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize), help_heading = STATE)]
    pub kv_max_batch: usize,
    /// Longest one key-value operation may take before the handler gets an error.
    #[arg(long, default_value = "2s", value_parser = parse_duration, help_heading = STATE)]
    pub kv_timeout: Duration,
    /// How long the answer of a request with an `idempotency_key` is kept for its retries.
    #[arg(long, default_value = "24h", value_parser = parse_duration, help_heading = STATE)]
    pub idempotency_ttl: Duration,
    /// How long a request waits while another request with its idempotency key runs,
    /// before it is answered `in_progress`.
    #[arg(long, default_value = "5s", value_parser = parse_duration, help_heading = STATE)]
    pub idempotency_wait: Duration,
    /// Serve every connection over TLS with this certificate chain (PEM); needs
    /// --tls-key. Reloaded on SIGHUP and when the file changes.
    #[arg(long, value_name = "PEM", requires = "tls_key", help_heading = SECURITY)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert", help_heading = SECURITY)]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by a CA in this PEM bundle; a certificate's
    /// subject (CN, else first SAN) becomes the connection's identity.
    #[arg(long, value_name = "PEM", requires = "tls_cert", help_heading = SECURITY)]
    pub tls_client_ca: Option<PathBuf>,
    /// Ask every connection for a token first ({"cmd": "auth", "token": "…"}): a TOML
    /// file of `identity = "token"` lines. Reloaded on SIGHUP and when it changes.
    #[arg(long, value_name = "FILE", help_heading = SECURITY)]
    pub auth_tokens: Option<PathBuf>,
    /// Serve the admin port here: /livez, /readyz and /metrics over HTTP (e.g.
    /// 127.0.0.1:9272) [default: off].
    #[arg(long, value_name = "ADDR", help_heading = OPERATIONS)]
    pub admin: Option<String>,
    /// After SIGTERM or Ctrl-C: how long to go on serving as usual, with /readyz
    /// failing, before the listener closes (a balancer needs a check or two to notice).
    #[arg(long, default_value = "5s", value_parser = parse_duration, help_heading = OPERATIONS)]
    pub drain_delay: Duration,
    /// Once the listener has closed: how long requests in flight may still run before
    /// they are cut off.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = OPERATIONS)]
    pub grace: Duration,
    /// Also serve `native_add` and `native_echo`: the example handlers as plain Rust,
    /// no sandbox, for benchmarks to compare against (see docs/performance.md).
    #[cfg(feature = "bench")]
    #[arg(long)]
    pub native_baseline: bool,
}

/// Help heading of the limits.
const LIMITS: &str = "Limits (see docs/security.md)";
/// Help heading of the ceilings on what handler manifests may set.
const CEILINGS: &str = "Ceilings on handler manifests";
/// Help heading of the key-value stores (see docs/state.md).
const STATE: &str = "Key-value stores (see docs/state.md)";
/// Help heading of TLS and authentication (see docs/security.md).
const SECURITY: &str = "TLS and authentication (see docs/security.md)";
/// Help heading of the admin port and shutdown (see docs/operations.md).
const OPERATIONS: &str = "Operations (see docs/operations.md)";

impl Cli {
    /// The limits the runtime enforces, as these options set them.
    pub fn limits(&self) -> Limits {
        Limits {
            request: RequestLimits {
                timeout: self.timeout,
                max_memory: self.max_memory,
                max_sends: self.max_sends,
                recv_timeout: self.recv_timeout,
                max_request_time: self.max_request_time,
            },
            ceiling: RequestLimits {
                timeout: self.timeout_ceiling,
                max_memory: self.memory_ceiling,
                max_sends: self.sends_ceiling,
                recv_timeout: self.recv_timeout_ceiling,
                max_request_time: self.max_request_time_ceiling,
            },
            max_message: self.max_message,
            max_in_flight: self.max_in_flight,
            max_waiting: self
                .max_waiting
                .unwrap_or(Limits::default_max_waiting(self.max_in_flight)),
            prewarm: self.prewarm,
            max_component: self.max_component_size,
            max_manifest: self.max_manifest_size,
        }
    }

    /// The limits on connections, as these options set them.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
        }
    }

    /// The TLS files, if --tls-cert is given.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// How the server shuts down, as these options set it.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            drain_delay: self.drain_delay,
            grace: self.grace,
        }
    }

    /// How idempotency keys are kept, as these options set it.
    pub fn idempotency(&self) -> IdempotencySettings {
        IdempotencySettings {
            ttl: self.idempotency_ttl,
            wait: self.idempotency_wait,
        }
    }

    /// The limits on key-value operations, as these options set them.
    pub fn kv_limits(&self) -> KvLimits {
        KvLimits {
            max_key: self.kv_max_key,
            max_value: self.kv_max_value.unwrap_or(self.max_message),
            max_batch: self.kv_max_batch,
            timeout: self.kv_timeout,
        }
    }

    /// Where the embedded stores are kept: `--data-dir`, else the user's data
    /// directory; `None` if neither is known (no `HOME`).
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.data_dir
            .clone()
            .or_else(|| user_dir("XDG_DATA_HOME", ".local/share"))
    }

    /// The compile cache directory to use, if any: `--cache-dir`, else the user's
    /// cache directory; none with `--no-cache` or when no cache directory is known.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir
            .clone()
            .or_else(|| user_dir("XDG_CACHE_HOME", ".cache"))
    }
}

/// `tcpy` under the directory the XDG variable `xdg` names, else under `~/{fallback}`.
fn user_dir(xdg: &str, fallback: &str) -> Option<PathBuf> {
    let base = std::env::var_os(xdg)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(fallback)))?;
    Some(base.join("tcpy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_limits() {
        let cli = Cli::parse_from(["tcpy-host", "--handlers", "h"]);
        assert_eq!(cli.port, 7272);
        assert_eq!(cli.limits(), Limits::default());
        assert_eq!(cli.connection_limits(), ConnectionLimits::default());
        assert_eq!(cli.admin, None);
        assert_eq!(cli.kv_limits(), KvLimits::DEFAULT);
    }

    #[test]
    fn max_requests_is_the_old_name_of_max_in_flight() {
        let cli = Cli::parse_from(["tcpy-host", "--handlers", "h", "--max-requests", "8"]);
        assert_eq!(cli.limits().max_in_flight, 8);
        assert_eq!(cli.limits().max_waiting, 4);
    }
}
