//! A published view of the state database, read as a [`ReadView`]: one MVCC
//! read transaction, kept open for as long as this is held.

use std::ops::Bound;
use std::sync::Arc;

use crate::access::{Entries, ReadView};
use crate::db::view::View;
use crate::error::Result;
use crate::time::Timestamp;
use crate::value::Stored;

/// See the module documentation.
pub(crate) struct LocalView {
    view: Arc<View>,
}

impl LocalView {
    pub(crate) fn new(view: Arc<View>) -> LocalView {
        LocalView { view }
    }
}

impl ReadView for LocalView {
    fn revision(&self) -> u64 {
        self.view.applied().revision
    }

    fn time(&self) -> Timestamp {
        let applied = self.view.applied();
        if applied.revision > 0 {
            applied.time
        } else {
            Timestamp::EPOCH
        }
    }

    fn get(&self, address: &[u8]) -> Result<Option<Stored>> {
        self.view.get(address)
    }

    fn version(&self, address: &[u8]) -> Result<u64> {
        self.view.version(address)
    }

    fn range(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Entries> {
        Ok(Box::new(self.view.range(&start, &end)?))
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        self.view.namespaces()
    }

    fn count(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<u64> {
        self.view.count(&start, &end)
    }
}
