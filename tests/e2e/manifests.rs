//! Handler manifests: `NAME.toml` grants env vars and a read-only directory and sets
//! the handler's own limits; a bad manifest keeps its handler out; a changed
//! manifest is followed like a changed component.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tcpy_host::runtime::Runtime;
use tcpy_host::watcher::SwapEvent;
use tcpy_tests::{LineConn, TestHost, handler_bytes, next_swap, test_limits};

const GRACE: Duration = Duration::from_secs(5);

/// A handlers directory holding `misbehave` and `add`, `misbehave` with `manifest`.
fn handlers_with_manifest(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("misbehave.wasm"), handler_bytes("misbehave")).expect("writes");
    std::fs::write(dir.path().join("add.wasm"), handler_bytes("add")).expect("writes");
    std::fs::write(dir.path().join("misbehave.toml"), manifest).expect("writes");
    dir
}

async fn host_on(dir: &Path, watch: bool) -> TestHost {
    TestHost::serve(Runtime::new(test_limits()).expect("runtime"), dir, GRACE, watch).await
}

/// What `misbehave` finds when it tries `file` and the env var `GREETING`.
async fn escape(conn: &mut LineConn, file: &str) -> Value {
    let request = json!({"cmd": "misbehave", "do": "escape", "file": file, "env": "GREETING", "connect": "127.0.0.1:9"});
    let response = conn.round_trip(request).await;
    assert_eq!(response["success"], true, "{response}");
    response
}

#[tokio::test]
async fn a_manifest_grants_env_and_a_read_only_directory_and_nothing_else() {
    let dir = handlers_with_manifest(
        "[env]\nGREETING = \"hello\"\n\n[dir]\npath = \"assets\"\nmount = \"/assets\"\n",
    );
    std::fs::create_dir(dir.path().join("assets")).expect("creates");
    std::fs::write(dir.path().join("assets/note.txt"), "granted").expect("writes");
    let host = host_on(dir.path(), false).await;
    let mut conn = LineConn::connect(host.addr).await;

    let found = escape(&mut conn, "/assets/note.txt").await;
    assert_eq!(found["file"], json!({"ok": "granted"}));
    assert_eq!(found["env"], json!({"ok": "hello"}));
    assert_eq!(found["env_count"], 1, "only the granted variable: {found}");
    assert!(found["connect"]["err"].is_string(), "no network: {found}");

    // Outside the granted directory there is nothing; `..` does not climb out of it.
    for path in [
        "/etc/passwd",
        "/assets/../misbehave.toml",
        "/assets/../../etc/passwd",
    ] {
        let found = escape(&mut conn, path).await;
        assert!(found["file"]["err"].is_string(), "{path}: {found}");
    }
    // Other handlers get none of it.
    let response = conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
    assert_eq!(response["solution"], 3);
}

#[tokio::test]
async fn a_manifest_sets_the_handlers_own_limits() {
    let dir = handlers_with_manifest("[limits]\ntimeout = \"300ms\"\nmax_sends = 3\n");
    let host = host_on(dir.path(), false).await;
    let mut conn = LineConn::connect(host.addr).await;

    let response = conn.round_trip(json!({"cmd": "misbehave", "do": "loop"})).await;
    assert_eq!(response["code"], "timeout", "{response}");
    let message = response["message"].as_str().expect("a message");
    assert!(message.contains("300ms"), "the handler's own deadline: {message}");

    conn.send(json!({"cmd": "misbehave", "do": "send_loop"})).await;
    for _ in 0..3 {
        let spam = conn.recv().await.expect("a message");
        assert_eq!(spam, json!({"spam": true}));
    }
    let response = conn.recv().await.expect("the response");
    assert_eq!(response["code"], "handler_failed", "{response}");
}

#[tokio::test]
async fn a_bad_manifest_keeps_its_handler_out_and_others_in() {
    for manifest in [
        "[limits]\ntimeot = \"1s\"\n",   // unknown key
        "[limits]\ntimeout = \"10m\"\n", // above the ceiling
        "[dir]\npath = \"missing\"\n",   // no such directory
        "[env]\nGREETING = 7\n",         // not a string
        "this is not toml",
    ] {
        let dir = handlers_with_manifest(manifest);
        let host = host_on(dir.path(), false).await;
        let mut conn = LineConn::connect(host.addr).await;
        let response = conn.round_trip(json!({"cmd": "misbehave", "do": "print"})).await;
        assert_eq!(response["code"], "unknown_command", "{manifest:?}: {response}");
        let response = conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await;
        assert_eq!(response["solution"], 3, "{manifest:?}");
    }
}

#[tokio::test]
async fn a_changed_manifest_is_followed_and_a_broken_one_is_rejected() {
    let dir = handlers_with_manifest("[env]\nGREETING = \"one\"\n");
    let manifest = dir.path().join("misbehave.toml");
    let host = host_on(dir.path(), true).await;
    let mut swaps = host.swaps();
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(escape(&mut conn, "/none").await["env"], json!({"ok": "one"}));

    std::fs::write(&manifest, "[env]\nGREETING = \"two\"\n").expect("rewrites");
    assert!(matches!(
        next_swap(&mut swaps, "misbehave").await,
        SwapEvent::Loaded { .. }
    ));
    assert_eq!(escape(&mut conn, "/none").await["env"], json!({"ok": "two"}));

    std::fs::write(&manifest, "[env]\nGREETING = ").expect("breaks it");
    let event = next_swap(&mut swaps, "misbehave").await;
    let SwapEvent::Rejected { reason, .. } = event else {
        panic!("a broken manifest is rejected, not {event:?}");
    };
    assert!(reason.contains("misbehave.toml"), "names the manifest: {reason}");
    assert_eq!(
        escape(&mut conn, "/none").await["env"],
        json!({"ok": "two"}),
        "the old one serves"
    );

    std::fs::remove_file(&manifest).expect("removes");
    assert!(matches!(
        next_swap(&mut swaps, "misbehave").await,
        SwapEvent::Loaded { .. }
    ));
    assert!(
        escape(&mut conn, "/none").await["env"]["err"].is_string(),
        "no manifest, no grants"
    );
}
