//! Test support: a real tcpy host on 127.0.0.1 port 0 serving the built handlers,
//! and small raw-socket clients for both framings.

pub mod certs;
pub mod fleet;
pub mod haproxy;
pub mod hostile;
pub mod http;
pub mod logs;
pub mod process;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use serde_json::Value;
use tcpy_host::runtime::{Limits, RequestLimits, Runtime};
use tcpy_host::server::Shutdown;
use tcpy_host::watcher::{SwapEvent, Watcher};
use tcpy_host::{ConnectionLimits, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// The workspace's target directory: `CARGO_TARGET_DIR`, else `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The directory `cargo xtask build-handlers` fills with the example and test handlers.
pub fn handlers_dir() -> PathBuf {
    let target = target_dir();
    let dir = target.join("test-handlers");
    assert!(
        dir.join("add.wasm").is_file() && dir.join("misbehave.wasm").is_file(),
        "no handlers in {}: run `cargo xtask test` (or `cargo xtask build-handlers` first)",
        dir.display()
    );
    dir
}

/// The handlers of one language, where `cargo xtask build-handlers` puts them for the
/// cross-language tests: `target/language-handlers/{rust,py,js}`, each serving `add`
/// and `tally`. The Python and JavaScript components are large, so they live apart
/// from [`handlers_dir`], which every other test host loads.
pub fn language_handlers_dir(language: &str) -> PathBuf {
    let target = target_dir();
    let dir = target.join("language-handlers").join(language);
    assert!(
        dir.join("add.wasm").is_file() && dir.join("tally.wasm").is_file(),
        "no handlers in {}: run `cargo xtask test` (or `cargo xtask build-handlers` first)",
        dir.display()
    );
    dir
}

/// The program `name` on the `PATH`, which Debian's `package` installs (as `cargo
/// xtask test` does when it is missing); panics saying so if it is not there.
pub fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("no `{name}` on the PATH: run `cargo xtask test`, which installs Debian's `{package}`, or install it yourself")
        })
}

/// Sends `signal` to `child`, a process the test started and has not reaped.
pub fn send_signal(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill takes no pointers; the pid is our own child's, not yet reaped.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Routes the host's logs to the test output, shown when a test fails.
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "tcpy_host=debug".into()))
            .with_test_writer()
            .try_init();
    });
}

/// Limits small enough for tests to hit quickly.
pub fn test_limits() -> Limits {
    Limits {
        request: RequestLimits {
            timeout: Duration::from_secs(2),
            ..RequestLimits::DEFAULT
        },
        max_in_flight: 128,
        ..Limits::default()
    }
}

/// [`test_limits`] with the per-request defaults changed by `change`.
pub fn request_limits(change: impl FnOnce(&mut RequestLimits)) -> Limits {
    let mut limits = test_limits();
    change(&mut limits.request);
    limits
}

/// The bytes of a built handler component, e.g. `handler_bytes("add")`.
pub fn handler_bytes(name: &str) -> Vec<u8> {
    std::fs::read(handlers_dir().join(format!("{name}.wasm"))).expect("a built handler")
}

/// A running host; [`TestHost::begin_shutdown`] stops it gracefully.
pub struct TestHost {
    /// Where it listens.
    pub addr: SocketAddr,
    host: Arc<Server>,
    watcher: Option<Watcher>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl TestHost {
    /// A host with [`test_limits`] and a 5 s grace period.
    pub async fn start() -> Self {
        Self::start_with(test_limits(), Duration::from_secs(5)).await
    }

    /// A host with the given limits and grace period.
    pub async fn start_with(limits: Limits, grace: Duration) -> Self {
        let runtime = Runtime::new(limits).expect("runtime builds");
        Self::serve(runtime, &handlers_dir(), grace, false).await
    }

    /// A host with [`test_limits`] and the given limits on connections.
    pub async fn start_with_connection_limits(limits: ConnectionLimits) -> Self {
        init_logging();
        let runtime = Runtime::new(test_limits()).expect("runtime builds");
        let host = Server::with_runtime(runtime, &handlers_dir())
            .await
            .expect("host loads");
        Self::serve_host(host.with_connection_limits(limits), Duration::from_secs(5), false).await
    }

    /// A host with [`test_limits`] serving the handlers in `dir`, compiled through a
    /// compile cache beside them (`DIR/../compile-cache`), so that large components are
    /// compiled once, not in every test run.
    pub async fn start_in(dir: &Path) -> Self {
        let cache = dir.parent().unwrap_or(dir).join("compile-cache");
        let runtime = Runtime::new(test_limits())
            .expect("runtime builds")
            .with_compile_cache(&cache)
            .expect("compile cache opens");
        Self::serve(runtime, dir, Duration::from_secs(5), false).await
    }

    /// A host with [`test_limits`] that also serves the native baseline
    /// (`native_add`, `native_echo`).
    pub async fn start_native_baseline() -> Self {
        init_logging();
        let runtime = Runtime::new(test_limits()).expect("runtime builds");
        let host = Server::with_runtime(runtime, &handlers_dir())
            .await
            .expect("host loads");
        Self::serve_host(host.with_native_baseline(), Duration::from_secs(5), false).await
    }

    /// A host running `runtime` on the handlers in `dir`, following changes to the
    /// directory if `watch`.
    pub async fn serve(runtime: Runtime, dir: &Path, grace: Duration, watch: bool) -> Self {
        init_logging();
        let host = Server::with_runtime(runtime, dir).await.expect("host loads");
        Self::serve_host(host, grace, watch).await
    }

    async fn serve_host(host: Server, grace: Duration, watch: bool) -> Self {
        let shutdown = Shutdown {
            drain_delay: Duration::ZERO,
            grace,
        };
        Self::serve_server(host, shutdown, watch).await
    }

    /// Serves `server`, shutting down as `shutdown` says, following changes to its
    /// directory if `watch`.
    pub async fn serve_server(host: Server, shutdown: Shutdown, watch: bool) -> Self {
        init_logging();
        let host = Arc::new(host);
        let watcher = watch.then(|| Watcher::start(Arc::clone(&host)).expect("watches"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(tcpy_host::server::run(
            listener,
            Arc::clone(&host),
            async {
                let _ = stopped.await;
            },
            shutdown,
        ));
        Self {
            addr,
            host,
            watcher,
            stop: Some(stop),
            server,
        }
    }

    /// Serves the admin port for this host on a free loopback port; its address.
    pub async fn serve_admin(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        tokio::spawn(tcpy_host::admin::serve(listener, Arc::clone(self.host.status())));
        addr
    }

    /// The host's shared state.
    pub fn host(&self) -> &Server {
        &self.host
    }

    /// The watcher's swap events from now on.
    pub fn swaps(&self) -> broadcast::Receiver<SwapEvent> {
        self.watcher
            .as_ref()
            .expect("the host watches its directory")
            .subscribe()
    }

    /// Waits up to `within` until the host has no connection open and no request
    /// running; panics saying what is left otherwise.
    pub async fn assert_settles(&self, within: Duration) {
        let host = self.host();
        let settled = wait_until(within, || {
            host.open_connections() == 0 && host.requests_in_flight() == 0
        })
        .await;
        assert!(
            settled,
            "after {within:?}: {} connections still open, {} requests still in flight",
            host.open_connections(),
            host.requests_in_flight()
        );
    }

    /// Waits (up to 10 s) until `n` requests are running: for a test that has sent
    /// requests and must know they started before it goes on.
    pub async fn wait_in_flight(&self, n: usize) {
        let running = wait_until(Duration::from_secs(10), || self.host.requests_in_flight() == n).await;
        assert!(
            running,
            "{} requests in flight after 10 s, not {n}",
            self.host.requests_in_flight()
        );
    }

    /// The limits the host runs under.
    pub fn host_limits(&self) -> Limits {
        *self.host.limits()
    }

    /// A native client for this host.
    pub fn client(&self) -> tcpy_client::Client {
        tcpy_client::Client::new(self.addr.ip().to_string(), self.addr.port())
    }

    /// Asks the server to stop; the returned handle completes when it has.
    pub fn begin_shutdown(&mut self) -> &mut JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        &mut self.server
    }
}

/// Waits (up to 10 s) for the watcher to report an event about `command`, skipping
/// events about other commands.
pub async fn next_swap(events: &mut broadcast::Receiver<SwapEvent>, command: &str) -> SwapEvent {
    let wait = async {
        loop {
            let event = events.recv().await.expect("the watcher is running");
            let about = match &event {
                SwapEvent::Loaded { command, .. }
                | SwapEvent::Rejected { command, .. }
                | SwapEvent::Removed { command } => command,
            };
            if about == command {
                return event;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no swap event for `{command}` within 10 s"))
}

pub use tcpy_protocol::test_support::object;

/// Bounds every raw read so a broken server fails a test instead of hanging it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw frame-mode connection: 4-byte big-endian length, then a body.
pub struct FrameConn {
    stream: TcpStream,
}

impl FrameConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connects"),
        }
    }

    /// Sends one frame with `body`.
    pub async fn send_body(&mut self, body: &[u8]) {
        self.stream
            .write_all(&hostile::frame(body))
            .await
            .expect("writes");
    }

    /// Sends raw bytes, framed or not.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writes");
    }

    /// Reads one frame's body; `None` if the server closed the connection.
    pub async fn recv_body(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(READ_TIMEOUT, async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut body = vec![0; u32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(body)
        })
        .await
        .expect("server answers in time")
    }

    /// Sends a JSON body and reads a JSON body back.
    pub async fn round_trip_json(&mut self, request: Value) -> Value {
        self.send_body(request.to_string().as_bytes()).await;
        let body = self.recv_body().await.expect("a response");
        serde_json::from_slice(&body).expect("JSON response")
    }
}

/// A raw line-mode connection: one JSON object per line.
pub struct LineConn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl LineConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let (read, writer) = TcpStream::connect(addr).await.expect("connects").into_split();
        Self {
            reader: BufReader::new(read),
            writer,
        }
    }

    /// Sends `text` as it is (add the newline yourself).
    pub async fn send_raw(&mut self, text: &[u8]) {
        self.writer.write_all(text).await.expect("writes");
    }

    /// Sends one JSON line.
    pub async fn send(&mut self, message: Value) {
        self.send_raw(format!("{message}\n").as_bytes()).await;
    }

    /// Reads one line as JSON; `None` if the server closed the connection.
    pub async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let read = tokio::time::timeout(READ_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .expect("server answers in time")
            .ok()?;
        (read > 0).then(|| serde_json::from_str(&line).expect("a JSON line"))
    }

    /// Sends one JSON line and reads one back.
    pub async fn round_trip(&mut self, message: Value) -> Value {
        self.send(message).await;
        self.recv().await.expect("a response line")
    }
}

/// Polls `condition` every 10 ms until it holds or `within` has passed; returns
/// whether it held. For state that settles on its own time (a connection count after a
/// client leaves), where a fixed sleep would be flaky or slow.
pub async fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
