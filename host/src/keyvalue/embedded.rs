//! The embedded backend: every store a table of one redb file, `stores.redb`.
//!
//! Writes are group-committed: one writer thread takes every write waiting, applies
//! them in order in one transaction, commits it durably (fsync), and only then
//! answers each. Concurrent writers share one fsync instead of queueing for one each.
//! A write that fails on its own (not an integer, over quota) changes nothing and
//! does not disturb the others in its group. Reads run on the blocking pool against
//! the last committed state.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError};
use tokio::sync::{mpsc, oneshot};

use super::semantics::{MAX_PAGE, incremented};
use super::{OpenError, Quota, StoreError, StoreName, Write, Written};

/// The file under `--data-dir`.
const FILE: &str = "stores.redb";
/// Each store's totals: key count and bytes (keys plus values), for quotas.
const TOTALS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("tcpy:totals");
/// The ledger of idempotency keys: id → (expiry, record), in milliseconds since the
/// Unix epoch.
const LEDGER: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("tcpy:ledger");
/// The ledger's entries by expiry, so a sweep finds the expired ones without a scan.
const LEDGER_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("tcpy:ledger-expiry");
/// Most expired ledger entries one sweep removes.
const SWEEP_BATCH: usize = 10_000;
/// Most writes one commit takes.
const MAX_GROUP: usize = 1024;
/// Writes waiting for the writer thread, at most (further writers wait their turn).
const QUEUE: usize = 4096;

/// The table of `store`.
fn table_name(store: &StoreName) -> String {
    format!("store:{store}")
}

/// A write waiting for its commit.
struct Job {
    store: StoreName,
    write: Write,
    quota: Quota,
    done: oneshot::Sender<Result<Written, StoreError>>,
}

/// The open `stores.redb`, and the queue to its writer thread.
pub(super) struct Embedded {
    db: Arc<Database>,
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
}

impl Embedded {
    /// Opens (or creates) `dir/stores.redb` and starts its writer thread.
    pub(super) fn open(dir: &Path) -> Result<Self, OpenError> {
        let path = dir.join(FILE);
        let failed = |reason: String| OpenError::Embedded {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|error| failed(format!("cannot create its directory: {error}")))?;
        // NB: a FIFO or a device here would block or feed the open forever; a symlink
        // could point anywhere. Only a regular file (or none yet) is opened.
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if !metadata.file_type().is_file() => {
                return Err(failed("not a regular file".to_owned()));
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(error.to_string())),
        }
        let db = Database::create(&path).map_err(|error| {
            failed(match error {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    "it is open in another process (another tcpy-host on the same --data-dir?)".to_owned()
                }
                other => format!("{other} (is it a redb file, and whole?)"),
            })
        })?;
        let db = Arc::new(db);
        let (jobs, queue) = mpsc::channel(QUEUE);
        let writer = Arc::clone(&db);
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("tcpy-kv-writer".to_owned())
            .spawn(move || write_loop(&writer, &writer_path, queue))
            .map_err(|error| failed(format!("cannot start its writer thread: {error}")))?;
        Ok(Self { db, path, jobs })
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) async fn get_many(
        &self,
        store: &StoreName,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys = keys.to_vec();
        self.read(store, move |table| {
            let Some(table) = table else {
                return Ok(vec![None; keys.len()]);
            };
            keys.iter()
                .map(|key| Ok(table.get(key.as_str())?.map(|value| value.value().to_vec())))
                .collect()
        })
        .await
    }

    pub(super) async fn exists(&self, store: &StoreName, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.read(store, move |table| match table {
            Some(table) => Ok(table.get(key.as_str())?.is_some()),
            None => Ok(false),
        })
        .await
    }

    pub(super) async fn list(
        &self,
        store: &StoreName,
        after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let after = after.map(str::to_owned);
        self.read(store, move |table| {
            let Some(table) = table else {
                return Ok(Vec::new());
            };
            let start = match &after {
                Some(after) => Bound::Excluded(after.as_str()),
                None => Bound::Unbounded,
            };
            let mut keys = Vec::new();
            for entry in table.range::<&str>((start, Bound::Unbounded))?.take(MAX_PAGE) {
                let (key, _) = entry?;
                keys.push(key.value().to_owned());
            }
            Ok(keys)
        })
        .await
    }

    /// Queues `write` for the next commit and waits until it is on disk.
    pub(super) async fn write(
        &self,
        store: &StoreName,
        write: Write,
        quota: Quota,
    ) -> Result<Written, StoreError> {
        let (done, committed) = oneshot::channel();
        let job = Job {
            store: store.clone(),
            write,
            quota,
            done,
        };
        self.jobs.send(job).await.map_err(|_| self.gone())?;
        committed.await.map_err(|_| self.gone())?
    }

    /// Runs `read` on the blocking pool against `store`'s table (`None`: never written).
    async fn read<T: Send + 'static>(
        &self,
        store: &StoreName,
        read: impl FnOnce(Option<redb::ReadOnlyTable<&str, &[u8]>>) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        let name = table_name(store);
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || {
            let transaction = db.begin_read()?;
            let definition: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
            let table = match transaction.open_table(definition) {
                Ok(table) => Some(table),
                Err(TableError::TableDoesNotExist(_)) => None,
                Err(error) => return Err(error.into()),
            };
            read(table)
        })
        .await
        .map_err(|_| self.gone())?;
        result.map_err(|error| storage_error(&path, &error))
    }

    /// Claims ledger entry `id` with `record` until `lease` from now, unless an entry
    /// that has not expired is there: `None` when claimed, else that entry's record.
    /// Durable before it returns.
    pub(super) async fn claim(
        &self,
        id: &str,
        record: &[u8],
        lease: std::time::Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (id, record) = (id.to_owned(), record.to_vec());
        self.ledger(move |ledger, now| {
            if let Some((expires, held)) = ledger.get(&id)?
                && expires > now
            {
                return Ok(Some(held));
            }
            ledger.put(&id, &record, now.saturating_add(millis(lease)))?;
            Ok(None)
        })
        .await
    }

    /// Replaces ledger entry `id` by `record` for `ttl` (`None`: removes it) if it
    /// still holds `expected`; whether it did. Durable before it returns.
    pub(super) async fn settle(
        &self,
        id: &str,
        expected: &[u8],
        record: Option<&[u8]>,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let (id, expected, record) = (id.to_owned(), expected.to_vec(), record.map(<[u8]>::to_vec));
        self.ledger(move |ledger, now| {
            if ledger.get(&id)?.is_none_or(|(_, held)| held != expected) {
                return Ok(false);
            }
            match &record {
                Some(record) => ledger.put(&id, record, now.saturating_add(millis(ttl)))?,
                None => ledger.remove(&id)?,
            }
            Ok(true)
        })
        .await
    }

    /// Removes up to [`SWEEP_BATCH`] expired ledger entries; how many it removed.
    pub(super) async fn sweep(&self) -> Result<usize, StoreError> {
        self.ledger(|ledger, now| ledger.sweep(now)).await
    }

    /// Runs `change` on the ledger in one durable write transaction, on the blocking
    /// pool; redb runs it between the writer thread's commits.
    async fn ledger<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Ledger<'_>, u64) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut transaction = db.begin_write()?;
            transaction.set_durability(Durability::Immediate)?;
            let now = millis(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            );
            let result = {
                let mut ledger = Ledger {
                    entries: transaction.open_table(LEDGER)?,
                    expiry: transaction.open_table(LEDGER_EXPIRY)?,
                };
                change(&mut ledger, now)?
            };
            transaction.commit()?;
            Ok(result)
        })
        .await
        .map_err(|_| self.gone())?;
        result.map_err(|error: redb::Error| storage_error(&path, &error))
    }

    fn gone(&self) -> StoreError {
        StoreError::Backend(format!("the store `{}` has stopped", self.path.display()))
    }
}

/// The ledger's tables inside a write transaction.
struct Ledger<'t> {
    entries: Table<'t, &'static str, (u64, &'static [u8])>,
    expiry: Table<'t, (u64, &'static str), ()>,
}

impl Ledger<'_> {
    /// Entry `id`: its expiry and record.
    fn get(&self, id: &str) -> Result<Option<(u64, Vec<u8>)>, redb::Error> {
        Ok(self.entries.get(id)?.map(|entry| {
            let (expires, record) = entry.value();
            (expires, record.to_vec())
        }))
    }

    /// Sets entry `id` to `record` until `expires`.
    fn put(&mut self, id: &str, record: &[u8], expires: u64) -> Result<(), redb::Error> {
        self.remove(id)?;
        self.entries.insert(id, (expires, record))?;
        self.expiry.insert((expires, id), ())?;
        Ok(())
    }

    /// Removes entry `id`, if there.
    fn remove(&mut self, id: &str) -> Result<(), redb::Error> {
        let old = self.entries.remove(id)?.map(|entry| entry.value().0);
        if let Some(expires) = old {
            self.expiry.remove((expires, id))?;
        }
        Ok(())
    }

    /// Removes up to [`SWEEP_BATCH`] entries expired by `now`.
    fn sweep(&mut self, now: u64) -> Result<usize, redb::Error> {
        let mut expired = Vec::new();
        for entry in self.expiry.range::<(u64, &str)>(..(now, ""))?.take(SWEEP_BATCH) {
            let (key, _) = entry?;
            let (expires, id) = key.value();
            expired.push((expires, id.to_owned()));
        }
        for (expires, id) in &expired {
            self.expiry.remove((*expires, id.as_str()))?;
            self.entries.remove(id.as_str())?;
        }
        Ok(expired.len())
    }
}

/// `duration` in whole milliseconds, saturating.
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn storage_error(path: &Path, error: &redb::Error) -> StoreError {
    StoreError::Backend(format!("store file `{}`: {error}", path.display()))
}

/// The writer thread: one transaction, one fsync per group of waiting writes.
fn write_loop(db: &Database, path: &Path, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match commit(db, &group) {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    // A writer that gave up (its request ended) is not waiting any more.
                    let _ = job.done.send(result);
                }
            }
            Err(error) => {
                tracing::error!(file = %path.display(), error = %error, writes = group.len(), "key-value commit failed");
                let failure = storage_error(path, &error);
                for job in group {
                    let _ = job.done.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// Applies `group` in order in one durable transaction: each write's own result, or
/// the storage error that failed them all.
fn commit(db: &Database, group: &[Job]) -> Result<Vec<Result<Written, StoreError>>, redb::Error> {
    let mut transaction = db.begin_write()?;
    transaction.set_durability(Durability::Immediate)?;
    let mut results = Vec::with_capacity(group.len());
    {
        let mut totals = transaction.open_table(TOTALS)?;
        // Consecutive writes to one store (the usual group) share its open table and
        // its totals, which are written back once, when the run ends.
        for run in group.chunk_by(|a, b| a.store == b.store) {
            let store = &run[0].store;
            let name = table_name(store);
            let mut table = transaction.open_table(TableDefinition::<&str, &[u8]>::new(&name))?;
            let mut current = totals
                .get(store.as_str())?
                .map_or((0, 0), |totals| totals.value());
            for job in run {
                let mut view = StoreTable {
                    name: store,
                    table: &mut table,
                    totals: current,
                    quota: job.quota,
                };
                results.push(view.apply(&job.write)?);
                current = view.totals;
            }
            totals.insert(store.as_str(), current)?;
        }
    }
    transaction.commit()?;
    Ok(results)
}

/// One store's table inside a write transaction, with its totals.
struct StoreTable<'a, 't> {
    name: &'a StoreName,
    table: &'a mut Table<'t, &'static str, &'static [u8]>,
    totals: (u64, u64),
    quota: Quota,
}

/// A write's own failure (nothing changed), or the storage's (the group fails).
type Applied = Result<Result<Written, StoreError>, redb::Error>;

impl StoreTable<'_, '_> {
    fn apply(&mut self, write: &Write) -> Applied {
        match write {
            Write::Set { key, value } => self.change(&[(key, Some(value))]),
            Write::Delete { key } => self.change(&[(key, None)]),
            Write::Increment { key, delta } => {
                let current = self.value(key)?;
                let counter = match incremented(key, current.as_deref(), *delta) {
                    Ok(counter) => counter,
                    Err(error) => return Ok(Err(error)),
                };
                let text = counter.to_string().into_bytes();
                Ok(self
                    .change(&[(key, Some(&text))])?
                    .map(|_| Written::Counter(counter)))
            }
            Write::Swap { key, expected, value } => {
                let current = self.value(key)?;
                if current != *expected {
                    return Ok(Ok(Written::Changed(current)));
                }
                self.change(&[(key, Some(value))])
            }
            Write::SetMany(entries) => {
                let changes: Vec<_> = entries.iter().map(|(key, value)| (key, Some(value))).collect();
                self.change(&changes)
            }
            Write::DeleteMany(keys) => {
                let changes: Vec<_> = keys.iter().map(|key| (key, None)).collect();
                self.change(&changes)
            }
        }
    }

    fn value(&self, key: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        Ok(self.table.get(key)?.map(|value| value.value().to_vec()))
    }

    /// Sets (`Some`) or removes (`None`) each key, all or none: the quota is checked on
    /// the totals after the whole change, before anything is written.
    fn change(&mut self, changes: &[(&String, Option<&Vec<u8>>)]) -> Applied {
        let (mut keys, mut bytes) = self.totals;
        // Later changes of the same key see the earlier ones.
        let mut seen: std::collections::HashMap<&str, Option<u64>> = std::collections::HashMap::new();
        for (key, value) in changes {
            let before = match seen.get(key.as_str()) {
                Some(size) => *size,
                None => self.table.get(key.as_str())?.map(|old| old.value().len() as u64),
            };
            let after = value.map(|value| value.len() as u64);
            let key_len = key.len() as u64;
            match (before, after) {
                (None, Some(new)) => {
                    keys += 1;
                    bytes += key_len + new;
                }
                (Some(old), Some(new)) => bytes = bytes - old + new,
                (Some(old), None) => {
                    keys -= 1;
                    bytes -= key_len + old;
                }
                (None, None) => {}
            }
            seen.insert(key.as_str(), after);
        }
        if let Some(error) = self.over_quota(keys, bytes) {
            return Ok(Err(error));
        }
        for (key, value) in changes {
            match value {
                Some(value) => {
                    self.table.insert(key.as_str(), value.as_slice())?;
                }
                None => {
                    self.table.remove(key.as_str())?;
                }
            }
        }
        self.totals = (keys, bytes);
        Ok(Ok(Written::Done))
    }

    /// Whether totals of `keys` and `bytes` break the quota, where they grew.
    fn over_quota(&self, keys: u64, bytes: u64) -> Option<StoreError> {
        let (keys_now, bytes_now) = self.totals;
        let quota = |what: String| StoreError::Quota {
            store: self.name.to_string(),
            what,
        };
        if let Some(max) = self.quota.max_keys
            && keys > keys_now
            && keys > max
        {
            return Some(quota(format!("{keys} keys, over its limit of {max}")));
        }
        if let Some(max) = self.quota.max_bytes
            && bytes > bytes_now
            && bytes > max
        {
            return Some(quota(format!("{bytes} bytes, over its limit of {max}")));
        }
        None
    }
}
