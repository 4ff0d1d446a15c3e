//! `kvops`: every `wasi:keyvalue` operation, driven by the request's params, for the
//! end-to-end tests of the stores (tests/e2e/keyvalue.rs). Values travel as text.
//!
//! `{"cmd": "kvops", "op": "set", "store": "default", "key": "k", "value": "v"}`; a
//! failure answers `{"error": true, "kind": "access_denied" | "no_such_store" | "other",
//! "message": …}`. `size` instead of `value` writes that many bytes of `x`.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tcpy_guest::bindings::wasi::keyvalue::store as raw;
use tcpy_guest::kv::{Error, Store};
use tcpy_guest::{Handler, Response, error, success};

/// The params of `kvops`.
#[derive(Deserialize)]
struct KvOps {
    op: String,
    #[serde(default = "default_store")]
    store: String,
    #[serde(default)]
    key: String,
    value: Option<String>,
    size: Option<usize>,
    #[serde(default)]
    delta: i64,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    entries: Map<String, Value>,
    cursor: Option<String>,
    #[serde(default)]
    count: usize,
}

fn default_store() -> String {
    "default".to_owned()
}

fn failed(error: Error) -> Response {
    let kind = match error {
        Error::NoSuchStore => "no_such_store",
        Error::AccessDenied => "access_denied",
        Error::Other(_) => "other",
    };
    error_with(error, kind)
}

fn error_with(message: impl ToString, kind: &str) -> Response {
    error(message.to_string()).with(json!({ "kind": kind }))
}

fn text(value: Option<Vec<u8>>) -> Value {
    value.map_or(Value::Null, |bytes| {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    })
}

impl KvOps {
    fn value(&self) -> Vec<u8> {
        match self.size {
            Some(size) => vec![b'x'; size],
            None => self.value.clone().unwrap_or_default().into_bytes(),
        }
    }

    fn run(&self) -> Result<Response, Error> {
        if self.op == "handles" {
            return Ok(self.handles());
        }
        let store = Store::open(&self.store)?;
        let key = self.key.as_str();
        let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        Ok(match self.op.as_str() {
            "open" => success(()),
            "get" => success(json!({ "value": text(store.get(key)?) })),
            "set" => {
                store.set(key, self.value())?;
                success(())
            }
            "delete" => {
                store.delete(key)?;
                success(())
            }
            "exists" => success(json!({ "exists": store.exists(key)? })),
            "keys" => {
                let keys = store.keys().collect::<Result<Vec<_>, _>>()?;
                success(json!({ "count": keys.len(), "keys": keys }))
            }
            "page" => {
                let bucket = raw::open(&self.store)?;
                let page = bucket.list_keys(self.cursor.as_deref())?;
                success(json!({ "keys": page.keys, "cursor": page.cursor }))
            }
            "increment" => success(json!({ "value": store.increment(key, self.delta)? })),
            "cas_add" => self.cas_add(&store)?,
            "cas_conflict" => {
                let cas = store.cas(key)?;
                let before = text(cas.current()?);
                store.set(key, "changed meanwhile")?;
                match cas.swap(b"mine")? {
                    None => success(json!({ "swapped": true, "before": before })),
                    Some(retry) => success(
                        json!({ "swapped": false, "before": before, "current": text(retry.current()?) }),
                    ),
                }
            }
            "get_many" => {
                let values: Vec<Value> = store.get_many(&keys)?.into_iter().map(text).collect();
                success(json!({ "values": values }))
            }
            "set_many" => {
                let entries: Vec<(String, Vec<u8>)> = self
                    .entries
                    .iter()
                    .map(|(key, value)| {
                        (
                            key.clone(),
                            value.as_str().unwrap_or_default().as_bytes().to_vec(),
                        )
                    })
                    .collect();
                let borrowed: Vec<(&str, &[u8])> = entries
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_slice()))
                    .collect();
                store.set_many(&borrowed)?;
                success(())
            }
            "delete_many" => {
                store.delete_many(&keys)?;
                success(())
            }
            "fill" => {
                // `count` keys `KEY00000`…, set a batch of 1,000 at a time.
                let names: Vec<String> = (0..self.count).map(|n| format!("{key}{n:05}")).collect();
                for chunk in names.chunks(1000) {
                    let entries: Vec<(&str, &[u8])> =
                        chunk.iter().map(|name| (name.as_str(), &b"1"[..])).collect();
                    store.set_many(&entries)?;
                }
                success(json!({ "count": self.count }))
            }
            other => error_with(format!("unknown op `{other}`"), "bad_op"),
        })
    }

    /// Adds `delta` to the decimal text at `key` with a compare-and-swap loop.
    fn cas_add(&self, store: &Store) -> Result<Response, Error> {
        let mut cas = store.cas(&self.key)?;
        for tries in 1..=1000 {
            let now: i64 = match cas.current()? {
                Some(bytes) => String::from_utf8_lossy(&bytes).parse().unwrap_or(0),
                None => 0,
            };
            let next = now + self.delta;
            match cas.swap(next.to_string().as_bytes())? {
                None => return Ok(success(json!({ "value": next, "tries": tries }))),
                Some(retry) => cas = retry,
            }
        }
        Ok(error_with("no swap succeeded in 1000 tries", "other"))
    }

    /// Opens `count` stores and keeps them open: how many opened, and why one failed.
    fn handles(&self) -> Response {
        let mut open = Vec::new();
        for _ in 0..self.count {
            match Store::open(&self.store) {
                Ok(store) => open.push(store),
                Err(error) => return success(json!({ "opened": open.len(), "failure": error.to_string() })),
            }
        }
        success(json!({ "opened": open.len() }))
    }
}

impl Handler for KvOps {
    fn execute(self) -> Response {
        self.run().unwrap_or_else(failed)
    }
}

tcpy_guest::export!(KvOps);
