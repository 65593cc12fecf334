//! statelog errors as Python exceptions, and the fork guard.
//!
//! The exception classes are plain Python (`statelog/_errors.py`), so that they
//! can also derive from `ValueError` or `OSError` and carry docstrings; each
//! instance gets the Rust error's fields as attributes.

use std::error::Error as _;

use pyo3::BoundObject;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};
use statelog::Error;

use crate::convert::ConvertError;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Builds an exception of class `name` from `statelog._errors`.
fn raise(py: Python<'_>, name: &str, message: String, fields: &[(&str, Py<PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = ERRORS.get_or_try_init(py, || {
            PyModule::import(py, "statelog._errors").map(Bound::unbind)
        })?;
        let class = module.bind(py).getattr(name)?;
        let error = class.call1((message.clone(),))?;
        for (field, value) in fields {
            error.setattr(*field, value)?;
        }
        Ok(PyErr::from_value(error))
    };
    build().unwrap_or_else(|e| e)
}

fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> Py<PyAny> {
    match value.into_pyobject(py) {
        Ok(v) => v.into_any().unbind(),
        Err(_) => py.None(),
    }
}

/// The message with the chain of causes, which the Rust `Display` leaves out.
fn message(error: &Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Converts a statelog error into its exception.
pub(crate) fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let text = message(&error);
    match &error {
        Error::InvalidKey {
            part,
            value,
            reason,
        } => raise(
            py,
            "InvalidKeyError",
            text,
            &[
                ("part", obj(py, part.to_string())),
                ("value", obj(py, value)),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::Conflict {
            namespace,
            key,
            expected,
            actual,
            attempts,
        } => raise(
            py,
            "ConflictError",
            text,
            &[
                ("namespace", obj(py, namespace)),
                ("key", obj(py, key)),
                ("expected", obj(py, *expected)),
                ("actual", obj(py, *actual)),
                ("attempts", obj(py, *attempts)),
            ],
        ),
        Error::Decode {
            namespace,
            key,
            message,
            ..
        } => raise(
            py,
            "DecodeError",
            text,
            &[
                ("namespace", obj(py, namespace)),
                ("key", obj(py, key)),
                ("message", obj(py, message)),
            ],
        ),
        Error::Encode {
            namespace,
            key,
            message,
        } => raise(
            py,
            "EncodeError",
            text,
            &[
                ("namespace", obj(py, namespace)),
                ("key", obj(py, key)),
                ("message", obj(py, message)),
            ],
        ),
        Error::InvalidValue {
            namespace,
            key,
            message,
        } => raise(
            py,
            "InvalidValueError",
            text,
            &[
                ("namespace", obj(py, namespace)),
                ("key", obj(py, key)),
                ("message", obj(py, message)),
            ],
        ),
        Error::TooLarge { what, size, limit } => raise(
            py,
            "TooLargeError",
            text,
            &[
                ("what", obj(py, what)),
                ("size", obj(py, *size)),
                ("limit", obj(py, *limit)),
            ],
        ),
        Error::Corrupt {
            file,
            offset,
            reason,
        } => raise(
            py,
            "CorruptError",
            text,
            &[
                ("file", obj(py, file.to_string_lossy().into_owned())),
                ("offset", obj(py, *offset)),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::NotAStore { path, reason } => raise(
            py,
            "NotAStoreError",
            text,
            &[
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::UnsupportedFormat {
            path,
            found,
            supported,
        } => raise(
            py,
            "UnsupportedFormatError",
            text,
            &[
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("found", obj(py, *found)),
                ("supported", obj(py, *supported)),
            ],
        ),
        Error::Busy { path, pid, waited } => raise(
            py,
            "BusyError",
            text,
            &[
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("pid", obj(py, *pid)),
                ("waited", obj(py, waited.as_secs_f64())),
            ],
        ),
        Error::OutcomeUnknown { path, pid, reason } => raise(
            py,
            "OutcomeUnknownError",
            text,
            &[
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("pid", obj(py, *pid)),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::Refused { path, pid, reason } => raise(
            py,
            "RefusedError",
            text,
            &[
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("pid", obj(py, *pid)),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::Io { op, path, source } => raise(
            py,
            "IoError",
            text,
            &[
                ("op", obj(py, *op)),
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("filename", obj(py, path.to_string_lossy().into_owned())),
                ("errno", obj(py, source.raw_os_error())),
                ("strerror", obj(py, source.to_string())),
            ],
        ),
        Error::Database {
            op,
            path,
            hint,
            source,
        } => raise(
            py,
            "DatabaseError",
            text,
            &[
                ("op", obj(py, *op)),
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("hint", obj(py, *hint)),
                ("cause", obj(py, source.to_string())),
            ],
        ),
        Error::Poisoned { cause } => raise(py, "PoisonedError", text, &[("cause", obj(py, cause))]),
        Error::Closed => raise(py, "ClosedError", text, &[]),
        Error::NotEmpty { revision } => raise(
            py,
            "NotEmptyError",
            text,
            &[("revision", obj(py, *revision))],
        ),
        Error::InvalidOption { name, reason } => raise(
            py,
            "InvalidOptionError",
            text,
            &[("name", obj(py, *name)), ("reason", obj(py, reason))],
        ),
        Error::InvalidSnapshot {
            line,
            column,
            section,
            message,
        } => raise(
            py,
            "InvalidSnapshotError",
            text,
            &[
                ("line", obj(py, *line)),
                ("column", obj(py, *column)),
                ("section", obj(py, section.clone())),
                ("message", obj(py, message)),
            ],
        ),
        Error::InvalidBackup { path, reason } => raise(
            py,
            "InvalidBackupError",
            text,
            &[
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::TargetNotEmpty { path, reason } => raise(
            py,
            "TargetNotEmptyError",
            text,
            &[
                ("path", obj(py, path.to_string_lossy().into_owned())),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::SnapshotIo { op, source } => raise(
            py,
            "SnapshotIoError",
            text,
            &[
                ("op", obj(py, *op)),
                ("errno", obj(py, source.raw_os_error())),
                ("strerror", obj(py, source.to_string())),
            ],
        ),
        Error::Unsupported { what, reason } => raise(
            py,
            "UnsupportedError",
            text,
            &[("what", obj(py, what)), ("reason", obj(py, reason))],
        ),
        Error::Unreachable {
            endpoints,
            op,
            reason,
        } => raise(
            py,
            "UnreachableError",
            text,
            &[
                ("endpoints", obj(py, endpoints)),
                ("op", obj(py, *op)),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::LimitExceeded { limit, what, hint } => raise(
            py,
            "LimitExceededError",
            text,
            &[
                ("limit", obj(py, *limit)),
                ("what", obj(py, what)),
                ("hint", obj(py, hint)),
            ],
        ),
        Error::Compacted {
            requested,
            compacted,
        } => raise(
            py,
            "CompactedError",
            text,
            &[
                ("requested", obj(py, *requested)),
                ("compacted", obj(py, *compacted)),
            ],
        ),
        Error::WatchCancelled {
            resume_from,
            reason,
        } => raise(
            py,
            "WatchCancelledError",
            text,
            &[
                ("resume_from", obj(py, *resume_from)),
                ("reason", obj(py, reason)),
            ],
        ),
        Error::PatchFailed {
            namespace,
            key,
            message,
        } => raise(
            py,
            "PatchFailedError",
            text,
            &[
                ("namespace", obj(py, namespace)),
                ("key", obj(py, key)),
                ("message", obj(py, message)),
            ],
        ),
        Error::RevisionMismatch {
            namespace,
            key,
            expected,
            actual,
        } => raise(
            py,
            "RevisionMismatchError",
            text,
            &[
                ("namespace", obj(py, namespace)),
                ("key", obj(py, key)),
                ("expected", obj(py, *expected)),
                ("actual", obj(py, *actual)),
                ("attempts", obj(py, 1)),
            ],
        ),
        Error::Fenced {
            lock,
            token,
            current,
        } => raise(
            py,
            "FencedError",
            text,
            &[
                ("lock", obj(py, lock)),
                ("token", obj(py, *token)),
                ("current", obj(py, *current)),
            ],
        ),
        Error::LockHeld {
            lock,
            token,
            holder,
            waited,
        } => raise(
            py,
            "LockHeldError",
            text,
            &[
                ("lock", obj(py, lock)),
                ("token", obj(py, *token)),
                ("holder", obj(py, holder)),
                ("waited", obj(py, waited.as_secs_f64())),
            ],
        ),
        Error::LeaseExpired { lease } => {
            raise(py, "LeaseExpiredError", text, &[("lease", obj(py, *lease))])
        }
        Error::IdempotencyKeyReused { key, first } => raise(
            py,
            "IdempotencyKeyReusedError",
            text,
            &[("key", obj(py, key)), ("first", obj(py, *first))],
        ),
        // A variant added to the library later: the base class, with its text.
        _ => raise(py, "StatelogError", text, &[]),
    }
}

/// A Python value that cannot be stored, as `EncodeError`.
pub(crate) fn encode(namespace: &str, key: &str, error: &ConvertError) -> PyErr {
    Python::attach(|py| {
        to_py(
            py,
            Error::Encode {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                message: error.describe(),
            },
        )
    })
}

/// A stored value that Python cannot hold, as `DecodeError`.
pub(crate) fn decode(namespace: &str, key: &str, error: &ConvertError) -> PyErr {
    Python::attach(|py| {
        to_py(
            py,
            Error::Decode {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                type_name: "a Python value",
                message: error.describe(),
            },
        )
    })
}

/// Remembers the process that opened a store: a handle copied into a child by
/// `fork` shares the parent's file descriptors and lock, so the child must
/// never use it (nor close it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fork {
    pid: u32,
}

impl Fork {
    pub(crate) fn here() -> Fork {
        Fork {
            pid: std::process::id(),
        }
    }

    /// True in a process forked after the store was opened.
    pub(crate) fn is_child(&self) -> bool {
        std::process::id() != self.pid
    }

    pub(crate) fn check(&self) -> PyResult<()> {
        if !self.is_child() {
            return Ok(());
        }
        let now = std::process::id();
        Python::attach(|py| {
            Err(raise(
                py,
                "ForkError",
                format!(
                    "this Store was opened by process {} and is used in process {now}, a fork of \
                     it; a store handle cannot cross a fork: open statelog.Store(path) in this \
                     process instead",
                    self.pid
                ),
                &[("opened_by", obj(py, self.pid)), ("pid", obj(py, now))],
            ))
        })
    }
}

/// Keyword arguments as a dict (for reports).
pub(crate) fn dict<'py>(
    py: Python<'py>,
    items: &[(&str, Py<PyAny>)],
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (k, v) in items {
        out.set_item(*k, v)?;
    }
    Ok(out)
}

/// Any value as a Python object (`None` if it cannot be converted).
pub(crate) fn py_obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, value: T) -> Py<PyAny> {
    obj(py, value)
}
