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

use std::collections::HashMap;

use super::schema::{self, Applied, META, RECORDS};
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

/// A chunk is applied once it holds this many commits...
const CHUNK_COMMITS: u64 = 100_000;
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
    scratch: Vec<u8>,
}

impl<'db> Replayer<'db> {
    pub(crate) fn new(db: &'db Db, applied: Applied) -> Replayer<'db> {
        Replayer {
            db,
            pending: HashMap::new(),
            pending_bytes: 0,
            pending_commits: 0,
            superseded: Vec::new(),
            revisions: Vec::new(),
            applied,
            scratch: Vec::new(),
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
                self.fold(op, revision, time, part.base)?;
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
            self.fold(op, revision, time, part.base)?;
        }
        if part.more {
            if self.pending_bytes >= CHUNK_BYTES {
                self.flush()?;
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
        self.revisions.push((revision, time, base));
        self.applied = Applied {
            revision,
            position: end,
            time: time.max(self.applied.time),
        };
        self.pending_commits += 1;
        if self.pending_commits >= CHUNK_COMMITS || self.pending_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Folds one operation into the pending state of its key, checking it
    /// against the operation before it on that key within the chunk.
    fn fold(&mut self, op: &LogOp<'_>, revision: u64, time: Timestamp, base: bool) -> Result<()> {
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
                        return Err(self.diverged(revision, namespace, key, what));
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

    /// Applies the pending chunk in key order, in one state-database transaction.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() && self.pending_commits == 0 {
            return Ok(());
        }
        let path = self.db.path();
        let txn = self.db.begin_nondurable("begin replay")?;
        let mut entries: Vec<(Vec<u8>, Pending)> = self.pending.drain().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        {
            let mut table = txn
                .open_table(RECORDS)
                .map_err(db_error(path, "open the records table"))?;
            let mut history = super::history::Writer::open_sorted(&txn, path)?;
            for (revision, time, base) in self.revisions.drain(..) {
                history.revision(revision, time, base)?;
            }
            self.superseded
                .sort_unstable_by(|a, b| (&a.0, a.1.mod_revision).cmp(&(&b.0, b.1.mod_revision)));
            for (address, meta, value, end, end_time) in self.superseded.drain(..) {
                history.superseded_parts(&address, &meta, &value, end, end_time)?;
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
                let replaced = match old {
                    None => None,
                    Some(old) => {
                        history.superseded(
                            &address,
                            old.value(),
                            pending.first_revision,
                            pending.first_time,
                        )?;
                        Some(schema::decode_record(old.value()).map(|(m, _)| m))
                    }
                };
                let (namespace, key) = key::decode(&address).unwrap_or(("?", "?"));
                let current = match replaced {
                    Some(Some(meta)) => Some(meta),
                    Some(None) => {
                        return Err(malformed_record(path, namespace, key));
                    }
                    None => None,
                };
                if let Err(what) = follows(pending.expect, current.as_ref()) {
                    return Err(self.diverged(pending.first_revision, namespace, key, what));
                }
            }
            history.finish()?;
            let mut meta = txn
                .open_table(META)
                .map_err(db_error(path, "open the meta table"))?;
            meta.insert(schema::META_APPLIED, self.applied.encode().as_slice())
                .map_err(db_error(path, "record the applied revision"))?;
        }
        txn.commit()
            .map_err(db_error(path, "commit replayed records"))?;
        self.pending_bytes = 0;
        self.pending_commits = 0;
        Ok(())
    }

    fn diverged(&self, revision: u64, namespace: &str, key: &str, what: String) -> Error {
        Error::corrupt(
            self.db.path(),
            0,
            format!(
                "the log's commit at revision {revision} {what} for {namespace}/{key}: the log does \
                 not continue this state database (it was replaced or rolled back past the log); \
                 `statelog repair` can rebuild the state from the log"
            ),
        )
    }

    /// Applies what is pending and returns the state reached.
    pub(crate) fn finish(mut self) -> Result<Applied> {
        self.flush()?;
        Ok(self.applied)
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
}

/// Every check opening a store makes of its state database and log, and the
/// replay: reads the metadata of `db` (of store `store_id`), replays the log in
/// `log_dir` from its checkpoint onto it (in a non-durable transaction), checks
/// that the log ends at the state's revision and that the state can be read.
/// Changes no file of the log: `open` then cuts a torn tail and appends, and
/// `check` runs this on a copy of the state database, so that it finds
/// whatever would keep the store from opening.
///
/// # Errors
/// What `open` fails with for a damaged state database or log.
pub(crate) fn replay_log(
    fs: &dyn Fs,
    db: &Db,
    log_dir: &std::path::Path,
    store_id: &StoreId,
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
    let applied = replayer.finish()?;
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
