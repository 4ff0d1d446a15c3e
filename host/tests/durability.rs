//! The embedded store keeps what it acknowledged: a host `kill -9`ed while clients
//! increment, restarted on the same `--data-dir`, has every acknowledged increment.
//!
//! The real binary, the real `counter` handler (`cargo xtask test` builds it), real
//! TCP; the only thing the test does not do to the host is let it shut down.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tcpy_tests::process::HostProcess;
use tcpy_tests::target_dir;

/// Clients incrementing at once.
const CLIENTS: usize = 8;

fn start(data: &Path) -> HostProcess {
    let handlers = target_dir().join("test-handlers");
    assert!(
        handlers.join("counter.toml").is_file(),
        "no counter handler in {}: run `cargo xtask test`",
        handlers.display()
    );
    let data = data.to_str().expect("a UTF-8 path");
    HostProcess::start(
        Path::new(env!("CARGO_BIN_EXE_tcpy-host")),
        &handlers,
        &["--data-dir", data],
    )
}

/// One `counter` request on `conn` (line mode): the counter's new value, or `None`
/// if the connection failed before the answer arrived.
fn increment(conn: &mut BufReader<TcpStream>, by: i64) -> Option<i64> {
    let request = format!("{{\"cmd\":\"counter\",\"name\":\"durable\",\"by\":{by}}}\n");
    conn.get_mut().write_all(request.as_bytes()).ok()?;
    let mut line = String::new();
    if conn.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let response: Value = serde_json::from_str(&line).ok()?;
    assert_eq!(response["success"], true, "{response}");
    response["value"].as_i64()
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("sets a timeout");
    BufReader::new(stream)
}

#[test]
fn every_acknowledged_increment_survives_kill_9() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let host = start(data.path());
    let addr = host.listening();
    let (sent, acknowledged, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (sent, acknowledged, stop) =
                (Arc::clone(&sent), Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut conn = connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    if increment(&mut conn, 1).is_none() {
                        break;
                    }
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Let them run, then kill the host in the middle of their increments.
    std::thread::sleep(Duration::from_millis(1500));
    let mut host = host;
    host.child.kill().expect("kill -9");
    let _ = host.child.wait();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client thread");
    }
    drop(host);
    let (sent, acknowledged) = (sent.load(Ordering::SeqCst), acknowledged.load(Ordering::SeqCst));
    assert!(acknowledged > 0, "no increment was acknowledged before the kill");

    let restarted = start(data.path());
    let mut conn = connect(restarted.listening());
    let value = increment(&mut conn, 0).expect("the restarted host answers");
    println!(
        "kill -9 under {CLIENTS} clients: {sent} increments sent, {acknowledged} acknowledged, \
         {value} found after the restart"
    );
    let value = u64::try_from(value).expect("a count");
    assert!(
        value >= acknowledged,
        "{acknowledged} increments were acknowledged but only {value} survived"
    );
    assert!(
        value <= sent,
        "{value} increments found but only {sent} were sent"
    );
}
