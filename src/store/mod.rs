//! The store: the public API over the engine, the group-commit queue and the
//! state database.
//!
//! Only this module touches redb; no redb type appears in its public API.

mod background;
mod backup;
mod commit;
mod engine;
pub(crate) mod inspect;
pub(crate) mod open;
pub(crate) mod rebuild;
mod replay;
pub(crate) mod request;
pub(crate) mod schema;
mod snapshot;
mod stats;
mod txn;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::commit::Committer;
use self::engine::Engine;
use self::request::{
    BaseLoad, BaseRecord, Check, Outcome, Request, Write, WriteKind, WriteOutcome,
};
use crate::error::{Error, Result};
use crate::fs::LockGuard;
use crate::key;
use crate::log::segment::StoreId;
use crate::log::{CutTail, catalog};
use crate::options::Options;
use crate::time::Timestamp;
use crate::value::{self, RawValue, Versioned};

pub use self::open::STORE_FORMAT_VERSION;
pub use self::schema::Meta;
pub use self::snapshot::{KeyRange, List, Snapshot};
pub use self::stats::Stats;
pub use self::txn::Tx;

/// What a successful write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The revision of the commit; for a write skipped as unchanged, the revision
    /// that last wrote the record.
    pub revision: u64,
    /// The record's version now.
    pub version: u64,
    /// False when the write was skipped because the value was unchanged.
    pub changed: bool,
}

/// What a successful delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the commit.
    pub revision: u64,
    /// The version the record had.
    pub version: u64,
}

/// The result of [`Store::transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome<T> {
    /// What the closure returned.
    pub value: T,
    /// The revision of the commit; `None` if the transaction wrote nothing.
    pub revision: Option<u64>,
}

/// What opening the store had to do to recover from an unclean shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Commits replayed from the log into the state database.
    pub replayed: u64,
    /// A torn write cut off the end of the log (it held no acknowledged commit).
    pub cut: Option<CutTail>,
}

/// A record to load with [`Store::restore_records`], keeping its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRecord {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// Metadata to keep (versions and revisions as in the snapshot).
    pub meta: Meta,
    /// The value.
    pub value: RawValue,
}

/// An open store: a directory with a log and a state database, safe to share
/// between threads (clone the handle) and guarded against other processes.
///
/// ```
/// use statelog::{Options, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("state"), Options::default())?;
/// let first = store.put("tasks", "t1", &"queued")?;
/// assert_eq!((first.revision, first.version), (1, 1));
/// let next = store.update("tasks", "t1", |old: Option<String>| -> statelog::Result<String> {
///     Ok(format!("{} -> running", old.unwrap_or_default()))
/// })?;
/// assert_eq!(next.version, 2);
/// assert_eq!(next.value, "queued -> running");
/// # Ok::<(), statelog::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.handle.shared.path)
            .finish_non_exhaustive()
    }
}

/// Closes the store when the last clone of a [`Store`] goes away.
struct Handle {
    shared: Arc<Shared>,
    background: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub conflicts: AtomicU64,
    pub retries: AtomicU64,
    pub checkpoints: AtomicU64,
}

/// What the handle, the committer and the background thread share.
pub(crate) struct Shared {
    pub path: PathBuf,
    pub db_path: Arc<PathBuf>,
    pub options: Options,
    pub store_id: StoreId,
    /// What readers see (declared before `db`: dropped before it).
    pub visible: Arc<view::Visible>,
    pub db: Arc<Database>,
    pub engine: Mutex<Engine>,
    pub committer: Committer,
    pub counters: Counters,
    pub background: background::Signal,
    /// The last revision known to be synced (Relaxed mode).
    pub synced_revision: AtomicU64,
    pub recovery: Recovery,
    pub closed: AtomicBool,
    /// Held by a running backup: backups of one store take turns.
    pub backup_lock: Mutex<()>,
    // Dropped last: the lock is released only after everything above is closed.
    _lock: Box<dyn LockGuard>,
}

/// Opens `table` of `db` in a read transaction of its own (the table keeps
/// the transaction's snapshot alive); `op` names the table in errors.
pub(crate) fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &Database,
    path: &Path,
    table: redb::TableDefinition<'static, K, V>,
    op: &'static str,
) -> Result<redb::ReadOnlyTable<K, V>> {
    db.begin_read()
        .map_err(db_error(path, "begin a read"))?
        .open_table(table)
        .map_err(db_error(path, op))
}

/// Begins a state-database write whose commit is not durable on its own (a
/// checkpoint makes it so); `op` names it in errors ("begin a write").
pub(crate) fn begin_nondurable(
    db: &Database,
    path: &Path,
    op: &'static str,
) -> Result<redb::WriteTransaction> {
    let mut txn = db.begin_write().map_err(db_error(path, op))?;
    txn.set_durability(redb::Durability::None)
        .map_err(db_error(path, "set the durability of a write"))?;
    Ok(txn)
}

/// Converts any redb error into [`Error::Database`] for `path`.
pub(crate) fn db_error<E: Into<redb::Error>>(
    path: &Path,
    op: &'static str,
) -> impl FnOnce(E) -> Error {
    let path = path.to_owned();
    move |e| {
        let e: redb::Error = e.into();
        let hint = match &e {
            redb::Error::Corrupted(_) => {
                "the file is damaged; `statelog repair` rebuilds it from the log when the log \
                 reaches back to the store's first revision"
            }
            redb::Error::PreviousIo => "an earlier write failed; close and reopen the store",
            redb::Error::Io(_) => "check the disk and its free space",
            _ => "close and reopen the store; if this persists, run `statelog check`",
        };
        Error::Database {
            op,
            path,
            hint,
            source: Box::new(e),
        }
    }
}

impl Store {
    /// Opens the store in directory `path`, creating it if it does not exist
    /// (unless [`Options::create`] says not to).
    ///
    /// Waits up to [`Options::lock_timeout`] for another handle to close it.
    /// After a crash, replays the log past the last checkpoint, and cuts off a
    /// torn write at its very end (with a warning through `tracing`).
    ///
    /// # Errors
    /// [`Error::Busy`] if another handle keeps it open; [`Error::NotAStore`] for a
    /// directory holding something else; [`Error::UnsupportedFormat`] for a store
    /// written by a newer statelog; [`Error::Corrupt`] for damage that recovery
    /// must not guess about; [`Error::Io`] and [`Error::Database`].
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_owned();
        let opened = open::open(&path, &options)?;
        let revision = opened.engine.applied.revision;
        let shared = Arc::new(Shared {
            db_path: Arc::new(path.join(open::DB_FILE)),
            path,
            options,
            store_id: opened.store_id,
            visible: Arc::clone(&opened.engine.visible),
            db: opened.db,
            engine: Mutex::new(opened.engine),
            committer: Committer::default(),
            counters: Counters::default(),
            background: background::Signal::default(),
            synced_revision: AtomicU64::new(revision),
            recovery: Recovery {
                replayed: opened.replayed,
                cut: opened.cut,
            },
            closed: AtomicBool::new(false),
            backup_lock: Mutex::new(()),
            _lock: opened.lock,
        });
        let thread = {
            let for_thread = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("statelog-background".to_owned())
                .spawn(move || background::run(for_thread))
                .map_err(|e| Error::io("start the background thread for", &shared.path, e))?
        };
        Ok(Store {
            handle: Arc::new(Handle {
                shared,
                background: Mutex::new(Some(thread)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    fn check_open(&self) -> Result<()> {
        if self.shared().closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.shared().path
    }

    /// The store's id: 32 hex digits chosen when it was created.
    pub fn id(&self) -> String {
        catalog::hex(&self.shared().store_id)
    }

    /// The revision of the last commit readers can see.
    pub fn revision(&self) -> u64 {
        self.shared().visible.get().applied().revision
    }

    /// A consistent snapshot for reading; see [`Snapshot`].
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::Database`].
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.check_open()?;
        let shared = self.shared();
        Ok(Snapshot::new(
            shared.visible.get(),
            Arc::clone(&shared.db_path),
        ))
    }

    /// Runs `f` on one consistent snapshot.
    ///
    /// # Errors
    /// What `f` returns, or what [`snapshot`](Self::snapshot) returns.
    pub fn read<R>(&self, f: impl FnOnce(&Snapshot) -> Result<R>) -> Result<R> {
        f(&self.snapshot()?)
    }

    /// Reads a record as `T`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`]; [`Error::Decode`] naming the record if its value is
    /// not a `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<Versioned<T>>> {
        self.snapshot()?.get(namespace, key)
    }

    /// Reads a record without decoding its value.
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn get_raw(&self, namespace: &str, key: &str) -> Result<Option<Versioned<RawValue>>> {
        self.snapshot()?.get_raw(namespace, key)
    }

    /// Streams a namespace's records in key order (all, a range, or a prefix;
    /// see [`KeyRange`]), from one snapshot.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a bad namespace.
    pub fn list<T: DeserializeOwned>(
        &self,
        namespace: &str,
        range: impl Into<KeyRange>,
    ) -> Result<List<T>> {
        self.snapshot()?.list(namespace, range)
    }

    /// Like [`list`](Self::list), without decoding values.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a bad namespace.
    pub fn list_raw(&self, namespace: &str, range: impl Into<KeyRange>) -> Result<List<RawValue>> {
        self.snapshot()?.list_raw(namespace, range)
    }

    /// The namespaces that hold records.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn namespaces(&self) -> Result<Vec<String>> {
        self.snapshot()?.namespaces()
    }

    /// Writes a value, whatever the record's current version.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::Encode`], [`Error::TooLarge`], and the
    /// I/O errors of a commit.
    pub fn put<T: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<Committed> {
        let address = key::encode(namespace, key)?;
        let value = value::encode(namespace, key, value)?;
        self.write_one(address, value, None, false)
    }

    /// Writes a value unless it equals the stored one byte for byte; then nothing
    /// is written (no new version, no log record) and `changed` is false.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn put_if_changed<T: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<Committed> {
        let address = key::encode(namespace, key)?;
        let value = value::encode(namespace, key, value)?;
        self.write_one(address, value, None, true)
    }

    /// Writes a value given as MessagePack.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn put_raw(&self, namespace: &str, key: &str, value: RawValue) -> Result<Committed> {
        let address = key::encode(namespace, key)?;
        let value = value.into_msgpack();
        value::check_len(namespace, key, value.len())?;
        self.write_one(address, value, None, false)
    }

    /// Creates a record that must not exist yet.
    ///
    /// # Errors
    /// [`Error::Conflict`] (with `expected` 0) if it exists; as [`put`](Self::put).
    pub fn create<T: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<Committed> {
        self.compare_and_swap(namespace, key, 0, value)
    }

    /// Writes a value only if the record has version `expected` (0: does not
    /// exist).
    ///
    /// # Errors
    /// [`Error::Conflict`] with the expected and actual versions; as
    /// [`put`](Self::put).
    pub fn compare_and_swap<T: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        expected: u64,
        value: &T,
    ) -> Result<Committed> {
        let address = key::encode(namespace, key)?;
        let value = value::encode(namespace, key, value)?;
        self.write_one(address, value, Some(expected), false)
    }

    fn write_one(
        &self,
        address: Vec<u8>,
        value: Vec<u8>,
        expected: Option<u64>,
        skip_unchanged: bool,
    ) -> Result<Committed> {
        let checks = expected
            .map(|expected| Check {
                address: address.clone(),
                expected,
                modified: None,
            })
            .into_iter()
            .collect();
        let outcome = self.commit(Request {
            checks,
            writes: vec![Write {
                address,
                kind: WriteKind::Put {
                    value,
                    skip_unchanged,
                },
            }],
        })?;
        match outcome.writes.first() {
            Some(WriteOutcome::Put { meta, changed }) => Ok(Committed {
                revision: meta.mod_revision,
                version: meta.version,
                changed: *changed,
            }),
            _ => Err(internal("a put produced no put outcome")),
        }
    }

    /// Removes a record. Returns `None` if it did not exist (then nothing is
    /// written).
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and the I/O errors of a commit.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<Option<Deleted>> {
        self.delete_checked(namespace, key, None)
    }

    /// Removes a record only if it has version `expected`.
    ///
    /// # Errors
    /// [`Error::Conflict`] if it has another version or does not exist; as
    /// [`delete`](Self::delete).
    pub fn compare_and_delete(&self, namespace: &str, key: &str, expected: u64) -> Result<Deleted> {
        match self.delete_checked(namespace, key, Some(expected))? {
            Some(deleted) => Ok(deleted),
            None => Err(Error::Conflict {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                expected,
                actual: 0,
                attempts: 1,
            }),
        }
    }

    fn delete_checked(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<u64>,
    ) -> Result<Option<Deleted>> {
        let address = key::encode(namespace, key)?;
        let checks = expected
            .map(|expected| Check {
                address: address.clone(),
                expected,
                modified: None,
            })
            .into_iter()
            .collect();
        let outcome = self.commit(Request {
            checks,
            writes: vec![Write {
                address,
                kind: WriteKind::Delete,
            }],
        })?;
        match (outcome.revision, outcome.writes.first()) {
            (Some(revision), Some(WriteOutcome::Deleted { version })) => Ok(Some(Deleted {
                revision,
                version: *version,
            })),
            (None, Some(WriteOutcome::Absent)) => Ok(None),
            _ => Err(internal("a delete produced no delete outcome")),
        }
    }

    /// Read, modify, write without losing updates: reads the record, calls `f`
    /// with its value (outside any lock), and writes the result only if the
    /// record has not changed meanwhile. On a conflict it waits a random,
    /// growing time and tries again, up to [`RetryPolicy::max_attempts`]
    /// (`crate::RetryPolicy`), then returns [`Error::Conflict`].
    ///
    /// `f` may run several times; an error from it ends the update at once.
    ///
    /// # Errors
    /// What `f` returns; [`Error::Conflict`] after the last attempt;
    /// [`Error::Decode`] if the stored value is not a `T`; as [`put`](Self::put).
    ///
    /// [`RetryPolicy::max_attempts`]: crate::RetryPolicy::max_attempts
    pub fn update<T, E, F>(&self, namespace: &str, key: &str, mut f: F) -> Result<Versioned<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnMut(Option<T>) -> Result<T, E>,
    {
        let address = key::encode(namespace, key)?;
        let policy = self.shared().options.retry;
        let mut attempt = 1;
        loop {
            let current: Option<Versioned<T>> = self.get(namespace, key)?;
            let expected = current.as_ref().map_or(0, |c| c.version);
            let modified = current.as_ref().map(|c| c.mod_revision);
            let next = f(current.map(|c| c.value))?;
            let bytes = value::encode(namespace, key, &next)?;
            let request = Request {
                checks: vec![Check {
                    address: address.clone(),
                    expected,
                    modified,
                }],
                writes: vec![Write {
                    address: address.clone(),
                    kind: WriteKind::Put {
                        value: bytes,
                        skip_unchanged: false,
                    },
                }],
            };
            match self.commit(request) {
                Ok(outcome) => match outcome.writes.first() {
                    Some(WriteOutcome::Put { meta, .. }) => return Ok(Versioned::new(next, *meta)),
                    _ => return Err(internal("an update produced no put outcome").into()),
                },
                Err(Error::Conflict {
                    namespace,
                    key,
                    expected,
                    actual,
                    ..
                }) => {
                    if attempt >= policy.max_attempts {
                        return Err(Error::Conflict {
                            namespace,
                            key,
                            expected,
                            actual,
                            attempts: attempt,
                        }
                        .into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
            self.retry_pause(attempt);
            attempt += 1;
        }
    }

    /// Runs `f` as one all-or-nothing transaction: its reads come from one
    /// snapshot, its writes apply together at one new revision, and only if every
    /// record it read is unchanged at commit. If one changed, `f` runs again (up
    /// to the retry policy's attempts). An error returned by `f` aborts without
    /// writing anything.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path(), Default::default()).unwrap();
    /// store.put("accounts", "a", &10).unwrap();
    /// let moved = store.transaction(|tx| {
    ///     let a: i64 = tx.get("accounts", "a")?.map_or(0, |r| r.value);
    ///     let b: i64 = tx.get("accounts", "b")?.map_or(0, |r| r.value);
    ///     tx.put("accounts", "a", &(a - 3))?;
    ///     tx.put("accounts", "b", &(b + 3))?;
    ///     Ok::<_, statelog::Error>(3)
    /// }).unwrap();
    /// assert_eq!(moved.value, 3);
    /// assert_eq!(store.get::<i64>("accounts", "b").unwrap().unwrap().value, 3);
    /// ```
    ///
    /// # Errors
    /// What `f` returns; [`Error::Conflict`] after the last attempt; the I/O
    /// errors of a commit.
    pub fn transaction<T, E, F>(&self, mut f: F) -> Result<TxOutcome<T>, E>
    where
        E: From<Error>,
        F: FnMut(&mut Tx) -> Result<T, E>,
    {
        let policy = self.shared().options.retry;
        let mut attempt = 1;
        loop {
            let mut tx = Tx::new(self.snapshot()?);
            let value = f(&mut tx)?;
            if tx.is_read_only() {
                return Ok(TxOutcome {
                    value,
                    revision: None,
                });
            }
            match self.commit(tx.into_request()) {
                Ok(outcome) => {
                    return Ok(TxOutcome {
                        value,
                        revision: outcome.revision,
                    });
                }
                Err(Error::Conflict {
                    namespace,
                    key,
                    expected,
                    actual,
                    ..
                }) if attempt >= policy.max_attempts => {
                    return Err(Error::Conflict {
                        namespace,
                        key,
                        expected,
                        actual,
                        attempts: attempt,
                    }
                    .into());
                }
                Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            self.retry_pause(attempt);
            attempt += 1;
        }
    }

    fn retry_pause(&self, attempt: u32) {
        let shared = self.shared();
        shared.counters.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(shared.options.retry.backoff(attempt));
    }

    fn commit(&self, request: Request) -> Result<Outcome> {
        self.check_open()?;
        let result = self.shared().committer.commit(self.shared(), request);
        if let Err(Error::Conflict { .. }) = &result {
            self.shared()
                .counters
                .conflicts
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Loads records into an empty store as its first commit, keeping their
    /// versions and revisions; the store's revision becomes `revision`. This is
    /// how a snapshot is restored exactly. All records commit or none do.
    ///
    /// # Errors
    /// [`Error::NotEmpty`] if the store has any commit; [`Error::InvalidOption`]
    /// for metadata that does not fit `revision`; [`Error::InvalidKey`].
    pub fn restore_records(
        &self,
        revision: u64,
        time: Timestamp,
        records: impl IntoIterator<Item = RestoreRecord>,
    ) -> Result<u64> {
        self.check_open()?;
        let mut load = BaseLoad {
            revision,
            time,
            records: Vec::new(),
        };
        for record in records {
            let address = key::encode(&record.namespace, &record.key)?;
            let value = record.value.into_msgpack();
            value::check_len(&record.namespace, &record.key, value.len())?;
            load.records.push(BaseRecord {
                address,
                meta: record.meta,
                value,
            });
        }
        load.records.sort_by(|a, b| a.address.cmp(&b.address));
        if let Some(pair) = load
            .records
            .windows(2)
            .find(|w| w[0].address == w[1].address)
        {
            let (namespace, key) = key::decode(&pair[0].address).unwrap_or(("?", "?"));
            return Err(Error::InvalidOption {
                name: "records",
                reason: format!("{namespace}/{key} appears twice"),
            });
        }
        let shared = self.shared();
        let mut engine = shared.engine.lock();
        let revision = engine.restore_base(&load)?;
        shared.synced_revision.store(revision, Ordering::Release);
        Ok(revision)
    }

    /// Makes the state database durable at the current revision now, so that a
    /// restart has no log to replay. Runs on its own by the checkpoint policy.
    ///
    /// # Errors
    /// [`Error::Poisoned`], [`Error::Database`], [`Error::Io`].
    pub fn checkpoint(&self) -> Result<()> {
        self.check_open()?;
        let shared = self.shared();
        if shared.engine.lock().checkpoint()? {
            shared.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// What opening had to do to recover (nothing after a clean close).
    pub fn recovery(&self) -> &Recovery {
        &self.shared().recovery
    }

    /// Counters of this handle since it was opened.
    pub fn stats(&self) -> Stats {
        let shared = self.shared();
        let engine = shared.engine.lock();
        Stats {
            revision: engine.applied.revision,
            checkpoint_revision: engine.checkpointed.revision,
            commits: engine.commits,
            conflicts: shared.counters.conflicts.load(Ordering::Relaxed),
            retries: shared.counters.retries.load(Ordering::Relaxed),
            batches: shared.committer.counters.batches.load(Ordering::Relaxed),
            checkpoints: shared.counters.checkpoints.load(Ordering::Relaxed),
            replayed_on_open: shared.recovery.replayed,
            log_bytes: engine.log_bytes,
        }
    }

    /// Closes the store: runs a final checkpoint and refuses further use through
    /// any clone of this handle. Files and the lock are released when the last
    /// clone is dropped (at once, if this was the only one). Dropping every clone
    /// without calling `close` closes too, but cannot report an error.
    ///
    /// # Errors
    /// The final checkpoint's error, if any; nothing acknowledged is lost by it.
    pub fn close(self) -> Result<()> {
        self.handle.shutdown()
    }
}

impl Handle {
    fn shutdown(&self) -> Result<()> {
        let shared = &self.shared;
        if shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        shared.background.stop();
        if let Some(thread) = self.background.lock().take() {
            let _ = thread.join();
        }
        let mut engine = shared.engine.lock();
        let result = if engine.poisoned.is_some() {
            Ok(false)
        } else {
            engine.checkpoint()
        };
        engine.close();
        result.map(|_| ())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}

fn internal(what: &str) -> Error {
    Error::Poisoned {
        cause: format!("internal error: {what}"),
    }
}
