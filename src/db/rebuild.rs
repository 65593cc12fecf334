//! Building a store's state from log records outside the normal commit path:
//! appending a backup's commits verbatim to a new log and applying them
//! (restore), replaying a log into a new state database (`check`, `repair`),
//! and writing the state as a base segment (backups, re-basing a log).
//!
//! Every commit goes through the same [`Replayer`] as recovery, so each
//! operation is checked against the state it lands on. Records written into a
//! new log keep their revision, time, operations and parts; only their `synced`
//! watermark is the new log's own (it must say what that log had synced).

use std::path::Path;

use redb::ReadableTable;

use super::replay::Replayer;
use super::schema::{self, Applied, META, RECORDS};
use super::{Db, Snapshot, db_error, file, malformed_record};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::key;
use crate::log::archive::{self, BaseWriter, BaseWritten};
use crate::log::catalog::SegmentInfo;
use crate::log::record::{self, LogRecord};
use crate::log::segment::{SEGMENT_HEADER_LEN, StoreId};
use crate::log::writer::LogWriter;
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
    file::create(fs, db_path, store_id, start)?;
    let db = Db::open(fs, db_path, options)?;
    let mut replayer = Replayer::new(&db, start);
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
    db.checkpoint(&applied)?;
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
    let db = Db::open(fs, db_path, options)?;
    let mut replayer = Replayer::new(&db, from);
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

impl Snapshot {
    /// The checkpoint the snapshot's metadata records.
    pub(crate) fn applied(&self) -> Result<Applied> {
        let db_path = self.path.as_path();
        let meta = self
            .txn
            .open_table(META)
            .map_err(db_error(db_path, "open the meta table"))?;
        meta.get(schema::META_APPLIED)
            .map_err(db_error(db_path, "read the applied revision"))?
            .and_then(|v| Applied::decode(v.value()))
            .ok_or_else(|| Error::corrupt(db_path, 0, "the state database has no applied revision"))
    }
}

/// Writes the records of `snapshot` as a base segment at `path` for the state
/// `applied` (which the snapshot holds).
pub(crate) fn write_base(
    fs: &dyn Fs,
    snapshot: &Snapshot,
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
    let db_path = snapshot.path.as_path();
    let table = snapshot
        .txn
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
            .ok_or_else(|| malformed_record(db_path, namespace, key_text))?;
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

/// Points the state database's checkpoint at `applied` (the same revision, a
/// new position in a rewritten log), durably.
pub(crate) fn set_checkpoint(
    fs: &dyn Fs,
    db_path: &Path,
    options: &Options,
    applied: &Applied,
) -> Result<()> {
    Db::open(fs, db_path, options)?.checkpoint(applied)
}
