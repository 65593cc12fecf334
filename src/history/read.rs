//! The past of a store this process holds: the first revision it can read
//! back, records and views as of a revision or a time, a record's versions.

use std::sync::Arc;

use super::view::{AsOfView, Tables, Version};
use crate::access::{ReadView, Stored};
use crate::error::{Error, Result};
use crate::log::catalog;
use crate::store::Shared;
use crate::store::engine::Engine;
use crate::time::Timestamp;

/// A point in the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// The state right after this revision's commit.
    Revision(u64),
    /// The state left by the commits before this time.
    Time(Timestamp),
}

impl Shared {
    /// The first revision the store can read back: watched from, and read
    /// at. The log holds every commit from it on, and the history index
    /// answers for it.
    pub(crate) fn first_revision_locked(&self, engine: &Engine) -> Result<u64> {
        let files = catalog::segment_files(engine.log.fs().as_ref(), engine.log.dir())?;
        let log_first = files
            .first()
            .map_or(engine.applied.revision + 1, |(first, _)| *first);
        Ok(log_first.max(engine.history_from))
    }

    /// [`first_revision_locked`](Self::first_revision_locked) under the lock.
    pub(crate) fn first_revision(&self) -> Result<u64> {
        let engine = self.engine.lock();
        self.first_revision_locked(&engine)
    }

    fn past_tables(&self) -> Result<Tables> {
        Tables::open(&self.db, Arc::clone(&self.db_path))
    }

    /// One record as it was right after `revision`.
    pub(crate) fn record_as_of(&self, address: &[u8], revision: u64) -> Result<Option<Stored>> {
        self.past_tables()?.get(address, revision)
    }

    /// A view of the store as it was at `at`.
    pub(crate) fn view_at(&self, at: At) -> Result<Arc<dyn ReadView>> {
        let first = self.first_revision()?;
        self.view_from(at, first, first)
    }

    /// A view of the store at `revision`, which may be older than the first
    /// revision the log holds as long as the history index answers for it
    /// (the base of a backup that carries the whole log).
    pub(crate) fn view_for_base(&self, revision: u64) -> Result<Arc<dyn ReadView>> {
        let (floor, first) = {
            let engine = self.engine.lock();
            (engine.history_from, self.first_revision_locked(&engine)?)
        };
        self.view_from(At::Revision(revision), floor.max(1), first)
    }

    /// A view at `at`, readable from `low` on (`first`: what errors name).
    fn view_from(&self, at: At, low: u64, first: u64) -> Result<Arc<dyn ReadView>> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // Published before the tables are read: they hold at least this.
        let visible = self.visible.get().applied();
        let head = visible.revision;
        let tables = self.past_tables()?;
        // An empty store's state (revision 0) is readable while the log
        // still begins at the first commit.
        let readable = |r: u64| r >= low || (r == 0 && low <= 1);
        let revision = match at {
            At::Revision(revision) => revision,
            At::Time(time) => {
                let found = tables.revision_before(time, low.min(head), head)?;
                let found_time = if found == head {
                    Some(visible.time)
                } else {
                    tables.time_of(found)?
                };
                if found_time.is_some_and(|t| t < time) {
                    found
                } else if low <= 1 {
                    0
                } else {
                    return Err(Error::Compacted {
                        requested: found,
                        compacted: Some(first),
                    });
                }
            }
        };
        if revision > head {
            return Err(Error::InvalidOption {
                name: "revision",
                reason: format!("revision {revision} is after the store's current revision {head}"),
            });
        }
        if !readable(revision) {
            return Err(Error::Compacted {
                requested: revision,
                compacted: Some(first),
            });
        }
        let time = if revision == head {
            visible.time
        } else {
            tables.time_of(revision)?.unwrap_or(Timestamp::EPOCH)
        };
        Ok(Arc::new(AsOfView::new(tables, revision, time)))
    }

    /// Every version of a record the store still holds, oldest first.
    pub(crate) fn versions(&self, address: &[u8]) -> Result<Vec<Version>> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.past_tables()?.versions(address)
    }
}
