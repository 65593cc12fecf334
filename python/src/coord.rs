//! Coordination from Python: the options a write can carry (fences, an
//! idempotency key, a lease), patches, leases, and `Store.lock`'s context
//! manager with the thread that keeps its lease alive.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rmpv::Value;
use statelog::{Batch, BatchOutcome, Error, Lease, LockGrant, Patch, Store, WriteResult};

use crate::convert;
use crate::errors::{self, Fork};
use crate::store::run;
use crate::types::{Committed, Deleted, Record};

/// Seconds as a duration, or `InvalidOption` naming the argument.
pub(crate) fn seconds(name: &'static str, value: f64) -> statelog::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| Error::InvalidOption {
        name,
        reason: format!("{value} is not a number of seconds from 0 up"),
    })
}

/// What a write depends on or carries besides its value.
#[derive(Default)]
pub(crate) struct WriteOptions {
    fences: Vec<(String, u64)>,
    idempotency_key: Option<String>,
    keep_key_for: Option<Duration>,
    lease: Option<Lease>,
}

impl WriteOptions {
    /// From the keyword arguments `fence`, `idempotency_key`, `keep_key_for`
    /// and `lease`. `fence` is a `(lock, token)` pair or a list of them.
    pub(crate) fn new(
        py: Python<'_>,
        fence: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<String>,
        keep_key_for: Option<f64>,
        lease: Option<&Bound<'_, PyLease>>,
    ) -> PyResult<WriteOptions> {
        let mut fences = Vec::new();
        if let Some(fence) = fence {
            if let Ok(pair) = fence.extract::<(String, u64)>() {
                fences.push(pair);
            } else {
                let pairs: Vec<(String, u64)> = fence.extract().map_err(|_| {
                    errors::to_py(
                        py,
                        Error::InvalidOption {
                            name: "fence",
                            reason: "give a (lock name, token) pair, or a list of them".to_owned(),
                        },
                    )
                })?;
                fences.extend(pairs);
            }
        }
        let keep_key_for = keep_key_for
            .map(|s| seconds("keep_key_for", s))
            .transpose()
            .map_err(|e| errors::to_py(py, e))?;
        Ok(WriteOptions {
            fences,
            idempotency_key,
            keep_key_for,
            lease: lease.map(|l| l.get().get_lease(py).cloned()).transpose()?,
        })
    }

    /// True when a plain write does (no batch needed).
    pub(crate) fn is_plain(&self) -> bool {
        self.fences.is_empty() && self.idempotency_key.is_none() && self.lease.is_none()
    }

    /// Adds the options to a batch.
    pub(crate) fn add_to(&self, mut batch: Batch) -> Batch {
        for (lock, token) in &self.fences {
            batch = batch.fence(lock, *token);
        }
        if let Some(key) = &self.idempotency_key {
            batch = batch.idempotency_key(key);
            if let Some(keep) = self.keep_key_for {
                batch = batch.keep_key_for(keep);
            }
        }
        if let Some(lease) = &self.lease {
            batch = batch.lease(lease);
        }
        batch
    }
}

/// The first write's result of a batch, as `Committed`.
pub(crate) fn committed(outcome: &BatchOutcome) -> statelog::Result<Committed> {
    match outcome.writes.first() {
        Some(WriteResult::Put { meta, changed, .. }) => Ok(Committed::new(
            meta.mod_revision,
            meta.version,
            *changed,
            outcome.replayed,
        )),
        _ => Err(internal("a put produced no result")),
    }
}

/// The first write's result of a batch, as `Deleted` (None: was absent).
pub(crate) fn deleted(outcome: &BatchOutcome) -> statelog::Result<Option<Deleted>> {
    match outcome.writes.first() {
        Some(WriteResult::Deleted { version }) => Ok(Some(Deleted::new(
            outcome.revision.unwrap_or(0),
            *version,
            outcome.replayed,
        ))),
        Some(WriteResult::Absent) => Ok(None),
        _ => Err(internal("a delete produced no result")),
    }
}

fn internal(what: &str) -> Error {
    Error::Poisoned {
        cause: format!("internal error: {what}"),
    }
}

/// A patch from the operations a `statelog.Patch` collected: tuples of
/// (operation, path, argument).
pub(crate) fn patch(namespace: &str, key: &str, ops: &Bound<'_, PyAny>) -> PyResult<Patch> {
    let py = ops.py();
    let ops: Vec<(String, Vec<String>, Bound<'_, PyAny>)> = ops.extract()?;
    let mut patch = Patch::new();
    for (op, path, arg) in ops {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let value = || -> PyResult<Value> {
            convert::to_value(&arg).map_err(|e| errors::encode(namespace, key, &e))
        };
        patch = match op.as_str() {
            "set" => patch.set(&path, &value()?),
            "remove" => patch.remove(&path),
            "add" => add(patch, &path, &arg)?,
            "append" => patch.append(&path, &value()?),
            "append_unique" => patch.append_unique(&path, &value()?),
            "merge" => patch.merge(&path, &value()?),
            other => {
                return Err(errors::to_py(
                    py,
                    Error::InvalidOption {
                        name: "patch",
                        reason: format!("{other:?} is not a patch operation"),
                    },
                ));
            }
        };
    }
    Ok(patch)
}

/// Adds the number `by` (an int within 64 bits, or a float) at `path`.
pub(crate) fn add(patch: Patch, path: &[&str], by: &Bound<'_, PyAny>) -> PyResult<Patch> {
    if let Ok(n) = by.extract::<i64>() {
        Ok(patch.add(path, n))
    } else if let Ok(n) = by.extract::<u64>() {
        Ok(patch.add(path, n))
    } else if by.is_instance_of::<pyo3::types::PyFloat>() {
        Ok(patch.add(path, by.extract::<f64>()?))
    } else {
        Err(errors::to_py(
            by.py(),
            Error::InvalidOption {
                name: "by",
                reason: format!("{} is not an int within 64 bits nor a float", by.repr()?),
            },
        ))
    }
}

/// A field path: one name, or a list (or tuple) of names.
pub(crate) fn field_path(field: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    match field.extract::<String>() {
        Ok(name) => Ok(vec![name]),
        Err(_) => field.extract(),
    }
}

/// Applies a batch holding one patch and returns the record it wrote.
pub(crate) fn apply_patch(
    py: Python<'_>,
    store: &Store,
    namespace: &str,
    key: &str,
    batch: &Batch,
) -> PyResult<Record> {
    let outcome = run(py, || store.apply(batch))?;
    let Some(WriteResult::Put { meta, value, .. }) = outcome.writes.first() else {
        return Err(errors::to_py(py, internal("a patch produced no result")));
    };
    let value: Value = match value {
        Some(raw) => raw.decode().map_err(|message| {
            errors::to_py(
                py,
                Error::Decode {
                    namespace: namespace.to_owned(),
                    key: key.to_owned(),
                    type_name: "a Python value",
                    message: message.to_string(),
                },
            )
        })?,
        // A replay may not carry the value: the record as it is now.
        None => match run(py, || store.get::<Value>(namespace, key))? {
            Some(record) => record.value,
            None => Value::Nil,
        },
    };
    let versioned = statelog::Versioned {
        value,
        version: meta.version,
        create_revision: meta.create_revision,
        mod_revision: meta.mod_revision,
        updated_at: meta.updated_at,
    };
    Ok(Record::from_versioned(py, namespace, key, &versioned)?.replayed(outcome.replayed))
}

/// A lease: it ends when revoked or when not kept alive within its TTL, and
/// with it the locks it holds and the records written under it (``lease=``).
/// From :meth:`Store.lease`; in a ``with`` block it is revoked at the end.
#[pyclass(frozen, module = "statelog", name = "Lease")]
pub(crate) struct PyLease {
    /// Always set; taken only when dropped in a forked child.
    lease: Option<Lease>,
    fork: Fork,
}

impl PyLease {
    pub(crate) fn new(lease: Lease, fork: Fork) -> PyLease {
        PyLease {
            lease: Some(lease),
            fork,
        }
    }

    pub(crate) fn get_lease(&self, py: Python<'_>) -> PyResult<&Lease> {
        self.fork.check()?;
        self.lease
            .as_ref()
            .ok_or_else(|| errors::to_py(py, Error::Closed))
    }
}

impl Drop for PyLease {
    fn drop(&mut self) {
        if self.fork.is_child() {
            // It holds a clone of the parent's store handle.
            std::mem::forget(self.lease.take());
        }
    }
}

#[pymethods]
impl PyLease {
    /// The lease's id.
    #[getter]
    fn id(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.get_lease(py)?.id())
    }

    /// Its TTL in seconds.
    #[getter]
    fn ttl(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.get_lease(py)?.ttl().as_secs_f64())
    }

    /// Keeps it alive: its full TTL from now. Raises `LeaseExpiredError` when
    /// it has ended.
    fn keep_alive(&self, py: Python<'_>) -> PyResult<()> {
        let lease = self.get_lease(py)?;
        run(py, || lease.keep_alive())
    }

    /// Ends it now, with its locks and the records bound to it.
    fn revoke(&self, py: Python<'_>) -> PyResult<()> {
        let lease = self.get_lease(py)?;
        run(py, || lease.revoke())
    }

    /// Takes lock `name` under this lease and returns its fencing token;
    /// waits up to `wait` seconds for its holder to let go (None: tries
    /// once), else raises `LockHeldError`.
    #[pyo3(signature = (name, *, wait = None))]
    fn lock(&self, py: Python<'_>, name: String, wait: Option<f64>) -> PyResult<u64> {
        let lease = self.get_lease(py)?;
        let wait = wait
            .map(|w| seconds("wait", w))
            .transpose()
            .map_err(|e| errors::to_py(py, e))?;
        run(py, || lease.lock(&name, wait)).map(|g| g.token)
    }

    /// Gives lock `name` back; raises `FencedError` if it is not held with
    /// `token` any more.
    fn unlock(&self, py: Python<'_>, name: String, token: u64) -> PyResult<()> {
        let lease = self.get_lease(py)?;
        let grant = LockGrant {
            name,
            token,
            lease: lease.id(),
        };
        run(py, || lease.unlock(&grant))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.revoke(py)
    }

    fn __repr__(&self) -> String {
        match &self.lease {
            Some(lease) => format!(
                "Lease(id={}, ttl={})",
                lease.id(),
                lease.ttl().as_secs_f64()
            ),
            None => "Lease()".to_owned(),
        }
    }
}

/// Keeps a lease alive from a thread of its own until stopped.
struct Keeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// Set when a keep-alive failed: the lease (and the lock) are gone.
    lost: Arc<Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    fn start(lease: Lease) -> Keeper {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let lost = Arc::new(Mutex::new(None));
        let thread = std::thread::Builder::new()
            .name("statelog-lease".to_owned())
            .spawn({
                let (stop, lost) = (Arc::clone(&stop), Arc::clone(&lost));
                move || {
                    // Three keep-alives per TTL: one may be late or fail
                    // transiently without the lease ending.
                    let every = lease.ttl() / 3;
                    let (stopped, wake) = &*stop;
                    let mut guard = stopped.lock();
                    loop {
                        wake.wait_for(&mut guard, every);
                        if *guard {
                            return;
                        }
                        if let Err(e) = lease.keep_alive() {
                            *lost.lock() = Some(e.to_string());
                            return;
                        }
                    }
                }
            })
            .ok();
        Keeper { stop, lost, thread }
    }

    fn stop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A lock held while a ``with`` block runs: from :meth:`Store.lock`.
///
/// Entering takes a lease of ``ttl`` seconds and the lock under it (waiting
/// up to ``wait`` seconds), keeps the lease alive from a thread meanwhile,
/// and gives the fencing token to the block. Leaving gives the lock back and
/// ends the lease, also when the block raised. Should the lease end anyway
/// (the process stalled past its TTL), :attr:`lost` becomes true and writes
/// fenced with the token fail with ``FencedError``.
#[pyclass(frozen, module = "statelog", name = "Lock")]
pub(crate) struct PyLock {
    /// Always set; taken only when dropped in a forked child.
    store: Option<Store>,
    name: String,
    ttl: Duration,
    wait: Option<Duration>,
    holder: Option<String>,
    held: Mutex<Option<(Lease, u64, Keeper)>>,
    fork: Fork,
}

impl PyLock {
    pub(crate) fn new(
        store: Store,
        name: String,
        ttl: f64,
        wait: Option<f64>,
        holder: Option<String>,
        fork: Fork,
    ) -> statelog::Result<PyLock> {
        Ok(PyLock {
            store: Some(store),
            name,
            ttl: seconds("ttl", ttl)?,
            wait: wait.map(|w| seconds("wait", w)).transpose()?,
            holder,
            held: Mutex::new(None),
            fork,
        })
    }
}

impl Drop for PyLock {
    fn drop(&mut self) {
        if self.fork.is_child() {
            std::mem::forget(self.store.take());
            if let Some(held) = self.held.get_mut().take() {
                std::mem::forget(held);
            }
        } else if let Some((_, _, mut keeper)) = self.held.get_mut().take() {
            // Dropped while held: stop keeping it; its TTL ends it.
            keeper.stop();
        }
    }
}

#[pymethods]
impl PyLock {
    /// Takes the lock (see the class) and returns its fencing token.
    fn acquire(&self, py: Python<'_>) -> PyResult<u64> {
        self.fork.check()?;
        let already = || {
            errors::to_py(
                py,
                Error::InvalidOption {
                    name: "lock",
                    reason: format!("lock {:?} is held by this object already", self.name),
                },
            )
        };
        // The mutex is never held across a blocking call: that call takes
        // the GIL back at its end, which a thread reading `token` may hold
        // while it waits for the mutex.
        if self.held.lock().is_some() {
            return Err(already());
        }
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| errors::to_py(py, Error::Closed))?;
        let (lease, token) = run(py, || {
            let lease = match &self.holder {
                Some(holder) => store.grant_lease_as(self.ttl, holder)?,
                None => store.grant_lease(self.ttl)?,
            };
            match lease.lock(&self.name, self.wait) {
                Ok(grant) => Ok((lease, grant.token)),
                Err(e) => {
                    let _ = lease.revoke();
                    Err(e)
                }
            }
        })?;
        let keeper = Keeper::start(lease.clone());
        let mut held = self.held.lock();
        if held.is_some() {
            // Another thread took it through this object meanwhile.
            drop(held);
            let mut keeper = keeper;
            py.detach(|| {
                keeper.stop();
                let _ = lease.revoke();
            });
            return Err(already());
        }
        *held = Some((lease, token, keeper));
        Ok(token)
    }

    /// Gives the lock back and ends its lease. Does nothing when not held.
    /// Raises `FencedError` when the lock was lost meanwhile.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.fork.check()?;
        let Some((lease, token, mut keeper)) = self.held.lock().take() else {
            return Ok(());
        };
        let grant = LockGrant {
            name: self.name.clone(),
            token,
            lease: lease.id(),
        };
        run(py, || {
            keeper.stop();
            let unlocked = lease.unlock(&grant);
            let revoked = lease.revoke();
            match (unlocked, revoked) {
                (Err(e), _) => Err(e),
                // An ended lease has nothing left to revoke.
                (Ok(()), Err(Error::LeaseExpired { .. })) => Ok(()),
                (Ok(()), other) => other,
            }
        })
    }

    /// The lock's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token while held, else None.
    #[getter]
    fn token(&self) -> Option<u64> {
        self.held.lock().as_ref().map(|(_, token, _)| *token)
    }

    /// The id of the lease holding it, else None.
    #[getter]
    fn lease(&self) -> Option<u64> {
        self.held.lock().as_ref().map(|(lease, _, _)| lease.id())
    }

    /// True when a keep-alive found the lease ended: the lock is gone.
    #[getter]
    fn lost(&self) -> bool {
        self.held
            .lock()
            .as_ref()
            .is_some_and(|(_, _, keeper)| keeper.lost.lock().is_some())
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<u64> {
        self.acquire(py)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }

    fn __repr__(&self) -> String {
        match self.token() {
            Some(token) => format!("Lock({:?}, token={token})", self.name),
            None => format!("Lock({:?}, not held)", self.name),
        }
    }
}
