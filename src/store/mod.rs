//! The store: the public API ([`Store`], a facade over whichever way the store
//! is reached, see `access/`), and the embedded engine behind it in the
//! process that holds the store: the group-commit queue and the state
//! database.
//!
//! The state database is `db/`'s; no redb type appears here.

mod background;
mod commit;
pub(crate) mod coordination;
#[cfg(feature = "etcd")]
mod etcd;
pub(crate) mod local;
mod reach;
mod snapshot;
mod txn;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::request::{BaseLoad, BaseRecord, Outcome, Request, WriteKind, WriteOutcome};
use crate::access::{Backend, BackupOptions, BackupReport, Fault, Reply};
use crate::coord::Idempotency;
use crate::error::{Error, Result};
use crate::key;
use crate::log::CutTail;
use crate::options::Options;
use crate::time::Timestamp;
use crate::value::{self, RawValue, Versioned};
use coordination::KeyedCall;

pub use self::snapshot::{KeyRange, List, Snapshot};
pub use self::txn::Tx;
pub use crate::access::Stats;
pub use crate::layout::STORE_FORMAT_VERSION;
pub use crate::value::Meta;

/// What a successful write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Deleted {
    /// The revision of the commit.
    pub revision: u64,
    /// The version the record had.
    pub version: u64,
}

/// The result of [`Store::transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxOutcome<T> {
    /// What the closure returned.
    pub value: T,
    /// The revision of the commit; `None` if the transaction wrote nothing.
    pub revision: Option<u64>,
    /// True when this is the first result of a transaction with the same
    /// idempotency key ([`Store::transaction_with_key`]), returned again
    /// without running the closure: nothing was written now.
    pub replayed: bool,
}

/// What opening the store had to do to recover from an unclean shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Commits replayed from the log (into the state database, or into
    /// memory first: see [`Store::open`]).
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
/// between threads (clone the handle) and between processes.
///
/// The first process to open a store holds it: it has the store's files and
/// lock, commits, and (unless [`Options::serve`] says not to) serves every
/// other process that opens the same store while it holds it. Their handles
/// work through the holder, with the same results, versions, revisions and
/// errors; nothing in this API changes. When the holder closes or dies, the
/// others carry on: their next request takes the store over or reaches
/// whoever holds it now. A commit whose outcome could not be known (the
/// holder died after receiving it) fails with [`Error::OutcomeUnknown`] and is
/// never retried by itself. See `DESIGN.md`, "One store, many processes".
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
            .field("path", &self.handle.path)
            .finish_non_exhaustive()
    }
}

/// What every clone of a [`Store`] shares; closes the backend when the last
/// clone goes away.
struct Handle {
    path: PathBuf,
    /// The store id, 32 hex digits.
    id: String,
    options: Options,
    recovery: Recovery,
    reach: Reach,
    /// This handle's conflicts and retries (the rest of [`Stats`] is the
    /// holder's).
    conflicts: AtomicU64,
    retries: AtomicU64,
    closed: AtomicBool,
    /// Same-key `update`s of this process take turns.
    keylocks: crate::coord::keylocks::KeyLocks,
}

/// The backend a handle uses.
enum Reach {
    /// This process holds the store: the backend never changes.
    Held(Arc<dyn Backend>),
    /// Another process holds it. When it goes away, the handle reaches the
    /// store again (a new holder, or this process takes it over) and swaps
    /// the backend; the number counts the swaps.
    Served {
        current: RwLock<(u64, Arc<dyn Backend>)>,
        /// One thread at a time reaches the store again.
        switching: Mutex<()>,
    },
}

impl Store {
    /// Opens the store in directory `path`, creating it if it does not exist
    /// (unless [`Options::create`] says not to).
    ///
    /// If no other process holds the store, this one does: after a crash the
    /// log past the last checkpoint is replayed and a torn write at its very
    /// end is cut (with a warning through `tracing`), and the store is served
    /// to other processes (see [`Options::serve`]). A replay that fits in
    /// memory (up to 131,072 commits and 64 MiB of keys and values) is
    /// checked against the state database and read from memory at once; it
    /// is written to the state database right after the open, and commits,
    /// reads of the past, backups and checkpoints wait for that (reads of the
    /// present do not). If another process holds
    /// it and serves it, the handle works through that process (see
    /// [`Options::remote`]). Otherwise this waits up to
    /// [`Options::lock_timeout`] for the holder to close it.
    ///
    /// The state database's pages are not verified unless
    /// [`Options::verify_on_open`] says so: damage that redb trips over while
    /// the store opens (and replays) is [`Error::Database`], but a damaged
    /// page that opening does not read can make a later read, or closing the
    /// store, panic inside redb. `statelog check` finds such damage and
    /// `statelog repair` rebuilds the state from the log.
    ///
    /// When the store's file system takes no writes (full, over quota, mounted
    /// read-only), the store opens read-only instead of failing: nothing is
    /// written (a replay stays in memory), reads work, and every change fails
    /// with [`Error::ReadOnly`] (see [`read_only`](Self::read_only)).
    ///
    /// # Examples
    /// ```
    /// use statelog::{Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path().join("state"), Options::default())?;
    /// assert!(store.is_holder());
    /// assert_eq!(store.revision(), 0);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Busy`] if another process holds the store, does not serve it
    /// (or does not answer) and does not release it in time;
    /// [`Error::Refused`] if the holder refuses this process (another user);
    /// [`Error::NotAStore`] for a directory holding something else, or a
    /// store's files without its identity file (which no creation ever clears:
    /// `statelog repair` rebuilds the identity);
    /// [`Error::UnsupportedFormat`] for a store written by a newer statelog;
    /// [`Error::Corrupt`] for damage that recovery must not guess about;
    /// [`Error::Io`] (also when the socket serving other processes cannot be
    /// created) and [`Error::Database`].
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_owned();
        let reached = reach::reach(&path, &options)?;
        // A store this process holds, or one on etcd, keeps its backend for
        // the handle's life; a holder elsewhere may go away and be replaced.
        let reach = if reached.backend.is_holder() || crate::access::etcd_address(&path).is_some() {
            Reach::Held(reached.backend)
        } else {
            Reach::Served {
                current: RwLock::new((0, reached.backend)),
                switching: Mutex::new(()),
            }
        };
        Ok(Store {
            handle: Arc::new(Handle {
                path,
                id: reached.store_id,
                options,
                recovery: reached.recovery,
                reach,
                conflicts: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                keylocks: Default::default(),
            }),
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.handle.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Runs `op` on the backend. Through a holder, a request the holder never
    /// executed (it went away or is closing) is sent again once the store is
    /// reached again; anything else is the answer.
    pub(crate) fn call<T>(&self, mut op: impl FnMut(&dyn Backend) -> Reply<T>) -> Result<T> {
        self.check_open()?;
        let mut first_failure = None;
        loop {
            let (generation, backend) = match &self.handle.reach {
                Reach::Held(backend) => {
                    return op(backend.as_ref()).map_err(|fault| match fault {
                        Fault::Failed(e) => e,
                        Fault::Resend(why) => {
                            internal(&format!("the engine asked to resend: {why}"))
                        }
                    });
                }
                Reach::Served { current, .. } => current.read().clone(),
            };
            match op(backend.as_ref()) {
                Ok(value) => return Ok(value),
                Err(Fault::Failed(e)) => return Err(e),
                Err(Fault::Resend(why)) => {
                    self.give_up_after(&mut first_failure)?;
                    tracing::debug!(reason = %why, "reaching the store again");
                    self.reach_again(generation)?;
                }
            }
        }
    }

    /// Holders that keep going away (each closing as soon as it is reached)
    /// are waited for as one would wait for the store's lock: up to
    /// [`Options::lock_timeout`] from the first time, then [`Error::Busy`].
    fn give_up_after(&self, first_failure: &mut Option<std::time::Instant>) -> Result<()> {
        let since = *first_failure.get_or_insert_with(std::time::Instant::now);
        let waited = since.elapsed();
        if waited > self.handle.options.lock_timeout {
            return Err(Error::Busy {
                path: self.handle.path.clone(),
                pid: None,
                waited,
            });
        }
        Ok(())
    }

    /// Reaches the store again after the backend of `generation` failed: takes
    /// it over or connects to its new holder. Threads that find it already
    /// replaced go on with the new one.
    fn reach_again(&self, generation: u64) -> Result<()> {
        let Reach::Served { current, switching } = &self.handle.reach else {
            return Ok(());
        };
        let _one_at_a_time = switching.lock();
        if current.read().0 != generation {
            return Ok(());
        }
        let reached = reach::reach(&self.handle.path, &self.handle.options)?;
        if reached.store_id != self.handle.id {
            let _ = reached.backend.close();
            return Err(Error::Disconnected {
                path: self.handle.path.clone(),
                pid: None,
                reason: format!(
                    "the directory now holds another store (id {}, this handle's is {}); it was \
                     replaced, so open it again",
                    reached.store_id, self.handle.id
                ),
            });
        }
        if reached.backend.is_holder() {
            tracing::info!(store = %self.handle.path.display(), "took the store over from its holder");
        }
        let old = std::mem::replace(&mut *current.write(), (generation + 1, reached.backend));
        let _ = old.1.close();
        Ok(())
    }

    /// The generation of the backend in use, for [`reach_again`](Self::reach_again).
    fn generation(&self) -> u64 {
        match &self.handle.reach {
            Reach::Held(_) => 0,
            Reach::Served { current, .. } => current.read().0,
        }
    }

    /// The options the store was opened with.
    pub(crate) fn options(&self) -> &Options {
        &self.handle.options
    }

    /// The store's directory.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = statelog::Store::open(dir.path().join("state"), Default::default())?;
    /// assert_eq!(store.path(), dir.path().join("state"));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.handle.path
    }

    /// The store's id: 32 hex digits chosen when it was created.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let id = store.id();
    /// assert_eq!(id.len(), 32);
    /// assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    pub fn id(&self) -> String {
        self.handle.id.clone()
    }

    /// The revision of the last commit readers can see.
    ///
    /// Through a holder this asks it; if that fails, the error is logged
    /// (`tracing`) and 0 returned: use [`snapshot`](Self::snapshot) and
    /// [`Snapshot::revision`] to see the error.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// assert_eq!(store.revision(), 0);
    /// store.put("jobs", "build", &"queued")?;
    /// assert_eq!(store.revision(), 1);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    pub fn revision(&self) -> u64 {
        match self.call(|b| b.revision()) {
            Ok(revision) => revision,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's revision");
                0
            }
        }
    }

    /// A consistent snapshot for reading; see [`Snapshot`].
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let snapshot = store.snapshot()?;
    /// store.put("jobs", "build", &"running")?;
    /// // The snapshot still reads the store as it was when it was taken.
    /// let old = snapshot.get::<String>("jobs", "build")?.unwrap();
    /// assert_eq!(old.value, "queued");
    /// assert_eq!(snapshot.revision()?, 1);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::Database`]; through a holder, the errors of
    /// reaching it ([`Error::Busy`] when it does not answer).
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::new(self.call(|b| b.snapshot())?))
    }

    /// A snapshot of the store as it was right after the commit at
    /// `revision`: the same records, metadata and values a snapshot taken
    /// then would have read, from the history the store still holds (see
    /// [`Stats::first_revision`]).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// store.put("jobs", "build", &"running")?;
    /// let then = store.snapshot_at_revision(1)?;
    /// assert_eq!(then.get::<String>("jobs", "build")?.unwrap().value, "queued");
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Compacted`] naming the first revision still available when
    /// `revision` is older; [`Error::InvalidOption`] for a revision after the
    /// current one; what [`snapshot`](Self::snapshot) returns.
    pub fn snapshot_at_revision(&self, revision: u64) -> Result<Snapshot> {
        Ok(Snapshot::new(self.call(|b| {
            b.snapshot_at(crate::access::past::At::Revision(revision))
        })?))
    }

    /// A snapshot of the store as the commits before `time` left it (the
    /// same rule as a restore's `--to-time`).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let now = statelog::Timestamp::now();
    /// let then = store.snapshot_at_time(now)?;
    /// assert_eq!(then.revision()?, 1);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`snapshot_at_revision`](Self::snapshot_at_revision).
    pub fn snapshot_at_time(&self, time: Timestamp) -> Result<Snapshot> {
        Ok(Snapshot::new(self.call(|b| {
            b.snapshot_at(crate::access::past::At::Time(time))
        })?))
    }

    /// Every version of a record the store still holds, oldest first: each
    /// commit that wrote or deleted it, with its revision, time and value.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// store.delete("jobs", "build")?;
    /// let versions = store.history("jobs", "build")?;
    /// assert_eq!(versions.len(), 2);
    /// assert_eq!(versions[0].revision, 1);
    /// assert!(versions[1].value.is_none()); // the delete
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidKey`]; the errors of reaching the store.
    pub fn history(&self, namespace: &str, key: &str) -> Result<Vec<crate::RecordVersion>> {
        let address = crate::key::encode(namespace, key)?;
        self.call(|b| b.history(&address))
    }

    /// Watches the store's commits (see [`Watch`](crate::Watch)): every
    /// acknowledged commit touching the watch's records, whole, in revision
    /// order, from its starting revision on. Works the same through a
    /// holder; the watcher ends with an error saying where to resume when
    /// the holder goes away.
    ///
    /// # Examples
    /// ```
    /// use statelog::{Watch, WatchEvent};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let mut watcher = store.watch(Watch::namespace("jobs").from(1))?;
    /// let Some(Ok(WatchEvent::Change(change))) = watcher.next() else { panic!() };
    /// assert_eq!(change.revision, 1);
    /// assert_eq!(change.events[0].key, "build");
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Compacted`] when the starting revision is older than the
    /// log holds (naming the first one it does); [`Error::InvalidKey`]; the
    /// errors of reaching the store.
    pub fn watch(&self, watch: crate::Watch) -> Result<crate::Watcher> {
        watch.scope.check()?;
        Ok(crate::Watcher::new(self.call(|b| b.watch(&watch))?))
    }

    /// Runs `f` on one consistent snapshot.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("accounts", "a", &10)?;
    /// store.put("accounts", "b", &5)?;
    /// let total = store.read(|snapshot| {
    ///     let mut total = 0;
    ///     for record in snapshot.list::<i64>("accounts", ..)? {
    ///         total += record?.1.value;
    ///     }
    ///     Ok(total)
    /// })?;
    /// assert_eq!(total, 15);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// What `f` returns, or what [`snapshot`](Self::snapshot) returns.
    pub fn read<R>(&self, f: impl FnOnce(&Snapshot) -> Result<R>) -> Result<R> {
        f(&self.snapshot()?)
    }

    /// Reads a record as `T`.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let job = store.get::<String>("jobs", "build")?.unwrap();
    /// assert_eq!((job.value.as_str(), job.version), ("queued", 1));
    /// assert!(store.get::<String>("jobs", "test")?.is_none());
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidKey`]; [`Error::Decode`] naming the record if its value is
    /// not a `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<Versioned<T>>> {
        let address = key::encode(namespace, key)?;
        let mut found = None;
        self.call(|b| {
            b.get(&address, &mut |meta, bytes| {
                found = Some(Versioned::new(value::decode(namespace, key, bytes)?, meta));
                Ok(())
            })
        })?;
        Ok(found)
    }

    /// Reads a record without decoding its value.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let raw = store.get_raw("jobs", "build")?.unwrap();
    /// assert_eq!(raw.value.decode::<String>().unwrap(), "queued");
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn get_raw(&self, namespace: &str, key: &str) -> Result<Option<Versioned<RawValue>>> {
        let address = key::encode(namespace, key)?;
        let mut found = None;
        self.call(|b| {
            b.get(&address, &mut |meta, bytes| {
                found = Some(Versioned::new(RawValue::from_trusted(bytes.to_vec()), meta));
                Ok(())
            })
        })?;
        Ok(found)
    }

    /// Streams a namespace's records in key order (all, a range, or a prefix;
    /// see [`KeyRange`]), from one snapshot.
    ///
    /// # Examples
    /// ```
    /// use statelog::KeyRange;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// for (key, state) in [("a1", "queued"), ("a2", "done"), ("b1", "queued")] {
    ///     store.put("jobs", key, &state)?;
    /// }
    /// let keys: Vec<String> = store
    ///     .list::<String>("jobs", KeyRange::prefix("a"))?
    ///     .map(|record| record.map(|(key, _)| key))
    ///     .collect::<statelog::Result<_>>()?;
    /// assert_eq!(keys, ["a1", "a2"]);
    /// # Ok::<(), statelog::Error>(())
    /// ```
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
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// for record in store.list_raw("jobs", ..)? {
    ///     let (key, raw) = record?;
    ///     assert_eq!(key, "build");
    ///     assert_eq!(raw.value.decode::<String>().unwrap(), "queued");
    /// }
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a bad namespace.
    pub fn list_raw(&self, namespace: &str, range: impl Into<KeyRange>) -> Result<List<RawValue>> {
        self.snapshot()?.list_raw(namespace, range)
    }

    /// The namespaces that hold records.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// store.put("users", "ann", &"admin")?;
    /// assert_eq!(store.namespaces()?, ["jobs", "users"]);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Database`].
    pub fn namespaces(&self) -> Result<Vec<String>> {
        self.snapshot()?.namespaces()
    }

    /// Writes a value, whatever the record's current version.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let first = store.put("jobs", "build", &"queued")?;
    /// let second = store.put("jobs", "build", &"running")?;
    /// assert_eq!((second.revision, second.version), (2, 2));
    /// assert!(first.changed && second.changed);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::Encode`], [`Error::TooLarge`],
    /// [`Error::Exhausted`] for a store or record whose counter is at its
    /// ceiling, and the I/O errors of a commit.
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
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let same = store.put_if_changed("jobs", "build", &"queued")?;
    /// assert!(!same.changed);
    /// assert_eq!((same.revision, same.version), (1, 1));
    /// # Ok::<(), statelog::Error>(())
    /// ```
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
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let value = statelog::RawValue::from_value(&[1, 2, 3]).unwrap();
    /// store.put_raw("lists", "small", value)?;
    /// assert_eq!(store.get::<Vec<u8>>("lists", "small")?.unwrap().value, [1, 2, 3]);
    /// # Ok::<(), statelog::Error>(())
    /// ```
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
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.create("users", "ann", &"admin")?;
    /// let again = store.create("users", "ann", &"guest");
    /// assert!(matches!(again, Err(statelog::Error::Conflict { expected: 0, actual: 1, .. })));
    /// # Ok::<(), statelog::Error>(())
    /// ```
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
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let first = store.put("jobs", "build", &"queued")?;
    /// store.compare_and_swap("jobs", "build", first.version, &"running")?;
    /// // A second writer that read the same version loses.
    /// let stale = store.compare_and_swap("jobs", "build", first.version, &"failed");
    /// assert!(matches!(stale, Err(statelog::Error::Conflict { expected: 1, actual: 2, .. })));
    /// # Ok::<(), statelog::Error>(())
    /// ```
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
        let kind = WriteKind::Put {
            value,
            skip_unchanged,
        };
        let outcome = self.commit(&Arc::new(Request::one(address, kind, expected, None)))?;
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
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let deleted = store.delete("jobs", "build")?.unwrap();
    /// assert_eq!((deleted.revision, deleted.version), (2, 1));
    /// assert!(store.delete("jobs", "build")?.is_none());
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and the I/O errors of a commit.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<Option<Deleted>> {
        self.delete_checked(namespace, key, None)
    }

    /// Removes a record only if it has version `expected`.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// store.put("jobs", "build", &"running")?;
    /// assert!(store.compare_and_delete("jobs", "build", 1).is_err());
    /// store.compare_and_delete("jobs", "build", 2)?;
    /// assert!(store.get::<String>("jobs", "build")?.is_none());
    /// # Ok::<(), statelog::Error>(())
    /// ```
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
        let request = Request::one(address, WriteKind::Delete, expected, None);
        let outcome = self.commit(&Arc::new(request))?;
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
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let count = store.update("counters", "visits", |old: Option<u64>| -> statelog::Result<u64> {
    ///     Ok(old.unwrap_or(0) + 1)
    /// })?;
    /// assert_eq!((count.value, count.version), (1, 1));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// What `f` returns; [`Error::Conflict`] after the last attempt;
    /// [`Error::Decode`] if the stored value is not a `T`; as [`put`](Self::put).
    ///
    /// [`RetryPolicy::max_attempts`]: crate::RetryPolicy::max_attempts
    pub fn update<T, E, F>(&self, namespace: &str, key: &str, f: F) -> Result<Versioned<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnMut(Option<T>) -> Result<T, E>,
    {
        self.update_keyed(namespace, key, None, f)
            .map(|(record, _)| record)
    }

    /// `update`, with an idempotency key for the call when `keyed` (see
    /// `update_with_key`); true when the result is a replay.
    pub(crate) fn update_keyed<T, E, F>(
        &self,
        namespace: &str,
        key: &str,
        keyed: Option<Idempotency>,
        mut f: F,
    ) -> Result<(Versioned<T>, bool), E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnMut(Option<T>) -> Result<T, E>,
    {
        let address = key::encode(namespace, key)?;
        // Same-key updates of this process queue here rather than collide.
        let wait = self
            .handle
            .options
            .lock_timeout
            .max(Duration::from_secs(10));
        let _turn = self.handle.keylocks.turn(&address, wait);
        self.with_retries(|| {
            // A known key: the first run's result, without running `f`
            // (checked before each run: a retried closure would read what
            // the first run wrote and compute something else).
            if let Some(keyed) = &keyed
                && let Some(kept) = self.known_call(keyed)?
            {
                return Ok(Attempt::Done((kept.updated(namespace, key)?, true)));
            }
            let current: Option<Versioned<T>> = self.get(namespace, key)?;
            let expected = current.as_ref().map_or(0, |c| c.version);
            let modified = current.as_ref().map(|c| c.mod_revision);
            let next = f(current.map(|c| c.value))?;
            let bytes = value::encode(namespace, key, &next)?;
            let idempotency = keyed.as_ref().map(|k| Idempotency {
                result: Some(bytes.clone()),
                ..k.clone()
            });
            let kind = WriteKind::Put {
                value: bytes,
                skip_unchanged: false,
            };
            let mut request = Request::one(address.clone(), kind, Some(expected), modified);
            request.coord.idempotency = idempotency;
            match self.commit(&Arc::new(request)) {
                Ok(outcome) if outcome.replayed => {
                    // Another caller with the key committed first.
                    let kept = self.kept_call(keyed.as_ref())?;
                    Ok(Attempt::Done((kept.updated(namespace, key)?, true)))
                }
                Ok(outcome) => match outcome.writes.first() {
                    Some(WriteOutcome::Put { meta, .. }) => {
                        Ok(Attempt::Done((Versioned::new(next, *meta), false)))
                    }
                    _ => Err(internal("an update produced no put outcome").into()),
                },
                Err(e @ Error::Conflict { .. }) => Ok(Attempt::Conflict(e)),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Runs `f` as one all-or-nothing transaction: its reads come from one
    /// snapshot, its writes apply together at one new revision, and only if every
    /// record it read is unchanged at commit. If one changed, `f` runs again (up
    /// to the retry policy's attempts). An error returned by `f` aborts without
    /// writing anything.
    ///
    /// # Examples
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
    pub fn transaction<T, E, F>(&self, f: F) -> Result<TxOutcome<T>, E>
    where
        E: From<Error>,
        F: FnMut(&mut Tx) -> Result<T, E>,
    {
        self.transaction_keyed(None, f)
    }

    /// `transaction`, with an idempotency key for the call when `keyed` (see
    /// `transaction_with_key`).
    pub(crate) fn transaction_keyed<T, E, F>(
        &self,
        keyed: Option<KeyedCall<'_, T>>,
        mut f: F,
    ) -> Result<TxOutcome<T>, E>
    where
        E: From<Error>,
        F: FnMut(&mut Tx) -> Result<T, E>,
    {
        let mut first_loss = None;
        self.with_retries(|| {
            if let Some(keyed) = &keyed
                && let Some(kept) = self.known_call(&keyed.idempotency)?
            {
                return Ok(Attempt::Done(keyed.replay(kept)?));
            }
            let generation = self.generation();
            let mut tx = Tx::new(self.snapshot()?);
            let result = f(&mut tx);
            if tx.snapshot().is_lost() {
                // The holder went away under the snapshot: nothing was
                // committed; start again from a snapshot of whoever holds the
                // store now.
                self.give_up_after(&mut first_loss)?;
                self.reach_again(generation)?;
                return Ok(Attempt::Again);
            }
            let value = result?;
            if tx.is_read_only() {
                return Ok(Attempt::Done(TxOutcome {
                    value,
                    revision: None,
                    replayed: false,
                }));
            }
            // The snapshot goes before the commit (through a holder, its
            // connection is then free for the commit).
            let mut request = tx.into_request();
            if let Some(keyed) = &keyed {
                request.coord.idempotency = Some(Idempotency {
                    result: Some((keyed.encode)(&value)?),
                    ..keyed.idempotency.clone()
                });
            }
            let request = Arc::new(request);
            match self.commit(&request) {
                Ok(outcome) if outcome.replayed => {
                    // Another caller with the key committed first.
                    let idempotency = keyed.as_ref().map(|k| &k.idempotency);
                    let kept = self.kept_call(idempotency)?;
                    match &keyed {
                        Some(keyed) => Ok(Attempt::Done(keyed.replay(kept)?)),
                        None => Err(internal("a transaction without a key was replayed").into()),
                    }
                }
                Ok(outcome) => Ok(Attempt::Done(TxOutcome {
                    value,
                    revision: outcome.revision,
                    replayed: false,
                })),
                Err(e @ Error::Conflict { .. }) => Ok(Attempt::Conflict(e)),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Runs `attempt` until it is done, pausing a random, growing time after
    /// each conflict; after the retry policy's last attempt, the conflict
    /// (with the number of attempts) is the answer.
    fn with_retries<T, E: From<Error>>(
        &self,
        mut attempt: impl FnMut() -> Result<Attempt<T>, E>,
    ) -> Result<T, E> {
        let max_attempts = self.handle.options.retry.max_attempts;
        let mut attempts = 1;
        loop {
            match attempt()? {
                Attempt::Done(value) => return Ok(value),
                Attempt::Again => continue,
                Attempt::Conflict(mut conflict) => {
                    if attempts >= max_attempts {
                        if let Error::Conflict { attempts: n, .. } = &mut conflict {
                            *n = attempts;
                        }
                        return Err(conflict.into());
                    }
                }
            }
            self.retry_pause(attempts);
            attempts += 1;
        }
    }

    fn retry_pause(&self, attempt: u32) {
        self.handle.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.handle.options.retry.backoff(attempt));
    }

    pub(crate) fn commit(&self, request: &Arc<Request>) -> Result<Outcome> {
        let result = self.call(|b| b.commit(request));
        if let Err(Error::Conflict { .. }) = &result {
            self.handle.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Loads records into an empty store as its first commit, keeping their
    /// versions and revisions; the store's revision becomes `revision`. This is
    /// how a snapshot is restored exactly. All records commit or none do.
    ///
    /// # Examples
    /// ```
    /// use statelog::{Meta, RawValue, RestoreRecord, Timestamp};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let time = Timestamp::now();
    /// let record = RestoreRecord {
    ///     namespace: "jobs".into(),
    ///     key: "build".into(),
    ///     meta: Meta { version: 3, create_revision: 7, mod_revision: 9, updated_at: time },
    ///     value: RawValue::from_value(&"done").unwrap(),
    /// };
    /// store.restore_records(9, time, [record])?;
    /// assert_eq!(store.revision(), 9);
    /// assert_eq!(store.get::<String>("jobs", "build")?.unwrap().version, 3);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotEmpty`] if the store has any commit; [`Error::InvalidOption`]
    /// for metadata that does not fit `revision`, or a revision or version
    /// above [`MAX_IMPORTED_REVISION`](crate::MAX_IMPORTED_REVISION) (the store
    /// must be able to count on from it); [`Error::InvalidKey`].
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
        load.sort_and_check(false)?;
        self.call(|b| b.restore(&load))
    }

    /// Makes the state database durable at the current revision now, so that a
    /// restart has no log to replay. Runs on its own by the checkpoint policy.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// store.checkpoint()?;
    /// assert_eq!(store.stats().checkpoint_revision, 1);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Poisoned`], [`Error::ReadOnly`], [`Error::Database`],
    /// [`Error::Io`].
    pub fn checkpoint(&self) -> Result<()> {
        self.call(|b| b.checkpoint())
    }

    /// Backs the store up into the directory `dest`, online: writers go on
    /// meanwhile (they wait at most for one log sync).
    ///
    /// The first run into a directory writes a base (one consistent snapshot
    /// of the state, as a segment file holding one base commit) and a
    /// `MANIFEST`. Later runs into the same directory are incremental: they
    /// copy only the log written since (new segments, and the new end of the
    /// last one), so the backup holds every revision from its base on and
    /// `restore` can stop at any of them. See `DESIGN.md`, "Backups, restore,
    /// check and repair".
    ///
    /// Through a holder (another process holds the store), the holder writes
    /// the backup, so only a process of the holder's own user may ask for one
    /// ([`Error::Refused`] otherwise); `dest` is taken relative to this
    /// process's working directory.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = statelog::Store::open(dir.path().join("state"), Default::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let first = store.backup(dir.path().join("backup"))?;
    /// store.put("jobs", "build", &"running")?;
    /// let next = store.backup(dir.path().join("backup"))?;
    /// assert!(first.full && !next.full);
    /// assert_eq!(next.revision, 2);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidBackup`] if `dest` is a backup of another store, was
    /// damaged, or holds a history that diverged from this store's, or if the
    /// store no longer holds the log the backup needs (log retention removed
    /// it; back up into a new directory); [`Error::TargetNotEmpty`] if `dest`
    /// holds other files; [`Error::Corrupt`] if the log being copied is
    /// damaged; [`Error::Io`], [`Error::Database`]; [`Error::Refused`].
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_with(dest, &BackupOptions::default())
    }

    /// [`backup`](Self::backup) with options (a progress callback).
    ///
    /// # Examples
    /// ```
    /// use statelog::backup::BackupOptions;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let options = BackupOptions::new().progress(|p| tracing::debug!(copied = p.bytes_copied, "backing up"));
    /// let report = store.backup_with(dir.path().join("backup"), &options)?;
    /// assert!(report.full);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`backup`](Self::backup).
    pub fn backup_with(
        &self,
        dest: impl AsRef<Path>,
        options: &BackupOptions,
    ) -> Result<BackupReport> {
        let dest = dest.as_ref();
        self.call(|b| b.backup(dest, options))
    }

    /// What opening had to do to recover (nothing after a clean close, and
    /// nothing for a handle that reached the store through its holder).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// // A store closed cleanly has nothing to recover.
    /// assert_eq!(store.recovery().replayed, 0);
    /// assert!(store.recovery().cut.is_none());
    /// # Ok::<(), statelog::Error>(())
    /// ```
    pub fn recovery(&self) -> &Recovery {
        &self.handle.recovery
    }

    /// Why the store is open read-only, if it is: its file system took no
    /// writes when it was opened (full, over quota, mounted read-only). Reads,
    /// exports and backups work; every change fails with
    /// [`Error::ReadOnly`]. Open it again once the disk takes writes. Through a
    /// holder: why the holder has it read-only (as it said when this handle
    /// connected).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// assert!(store.read_only().is_none());
    /// # Ok::<(), statelog::Error>(())
    /// ```
    pub fn read_only(&self) -> Option<String> {
        match &self.handle.reach {
            Reach::Held(backend) => backend.read_only(),
            Reach::Served { current, .. } => current.read().1.read_only(),
        }
    }

    /// The store's counters: those of the process holding it (the same for
    /// every process it serves) and this handle's conflicts and retries.
    ///
    /// Through a holder this asks it; if that fails, the error is logged
    /// (`tracing`) and only this handle's counters are filled in.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let stats = store.stats();
    /// assert_eq!((stats.revision, stats.commits), (1, 1));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = match self.call(|b| b.stats()) {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store's counters");
                Stats::default()
            }
        };
        stats.conflicts = self.handle.conflicts.load(Ordering::Relaxed);
        stats.retries = self.handle.retries.load(Ordering::Relaxed);
        stats
    }

    /// True when this process holds the store (it opened the store's files);
    /// false when the handle works through another process that holds it.
    /// A handle may take the store over when its holder goes away.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// // The first process to open a store holds it.
    /// assert!(store.is_holder());
    /// # Ok::<(), statelog::Error>(())
    /// ```
    pub fn is_holder(&self) -> bool {
        match &self.handle.reach {
            Reach::Held(backend) => backend.is_holder(),
            Reach::Served { current, .. } => current.read().1.is_holder(),
        }
    }

    /// Closes the handle and refuses further use through any clone of it.
    /// In the process holding the store: stops serving other processes
    /// (requests in flight finish; the others are refused unexecuted, and
    /// their processes carry on with whoever holds the store next) and runs a
    /// final checkpoint; files and the lock are released when the last clone
    /// is dropped (at once, if this was the only one). Through a holder: closes
    /// the connections. Dropping every clone without calling `close` closes
    /// too, but cannot report an error.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let other = store.clone();
    /// store.close()?;
    /// assert!(matches!(other.put("jobs", "build", &"queued"), Err(statelog::Error::Closed)));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// The final checkpoint's error, if any; nothing acknowledged is lost by it.
    pub fn close(self) -> Result<()> {
        self.handle.shutdown()
    }
}

impl Handle {
    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        match &self.reach {
            Reach::Held(backend) => backend.close(),
            Reach::Served { current, .. } => current.read().1.close(),
        }
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

/// What one attempt of `update` or `transaction` came to.
enum Attempt<T> {
    /// Committed (or only read): the answer.
    Done(T),
    /// An [`Error::Conflict`]: try again, unless that was the last attempt.
    Conflict(Error),
    /// Nothing was done and no attempt is used up (the holder went away
    /// under the snapshot): try again at once.
    Again,
}
