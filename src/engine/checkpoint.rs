//! Checkpoints (the state database made durable, so a restart replays only
//! the log after it), log retention after them, and what a backup run needs
//! of the engine: a consistent point, a pin on the log it copies, and the
//! record of what it copied.

use super::{Engine, SinceCheckpoint};
use crate::db::Snapshot;
use crate::db::schema::Applied;
use crate::error::Result;
use crate::log::{Position, retention};
use crate::options::CheckpointPolicy;
use crate::time::Timestamp;

/// The consistent point of a backup run: every commit up to it is durable in
/// the log.
pub(crate) struct BackupPoint {
    /// The state's revision and commit time.
    pub applied: Applied,
    /// Where the log ends after it.
    pub end: Position,
    /// The state at that revision, when asked for and the store has commits.
    pub snapshot: Option<Snapshot>,
}

impl Engine {
    /// Whether the checkpoint policy asks for a checkpoint now.
    /// A replay the open kept in memory is always due: the checkpoint writes
    /// it, so that a crash does not replay it again.
    pub(crate) fn checkpoint_due(&self, policy: &CheckpointPolicy) -> bool {
        let since = &self.since_checkpoint;
        self.catching_up()
            || since.commits > 0
                && (since.commits >= policy.commits
                    || since.bytes >= policy.log_bytes
                    || since.since.elapsed() >= policy.interval)
    }

    /// Makes the state database durable at the applied revision, so a restart
    /// replays only the log after it. False when there was nothing to do.
    pub(crate) fn checkpoint(&mut self) -> Result<bool> {
        self.check_poisoned()?;
        // Read-only: what was replayed is in memory only, and stays in the log.
        if self.applied == self.checkpointed || self.read_only.is_some() {
            return Ok(false);
        }
        // Lands the held write; a replay the open kept in memory is written
        // and made durable here (`held.rs`), or the file system was found
        // to take no writes.
        self.fold()?;
        if self.read_only.is_some() {
            return Ok(false);
        }
        if self.applied != self.checkpointed
            && let Err(e) = self.make_durable()
        {
            return Err(self.failed(e));
        }
        Ok(true)
    }

    /// The checkpoint's writes: the log synced as far as the state, the
    /// state database committed durably, then retention. An error leaves
    /// the engine as it was, for the caller to handle.
    pub(super) fn make_durable(&mut self) -> Result<()> {
        // IMPORTANT: the log must be durable at least as far as the state database
        // is about to be (in Relaxed mode it may not be yet; in Sync mode it is).
        if self.log.synced_revision() < self.log.last_revision() {
            self.log.sync()?;
        }
        self.db.checkpoint(&self.applied)?;
        self.checkpointed = self.applied;
        self.since_checkpoint = SinceCheckpoint::now();
        if let Err(e) = self.retain() {
            // The checkpoint stands; old segments stay until a later one.
            tracing::warn!(error = %e, "log retention failed; old segments were kept");
        }
        Ok(())
    }

    /// Removes the old log segments the retention policy lets go: only sealed
    /// ones wholly behind the last checkpoint, never one a running backup
    /// copies, and (if so configured) none the last backup has not copied.
    pub(crate) fn retain(&mut self) -> Result<retention::Outcome> {
        if self.read_only.is_some()
            || self.retention.max_segments.is_none()
                && self.retention.max_bytes.is_none()
                && self.retention.max_age.is_none()
        {
            return Ok(retention::Outcome::default());
        }
        let keep = retention::Keep {
            checkpoint_segment: self.checkpointed.position.segment,
            backed_up: self.backed_up,
            pinned: self.backup_pin,
        };
        let fs = std::sync::Arc::clone(self.log.fs());
        let outcome = retention::apply(
            fs.as_ref(),
            self.log.dir(),
            self.log.store_id(),
            &self.retention,
            keep,
            Timestamp::now(),
        )?;
        if let Err(e) = self.prune_history() {
            // The segments went; the history index keeps more than needed.
            tracing::warn!(error = %e, "pruning the history index failed");
        }
        Ok(outcome)
    }

    /// The consistent point of a backup run: syncs the log (in `Relaxed` mode
    /// commits are visible before they are durable; a backup claims only
    /// durable ones) and, with `snapshot`, takes a snapshot of the state for
    /// the base. Call [`pin_backup`](Self::pin_backup) before letting go of
    /// the engine.
    pub(crate) fn backup_point(&mut self, snapshot: bool) -> Result<BackupPoint> {
        self.check_poisoned()?;
        self.sync_log()?;
        self.fold()?;
        let snapshot = match snapshot && self.applied.revision > 0 {
            true => Some(self.db.snapshot()?),
            false => None,
        };
        Ok(BackupPoint {
            applied: self.applied,
            end: self.log.position(),
            snapshot,
        })
    }

    /// A running backup copies the log from the segment `first` on:
    /// retention keeps it and everything after it until
    /// [`unpin_backup`](Self::unpin_backup).
    pub(crate) fn pin_backup(&mut self, first: Option<u64>) {
        self.backup_pin = first;
    }

    /// The backup run ended.
    pub(crate) fn unpin_backup(&mut self) {
        self.backup_pin = None;
    }

    /// Records that a backup copied the log up to `revision`: retention then
    /// lets go of what it copied. Written to the state database without a sync
    /// (the next checkpoint makes it durable; losing it only keeps more log).
    pub(crate) fn record_backup(&mut self, revision: u64) -> Result<()> {
        self.check_poisoned()?;
        if self.read_only.is_some() {
            // Nothing can be recorded; retention keeps more log meanwhile.
            return Ok(());
        }
        self.fold()?;
        if self.read_only.is_some() {
            return Ok(());
        }
        self.db.record_backed_up(revision)?;
        self.backed_up = Some(self.backed_up.unwrap_or(0).max(revision));
        Ok(())
    }
}
