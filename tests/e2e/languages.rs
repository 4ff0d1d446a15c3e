//! One table, three languages: the Rust, Python and JavaScript `add` and `tally`
//! handlers answer the same requests the same way, over real TCP, and their `counter`s
//! count in one key-value store.
//!
//! Each language gets a host of its own on `target/language-handlers/LANG` (see
//! `cargo xtask build-handlers`), where its handlers serve as `add` and `tally`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tcpy_host::keyvalue::{KvLimits, Stores};
use tcpy_host::runtime::Runtime;
use tcpy_tests::{LineConn, TestHost, language_handlers_dir, test_limits};

/// A language's handlers, and a request that makes one of them fail mid-run.
struct Language {
    /// Its directory in `target/language-handlers`.
    dir: &'static str,
    /// A request whose handler throws: a Rust panic, a Python or JavaScript exception.
    /// (Rust params that do not fit never reach the handler, so the Rust row uses the
    /// `misbehave` fixture; the Python and JavaScript `add` throw a `TypeError` when
    /// `x` is not a number.)
    throws: fn() -> Value,
}

const RUST: Language = Language {
    dir: "rust",
    throws: || json!({"cmd": "misbehave", "do": "panic"}),
};
const PYTHON: Language = Language {
    dir: "py",
    throws: || json!({"cmd": "add", "x": "boom", "y": 1}),
};
const JAVASCRIPT: Language = Language {
    dir: "js",
    throws: || json!({"cmd": "add", "x": "boom", "y": 1}),
};

#[tokio::test]
async fn rust_handlers_answer_the_table() {
    the_table(&RUST).await;
}

#[tokio::test]
async fn python_handlers_answer_the_table() {
    the_table(&PYTHON).await;
}

#[tokio::test]
async fn javascript_handlers_answer_the_table() {
    the_table(&JAVASCRIPT).await;
}

async fn the_table(language: &Language) {
    let host = TestHost::start_in(&language_handlers_dir(language.dir)).await;
    let mut conn = LineConn::connect(host.addr).await;
    adds(&mut conn, language).await;
    tallies_over_several_rounds(&mut conn, language).await;
    bad_params_get_bad_request(&mut conn, language).await;
    an_exception_gets_handler_failed(&mut conn, language).await;
    // The host keeps serving others too.
    let mut other = LineConn::connect(host.addr).await;
    adds(&mut other, language).await;
}

async fn adds(conn: &mut LineConn, language: &Language) {
    for (x, y) in [(1, 2), (-5, 3), (0, 0)] {
        let response = conn.round_trip(json!({"cmd": "add", "x": x, "y": y})).await;
        assert_eq!(
            response,
            json!({"success": true, "solution": x + y}),
            "{}: add {x} {y}",
            language.dir
        );
    }
}

async fn tallies_over_several_rounds(conn: &mut LineConn, language: &Language) {
    let name = language.dir;
    conn.send(json!({"cmd": "tally", "start": 10})).await;
    let mut total = 10;
    for n in [1, 2, 3, 4] {
        total += n;
        let reply = conn.round_trip(json!({"n": n})).await;
        assert_eq!(reply, json!({"total": total}), "{name}: after {n}");
    }
    let reply = conn.round_trip(json!({"n": "five"})).await;
    assert!(
        reply["warning"].is_string(),
        "{name}: a step that is not a number is warned about: {reply}"
    );
    let done = conn.round_trip(json!({"done": true})).await;
    assert_eq!(
        done,
        json!({"success": true, "total": total, "count": 4}),
        "{name}"
    );
}

async fn bad_params_get_bad_request(conn: &mut LineConn, language: &Language) {
    let name = language.dir;
    let response = conn.round_trip(json!({"cmd": "add", "x": 1})).await;
    assert_eq!(response["error"], true, "{name}: {response}");
    assert_eq!(response["code"], "bad_request", "{name}: {response}");
    let message = response["message"].as_str().expect("a message");
    assert!(
        message.starts_with("invalid params") && message.contains('y'),
        "{name}: `{message}` should name the missing param"
    );
}

async fn an_exception_gets_handler_failed(conn: &mut LineConn, language: &Language) {
    let name = language.dir;
    let response = conn.round_trip((language.throws)()).await;
    assert_eq!(response["error"], true, "{name}: {response}");
    assert_eq!(response["code"], "handler_failed", "{name}: {response}");
    assert!(response["message"].is_string(), "{name}: {response}");
    // The same connection carries on.
    adds(conn, language).await;
}

/// The `counter` of each language counts in the same store `default`, so one key
/// counted by all three goes 1, 2, 3, …; without its manifest, a counter is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_of_all_three_languages_share_one_store() {
    let handlers = tempfile::tempdir().expect("a temporary directory");
    let commands = [("rust", "counter"), ("py", "py_counter"), ("js", "js_counter")];
    for (language, command) in commands {
        let built = language_handlers_dir(language);
        for extension in ["wasm", "toml"] {
            let (from, to) = (
                built.join(format!("counter.{extension}")),
                handlers.path().join(format!("{command}.{extension}")),
            );
            std::fs::copy(&from, to).unwrap_or_else(|error| panic!("{}: {error}", from.display()));
        }
        let bare = handlers.path().join(format!("{command}_bare.wasm"));
        std::fs::copy(built.join("counter.wasm"), bare).expect("copies");
    }
    let data = tempfile::tempdir().expect("a temporary directory");
    let stores = Stores::embedded(data.path(), KvLimits::DEFAULT).expect("opens");
    let runtime = Runtime::new(test_limits())
        .expect("runtime builds")
        .with_stores(Arc::new(stores));
    let host = TestHost::serve(runtime, handlers.path(), Duration::from_secs(5), false).await;
    let mut conn = LineConn::connect(host.addr).await;
    for round in 0..2 {
        for (index, (_, command)) in commands.iter().enumerate() {
            let response = conn.round_trip(json!({"cmd": command, "name": "shared"})).await;
            let expected = i64::try_from(round * commands.len() + index + 1).expect("small");
            assert_eq!(
                response,
                json!({"success": true, "name": "shared", "value": expected}),
                "{command}"
            );
        }
    }
    for (_, command) in commands {
        let bare = format!("{command}_bare");
        let response = conn.round_trip(json!({"cmd": bare, "name": "shared"})).await;
        assert_eq!(response["error"], true, "{bare}: {response}");
        let message = response["message"].as_str().unwrap_or_default().to_lowercase();
        assert!(message.contains("access denied"), "{bare}: {response}");
    }
}
