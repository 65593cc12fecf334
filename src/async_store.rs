//! [`AsyncStore`]: the store's operations as futures, for tokio (feature
//! `tokio`).
//!
//! The store is blocking by design: a commit waits for its disk sync, an open
//! waits for the store's lock, `update` and `transaction` may pause between
//! retries. Each method here runs the blocking call on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]), so the runtime's worker threads never
//! wait for the disk or for another writer, and concurrent calls still share
//! syncs through the group commit.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use statelog::{AsyncStore, Options};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let store = AsyncStore::open(dir.path().join("state"), Options::default()).await?;
//! store.put("tasks", "t1", serde_json::json!({"status": "queued"})).await?;
//! let task = store
//!     .update("tasks", "t1", |old: Option<serde_json::Value>| -> statelog::Result<_> {
//!         let mut task = old.unwrap_or_default();
//!         task["status"] = "running".into();
//!         Ok(task)
//!     })
//!     .await?;
//! assert_eq!(task.version, 2);
//! store.close().await?;
//! # Ok::<(), statelog::Error>(())
//! # }).unwrap();
//! ```
//!
//! A future dropped before it completes does not stop its call: the blocking
//! part runs to its end, so a cancelled `put` may still commit. A watch is a
//! [`Stream`] ([`AsyncWatcher`]): dropping it ends the watch.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backup::BackupReport;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::store::{Committed, Deleted, KeyRange, Snapshot, Stats, Store, Tx, TxOutcome};
use crate::value::{RawValue, Versioned};
use crate::watch::WatchEvent;

/// An open store whose methods are futures that never block the runtime.
///
/// Cheap to clone (clones share the store, as [`Store`] clones do). Closures
/// given to [`update`](Self::update) and [`transaction`](Self::transaction)
/// run on the blocking pool, possibly several times (once per conflict).
#[derive(Clone, Debug)]
pub struct AsyncStore {
    store: Store,
}

impl From<Store> for AsyncStore {
    fn from(store: Store) -> AsyncStore {
        AsyncStore { store }
    }
}

/// Runs `f` on the blocking pool. A panic in `f` is resumed in the caller.
async fn blocking<R, E, F>(path: &Path, f: F) -> std::result::Result<R, E>
where
    F: FnOnce() -> std::result::Result<R, E> + Send + 'static,
    R: Send + 'static,
    E: From<Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Io {
            op: "run a blocking call on",
            path: path.to_owned(),
            source: std::io::Error::other("the tokio runtime is shutting down"),
        }
        .into()),
    }
}

impl AsyncStore {
    /// Opens (or creates) the store in `path`; see [`Store::open`]. Waiting
    /// for another handle's lock happens on the blocking pool.
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use statelog::{AsyncStore, Options};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = AsyncStore::open(dir.path().join("state"), Options::default()).await?;
    /// assert_eq!(store.revision(), 0);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn open(path: impl AsRef<Path>, options: Options) -> Result<AsyncStore> {
        let path = path.as_ref().to_owned();
        let at = path.clone();
        blocking(&at, move || Store::open(path, options))
            .await
            .map(AsyncStore::from)
    }

    /// The blocking handle, for code that runs on a thread of its own.
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// let blocking = store.store().clone();
    /// let revision = std::thread::spawn(move || blocking.revision()).join().unwrap();
    /// assert_eq!(revision, 1);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `f` with the blocking handle on the blocking pool: for the
    /// operations without an async method here (exports, imports, restores,
    /// maintenance).
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path(), Default::default()).await?;
    /// use statelog::snapshot::{self, ExportOptions, Format};
    /// let json = store
    ///     .run(|store| {
    ///         let mut out = Vec::new();
    ///         snapshot::export(store, &mut out, &ExportOptions::new(Format::Json))?;
    ///         Ok(out)
    ///     })
    ///     .await?;
    /// assert!(json.starts_with(b"{"));
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// What `f` returns.
    pub async fn run<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Store) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.store.clone();
        blocking(self.store.path(), move || f(&store)).await
    }

    /// The revision of the last commit readers can see (no I/O: it is not a
    /// future).
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// assert_eq!(store.revision(), 1);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn revision(&self) -> u64 {
        self.store.revision()
    }

    /// Reads a record as `T`; see [`Store::get`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// let job = store.get::<String>("jobs", "build").await?.unwrap();
    /// assert_eq!((job.value.as_str(), job.version), ("queued", 1));
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::get`].
    pub async fn get<T>(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<Option<Versioned<T>>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.get(&namespace, &key)).await
    }

    /// Reads a record without decoding its value; see [`Store::get_raw`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// let raw = store.get_raw("jobs", "build").await?.unwrap();
    /// assert_eq!(raw.value.decode::<String>().unwrap(), "queued");
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::get_raw`].
    pub async fn get_raw(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<Option<Versioned<RawValue>>> {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.get_raw(&namespace, &key)).await
    }

    /// Collects a namespace's records in key order, from one snapshot; see
    /// [`Store::list`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "a1", "queued").await?;
    /// store.put("jobs", "b1", "done").await?;
    /// let jobs = store.list::<String>("jobs", statelog::KeyRange::prefix("a")).await?;
    /// assert_eq!(jobs.len(), 1);
    /// assert_eq!(jobs[0].0, "a1");
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::list`], and [`Error::Decode`] for a value that is not a `T`.
    pub async fn list<T>(
        &self,
        namespace: impl Into<String>,
        range: impl Into<KeyRange>,
    ) -> Result<Vec<(String, Versioned<T>)>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let (namespace, range) = (namespace.into(), range.into());
        self.run(move |s| s.list(&namespace, range)?.collect())
            .await
    }

    /// Runs `f` on one consistent snapshot; see [`Store::read`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("accounts", "a", 10).await?;
    /// let a = store
    ///     .read(|snapshot| Ok(snapshot.get::<i64>("accounts", "a")?.map_or(0, |r| r.value)))
    ///     .await?;
    /// assert_eq!(a, 10);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// What `f` returns, or what [`Store::snapshot`] returns.
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Snapshot) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.run(move |s| s.read(f)).await
    }

    /// The namespaces that hold records.
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// assert_eq!(store.namespaces().await?, ["jobs"]);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::namespaces`].
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        self.run(|s| s.namespaces()).await
    }

    /// Writes a value whatever the record's version; see [`Store::put`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// let committed = store.put("jobs", "build", "queued").await?;
    /// assert_eq!((committed.revision, committed.version), (1, 1));
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn put<T>(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        value: T,
    ) -> Result<Committed>
    where
        T: Serialize + Send + 'static,
    {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.put(&namespace, &key, &value)).await
    }

    /// Writes a value unless it equals the stored one; see
    /// [`Store::put_if_changed`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// let same = store.put_if_changed("jobs", "build", "queued").await?;
    /// assert!(!same.changed);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn put_if_changed<T>(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        value: T,
    ) -> Result<Committed>
    where
        T: Serialize + Send + 'static,
    {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.put_if_changed(&namespace, &key, &value))
            .await
    }

    /// Writes a value given as MessagePack; see [`Store::put_raw`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// let value = statelog::RawValue::from_value(&[1, 2, 3]).unwrap();
    /// store.put_raw("lists", "small", value).await?;
    /// assert_eq!(store.get::<Vec<u8>>("lists", "small").await?.unwrap().value, [1, 2, 3]);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::put`].
    pub async fn put_raw(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        value: RawValue,
    ) -> Result<Committed> {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.put_raw(&namespace, &key, value)).await
    }

    /// Creates a record that must not exist yet; see [`Store::create`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.create("users", "ann", "admin").await?;
    /// assert!(store.create("users", "ann", "guest").await.is_err());
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::create`].
    pub async fn create<T>(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        value: T,
    ) -> Result<Committed>
    where
        T: Serialize + Send + 'static,
    {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.create(&namespace, &key, &value)).await
    }

    /// Writes a value only if the record has version `expected`; see
    /// [`Store::compare_and_swap`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// let first = store.put("jobs", "build", "queued").await?;
    /// store.compare_and_swap("jobs", "build", first.version, "running").await?;
    /// let stale = store.compare_and_swap("jobs", "build", first.version, "failed").await;
    /// assert!(matches!(stale, Err(statelog::Error::Conflict { .. })));
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::compare_and_swap`].
    pub async fn compare_and_swap<T>(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        expected: u64,
        value: T,
    ) -> Result<Committed>
    where
        T: Serialize + Send + 'static,
    {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.compare_and_swap(&namespace, &key, expected, &value))
            .await
    }

    /// Removes a record; see [`Store::delete`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// assert_eq!(store.delete("jobs", "build").await?.unwrap().version, 1);
    /// assert!(store.delete("jobs", "build").await?.is_none());
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::delete`].
    pub async fn delete(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<Option<Deleted>> {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.delete(&namespace, &key)).await
    }

    /// Removes a record only if it has version `expected`; see
    /// [`Store::compare_and_delete`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// assert!(store.compare_and_delete("jobs", "build", 2).await.is_err());
    /// store.compare_and_delete("jobs", "build", 1).await?;
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::compare_and_delete`].
    pub async fn compare_and_delete(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        expected: u64,
    ) -> Result<Deleted> {
        let (namespace, key) = (namespace.into(), key.into());
        self.run(move |s| s.compare_and_delete(&namespace, &key, expected))
            .await
    }

    /// Read, modify, write without losing updates; see [`Store::update`].
    /// `f` runs on the blocking pool, once per attempt.
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// let count = store
    ///     .update("counters", "visits", |old: Option<u64>| -> statelog::Result<u64> {
    ///         Ok(old.unwrap_or(0) + 1)
    ///     })
    ///     .await?;
    /// assert_eq!(count.value, 1);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::update`].
    pub async fn update<T, E, F>(
        &self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        f: F,
    ) -> std::result::Result<Versioned<T>, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnMut(Option<T>) -> std::result::Result<T, E> + Send + 'static,
    {
        let (namespace, key) = (namespace.into(), key.into());
        let store = self.store.clone();
        blocking(self.store.path(), move || store.update(&namespace, &key, f)).await
    }

    /// Runs `f` as one all-or-nothing transaction, re-run on conflict; see
    /// [`Store::transaction`]. `f` runs on the blocking pool.
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("accounts", "a", 10).await?;
    /// let moved = store
    ///     .transaction(|tx| {
    ///         let a: i64 = tx.get("accounts", "a")?.map_or(0, |r| r.value);
    ///         tx.put("accounts", "a", &(a - 3))?;
    ///         tx.put("accounts", "b", &3)?;
    ///         Ok::<_, statelog::Error>(3)
    ///     })
    ///     .await?;
    /// assert_eq!(moved.revision, Some(2));
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::transaction`].
    pub async fn transaction<T, E, F>(&self, f: F) -> std::result::Result<TxOutcome<T>, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnMut(&mut Tx) -> std::result::Result<T, E> + Send + 'static,
    {
        let store = self.store.clone();
        blocking(self.store.path(), move || store.transaction(f)).await
    }

    /// An online backup into `dest`; see [`Store::backup`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// let report = store.backup(dir.path().join("backup")).await?;
    /// assert!(report.full);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::backup`].
    pub async fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        let dest = dest.as_ref().to_owned();
        self.run(move |s| s.backup(dest)).await
    }

    /// Makes the state durable now; see [`Store::checkpoint`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// store.checkpoint().await?;
    /// assert_eq!(store.stats().await?.checkpoint_revision, 1);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::checkpoint`].
    pub async fn checkpoint(&self) -> Result<()> {
        self.run(|s| s.checkpoint()).await
    }

    /// Counters of this handle; see [`Store::stats`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.put("jobs", "build", "queued").await?;
    /// assert_eq!(store.stats().await?.commits, 1);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// Only if the runtime is shutting down.
    pub async fn stats(&self) -> Result<Stats> {
        self.run(|s| Ok(s.stats())).await
    }

    /// Watches the store's commits, as a [`Stream`]; see [`Store::watch`].
    /// Its waits run on the blocking pool; dropping it ends the watch.
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path(), Default::default()).await?;
    /// use statelog::{Watch, WatchEvent};
    /// store.put("jobs", "build", &"done").await?;
    /// let mut watcher = store.watch(Watch::all().from(1)).await?;
    /// let Some(Ok(WatchEvent::Change(change))) = watcher.next().await else { panic!() };
    /// assert_eq!(change.revision, 1);
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::watch`].
    pub async fn watch(&self, mut watch: crate::Watch) -> Result<AsyncWatcher> {
        let progress = watch.progress;
        watch.progress = Some(progress.map_or(STOP_CHECK, |every| every.min(STOP_CHECK)));
        let watcher = self.run(move |s| s.watch(watch)).await?;
        Ok(AsyncWatcher::new(
            self.store.path().to_owned(),
            watcher,
            progress,
        ))
    }

    /// Closes the store; see [`Store::close`].
    ///
    /// # Examples
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::AsyncStore::open(dir.path().join("state"), Default::default()).await?;
    /// store.close().await?;
    /// # Ok::<(), statelog::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Store::close`].
    pub async fn close(self) -> Result<()> {
        let path = self.store.path().to_owned();
        blocking(&path, move || self.store.close()).await
    }
}

/// How often a waiting [`AsyncWatcher`] looks whether it was dropped: the
/// watch's own progress ticks wake its blocking wait, so a dropped stream
/// lets go of its watch within this time even if nothing is committed.
const STOP_CHECK: Duration = Duration::from_millis(250);

/// A [`Watcher`](crate::Watcher) for async code: a [`Stream`] of the watch's
/// events whose waits run on tokio's blocking pool, never on a runtime
/// thread. Dropping it ends the watch (its blocking wait returns within a
/// quarter of a second, even when nothing is committed).
///
/// One event is waited for at a time, only while the stream is polled: a
/// consumer that falls behind is cancelled as a blocking [`Watcher`](crate::Watcher)
/// is ([`Error::WatchCancelled`], saying where to resume).
///
/// # Examples
/// ```
/// # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = statelog::AsyncStore::open(dir.path(), Default::default()).await?;
/// use futures_core::Stream;
/// use statelog::{Watch, WatchEvent};
///
/// fn is_stream<S: Stream<Item = statelog::Result<WatchEvent>> + Send + Unpin>(_: &S) {}
///
/// let mut watcher = store.watch(Watch::namespace("jobs")).await?;
/// is_stream(&watcher);
/// let writer = store.clone();
/// tokio::spawn(async move { writer.put("jobs", "build", &"done").await });
/// let Some(Ok(WatchEvent::Change(change))) = watcher.next().await else { panic!() };
/// assert_eq!(change.events[0].key, "build");
/// drop(watcher); // ends the watch
/// # Ok::<(), statelog::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct AsyncWatcher {
    path: PathBuf,
    state: State,
    /// Set when the stream is dropped: the blocking wait then ends.
    stop: Arc<AtomicBool>,
}

#[derive(Debug)]
enum State {
    /// Between events: the watcher, waiting for the next poll.
    Idle(Pump),
    /// A wait running on the blocking pool.
    Waiting(tokio::task::JoinHandle<(Pump, Option<Result<WatchEvent>>)>),
    /// The watch ended.
    Done,
}

/// The blocking watcher, and the progress its caller asked for.
#[derive(Debug)]
struct Pump {
    watcher: crate::Watcher,
    /// How often the caller wants [`WatchEvent::Progress`] (`None`: never).
    progress: Option<Duration>,
    /// When the caller was last given an event.
    last: Instant,
}

impl Pump {
    /// Waits for the next event the caller wants, or for `stop`.
    fn wait(mut self, stop: &AtomicBool) -> (Pump, Option<Result<WatchEvent>>) {
        loop {
            let item = self.watcher.next();
            if stop.load(Ordering::Acquire) {
                return (self, None);
            }
            if let Some(Ok(WatchEvent::Progress { .. })) = item {
                // The ticks of STOP_CHECK: passed on only as often as asked.
                match self.progress {
                    Some(every) if self.last.elapsed() >= every => {}
                    _ => continue,
                }
            }
            self.last = Instant::now();
            return (self, item);
        }
    }
}

impl AsyncWatcher {
    fn new(path: PathBuf, watcher: crate::Watcher, progress: Option<Duration>) -> AsyncWatcher {
        AsyncWatcher {
            path,
            state: State::Idle(Pump {
                watcher,
                progress,
                last: Instant::now(),
            }),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next event; `None` once the watch ended (after its error). The
    /// same as the [`Stream`]'s `next`, without a `StreamExt` import.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for AsyncWatcher {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.state, State::Done) {
                State::Done => return Poll::Ready(None),
                State::Idle(pump) => {
                    let stop = Arc::clone(&this.stop);
                    let wait = tokio::task::spawn_blocking(move || pump.wait(&stop));
                    this.state = State::Waiting(wait);
                }
                State::Waiting(mut wait) => {
                    let (pump, item) = match Pin::new(&mut wait).poll(cx) {
                        Poll::Pending => {
                            this.state = State::Waiting(wait);
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(done)) => done,
                        Poll::Ready(Err(e)) if e.is_panic() => {
                            std::panic::resume_unwind(e.into_panic())
                        }
                        Poll::Ready(Err(_)) => {
                            return Poll::Ready(Some(Err(Error::Io {
                                op: "watch",
                                path: this.path.clone(),
                                source: std::io::Error::other("the tokio runtime is shutting down"),
                            })));
                        }
                    };
                    if let Some(Ok(_)) = item {
                        this.state = State::Idle(pump);
                    }
                    return Poll::Ready(item);
                }
            }
        }
    }
}

impl Drop for AsyncWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
