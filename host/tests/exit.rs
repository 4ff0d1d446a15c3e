//! The `tcpy-host` binary under signals (issue #19): exit is bounded whatever the
//! handlers directory holds and whatever the host is doing.
//!
//! These run the real binary (`cargo xtask test` builds the handlers they serve) and
//! send it SIGTERM, as an operator or an orchestrator would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tcpy_tests::process::HostProcess;
use tcpy_tests::target_dir;

/// Starts the host binary on `dir` (see [`HostProcess::start`]).
fn start(dir: &Path, extra: &[&str]) -> HostProcess {
    HostProcess::start(Path::new(env!("CARGO_BIN_EXE_tcpy-host")), dir, extra)
}

fn built(relative: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(
        path.is_file(),
        "no {}: run `cargo xtask test` (it builds the handlers first)",
        path.display()
    );
    path
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
    let mut host = start(dir.path(), &[]);
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
    let mut host = start(dir.path(), &[]);
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
    let mut host = start(dir.path(), &["--grace", "60s", "--timeout", "60s"]);
    let listening = host.wait_for("tcpy-host listening", Duration::from_secs(30));
    let mut conn = std::net::TcpStream::connect(HostProcess::address(&listening)).expect("connects");
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
    let mut host = start(
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
    let admin = HostProcess::address(&host.wait_for("admin port", Duration::from_secs(30)));
    let listening = HostProcess::address(&host.wait_for("tcpy-host listening", Duration::from_secs(30)));
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
    let mut host = start(
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
    tcpy_tests::send_signal(&host.child, libc::SIGHUP);
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
