//! Key-value stores (`wasi:keyvalue`), the same table on both backends: the embedded
//! redb store in a temporary `--data-dir`, and a real `redis-server` on a free port.
//! The `kvops` test handler runs each operation; its manifest grants `default`,
//! `kvtest` and `small` (3 keys, 1 KiB).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tcpy_host::keyvalue::{KvLimits, OpenError, Stores};
use tcpy_host::runtime::Runtime;
use tcpy_tests::redis::RedisServer;
use tcpy_tests::{LineConn, TestHost, handlers_dir, test_limits};

/// Where a test's stores live; kept for as long as the test runs.
pub(crate) enum Backend {
    Embedded(tempfile::TempDir),
    Redis(RedisServer),
}

impl Backend {
    pub(crate) fn embedded() -> Self {
        Self::Embedded(tempfile::tempdir().expect("a temporary directory"))
    }

    pub(crate) fn redis() -> Self {
        Self::Redis(RedisServer::start())
    }

    /// A fresh handle on the stores, as one host opens them.
    pub(crate) fn stores(&self) -> Stores {
        self.try_stores().expect("the stores open")
    }

    /// A fresh handle on the stores, or why they do not open (an embedded store's
    /// file is open in one host at a time).
    pub(crate) fn try_stores(&self) -> Result<Stores, OpenError> {
        match self {
            Self::Embedded(dir) => Stores::embedded(dir.path(), KvLimits::DEFAULT),
            Self::Redis(server) => Stores::redis(&server.url(), KvLimits::DEFAULT),
        }
    }
}

/// A host serving the test handlers (or those in `dir`) with `stores`.
async fn host_with(stores: Stores, dir: &Path) -> TestHost {
    let runtime = Runtime::new(test_limits())
        .expect("runtime builds")
        .with_stores(Arc::new(stores));
    TestHost::serve(runtime, dir, Duration::from_secs(5), false).await
}

async fn host_on(backend: &Backend) -> TestHost {
    host_with(backend.stores(), &handlers_dir()).await
}

/// Runs `kvops` with `params` (an object, `op` included) on `conn`.
async fn kv(conn: &mut LineConn, params: Value) -> Value {
    let mut request = json!({ "cmd": "kvops" });
    request
        .as_object_mut()
        .expect("an object")
        .extend(params.as_object().expect("params are an object").clone());
    conn.round_trip(request).await
}

fn assert_success(response: &Value) {
    assert_eq!(response["success"], true, "{response}");
}

fn assert_other_error(response: &Value, says: &str) {
    assert_eq!(response["error"], true, "{response}");
    assert_eq!(response["kind"], "other", "{response}");
    let message = response["message"].as_str().expect("a message");
    assert!(message.contains(says), "`{message}` should say `{says}`");
}

/// One `#[tokio::test]` per backend for each scenario below.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario(super::Backend::embedded()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$scenario(super::Backend::redis()).await;
            }
        }
    )*};
}

on_both_backends!(
    grants_decide_which_stores_a_handler_opens,
    every_operation_does_what_it_says,
    concurrent_increments_are_never_lost,
    concurrent_compare_and_swap_loops_are_never_lost,
    cursors_list_every_key_exactly_once,
    limits_and_quotas_are_errors_not_traps,
    stores_are_shared_host_wide_and_between_hosts,
);

async fn grants_decide_which_stores_a_handler_opens(backend: Backend) {
    // kvops with its manifest; the same component with none (`bare`), and with a
    // manifest naming a store badly (`badname`), which keeps it out.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let component = handlers_dir().join("kvops.wasm");
    for name in ["kvops", "bare", "badname"] {
        std::fs::copy(&component, dir.path().join(format!("{name}.wasm"))).expect("copies");
    }
    std::fs::copy(handlers_dir().join("kvops.toml"), dir.path().join("kvops.toml")).expect("copies");
    std::fs::write(
        dir.path().join("badname.toml"),
        "[keyvalue]\nstores = [\"no spaces\"]\n",
    )
    .expect("writes");
    let host = host_with(backend.stores(), dir.path()).await;
    let mut conn = LineConn::connect(host.addr).await;

    assert_success(&kv(&mut conn, json!({"op": "open", "store": "default"})).await);
    for store in ["other", "Default", ""] {
        let denied = kv(&mut conn, json!({"op": "open", "store": store})).await;
        assert_eq!(denied["kind"], "access_denied", "{store:?}: {denied}");
    }
    let bare = conn
        .round_trip(json!({"cmd": "bare", "op": "open", "store": "default"}))
        .await;
    assert_eq!(bare["kind"], "access_denied", "no manifest, no stores: {bare}");
    let bad = conn.round_trip(json!({"cmd": "badname", "op": "open"})).await;
    assert_eq!(
        bad["code"], "unknown_command",
        "a bad store name keeps it out: {bad}"
    );
    let commands = host.host().registry().commands();
    assert!(commands.contains(&"kvops".to_owned()) && !commands.contains(&"badname".to_owned()));
}

async fn every_operation_does_what_it_says(backend: Backend) {
    let host = host_on(&backend).await;
    let mut conn = LineConn::connect(host.addr).await;
    let op = |op: &str, rest: Value| {
        let mut params = json!({ "op": op, "store": "kvtest" });
        params
            .as_object_mut()
            .expect("an object")
            .extend(rest.as_object().expect("an object").clone());
        params
    };

    assert_eq!(
        kv(&mut conn, op("get", json!({"key": "a"}))).await["value"],
        Value::Null
    );
    assert_eq!(
        kv(&mut conn, op("exists", json!({"key": "a"}))).await["exists"],
        false
    );
    assert_success(&kv(&mut conn, op("set", json!({"key": "a", "value": "one"}))).await);
    assert_eq!(
        kv(&mut conn, op("get", json!({"key": "a"}))).await["value"],
        "one"
    );
    assert_eq!(
        kv(&mut conn, op("exists", json!({"key": "a"}))).await["exists"],
        true
    );
    assert_success(&kv(&mut conn, op("set", json!({"key": "a", "value": ""}))).await);
    assert_eq!(
        kv(&mut conn, op("get", json!({"key": "a"}))).await["value"],
        "",
        "an empty value is a value"
    );
    assert_success(&kv(&mut conn, op("delete", json!({"key": "a"}))).await);
    assert_success(&kv(&mut conn, op("delete", json!({"key": "a"}))).await);
    assert_eq!(
        kv(&mut conn, op("exists", json!({"key": "a"}))).await["exists"],
        false
    );

    // Counters are decimal text, as Redis keeps them.
    assert_eq!(
        kv(&mut conn, op("increment", json!({"key": "n", "delta": 40}))).await["value"],
        40
    );
    assert_eq!(
        kv(&mut conn, op("increment", json!({"key": "n", "delta": 2}))).await["value"],
        42
    );
    assert_eq!(kv(&mut conn, op("get", json!({"key": "n"}))).await["value"], "42");
    assert_eq!(
        kv(&mut conn, op("increment", json!({"key": "n", "delta": -50}))).await["value"],
        -8
    );
    assert_success(&kv(&mut conn, op("set", json!({"key": "word", "value": "forty"}))).await);
    let refused = kv(&mut conn, op("increment", json!({"key": "word", "delta": 1}))).await;
    assert_other_error(&refused, "not an integer");
    assert_eq!(
        kv(&mut conn, op("get", json!({"key": "word"}))).await["value"],
        "forty",
        "left as it was"
    );
    assert_success(
        &kv(
            &mut conn,
            op("set", json!({"key": "big", "value": i64::MAX.to_string()})),
        )
        .await,
    );
    assert_other_error(
        &kv(&mut conn, op("increment", json!({"key": "big", "delta": 1}))).await,
        "overflow",
    );

    // Compare-and-swap: a change after `cas::new` fails the swap, and the handle it
    // gets back holds the value now.
    let conflict = kv(&mut conn, op("cas_conflict", json!({"key": "c"}))).await;
    assert_eq!(
        conflict,
        json!({"success": true, "swapped": false, "before": null, "current": "changed meanwhile"})
    );
    let added = kv(&mut conn, op("cas_add", json!({"key": "c2", "delta": 5}))).await;
    assert_eq!(
        (added["value"].clone(), added["tries"].clone()),
        (json!(5), json!(1))
    );

    // Batches: all of them at once.
    let set = kv(
        &mut conn,
        op("set_many", json!({"entries": {"b1": "x", "b2": "y", "b3": "z"}})),
    )
    .await;
    assert_success(&set);
    let many = kv(&mut conn, op("get_many", json!({"keys": ["b1", "nope", "b3"]}))).await;
    assert_eq!(many["values"], json!(["x", null, "z"]));
    assert_success(&kv(&mut conn, op("delete_many", json!({"keys": ["b1", "b2"]}))).await);
    let many = kv(&mut conn, op("get_many", json!({"keys": ["b1", "b2", "b3"]}))).await;
    assert_eq!(many["values"], json!([null, null, "z"]));
    let keys = kv(&mut conn, op("keys", json!({}))).await;
    assert_eq!(keys["keys"], json!(["b3", "big", "c", "c2", "n", "word"]));
}

async fn concurrent_increments_are_never_lost(backend: Backend) {
    let host = host_on(&backend).await;
    let (connections, each) = (8, 250);
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            let addr = host.addr;
            tokio::spawn(async move {
                let mut conn = LineConn::connect(addr).await;
                let mut seen = Vec::with_capacity(each);
                for _ in 0..each {
                    let response = kv(&mut conn, json!({"op": "increment", "key": "hits", "delta": 1})).await;
                    seen.push(response["value"].as_i64().unwrap_or_else(|| panic!("{response}")));
                }
                seen
            })
        })
        .collect();
    let mut values = BTreeSet::new();
    for client in clients {
        values.extend(client.await.expect("the client ran"));
    }
    let total = connections * each;
    assert_eq!(values.len(), total, "every increment saw its own value");
    assert_eq!(values.last().copied(), Some(total as i64));
    let mut conn = LineConn::connect(host.addr).await;
    assert_eq!(
        kv(&mut conn, json!({"op": "get", "key": "hits"})).await["value"],
        total.to_string()
    );
}

async fn concurrent_compare_and_swap_loops_are_never_lost(backend: Backend) {
    let host = host_on(&backend).await;
    let (connections, each) = (6, 40);
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            let addr = host.addr;
            tokio::spawn(async move {
                let mut conn = LineConn::connect(addr).await;
                let mut retries = 0;
                for _ in 0..each {
                    let response = kv(&mut conn, json!({"op": "cas_add", "key": "cas", "delta": 1})).await;
                    retries += response["tries"].as_i64().unwrap_or_else(|| panic!("{response}")) - 1;
                }
                retries
            })
        })
        .collect();
    let mut retries = 0;
    for client in clients {
        retries += client.await.expect("the client ran");
    }
    let mut conn = LineConn::connect(host.addr).await;
    let value = kv(&mut conn, json!({"op": "get", "key": "cas"})).await;
    assert_eq!(
        value["value"],
        (connections * each).to_string(),
        "after {retries} retried swaps"
    );
}

async fn cursors_list_every_key_exactly_once(backend: Backend) {
    let host = host_on(&backend).await;
    let mut conn = LineConn::connect(host.addr).await;
    let filled = kv(
        &mut conn,
        json!({"op": "fill", "store": "kvtest", "key": "k", "count": 2500}),
    )
    .await;
    assert_success(&filled);
    // Page by page: 1,000, 1,000, then 500 and no cursor.
    let (mut listed, mut pages, mut cursor) = (Vec::new(), Vec::new(), Value::Null);
    loop {
        let page = kv(
            &mut conn,
            json!({"op": "page", "store": "kvtest", "cursor": cursor}),
        )
        .await;
        let keys = page["keys"].as_array().unwrap_or_else(|| panic!("{page}"));
        pages.push(keys.len());
        listed.extend(keys.iter().map(|key| key.as_str().expect("a key").to_owned()));
        cursor = page["cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages, [1000, 1000, 500]);
    let expected: Vec<String> = (0..2500).map(|n| format!("k{n:05}")).collect();
    assert_eq!(listed, expected, "every key once, in order");
    // The SDK's iterator walks the same cursors.
    let all = kv(&mut conn, json!({"op": "keys", "store": "kvtest"})).await;
    assert_eq!(all["count"], 2500);
    let bad = kv(
        &mut conn,
        json!({"op": "page", "store": "kvtest", "cursor": "not-mine"}),
    )
    .await;
    assert_other_error(&bad, "cursor");
}

async fn limits_and_quotas_are_errors_not_traps(backend: Backend) {
    let host = host_on(&backend).await;
    let mut conn = LineConn::connect(host.addr).await;
    let limits = KvLimits::DEFAULT;
    let long_key = "k".repeat(limits.max_key + 1);
    assert_other_error(
        &kv(&mut conn, json!({"op": "set", "key": long_key, "value": "v"})).await,
        "key",
    );
    assert_other_error(&kv(&mut conn, json!({"op": "get", "key": ""})).await, "key");
    assert_success(
        &kv(
            &mut conn,
            json!({"op": "set", "key": "k".repeat(limits.max_key), "value": "v"}),
        )
        .await,
    );
    let too_big = kv(
        &mut conn,
        json!({"op": "set", "key": "big", "size": limits.max_value + 1}),
    )
    .await;
    assert_other_error(&too_big, "value");
    assert_success(
        &kv(
            &mut conn,
            json!({"op": "set", "key": "big", "size": limits.max_value}),
        )
        .await,
    );
    let keys: Vec<String> = (0..=limits.max_batch).map(|n| format!("k{n}")).collect();
    assert_other_error(
        &kv(&mut conn, json!({"op": "get_many", "keys": keys})).await,
        "batch",
    );

    // `small`: 3 keys, 1 KiB. A fourth key is refused and nothing of it is written.
    for key in ["a", "b", "c"] {
        assert_success(
            &kv(
                &mut conn,
                json!({"op": "set", "store": "small", "key": key, "value": "1"}),
            )
            .await,
        );
    }
    assert_other_error(
        &kv(
            &mut conn,
            json!({"op": "set", "store": "small", "key": "d", "value": "1"}),
        )
        .await,
        "quota",
    );
    assert_other_error(
        &kv(
            &mut conn,
            json!({"op": "increment", "store": "small", "key": "d", "delta": 1}),
        )
        .await,
        "quota",
    );
    assert_eq!(
        kv(&mut conn, json!({"op": "exists", "store": "small", "key": "d"})).await["exists"],
        false
    );
    assert_other_error(
        &kv(
            &mut conn,
            json!({"op": "set", "store": "small", "key": "a", "size": 2000}),
        )
        .await,
        "quota",
    );
    assert_success(
        &kv(
            &mut conn,
            json!({"op": "set", "store": "small", "key": "a", "value": "changed"}),
        )
        .await,
    );
    assert_success(&kv(&mut conn, json!({"op": "delete", "store": "small", "key": "b"})).await);
    assert_success(
        &kv(
            &mut conn,
            json!({"op": "set", "store": "small", "key": "d", "value": "1"}),
        )
        .await,
    );

    // Handles: at most 1,000 open in one request.
    let handles = kv(&mut conn, json!({"op": "handles", "count": 1500})).await;
    assert_eq!(handles["opened"], 1000, "{handles}");
    assert!(
        handles["failure"]
            .as_str()
            .is_some_and(|failure| failure.contains("too many")),
        "{handles}"
    );
    // None of it disturbed the connection or the host.
    tcpy_tests::hostile::assert_add_works(host.addr).await;
}

async fn stores_are_shared_host_wide_and_between_hosts(backend: Backend) {
    let first = host_on(&backend).await;
    let mut on_first = LineConn::connect(first.addr).await;
    assert_success(
        &kv(
            &mut on_first,
            json!({"op": "set", "key": "shared", "value": "from kvops"}),
        )
        .await,
    );
    // Another handler granted `default` sees it: `counter` counts in the same store.
    let counted = on_first
        .round_trip(json!({"cmd": "counter", "name": "visits"}))
        .await;
    assert_eq!(counted, json!({"success": true, "name": "visits", "value": 1}));
    assert_eq!(
        kv(&mut on_first, json!({"op": "get", "key": "visits"})).await["value"],
        "1"
    );
    let Backend::Redis(_) = &backend else {
        return;
    };
    // Two hosts on one Redis see each other's writes.
    let second = host_on(&backend).await;
    let mut on_second = LineConn::connect(second.addr).await;
    assert_eq!(
        kv(&mut on_second, json!({"op": "get", "key": "shared"})).await["value"],
        "from kvops"
    );
    for on_second_host in [false, true, false] {
        let conn = if on_second_host {
            &mut on_second
        } else {
            &mut on_first
        };
        let response = conn.round_trip(json!({"cmd": "counter", "name": "visits"})).await;
        assert_success(&response);
    }
    let last = on_second
        .round_trip(json!({"cmd": "counter", "name": "visits"}))
        .await;
    assert_eq!(last["value"], 5);
}

/// Redis stopped mid-run: operations fail within the store's timeout as errors, the
/// host goes on serving everything else, and it reconnects by itself when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_mid_run() {
    let mut backend = Backend::redis();
    let host = host_on(&backend).await;
    let mut conn = LineConn::connect(host.addr).await;
    let mut acknowledged = 0;
    for _ in 0..20 {
        let response = kv(&mut conn, json!({"op": "increment", "key": "n", "delta": 1})).await;
        assert_success(&response);
        acknowledged += 1;
    }
    let Backend::Redis(server) = &mut backend else {
        unreachable!("a Redis backend")
    };
    server.stop();
    let bound = KvLimits::DEFAULT.timeout + Duration::from_secs(1);
    for _ in 0..3 {
        let started = Instant::now();
        let response = kv(&mut conn, json!({"op": "increment", "key": "n", "delta": 1})).await;
        assert_eq!(response["kind"], "other", "{response}");
        assert!(
            started.elapsed() < bound,
            "failed after {:?}, not within {bound:?}",
            started.elapsed()
        );
        tcpy_tests::hostile::assert_add_works(host.addr).await;
    }
    server.restart();
    // Back within a few seconds, with no restart of the host.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = kv(&mut conn, json!({"op": "increment", "key": "n", "delta": 1})).await;
        if response["success"] == true {
            acknowledged += 1;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconnection within 15 s: {response}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let value: i64 = server
        .command("GET tcpy:{default}:v:n")
        .parse()
        .expect("a counter");
    // The failed increments were refused before Redis saw them.
    assert_eq!(value, acknowledged, "every acknowledged increment, and no other");
}

/// A redb file another process holds, and one that is not redb, are refused at
/// start-up with an error naming the file.
#[test]
fn a_locked_or_corrupt_store_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = Stores::embedded(dir.path(), KvLimits::DEFAULT).expect("opens");
    let Err(locked) = Stores::embedded(dir.path(), KvLimits::DEFAULT) else {
        panic!("opened twice")
    };
    let message = locked.to_string();
    assert!(
        message.contains("stores.redb") && message.contains("another"),
        "{message}"
    );
    drop(first);

    let corrupt = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(corrupt.path().join("stores.redb"), vec![0x5a; 64 * 1024]).expect("writes");
    let Err(error) = Stores::embedded(corrupt.path(), KvLimits::DEFAULT) else {
        panic!("opened a corrupt file")
    };
    assert!(error.to_string().contains("stores.redb"), "{error}");

    let fifo = tempfile::tempdir().expect("a temporary directory");
    let status = std::process::Command::new("mkfifo")
        .arg(fifo.path().join("stores.redb"))
        .status()
        .expect("runs mkfifo");
    assert!(status.success());
    let Err(error) = Stores::embedded(fifo.path(), KvLimits::DEFAULT) else {
        panic!("opened a FIFO")
    };
    assert!(error.to_string().contains("not a regular file"), "{error}");
}
