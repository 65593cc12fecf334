//! Building a store's state from log records outside the normal commit path:
//! restoring a backup (a new store whose log gets the backup's commits
//! verbatim), rebuilding a damaged state database from the log (`repair`), and
//! re-basing a log on the state database when the log before the checkpoint is
//! lost (`repair`).
//!
//! Every commit goes through the same [`Replayer`] as recovery, so each
//! operation is checked against the state it lands on. Records written into a
//! new log keep their revision, time, operations and parts; only their `synced`
//! watermark is the new log's own (it must say what that log had synced).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::db_error;
use super::open::{self, DB_FILE, LOG_DIR};
use super::replay::Replayer;
use super::schema::{self, Applied, META, RECORDS};
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::key;
use crate::log::archive::{self, BaseWriter, BaseWritten};
use crate::log::catalog::SegmentInfo;
use crate::log::record::{self, LogRecord};
use crate::log::segment::{SEGMENT_HEADER_LEN, StoreId};
use crate::log::writer::{LogWriter, Resume};
use crate::log::{Position, frame, reader};
use crate::options::Options;
use crate::time::Timestamp;

/// The log is synced after about this many bytes of appended commits.
const SYNC_EVERY: u64 = 16 << 20;

/// Appends commits read from another log to a log, verbatim but for the
/// watermark, and applies them (when given a replayer).
pub(crate) struct Appender<'a> {
    log: &'a mut LogWriter,
    replayer: Option<Replayer<'a>>,
    frames: Vec<u8>,
    unsynced: u64,
    /// Complete commits appended.
    pub commits: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// The last complete commit: revision and time.
    pub last: Option<(u64, i64)>,
}

impl<'a> Appender<'a> {
    pub(crate) fn new(log: &'a mut LogWriter, replayer: Option<Replayer<'a>>) -> Appender<'a> {
        Appender {
            log,
            replayer,
            frames: Vec::new(),
            unsynced: 0,
            commits: 0,
            bytes: 0,
            last: None,
        }
    }

    fn encode(&mut self, part: &LogRecord<'_>) -> Result<()> {
        // Below the record's own revision, and never above what this log synced.
        let synced = self
            .log
            .synced_revision()
            .min(part.revision.saturating_sub(1));
        let at = frame::begin(&mut self.frames);
        let encoded = record::encode_resynced(part, Some(synced), &mut self.frames)
            .and_then(|()| frame::finish(&mut self.frames, at).map_err(|n| n.to_string()));
        encoded.map_err(|why| Error::TooLarge {
            what: format!("a part of the commit at revision {} ({why})", part.revision),
            size: self.frames.len(),
            limit: frame::MAX_FRAME_PAYLOAD,
        })
    }

    /// Appends one complete commit (all its parts) and applies it.
    pub(crate) fn commit(&mut self, parts: &[LogRecord<'_>]) -> Result<()> {
        let Some(head) = parts.first() else {
            return Ok(());
        };
        let revision = head.revision;
        self.frames.clear();
        for part in parts {
            self.encode(part)?;
        }
        self.log.reserve(self.frames.len(), revision)?;
        let end = self.log.write(&self.frames, revision)?;
        if let Some(replayer) = &mut self.replayer {
            replayer.apply(parts, end)?;
        }
        self.commits += 1;
        self.last = Some((revision, head.time));
        self.wrote()
    }

    /// Appends one part of a commit that streams part by part (a base); `first`
    /// for its first part. All parts of a commit stay in one segment.
    pub(crate) fn part(&mut self, part: &LogRecord<'_>, first: bool) -> Result<()> {
        self.frames.clear();
        self.encode(part)?;
        if first {
            self.log.reserve(self.frames.len(), part.revision)?;
        } else {
            self.log.reserve_more(self.frames.len())?;
        }
        let complete = if part.more {
            part.revision - 1
        } else {
            part.revision
        };
        let end = self.log.write(&self.frames, complete)?;
        if let Some(replayer) = &mut self.replayer {
            replayer.apply_part(part, end)?;
        }
        if !part.more {
            self.commits += 1;
            self.last = Some((part.revision, part.time));
        }
        self.wrote()
    }

    fn wrote(&mut self) -> Result<()> {
        let n = self.frames.len() as u64;
        self.bytes += n;
        self.unsynced += n;
        if self.unsynced >= SYNC_EVERY {
            self.log.sync()?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Syncs the log and applies what the replayer still holds; returns the
    /// state reached (when applying).
    pub(crate) fn finish(self) -> Result<Option<Applied>> {
        self.log.sync()?;
        self.replayer.map(Replayer::finish).transpose()
    }
}

/// Makes the state database durable at `applied` (a checkpoint).
pub(crate) fn checkpoint_db(db: &Database, path: &Path, applied: &Applied) -> Result<()> {
    let mut txn = db
        .begin_write()
        .map_err(db_error(path, "begin a checkpoint"))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(db_error(path, "set the durability of a checkpoint"))?;
    txn.set_quick_repair(true);
    {
        let mut meta = txn
            .open_table(META)
            .map_err(db_error(path, "open the meta table"))?;
        meta.insert(schema::META_APPLIED, applied.encode().as_slice())
            .map_err(db_error(path, "record the checkpoint"))?;
    }
    txn.commit().map_err(db_error(path, "commit a checkpoint"))
}

/// Opens a state database (with the options' cache) for tools.
pub(crate) fn open_db(fs: &dyn Fs, db_path: &Path, options: &Options) -> Result<Database> {
    open::open_database(fs, db_path, options, Arc::new(AtomicBool::new(false)))
}

/// Where a restore reads from: a backup's base and copied segments.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The base segment, its length and its revision.
    pub base: Option<(PathBuf, u64, u64)>,
    /// The store the backup is of (the base's header names it).
    pub store_id: StoreId,
    /// The copied segments, with the lengths the manifest gives.
    pub segments: Vec<SegmentInfo>,
    /// The revision before the segments' first commit.
    pub start_previous: u64,
    /// The first commit after the base: its revision, and whether it is a base
    /// record (the backed-up store was itself restored, and the backup has no
    /// base of its own).
    pub first_after_base: Option<(u64, bool)>,
    /// The last revision to restore, inclusive.
    pub until: u64,
}

/// What [`build_store`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Built {
    pub store_id: StoreId,
    pub revision: u64,
    pub time: Timestamp,
    pub commits: u64,
    pub base_records: u64,
    pub bytes: u64,
}

/// Builds a new store in `target` (empty, or holding only what an interrupted
/// creation or restore left) from `source`: the base loaded as the new log's
/// first (base) commit, then each later commit up to `source.until` appended
/// and applied. The identity file is written last, so until then `target` is
/// not a store. `progress` gets the commits replayed and the source bytes
/// read so far.
pub(crate) fn build_store(
    fs: &Arc<dyn Fs>,
    target: &Path,
    options: &Options,
    source: &Source,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Built> {
    let fs_ref = fs.as_ref();
    fs_ref
        .create_dir_all(target)
        .map_err(|e| Error::io("create", target, e))?;
    let _lock: Box<dyn LockGuard> = open::take_lock(fs_ref, target, options)?;
    let (store_id, created) = open::prepare_store(fs_ref, target)?;
    let db_path = target.join(DB_FILE);
    let log_dir = target.join(LOG_DIR);
    let base_revision = source.base.as_ref().map_or(0, |b| b.2);
    let first_revision = match (&source.base, source.first_after_base) {
        (Some(_), _) => base_revision,
        (None, Some((revision, true))) => revision,
        (None, _) => 1,
    };
    let db = open_db(fs_ref, &db_path, options)?;
    let mut log = LogWriter::create(
        Arc::clone(fs),
        &log_dir,
        store_id,
        options.segment_size,
        options.preallocate,
        first_revision,
    )?;
    // The epoch, not now: commit times are the backup's, and the state's time
    // is the time of its last commit.
    let start = Applied {
        revision: 0,
        position: log.position(),
        time: Timestamp::EPOCH,
    };
    // The state database was created for a log starting at revision 1, now.
    checkpoint_db(&db, &db_path, &start)?;
    let replayer = Replayer::new(&db, &db_path, start);
    let mut appender = Appender::new(&mut log, Some(replayer));
    let mut base_records = 0;
    let mut read_bytes = 0;
    if let Some((path, len, revision)) = &source.base {
        let mut first = true;
        let read = archive::read_base(
            fs_ref,
            path,
            *len,
            &source.store_id,
            *revision,
            |part, next| {
                appender.part(part, first)?;
                first = false;
                progress(appender.commits, next);
                Ok(())
            },
        )?;
        base_records = read.records;
        read_bytes = *len;
    }
    if let Some(first) = source.segments.first()
        && source.until > base_revision
    {
        let offsets: Vec<u64> = source
            .segments
            .iter()
            .scan(read_bytes, |sum, s| {
                let at = *sum;
                *sum += s.len;
                Some(at)
            })
            .collect();
        let until = source.until;
        let end = reader::read_commits(
            fs_ref,
            &source.segments,
            Position {
                segment: first.first_revision,
                offset: SEGMENT_HEADER_LEN as u64,
            },
            source.start_previous,
            |parts, position| {
                let Some(head) = parts.first() else {
                    return Ok(true);
                };
                if head.revision <= base_revision {
                    return Ok(true);
                }
                appender.commit(parts)?;
                let index = source
                    .segments
                    .iter()
                    .position(|s| s.first_revision == position.segment)
                    .unwrap_or(0);
                progress(
                    appender.commits,
                    offsets.get(index).copied().unwrap_or(0) + position.offset,
                );
                Ok(head.revision < until)
            },
        )?;
        if end.last_revision < until {
            return Err(Error::InvalidBackup {
                path: first.path.clone(),
                reason: format!(
                    "the copied log ends at revision {} before revision {until}; run `statelog \
                     check --backup` on it",
                    end.last_revision
                ),
            });
        }
    }
    let commits = appender.commits;
    let bytes = appender.bytes;
    let applied = appender.finish()?.unwrap_or(start);
    checkpoint_db(&db, &db_path, &applied)?;
    drop(db);
    drop(log);
    super::identity::finish(fs_ref, target, &store_id, created)?;
    Ok(Built {
        store_id,
        revision: applied.revision,
        time: applied.time,
        commits,
        base_records,
        bytes,
    })
}

/// Replays the intact log `chain` (from its first segment, whose previous
/// revision is `start_previous`) up to revision `up_to` into a new state
/// database at `db_path` for store `store_id` (any file there is replaced).
/// Returns the state reached. Errors of the log or of replay (an operation that
/// does not follow from the state) name the file and offset or the record.
pub(crate) fn replay_into_new(
    fs: &dyn Fs,
    db_path: &Path,
    store_id: &StoreId,
    options: &Options,
    chain: &[SegmentInfo],
    start_previous: u64,
    up_to: u64,
) -> Result<Applied> {
    if fs
        .exists(db_path)
        .map_err(|e| Error::io("look for", db_path, e))?
    {
        fs.remove_file(db_path)
            .map_err(|e| Error::io("replace the unfinished", db_path, e))?;
    }
    let start_position = chain.first().map_or(
        Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN as u64,
        },
        |s| Position {
            segment: s.first_revision,
            offset: SEGMENT_HEADER_LEN as u64,
        },
    );
    let start = Applied {
        revision: start_previous,
        position: start_position,
        time: Timestamp::EPOCH,
    };
    open::create_database(fs, db_path, store_id, start)?;
    let db = open_db(fs, db_path, options)?;
    let mut replayer = Replayer::new(&db, db_path, start);
    if !chain.is_empty() && up_to > start_previous {
        reader::read_commits(fs, chain, start_position, start_previous, |parts, end| {
            let Some(head) = parts.first() else {
                return Ok(true);
            };
            replayer.apply(parts, end)?;
            Ok(head.revision < up_to)
        })?;
    }
    let applied = replayer.finish()?;
    checkpoint_db(&db, db_path, &applied)?;
    Ok(applied)
}

/// Continues replaying the intact log `chain` into the state database at
/// `db_path`, which holds the state `from`, up to revision `up_to`: checks that
/// the rest of the log replays onto it.
pub(crate) fn replay_continue(
    fs: &dyn Fs,
    db_path: &Path,
    options: &Options,
    chain: &[SegmentInfo],
    from: Applied,
    up_to: u64,
) -> Result<Applied> {
    let db = open_db(fs, db_path, options)?;
    let mut replayer = Replayer::new(&db, db_path, from);
    if up_to > from.revision
        && chain
            .iter()
            .any(|s| s.first_revision == from.position.segment)
    {
        reader::read_commits(fs, chain, from.position, from.revision, |parts, end| {
            let Some(head) = parts.first() else {
                return Ok(true);
            };
            replayer.apply(parts, end)?;
            Ok(head.revision < up_to)
        })?;
    }
    replayer.finish()
}

/// Writes the records of one read transaction as a base segment at `path` for
/// the snapshot `applied`.
pub(crate) fn write_base(
    fs: &dyn Fs,
    txn: &redb::ReadTransaction,
    db_path: &Path,
    path: &Path,
    store_id: &StoreId,
    applied: Applied,
    progress: &mut dyn FnMut(u64),
) -> Result<BaseWritten> {
    let mut writer = BaseWriter::create(
        fs,
        path,
        store_id,
        applied.revision,
        applied.time.as_micros(),
    )?;
    let table = txn
        .open_table(RECORDS)
        .map_err(db_error(db_path, "open the records table"))?;
    let mut count = 0;
    for item in table
        .iter()
        .map_err(db_error(db_path, "read the records"))?
    {
        let (address, stored) = item.map_err(db_error(db_path, "read a record"))?;
        let address = address.value();
        let (namespace, key_text) = key::decode(address).ok_or_else(|| {
            Error::corrupt(
                db_path,
                0,
                format!(
                    "a record has the malformed address {:?}; run `statelog check`",
                    String::from_utf8_lossy(address)
                ),
            )
        })?;
        let (meta, value) = schema::decode_record(stored.value())
            .ok_or_else(|| super::engine::malformed_record(db_path, namespace, key_text))?;
        writer.put(archive::base_put(
            namespace,
            key_text,
            meta.version,
            meta.create_revision,
            meta.mod_revision,
            meta.updated_at.as_micros(),
            value,
        ))?;
        count += 1;
        if count % 4096 == 0 {
            progress(count);
        }
    }
    progress(count);
    writer.finish()
}

/// Writes the records of `view` (a past revision's) as a base segment at
/// `path`.
pub(crate) fn write_base_from_view(
    fs: &dyn Fs,
    view: std::sync::Arc<dyn crate::access::ReadView>,
    path: &Path,
    store_id: &StoreId,
    progress: &mut dyn FnMut(u64),
) -> Result<BaseWritten> {
    let mut writer =
        BaseWriter::create(fs, path, store_id, view.revision(), view.time().as_micros())?;
    let mut count = 0;
    let entries = view.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)?;
    for entry in entries {
        let entry = entry?;
        let (namespace, key_text) = key::decode(&entry.address).unwrap_or(("?", "?"));
        let meta = entry.meta;
        writer.put(archive::base_put(
            namespace,
            key_text,
            meta.version,
            meta.create_revision,
            meta.mod_revision,
            meta.updated_at.as_micros(),
            &entry.value,
        ))?;
        count += 1;
        if count % 4096 == 0 {
            progress(count);
        }
    }
    progress(count);
    writer.finish()
}

/// What [`rebase_log`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rebased {
    /// The state the base holds.
    pub base: Applied,
    /// The new segments, in the staging directory.
    pub segments: Vec<PathBuf>,
    /// The last revision appended after the base (the base's if none).
    pub last_revision: u64,
    /// Why appending stopped before the end of the old log, if it did.
    pub stopped_by: Option<String>,
}

/// Writes a new log for the store into `staging`: the state database's state
/// as a base segment at its checkpoint, then the commits the old log (its
/// segments `old`) holds after that checkpoint, read from the checkpoint's
/// position for as long as they are intact.
pub(crate) fn rebase_log(
    fs: &Arc<dyn Fs>,
    db: &Database,
    db_path: &Path,
    store_id: &StoreId,
    options: &Options,
    old: &[SegmentInfo],
    staging: &Path,
) -> Result<Rebased> {
    let fs_ref = fs.as_ref();
    fs_ref
        .create_dir_all(staging)
        .map_err(|e| Error::io("create", staging, e))?;
    let txn = db.begin_read().map_err(db_error(db_path, "begin a read"))?;
    let applied = {
        let meta = txn
            .open_table(META)
            .map_err(db_error(db_path, "open the meta table"))?;
        meta.get(schema::META_APPLIED)
            .map_err(db_error(db_path, "read the applied revision"))?
            .and_then(|v| Applied::decode(v.value()))
            .ok_or_else(|| {
                Error::corrupt(db_path, 0, "the state database has no applied revision")
            })?
    };
    let base_path = staging.join(crate::log::segment::file_name(applied.revision));
    let written = write_base(
        fs_ref,
        &txn,
        db_path,
        &base_path,
        store_id,
        applied,
        &mut |_| (),
    )?;
    drop(txn);
    let mut log = LogWriter::resume(
        Arc::clone(fs),
        staging,
        *store_id,
        options.segment_size,
        options.preallocate,
        Resume {
            path: base_path,
            first_revision: applied.revision,
            end: written.bytes,
            last_revision: applied.revision,
        },
    )?;
    let mut appender = Appender::new(&mut log, None);
    let mut stopped_by = None;
    if let Some(from) = old
        .iter()
        .position(|s| s.first_revision == applied.position.segment)
    {
        let read = reader::read_commits(
            fs_ref,
            &old[from..],
            applied.position,
            applied.revision,
            |parts, _| {
                appender.commit(parts)?;
                Ok(true)
            },
        );
        match read {
            Ok(end) => {
                if let reader::Tail::Damaged { problem, .. } = end.tail {
                    stopped_by = Some(problem);
                }
            }
            Err(e @ Error::Corrupt { .. }) => stopped_by = Some(e.to_string()),
            Err(e) => return Err(e),
        }
    } else {
        stopped_by = Some(format!(
            "the old log has no segment {} where the checkpoint's position is",
            applied.position.segment
        ));
    }
    let last_revision = appender.last.map_or(applied.revision, |(r, _)| r);
    appender.finish()?;
    drop(log);
    let mut segments: Vec<PathBuf> = fs_ref
        .read_dir(staging)
        .map_err(|e| Error::io("list", staging, e))?
        .into_iter()
        .filter(|n| crate::log::segment::parse_file_name(n).is_some())
        .map(|n| staging.join(n))
        .collect();
    segments.sort();
    Ok(Rebased {
        base: Applied {
            revision: applied.revision,
            position: Position {
                segment: applied.revision,
                offset: written.bytes,
            },
            time: applied.time,
        },
        segments,
        last_revision,
        stopped_by,
    })
}

/// Points the state database's checkpoint at `applied` (the same revision, a
/// new position in a rewritten log), durably.
pub(crate) fn set_checkpoint(
    fs: &dyn Fs,
    db_path: &Path,
    options: &Options,
    applied: &Applied,
) -> Result<()> {
    let db = open_db(fs, db_path, options)?;
    checkpoint_db(&db, db_path, applied)
}
