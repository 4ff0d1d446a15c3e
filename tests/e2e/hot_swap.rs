//! Hot swap: the handlers directory is live, and no request fails because of a swap.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tcpy_host::runtime::Runtime;
use tcpy_host::watcher::SwapEvent;
use tcpy_tests::{FrameConn, LineConn, TestHost, handler_bytes, next_swap, test_limits};

const GRACE: Duration = Duration::from_secs(5);

/// What `{"cmd": "v", "x": 1, "y": 2}` gets from each of the two versions of `v`.
fn add_answer() -> Value {
    json!({"success": true, "solution": 3})
}
fn echo_answer() -> Value {
    json!({"success": true, "x": 1, "y": 2})
}

/// Writes `bytes` beside `target`, then renames it over `target`: the way deploy
/// tools replace a file atomically.
fn rename_into_place(target: &Path, bytes: &[u8]) {
    let staging = target.with_extension("wasm.partial");
    std::fs::write(&staging, bytes).expect("writes the new version");
    std::fs::rename(&staging, target).expect("renames it into place");
}

async fn ask_v(conn: &mut LineConn) -> Value {
    conn.round_trip(json!({"cmd": "v", "x": 1, "y": 2})).await
}

async fn watching_host(dir: &Path) -> TestHost {
    TestHost::serve(Runtime::new(test_limits()).expect("runtime"), dir, GRACE, true).await
}

#[tokio::test]
async fn a_handlers_directory_given_as_a_relative_path_is_followed_too() {
    let dir = tempfile::tempdir_in(".").expect("temp dir in the working directory");
    let relative = Path::new(".").join(dir.path().file_name().expect("a name"));
    let host = watching_host(&relative).await;
    let mut swaps = host.swaps();
    std::fs::write(relative.join("v.wasm"), handler_bytes("add")).expect("adds v");
    assert!(matches!(
        next_swap(&mut swaps, "v").await,
        SwapEvent::Loaded { .. }
    ));
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(ask_v(&mut conn).await, add_answer());
}

#[tokio::test]
async fn handlers_are_added_replaced_and_deleted_while_the_host_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = watching_host(dir.path()).await;
    let mut swaps = host.swaps();
    let mut conn = LineConn::connect(host.addr).await;
    let v = dir.path().join("v.wasm");
    assert_eq!(ask_v(&mut conn).await["code"], "unknown_command");

    std::fs::write(&v, handler_bytes("add")).expect("adds v");
    assert!(matches!(
        next_swap(&mut swaps, "v").await,
        SwapEvent::Loaded { .. }
    ));
    assert_eq!(ask_v(&mut conn).await, add_answer(), "a new file serves");

    std::fs::write(&v, handler_bytes("echo")).expect("rewrites v in place");
    assert!(matches!(
        next_swap(&mut swaps, "v").await,
        SwapEvent::Loaded { .. }
    ));
    assert_eq!(ask_v(&mut conn).await, echo_answer(), "written in place");

    rename_into_place(&v, &handler_bytes("add"));
    assert!(matches!(
        next_swap(&mut swaps, "v").await,
        SwapEvent::Loaded { .. }
    ));
    assert_eq!(ask_v(&mut conn).await, add_answer(), "renamed over");

    std::fs::remove_file(&v).expect("deletes v");
    assert_eq!(
        next_swap(&mut swaps, "v").await,
        SwapEvent::Removed { command: "v".into() }
    );
    assert_eq!(ask_v(&mut conn).await["code"], "unknown_command", "deleted");
}

#[tokio::test]
async fn a_bad_new_version_never_replaces_a_good_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let v = dir.path().join("v.wasm");
    std::fs::write(&v, handler_bytes("add")).expect("adds v");
    let host = watching_host(dir.path()).await;
    let mut swaps = host.swaps();
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(ask_v(&mut conn).await, add_answer());

    let echo = handler_bytes("echo");
    let bad_versions: [(&str, &[u8]); 3] = [
        ("garbage", b"this is not WebAssembly"),
        ("truncated", &echo[..echo.len() / 2]),
        ("a core module, not a component", b"\0asm\x01\0\0\0"),
    ];
    for (what, bytes) in bad_versions {
        rename_into_place(&v, bytes);
        match next_swap(&mut swaps, "v").await {
            SwapEvent::Rejected { reason, .. } => {
                assert!(reason.contains("v.wasm"), "{what}: names the file: {reason}")
            }
            other => panic!("{what} should be rejected, got {other:?}"),
        }
        assert_eq!(
            ask_v(&mut conn).await,
            add_answer(),
            "{what}: the old version keeps serving"
        );
    }

    rename_into_place(&v, &echo);
    assert!(matches!(
        next_swap(&mut swaps, "v").await,
        SwapEvent::Loaded { .. }
    ));
    assert_eq!(
        ask_v(&mut conn).await,
        echo_answer(),
        "a later good write is picked up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_under_load_fails_no_request() {
    const CONNECTIONS: usize = 16;
    const SWAPS: usize = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = tempfile::tempdir().expect("cache dir");
    let v = dir.path().join("v.wasm");
    let versions = [handler_bytes("add"), handler_bytes("echo")];
    std::fs::write(&v, &versions[0]).expect("adds v");
    let runtime = Runtime::new(test_limits())
        .expect("runtime")
        .with_compile_cache(cache.path())
        .expect("cache");
    let host = TestHost::serve(runtime, dir.path(), GRACE, true).await;
    let mut swaps = host.swaps();

    let stop = Arc::new(AtomicBool::new(false));
    let answered = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (addr, stop, answered) = (host.addr, Arc::clone(&stop), answered.clone());
            tokio::spawn(async move {
                let mut conn = FrameConn::connect(addr).await;
                while !stop.load(Ordering::Relaxed) {
                    let response = conn.round_trip_json(json!({"cmd": "v", "x": 1, "y": 2})).await;
                    let version = [add_answer(), echo_answer()]
                        .iter()
                        .position(|answer| *answer == response);
                    let version = version.unwrap_or_else(|| panic!("a failed or mixed response: {response}"));
                    answered[version].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut from_cache = 0;
    for swap in 1..=SWAPS {
        rename_into_place(&v, &versions[swap % 2]);
        match next_swap(&mut swaps, "v").await {
            SwapEvent::Loaded {
                from_cache: cached, ..
            } => from_cache += usize::from(cached),
            other => panic!("swap {swap} failed: {other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("no client saw a failed request");
    }
    let answered = answered.map(|count| count.load(Ordering::Relaxed));
    assert!(
        answered.iter().all(|&count| count > 0),
        "both versions served: {answered:?}"
    );
    assert!(
        from_cache >= SWAPS - 2,
        "swapping back loads from the compile cache ({from_cache} of {SWAPS})"
    );

    // After the last swap (to version `SWAPS % 2`), every new request gets it.
    let mut conn = LineConn::connect(host.addr).await;
    let last = [add_answer(), echo_answer()][SWAPS % 2].clone();
    for _ in 0..10 {
        assert_eq!(ask_v(&mut conn).await, last);
    }
}

#[tokio::test]
async fn a_warm_cache_loads_without_recompiling_and_a_corrupt_one_is_rebuilt() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("add.wasm"), handler_bytes("add")).expect("adds add");
    let cache = tempfile::tempdir().expect("cache dir");

    let start = || async {
        let runtime = Runtime::new(test_limits())
            .expect("runtime")
            .with_compile_cache(cache.path())
            .expect("cache");
        TestHost::serve(runtime, dir.path(), GRACE, false).await
    };
    let loaded_from_cache = |host: &TestHost| {
        host.host()
            .registry()
            .get("add")
            .expect("add is served")
            .from_cache()
    };

    let cold = start().await;
    assert!(!loaded_from_cache(&cold), "an empty cache compiles");
    let warm = start().await;
    assert!(loaded_from_cache(&warm), "a restart loads from the cache");
    let mut conn = LineConn::connect(warm.addr).await;
    assert_eq!(
        conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await,
        add_answer()
    );

    for entry in std::fs::read_dir(cache.path()).expect("cache entries") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("reads entry");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).expect("corrupts entry");
    }
    let rebuilt = start().await;
    assert!(!loaded_from_cache(&rebuilt), "a corrupt entry is not trusted");
    let mut conn = LineConn::connect(rebuilt.addr).await;
    assert_eq!(
        conn.round_trip(json!({"cmd": "add", "x": 1, "y": 2})).await,
        add_answer()
    );
    let warm_again = start().await;
    assert!(
        loaded_from_cache(&warm_again),
        "the rebuilt entry is used next time"
    );
}
