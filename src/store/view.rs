//! What readers see: the published view of the state database.
//!
//! The engine applies a batch to redb with a non-durable commit *before* its
//! log sync returns (so that the commit's CPU work overlaps the disk write), and
//! redb would show that commit to any new read transaction at once. Readers
//! therefore never begin read transactions of their own: they share the
//! [`View`] the engine publishes once a batch is acknowledged (after its sync in
//! `Sync` mode), and a reader can never observe a state that a crash could take
//! back. A view also carries the revision and commit time it shows, so the state
//! database need not record them on every commit.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use redb::{Database, ReadOnlyTable};

use super::schema::{Applied, RECORDS};
use crate::error::Result;

/// One read transaction of the state database, opened when its revision
/// became visible, shared by every reader until the next one replaces it.
pub(crate) struct View {
    /// Opened in its own read transaction, whose snapshot it keeps alive.
    records: ReadOnlyTable<&'static [u8], &'static [u8]>,
    applied: Applied,
}

impl View {
    /// Opens a view of what `db` holds now, which must be the state at
    /// `applied`.
    pub(crate) fn open(db: &Database, db_path: &Path, applied: Applied) -> Result<Arc<View>> {
        let records = super::read_table(db, db_path, RECORDS, "open the records table")?;
        Ok(Arc::new(View { records, applied }))
    }

    /// The records table as of [`applied`](Self::applied).
    pub(crate) fn records(&self) -> &ReadOnlyTable<&'static [u8], &'static [u8]> {
        &self.records
    }

    /// The last commit the view includes.
    pub(crate) fn applied(&self) -> Applied {
        self.applied
    }
}

/// The slot holding the newest published view.
pub(crate) struct Visible(RwLock<Arc<View>>);

impl std::fmt::Debug for Visible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Visible")
            .field("applied", &self.0.read().applied)
            .finish_non_exhaustive()
    }
}

impl Visible {
    pub(crate) fn new(view: Arc<View>) -> Visible {
        Visible(RwLock::new(view))
    }

    /// The newest published view.
    pub(crate) fn get(&self) -> Arc<View> {
        Arc::clone(&self.0.read())
    }

    /// Replaces the published view. Called by the engine only, under its lock,
    /// so that the visible revision never goes backwards.
    pub(crate) fn publish(&self, view: Arc<View>) {
        // The old view is dropped outside the lock.
        let _old = std::mem::replace(&mut *self.0.write(), view);
    }
}
