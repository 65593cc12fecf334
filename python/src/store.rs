//! `statelog.Store`: the store's record operations, each run without the GIL.

use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rmpv::Value;
use statelog::snapshot::{self, ImportOptions};
use statelog::{Durability, Error, KeyRange, Options, RetryPolicy, Store};

use crate::atfork;
use crate::convert;
use crate::errors::{self, Fork};
use crate::files;
use crate::keylocks::KeyLocks;
use crate::tx::{self, CallError};
use crate::types::{Committed, Deleted, Record, RecordIterator};

/// An open store, safe to share between threads.
///
/// Every call that touches the store runs without the GIL, so other Python
/// threads run meanwhile and concurrent commits share one disk sync.
#[pyclass(frozen, module = "statelog", name = "Store")]
pub(crate) struct PyStore {
    /// `None` once closed.
    store: Mutex<Option<Store>>,
    path: PathBuf,
    fork: Fork,
    /// Updates of one key from this handle's threads take turns.
    keylocks: KeyLocks,
}

impl Drop for PyStore {
    fn drop(&mut self) {
        if self.fork.is_child() {
            // The handle belongs to the parent (its files, its lock, its
            // background thread, which does not exist here): closing it from
            // the child would write into the parent's store.
            if let Some(store) = self.store.get_mut().take() {
                std::mem::forget(store);
            }
        } else if self.store.get_mut().is_some() {
            // Dropped open: the store closes with it.
            Python::attach(|py| atfork::closed(py, &self.path));
        }
    }
}

/// Runs a store call without the GIL and converts its error.
pub(crate) fn run<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> statelog::Result<T> + Send,
) -> PyResult<T> {
    py.detach(f).map_err(|e| errors::to_py(py, e))
}

fn seconds(name: &'static str, value: f64) -> statelog::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| Error::InvalidOption {
        name,
        reason: format!("{value} is not a number of seconds from 0 up"),
    })
}

/// A key range from the keyword arguments of `list`.
pub(crate) fn key_range(
    prefix: Option<String>,
    start: Option<String>,
    end: Option<String>,
) -> statelog::Result<KeyRange> {
    use std::ops::Bound;
    match (prefix, start, end) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(Error::InvalidOption {
            name: "prefix",
            reason: "give either a prefix or start/end, not both".to_owned(),
        }),
        (Some(prefix), None, None) => Ok(KeyRange::prefix(prefix)),
        (None, start, end) => Ok(KeyRange::range::<String>((
            start.map_or(Bound::Unbounded, Bound::Included),
            end.map_or(Bound::Unbounded, Bound::Excluded),
        ))),
    }
}

impl PyStore {
    /// A handle for one call: refused after a fork or a close.
    pub(crate) fn handle(&self, py: Python<'_>) -> PyResult<Store> {
        self.fork.check()?;
        self.store
            .lock()
            .clone()
            .ok_or_else(|| errors::to_py(py, Error::Closed))
    }
}

fn encode(namespace: &str, key: &str, value: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert::to_value(value).map_err(|e| errors::encode(namespace, key, &e))
}

#[pymethods]
impl PyStore {
    /// Opens the store in directory `path`, creating it if missing (unless
    /// `create=False`). While another process holds it and serves it, works
    /// through that process (unless `remote=False`); else waits up to
    /// `lock_timeout` seconds for it, then raises `BusyError`. Unless
    /// `serve=False`, serves the others while this handle holds the store.
    #[new]
    #[pyo3(signature = (
        path, *, create = true, lock_timeout = 30.0, durability = "sync", max_delay = 0.01,
        max_attempts = 200, cache_size = None, serve = true, remote = true
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        create: bool,
        lock_timeout: f64,
        durability: &str,
        max_delay: f64,
        max_attempts: u32,
        cache_size: Option<usize>,
        serve: bool,
        remote: bool,
    ) -> PyResult<PyStore> {
        let options = || -> statelog::Result<Options> {
            let durability = match durability {
                "sync" => Durability::Sync,
                "relaxed" => Durability::Relaxed {
                    max_delay: seconds("max_delay", max_delay)?,
                },
                other => {
                    return Err(Error::InvalidOption {
                        name: "durability",
                        reason: format!("{other:?} is neither \"sync\" nor \"relaxed\""),
                    });
                }
            };
            let mut options = Options::default()
                .create(create)
                .serve(serve)
                .remote(remote)
                .lock_timeout(seconds("lock_timeout", lock_timeout)?)
                .durability(durability)
                .retry(RetryPolicy::default().max_attempts(max_attempts));
            if let Some(bytes) = cache_size {
                options = options.cache_size(bytes);
            }
            Ok(options)
        };
        let options = options().map_err(|e| errors::to_py(py, e))?;
        let store = run(py, || Store::open(&path, options))?;
        atfork::opened(py, &path);
        Ok(PyStore {
            store: Mutex::new(Some(store)),
            path,
            fork: Fork::here(),
            keylocks: KeyLocks::default(),
        })
    }

    /// The store's directory.
    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The store's id: 32 hex digits chosen when it was created.
    #[getter]
    fn id(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.handle(py)?.id())
    }

    /// The revision of the last commit readers can see.
    #[getter]
    fn revision(&self, py: Python<'_>) -> PyResult<u64> {
        let store = self.handle(py)?;
        Ok(py.detach(|| store.revision()))
    }

    /// True once `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.store.lock().is_none()
    }

    /// The record at `namespace`/`key`, or None.
    fn get(&self, py: Python<'_>, namespace: String, key: String) -> PyResult<Option<Record>> {
        let store = self.handle(py)?;
        let found = run(py, || store.get::<Value>(&namespace, &key))?;
        found
            .map(|r| Record::from_versioned(py, &namespace, &key, &r))
            .transpose()
    }

    /// Writes `value` whatever the record's version; with `if_changed=True`,
    /// nothing is written when the stored value is the same.
    #[pyo3(signature = (namespace, key, value, *, if_changed = false))]
    fn put(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        value: &Bound<'_, PyAny>,
        if_changed: bool,
    ) -> PyResult<Committed> {
        let store = self.handle(py)?;
        let value = encode(&namespace, &key, value)?;
        run(py, || {
            if if_changed {
                store.put_if_changed(&namespace, &key, &value)
            } else {
                store.put(&namespace, &key, &value)
            }
        })
        .map(Committed::from)
    }

    /// Creates a record that must not exist yet (else `ConflictError`).
    fn create(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<Committed> {
        let store = self.handle(py)?;
        let value = encode(&namespace, &key, value)?;
        run(py, || store.create(&namespace, &key, &value)).map(Committed::from)
    }

    /// Writes `value` only if the record is at version `expected` (0: absent);
    /// otherwise raises `ConflictError`.
    fn compare_and_swap(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        expected: u64,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<Committed> {
        let store = self.handle(py)?;
        let value = encode(&namespace, &key, value)?;
        run(py, || {
            store.compare_and_swap(&namespace, &key, expected, &value)
        })
        .map(Committed::from)
    }

    /// Removes a record; None if it did not exist. With `if_version`, only if
    /// it is at that version (else `ConflictError`, also when it is absent).
    #[pyo3(signature = (namespace, key, *, if_version = None))]
    fn delete(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        if_version: Option<u64>,
    ) -> PyResult<Option<Deleted>> {
        let store = self.handle(py)?;
        let deleted = run(py, || match if_version {
            Some(version) => store
                .compare_and_delete(&namespace, &key, version)
                .map(Some),
            None => store.delete(&namespace, &key),
        })?;
        Ok(deleted.map(Deleted::from))
    }

    /// Read, change, write without losing updates: `fn(old)` gets the stored
    /// value (None if absent) and returns the new one. If the record changed
    /// meanwhile, `fn` runs again on the new value. Returns the record written.
    /// Updates of one key from threads sharing this Store take turns.
    #[pyo3(signature = (namespace, key, fn_))]
    fn update(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        fn_: Py<PyAny>,
    ) -> PyResult<Record> {
        let store = self.handle(py)?;
        let result = py.detach(|| {
            self.keylocks.turn(&namespace, &key).run(|| {
                store.update(&namespace, &key, |old: Option<Value>| {
                    tx::call_update(&namespace, &key, &fn_, old)
                })
            })
        });
        match result {
            Ok(record) => Record::from_versioned(py, &namespace, &key, &record),
            Err(CallError::Store(e)) => Err(errors::to_py(py, e)),
            Err(CallError::Python(e)) => Err(e),
        }
    }

    /// Runs `fn(tx)` as one all-or-nothing transaction and returns what it
    /// returned. If a record it read changed before the commit, `fn` runs
    /// again on a fresh snapshot; an exception from `fn` writes nothing.
    #[pyo3(signature = (fn_))]
    fn transaction(&self, py: Python<'_>, fn_: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let store = self.handle(py)?;
        tx::run_transaction(py, &store, &fn_, self.fork)
    }

    /// The records of `namespace` in key order: all, those whose key starts
    /// with `prefix`, or those from `start` (included) to `end` (excluded).
    /// Read from one snapshot as the iterator advances.
    #[pyo3(signature = (namespace, *, prefix = None, start = None, end = None))]
    fn list(
        &self,
        py: Python<'_>,
        namespace: String,
        prefix: Option<String>,
        start: Option<String>,
        end: Option<String>,
    ) -> PyResult<RecordIterator> {
        let store = self.handle(py)?;
        let list = run(py, || {
            store.list::<Value>(&namespace, key_range(prefix, start, end)?)
        })?;
        Ok(RecordIterator::new(namespace, list, self.fork))
    }

    /// How many records `namespace` holds.
    fn count(&self, py: Python<'_>, namespace: String) -> PyResult<u64> {
        let store = self.handle(py)?;
        run(py, || store.read(|snapshot| snapshot.count(&namespace)))
    }

    /// The namespaces that hold records, in order.
    fn namespaces(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let store = self.handle(py)?;
        run(py, || store.namespaces())
    }

    /// Writes one consistent snapshot to `path`, atomically (a reader sees the
    /// old file or the whole new one). `format`: "json", "json-compact",
    /// "jsonl" or "md"; by default from the file's extension, else JSON.
    #[pyo3(signature = (path, *, format = None, namespaces = None, prefix = None, columns = None))]
    fn export(
        &self,
        py: Python<'_>,
        path: PathBuf,
        format: Option<String>,
        namespaces: Option<Vec<String>>,
        prefix: Option<String>,
        columns: Option<Vec<String>>,
    ) -> PyResult<Py<PyDict>> {
        let store = self.handle(py)?;
        let format =
            files::format(format.as_deref(), Some(&path)).map_err(|e| errors::to_py(py, e))?;
        let options = files::export_options(format, namespaces, prefix, columns);
        let summary = run(py, || files::export_file(&store, &path, &options))?;
        files::export_report(py, &summary, format, Some(&path))
    }

    /// One consistent snapshot as text (JSON by default).
    #[pyo3(signature = (*, format = None, namespaces = None, prefix = None, columns = None))]
    fn export_text(
        &self,
        py: Python<'_>,
        format: Option<String>,
        namespaces: Option<Vec<String>>,
        prefix: Option<String>,
        columns: Option<Vec<String>>,
    ) -> PyResult<String> {
        let store = self.handle(py)?;
        let format = files::format(format.as_deref(), None).map_err(|e| errors::to_py(py, e))?;
        let options = files::export_options(format, namespaces, prefix, columns);
        let bytes = run(py, || {
            let mut out = Vec::new();
            snapshot::export(&store, &mut out, &options)?;
            Ok(out)
        })?;
        // The exporters write UTF-8 only.
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads a snapshot file back in one commit. `mode="merge"` writes its
    /// records as ordinary writes (with `check_versions`, stale ones are
    /// conflicts); `mode="restore"` loads it into an empty store with every
    /// version and revision kept. Returns the report.
    #[pyo3(signature = (
        path, *, format = None, mode = "merge", check_versions = false, skip_conflicts = false
    ))]
    fn import_(
        &self,
        py: Python<'_>,
        path: PathBuf,
        format: Option<String>,
        mode: &str,
        check_versions: bool,
        skip_conflicts: bool,
    ) -> PyResult<Py<PyDict>> {
        let store = self.handle(py)?;
        let (format, options) = (|| {
            let format = files::format(format.as_deref(), Some(&path))?;
            let mode = files::import_mode(mode, check_versions, skip_conflicts)?;
            Ok((format, ImportOptions::new(format, mode)))
        })()
        .map_err(|e| errors::to_py(py, e))?;
        let report = run(py, || files::import_file(&store, &path, &options))?;
        files::import_report(py, &report, format, mode)
    }

    /// `import_` from text (or bytes) instead of a file.
    #[pyo3(signature = (
        text, *, format = None, mode = "merge", check_versions = false, skip_conflicts = false
    ))]
    fn import_text(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyAny>,
        format: Option<String>,
        mode: &str,
        check_versions: bool,
        skip_conflicts: bool,
    ) -> PyResult<Py<PyDict>> {
        let store = self.handle(py)?;
        let text: Vec<u8> = match text.cast::<PyString>() {
            Ok(s) => s.to_cow()?.into_owned().into_bytes(),
            Err(_) => text.extract()?,
        };
        let (format, options) = (|| {
            let format = files::format(format.as_deref(), None)?;
            let mode = files::import_mode(mode, check_versions, skip_conflicts)?;
            Ok((format, ImportOptions::new(format, mode)))
        })()
        .map_err(|e| errors::to_py(py, e))?;
        let report = run(py, || snapshot::import(&store, text.as_slice(), &options))?;
        files::import_report(py, &report, format, mode)
    }

    /// Brings a hand-rolled state file (a JSON object of objects, such as a
    /// `sync_state.json`) into `namespace` in one commit. `normalize`: any of
    /// "lower", "strip-www", "dots-to-hyphens", applied to its keys.
    #[pyo3(signature = (path, namespace, *, normalize = Vec::new(), merge_collisions = false))]
    fn import_legacy(
        &self,
        py: Python<'_>,
        path: PathBuf,
        namespace: String,
        normalize: Vec<String>,
        merge_collisions: bool,
    ) -> PyResult<Py<PyDict>> {
        let store = self.handle(py)?;
        files::import_legacy(py, &store, &path, &namespace, &normalize, merge_collisions)
    }

    /// An online backup into directory `dest`; later runs into the same
    /// directory copy only the new log. Returns the report.
    fn backup(&self, py: Python<'_>, dest: PathBuf) -> PyResult<Py<PyDict>> {
        let store = self.handle(py)?;
        let report = run(py, || store.backup(&dest))?;
        files::backup_report(py, &report)
    }

    /// What this handle has done since it was opened: revision, commits,
    /// conflicts, retries, batches (group commits), checkpoints, ...
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let store = self.handle(py)?;
        let stats = py.detach(|| store.stats());
        files::stats_report(py, &store, &stats)
    }

    /// Makes the state durable now, so that a restart replays nothing.
    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.handle(py)?;
        run(py, || store.checkpoint())
    }

    /// Closes the store (a final checkpoint) and releases it for other
    /// processes; later calls raise `ClosedError`. Closing twice does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.fork.check()?;
        let Some(store) = self.store.lock().take() else {
            return Ok(());
        };
        atfork::closed(py, &self.path);
        run(py, || store.close())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { ", closed" } else { "" };
        format!("Store({:?}{state})", self.path.display().to_string())
    }
}
