//! `statelog.Store`: the store's record operations, each run without the GIL.

use std::path::PathBuf;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rmpv::Value;
use statelog::snapshot::{self, ImportOptions};
use statelog::{Batch, Durability, Error, KeyRange, Options, RetryPolicy, Store};

use crate::atfork;
use crate::convert;
use crate::coord::{self, PyLease, PyLock, WriteOptions};
use crate::errors::{self, Fork};
use crate::files;
use crate::keylocks::KeyLocks;
use crate::tx::{self, CallError};
use crate::types::{Committed, Deleted, Record, RecordIterator, utc_datetime};
use crate::watch::{self, PyWatcher};

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

use coord::seconds;

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
    /// nothing is written when the stored value is the same. The keywords
    /// every write takes: `fence=(lock, token)` (or a list of pairs) writes
    /// only while the lock is held with that token (else `FencedError`);
    /// `idempotency_key` makes a retry of the same write return its first
    /// result (`replayed=True`) without writing again (kept `keep_key_for`
    /// seconds, a day by default); `lease` binds the record to a lease (it is
    /// deleted when the lease ends).
    #[pyo3(signature = (
        namespace, key, value, *, if_changed = false, fence = None, idempotency_key = None,
        keep_key_for = None, lease = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        value: &Bound<'_, PyAny>,
        if_changed: bool,
        fence: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<String>,
        keep_key_for: Option<f64>,
        lease: Option<&Bound<'_, PyLease>>,
    ) -> PyResult<Committed> {
        let store = self.handle(py)?;
        let value = encode(&namespace, &key, value)?;
        let options = WriteOptions::new(py, fence, idempotency_key, keep_key_for, lease)?;
        if !options.is_plain() {
            let mut batch = Batch::new().put(&namespace, &key, &value);
            if if_changed {
                batch = batch.if_changed();
            }
            let batch = options.add_to(batch);
            return run(py, || coord::committed(&store.apply(&batch)?));
        }
        run(py, || {
            if if_changed {
                store.put_if_changed(&namespace, &key, &value)
            } else {
                store.put(&namespace, &key, &value)
            }
        })
        .map(Committed::from)
    }

    /// Creates a record that must not exist yet (else `ConflictError`). Takes
    /// the keywords of `put`.
    #[pyo3(signature = (
        namespace, key, value, *, fence = None, idempotency_key = None, keep_key_for = None,
        lease = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        value: &Bound<'_, PyAny>,
        fence: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<String>,
        keep_key_for: Option<f64>,
        lease: Option<&Bound<'_, PyLease>>,
    ) -> PyResult<Committed> {
        let store = self.handle(py)?;
        let value = encode(&namespace, &key, value)?;
        let options = WriteOptions::new(py, fence, idempotency_key, keep_key_for, lease)?;
        if !options.is_plain() {
            let batch = options.add_to(
                Batch::new()
                    .if_version(&namespace, &key, 0)
                    .put(&namespace, &key, &value),
            );
            return run(py, || coord::committed(&store.apply(&batch)?));
        }
        run(py, || store.create(&namespace, &key, &value)).map(Committed::from)
    }

    /// Writes `value` only if the record is at version `expected` (0: absent);
    /// otherwise raises `ConflictError`. Takes the keywords of `put`.
    #[pyo3(signature = (
        namespace, key, expected, value, *, fence = None, idempotency_key = None,
        keep_key_for = None, lease = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn compare_and_swap(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        expected: u64,
        value: &Bound<'_, PyAny>,
        fence: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<String>,
        keep_key_for: Option<f64>,
        lease: Option<&Bound<'_, PyLease>>,
    ) -> PyResult<Committed> {
        let store = self.handle(py)?;
        let value = encode(&namespace, &key, value)?;
        let options = WriteOptions::new(py, fence, idempotency_key, keep_key_for, lease)?;
        if !options.is_plain() {
            let batch = options.add_to(
                Batch::new()
                    .if_version(&namespace, &key, expected)
                    .put(&namespace, &key, &value),
            );
            return run(py, || coord::committed(&store.apply(&batch)?));
        }
        run(py, || {
            store.compare_and_swap(&namespace, &key, expected, &value)
        })
        .map(Committed::from)
    }

    /// Removes a record; None if it did not exist. With `if_version`, only if
    /// it is at that version (else `ConflictError`, also when it is absent).
    /// Takes `fence`, `idempotency_key` and `keep_key_for` as `put` does.
    #[pyo3(signature = (
        namespace, key, *, if_version = None, fence = None, idempotency_key = None,
        keep_key_for = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn delete(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        if_version: Option<u64>,
        fence: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<String>,
        keep_key_for: Option<f64>,
    ) -> PyResult<Option<Deleted>> {
        let store = self.handle(py)?;
        let options = WriteOptions::new(py, fence, idempotency_key, keep_key_for, None)?;
        if !options.is_plain() {
            let mut batch = Batch::new();
            if let Some(version) = if_version {
                batch = batch.if_version(&namespace, &key, version);
            }
            let batch = options.add_to(batch.delete(&namespace, &key));
            let deleted = run(py, || coord::deleted(&store.apply(&batch)?))?;
            if deleted.is_none() && if_version.is_some() {
                // As compare_and_delete: an absent record is a conflict.
                return Err(errors::to_py(
                    py,
                    Error::Conflict {
                        namespace,
                        key,
                        expected: if_version.unwrap_or(0),
                        actual: 0,
                        attempts: 1,
                    },
                ));
            }
            return Ok(deleted);
        }
        let deleted = run(py, || match if_version {
            Some(version) => store
                .compare_and_delete(&namespace, &key, version)
                .map(Some),
            None => store.delete(&namespace, &key),
        })?;
        Ok(deleted.map(Deleted::from))
    }

    /// Applies a `statelog.Patch` to the record at commit, on whatever value
    /// it has then (a missing record starts as an empty dict): patches never
    /// conflict, so they need no retry. Returns the record written; raises
    /// `PatchFailedError` (nothing written) when an operation cannot apply.
    /// Takes the keywords of `put`.
    #[pyo3(signature = (
        namespace, key, patch, *, if_changed = false, fence = None, idempotency_key = None,
        keep_key_for = None, lease = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn patch(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        patch: &Bound<'_, PyAny>,
        if_changed: bool,
        fence: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<String>,
        keep_key_for: Option<f64>,
        lease: Option<&Bound<'_, PyLease>>,
    ) -> PyResult<Record> {
        let store = self.handle(py)?;
        let ops = patch.getattr("operations")?;
        let patch = coord::patch(&namespace, &key, &ops)?;
        let options = WriteOptions::new(py, fence, idempotency_key, keep_key_for, lease)?;
        let mut batch = Batch::new().patch(&namespace, &key, &patch);
        if if_changed {
            batch = batch.if_changed();
        }
        let batch = options.add_to(batch);
        coord::apply_patch(py, &store, &namespace, &key, &batch)
    }

    /// Adds `by` (an int within 64 bits, or a float; 1 by default) to the
    /// number at `field` of the record's value (one name, or a list of names
    /// for a nested field): a missing record or field counts as 0. A patch:
    /// concurrent increments never conflict and none is lost. Returns the
    /// record written (``record.value[field]`` is the sum). Takes the
    /// keywords of `put`.
    #[pyo3(signature = (
        namespace, key, field, by = None, *, fence = None, idempotency_key = None,
        keep_key_for = None, lease = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn incr(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        field: &Bound<'_, PyAny>,
        by: Option<&Bound<'_, PyAny>>,
        fence: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<String>,
        keep_key_for: Option<f64>,
        lease: Option<&Bound<'_, PyLease>>,
    ) -> PyResult<Record> {
        let store = self.handle(py)?;
        let path = coord::field_path(field)?;
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let one = 1_i64.into_pyobject(py)?.into_any();
        let patch = coord::add(statelog::Patch::new(), &path, by.unwrap_or(&one))?;
        let options = WriteOptions::new(py, fence, idempotency_key, keep_key_for, lease)?;
        let batch = options.add_to(Batch::new().patch(&namespace, &key, &patch));
        coord::apply_patch(py, &store, &namespace, &key, &batch)
    }

    /// Watches the store's commits: an iterator of `Change`s in revision
    /// order (see `Watcher`). Covers the whole store, a `namespace`, one
    /// `key` of it, or the keys starting with `prefix`; from the commit at
    /// revision `start` (included, while the log still holds it; else
    /// `CompactedError`), by default from the next commit. `prev=True` adds
    /// each record's previous version; `progress=SECONDS` yields a
    /// `Progress` whenever nothing in scope changed for that long; `buffer`
    /// is how many commits may wait for a slow consumer before the watch is
    /// cancelled (`WatchCancelledError`, saying where to resume).
    #[pyo3(signature = (
        namespace = None, key = None, *, prefix = None, start = None, prev = false,
        progress = None, buffer = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &self,
        py: Python<'_>,
        namespace: Option<String>,
        key: Option<String>,
        prefix: Option<String>,
        start: Option<u64>,
        prev: bool,
        progress: Option<f64>,
        buffer: Option<usize>,
    ) -> PyResult<PyWatcher> {
        let store = self.handle(py)?;
        let fork = self.fork;
        run(py, || {
            let mut watch =
                watch::scope(namespace.as_deref(), key.as_deref(), prefix.as_deref())?.prev(prev);
            if let Some(start) = start {
                watch = watch.from(start);
            }
            if let Some(buffer) = buffer {
                watch = watch.buffer(buffer);
            }
            let progress = progress.map(|p| seconds("progress", p)).transpose()?;
            PyWatcher::open(&store, watch, progress, fork)
        })
    }

    /// A lock for a ``with`` block: ``with store.lock("deploy", ttl=10) as
    /// token:`` takes it (waiting up to `wait` seconds for its holder, None:
    /// trying once, else `LockHeldError`) under a lease of `ttl` seconds kept
    /// alive meanwhile, and gives it back at the end, also on an exception.
    /// `token` is the fencing token: pass ``fence=("deploy", token)`` to
    /// writes that must not happen once the lock is lost.
    #[pyo3(signature = (name, *, ttl = 10.0, wait = None, holder = None))]
    fn lock(
        &self,
        py: Python<'_>,
        name: String,
        ttl: f64,
        wait: Option<f64>,
        holder: Option<String>,
    ) -> PyResult<PyLock> {
        let store = self.handle(py)?;
        PyLock::new(store, name, ttl, wait, holder, self.fork).map_err(|e| errors::to_py(py, e))
    }

    /// Takes a lease of `ttl` seconds (0.1 to a day): keep it alive with
    /// `keep_alive()` more often than its TTL; locks taken under it and
    /// records written with ``lease=`` end with it. In a ``with`` block it
    /// is revoked at the end.
    #[pyo3(signature = (ttl, *, holder = None))]
    fn lease(&self, py: Python<'_>, ttl: f64, holder: Option<String>) -> PyResult<PyLease> {
        let store = self.handle(py)?;
        let ttl = seconds("ttl", ttl).map_err(|e| errors::to_py(py, e))?;
        let lease = run(py, || match &holder {
            Some(holder) => store.grant_lease_as(ttl, holder),
            None => store.grant_lease(ttl),
        })?;
        Ok(PyLease::new(lease, self.fork))
    }

    /// The locks held now, by name: dicts with `name`, `token`, `lease`,
    /// `holder` and `since`.
    fn locks<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let store = self.handle(py)?;
        let locks = run(py, || store.locks())?;
        locks
            .into_iter()
            .map(|l| {
                let since = utc_datetime(py, l.since.as_micros())?.unbind();
                errors::dict(
                    py,
                    &[
                        ("name", errors::py_obj(py, l.name)),
                        ("token", errors::py_obj(py, l.token)),
                        ("lease", errors::py_obj(py, l.lease)),
                        ("holder", errors::py_obj(py, l.holder)),
                        ("since", since),
                    ],
                )
            })
            .collect()
    }

    /// The leases, by id: dicts with `id`, `ttl`, `holder`, `since`, `locks`,
    /// `bound` (records bound to it) and `remaining` (seconds, or None).
    fn leases<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let store = self.handle(py)?;
        let leases = run(py, || store.leases())?;
        leases
            .into_iter()
            .map(|l| {
                let since = utc_datetime(py, l.since.as_micros())?.unbind();
                errors::dict(
                    py,
                    &[
                        ("id", errors::py_obj(py, l.id)),
                        ("ttl", errors::py_obj(py, l.ttl.as_secs_f64())),
                        ("holder", errors::py_obj(py, l.holder)),
                        ("since", since),
                        ("locks", errors::py_obj(py, l.locks)),
                        ("bound", errors::py_obj(py, l.bound)),
                        (
                            "remaining",
                            errors::py_obj(py, l.remaining.map(|d| d.as_secs_f64())),
                        ),
                    ],
                )
            })
            .collect()
    }

    /// How many idempotency keys the store keeps now.
    fn idempotency_keys(&self, py: Python<'_>) -> PyResult<u64> {
        let store = self.handle(py)?;
        run(py, || store.idempotency_keys())
    }

    /// Read, change, write without losing updates: `fn(old)` gets the stored
    /// value (None if absent) and returns the new one. If the record changed
    /// meanwhile, `fn` runs again on the new value. Returns the record written.
    /// Updates of one key from threads sharing this Store take turns.
    /// With `idempotency_key`, the key is checked before `fn` runs: once an
    /// update of this record with that key has committed, calling again
    /// returns its record (`.replayed` true) without calling `fn`; the key
    /// used for another request raises IdempotencyKeyReusedError.
    #[pyo3(signature = (namespace, key, fn_, *, idempotency_key = None))]
    fn update(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        fn_: Py<PyAny>,
        idempotency_key: Option<String>,
    ) -> PyResult<Record> {
        let store = self.handle(py)?;
        let result = py.detach(|| {
            self.keylocks.turn(&namespace, &key).run(|| {
                let call = |old: Option<Value>| tx::call_update(&namespace, &key, &fn_, old);
                match &idempotency_key {
                    None => store.update(&namespace, &key, call).map(|r| (r, false)),
                    Some(k) => store
                        .update_with_key(k, &namespace, &key, call)
                        .map(|u| (u.record, u.replayed)),
                }
            })
        });
        match result {
            Ok((record, replayed)) => {
                Record::from_versioned(py, &namespace, &key, &record).map(|r| r.replayed(replayed))
            }
            Err(CallError::Store(e)) => Err(errors::to_py(py, e)),
            Err(CallError::Python(e)) => Err(e),
        }
    }

    /// Runs `fn(tx)` as one all-or-nothing transaction and returns what it
    /// returned. If a record it read changed before the commit, `fn` runs
    /// again on a fresh snapshot; an exception from `fn` writes nothing.
    /// With `idempotency_key`, the key is checked before `fn` runs: once a
    /// transaction with that key has committed, calling again returns the
    /// first call's result without calling `fn` (the result is kept in the
    /// key, so it must be a value the store can hold).
    #[pyo3(signature = (fn_, *, idempotency_key = None))]
    fn transaction(
        &self,
        py: Python<'_>,
        fn_: Py<PyAny>,
        idempotency_key: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let store = self.handle(py)?;
        tx::run_transaction(py, &store, &fn_, self.fork, idempotency_key.as_deref())
            .map(|(result, _)| result)
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
