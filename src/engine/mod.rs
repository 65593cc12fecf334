//! The embedded engine of a store this process holds: opening it (`open`:
//! the directory, the lock, the state database, recovery), the single writer
//! ([`Engine`]) and its commit path (`batch`, into the write it holds open:
//! `held`), checkpoints, log retention and what backups need of it
//! (`checkpoint`), a snapshot loaded as the first commit (`base`), and its
//! published views read as a `ReadView` (`read`).
//!
//! **Invariant:** the engine's state is its own: everything else asks its
//! methods. A failure that leaves the durable state unknown poisons it, in one
//! place ([`Engine::failed`]); a failed log sync is one such failure, whoever
//! synced ([`Engine::after_sync`]).

mod base;
mod batch;
mod checkpoint;
mod decode;
mod held;
mod history;
pub(crate) mod open;
pub(crate) mod past;
pub(crate) mod read;
mod staged;
pub(crate) mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub(crate) use self::checkpoint::BackupPoint;
pub(crate) use self::history::WatchStart;
use crate::db::Db;
use crate::db::schema::Applied;
use crate::db::view::Visible;
use crate::error::{self, Error, Result};
use crate::fs::FileHandle;
use crate::log::sync::SyncGate;
use crate::log::writer::LogWriter;
use crate::options::{Durability, Options, RetentionPolicy};
use crate::time::Clock;

/// A sync of the log that runs outside the engine's lock (the gate orders it
/// with every other sync of the log).
#[derive(Debug)]
pub(crate) struct LogSync {
    file: Arc<dyn FileHandle>,
    gate: Arc<SyncGate>,
    generation: u64,
    path: std::path::PathBuf,
    /// The revision it makes durable.
    pub revision: u64,
}

impl LogSync {
    /// Makes the log durable up to the revision, unless a sync already did.
    pub(crate) fn run(&self) -> Result<()> {
        self.gate
            .sync_up_to(self.file.as_ref(), self.revision, self.generation)
            .map_err(|e| Error::io("sync the log segment", &self.path, e))
    }
}

impl crate::log::syncer::Job for LogSync {
    fn run(&mut self) -> Result<()> {
        LogSync::run(self)
    }
}

/// Progress since the last checkpoint.
#[derive(Debug, Clone, Copy)]
struct SinceCheckpoint {
    commits: u64,
    bytes: u64,
    since: Instant,
}

impl SinceCheckpoint {
    fn now() -> SinceCheckpoint {
        SinceCheckpoint {
            commits: 0,
            bytes: 0,
            since: Instant::now(),
        }
    }
}

/// The single writer of a store. Lives behind a mutex; the group-commit leader,
/// the background thread and a backup run take turns.
#[derive(Debug)]
pub(crate) struct Engine {
    /// What readers see; published after each acknowledged batch. Declared
    /// before `db`, so it is dropped before it.
    visible: Arc<Visible>,
    /// The state database's write held open across batches, whose writes
    /// readers see as the tail of each view (`held.rs`); `None` when redb
    /// has committed everything. Declared before `db`, so that it is
    /// dropped (and aborted) before it.
    held: Option<crate::db::write::Batch>,
    /// A replay the open kept in memory rather than writing it (its records
    /// are the tail); while set, nothing is held.
    deferred: Option<crate::db::replay::Deferred>,
    /// The writes of `held` (or of `deferred`), emptied only when redb
    /// commits them: writes left here with nothing held or deferred (a
    /// failure dropped them) are acknowledged commits the state database
    /// lacks (`held.rs`).
    tail: crate::db::tail::Tail,
    db: Db,
    log: LogWriter,
    durability: Durability,
    /// What the state database holds (durable or not).
    applied: Applied,
    /// What the state database holds durably.
    checkpointed: Applied,
    since_checkpoint: SinceCheckpoint,
    /// Set by the first failed write, sync or state commit.
    poisoned: Option<String>,
    /// Set when the store was opened read-only (its file system takes no
    /// writes), with why: every commit is refused, nothing is written.
    read_only: Option<String>,
    /// Set when the store is closed.
    closed: bool,
    /// Transactions committed since open.
    commits: u64,
    /// Log bytes written since open.
    log_bytes: u64,
    /// Which old segments checkpoints remove.
    retention: RetentionPolicy,
    /// The last revision a backup copied, once the store was backed up.
    backed_up: Option<u64>,
    /// A running backup copies the log from this segment on: retention keeps it.
    backup_pin: Option<u64>,
    /// Where commit times come from.
    clock: Clock,
    /// The encoded frames of the batch being committed (kept for reuse).
    frames: Vec<u8>,
    /// A stored record being encoded (kept for reuse).
    scratch: Vec<u8>,
    /// The writes of the batch being committed (kept for reuse).
    staged: staged::Staged,
    /// The thread that syncs a batch's log write while the batch is applied
    /// (`Sync` mode): started with the first batch; `None` inside when it
    /// could not be started (the engine then syncs the log itself).
    syncer: std::cell::OnceCell<Option<crate::log::syncer::Syncer<LogSync>>>,
    /// Watchers of the store: each acknowledged batch is handed to them.
    watchers: Arc<crate::watch::hub::Hub>,
    /// The first revision the history index answers for.
    history_from: u64,
    /// What the store was opened with (for the state database's read-only
    /// reopening, `held.rs`).
    options: Options,
    /// The state database as opened, once reopened read-only: views
    /// published before still read it.
    retired: Option<Db>,
}

/// Where an opened store's state database and log stand (what recovery
/// reached).
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The state the database holds now (replayed, not yet durable).
    pub applied: Applied,
    /// The state it holds durably (its checkpoint).
    pub checkpointed: Applied,
    /// The last revision a backup copied, once the store was backed up.
    pub backed_up: Option<u64>,
    /// Why the store is open read-only, when its file system takes no writes.
    pub read_only: Option<String>,
    /// The first revision the history index answers for.
    pub history_from: u64,
    /// The replay kept in memory, to be written later.
    pub deferred: Option<crate::db::replay::Deferred>,
}

/// The engine's counters, for `Stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub revision: u64,
    pub checkpoint_revision: u64,
    pub commits: u64,
    pub log_bytes: u64,
}

impl Engine {
    /// The engine of an opened store: `db` and `log` as recovery left them.
    pub(crate) fn new(
        db: Db,
        log: LogWriter,
        options: &Options,
        recovered: Recovered,
    ) -> Result<Engine> {
        let view = match db.view(recovered.applied) {
            Ok(view) => view,
            Err(e) => {
                // Nothing more is written: redb would make what a replay left
                // in non-durable commits durable when the database is dropped.
                db.fence();
                return Err(e);
            }
        };
        // A deferred replay's records are shown as the view's tail until
        // the engine writes them (`held.rs`).
        let tail = recovered
            .deferred
            .as_ref()
            .map(|deferred| deferred.tail().clone())
            .unwrap_or_default();
        let view = match &recovered.deferred {
            Some(_) => view.with_tail(tail.clone(), recovered.applied),
            None => view,
        };
        Ok(Engine {
            visible: Arc::new(Visible::new(view)),
            held: None,
            deferred: recovered.deferred,
            tail,
            db,
            log,
            durability: options.durability,
            applied: recovered.applied,
            checkpointed: recovered.checkpointed,
            since_checkpoint: SinceCheckpoint::now(),
            poisoned: None,
            read_only: recovered.read_only,
            closed: false,
            commits: 0,
            log_bytes: 0,
            retention: options.retention,
            backed_up: recovered.backed_up,
            backup_pin: None,
            clock: options.clock.clone(),
            frames: Vec::new(),
            scratch: Vec::new(),
            staged: staged::Staged::default(),
            syncer: std::cell::OnceCell::new(),
            watchers: Arc::default(),
            history_from: recovered.history_from,
            options: options.clone(),
            retired: None,
        })
    }

    /// The slot readers take the newest published view from.
    pub(crate) fn visible(&self) -> Arc<Visible> {
        Arc::clone(&self.visible)
    }

    /// The revision of the last commit applied.
    pub(crate) fn revision(&self) -> u64 {
        self.applied.revision
    }

    /// The engine's counters.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            revision: self.applied.revision,
            checkpoint_revision: self.checkpointed.revision,
            commits: self.commits,
            log_bytes: self.log_bytes,
        }
    }

    /// Why the store is open read-only, if it is.
    pub(crate) fn read_only(&self) -> Option<String> {
        self.read_only.clone()
    }

    /// Refuses anything once the store is closed or the engine poisoned.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Refuses a change to the store: poisoned, closed, or open read-only.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_poisoned()?;
        match &self.read_only {
            Some(reason) => Err(Error::ReadOnly {
                path: self
                    .db
                    .path()
                    .parent()
                    .map(Path::to_owned)
                    .unwrap_or_default(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Closes the engine: a final checkpoint (unless it is poisoned: then the
    /// durable state is the log's, which the next open replays), and every
    /// later commit is refused.
    pub(crate) fn close(&mut self) -> Result<()> {
        let result = if self.poisoned.is_some() {
            Ok(false)
        } else {
            self.checkpoint()
        };
        self.closed = true;
        self.watchers.close("the store was closed");
        result.map(|_| ())
    }

    /// Syncs the log. The engine's only way to sync it.
    fn sync_log(&mut self) -> Result<()> {
        let synced = self.log.sync();
        self.after_sync(synced)
    }

    /// The outcome of a log sync, by the engine or outside it (the background
    /// thread syncs without holding the engine, [`Engine::flushed`]). A failed
    /// sync poisons the engine: the kernel may have dropped the pages it
    /// failed to write while reporting them written, so only a reopen, which
    /// reads the log back, can tell what is durable.
    fn after_sync(&mut self, synced: Result<()>) -> Result<()> {
        synced.map_err(|e| self.failed(e))
    }

    /// What the background thread syncs outside the engine: the active
    /// segment up to the last revision written. `None` when the engine is
    /// poisoned.
    pub(crate) fn unsynced(&self) -> Option<LogSync> {
        if self.poisoned.is_some() {
            return None;
        }
        Some(self.log_sync(self.log.last_revision()))
    }

    /// A sync of the log up to `revision`, to run without holding the engine.
    fn log_sync(&self, revision: u64) -> LogSync {
        LogSync {
            file: self.log.active_file(),
            gate: Arc::clone(self.log.gate()),
            generation: self.log.gate().generation(),
            path: self.log.active_path().to_owned(),
            revision,
        }
    }

    /// The background thread synced the log (or failed to). Later records
    /// carry the new watermark (the gate holds it), which is what lets
    /// recovery tell damage to synced data from a torn tail.
    pub(crate) fn flushed(&mut self, synced: Result<()>) {
        let _ = self.after_sync(synced);
    }

    /// Shows the state as it is now (at `self.applied`) to readers: the
    /// published view's commit of the state database with the held write's
    /// tail on top, or a new view of the database once it holds everything.
    ///
    /// IMPORTANT: whatever commits records to the state database publishes
    /// before anything holds a write again, so that the view a tail goes on
    /// is the commit the held write began from.
    fn publish(&mut self) -> Result<()> {
        let view = if self.held.is_some() || self.deferred.is_some() {
            Ok(self
                .visible
                .get()
                .with_tail(self.tail.clone(), self.applied))
        } else {
            self.db.view(self.applied)
        };
        match view {
            Ok(view) => {
                self.visible.publish(view);
                Ok(())
            }
            // Acknowledging commits readers cannot see would break
            // read-your-writes: refuse further commits instead.
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Poisons the engine with `error` and returns it: the one place a failure
    /// that leaves the durable state unknown (a failed log write or sync, a
    /// failed state-database commit) stops the engine. Commits are refused
    /// until the store is reopened.
    fn failed(&mut self, error: Error) -> Error {
        // In relaxed mode the state database holds commits whose log records may
        // be lost with the failed sync; redb would make them durable when the
        // database is dropped, ahead of the log. Refuse that (and any other
        // change): a reopen rebuilds the state from the durable log.
        self.db.fence();
        // The held write may hold a batch whose sync failed: it never lands
        // (its tail stays, which says what was lost), nor does a deferred
        // replay.
        self.held = None;
        self.deferred = None;
        if self.poisoned.is_none() {
            let cause = error::chain(&error);
            tracing::error!(cause = %cause, "the store stops accepting writes until reopened");
            self.watchers
                .close(&format!("the store stopped taking commits ({cause})"));
            self.poisoned = Some(cause);
        }
        error
    }
}
