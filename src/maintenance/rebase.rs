//! Re-basing a log on the state database, when the log before the
//! checkpoint is damaged or lost: the state at its checkpoint becomes a base
//! segment, and the old log's intact commits after it follow.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::Db;
use crate::db::rebuild::{Appender, write_base};
use crate::db::schema::Applied;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::log::catalog::SegmentInfo;
use crate::log::segment::StoreId;
use crate::log::writer::{LogWriter, Resume};
use crate::log::{Position, reader};
use crate::options::Options;

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
    db: &Db,
    store_id: &StoreId,
    options: &Options,
    old: &[SegmentInfo],
    staging: &Path,
) -> Result<Rebased> {
    let fs_ref = fs.as_ref();
    fs_ref
        .create_dir_all(staging)
        .map_err(|e| Error::io("create", staging, e))?;
    let snapshot = db.snapshot()?;
    let applied = snapshot.applied()?;
    let base_path = staging.join(crate::log::segment::file_name(applied.revision));
    let written = write_base(
        fs_ref,
        &snapshot,
        &base_path,
        store_id,
        applied,
        &mut |_| (),
    )?;
    drop(snapshot);
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
