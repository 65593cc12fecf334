//! `Store.watch`: the change feed as a Python iterator (and, through
//! `_wait`/`_take`, as an async iterator in `statelog/_async.py`).
//!
//! The Rust watcher blocks until its next event. Python must be able to stop
//! it (`close`, the end of a `with` block or of an `async for`, Ctrl-C), so it
//! is opened with progress events every `TICK`: each one wakes the wait, which
//! then looks whether it was stopped. The ticks the caller did not ask for are
//! never shown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use rmpv::Value;
use statelog::{RawValue, Versioned, Watch, WatchEvent};

use crate::errors::{self, Fork};
use crate::types::{Record, utc_datetime};

/// How long a wait goes on before it looks whether it was stopped (and, in
/// the iterator, whether a signal such as Ctrl-C arrived).
const TICK: Duration = Duration::from_millis(200);

/// What a watch covers, from the keyword arguments of `Store.watch`.
pub(crate) fn scope(
    namespace: Option<&str>,
    key: Option<&str>,
    prefix: Option<&str>,
) -> statelog::Result<Watch> {
    let invalid = |reason: &str| statelog::Error::InvalidOption {
        name: "watch",
        reason: reason.to_owned(),
    };
    match (namespace, key, prefix) {
        (None, None, None) => Ok(Watch::all()),
        (None, _, _) => Err(invalid("a key or prefix needs its namespace")),
        (Some(_), Some(_), Some(_)) => Err(invalid("give either a key or a prefix, not both")),
        (Some(ns), Some(key), None) => Ok(Watch::key(ns, key)),
        (Some(ns), None, Some(prefix)) => Ok(Watch::prefix(ns, prefix)),
        (Some(ns), None, None) => Ok(Watch::namespace(ns)),
    }
}

/// The blocking watcher and when the caller last got an event.
struct Pump {
    watcher: statelog::Watcher,
    last: Instant,
}

/// What a wait found.
enum Found {
    /// An event (or the end, or an error) waits in `pending`.
    Ready,
    /// Nothing yet.
    Idle,
}

/// The changes committed to a store, in revision order, from `Store.watch`.
///
/// Iterate over it (``for change in watcher``): each item is a :class:`Change`
/// (or a :class:`Progress`, when asked for). The iteration waits for the next
/// commit without the GIL, and ends when the watcher is closed; an error (the
/// watch fell behind, the store closed, the holder went away) is raised once
/// and says from which revision to watch again. Use it in a ``with`` block, or
/// call :meth:`close`, to end the watch.
#[pyclass(frozen, module = "statelog", name = "Watcher")]
pub(crate) struct PyWatcher {
    /// `None` once the watch ended.
    pump: Mutex<Option<Pump>>,
    /// An event a wait found and nobody took yet (`None` inside: the end).
    pending: Mutex<Option<Option<statelog::Result<WatchEvent>>>>,
    /// Set by `close`: waits end at their next tick.
    stopped: AtomicBool,
    /// How often the caller wants progress events (`None`: never).
    progress: Option<Duration>,
    fork: Fork,
}

impl Drop for PyWatcher {
    fn drop(&mut self) {
        if self.fork.is_child() {
            // The watch belongs to the parent's store.
            if let Some(pump) = self.pump.get_mut().take() {
                std::mem::forget(pump);
            }
        }
    }
}

impl PyWatcher {
    /// Opens a watch (without the GIL: the caller detached it).
    pub(crate) fn open(
        store: &statelog::Store,
        mut watch: Watch,
        progress: Option<Duration>,
        fork: Fork,
    ) -> statelog::Result<PyWatcher> {
        watch = watch.progress(progress.map_or(TICK, |every| every.min(TICK)));
        let watcher = store.watch(watch)?;
        Ok(PyWatcher {
            pump: Mutex::new(Some(Pump {
                watcher,
                last: Instant::now(),
            })),
            pending: Mutex::new(None),
            stopped: AtomicBool::new(false),
            progress,
            fork,
        })
    }

    /// Waits until an event is pending or `timeout` has passed (`None`: until
    /// one is pending or the watch is stopped). Runs without the GIL.
    fn wait(&self, timeout: Option<Duration>) -> Found {
        let deadline = timeout.map(|t| Instant::now() + t);
        // One waiter at a time: the others queue here.
        let mut pump = self.pump.lock();
        loop {
            if self.pending.lock().is_some() {
                return Found::Ready;
            }
            if self.stopped.load(Ordering::Acquire) {
                *pump = None;
                *self.pending.lock() = Some(None);
                return Found::Ready;
            }
            let Some(p) = pump.as_mut() else {
                *self.pending.lock() = Some(None);
                return Found::Ready;
            };
            let item = p.watcher.next();
            let wanted = match &item {
                Some(Ok(WatchEvent::Progress { .. })) => {
                    matches!(self.progress, Some(every) if p.last.elapsed() >= every)
                }
                _ => true,
            };
            if wanted && !self.stopped.load(Ordering::Acquire) {
                p.last = Instant::now();
                if !matches!(item, Some(Ok(_))) {
                    // The end, or an error: the watch is over.
                    *pump = None;
                }
                *self.pending.lock() = Some(item);
                return Found::Ready;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Found::Idle;
            }
        }
    }

    /// The pending event: `None` when there is none (another thread took
    /// it), `Some(None)` for the end.
    fn take(&self, py: Python<'_>) -> PyResult<Option<Option<Py<PyAny>>>> {
        let item = self.pending.lock().take();
        match item {
            None => Ok(None),
            Some(None) => {
                // Stays ended for every later call.
                *self.pending.lock() = Some(None);
                Ok(Some(None))
            }
            Some(Some(Err(e))) => {
                *self.pending.lock() = Some(None);
                Err(errors::to_py(py, e))
            }
            Some(Some(Ok(WatchEvent::Progress { revision }))) => {
                Ok(Some(Some(Py::new(py, Progress { revision })?.into_any())))
            }
            Some(Some(Ok(WatchEvent::Change(change)))) => Ok(Some(Some(
                Py::new(py, Change::new(py, change)?)?.into_any(),
            ))),
        }
    }
}

#[pymethods]
impl PyWatcher {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.fork.check()?;
        loop {
            match py.detach(|| self.wait(Some(TICK))) {
                Found::Ready => match self.take(py)? {
                    Some(Some(item)) => return Ok(item),
                    Some(None) => return Err(PyStopIteration::new_err(())),
                    // Another thread iterating took it: wait for the next.
                    None => {}
                },
                // Ctrl-C and other signals are handled between waits.
                Found::Idle => py.check_signals()?,
            }
        }
    }

    /// Waits up to `timeout` seconds (None: until something arrives or the
    /// watcher is closed) without the GIL; True when `_take` has something.
    #[pyo3(signature = (timeout = None))]
    fn _wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.fork.check()?;
        let timeout = timeout.map(|t| Duration::from_secs_f64(t.max(0.0)));
        Ok(matches!(py.detach(|| self.wait(timeout)), Found::Ready))
    }

    /// What `_wait` found: `(True, None)` once the watch ended, `(False,
    /// event)`, or `(False, None)` when another consumer took it first.
    /// Raises the watch's error.
    fn _take(&self, py: Python<'_>) -> PyResult<(bool, Option<Py<PyAny>>)> {
        Ok(match self.take(py)? {
            None => (false, None),
            Some(None) => (true, None),
            Some(Some(item)) => (false, Some(item)),
        })
    }

    /// Ends the watch: a wait in progress returns within a fraction of a
    /// second, and iterating goes on no further. Closing twice does nothing.
    fn close(&self, py: Python<'_>) {
        self.stopped.store(true, Ordering::Release);
        if self.fork.is_child() {
            return;
        }
        // Let the watch go now unless a wait holds it (it lets go itself).
        py.detach(|| {
            if let Some(mut pump) = self.pump.try_lock() {
                *pump = None;
            }
        });
    }

    /// True once the watch ended (closed, or after its error).
    #[getter]
    fn closed(&self) -> bool {
        self.stopped.load(Ordering::Acquire) || self.pump.try_lock().is_some_and(|p| p.is_none())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }
}

/// One commit's changes to the records a watch covers.
#[pyclass(frozen, module = "statelog")]
pub(crate) struct Change {
    /// The commit's revision.
    #[pyo3(get)]
    revision: u64,
    /// The records it wrote, in the order it wrote them (a list of
    /// :class:`Event`).
    #[pyo3(get)]
    events: Py<PyAny>,
    micros: i64,
}

impl Change {
    fn new(py: Python<'_>, change: statelog::Change) -> PyResult<Change> {
        let events = change
            .events
            .into_iter()
            .map(|e| Event::new(py, e))
            .collect::<PyResult<Vec<Event>>>()?;
        Ok(Change {
            revision: change.revision,
            events: pyo3::types::PyList::new(py, events)?.into_any().unbind(),
            micros: change.time.as_micros(),
        })
    }
}

#[pymethods]
impl Change {
    /// The commit time, UTC.
    #[getter]
    fn time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        utc_datetime(py, self.micros)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let events = self.events.bind(py).repr()?;
        Ok(format!(
            "Change(revision={}, events={events})",
            self.revision
        ))
    }
}

/// One record written by a commit.
#[pyclass(frozen, module = "statelog")]
pub(crate) struct Event {
    /// The record's namespace.
    #[pyo3(get)]
    namespace: String,
    /// Its key.
    #[pyo3(get)]
    key: String,
    /// The record as written (None when the commit deleted it).
    #[pyo3(get)]
    record: Option<Py<Record>>,
    /// The version a delete removed (0 for a write).
    #[pyo3(get)]
    deleted_version: u64,
    /// The record just before the commit, when the watch asked for it
    /// (``prev=True``; None when it did not exist).
    #[pyo3(get)]
    prev: Option<Py<Record>>,
}

fn record(
    py: Python<'_>,
    namespace: &str,
    key: &str,
    raw: Option<Versioned<RawValue>>,
) -> PyResult<Option<Py<Record>>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value: Value = raw.value.decode().map_err(|message| {
        errors::to_py(
            py,
            statelog::Error::Decode {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                type_name: "a Python value",
                message: message.to_string(),
            },
        )
    })?;
    let versioned = raw.map(|_| value);
    Py::new(py, Record::from_versioned(py, namespace, key, &versioned)?).map(Some)
}

impl Event {
    fn new(py: Python<'_>, event: statelog::Event) -> PyResult<Event> {
        let (ns, key) = (event.namespace, event.key);
        Ok(Event {
            record: record(py, &ns, &key, event.value)?,
            prev: record(py, &ns, &key, event.prev)?,
            deleted_version: event.deleted_version,
            namespace: ns,
            key,
        })
    }
}

#[pymethods]
impl Event {
    /// True when the commit deleted the record.
    #[getter]
    fn deleted(&self) -> bool {
        self.record.is_none()
    }

    /// The value written (None for a delete).
    #[getter]
    fn value(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.record {
            Some(r) => r.get().value_of(py),
            None => py.None(),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        match &self.record {
            Some(r) => {
                let value = r.get().value_of(py).bind(py).repr()?.to_string();
                Ok(format!(
                    "Event(namespace={:?}, key={:?}, value={value})",
                    self.namespace, self.key
                ))
            }
            None => Ok(format!(
                "Event(namespace={:?}, key={:?}, deleted_version={})",
                self.namespace, self.key, self.deleted_version
            )),
        }
    }
}

/// Nothing the watch covers changed up to and including `revision` (sent
/// when asked for with ``progress=SECONDS``).
#[pyclass(frozen, eq, module = "statelog")]
#[derive(PartialEq, Eq)]
pub(crate) struct Progress {
    /// The revision the watcher has seen everything up to.
    #[pyo3(get)]
    revision: u64,
}

#[pymethods]
impl Progress {
    fn __repr__(&self) -> String {
        format!("Progress(revision={})", self.revision)
    }
}
