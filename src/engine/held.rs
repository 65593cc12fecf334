//! The state database's write held open across batches (`db/tail.rs` says
//! why), and its fold: the commit that lands it in redb.
//!
//! Only batches that stage their writes (up to `STAGE_AT_MOST` writes, in
//! either durability mode) go into the held write: they touch redb only
//! after their log write, when nothing but a failure that poisons the engine
//! can stop them, so a held write never needs to be rolled back. Every other
//! use of the state database folds first: a batch that writes in place, reads
//! of the past, checkpoints, backups, pruning, a restore.
//!
//! The tail is emptied only when redb has committed its writes. A failure
//! anywhere that drops the write (a failed log write or sync, a failed
//! apply or commit) leaves a tail with nothing held: acknowledged commits
//! the state database lacks, so reads of the past refuse until a reopen.

use super::Engine;
use crate::db::tail::Tail;
use crate::db::write::Batch;
use crate::error::{Error, Result};

/// A held write is folded once its tail holds this many addresses...
const FOLD_ADDRESSES: usize = 1024;

/// ... or this many bytes were written into it.
const FOLD_BYTES: usize = 4 << 20;

impl Engine {
    /// The write a batch goes into: the held one, or a new one.
    pub(super) fn take_held(&mut self) -> Result<Batch> {
        match self.held.take() {
            Some(batch) => Ok(batch),
            None => self.db.begin_batch("begin a write"),
        }
    }

    /// Gives back a write no batch wrote into: held again while it holds
    /// writes, aborted otherwise.
    pub(super) fn give_back(&mut self, batch: Batch) -> Result<()> {
        if self.tail.is_empty() {
            return batch.abort();
        }
        self.held = Some(batch);
        Ok(())
    }

    /// Whether the held write's tail has grown enough to be folded.
    pub(super) fn fold_due(&self) -> bool {
        self.tail.len() >= FOLD_ADDRESSES || self.tail.bytes() >= FOLD_BYTES
    }

    /// Lands the held write in the state database (a non-durable commit, as a
    /// batch's) and publishes a view of it. Refused once a failure dropped a
    /// held write: the database then lacks commits readers were shown.
    pub(super) fn fold(&mut self) -> Result<()> {
        let Some(batch) = self.held.take() else {
            if self.tail.is_empty() {
                return Ok(());
            }
            return Err(Error::Poisoned {
                cause: self
                    .poisoned
                    .clone()
                    .unwrap_or_else(|| "the state database lost held writes".to_owned()),
            });
        };
        if let Err(e) = batch.commit("commit the held writes") {
            return Err(self.failed(e));
        }
        self.tail = Tail::default();
        self.publish()
    }
}
