//! `counter`: increments a named counter in the key-value store `default` and returns
//! its new value. `{"cmd": "counter", "name": "visits"}` answers
//! `{"success": true, "name": "visits", "value": 1}`, then 2, 3, … across requests,
//! connections and restarts. `by` (default 1) is what to add.
//!
//! Its manifest, `counter.toml`, grants it the store: `[keyvalue] stores = ["default"]`.

use serde::Deserialize;
use serde_json::json;
use tcpy_guest::kv::Store;
use tcpy_guest::{Handler, Response, success};

/// The params of `counter`.
#[derive(Deserialize)]
struct Counter {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "one")]
    by: i64,
}

fn default_name() -> String {
    "hits".to_owned()
}

fn one() -> i64 {
    1
}

impl Handler for Counter {
    fn execute(self) -> Response {
        let value = match Store::open("default").and_then(|store| store.increment(&self.name, self.by)) {
            Ok(value) => value,
            Err(error) => return error.into(),
        };
        success(json!({ "name": self.name, "value": value }))
    }
}

tcpy_guest::export!(Counter);
