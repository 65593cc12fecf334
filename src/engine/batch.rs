//! The commit path: one batch of requests, from the group-commit leader to
//! durable and visible.
//!
//! IMPORTANT: the order of one batch is what makes a commit durable before it is
//! visible:
//! 1. take the state-database write the engine holds (`held.rs`), or begin
//!    one (`db::write::Batch`), not visible to readers (its tables stay open
//!    from its first batch to its fold);
//! 2. for each request in order ([`prepare`]): [`check`] its preconditions
//!    against the state as left by the requests before it, take the next
//!    revision, [`resolve`] its writes against the current records, and encode
//!    its log record. The writes are staged ([`Staged`]), not yet made in
//!    redb: the log record needs only the versions read, and later requests
//!    read through the staged writes of earlier ones (a large batch writes
//!    into redb as it goes instead);
//! 3. append all records to the log in one write ([`Engine::append`]); in
//!    `Sync` mode hand the log's sync to the sync thread (`log/syncer.rs`),
//!    first asking the kernel to start writing the records to the disk unless
//!    the thread is polling for the job (its sync then starts the write);
//! 4. while the disk writes and syncs: apply the staged writes to the write
//!    (the records and the history index) and hold it for the next batch,
//!    with the writes in its tail, or fold it (commit it non-durably) once
//!    the tail is large; a batch written in place commits its own write.
//!    Readers only look at published views, so none sees the batch yet;
//! 5. wait for the sync (in `Sync` mode; on the engine's own thread when no
//!    sync thread could be started): the batch is durable;
//! 6. publish a view at the batch's last revision (the last fold's, with the
//!    tail): now readers see the batch ([`Engine::publish_batch`]);
//! 7. the leader wakes the callers (`store/commit.rs`).
//!
//! A failed request (a conflict) takes no revision and affects no other request.
//! A failed log write or sync poisons the engine: the outcome of that batch is
//! unknown until the store is reopened, and no further commit is accepted.

use std::borrow::Cow;
use std::sync::Arc;

use super::Engine;
use super::staged::Staged;
use crate::access::request::{Outcome, Request, WriteKind, WriteOutcome};
use crate::coord::{self, Expansion};
use crate::counter;
use crate::db::schema::Applied;
use crate::db::tail::Tail;
use crate::db::write::Records;
use crate::error::{Error, Result};
use crate::key;
use crate::log::record::{self, DeleteOp, LogOp, PutOp};
use crate::log::syncer::Syncer;
use crate::log::{Position, frame};
use crate::options::Durability;
use crate::time::Timestamp;
use crate::value::Meta;

/// Parts of a large commit are cut at about this many bytes.
const PART_TARGET: usize = 4 << 20;

/// A batch with more writes than this writes into redb as it goes rather
/// than staging them (`staged.rs`).
const STAGE_AT_MOST: usize = 256;

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
pub(super) struct Resolved<'r> {
    pub address: &'r [u8],
    pub namespace: &'r str,
    pub key: &'r str,
    pub kind: ResolvedKind<'r>,
}

pub(super) enum ResolvedKind<'r> {
    Put { meta: Meta, value: &'r [u8] },
    Delete { version: u64 },
}

/// Where a batch's sync runs.
enum Syncing {
    /// Nowhere: `Relaxed` mode (the background thread syncs).
    Not,
    /// On the engine's thread, after redb's commit.
    Here,
    /// On the sync thread, started before redb's apply.
    Thread,
}

/// Where a batch starts: the state it lands on, the clock, and the log's
/// durability watermark its records carry.
#[derive(Clone, Copy)]
struct Start {
    applied: Applied,
    clock: Timestamp,
    synced: u64,
}

/// The revisions a batch took: from `first` to `last`, the last one committed
/// at `time`.
#[derive(Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
    time: Timestamp,
}

/// A batch prepared inside its open state-database write: each request's
/// result, and the revisions taken (`None`: nothing to write).
struct PreparedBatch {
    results: Vec<Result<Outcome>>,
    span: Option<Span>,
}

impl Engine {
    /// Commits a batch of requests; returns one result per request, in order.
    pub(crate) fn commit_batch(&mut self, requests: &[&Request]) -> Vec<Result<Outcome>> {
        if let Err(e) = self.check_writable() {
            return requests.iter().map(|_| Err(e.duplicate())).collect();
        }
        match self.try_commit_batch(requests) {
            Ok(results) => results,
            Err(e) => {
                let e = if matches!(e, Error::Io { .. } | Error::Database { .. }) {
                    // The disk or the state database failed (a full disk, an I/O
                    // error): whether before or after the log write, refuse
                    // further commits until a reopen has checked what is durable.
                    self.failed(e)
                } else {
                    e
                };
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
        let start = Start {
            applied: self.applied,
            clock: self.clock.now(),
            synced: self.log.synced_revision(),
        };
        let writes: usize = requests.iter().map(|r| r.writes.len()).sum();
        let in_place = writes > STAGE_AT_MOST;
        if !in_place && let Some(Some(syncer)) = self.syncer.get() {
            // The batch's sync follows its check and log write within
            // microseconds: a sleeping sync thread wakes meanwhile.
            syncer.expect();
        }
        if in_place {
            // Written as it goes, this batch may have to be rolled back: it
            // gets a write of its own (`held.rs`).
            self.fold()?;
        }
        let mut batch = self.take_held()?;
        // Taken for the batch and given back after it (lost on a failure,
        // which costs only their reuse).
        let mut frames = std::mem::take(&mut self.frames);
        let mut staged = std::mem::take(&mut self.staged);
        let mut scratch = std::mem::take(&mut self.scratch);
        frames.clear();
        staged.clear(in_place);
        let prepared = batch.records(&mut scratch, |records| {
            prepare(records, &mut staged, requests, start, &mut frames)
        });
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                if !in_place {
                    // Staged writes touch redb only after the log write: the
                    // held writes are as they were.
                    self.give_back(batch)?;
                }
                return Err(e);
            }
        };
        let Some(span) = prepared.span else {
            // Nothing to write: no revision is taken, nothing is logged.
            self.give_back(batch)?;
            (self.frames, self.staged, self.scratch) = (frames, staged, scratch);
            return Ok(prepared.results);
        };
        let applied = self.append(&frames, span)?;
        let syncing = self.start_log_sync(span.last);
        // Step 4, while the disk writes and syncs the batch: redb's inserts
        // were kept off the path to the log write.
        //
        // IMPORTANT: redb shows a commit to new read transactions at once,
        // before the log sync. Readers only use published views, and the view
        // is published after the sync; a failed sync poisons the engine, whose
        // fence keeps redb from ever making this commit durable.
        let in_db = batch.records(&mut scratch, |records| staged.apply(records));
        let in_db = match in_db {
            Err(e) => Err(e),
            Ok(()) if in_place => batch.commit("apply committed records"),
            Ok(()) => {
                // Held for the next batches unless its tail is due to land
                // (the fold's commit, too, overlaps the sync).
                staged.write_tail(&mut self.tail);
                if self.fold_due() {
                    let committed = batch.commit("commit the held writes");
                    if committed.is_ok() {
                        self.tail = Tail::default();
                    }
                    committed
                } else {
                    self.held = Some(batch);
                    Ok(())
                }
            }
        };
        // Step 5: whatever became of redb's commit, the sync is waited for.
        let synced = self.finish_log_sync(syncing);
        if let Err(e) = in_db {
            // The commits are in the log and will be replayed on reopen, but
            // this handle's state database cannot follow its log.
            return Err(self.failed(e));
        }
        self.after_sync(synced)?;
        self.publish_batch(applied, span, &frames)?;
        frames.clear();
        (self.frames, self.staged, self.scratch) = (frames, staged, scratch);
        Ok(prepared.results)
    }

    /// Step 3: appends the batch's frames to the log in one write. Returns
    /// the state the batch reaches.
    fn append(&mut self, frames: &[u8], span: Span) -> Result<Applied> {
        let start = match self.log.reserve(frames.len(), span.first) {
            Ok(start) => start,
            Err(e) => return Err(self.failed(e)),
        };
        if let Err(e) = self.log.write(frames, span.last) {
            return Err(self.failed(e));
        }
        // The state database records the applied revision only at checkpoints
        // (readers learn it from the published view), which keeps the commit to
        // one table.
        Ok(Applied {
            revision: span.last,
            position: Position {
                segment: start.segment,
                offset: start.offset + frames.len() as u64,
            },
            time: span.time,
        })
    }

    /// Step 5 begins: in `Sync` mode, the sync of the log up to `revision`
    /// starts on the sync thread (or is left to [`finish_log_sync`]).
    fn start_log_sync(&mut self, revision: u64) -> Syncing {
        if self.durability != Durability::Sync {
            return Syncing::Not;
        }
        let syncer = self.syncer.get_or_init(|| match Syncer::spawn() {
            Ok(syncer) => Some(syncer),
            Err(e) => {
                tracing::warn!(error = %e, "no thread to sync the log on: commits sync it themselves");
                None
            }
        });
        let Some(syncer) = syncer else {
            // The disk starts writing the batch while redb commits it.
            self.log.start_sync();
            return Syncing::Here;
        };
        if !syncer.picks_up_at_once() {
            // The thread sleeps: the disk starts writing the batch while it
            // wakes. A thread polling for the job starts the sync at once,
            // and the sync starts the write itself (the hint would cost this
            // path a syscall, and in a VM an exit, for nothing).
            self.log.start_sync();
        }
        let gate = self.log.gate();
        let generation = gate.generation();
        syncer.start(|job| match job {
            // The same segment as the last batch's: only the revision moves.
            Some(job) if job.generation == generation && Arc::ptr_eq(&job.gate, gate) => {
                job.revision = revision;
            }
            _ => *job = Some(self.log_sync(revision)),
        });
        Syncing::Thread
    }

    /// Step 5 ends: the outcome of the batch's sync, once it is over.
    fn finish_log_sync(&mut self, syncing: Syncing) -> Result<()> {
        match syncing {
            Syncing::Not => Ok(()),
            Syncing::Here => self.log.sync(),
            Syncing::Thread => match self.syncer.get() {
                Some(Some(syncer)) => syncer.wait(),
                _ => Err(Error::Poisoned {
                    cause: "internal error: the log's sync thread is gone".to_owned(),
                }),
            },
        }
    }

    /// Step 6: the batch's state becomes what readers see, and watchers get
    /// its frames (never waiting for them); the counters count it.
    fn publish_batch(&mut self, applied: Applied, span: Span, frames: &[u8]) -> Result<()> {
        let bytes = frames.len() as u64;
        self.applied = applied;
        self.publish()?;
        self.watchers.publish(span.first, span.last, frames);
        let commits = span.last - span.first + 1;
        self.since_checkpoint.commits += commits;
        self.since_checkpoint.bytes += bytes;
        self.commits += commits;
        self.log_bytes += bytes;
        Ok(())
    }
}

/// Step 2 for every request of a batch, in order: checked, resolved and
/// staged over the open batch, and its log record encoded into `frames`.
fn prepare(
    records: &mut Records<'_, '_>,
    staged: &mut Staged,
    requests: &[&Request],
    start: Start,
    frames: &mut Vec<u8>,
) -> Result<PreparedBatch> {
    // Every commit's time is at least a microsecond after the one before
    // (invariant 9), so commits of one batch get distinct times too.
    let mut previous_time = start.applied.time;
    // `None` once the store's revision is at its ceiling.
    let first_revision = counter::next(start.applied.revision);
    let mut revision = first_revision;
    let mut last_revision = None;
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        let Some(this_revision) = revision else {
            // The store's revision is exhausted: every write is refused
            // before it touches anything (even one that would turn out
            // to change nothing).
            results.push(Err(Error::Exhausted {
                record: None,
                value: last_revision.unwrap_or(start.applied.revision),
            }));
            continue;
        };
        let time = Timestamp::for_commit_after(previous_time, start.clock);
        records.at(this_revision, time);
        // Coordination and patches are evaluated here, against the state as
        // this batch left it (`coord::expand`).
        let expanded;
        let remembered;
        let request: &Request = if coord::needs_expansion(request) {
            let expansion = {
                let mut read = |address: &[u8]| {
                    let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
                    staged.read(records, address, (namespace, key), |meta, value| {
                        (meta, value.to_vec())
                    })
                };
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
        match prepare_one(records, staged, request, this_revision, time)? {
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
                        // The idempotency key is recorded in the commit that
                        // uses it, with the caller's outcome.
                        if let Some(write) = e.remember_write(&outcome)? {
                            remembered = Request {
                                writes: vec![write],
                                ..Request::default()
                            };
                            if let Prepared::Write { ops: more, .. } =
                                prepare_one(records, staged, &remembered, this_revision, time)?
                            {
                                ops.extend(more);
                            }
                        }
                        outcome
                    }
                };
                // The writes are staged already. A commit that cannot be
                // encoded (impossible within the size limits) fails the whole
                // batch, which then never commits.
                encode_parts(&ops, this_revision, time, false, start.synced, frames)?;
                staged.committed(records, this_revision, time)?;
                results.push(Ok(outcome));
                previous_time = time;
                last_revision = Some(this_revision);
                revision = counter::next(this_revision);
            }
        }
    }
    let span = first_revision.zip(last_revision).map(|(first, last)| Span {
        first,
        last,
        time: previous_time,
    });
    Ok(PreparedBatch { results, span })
}

/// One request: its preconditions checked, then its writes resolved.
fn prepare_one<'r>(
    records: &mut Records<'_, '_>,
    staged: &mut Staged,
    request: &'r Request,
    revision: u64,
    time: Timestamp,
) -> Result<Prepared<'r>> {
    let read = match check(records, staged, request)? {
        Ok(read) => read,
        Err(conflict) => return Ok(Prepared::Failed(conflict)),
    };
    let (ops, outcomes) = resolve(records, staged, request, &read, revision, time)?;
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

/// What the preconditions of a request read: each checked record's metadata
/// (`None`: absent), for the writes to the same records.
type Read<'r> = Vec<(&'r [u8], Option<Meta>)>;

/// Checks a request's preconditions against the state as it is inside the
/// batch so far. Every precondition is checked before anything is staged, so
/// a request that fails leaves no trace: `Ok(Err(conflict))`.
fn check<'r>(
    records: &Records<'_, '_>,
    staged: &Staged,
    request: &'r Request,
) -> Result<std::result::Result<Read<'r>, Error>> {
    let mut read: Read<'r> = Vec::with_capacity(request.checks.len());
    for check in &request.checks {
        let (namespace, key) = key::decode(&check.address).unwrap_or(("?", "?"));
        let current = staged.meta(records, &check.address, (namespace, key))?;
        let actual = current.map_or(0, |m| m.version);
        let rewritten = check
            .modified
            .is_some_and(|modified| current.is_some_and(|m| m.mod_revision != modified));
        if actual != check.expected || rewritten {
            return Ok(Err(Error::Conflict {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                expected: check.expected,
                actual,
                attempts: 1,
            }));
        }
        read.push((&check.address, current));
    }
    Ok(Ok(read))
}

/// Resolves a request's writes against the current records (the batch's
/// staged writes, else the state database), staging them: the metadata each
/// write produces, and what became of it.
///
/// A put whose record was just read by a precondition (an `update`) reuses
/// what was read; a blind put and a delete read the record's metadata.
fn resolve<'r>(
    records: &mut Records<'_, '_>,
    staged: &mut Staged,
    request: &'r Request,
    read: &Read<'_>,
    revision: u64,
    time: Timestamp,
) -> Result<(Vec<Resolved<'r>>, Vec<WriteOutcome>)> {
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
                    let stored =
                        staged.read(records, address, (namespace, key), |meta, bytes| {
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
                let name = (namespace, key);
                let meta = staged.put(records, address, name, value, known, |current| {
                    next_meta(current, name, revision, time)
                })?;
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
                return Err(Error::Poisoned {
                    cause: "internal error: a patch reached the engine unevaluated".to_owned(),
                });
            }
            WriteKind::Delete => match staged.remove(records, address, (namespace, key))? {
                None => outcomes.push(WriteOutcome::Absent),
                Some(old) => {
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
    Ok((ops, outcomes))
}

/// The metadata a put at `revision` writes over the record's `current` one.
fn next_meta(
    current: Option<Meta>,
    (namespace, key): (&str, &str),
    revision: u64,
    time: Timestamp,
) -> Result<Meta> {
    // A version at its ceiling fails the whole batch (its writes are dropped
    // with it): only a store counted up to 2^63 - 1 gets here.
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
}

/// Encodes a commit as one frame, or several parts when it is large; `base`
/// for the base commit of a restored snapshot (whose puts carry every
/// record's metadata).
pub(super) fn encode_parts(
    ops: &[Resolved<'_>],
    revision: u64,
    time: Timestamp,
    base: bool,
    synced: u64,
    frames: &mut Vec<u8>,
) -> Result<()> {
    let rollback = frames.len();
    let mut rest = ops;
    loop {
        let (chunk, after) = rest.split_at(part_len(rest));
        rest = after;
        let head = record::encode::Head {
            revision,
            time: time.as_micros(),
            ops: chunk.len(),
            more: !rest.is_empty(),
            base,
            synced: Some(synced),
        };
        let at = frame::begin(frames);
        let encoded = encode_part(&head, chunk, base, frames);
        let finished =
            encoded.and_then(|()| frame::finish(frames, at).map_err(|len| len.to_string()));
        if let Err(why) = finished {
            frames.truncate(rollback);
            return Err(Error::TooLarge {
                what: format!("a part of the commit at revision {revision} ({why})"),
                size: size_hint(chunk),
                limit: frame::MAX_FRAME_PAYLOAD,
            });
        }
        if rest.is_empty() {
            return Ok(());
        }
    }
}

/// How many of `ops` (at least one) go into the next part: about
/// `PART_TARGET` bytes.
fn part_len(ops: &[Resolved<'_>]) -> usize {
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
            return i;
        }
        size += op_size;
    }
    ops.len()
}

/// One part's record, written from the resolved operations as they are.
fn encode_part(
    head: &record::encode::Head,
    ops: &[Resolved<'_>],
    base: bool,
    frames: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    record::encode::head(head, frames)?;
    for op in ops {
        record::encode::op(&to_log_op(op, base), frames)?;
    }
    record::encode::tail(head, frames)
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
