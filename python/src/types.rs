//! The small classes results come in: `Record`, `Committed`, `Deleted`, `Ext`,
//! and the iterator `list` returns.

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDelta, PyTzInfo};
use rmpv::Value;
use statelog::{List, Versioned};

use crate::convert;
use crate::errors::{self, Fork};

/// A record: its value and the metadata the store keeps with it.
#[pyclass(frozen, module = "statelog")]
pub(crate) struct Record {
    /// The namespace.
    #[pyo3(get)]
    namespace: String,
    /// The key.
    #[pyo3(get)]
    key: String,
    /// The value (plain Python data).
    #[pyo3(get)]
    value: Py<PyAny>,
    /// 1 when the record was created, +1 on every write since.
    #[pyo3(get)]
    version: u64,
    /// The revision that created the record.
    #[pyo3(get)]
    create_revision: u64,
    /// The revision that last wrote it.
    #[pyo3(get)]
    mod_revision: u64,
    updated_micros: i64,
    /// True when this is the first result of a write with the same
    /// idempotency key, returned again: nothing was written now.
    #[pyo3(get)]
    replayed: bool,
}

impl Record {
    /// Converts a record read from the store (the GIL is held).
    pub(crate) fn from_versioned(
        py: Python<'_>,
        namespace: &str,
        key: &str,
        record: &Versioned<Value>,
    ) -> PyResult<Record> {
        let value = convert::to_python(py, &record.value)
            .map_err(|e| errors::decode(namespace, key, &e))?;
        Ok(Record {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            value: value.unbind(),
            version: record.version,
            create_revision: record.create_revision,
            mod_revision: record.mod_revision,
            updated_micros: record.updated_at.as_micros(),
            replayed: false,
        })
    }

    /// Marks a record returned for a replayed write.
    pub(crate) fn replayed(mut self, replayed: bool) -> Record {
        self.replayed = replayed;
        self
    }
}

impl Record {
    /// The value (a new reference).
    pub(crate) fn value_of(&self, py: Python<'_>) -> Py<PyAny> {
        self.value.clone_ref(py)
    }
}

#[pymethods]
impl Record {
    /// When the record was last written: the commit time, UTC.
    #[getter]
    fn updated_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        utc_datetime(py, self.updated_micros)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let value = self.value.bind(py).repr()?;
        Ok(format!(
            "Record(namespace={:?}, key={:?}, version={}, mod_revision={}, value={value})",
            self.namespace, self.key, self.version, self.mod_revision
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<Record>() else {
            return Ok(false);
        };
        let other = other.get();
        Ok(self.namespace == other.namespace
            && self.key == other.key
            && self.version == other.version
            && self.create_revision == other.create_revision
            && self.mod_revision == other.mod_revision
            && self.updated_micros == other.updated_micros
            && self.value.bind(py).eq(other.value.bind(py))?)
    }
}

/// Microseconds since the epoch as an aware `datetime` in UTC, exactly.
pub(crate) fn utc_datetime(py: Python<'_>, micros: i64) -> PyResult<Bound<'_, PyAny>> {
    static EPOCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let epoch = EPOCH.get_or_try_init(py, || {
        py.import("datetime")?
            .getattr("datetime")?
            .call1((1970, 1, 1, 0, 0, 0, 0, PyTzInfo::utc(py)?))
            .map(Bound::unbind)
    })?;
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let delta = PyDelta::new(
        py,
        i32::try_from(days).unwrap_or(i32::MAX),
        i32::try_from(rest / 1_000_000).unwrap_or(0),
        i32::try_from(rest % 1_000_000).unwrap_or(0),
        true,
    )?;
    epoch.bind(py).call_method1("__add__", (delta,))
}

/// What a successful write did.
#[pyclass(frozen, eq, module = "statelog")]
#[derive(PartialEq, Eq)]
pub(crate) struct Committed {
    /// The revision of the commit (for a write skipped as unchanged, the
    /// revision that last wrote the record).
    #[pyo3(get)]
    revision: u64,
    /// The record's version now.
    #[pyo3(get)]
    version: u64,
    /// False when the write was skipped because the value was unchanged.
    #[pyo3(get)]
    changed: bool,
    /// True when this is the first result of a write with the same
    /// idempotency key, returned again: nothing was written now.
    #[pyo3(get)]
    replayed: bool,
}

impl Committed {
    pub(crate) fn new(revision: u64, version: u64, changed: bool, replayed: bool) -> Committed {
        Committed {
            revision,
            version,
            changed,
            replayed,
        }
    }
}

impl From<statelog::Committed> for Committed {
    fn from(c: statelog::Committed) -> Committed {
        Committed::new(c.revision, c.version, c.changed, false)
    }
}

#[pymethods]
impl Committed {
    fn __repr__(&self) -> String {
        format!(
            "Committed(revision={}, version={}, changed={}{})",
            self.revision,
            self.version,
            if self.changed { "True" } else { "False" },
            if self.replayed { ", replayed=True" } else { "" }
        )
    }
}

/// What a successful delete did.
#[pyclass(frozen, eq, module = "statelog")]
#[derive(PartialEq, Eq)]
pub(crate) struct Deleted {
    /// The revision of the commit.
    #[pyo3(get)]
    revision: u64,
    /// The version the record had.
    #[pyo3(get)]
    version: u64,
    /// True when this is the first result of a delete with the same
    /// idempotency key, returned again: nothing was written now.
    #[pyo3(get)]
    replayed: bool,
}

impl Deleted {
    pub(crate) fn new(revision: u64, version: u64, replayed: bool) -> Deleted {
        Deleted {
            revision,
            version,
            replayed,
        }
    }
}

impl From<statelog::Deleted> for Deleted {
    fn from(d: statelog::Deleted) -> Deleted {
        Deleted::new(d.revision, d.version, false)
    }
}

#[pymethods]
impl Deleted {
    fn __repr__(&self) -> String {
        format!(
            "Deleted(revision={}, version={}{})",
            self.revision,
            self.version,
            if self.replayed { ", replayed=True" } else { "" }
        )
    }
}

/// A MessagePack extension value: a type code from -128 to 127 and its bytes.
/// Values written by other programs may hold them; statelog keeps them as they
/// are. Type 105 is not one: it holds integers beyond 64 bits, which read as
/// `int` (and an `Ext(105, ...)` cannot be stored).
#[pyclass(frozen, eq, hash, module = "statelog")]
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct Ext {
    /// The extension type code.
    #[pyo3(get)]
    pub(crate) code: i8,
    pub(crate) data: Vec<u8>,
}

#[pymethods]
impl Ext {
    #[new]
    fn new(code: i8, data: Vec<u8>) -> Ext {
        Ext { code, data }
    }

    /// The extension's bytes.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.data)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let data = PyBytes::new(py, &self.data).repr()?;
        Ok(format!("Ext({}, {data})", self.code))
    }
}

/// The records of a namespace in key order, read from one snapshot as they are
/// iterated (memory does not grow with the namespace).
#[pyclass(frozen, module = "statelog")]
pub(crate) struct RecordIterator {
    namespace: String,
    list: Mutex<Option<List<Value>>>,
    fork: Fork,
}

impl RecordIterator {
    pub(crate) fn new(namespace: String, list: List<Value>, fork: Fork) -> RecordIterator {
        RecordIterator {
            namespace,
            list: Mutex::new(Some(list)),
            fork,
        }
    }
}

impl Drop for RecordIterator {
    fn drop(&mut self) {
        if self.fork.is_child() {
            // Its snapshot belongs to the parent's store: leave it alone.
            if let Some(list) = self.list.get_mut().take() {
                std::mem::forget(list);
            }
        }
    }
}

#[pymethods]
impl RecordIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Record>> {
        self.fork.check()?;
        // The lock is taken without the GIL: another thread may hold it while
        // it reads, and it never waits for the GIL while holding it.
        let item = py.detach(|| {
            let mut list = self.list.lock();
            let item = list.as_mut().and_then(Iterator::next);
            if item.is_none() {
                // Done: let the snapshot go.
                *list = None;
            }
            item
        });
        match item {
            None => Ok(None),
            Some(Err(e)) => Err(errors::to_py(py, e)),
            Some(Ok((key, record))) => {
                Record::from_versioned(py, &self.namespace, &key, &record).map(Some)
            }
        }
    }
}
