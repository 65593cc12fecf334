//! Building a new store from a backup: the base becomes the new log's first
//! (base) commit, then each later commit up to the stopping point is appended
//! verbatim and applied through the replay code. The identity file is written
//! last, so until then the directory is not a store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::Db;
use crate::db::rebuild::Appender;
use crate::db::replay::Replayer;
use crate::db::schema::Applied;
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::layout::{self, DB_FILE, LOG_DIR, creation};
use crate::log::archive;
use crate::log::catalog::SegmentInfo;
use crate::log::segment::{SEGMENT_HEADER_LEN, StoreId};
use crate::log::writer::LogWriter;
use crate::log::{Position, reader};
use crate::options::Options;
use crate::time::Timestamp;

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
    let _lock: Box<dyn LockGuard> = layout::take_lock(fs_ref, target, options)?;
    let (store_id, created) = creation::prepare_store(fs_ref, target)?;
    let db_path = target.join(DB_FILE);
    let log_dir = target.join(LOG_DIR);
    let base_revision = source.base.as_ref().map_or(0, |b| b.2);
    let first_revision = match (&source.base, source.first_after_base) {
        (Some(_), _) => base_revision,
        (None, Some((revision, true))) => revision,
        (None, _) => 1,
    };
    let db = Db::open(fs_ref, &db_path, options)?;
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
    db.checkpoint(&start)?;
    let replayer = Replayer::new(&db, start);
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
    append_log(
        fs_ref,
        source,
        base_revision,
        read_bytes,
        &mut appender,
        progress,
    )?;
    let commits = appender.commits;
    let bytes = appender.bytes;
    let applied = appender.finish()?.unwrap_or(start);
    db.checkpoint(&applied)?;
    drop(db);
    drop(log);
    creation::finish(fs_ref, target, &store_id, created)?;
    Ok(Built {
        store_id,
        revision: applied.revision,
        time: applied.time,
        commits,
        base_records,
        bytes,
    })
}

/// Appends (and applies) the copied log's commits after the base, up to the
/// stopping point; `read_bytes` is what the base took, for the progress.
fn append_log(
    fs: &dyn Fs,
    source: &Source,
    base_revision: u64,
    read_bytes: u64,
    appender: &mut Appender<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let Some(first) = source.segments.first() else {
        return Ok(());
    };
    if source.until <= base_revision {
        return Ok(());
    }
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
        fs,
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
    Ok(())
}
