//! Key-value stores (`wasi:keyvalue`): open a store the handler's manifest grants,
//! then get, set, delete, list, increment and compare-and-swap its keys.
//!
//! ```no_run
//! use tcpy_guest::kv::Store;
//!
//! # fn main() -> Result<(), tcpy_guest::kv::Error> {
//! let store = Store::open("default")?;          // granted by `[keyvalue] stores`
//! store.set("greeting", "hello")?;
//! assert_eq!(store.get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! let visits = store.increment("visits", 1)?;   // kept as decimal text: "1", "2", …
//! for key in store.keys() {
//!     println!("{}", key?);
//! }
//! // Read, change, write back; retried if another request changed it meanwhile.
//! store.update("greeting", |old| [old.unwrap_or_default(), b"!".to_vec()].concat())?;
//! # let _ = visits;
//! # Ok(())
//! # }
//! ```
//!
//! Every failure is an [`Error`], never a trap: a store not granted is
//! [`Error::AccessDenied`]; a key too long, a value too large, a store that did not
//! answer in time is [`Error::Other`] with the host's explanation.

use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host has no such store.
    NoSuchStore,
    /// The handler's manifest does not grant this store.
    AccessDenied,
    /// Anything else, as the host explains it.
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchStore => f.write_str("no such store"),
            Self::AccessDenied => {
                f.write_str("access denied: the handler's manifest does not grant this store")
            }
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::NoSuchStore => Self::NoSuchStore,
            store::Error::AccessDenied => Self::AccessDenied,
            store::Error::Other(message) => Self::Other(message),
        }
    }
}

/// An error response saying what failed: `{"error": true, "message": …}`.
impl From<Error> for crate::Response {
    fn from(error: Error) -> Self {
        crate::error(error.to_string())
    }
}

/// How often [`Store::update`] reads and tries again before it gives up.
pub const UPDATE_TRIES: usize = 100;

/// An open store.
pub struct Store {
    bucket: store::Bucket,
}

impl Store {
    /// Opens the store `name`, which the handler's manifest must grant.
    ///
    /// # Errors
    /// [`Error::AccessDenied`] if it is not granted.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            bucket: store::open(name)?,
        })
    }

    /// The value at `key`, if there is one.
    ///
    /// # Errors
    /// An [`Error`] if the store fails.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// An [`Error`] if the store fails or the key or value is too large.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        Ok(self.bucket.set(key, value.as_ref())?)
    }

    /// Removes `key`; removing a key that is not there is not an error.
    ///
    /// # Errors
    /// An [`Error`] if the store fails.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether `key` is there.
    ///
    /// # Errors
    /// An [`Error`] if the store fails.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// Every key of the store, in byte order, fetched a page at a time.
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            store: self,
            page: Vec::new().into_iter(),
            cursor: None,
            done: false,
        }
    }

    /// Adds `delta` to the counter at `key` (a missing key counts as 0) and returns
    /// its new value. Counters are decimal text, so `get` reads `"42"`.
    ///
    /// # Errors
    /// [`Error::Other`] if the value is not an integer or the sum overflows.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Prepares a compare-and-swap of `key`: the [`Cas`] remembers its value now.
    ///
    /// # Errors
    /// An [`Error`] if the store fails.
    pub fn cas(&self, key: &str) -> Result<Cas, Error> {
        Ok(Cas {
            cas: atomics::Cas::new(&self.bucket, key)?,
        })
    }

    /// Sets `key` to `change(its value)`, atomically: if another request changes the
    /// key in between, `change` runs again on the new value (up to [`UPDATE_TRIES`]
    /// times). Returns the value written.
    ///
    /// # Errors
    /// An [`Error`] if the store fails, or the key kept changing.
    pub fn update(
        &self,
        key: &str,
        mut change: impl FnMut(Option<Vec<u8>>) -> Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut cas = self.cas(key)?;
        for _ in 0..UPDATE_TRIES {
            let value = change(cas.current()?);
            match cas.swap(&value)? {
                None => return Ok(value),
                Some(retry) => cas = retry,
            }
        }
        Err(Error::Other(format!(
            "`{key}` changed under every one of {UPDATE_TRIES} tries"
        )))
    }

    /// The values at `keys`, in order (`None` where absent), read together.
    ///
    /// # Errors
    /// An [`Error`] if the store fails or there are too many keys.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
        let found = batch::get_many(&self.bucket, &keys)?;
        Ok(found
            .into_iter()
            .map(|entry| entry.map(|(_, value)| value))
            .collect())
    }

    /// Sets every key to its value, all or none.
    ///
    /// # Errors
    /// An [`Error`] if the store fails (then nothing was set).
    pub fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), Error> {
        let entries: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
            .collect();
        Ok(batch::set_many(&self.bucket, &entries)?)
    }

    /// Removes every key, all or none.
    ///
    /// # Errors
    /// An [`Error`] if the store fails (then nothing was removed).
    pub fn delete_many(&self, keys: &[&str]) -> Result<(), Error> {
        let keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
        Ok(batch::delete_many(&self.bucket, &keys)?)
    }
}

/// A compare-and-swap in preparation, from [`Store::cas`].
pub struct Cas {
    cas: atomics::Cas,
}

impl Cas {
    /// The value the key held when this was prepared.
    ///
    /// # Errors
    /// An [`Error`] if the store fails.
    pub fn current(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.cas.current()?)
    }

    /// Writes `value` if the key still holds [`Cas::current`]: `None` when written,
    /// or `Some` fresh `Cas` (holding the key's value now) when another request
    /// changed it first.
    ///
    /// # Errors
    /// An [`Error`] if the store fails.
    pub fn swap(self, value: &[u8]) -> Result<Option<Cas>, Error> {
        match atomics::swap(self.cas, value) {
            Ok(()) => Ok(None),
            Err(atomics::CasError::CasFailed(cas)) => Ok(Some(Self { cas })),
            Err(atomics::CasError::StoreError(error)) => Err(error.into()),
        }
    }
}

/// The keys of a store, from [`Store::keys`]; an error ends the walk.
pub struct Keys<'a> {
    store: &'a Store,
    page: std::vec::IntoIter<String>,
    cursor: Option<String>,
    done: bool,
}

impl Iterator for Keys<'_> {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.page.next() {
                return Some(Ok(key));
            }
            if self.done {
                return None;
            }
            match self.store.bucket.list_keys(self.cursor.as_deref()) {
                Ok(page) => {
                    self.done = page.cursor.is_none();
                    self.cursor = page.cursor;
                    self.page = page.keys.into_iter();
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(error.into()));
                }
            }
        }
    }
}
