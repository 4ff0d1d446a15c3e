//! Key-value stores for handlers (`wasi:keyvalue`): named stores shared host-wide, kept
//! in redb under `--data-dir` (the default) or in Redis (`--redis`), with the same
//! semantics on both backends.
//!
//! A handler reaches only the stores its manifest grants (`[keyvalue] stores`); the
//! runtime checks the grant, the key and value sizes, and the batch size before an
//! operation gets here. [`Stores`] bounds every operation in time.

mod embedded;
mod redis;
mod semantics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use semantics::{MAX_PAGE, parse_counter};

/// A store's name as manifests write it: 1–64 ASCII letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreName(Arc<str>);

impl StoreName {
    /// Longest store name.
    pub const MAX_LEN: usize = 64;

    /// `name` as a store name.
    ///
    /// # Errors
    /// A message saying why `name` is not one.
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(format!(
                "store name `{}` must be 1 to {} characters",
                name.escape_debug(),
                Self::MAX_LEN
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "store name `{}` may only hold ASCII letters, digits, `-` and `_`",
                name.escape_debug()
            ));
        }
        Ok(Self(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StoreName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far one handler's writes may fill a store (`[keyvalue.quotas.NAME]`): checked
/// against the store's totals, which every handler granted the store adds to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Most keys the store may hold after the write.
    pub max_keys: Option<u64>,
    /// Most bytes (keys plus values) the store may hold after the write.
    pub max_bytes: Option<u64>,
}

/// The stores one handler may open (`[keyvalue]` in its manifest), each with its
/// quota. The default grants none. Cheap to clone: every request takes its handler's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Arc<std::collections::BTreeMap<StoreName, Quota>>);

impl Grants {
    /// Grants `stores`, each with its quota.
    pub fn new(stores: impl IntoIterator<Item = (StoreName, Quota)>) -> Self {
        Self(Arc::new(stores.into_iter().collect()))
    }

    /// The granted store called `name` and its quota, if `name` is granted.
    pub fn get(&self, name: &str) -> Option<(&StoreName, Quota)> {
        self.0
            .iter()
            .find(|(store, _)| store.as_str() == name)
            .map(|(store, quota)| (store, *quota))
    }

    /// The granted stores' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &StoreName> {
        self.0.keys()
    }

    /// Whether no store is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The host's ceilings on key-value operations (`--kv-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key, in bytes of UTF-8 (keys are at least one byte).
    pub max_key: usize,
    /// Largest value, in bytes.
    pub max_value: usize,
    /// Most keys in one batch call.
    pub max_batch: usize,
    /// Longest one operation may take, queueing and retries included.
    pub timeout: Duration,
}

impl KvLimits {
    /// The defaults: 256-byte keys, 1 MiB values, 1,000 keys a batch, 2 s an operation.
    pub const DEFAULT: Self = Self {
        max_key: 256,
        max_value: 1 << 20,
        max_batch: 1000,
        timeout: Duration::from_secs(2),
    };
}

/// A change to one store, applied atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Removes `key`, if there.
    Delete {
        /// The key.
        key: String,
    },
    /// Adds `delta` to the counter at `key` (missing: 0), kept as decimal text.
    Increment {
        /// The key.
        key: String,
        /// What to add.
        delta: i64,
    },
    /// Sets `key` to `value` only if it still holds `expected` (`None`: absent).
    Swap {
        /// The key.
        key: String,
        /// The value seen when the swap was prepared.
        expected: Option<Vec<u8>>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Sets every key to its value, all or none.
    SetMany(Vec<(String, Vec<u8>)>),
    /// Removes every key, all or none.
    DeleteMany(Vec<String>),
}

/// What a [`Write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Done.
    Done,
    /// The counter's new value, after an [`Write::Increment`].
    Counter(i64),
    /// A [`Write::Swap`] found another value: the current one (`None`: absent).
    Changed(Option<Vec<u8>>),
}

/// One page of a store's keys, in byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most [`MAX_PAGE`] keys.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` after the last.
    pub cursor: Option<String>,
}

/// Why a store operation failed; the handler gets the message as `error::other`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// An increment of a value that is not a counter.
    #[error("the value of `{key}` is not an integer (counters are decimal text such as \"42\")")]
    NotInteger {
        /// The key.
        key: String,
    },
    /// An increment past the range of a 64-bit signed integer.
    #[error("incrementing `{key}` would overflow a 64-bit integer")]
    Overflow {
        /// The key.
        key: String,
    },
    /// The write would take the store past the handler's quota.
    #[error("store `{store}` quota exceeded: {what}")]
    Quota {
        /// The store.
        store: String,
        /// Which limit, and where the store stands.
        what: String,
    },
    /// A `list-keys` cursor this host did not give out.
    #[error("invalid cursor")]
    BadCursor,
    /// The backend did not answer in time; the operation may or may not have happened.
    #[error("the store did not answer within {0:?}; the operation may or may not have been applied")]
    Timeout(Duration),
    /// The backend failed.
    #[error("{0}")]
    Backend(String),
}

/// Why the stores cannot be opened at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The embedded store's file cannot be used.
    #[error("cannot open the key-value store file `{}`: {reason}", path.display())]
    Embedded {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The Redis URL is not one.
    #[error("invalid --redis URL: {0}")]
    RedisUrl(String),
}

/// Where the stores are kept.
enum Backend {
    Embedded(embedded::Embedded),
    Redis(redis::RedisStores),
}

/// Every store of the host, on one backend.
pub struct Stores {
    backend: Backend,
    limits: KvLimits,
}

impl Stores {
    /// Stores in redb, in the file `stores.redb` under `dir` (created if missing).
    ///
    /// # Errors
    /// An [`OpenError`] naming the file if it is not a regular file, is locked by
    /// another process, or is corrupt.
    pub fn embedded(dir: &std::path::Path, limits: KvLimits) -> Result<Self, OpenError> {
        Ok(Self {
            backend: Backend::Embedded(embedded::Embedded::open(dir)?),
            limits,
        })
    }

    /// Stores in the Redis at `url` (`redis://host:port/db`). Connects on first use
    /// and reconnects by itself; an operation while Redis is away fails in bounded time.
    ///
    /// # Errors
    /// [`OpenError::RedisUrl`] if `url` is not a Redis URL.
    pub fn redis(url: &str, limits: KvLimits) -> Result<Self, OpenError> {
        Ok(Self {
            backend: Backend::Redis(redis::RedisStores::new(url, limits.timeout)?),
            limits,
        })
    }

    /// The limits operations are checked against.
    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// Where the stores are, for the start-up log: a file, or a Redis address.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Embedded(store) => format!("embedded, {}", store.path().display()),
            Backend::Redis(store) => format!("redis at {}", store.address()),
        }
    }

    /// The value at `key`, if any.
    ///
    /// # Errors
    /// A [`StoreError`] if the backend fails or is too slow.
    pub async fn get(&self, store: &StoreName, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let keys = [key.to_owned()];
        let mut values = self.get_many(store, &keys).await?;
        Ok(values.pop().flatten())
    }

    /// The values at `keys`, in order (`None` where absent).
    ///
    /// # Errors
    /// A [`StoreError`] if the backend fails or is too slow.
    pub async fn get_many(
        &self,
        store: &StoreName,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.bounded(async {
            match &self.backend {
                Backend::Embedded(backend) => backend.get_many(store, keys).await,
                Backend::Redis(backend) => backend.get_many(store, keys).await,
            }
        })
        .await
    }

    /// Whether `key` is there.
    ///
    /// # Errors
    /// A [`StoreError`] if the backend fails or is too slow.
    pub async fn exists(&self, store: &StoreName, key: &str) -> Result<bool, StoreError> {
        self.bounded(async {
            match &self.backend {
                Backend::Embedded(backend) => backend.exists(store, key).await,
                Backend::Redis(backend) => backend.exists(store, key).await,
            }
        })
        .await
    }

    /// The page of keys after `cursor` (from the start if `None`).
    ///
    /// # Errors
    /// [`StoreError::BadCursor`] for a cursor not given out here; else the backend's.
    pub async fn list(&self, store: &StoreName, cursor: Option<&str>) -> Result<Page, StoreError> {
        let after = cursor.map(semantics::decode_cursor).transpose()?;
        let keys = self
            .bounded(async {
                match &self.backend {
                    Backend::Embedded(backend) => backend.list(store, after.as_deref()).await,
                    Backend::Redis(backend) => backend.list(store, after.as_deref()).await,
                }
            })
            .await?;
        Ok(semantics::page(keys))
    }

    /// Applies `write` to `store` atomically, within `quota`; returns once it is
    /// durable (embedded: committed to disk; Redis: acknowledged by the server).
    ///
    /// # Errors
    /// A [`StoreError`]: the write's own failure (not an integer, over quota), after
    /// which nothing was changed, or the backend's.
    pub async fn write(&self, store: &StoreName, write: Write, quota: Quota) -> Result<Written, StoreError> {
        self.bounded(async {
            match &self.backend {
                Backend::Embedded(backend) => backend.write(store, write, quota).await,
                Backend::Redis(backend) => backend.write(store, write, quota).await,
            }
        })
        .await
    }

    /// Claims entry `id` of the host's idempotency ledger with `record` until `lease`
    /// from now, unless an unexpired entry is there: `None` when claimed, else that
    /// entry's record. Durable before it returns. Handlers cannot reach the ledger.
    ///
    /// # Errors
    /// A [`StoreError`] if the backend fails or is too slow; then nothing is claimed,
    /// or an entry is claimed that expires with its lease.
    pub async fn claim(
        &self,
        id: &str,
        record: &[u8],
        lease: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.bounded(async {
            match &self.backend {
                Backend::Embedded(backend) => backend.claim(id, record, lease).await,
                Backend::Redis(backend) => backend.claim(id, record, lease).await,
            }
        })
        .await
    }

    /// Replaces ledger entry `id` by `record`, kept for `ttl` (`None`: removes it), if
    /// it still holds `expected` (the caller's claim); whether it did.
    ///
    /// # Errors
    /// A [`StoreError`] if the backend fails or is too slow.
    pub async fn settle(
        &self,
        id: &str,
        expected: &[u8],
        record: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.bounded(async {
            match &self.backend {
                Backend::Embedded(backend) => backend.settle(id, expected, record, ttl).await,
                Backend::Redis(backend) => backend.settle(id, expected, record, ttl).await,
            }
        })
        .await
    }

    /// Removes a batch of expired ledger entries; how many. Redis expires them by
    /// itself, so there it does nothing.
    ///
    /// # Errors
    /// A [`StoreError`] if the backend fails or is too slow.
    pub async fn sweep_ledger(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Embedded(backend) => self.bounded(backend.sweep()).await,
            Backend::Redis(_) => Ok(0),
        }
    }

    /// Runs `operation` within the per-operation timeout.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.limits.timeout, operation)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.limits.timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_that_is_not_one_is_refused_without_echoing_it() {
        let Err(error) = Stores::redis("http://user:secret@example.com/", KvLimits::DEFAULT) else {
            panic!("an HTTP URL was taken for Redis")
        };
        let message = error.to_string();
        assert!(message.starts_with("invalid --redis URL"), "{message}");
        assert!(
            !message.contains("secret"),
            "the password reached the message: {message}"
        );
    }

    #[test]
    fn store_names_are_short_plain_words() {
        assert!(StoreName::new("default").is_ok());
        assert!(StoreName::new("user-sessions_2").is_ok());
        assert!(StoreName::new(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "ключ", "a:b", "a/b", "{x}", &"a".repeat(65)] {
            assert!(StoreName::new(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
