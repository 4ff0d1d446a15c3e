//! The host side of `wasi:keyvalue` (`store`, `atomics`, `batch`) for one request.
//!
//! Every call is checked here before it reaches the [`Stores`]: the bucket must be a
//! store the handler's manifest grants, keys 1 to `max_key` bytes, values at most
//! `max_value`, batches at most `max_batch` keys. Each failure is an `error` the
//! handler gets, never a trap, and never touches another request. A request holds at
//! most [`MAX_HANDLES`] buckets and CAS handles at once.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::bindings::wasi::keyvalue::{atomics, batch, store};
use super::state::RequestState;
use crate::keyvalue::{Grants, Quota, StoreError, StoreName, Stores, Write, Written};

use store::{Error, KeyResponse};

/// Most buckets and CAS handles one request may hold open at once.
pub const MAX_HANDLES: u32 = 1000;

/// An open store: `store::bucket` on the host side.
pub struct Bucket {
    store: StoreName,
    quota: Quota,
}

/// A compare-and-swap in preparation: `atomics::cas` on the host side. It remembers
/// the value the key held when it was made.
pub struct Cas {
    store: StoreName,
    quota: Quota,
    key: String,
    expected: Option<Vec<u8>>,
}

/// What one request may reach: the host's stores (if it has any) and its grants.
pub(crate) struct KeyValue {
    stores: Option<Arc<Stores>>,
    grants: Grants,
    /// Buckets and CAS handles open now, against [`MAX_HANDLES`].
    open: u32,
}

impl KeyValue {
    /// What a request of a handler granted `grants` reaches in `stores`.
    pub(crate) fn new(stores: Option<Arc<Stores>>, grants: Grants) -> Self {
        Self {
            stores,
            grants,
            open: 0,
        }
    }
}

/// A store failure as the handler sees it.
fn other(error: impl std::fmt::Display) -> Error {
    Error::Other(error.to_string())
}

/// What an operation needs once it is checked: the stores, and the command for the
/// log. Owned, so no borrow of the request's state is held while the store works.
struct Op {
    stores: Arc<Stores>,
    command: Arc<str>,
}

impl Op {
    /// Applies `write` to `store`.
    async fn write(self, store: &StoreName, write: Write, quota: Quota) -> Result<Written, Error> {
        let result = self.stores.write(store, write, quota).await;
        result.map_err(|error| self.failed(store, &error))
    }

    /// `error` as the handler gets it; the operator hears of the backend's failures.
    fn failed(&self, store: &StoreName, error: &StoreError) -> Error {
        if matches!(error, StoreError::Timeout(_) | StoreError::Backend(_)) {
            tracing::warn!(cmd = %self.command, store = %store, %error, "key-value operation failed");
        }
        other(error)
    }
}

/// The checks every operation passes first. A handle the table does not hold traps:
/// the component model makes that the host's bug, never the guest's.
impl RequestState {
    fn op(&self) -> Result<Op, Error> {
        let stores = self
            .keyvalue
            .stores
            .as_ref()
            .ok_or_else(|| other("this host was started without key-value stores"))?;
        Ok(Op {
            stores: Arc::clone(stores),
            command: Arc::clone(&self.command),
        })
    }

    fn take_handle(&mut self) -> Result<(), Error> {
        if self.keyvalue.open >= MAX_HANDLES {
            return Err(other(format!(
                "too many open buckets and CAS handles (the limit is {MAX_HANDLES} a request); drop some"
            )));
        }
        self.keyvalue.open += 1;
        Ok(())
    }

    fn give_handle(&mut self) {
        self.keyvalue.open = self.keyvalue.open.saturating_sub(1);
    }

    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<(StoreName, Quota)> {
        let bucket = self.table.get(bucket)?;
        Ok((bucket.store.clone(), bucket.quota))
    }

    /// The operation on `keys` (at most a batch) and `values` (each within the limit).
    fn checked<'a>(
        &self,
        keys: impl ExactSizeIterator<Item = &'a str>,
        values: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Op, Error> {
        let op = self.op()?;
        let limits = op.stores.limits();
        if keys.len() > limits.max_batch {
            return Err(other(format!(
                "a batch may hold at most {} keys; this one has {}",
                limits.max_batch,
                keys.len()
            )));
        }
        for key in keys {
            if key.is_empty() || key.len() > limits.max_key {
                return Err(other(format!(
                    "a key must be 1 to {} bytes; this one is {}",
                    limits.max_key,
                    key.len()
                )));
            }
        }
        for value in values {
            if value.len() > limits.max_value {
                return Err(other(format!(
                    "a value may be at most {} bytes; this one is {}",
                    limits.max_value,
                    value.len()
                )));
            }
        }
        Ok(op)
    }

    /// The operation on one `key`.
    fn checked_key(&self, key: &str) -> Result<Op, Error> {
        self.checked(std::iter::once(key), std::iter::empty())
    }
}

impl store::Host for RequestState {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        let Some((store, quota)) = self.keyvalue.grants.get(&identifier) else {
            return Ok(Err(Error::AccessDenied));
        };
        let bucket = Bucket {
            store: store.clone(),
            quota,
        };
        if let Err(error) = self.op().and_then(|_| self.take_handle()) {
            return Ok(Err(error));
        }
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for RequestState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (store, _) = self.bucket(&bucket)?;
        Ok(get(self.checked_key(&key), &store, &key).await)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (store, quota) = self.bucket(&bucket)?;
        let op = self.checked(std::iter::once(key.as_str()), std::iter::once(value.as_slice()));
        Ok(write(op, &store, Write::Set { key, value }, quota)
            .await
            .map(drop))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<(), Error>> {
        let (store, quota) = self.bucket(&bucket)?;
        let op = self.checked_key(&key);
        Ok(write(op, &store, Write::Delete { key }, quota).await.map(drop))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (store, _) = self.bucket(&bucket)?;
        let op = match self.checked_key(&key) {
            Ok(op) => op,
            Err(error) => return Ok(Err(error)),
        };
        let exists = op.stores.exists(&store, &key).await;
        Ok(exists.map_err(|error| op.failed(&store, &error)))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        let (store, _) = self.bucket(&bucket)?;
        let op = match self.op() {
            Ok(op) => op,
            Err(error) => return Ok(Err(error)),
        };
        let page = op.stores.list(&store, cursor.as_deref()).await;
        Ok(page
            .map(|page| KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(|error| op.failed(&store, &error)))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.give_handle();
        Ok(())
    }
}

/// The value at `key` of `store`, once `op` passed its checks.
async fn get(op: Result<Op, Error>, store: &StoreName, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let op = op?;
    let value = op.stores.get(store, key).await;
    value.map_err(|error| op.failed(store, &error))
}

/// Applies `write` to `store`, once `op` passed its checks.
async fn write(
    op: Result<Op, Error>,
    store: &StoreName,
    write: Write,
    quota: Quota,
) -> Result<Written, Error> {
    op?.write(store, write, quota).await
}

impl atomics::Host for RequestState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let (store, quota) = self.bucket(&bucket)?;
        let op = self.checked_key(&key);
        Ok(
            match write(op, &store, Write::Increment { key, delta }, quota).await {
                Ok(Written::Counter(counter)) => Ok(counter),
                Ok(_) => Err(other("the store answered an increment with no counter")),
                Err(error) => Err(error),
            },
        )
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        self.give_handle();
        let op = self.checked(std::iter::empty(), std::iter::once(value.as_slice()));
        let swap = Write::Swap {
            key: cas.key.clone(),
            expected: cas.expected.clone(),
            value,
        };
        match write(op, &cas.store, swap, cas.quota).await {
            Ok(Written::Changed(current)) => {
                // A fresh handle that remembers what the key holds now, so a retry loop
                // reads `current` and swaps again.
                if let Err(error) = self.take_handle() {
                    return Ok(Err(atomics::CasError::StoreError(error)));
                }
                let retry = self.table.push(Cas {
                    expected: current,
                    ..cas
                })?;
                Ok(Err(atomics::CasError::CasFailed(retry)))
            }
            Ok(_) => Ok(Ok(())),
            Err(error) => Ok(Err(atomics::CasError::StoreError(error))),
        }
    }
}

impl atomics::HostCas for RequestState {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, Error>> {
        let (store, quota) = self.bucket(&bucket)?;
        let expected = match get(self.checked_key(&key), &store, &key).await {
            Ok(value) => value,
            Err(error) => return Ok(Err(error)),
        };
        if let Err(error) = self.take_handle() {
            return Ok(Err(error));
        }
        Ok(Ok(self.table.push(Cas {
            store,
            quota,
            key,
            expected,
        })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.table.get(&cas)?.expected.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        self.give_handle();
        Ok(())
    }
}

impl batch::Host for RequestState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, Error>> {
        let (store, _) = self.bucket(&bucket)?;
        let max_memory = self.limits.max_memory;
        let op = match self.checked(keys.iter().map(String::as_str), std::iter::empty()) {
            Ok(op) => op,
            Err(error) => return Ok(Err(error)),
        };
        let values = match op.stores.get_many(&store, &keys).await {
            Ok(values) => values,
            Err(error) => return Ok(Err(op.failed(&store, &error))),
        };
        // NB: the answer is copied into the handler's memory, which can never hold more
        // than its cap: refuse it here rather than fail the copy.
        let total: usize = values.iter().flatten().map(Vec::len).sum();
        if total > max_memory {
            return Ok(Err(other(format!(
                "these values hold {total} bytes, more than the handler's memory of {max_memory} bytes; \
                 ask for fewer keys"
            ))));
        }
        Ok(Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| value.map(|value| (key, value)))
            .collect()))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (store, quota) = self.bucket(&bucket)?;
        let op = self.checked(
            entries.iter().map(|(key, _)| key.as_str()),
            entries.iter().map(|(_, value)| value.as_slice()),
        );
        Ok(write(op, &store, Write::SetMany(entries), quota).await.map(drop))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (store, quota) = self.bucket(&bucket)?;
        let op = self.checked(keys.iter().map(String::as_str), std::iter::empty());
        Ok(write(op, &store, Write::DeleteMany(keys), quota).await.map(drop))
    }
}
