//! Applying log records to the state database: how recovery brings the state up
//! to the end of the log (and how a restore rebuilds a store).
//!
//! Replay needs no user code: every record carries the resulting metadata. It
//! still checks each operation against the state it lands on (a put's version
//! follows the one before, a delete removes the version it names), so a log that
//! does not continue the state it is applied to is reported rather than applied.
//!
//! For speed it works in chunks: the commits of a chunk are folded in memory
//! into the final state of each key they touch (every operation checked against
//! the one before it on that key), and the chunk is then applied in key order,
//! one read and one write per key, where the first operation on each key is
//! checked against the stored record. Applying in key order touches each
//! B-tree page once instead of at random, and a key written many times in the
//! tail is written once. The history index's `history_ends` entries, keyed by
//! the revision that ended each version, come out of that order at random
//! revisions: they are held and written sorted at the end of the chunk.
//!
//! An open may keep a replay that fits one chunk in memory instead
//! ([`Deferred`]): each key's first operation is checked against the stored
//! record without writing, and the state the chunk reaches becomes the first
//! view's tail; the engine writes the chunk later (`engine/held.rs`).

use std::collections::HashMap;
use std::path::Path;

use super::schema::{self, Applied, META, RECORDS};
use super::tail::Tail;
use super::{Db, db_error, malformed_record};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::key;
use crate::log::Position;
use crate::log::record::{LogOp, LogRecord};
use crate::log::recovery::{self, Checkpoint, Scanned};
use crate::log::segment::StoreId;
use crate::time::Timestamp;
use crate::value::Meta;

/// A chunk is applied once it holds this many commits (its bytes bound its
/// memory; this bounds what it keeps per commit)...
const CHUNK_COMMITS: u64 = 1 << 17;
/// ...or this many bytes of keys and values.
const CHUNK_BYTES: usize = 64 << 20;

/// What the first operation of a chunk on a key requires of the stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Nothing: a base record sets the key whatever was there.
    Anything,
    /// The record is absent.
    Absent,
    /// The record has this version and create revision.
    Present { version: u64, created: u64 },
    /// The record has this version (a delete names only the version).
    Version(u64),
}

/// A key's fate within the current chunk.
#[derive(Debug)]
struct Pending {
    /// Checked against the stored record when the chunk is applied.
    expect: Expect,
    /// Revision of the first operation, for messages (and the end of the
    /// stored version it replaces, in the history).
    first_revision: u64,
    /// Its commit time.
    first_time: Timestamp,
    /// The state after the last operation: `None` once deleted.
    state: Option<(Meta, Vec<u8>)>,
}

/// A version a chunk's commit superseded: address, metadata, value, and the
/// revision and time that ended it.
type Superseded = (Vec<u8>, Meta, Vec<u8>, u64, Timestamp);

/// Applies commits to a state database, in revision order.
pub(crate) struct Replayer<'db> {
    db: &'db Db,
    chunk: Chunk,
}

/// The commits read since the last chunk was applied, folded per key.
struct Chunk {
    pending: HashMap<Vec<u8>, Pending>,
    pending_bytes: usize,
    pending_commits: u64,
    /// Versions the chunk's commits superseded among themselves, for the
    /// history index.
    superseded: Vec<Superseded>,
    /// The chunk's commits: revision, time, base.
    revisions: Vec<(u64, Timestamp, bool)>,
    /// The state reached by the commits seen so far (applied or pending).
    applied: Applied,
    /// Whether a chunk was applied already.
    flushed: bool,
    scratch: Vec<u8>,
}

impl<'db> Replayer<'db> {
    pub(crate) fn new(db: &'db Db, applied: Applied) -> Replayer<'db> {
        Replayer {
            db,
            chunk: Chunk {
                pending: HashMap::new(),
                pending_bytes: 0,
                pending_commits: 0,
                superseded: Vec::new(),
                revisions: Vec::new(),
                applied,
                flushed: false,
                scratch: Vec::new(),
            },
        }
    }

    /// Takes one complete commit (all its parts); `end` is where the log
    /// continues after it.
    pub(crate) fn apply(&mut self, parts: &[LogRecord<'_>], end: Position) -> Result<()> {
        let Some(first) = parts.first() else {
            return Ok(());
        };
        let revision = first.revision;
        let time = Timestamp::from_micros(first.time);
        for part in parts {
            for op in &part.ops {
                self.chunk
                    .fold(self.db.path(), op, revision, time, part.base)?;
            }
        }
        self.commit_done(revision, time, first.base, end)
    }

    /// Takes one part of a commit as it is read, so that a commit larger than
    /// memory (the base of a large store) streams through: the commit is
    /// complete with its last part (the one without `more`), and `end` is
    /// where the log continues after that part. A chunk may be applied between
    /// the parts of one commit, so this serves only stores nobody reads yet (a
    /// restore being built).
    pub(crate) fn apply_part(&mut self, part: &LogRecord<'_>, end: Position) -> Result<()> {
        let revision = part.revision;
        let time = Timestamp::from_micros(part.time);
        for op in &part.ops {
            self.chunk
                .fold(self.db.path(), op, revision, time, part.base)?;
        }
        if part.more {
            if self.chunk.pending_bytes >= CHUNK_BYTES {
                self.chunk.flush(self.db)?;
            }
            return Ok(());
        }
        self.commit_done(revision, time, part.base, end)
    }

    /// Counts a complete commit (at `revision`, the log continuing at `end`),
    /// and applies the chunk once it is full.
    fn commit_done(
        &mut self,
        revision: u64,
        time: Timestamp,
        base: bool,
        end: Position,
    ) -> Result<()> {
        let chunk = &mut self.chunk;
        chunk.revisions.push((revision, time, base));
        chunk.applied = Applied {
            revision,
            position: end,
            time: time.max(chunk.applied.time),
        };
        chunk.pending_commits += 1;
        if chunk.pending_commits >= CHUNK_COMMITS || chunk.pending_bytes >= CHUNK_BYTES {
            chunk.flush(self.db)?;
        }
        Ok(())
    }

    /// Applies what is pending and returns the state reached.
    pub(crate) fn finish(mut self) -> Result<Applied> {
        self.chunk.flush(self.db)?;
        Ok(self.chunk.applied)
    }

    /// Like [`finish`](Self::finish), except that a replay held in one chunk
    /// (nothing applied yet) is checked against the stored records and kept
    /// in memory, to be applied later ([`Deferred`]).
    fn finish_or_defer(self) -> Result<(Applied, Option<Deferred>)> {
        if self.chunk.flushed || self.chunk.pending_commits == 0 {
            return Ok((self.finish()?, None));
        }
        let mut entries: Vec<(&Vec<u8>, &Pending)> = self.chunk.pending.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // The check reads the state database, the tail is built in memory:
        // one on a thread of its own when there is one to start.
        let db = self.db;
        let (checked, tail) = std::thread::scope(|scope| {
            let checker = std::thread::Builder::new()
                .name("statelog-replay".to_owned())
                .spawn_scoped(scope, || check(db, &entries));
            match checker {
                Ok(checker) => {
                    let tail = tail_of(&entries);
                    // A panic of the database library is the caller's to contain.
                    let checked = checker
                        .join()
                        .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked));
                    (checked, tail)
                }
                Err(_) => (check(db, &entries), tail_of(&entries)),
            }
        });
        checked?;
        let applied = self.chunk.applied;
        Ok((
            applied,
            Some(Deferred {
                chunk: self.chunk,
                tail,
            }),
        ))
    }
}

/// Checks the first operation of a chunk on each key (`entries`, in key
/// order) against the stored record, writing nothing: what
/// [`Chunk::flush`] checks as it writes.
fn check(db: &Db, entries: &[(&Vec<u8>, &Pending)]) -> Result<()> {
    let path = db.path();
    let table = db.read_table(RECORDS, "open the records table")?;
    for (address, pending) in entries {
        if pending.expect == Expect::Anything {
            continue;
        }
        let stored = table
            .get(address.as_slice())
            .map_err(db_error(path, "read a record"))?;
        continues(path, address, pending, stored.as_ref().map(|s| s.value()))?;
    }
    Ok(())
}

/// Whether the chunk's first operation on `address` continues `stored`, the
/// record it lands on (`None`: absent); otherwise the error that says how
/// the log and the state database parted.
fn continues(path: &Path, address: &[u8], pending: &Pending, stored: Option<&[u8]>) -> Result<()> {
    let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
    let current = match stored {
        None => None,
        Some(stored) => Some(
            schema::decode_record(stored)
                .map(|(m, _)| m)
                .ok_or_else(|| malformed_record(path, namespace, key))?,
        ),
    };
    follows(pending.expect, current.as_ref())
        .map_err(|what| diverged(path, pending.first_revision, namespace, key, what))
}

/// The state each key of a chunk (`entries`, in key order) reaches, as a
/// view's tail.
fn tail_of(entries: &[(&Vec<u8>, &Pending)]) -> Tail {
    let mut tail = Tail::default();
    let mut stored = Vec::new();
    for (address, pending) in entries {
        match &pending.state {
            Some((meta, value)) => {
                stored.clear();
                schema::encode_record(meta, value, &mut stored);
                tail.write(address, Some(&stored));
            }
            None => tail.write(address, None),
        }
    }
    tail
}

impl Chunk {
    /// Folds one operation into the pending state of its key, checking it
    /// against the operation before it on that key within the chunk.
    fn fold(
        &mut self,
        path: &Path,
        op: &LogOp<'_>,
        revision: u64,
        time: Timestamp,
        base: bool,
    ) -> Result<()> {
        let (namespace, key) = op.address();
        let address = key::encode_unchecked(namespace, key);
        let after = match op {
            LogOp::Put(put) => {
                let meta = put.meta(revision, time);
                Some((meta, put.value.to_vec()))
            }
            LogOp::Delete(_) => None,
        };
        let expect = if base {
            Expect::Anything
        } else {
            match op {
                LogOp::Put(put) if put.version == 1 => Expect::Absent,
                LogOp::Put(put) => Expect::Present {
                    version: put.version - 1,
                    created: put.created,
                },
                LogOp::Delete(del) => Expect::Version(del.version),
            }
        };
        let added = after.as_ref().map_or(0, |(_, v)| v.len()) + address.len();
        match self.pending.get_mut(&address) {
            Some(pending) => {
                if !base {
                    let current = pending.state.as_ref().map(|(m, _)| m);
                    if let Err(what) = follows(expect, current) {
                        return Err(diverged(path, revision, namespace, key, what));
                    }
                }
                if let Some((meta, value)) = std::mem::replace(&mut pending.state, after)
                    && meta.mod_revision < revision
                {
                    self.pending_bytes += value.len() + address.len();
                    self.superseded.push((address, meta, value, revision, time));
                }
            }
            None => {
                self.pending.insert(
                    address,
                    Pending {
                        expect,
                        first_revision: revision,
                        first_time: time,
                        state: after,
                    },
                );
            }
        }
        self.pending_bytes += added;
        Ok(())
    }

    /// Applies the pending chunk and empties it.
    fn flush(&mut self, db: &Db) -> Result<()> {
        self.write(db)?;
        self.pending.clear();
        self.superseded.clear();
        self.revisions.clear();
        self.pending_bytes = 0;
        self.pending_commits = 0;
        Ok(())
    }

    /// Applies the pending chunk in key order, in one state-database
    /// transaction, keeping it (it can be applied again, to another
    /// database).
    fn write(&mut self, db: &Db) -> Result<()> {
        if self.pending.is_empty() && self.pending_commits == 0 {
            return Ok(());
        }
        self.flushed = true;
        let path = db.path();
        let txn = db.begin_nondurable("begin replay")?;
        let mut entries: Vec<(&Vec<u8>, &Pending)> = self.pending.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        {
            let mut table = txn
                .open_table(RECORDS)
                .map_err(db_error(path, "open the records table"))?;
            let mut history = super::history::Writer::open_sorted(&txn, path)?;
            for &(revision, time, base) in &self.revisions {
                history.revision(revision, time, base)?;
            }
            self.superseded
                .sort_unstable_by(|a, b| (&a.0, a.1.mod_revision).cmp(&(&b.0, b.1.mod_revision)));
            for (address, meta, value, end, end_time) in &self.superseded {
                history.superseded_parts(address, meta, value, *end, *end_time)?;
            }
            for (address, pending) in entries {
                // Write first and check the record it replaced: one B-tree walk per
                // key. A mismatch returns before the transaction commits, so it is
                // dropped and nothing of the chunk lands.
                let old = match &pending.state {
                    Some((meta, value)) => {
                        self.scratch.clear();
                        schema::encode_record(meta, value, &mut self.scratch);
                        table
                            .insert(address.as_slice(), self.scratch.as_slice())
                            .map_err(db_error(path, "write a record"))?
                    }
                    None => table
                        .remove(address.as_slice())
                        .map_err(db_error(path, "remove a record"))?,
                };
                if let Some(old) = &old {
                    history.superseded(
                        address,
                        old.value(),
                        pending.first_revision,
                        pending.first_time,
                    )?;
                }
                continues(path, address, pending, old.as_ref().map(|o| o.value()))?;
            }
            history.finish()?;
            let mut meta = txn
                .open_table(META)
                .map_err(db_error(path, "open the meta table"))?;
            meta.insert(schema::META_APPLIED, self.applied.encode().as_slice())
                .map_err(db_error(path, "record the applied revision"))?;
        }
        txn.commit()
            .map_err(db_error(path, "commit replayed records"))
    }
}

fn diverged(path: &Path, revision: u64, namespace: &str, key: &str, what: String) -> Error {
    Error::corrupt(
        path,
        0,
        format!(
            "the log's commit at revision {revision} {what} for {namespace}/{key}: the log does \
             not continue this state database (it was replaced or rolled back past the log); \
             `statelog repair` can rebuild the state from the log"
        ),
    )
}

/// A replay kept in memory rather than written to the state database at
/// open: the commits since the checkpoint, folded per key and checked
/// against the stored records, and the state they reach as a view's tail.
/// The engine serves reads from that tail and applies the chunk
/// ([`Deferred::apply`]) before anything else uses the state database.
pub(crate) struct Deferred {
    chunk: Chunk,
    tail: Tail,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("commits", &self.chunk.pending_commits)
            .field("addresses", &self.chunk.pending.len())
            .finish()
    }
}

impl Deferred {
    /// The state the replayed commits reach, by address.
    pub(crate) fn tail(&self) -> &Tail {
        &self.tail
    }

    /// The first revision the history index answers for once the chunk is
    /// applied, when the index holds nothing before it.
    pub(crate) fn history_floor(&self) -> Option<u64> {
        self.chunk
            .revisions
            .first()
            .map(|&(revision, _, base)| if base { revision } else { revision - 1 })
    }

    /// Writes the replayed commits to `db` (one non-durable commit, as an
    /// open's replay makes it). They are kept: they can be written again, to
    /// another database.
    pub(crate) fn apply(&mut self, db: &Db) -> Result<()> {
        self.chunk.write(db)
    }
}

/// The state database brought up to the end of the log, as opening a store
/// does it, before the log is changed.
pub(crate) struct Replayed {
    /// The durable checkpoint the state database held.
    pub durable: Applied,
    /// The state reached.
    pub applied: Applied,
    /// What the log held.
    pub scanned: Scanned,
    /// The last revision a backup copied.
    pub backed_up: Option<u64>,
    /// The replay held in memory, when `replay_log` was asked to defer it.
    pub deferred: Option<Deferred>,
}

/// Every check opening a store makes of its state database and log, and the
/// replay: reads the metadata of `db` (of store `store_id`), replays the log in
/// `log_dir` from its checkpoint onto it (in a non-durable transaction), checks
/// that the log ends at the state's revision and that the state can be read.
/// Changes no file of the log: `open` then cuts a torn tail and appends, and
/// `check` runs this on a copy of the state database, so that it finds
/// whatever would keep the store from opening. With `defer`, a replay that
/// fits one chunk is checked against the stored records but not written:
/// it comes back as [`Replayed::deferred`].
///
/// # Errors
/// What `open` fails with for a damaged state database or log.
pub(crate) fn replay_log(
    fs: &dyn Fs,
    db: &Db,
    log_dir: &std::path::Path,
    store_id: &StoreId,
    defer: bool,
) -> Result<Replayed> {
    let durable = db.read_meta(store_id)?;
    let checkpoint = Checkpoint {
        revision: durable.revision,
        position: durable.position,
    };
    let mut replayer = Replayer::new(db, durable);
    let scanned = recovery::scan(fs, log_dir, store_id, checkpoint, |parts, end| {
        replayer.apply(parts, end)
    })?;
    let (applied, deferred) = if defer {
        replayer.finish_or_defer()?
    } else {
        (replayer.finish()?, None)
    };
    if scanned.last_revision() != applied.revision {
        return Err(Error::corrupt(
            db.path(),
            0,
            format!(
                "the state database is at revision {} but the log ends at revision {}; the log \
                 lost commits the state has: restore a backup, or keep the state with \
                 `statelog repair` (it starts a new log from it)",
                applied.revision,
                scanned.last_revision()
            ),
        ));
    }
    let backed_up = db.read_backed_up()?;
    db.view(applied)?;
    Ok(Replayed {
        durable,
        applied,
        scanned,
        backed_up,
        deferred,
    })
}

/// Whether an operation's requirement holds for the record's current metadata
/// (`None`: absent); otherwise what went wrong, for the message.
fn follows(expect: Expect, current: Option<&Meta>) -> std::result::Result<(), String> {
    let describe = |m: Option<&Meta>| match m {
        None => "an absent record".to_owned(),
        Some(m) => format!("version {} (created at {})", m.version, m.create_revision),
    };
    let ok = match (expect, current) {
        (Expect::Anything, _) | (Expect::Absent, None) => true,
        (Expect::Present { version, created }, Some(m)) => {
            m.version == version && m.create_revision == created
        }
        (Expect::Version(version), Some(m)) => m.version == version,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let wanted = match expect {
        Expect::Anything => "anything".to_owned(),
        Expect::Absent => "an absent record".to_owned(),
        Expect::Present { version, created } => {
            format!("version {version} (created at {created})")
        }
        Expect::Version(v) => format!("version {v}"),
    };
    Err(format!("expects {wanted} but finds {}", describe(current)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(version: u64, created: u64) -> Meta {
        Meta {
            version,
            create_revision: created,
            mod_revision: created,
            updated_at: Timestamp::EPOCH,
        }
    }

    #[test]
    fn follows_checks_versions_and_creation() {
        assert!(follows(Expect::Absent, None).is_ok());
        assert!(follows(Expect::Absent, Some(&meta(1, 1))).is_err());
        assert!(
            follows(
                Expect::Present {
                    version: 2,
                    created: 5
                },
                Some(&meta(2, 5))
            )
            .is_ok()
        );
        let err = follows(
            Expect::Present {
                version: 2,
                created: 5,
            },
            Some(&meta(2, 6)),
        )
        .unwrap_err();
        assert!(err.contains("created at 6"), "{err}");
        assert!(
            follows(
                Expect::Present {
                    version: 2,
                    created: 5
                },
                None
            )
            .is_err()
        );
        assert!(follows(Expect::Version(3), Some(&meta(3, 1))).is_ok());
        assert!(follows(Expect::Version(3), None).is_err());
        assert!(follows(Expect::Anything, None).is_ok());
    }
}
