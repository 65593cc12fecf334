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
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::request::*;
use crate::counter;
use crate::db::Db;
use crate::db::schema::Applied;
use crate::db::view::Visible;
use crate::db::write::{Records, Replaced};
use crate::error::{self, Error, Result, Shown};
use crate::key;
use crate::log::frame;
use crate::log::record::{self, DeleteOp, LogOp, LogRecord, PutOp};
use crate::log::retention;
use crate::log::writer::LogWriter;
use crate::options::{Durability, RetentionPolicy};
use crate::time::{Clock, Timestamp};
use crate::value::Meta;

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
    db: Db,
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
        db: Db,
        log: LogWriter,
        durability: Durability,
        applied: Applied,
        checkpointed: Applied,
    ) -> Result<Engine> {
        let view = match db.view(applied) {
            Ok(view) => view,
            Err(e) => {
                // Nothing more is written: redb would make what a replay left
                // in non-durable commits durable when the database is dropped.
                db.fence();
                return Err(e);
            }
        };
        let visible = Arc::new(Visible::new(view));
        Ok(Engine {
            visible,
            db,
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
        match self.db.view(self.applied) {
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
        self.db.fence();
        if self.poisoned.is_none() {
            let cause = error::chain(error);
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
        let batch = self.db.begin_batch("begin a write")?;
        // `None` once the store's revision is at its ceiling.
        let first_revision = counter::next(self.applied.revision);
        let synced = self.log.synced_revision();
        let mut revision = first_revision;
        let mut last_revision = None;
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        let mut results = Vec::with_capacity(requests.len());
        {
            let mut records = batch.records(&mut self.scratch)?;
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
                match resolve(&mut records, request, this_revision, time)? {
                    Prepared::Failed(e) => results.push(Err(e)),
                    Prepared::Noop(outcome) => results.push(Ok(outcome)),
                    Prepared::Write { ops, outcome } => {
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
            batch.abort()?;
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
        if let Err(e) = batch.commit("apply committed records") {
            // The commits are in the log and will be replayed on reopen, but this
            // handle's state database is now behind its log.
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
        let result = self.db.checkpoint(&self.applied);
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

    /// One consistent read of the state database as it is now (a backup's
    /// base).
    pub(crate) fn db_snapshot(&self) -> Result<crate::db::Snapshot> {
        self.db.snapshot()
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
        self.db.record_backed_up(revision)?;
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
        let batch = self.db.begin_batch("begin a restore")?;
        {
            let mut records = batch.records(&mut self.scratch)?;
            if !records.is_empty()? {
                return Err(Error::NotEmpty { revision: 0 });
            }
            apply(&mut records, &ops)?;
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
            batch.set_applied(&applied)?;
            batch.commit("apply the restored records")?;
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
    records: &mut Records<'_>,
    request: &'r Request,
    revision: u64,
    time: Timestamp,
) -> Result<Prepared<'r>> {
    // What the preconditions read, for the writes to the same records.
    let mut read: Vec<(&[u8], Option<Meta>)> = Vec::with_capacity(request.checks.len());
    for check in &request.checks {
        let (namespace, key) = key::decode(&check.address).unwrap_or(("?", "?"));
        let current = records.meta(&check.address, namespace, key)?;
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
                    let stored = records.read(address, namespace, key, |meta, bytes| {
                        (meta, bytes == value.as_slice())
                    })?;
                    if let Some((meta, true)) = stored {
                        outcomes.push(WriteOutcome::Put {
                            meta,
                            changed: false,
                        });
                        continue;
                    }
                    known = Some(stored.map(|(meta, _)| meta));
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
                let replaced = records.put(address, &meta, value)?;
                if known.is_none() {
                    // A blind put: the record it replaced decides the version.
                    match replaced {
                        Replaced::Absent => {}
                        Replaced::Malformed => return Err(records.malformed(namespace, key)),
                        Replaced::Record(old) => {
                            meta = next(Some(old))?;
                            records.put(address, &meta, value)?;
                        }
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
            WriteKind::Delete => match records.remove(address)? {
                Replaced::Absent => outcomes.push(WriteOutcome::Absent),
                Replaced::Malformed => return Err(records.malformed(namespace, key)),
                Replaced::Record(old) => {
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
            },
        }
    }
    if ops.is_empty() {
        return Ok(Prepared::Noop(Outcome {
            revision: None,
            writes: outcomes,
        }));
    }
    Ok(Prepared::Write {
        ops,
        outcome: Outcome {
            revision: Some(revision),
            writes: outcomes,
        },
    })
}

fn apply(records: &mut Records<'_>, ops: &[Resolved<'_>]) -> Result<()> {
    for op in ops {
        match &op.kind {
            ResolvedKind::Put { meta, value } => {
                records.put(op.address, meta, value)?;
            }
            ResolvedKind::Delete { .. } => {
                records.remove(op.address)?;
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
