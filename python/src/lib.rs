//! The Python package's native part, `statelog._native`: the store, its
//! transactions and results as Python classes (the pure-Python package
//! `statelog` re-exports them and adds `AsyncStore`).
//!
//! Every call into the store runs without the GIL (`Python::detach`); Python
//! code the store calls back (the functions of `update` and `transaction`)
//! takes it again for the call.

mod atfork;
mod convert;
mod coord;
mod errors;
mod files;
mod keylocks;
mod store;
mod tx;
mod types;
mod watch;

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
    m.add_class::<watch::PyWatcher>()?;
    m.add_class::<watch::Change>()?;
    m.add_class::<watch::Event>()?;
    m.add_class::<watch::Progress>()?;
    m.add_class::<coord::PyLock>()?;
    m.add_class::<coord::PyLease>()?;
    m.add_function(wrap_pyfunction!(files::restore, m)?)?;
    m.add("MAX_VALUE_LEN", statelog::MAX_VALUE_LEN)?;
    m.add("MAX_KEY_LEN", statelog::MAX_KEY_LEN)?;
    m.add("MAX_NAMESPACE_LEN", statelog::MAX_NAMESPACE_LEN)?;
    // A forked child lets go of the parent's store files (atfork.rs).
    let hook = wrap_pyfunction!(atfork::_after_fork_in_child, m)?;
    let kwargs = pyo3::types::PyDict::new(m.py());
    kwargs.set_item("after_in_child", &hook)?;
    m.py()
        .import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    m.add_function(hook)?;
    Ok(())
}
