//! What the change feed and reads of the past need of the engine: the
//! watchers' hub, where a watch starts, the first revision the store can
//! read back, the history index's tables, and its pruning with retention.

use std::path::PathBuf;
use std::sync::Arc;

use super::Engine;
use crate::db::past::Tables;
use crate::error::Result;
use crate::fs::Fs;
use crate::log::catalog;
use crate::log::segment::StoreId;
use crate::watch::hub::{Hub, Subscriber};

/// Where a new watch starts: subscribed at `head` (every batch after it
/// comes through `subscriber`), and how to read the log before it.
pub(crate) struct WatchStart {
    pub head: u64,
    pub first: u64,
    pub hub: Arc<Hub>,
    pub subscriber: Arc<Subscriber>,
    pub fs: Arc<dyn Fs>,
    pub dir: PathBuf,
    pub store_id: StoreId,
}

impl Engine {
    /// The first revision the store can read back: watched from and read at.
    /// The log holds every commit from it on, and the history index answers
    /// for it.
    pub(crate) fn first_revision(&self) -> Result<u64> {
        let files = catalog::segment_files(self.log.fs().as_ref(), self.log.dir())?;
        let log_first = files
            .first()
            .map_or(self.applied.revision + 1, |(first, _)| *first);
        Ok(log_first.max(self.history_from))
    }

    /// The first revision the history index answers for.
    pub(crate) fn history_from(&self) -> u64 {
        self.history_from
    }

    /// Subscribes a watcher (at most `buffer` batches queued) at the current
    /// revision.
    pub(crate) fn watch_start(&self, buffer: usize) -> Result<WatchStart> {
        self.check_poisoned()?;
        Ok(WatchStart {
            head: self.applied.revision,
            first: self.first_revision()?,
            hub: Arc::clone(&self.watchers),
            subscriber: self.watchers.subscribe(buffer),
            fs: Arc::clone(self.log.fs()),
            dir: self.log.dir().to_owned(),
            store_id: *self.log.store_id(),
        })
    }

    /// Ends every watch (the holder is closing).
    pub(crate) fn end_watches(&self, reason: &str) {
        self.watchers.close(reason);
    }

    /// The tables a read of the past reads, opened now (after every revision
    /// published so far, which lands the held write first).
    pub(crate) fn past_tables(&mut self) -> Result<Tables> {
        self.fold()?;
        Tables::open(&self.db)
    }

    /// Lets the history index go of what the log no longer holds: once the
    /// log starts at S, reads go back to S - 1 at most (a backup's base).
    /// Without a sync, like the batches (the next checkpoint makes it
    /// durable; losing it only keeps more history).
    pub(crate) fn prune_history(&mut self) -> Result<()> {
        let files = catalog::segment_files(self.log.fs().as_ref(), self.log.dir())?;
        let Some(&(first, _)) = files.first() else {
            return Ok(());
        };
        let floor = first.saturating_sub(1);
        if floor <= self.history_from || self.read_only.is_some() {
            return Ok(());
        }
        self.fold()?;
        if self.read_only.is_some() {
            return Ok(());
        }
        self.db.prune_history(floor)?;
        self.history_from = floor;
        Ok(())
    }
}
