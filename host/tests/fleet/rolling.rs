//! A rolling handler update across the fleet: a new version of `add` dropped into the
//! handlers directory the three hosts share reaches every one of them by hot swap
//! while clients keep calling `add` through HAProxy; not one request fails, and each
//! host's `/readyz` and `/metrics` name the new version within a bound.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tcpy_tests::fleet::Fleet;
use tcpy_tests::http;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Hosts of the fleet.
const HOSTS: usize = 3;
/// Client connections calling `add` without a pause.
const CLIENTS: usize = 8;
/// Longest every host may take to serve the new version.
const ROLL_WITHIN: Duration = Duration::from_secs(20);

/// The `add` component with a custom section appended: the same behaviour, other bytes,
/// so another version (a custom section may end a component).
fn new_version(add: &[u8]) -> Vec<u8> {
    let name = b"tcpy-rolling-test";
    let payload = b"version 2";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    let mut bytes = add.to_vec();
    bytes.push(0); // custom section id
    bytes.push(section.len() as u8); // its size (< 128: one LEB128 byte)
    bytes.extend_from_slice(&section);
    bytes
}

/// The version a host reports for bytes: the first 12 hex digits of their SHA-256.
fn version_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()[..12]
        .to_owned()
}

/// The version `/readyz` of the host at `admin` names for `add`.
async fn readyz_version(admin: SocketAddr) -> Option<String> {
    let ready = http::get(admin, "/readyz", &[]).await;
    ready.json()["handlers"]["add"].as_str().map(str::to_owned)
}

/// Calls `add` on one connection through `front` until `stop`; counts answers and
/// failures (a failure is any answer but the right one, or a lost connection).
async fn adder(front: SocketAddr, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>, failed: Arc<AtomicU64>) {
    let stream = TcpStream::connect(front).await.expect("connects to the front");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut n: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let request = json!({"cmd": "add", "x": n, "y": 1});
        let mut line = String::new();
        let answered = write.write_all(format!("{request}\n").as_bytes()).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(5), read.read_line(&mut line)).await,
                Ok(Ok(read)) if read > 0
            );
        let answer: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if answered && answer == json!({"success": true, "solution": n + 1}) {
            ok.fetch_add(1, Ordering::Relaxed);
        } else {
            eprintln!("rolling: a failed request: {line:?}");
            failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

#[test]
fn a_new_version_rolls_across_the_fleet_with_no_failed_request() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let shared = tempfile::tempdir().expect("a temporary directory");
    let add = std::fs::read(tcpy_tests::target_dir().join("test-handlers/add.wasm"))
        .expect("the built add handler (cargo xtask test builds it)");
    std::fs::write(shared.path().join("add.wasm"), &add).expect("writes add.wasm");
    let fleet = Fleet::start(
        Path::new(env!("CARGO_BIN_EXE_tcpy-host")),
        shared.path(),
        HOSTS,
        &[],
    );
    let old = version_of(&add);
    let admins: Vec<SocketAddr> = (0..HOSTS).map(|i| fleet.admin(i)).collect();
    for admin in &admins {
        assert_eq!(runtime.block_on(readyz_version(*admin)), Some(old.clone()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            runtime.spawn(adder(
                fleet.front(),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
            ))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // The roll: the new version written beside the old, then renamed over it, as a
    // deploy step (or the Kubernetes sidecar) does.
    let bytes = new_version(&add);
    let new = version_of(&bytes);
    let staged = shared.path().join(".add.wasm.new");
    std::fs::write(&staged, &bytes).expect("stages the new version");
    let rolled_at = Instant::now();
    std::fs::rename(&staged, shared.path().join("add.wasm")).expect("renames it into place");
    let mut reached = vec![None; HOSTS];
    while reached.iter().any(Option::is_none) && rolled_at.elapsed() < ROLL_WITHIN {
        for (i, admin) in admins.iter().enumerate() {
            if reached[i].is_none()
                && runtime.block_on(readyz_version(*admin)).as_deref() == Some(new.as_str())
            {
                reached[i] = Some(rolled_at.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        runtime.block_on(client).expect("a client task");
    }
    let metrics: Vec<String> = admins
        .iter()
        .map(|admin| runtime.block_on(http::get(*admin, "/metrics", &[])).body)
        .collect();
    println!(
        "rolling: requests={} failed={} retries=0 lost=0 old={old} new={new} reached_after={reached:?}",
        ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(
        reached.iter().all(Option::is_some),
        "not every host serves {new} within {ROLL_WITHIN:?}: {reached:?}"
    );
    let info = format!(r#"tcpy_handler_info{{command="add",version="{new}"}} 1"#);
    for (i, text) in metrics.iter().enumerate() {
        assert!(text.contains(&info), "host {i}'s metrics name another version");
        assert!(
            !text.contains(&old),
            "host {i}'s metrics still name the old version"
        );
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the roll"
    );
    assert!(ok.load(Ordering::Relaxed) > 0, "no request was answered");
}
