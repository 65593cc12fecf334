//! Calling Python from inside a store call: the function of `update`, and the
//! function of `transaction` with its `Transaction` object.

use parking_lot::Mutex;
use pyo3::prelude::*;
use rmpv::Value;
use statelog::{Store, Tx};

use crate::convert;
use crate::errors::{self, Fork};
use crate::store::key_range;
use crate::types::{Record, RecordIterator};

/// Why a store call that runs Python code failed: the store, or the Python
/// code (whose exception is passed on as it is).
pub(crate) enum CallError {
    Store(statelog::Error),
    Python(PyErr),
}

impl From<statelog::Error> for CallError {
    fn from(e: statelog::Error) -> CallError {
        CallError::Store(e)
    }
}

/// One attempt of `update`: the old value to Python, `fn` called, the result
/// back. Called without the GIL; takes it for the call.
pub(crate) fn call_update(
    namespace: &str,
    key: &str,
    f: &Py<PyAny>,
    old: Option<Value>,
) -> Result<Value, CallError> {
    Python::attach(|py| {
        let old = match &old {
            None => py.None().into_bound(py),
            Some(v) => convert::to_python(py, v)
                .map_err(|e| CallError::Python(errors::decode(namespace, key, &e)))?,
        };
        let new = f.bind(py).call1((old,)).map_err(CallError::Python)?;
        convert::to_value(&new).map_err(|e| CallError::Python(errors::encode(namespace, key, &e)))
    })
}

/// The library's transaction, lent to Python for the duration of one call of
/// the transaction's function.
struct Lent(*mut Tx);

// SAFETY: the pointer is only dereferenced while the `Mutex` around it is held
// and while it is `Some`; `run_transaction` sets it to `None` (taking the
// mutex, so no use is in progress) before the `&mut Tx` it came from ends.
unsafe impl Send for Lent {}

/// A transaction in progress, handed to the function given to
/// `Store.transaction`. Usable only while that function runs.
#[pyclass(frozen, module = "statelog")]
pub(crate) struct Transaction {
    tx: Mutex<Option<Lent>>,
    fork: Fork,
}

/// Clears the lent pointer when the call ends, however it ends.
struct Lend<'a>(&'a Transaction);

impl Drop for Lend<'_> {
    fn drop(&mut self) {
        self.0.tx.lock().take();
    }
}

impl Transaction {
    /// Runs `f` on the transaction. The lock is taken without the GIL (the
    /// holder never waits for the GIL), and `f` runs without it too.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Tx) -> statelog::Result<T> + Send,
    ) -> PyResult<T> {
        self.fork.check()?;
        let result = py.detach(|| {
            let guard = self.tx.lock();
            // SAFETY: see `Lent`: the pointer is valid while it is `Some`, and
            // the lock makes this the only use.
            guard.as_ref().map(|lent| f(unsafe { &mut *lent.0 }))
        });
        match result {
            Some(r) => r.map_err(|e| errors::to_py(py, e)),
            None => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this transaction has ended: use the Transaction only inside the function \
                 given to Store.transaction",
            )),
        }
    }
}

fn encode(namespace: &str, key: &str, value: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert::to_value(value).map_err(|e| errors::encode(namespace, key, &e))
}

#[pymethods]
impl Transaction {
    /// The record as this transaction sees it (its own writes included), or
    /// None. The commit succeeds only if the record is still at the version
    /// read here.
    fn get(&self, py: Python<'_>, namespace: String, key: String) -> PyResult<Option<Record>> {
        let found = self.with(py, |tx| tx.get::<Value>(&namespace, &key))?;
        found
            .map(|r| Record::from_versioned(py, &namespace, &key, &r))
            .transpose()
    }

    /// Writes `value` at the commit.
    #[pyo3(signature = (namespace, key, value, *, if_changed = false))]
    fn put(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        value: &Bound<'_, PyAny>,
        if_changed: bool,
    ) -> PyResult<()> {
        let value = encode(&namespace, &key, value)?;
        self.with(py, |tx| {
            if if_changed {
                tx.put_if_changed(&namespace, &key, &value)
            } else {
                tx.put(&namespace, &key, &value)
            }
        })
    }

    /// Creates the record at the commit; the commit fails (and the function
    /// runs again) if it exists by then.
    fn create(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.compare_and_swap(py, namespace, key, 0, value)
    }

    /// Writes `value` at the commit if the record is then at version
    /// `expected` (0: absent).
    fn compare_and_swap(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        expected: u64,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let value = encode(&namespace, &key, value)?;
        self.with(py, |tx| {
            tx.expect_version(&namespace, &key, expected)?;
            tx.put(&namespace, &key, &value)
        })
    }

    /// Removes the record at the commit (nothing if it is absent).
    fn delete(&self, py: Python<'_>, namespace: String, key: String) -> PyResult<()> {
        self.with(py, |tx| tx.delete(&namespace, &key))
    }

    /// Makes the commit depend on the record being at `version` (0: absent),
    /// for records the function relied on without reading them through `get`.
    fn expect_version(
        &self,
        py: Python<'_>,
        namespace: String,
        key: String,
        version: u64,
    ) -> PyResult<()> {
        self.with(py, |tx| tx.expect_version(&namespace, &key, version))
    }

    /// The records of `namespace` in the transaction's snapshot (without its
    /// own writes). Not re-checked at the commit: use `expect_version` for the
    /// keys that matter.
    #[pyo3(signature = (namespace, *, prefix = None, start = None, end = None))]
    fn list(
        &self,
        py: Python<'_>,
        namespace: String,
        prefix: Option<String>,
        start: Option<String>,
        end: Option<String>,
    ) -> PyResult<RecordIterator> {
        let list = self.with(py, |tx| {
            tx.snapshot()
                .list::<Value>(&namespace, key_range(prefix, start, end)?)
        })?;
        Ok(RecordIterator::new(namespace, list, self.fork))
    }

    /// The revision of the snapshot the transaction reads.
    #[getter]
    fn revision(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |tx| tx.snapshot().revision())
    }
}

/// `Store.transaction(fn)`: the library's transaction loop, calling `fn` with
/// a `Transaction` on each attempt. With an idempotency key, the key is
/// checked before `fn` runs: a replay returns the first call's result (kept
/// in the key, so it must be a value the store can hold) without calling
/// `fn`. Returns the result and whether it was a replay.
pub(crate) fn run_transaction(
    py: Python<'_>,
    store: &Store,
    f: &Py<PyAny>,
    fork: Fork,
    idempotency_key: Option<&str>,
) -> PyResult<(Py<PyAny>, bool)> {
    let attempt = |tx: &mut Tx| -> Result<Py<PyAny>, CallError> {
        Python::attach(|py| {
            let handle = Bound::new(
                py,
                Transaction {
                    tx: Mutex::new(Some(Lent(tx as *mut Tx))),
                    fork,
                },
            )
            .map_err(CallError::Python)?;
            let _lend = Lend(handle.get());
            let value = f.bind(py).call1((handle.clone(),));
            value.map(Bound::unbind).map_err(CallError::Python)
        })
    };
    let Some(idempotency_key) = idempotency_key else {
        return match py.detach(|| store.transaction(attempt)) {
            Ok(outcome) => Ok((outcome.value, false)),
            Err(CallError::Store(e)) => Err(errors::to_py(py, e)),
            Err(CallError::Python(e)) => Err(e),
        };
    };
    let keyed = py.detach(|| {
        store.transaction_with_key(idempotency_key, |tx: &mut Tx| {
            let result = attempt(tx)?;
            Python::attach(|py| {
                convert::to_value(result.bind(py))
                    .map_err(|e| CallError::Python(errors::encode("(transaction)", "(result)", &e)))
            })
        })
    });
    match keyed {
        Ok(outcome) => {
            let result = convert::to_python(py, &outcome.value)
                .map_err(|e| errors::decode("(transaction)", "(result)", &e))?;
            Ok((result.unbind(), outcome.replayed))
        }
        Err(CallError::Store(e)) => Err(errors::to_py(py, e)),
        Err(CallError::Python(e)) => Err(e),
    }
}
