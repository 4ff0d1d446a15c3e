//! The `tcpy-host` binary under signals (issue #19): exit is bounded whatever the
//! handlers directory holds and whatever the host is doing.
//!
//! These run the real binary (`cargo xtask test` builds the handlers they serve) and
//! send it SIGTERM, as an operator or an orchestrator would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tcpy_tests::target_dir;

fn built(relative: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(
        path.is_file(),
        "no {}: run `cargo xtask test` (it builds the handlers first)",
        path.display()
    );
    path
}

/// A running `tcpy-host`, its log lines arriving on a channel.
struct Host {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Host {
    /// Starts the host on `dir` with `extra` options, and no drain delay unless
    /// `extra` sets one.
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let drain_delay: &[&str] = if extra.contains(&"--drain-delay") {
            &[]
        } else {
            &["--drain-delay", "0s"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpy-host"))
            .args(["--port", "0", "--no-cache", "--handlers"])
            .arg(dir)
            .args(drain_delay)
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "tcpy_host=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpy-host starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits up to `within` for a log line containing `text`; returns it.
    fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with `{text}` within {within:?}"),
            }
        }
    }

    /// Sends SIGTERM, as an orchestrator stopping the host would.
    fn terminate(&self) {
        send_signal(self, libc::SIGTERM);
    }

    /// Waits up to `within` for the process to exit.
    fn exits_within(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("waits") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("tcpy-host still running {within:?} after the signal");
    }

    /// The address in a log line's `address=` field (the "tcpy-host listening" and
    /// "admin port" lines).
    fn address(line: &str) -> std::net::SocketAddr {
        let start = line.find("address=").expect("an address field") + "address=".len();
        let end = line[start..].find(' ').map_or(line.len(), |end| start + end);
        line[start..end].parse().expect("a socket address")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("runs mkfifo");
    assert!(status.success());
}

#[test]
fn a_fifo_in_the_handlers_directory_neither_blocks_start_up_nor_exit() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(built("test-handlers/add.wasm"), dir.path().join("add.wasm")).expect("copies");
    mkfifo(&dir.path().join("fifo.wasm"));
    mkfifo(&dir.path().join("add.toml"));
    let mut host = Host::start(dir.path(), &[]);
    host.wait_for("tcpy-host listening", Duration::from_secs(30));
    // A FIFO deployed into the live directory too.
    mkfifo(&dir.path().join("later.wasm"));
    std::thread::sleep(Duration::from_millis(300));
    host.terminate();
    let status = host.exits_within(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

#[test]
fn a_signal_during_a_long_compile_exits_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The Python component takes seconds to compile without a cache.
    std::fs::copy(
        built("language-handlers/py/add.wasm"),
        dir.path().join("py_add.wasm"),
    )
    .expect("copies");
    let mut host = Host::start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    host.terminate();
    let status = host.exits_within(Duration::from_secs(3));
    assert!(status.success(), "{status}");
    host.wait_for("shutdown requested while loading", Duration::from_secs(1));
    assert!(signalled.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(
        built("test-handlers/misbehave.wasm"),
        dir.path().join("misbehave.wasm"),
    )
    .expect("copies");
    let mut host = Host::start(dir.path(), &["--grace", "60s", "--timeout", "60s"]);
    let listening = host.wait_for("tcpy-host listening", Duration::from_secs(30));
    let mut conn = std::net::TcpStream::connect(Host::address(&listening)).expect("connects");
    std::io::Write::write_all(
        &mut conn,
        b"{\"cmd\":\"misbehave\",\"do\":\"sleep\",\"ms\":30000}\n",
    )
    .expect("writes");
    std::thread::sleep(Duration::from_millis(300));

    host.terminate();
    host.wait_for("listener closed", Duration::from_secs(5));
    assert!(
        host.child.try_wait().expect("waits").is_none(),
        "the drain waits for the request"
    );
    host.terminate();
    let status = host.exits_within(Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{status}");
}

/// `GET path` on the admin port at `addr`: its status and body.
fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let response = runtime.block_on(tcpy_tests::http::get(addr, path, &[]));
    (response.status, response.body)
}

#[test]
fn sigterm_fails_readyz_at_once_serves_through_the_drain_delay_then_exits() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(built("test-handlers/add.wasm"), dir.path().join("add.wasm")).expect("copies");
    let (drain_delay, grace) = (Duration::from_millis(1500), Duration::from_secs(2));
    let mut host = Host::start(
        dir.path(),
        &[
            "--admin",
            "127.0.0.1:0",
            "--drain-delay",
            "1500ms",
            "--grace",
            "2s",
        ],
    );
    let admin = Host::address(&host.wait_for("admin port", Duration::from_secs(30)));
    let listening = Host::address(&host.wait_for("tcpy-host listening", Duration::from_secs(30)));
    assert_eq!(admin_get(admin, "/livez").0, 200);
    // Ready a moment after the listening line, once the accept loop runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut status, mut body) = admin_get(admin, "/readyz");
    while status != 200 && Instant::now() < deadline {
        assert!(body.contains("\"phase\":\"loading\""), "{body}");
        std::thread::sleep(Duration::from_millis(20));
        (status, body) = admin_get(admin, "/readyz");
    }
    assert_eq!(status, 200, "{body}");

    let signalled = Instant::now();
    host.terminate();
    host.wait_for("/readyz now fails", Duration::from_secs(5));
    let (status, body) = admin_get(admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"phase\":\"draining\""), "{body}");
    assert_eq!(admin_get(admin, "/livez").0, 200, "alive while draining");
    // Within the drain delay a new connection is still accepted and served.
    let mut conn = std::net::TcpStream::connect(listening).expect("still accepting");
    std::io::Write::write_all(&mut conn, b"{\"cmd\":\"add\",\"x\":2,\"y\":3}\n").expect("writes");
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&conn), &mut answer).expect("reads");
    assert!(answer.contains("\"solution\":5"), "{answer}");
    assert!(
        signalled.elapsed() < drain_delay,
        "answered within the drain delay"
    );

    let status = host.exits_within(drain_delay + grace + Duration::from_secs(2));
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() >= drain_delay,
        "served for the whole drain delay: exited after {:?}",
        signalled.elapsed()
    );
}

/// Sends `signal` to the host.
fn send_signal(host: &Host, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(host.child.id()).expect("a pid");
    // SAFETY: kill takes no pointers; the pid is our own child's, not yet reaped.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
}

#[test]
fn sighup_reloads_the_tls_files_and_the_tokens_and_does_not_stop_the_host() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(built("test-handlers/add.wasm"), dir.path().join("add.wasm")).expect("copies");
    let pki = tcpy_tests::certs::Pki::new("exit");
    let server = pki.server("server", false);
    let tokens = pki.dir().join("tokens.toml");
    std::fs::write(&tokens, "ops = \"ops-token-0123456789abc\"\n").expect("writes");
    let (cert, key) = (
        server.cert.display().to_string(),
        server.key.display().to_string(),
    );
    let tokens_arg = tokens.display().to_string();
    let mut host = Host::start(
        dir.path(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--auth-tokens",
            &tokens_arg,
        ],
    );
    host.wait_for("tcpy-host listening", Duration::from_secs(30));
    send_signal(&host, libc::SIGHUP);
    let line = host.wait_for("TLS certificate reloaded", Duration::from_secs(5));
    assert!(line.contains("SIGHUP"), "{line}");
    host.wait_for("tokens reloaded", Duration::from_secs(5));
    assert!(
        host.child.try_wait().expect("waits").is_none(),
        "SIGHUP does not stop the host"
    );
    host.terminate();
    let status = host.exits_within(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}
