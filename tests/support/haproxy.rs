//! A real HAProxy (Debian's `haproxy` package, 2.6) running the config operators
//! use, `deploy/haproxy/haproxy.cfg`, rendered with the tests' addresses: only its
//! `bind`, its `stats socket` and its servers change. What it says about its servers
//! is read from that stats socket.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// The same renderer and stats reader as `cargo xtask fleet`'s (xtask cannot depend on
// this crate, so both compile the one file beside the config).
#[path = "../../deploy/haproxy/control.rs"]
mod control;

pub use control::Backend;

/// How long HAProxy may take to listen once started.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long one stats socket command may take.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the state of a server is polled.
const POLL: Duration = Duration::from_millis(20);

/// A running `haproxy -db`; killed and waited on when dropped.
pub struct Haproxy {
    child: Child,
    front: SocketAddr,
    socket: PathBuf,
    /// What HAProxy wrote on stderr (server state changes, alerts), for messages.
    log: Arc<Mutex<Vec<String>>>,
    /// The rendered config and the stats socket.
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// The config operators use: `deploy/haproxy/haproxy.cfg`.
    pub fn deploy_config() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg")
    }

    /// Starts HAProxy on `config` (normally [`Haproxy::deploy_config`]) rendered with
    /// its front on `front` (a free loopback port if `None`) and `servers`, and waits
    /// (up to 10 s) until it listens. The servers' states are HAProxy's own from then
    /// on: see [`Haproxy::wait_up`].
    pub fn start(config: &Path, front: Option<SocketAddr>, servers: &[Backend]) -> Self {
        let front = front.unwrap_or_else(free_loopback_addr);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let socket = dir.path().join("stats.sock");
        let text = std::fs::read_to_string(config)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", config.display()));
        let rendered = control::render(&text, front, &socket, servers)
            .unwrap_or_else(|error| panic!("{}: {error}", config.display()));
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, rendered).expect("writes the config");
        let mut child = Command::new(crate::tool("haproxy", "haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy starts");
        let log = collect(child.stderr.take().expect("piped stderr"));
        let mut haproxy = Self {
            child,
            front,
            socket,
            log,
            _dir: dir,
        };
        haproxy.wait_listening();
        haproxy
    }

    /// Where clients connect.
    pub fn front(&self) -> SocketAddr {
        self.front
    }

    /// HAProxy's answer to one runtime API command on the stats socket (`show stat`,
    /// `show servers state`, `set server tcpy/host1 state drain`, …).
    pub fn command(&self, line: &str) -> String {
        control::command(&self.socket, line, SOCKET_TIMEOUT)
            .unwrap_or_else(|error| panic!("stats socket, `{line}`: {error}\nhaproxy: {}", self.log()))
    }

    /// The field `field` of `show stat` (`status`, `check_status`, `scur`, `stot`,
    /// `wretr`, …) for server `name` of the backend, or for `FRONTEND` or `BACKEND`
    /// (the proxies' own rows); panics if there is no such row or column.
    pub fn stat(&self, name: &str, field: &str) -> String {
        let stat = self.command("show stat");
        control::stat_field(&stat, control::BACKEND, name, field)
            .unwrap_or_else(|| panic!("no `{field}` for `{name}` in show stat:\n{stat}"))
    }

    /// The `show stat` counter `field` for `name` as a number (see [`Haproxy::stat`]).
    pub fn counter(&self, name: &str, field: &str) -> u64 {
        let value = self.stat(name, field);
        value
            .parse()
            .unwrap_or_else(|_| panic!("`{field}` of `{name}` is not a number: {value:?}"))
    }

    /// Server `name`'s state as `show stat` says it: `UP`, `DOWN`, `UP 1/2` (one check
    /// failed), `DOWN 1/2` (one passed), `MAINT`, `NOLB` (draining by hand), ….
    pub fn server_state(&self, name: &str) -> String {
        self.stat(name, "status")
    }

    /// Waits up to `within` until server `name`'s state is exactly `state`; how long
    /// it took. Panics, with HAProxy's log, if it is not by then.
    pub fn wait_state(&self, name: &str, state: &str, within: Duration) -> Duration {
        self.wait(within, &format!("`{name}` {state}"), || {
            self.server_state(name) == state
        })
    }

    /// Waits up to `within` until server `name` is UP on a passed check (HAProxy
    /// starts servers UP before checking them); how long it took.
    pub fn wait_up(&self, name: &str, within: Duration) -> Duration {
        self.wait(within, &format!("`{name}` UP after a passed check"), || {
            control::is_up(&self.command("show stat"), name)
        })
    }

    /// What HAProxy has written on stderr so far: a line per server going UP or DOWN,
    /// and its alerts.
    pub fn log(&self) -> String {
        self.log.lock().map(|lines| lines.join("\n")).unwrap_or_default()
    }

    /// Polls `condition` until it holds or `within` has passed.
    fn wait(&self, within: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < within,
                "not {what} within {within:?}; show stat:\n{}\nhaproxy: {}",
                self.command("show stat"),
                self.log()
            );
            std::thread::sleep(POLL);
        }
        started.elapsed()
    }

    /// Waits until the stats socket answers and the frontend is open.
    fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            let open = control::command(&self.socket, "show stat", SOCKET_TIMEOUT).is_ok_and(|stat| {
                control::stat_field(&stat, control::BACKEND, "FRONTEND", "status").as_deref() == Some("OPEN")
            });
            if open {
                return;
            }
            // NB: a config error or a port taken makes HAProxy exit at once; say why.
            std::thread::sleep(POLL);
            let exited = self.child.try_wait().expect("waits").is_some();
            assert!(
                !exited && started.elapsed() < START_WAIT,
                "haproxy did not listen on {} within {START_WAIT:?}: {}",
                self.front,
                self.log()
            );
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// Collects the lines of `stderr` as they come, on a thread of their own.
fn collect(stderr: std::process::ChildStderr) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut lines) = lines.lock() {
                lines.push(line);
            }
        }
    });
    log
}
