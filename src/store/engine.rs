//! The write side of a store: validates a batch of commit requests against the
//! current state, logs them, syncs, and applies them to the state database.
//!
//! IMPORTANT: the order of one batch is what makes a commit durable before it is
//! visible:
//! 1. begin a state-database write transaction (not yet visible to readers);
//! 2. for each request in order: check its preconditions against the state as
//!    left by the requests before it, take the next revision, encode its log
//!    record, and apply it inside the open transaction;
//! 3. append all records to the log in one write, and (in `Sync` mode) ask the
//!    kernel to start writing them to the disk;
//! 4. commit the transaction non-durably while the disk writes: redb holds the
//!    batch, but readers only look at published views, so none sees it;
//! 5. sync the log (in `Sync` mode): the batch is durable;
//! 6. publish a view of the state database at the batch's last revision: now
//!    readers see the batch;
//! 7. wake the callers.
//!
//! A failed request (a conflict) takes no revision and affects no other request.
//! A failed log write or sync poisons the engine: the outcome of that batch is
//! unknown until the store is reopened, and no further commit is accepted.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use redb::{Database, ReadableTable, ReadableTableMetadata, Table};

use super::schema::{self, Applied, META, Meta, RECORDS};
use super::view::{View, Visible};
use super::{begin_nondurable, db_error, request::*};
use crate::coord::{self, Expansion};
use crate::counter;
use crate::error::{Error, Result, Shown};
use crate::key;
use crate::log::frame;
use crate::log::record::{self, DeleteOp, LogOp, LogRecord, PutOp};
use crate::log::retention;
use crate::log::writer::LogWriter;
use crate::options::{Durability, RetentionPolicy};
use crate::time::{Clock, Timestamp};

/// Parts of a large commit are cut at about this many bytes.
const PART_TARGET: usize = 4 << 20;

/// Progress since the last checkpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SinceCheckpoint {
    pub commits: u64,
    pub bytes: u64,
    pub since: Instant,
}

/// The single writer of a store. Lives behind a mutex; the group-commit leader and
/// the background thread take turns.
#[derive(Debug)]
pub(crate) struct Engine {
    /// What readers see; published after each acknowledged batch. Declared
    /// before `db`, so it is dropped before it.
    pub visible: Arc<Visible>,
    pub db: Arc<Database>,
    pub db_path: PathBuf,
    pub log: LogWriter,
    pub durability: Durability,
    /// What the state database holds (durable or not).
    pub applied: Applied,
    /// What the state database holds durably.
    pub checkpointed: Applied,
    pub since_checkpoint: SinceCheckpoint,
    /// Set by the first failed write, sync or state commit.
    pub poisoned: Option<String>,
    /// Set when the store was opened read-only (its file system takes no
    /// writes), with why: every commit is refused, nothing is written.
    pub read_only: Option<String>,
    /// Raised with `poisoned`: the state database's storage then refuses every
    /// change, so that not even redb's close makes durable what the log may lack.
    db_fence: Arc<AtomicBool>,
    /// Set when the store is closed.
    closed: bool,
    /// Transactions committed since open.
    pub commits: u64,
    /// Log bytes written since open.
    pub log_bytes: u64,
    /// Which old segments checkpoints remove.
    pub retention: RetentionPolicy,
    /// The last revision a backup copied, once the store was backed up.
    pub backed_up: Option<u64>,
    /// A running backup copies the log from this segment on: retention keeps it.
    pub backup_pin: Option<u64>,
    /// Where commit times come from.
    pub clock: Clock,
    frames: Vec<u8>,
    scratch: Vec<u8>,
}

/// One request's fate inside a batch, before the batch is durable.
enum Prepared<'r> {
    Failed(Error),
    /// Nothing to write (all writes were no-ops); the outcome is final.
    Noop(Outcome),
    Write {
        ops: Vec<Resolved<'r>>,
        outcome: Outcome,
    },
}

/// A write with the metadata it will produce.
struct Resolved<'r> {
    address: &'r [u8],
    namespace: &'r str,
    key: &'r str,
    kind: ResolvedKind<'r>,
}

enum ResolvedKind<'r> {
    Put { meta: Meta, value: &'r [u8] },
    Delete { version: u64 },
}

impl Engine {
    pub(crate) fn new(
        db: Arc<Database>,
        db_path: PathBuf,
        log: LogWriter,
        durability: Durability,
        applied: Applied,
        checkpointed: Applied,
        db_fence: Arc<AtomicBool>,
    ) -> Result<Engine> {
        let visible = Arc::new(Visible::new(View::open(&db, &db_path, applied)?));
        Ok(Engine {
            visible,
            db,
            db_path,
            log,
            durability,
            applied,
            checkpointed,
            since_checkpoint: SinceCheckpoint {
                commits: 0,
                bytes: 0,
                since: Instant::now(),
            },
            poisoned: None,
            read_only: None,
            db_fence,
            closed: false,
            commits: 0,
            log_bytes: 0,
            retention: RetentionPolicy::keep_all(),
            backed_up: None,
            backup_pin: None,
            clock: Clock::default(),
            frames: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Shows the state database as it is now (at `self.applied`) to readers.
    fn publish(&mut self) -> Result<()> {
        match View::open(&self.db, &self.db_path, self.applied) {
            Ok(view) => {
                self.visible.publish(view);
                Ok(())
            }
            Err(e) => {
                // Acknowledging commits readers cannot see would break
                // read-your-writes: refuse further commits instead.
                self.poison(&e);
                Err(e)
            }
        }
    }

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
                    .db_path
                    .parent()
                    .map(Path::to_owned)
                    .unwrap_or_default(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the checkpoint policy asks for a checkpoint now.
    pub(crate) fn checkpoint_due(&self, policy: &crate::options::CheckpointPolicy) -> bool {
        let since = &self.since_checkpoint;
        since.commits > 0
            && (since.commits >= policy.commits
                || since.bytes >= policy.log_bytes
                || since.since.elapsed() >= policy.interval)
    }

    /// Refuses every later commit (the store is being closed).
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    pub(crate) fn poison(&mut self, error: &Error) {
        // In relaxed mode the state database holds commits whose log records may
        // be lost with the failed sync; redb would make them durable when the
        // database is dropped, ahead of the log. Refuse that (and any other
        // change): a reopen rebuilds the state from the durable log.
        self.db_fence.store(true, Ordering::Release);
        if self.poisoned.is_none() {
            let cause = error_chain(error);
            tracing::error!(cause = %cause, "the store stops accepting writes until reopened");
            self.poisoned = Some(cause);
        }
    }

    /// Commits a batch of requests; returns one result per request, in order.
    pub(crate) fn commit_batch(&mut self, requests: &[&Request]) -> Vec<Result<Outcome>> {
        if let Err(e) = self.check_writable() {
            return requests.iter().map(|_| Err(e.duplicate())).collect();
        }
        match self.try_commit_batch(requests) {
            Ok(results) => results,
            Err(e) => {
                if matches!(e, Error::Io { .. } | Error::Database { .. }) {
                    // The disk or the state database failed (a full disk, an I/O
                    // error): whether before or after the log write, refuse
                    // further commits until a reopen has checked what is durable.
                    self.poison(&e);
                }
                // The batch as a whole failed; every request shares the error. When
                // the engine is poisoned the outcome is unknown, and says so.
                let mut results = Vec::with_capacity(requests.len());
                for _ in 1..requests.len() {
                    results.push(Err(match &self.poisoned {
                        Some(cause) => Error::Poisoned {
                            cause: cause.clone(),
                        },
                        None => e.duplicate(),
                    }));
                }
                results.insert(0, Err(e));
                results
            }
        }
    }

    fn try_commit_batch(&mut self, requests: &[&Request]) -> Result<Vec<Result<Outcome>>> {
        let clock = self.clock.now();
        // Every commit's time is at least a microsecond after the one before
        // (invariant 9), so commits of one batch get distinct times too.
        let mut previous_time = self.applied.time;
        let path = self.db_path.clone();
        let txn = begin_nondurable(&self.db, &path, "begin a write")?;
        // `None` once the store's revision is at its ceiling.
        let first_revision = counter::next(self.applied.revision);
        let synced = self.log.synced_revision();
        let mut revision = first_revision;
        let mut last_revision = None;
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        let mut results = Vec::with_capacity(requests.len());
        {
            let mut table = txn
                .open_table(RECORDS)
                .map_err(db_error(&path, "open the records table"))?;
            for request in requests {
                let Some(this_revision) = revision else {
                    // The store's revision is exhausted: every write is refused
                    // before it touches anything (even one that would turn out
                    // to change nothing).
                    results.push(Err(Error::Exhausted {
                        record: None,
                        value: last_revision.unwrap_or(self.applied.revision),
                    }));
                    continue;
                };
                let time = Timestamp::for_commit_after(previous_time, clock);
                // Coordination and patches are evaluated here, against the
                // state as this batch left it (`coord::expand`).
                let expanded;
                let remembered;
                let request: &Request = if coord::needs_expansion(request) {
                    let expansion = {
                        let mut read = |address: &[u8]| read_record(&table, address, &path);
                        coord::expand(request, this_revision, time, &mut read)?
                    };
                    match expansion {
                        Expansion::Failed(e) => {
                            results.push(Err(e));
                            continue;
                        }
                        Expansion::Replay(outcome) => {
                            results.push(Ok(outcome));
                            continue;
                        }
                        Expansion::Ready(ready) => {
                            expanded = Some(ready);
                            expanded.as_ref().map_or(request, |e| &e.request)
                        }
                    }
                } else {
                    expanded = None;
                    request
                };
                match resolve(
                    &mut table,
                    request,
                    this_revision,
                    time,
                    &path,
                    &mut self.scratch,
                )? {
                    Prepared::Failed(e) => results.push(Err(e)),
                    Prepared::Noop(outcome) => results.push(Ok(match &expanded {
                        Some(e) => e.finish(outcome),
                        None => outcome,
                    })),
                    Prepared::Write { mut ops, outcome } => {
                        let outcome = match &expanded {
                            None => outcome,
                            Some(e) => {
                                let outcome = e.finish(outcome);
                                // The idempotency key is recorded in the commit
                                // that uses it, with the caller's outcome.
                                if let Some(write) = e.remember_write(&outcome)? {
                                    remembered = Request {
                                        writes: vec![write],
                                        ..Request::default()
                                    };
                                    if let Prepared::Write { ops: more, .. } = resolve(
                                        &mut table,
                                        &remembered,
                                        this_revision,
                                        time,
                                        &path,
                                        &mut self.scratch,
                                    )? {
                                        ops.extend(more);
                                    }
                                }
                                outcome
                            }
                        };
                        // The writes are in the open transaction already. A commit
                        // that cannot be encoded (impossible within the size
                        // limits) fails the whole batch, which then never commits.
                        encode_commit(&ops, this_revision, time, synced, &mut frames)?;
                        results.push(Ok(outcome));
                        previous_time = time;
                        last_revision = Some(this_revision);
                        revision = counter::next(this_revision);
                    }
                }
            }
        }
        let (Some(first_revision), Some(last_revision)) = (first_revision, last_revision) else {
            // Nothing to write: no revision is taken, nothing is logged.
            txn.abort().map_err(db_error(&path, "abort a write"))?;
            self.frames = frames;
            return Ok(results);
        };
        let start = match self.log.reserve(frames.len(), first_revision) {
            Ok(start) => start,
            Err(e) => {
                self.poison(&e);
                return Err(e);
            }
        };
        let applied = Applied {
            revision: last_revision,
            position: crate::log::Position {
                segment: start.segment,
                offset: start.offset + frames.len() as u64,
            },
            time: previous_time,
        };
        // The state database records the applied revision only at checkpoints
        // (readers learn it from the published view), which keeps the commit to
        // one table.
        let sync = self.durability == Durability::Sync;
        if let Err(e) = self.log.write(&frames, last_revision) {
            self.poison(&e);
            return Err(e);
        }
        if sync {
            // The disk starts writing the batch while redb commits it.
            self.log.start_sync();
        }
        // IMPORTANT: redb shows this commit to new read transactions at once,
        // before the log sync below. Readers only use published views, and the
        // view is published after the sync; a failed sync poisons the engine,
        // whose fence keeps redb from ever making this commit durable.
        if let Err(e) = txn.commit() {
            // The commits are in the log and will be replayed on reopen, but this
            // handle's state database is now behind its log.
            let e = db_error(&path, "apply committed records")(e);
            self.poison(&e);
            return Err(e);
        }
        if sync && let Err(e) = self.log.sync() {
            self.poison(&e);
            return Err(e);
        }
        self.applied = applied;
        self.publish()?;
        self.since_checkpoint.commits += last_revision - first_revision + 1;
        self.since_checkpoint.bytes += frames.len() as u64;
        self.commits += last_revision - first_revision + 1;
        self.log_bytes += frames.len() as u64;
        frames.clear();
        self.frames = frames;
        Ok(results)
    }

    /// Makes the state database durable at the applied revision, so a restart
    /// replays only the log after it.
    pub(crate) fn checkpoint(&mut self) -> Result<bool> {
        self.check_poisoned()?;
        // Read-only: what was replayed is in memory only, and stays in the log.
        if self.applied == self.checkpointed || self.read_only.is_some() {
            return Ok(false);
        }
        // IMPORTANT: the log must be durable at least as far as the state database
        // is about to be (in Relaxed mode it may not be yet; in Sync mode it is).
        if self.log.synced_revision() < self.log.last_revision()
            && let Err(e) = self.log.sync()
        {
            self.poison(&e);
            return Err(e);
        }
        let path = self.db_path.clone();
        let result = (|| {
            let mut txn = self
                .db
                .begin_write()
                .map_err(db_error(&path, "begin a checkpoint"))?;
            txn.set_durability(redb::Durability::Immediate)
                .map_err(db_error(&path, "set the durability of a checkpoint"))?;
            txn.set_quick_repair(true);
            {
                let mut meta = txn
                    .open_table(META)
                    .map_err(db_error(&path, "open the meta table"))?;
                meta.insert(schema::META_APPLIED, self.applied.encode().as_slice())
                    .map_err(db_error(&path, "record the checkpoint"))?;
            }
            txn.commit().map_err(db_error(&path, "commit a checkpoint"))
        })();
        if let Err(e) = result {
            self.poison(&e);
            return Err(e);
        }
        self.checkpointed = self.applied;
        self.since_checkpoint = SinceCheckpoint {
            commits: 0,
            bytes: 0,
            since: Instant::now(),
        };
        if let Err(e) = self.retain() {
            // The checkpoint stands; old segments stay until a later one.
            tracing::warn!(error = %e, "log retention failed; old segments were kept");
        }
        Ok(true)
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
        retention::apply(
            fs.as_ref(),
            self.log.dir(),
            self.log.store_id(),
            &self.retention,
            keep,
            Timestamp::now(),
        )
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
        let path = self.db_path.clone();
        let txn = begin_nondurable(&self.db, &path, "begin a write")?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(db_error(&path, "open the meta table"))?;
            meta.insert(schema::META_BACKED_UP, revision.to_le_bytes().as_slice())
                .map_err(db_error(&path, "record the backed-up revision"))?;
        }
        txn.commit()
            .map_err(db_error(&path, "record the backed-up revision"))?;
        self.backed_up = Some(self.backed_up.unwrap_or(0).max(revision));
        Ok(())
    }

    /// Loads a snapshot into an empty store as one base commit at `revision`,
    /// keeping every record's metadata. Returns the revision.
    pub(crate) fn restore_base(&mut self, load: &BaseLoad) -> Result<u64> {
        self.check_writable()?;
        if self.applied.revision != 0 {
            return Err(Error::NotEmpty {
                revision: self.applied.revision,
            });
        }
        let revision = load.revision;
        if revision == 0 {
            return Err(Error::InvalidOption {
                name: "revision",
                reason: "a restored store's revision must be at least 1".to_owned(),
            });
        }
        if let Some(why) = counter::check_imported("the revision", revision) {
            return Err(Error::InvalidOption {
                name: "revision",
                reason: why,
            });
        }
        let path = self.db_path.clone();
        let mut ops = Vec::with_capacity(load.records.len());
        for r in &load.records {
            let (namespace, key) = key::decode(&r.address).ok_or_else(|| Error::InvalidKey {
                part: crate::KeyPart::Key,
                value: String::from_utf8_lossy(&r.address).into_owned(),
                reason: "not a valid address".to_owned(),
            })?;
            let m = &r.meta;
            let shown = || format!("{}/{}", Shown::new(namespace), Shown::new(key));
            if m.version == 0
                || m.create_revision == 0
                || m.create_revision > m.mod_revision
                || m.mod_revision > revision
            {
                return Err(Error::InvalidOption {
                    name: "records",
                    reason: format!(
                        "{} has version {} and revisions created {} / modified {}, \
                         which do not fit a store at revision {revision}",
                        shown(),
                        m.version,
                        m.create_revision,
                        m.mod_revision
                    ),
                });
            }
            if let Some(why) = counter::check_imported("the version", m.version) {
                return Err(Error::InvalidOption {
                    name: "records",
                    reason: format!("{}: {why}", shown()),
                });
            }
            ops.push(Resolved {
                address: &r.address,
                namespace,
                key,
                kind: ResolvedKind::Put {
                    meta: *m,
                    value: &r.value,
                },
            });
        }
        let mut frames = Vec::new();
        let synced = self.log.synced_revision();
        encode_parts(&ops, revision, load.time, true, synced, &mut frames)?;
        let txn = begin_nondurable(&self.db, &path, "begin a restore")?;
        {
            let mut table = txn
                .open_table(RECORDS)
                .map_err(db_error(&path, "open the records table"))?;
            if !table
                .is_empty()
                .map_err(db_error(&path, "check the records table"))?
            {
                return Err(Error::NotEmpty { revision: 0 });
            }
            apply(&mut table, &ops, &mut self.scratch)
                .map_err(db_error(&path, "write a record"))?;
        }
        let result = (|| {
            // The log takes the whole base in one step that a crash cannot
            // split (see `LogWriter::restart_with`): until then the store is
            // empty; from then on recovery replays the base.
            let position = self.log.restart_with(revision, &frames)?;
            let applied = Applied {
                revision,
                position,
                time: load.time,
            };
            {
                let mut meta = txn
                    .open_table(META)
                    .map_err(db_error(&path, "open the meta table"))?;
                meta.insert(schema::META_APPLIED, applied.encode().as_slice())
                    .map_err(db_error(&path, "record the applied revision"))?;
            }
            txn.commit()
                .map_err(db_error(&path, "apply the restored records"))?;
            self.applied = applied;
            self.since_checkpoint.commits += 1;
            self.since_checkpoint.bytes += frames.len() as u64;
            Ok(())
        })();
        if let Err(e) = result {
            self.poison(&e);
            return Err(e);
        }
        self.publish()?;
        self.checkpoint()?;
        Ok(revision)
    }
}

/// Checks a request's preconditions against the state as it is inside the batch
/// so far and, if they hold, applies its writes to the open transaction,
/// resolving the metadata each write produces.
///
/// Every precondition is checked before anything is written, so a request that
/// fails leaves no trace. Each write walks the B-tree once where it can: a put
/// whose record was just read by a precondition (an `update`) reuses what was
/// read; a blind put inserts and corrects the version only if `insert` reports a
/// record it replaced; a delete learns what it removed from `remove`.
fn resolve<'r>(
    table: &mut Table<&[u8], &[u8]>,
    request: &'r Request,
    revision: u64,
    time: Timestamp,
    path: &std::path::Path,
    scratch: &mut Vec<u8>,
) -> Result<Prepared<'r>> {
    // What the preconditions read, for the writes to the same records.
    let mut read: Vec<(&[u8], Option<Meta>)> = Vec::with_capacity(request.checks.len());
    for check in &request.checks {
        let (namespace, key) = key::decode(&check.address).unwrap_or(("?", "?"));
        let current = stored_meta(table, &check.address, path, namespace, key)?;
        let actual = current.map_or(0, |m| m.version);
        let rewritten = check
            .modified
            .is_some_and(|modified| current.is_some_and(|m| m.mod_revision != modified));
        if actual != check.expected || rewritten {
            return Ok(Prepared::Failed(Error::Conflict {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                expected: check.expected,
                actual,
                attempts: 1,
            }));
        }
        read.push((&check.address, current));
    }
    let mut ops = Vec::with_capacity(request.writes.len());
    let mut outcomes = Vec::with_capacity(request.writes.len());
    for write in &request.writes {
        let (namespace, key) = key::decode(&write.address).unwrap_or(("?", "?"));
        let address = write.address.as_slice();
        match &write.kind {
            WriteKind::Put {
                value,
                skip_unchanged,
            } => {
                let mut known = read.iter().find(|(a, _)| *a == address).map(|(_, m)| *m);
                if *skip_unchanged {
                    let stored = table
                        .get(address)
                        .map_err(db_error(path, "read a record"))?;
                    let mut current = None;
                    if let Some(guard) = &stored {
                        let (meta, bytes) = schema::decode_record(guard.value())
                            .ok_or_else(|| malformed_record(path, namespace, key))?;
                        if bytes == value.as_slice() {
                            outcomes.push(WriteOutcome::Put {
                                meta,
                                changed: false,
                            });
                            continue;
                        }
                        current = Some(meta);
                    }
                    known = Some(current);
                }
                // A version at its ceiling fails the whole batch (the writes
                // before it are in the open transaction, which is then
                // dropped): only a store counted up to 2^63 - 1 gets here.
                let next = |current: Option<Meta>| -> Result<Meta> {
                    let version = match current {
                        None => 1,
                        Some(m) => counter::next(m.version).ok_or_else(|| Error::Exhausted {
                            record: Some((namespace.to_owned(), key.to_owned())),
                            value: m.version,
                        })?,
                    };
                    Ok(Meta {
                        version,
                        create_revision: current.map_or(revision, |m| m.create_revision),
                        mod_revision: revision,
                        updated_at: time,
                    })
                };
                let mut meta = next(known.flatten())?;
                scratch.clear();
                schema::encode_record(&meta, value, scratch);
                let replaced = table
                    .insert(address, scratch.as_slice())
                    .map_err(db_error(path, "write a record"))?
                    .map(|old| schema::decode_record(old.value()).map(|(m, _)| m));
                if known.is_none() {
                    // A blind put: the record it replaced decides the version.
                    if let Some(old) = replaced {
                        let old = old.ok_or_else(|| malformed_record(path, namespace, key))?;
                        meta = next(Some(old))?;
                        scratch.clear();
                        schema::encode_record(&meta, value, scratch);
                        table
                            .insert(address, scratch.as_slice())
                            .map_err(db_error(path, "write a record"))?;
                    }
                }
                outcomes.push(WriteOutcome::Put {
                    meta,
                    changed: true,
                });
                ops.push(Resolved {
                    address,
                    namespace,
                    key,
                    kind: ResolvedKind::Put { meta, value },
                });
            }
            WriteKind::Patch { .. } => {
                // `coord::expand` turns every patch into a put first.
                return Ok(Prepared::Failed(Error::Poisoned {
                    cause: "internal error: a patch reached the engine unevaluated".to_owned(),
                }));
            }
            WriteKind::Delete => {
                let removed = table
                    .remove(address)
                    .map_err(db_error(path, "remove a record"))?
                    .map(|old| schema::decode_record(old.value()).map(|(m, _)| m));
                match removed {
                    None => outcomes.push(WriteOutcome::Absent),
                    Some(old) => {
                        let old = old.ok_or_else(|| malformed_record(path, namespace, key))?;
                        outcomes.push(WriteOutcome::Deleted {
                            version: old.version,
                        });
                        ops.push(Resolved {
                            address,
                            namespace,
                            key,
                            kind: ResolvedKind::Delete {
                                version: old.version,
                            },
                        });
                    }
                }
            }
        }
    }
    if ops.is_empty() {
        return Ok(Prepared::Noop(Outcome {
            revision: None,
            writes: outcomes,
            patched: Vec::new(),
            replayed: false,
        }));
    }
    Ok(Prepared::Write {
        ops,
        outcome: Outcome {
            revision: Some(revision),
            writes: outcomes,
            patched: Vec::new(),
            replayed: false,
        },
    })
}

/// A stored record as the open transaction sees it, `None` if absent.
fn read_record(
    table: &Table<&[u8], &[u8]>,
    address: &[u8],
    path: &std::path::Path,
) -> Result<Option<(Meta, Vec<u8>)>> {
    match table
        .get(address)
        .map_err(db_error(path, "read a record"))?
    {
        None => Ok(None),
        Some(guard) => {
            let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
            schema::decode_record(guard.value())
                .map(|(meta, value)| Some((meta, value.to_vec())))
                .ok_or_else(|| malformed_record(path, namespace, key))
        }
    }
}

/// The metadata of a stored record, `None` if absent.
fn stored_meta(
    table: &Table<&[u8], &[u8]>,
    address: &[u8],
    path: &std::path::Path,
    namespace: &str,
    key: &str,
) -> Result<Option<Meta>> {
    match table
        .get(address)
        .map_err(db_error(path, "read a record"))?
    {
        None => Ok(None),
        Some(guard) => schema::decode_record(guard.value())
            .map(|(meta, _)| Some(meta))
            .ok_or_else(|| malformed_record(path, namespace, key)),
    }
}

/// A stored record whose header cannot be read.
pub(crate) fn malformed_record(path: &std::path::Path, namespace: &str, key: &str) -> Error {
    Error::Database {
        op: "read a record",
        path: path.to_owned(),
        hint: "the stored record is malformed; run `statelog check`",
        source: format!(
            "the record {}/{} has a malformed header",
            Shown::new(namespace),
            Shown::new(key)
        )
        .into(),
    }
}

fn apply(
    table: &mut Table<&[u8], &[u8]>,
    ops: &[Resolved<'_>],
    scratch: &mut Vec<u8>,
) -> std::result::Result<(), redb::StorageError> {
    for op in ops {
        match &op.kind {
            ResolvedKind::Put { meta, value } => {
                scratch.clear();
                schema::encode_record(meta, value, scratch);
                table.insert(op.address, scratch.as_slice())?;
            }
            ResolvedKind::Delete { .. } => {
                table.remove(op.address)?;
            }
        }
    }
    Ok(())
}

fn encode_commit(
    ops: &[Resolved<'_>],
    revision: u64,
    time: Timestamp,
    synced: u64,
    frames: &mut Vec<u8>,
) -> Result<()> {
    encode_parts(ops, revision, time, false, synced, frames)
}

/// Encodes a commit as one frame, or several parts when it is large.
fn encode_parts(
    ops: &[Resolved<'_>],
    revision: u64,
    time: Timestamp,
    base: bool,
    synced: u64,
    frames: &mut Vec<u8>,
) -> Result<()> {
    let rollback = frames.len();
    let mut chunks: Vec<&[Resolved<'_>]> = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, op) in ops.iter().enumerate() {
        let op_size = op.namespace.len()
            + op.key.len()
            + 64
            + match &op.kind {
                ResolvedKind::Put { value, .. } => value.len(),
                ResolvedKind::Delete { .. } => 0,
            };
        if size > 0 && size + op_size > PART_TARGET {
            chunks.push(&ops[start..i]);
            start = i;
            size = 0;
        }
        size += op_size;
    }
    chunks.push(&ops[start..]);
    let count = chunks.len();
    for (index, chunk) in chunks.into_iter().enumerate() {
        let record = LogRecord {
            revision,
            time: time.as_micros(),
            ops: chunk.iter().map(|op| to_log_op(op, base)).collect(),
            more: index + 1 < count,
            base,
            synced: Some(synced),
        };
        let at = frame::begin(frames);
        let encoded = record::encode_into(&record, frames);
        let finished = encoded
            .map_err(|e| e.to_string())
            .and_then(|()| frame::finish(frames, at).map_err(|len| len.to_string()));
        if let Err(why) = finished {
            frames.truncate(rollback);
            return Err(Error::TooLarge {
                what: format!("a part of the commit at revision {revision} ({why})"),
                size: size_hint(chunk),
                limit: frame::MAX_FRAME_PAYLOAD,
            });
        }
    }
    Ok(())
}

fn size_hint(ops: &[Resolved<'_>]) -> usize {
    ops.iter()
        .map(|op| match &op.kind {
            ResolvedKind::Put { value, .. } => value.len(),
            ResolvedKind::Delete { .. } => 0,
        })
        .sum()
}

fn to_log_op<'r>(op: &Resolved<'r>, base: bool) -> LogOp<'r> {
    match &op.kind {
        ResolvedKind::Put { meta, value } => LogOp::Put(PutOp {
            ns: Cow::Borrowed(op.namespace),
            key: Cow::Borrowed(op.key),
            version: meta.version,
            created: meta.create_revision,
            value: Cow::Borrowed(value),
            modified: base.then_some(meta.mod_revision),
            updated: base.then_some(meta.updated_at.as_micros()),
        }),
        ResolvedKind::Delete { version } => LogOp::Delete(DeleteOp {
            ns: Cow::Borrowed(op.namespace),
            key: Cow::Borrowed(op.key),
            version: *version,
        }),
    }
}

/// The error and its sources, one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
