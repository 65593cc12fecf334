//! The Python package's native part, `statelog._native`: the store, its
//! transactions and results as Python classes (the pure-Python package
//! `statelog` re-exports them and adds `AsyncStore`).
//!
//! Every call into the store runs without the GIL (`Python::detach`); Python
//! code the store calls back (the functions of `update` and `transaction`)
//! takes it again for the call.

mod convert;
mod errors;
mod files;
mod keylocks;
mod store;
mod tx;
mod types;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::PyStore>()?;
    m.add_class::<tx::Transaction>()?;
    m.add_class::<types::Record>()?;
    m.add_class::<types::Committed>()?;
    m.add_class::<types::Deleted>()?;
    m.add_class::<types::Ext>()?;
    m.add_class::<types::RecordIterator>()?;
    m.add_function(wrap_pyfunction!(files::restore, m)?)?;
    m.add("MAX_VALUE_LEN", statelog::MAX_VALUE_LEN)?;
    m.add("MAX_KEY_LEN", statelog::MAX_KEY_LEN)?;
    m.add("MAX_NAMESPACE_LEN", statelog::MAX_NAMESPACE_LEN)?;
    Ok(())
}
