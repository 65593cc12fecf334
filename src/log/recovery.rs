//! Opening the log: find its end from the last checkpoint, hand every commit past
//! the checkpoint to the caller for replay, and deal with a torn tail.
//!
//! A torn tail is what an interrupted append leaves: the last segment's data ends
//! in a frame that is incomplete or does not verify, or in the first parts of a
//! commit whose last part is missing, and nothing valid follows. Such a commit
//! was never acknowledged (acknowledgement waits for the sync, and a checkpoint
//! never covers unsynced data), so it is cut off: the bytes are first copied to
//! `<segment>.torn-<offset>` beside the segment, then zeroed in place, and a
//! warning is logged. If a valid frame follows the damage, the damage is in the
//! middle of the log and opening fails with [`Error::Corrupt`]: nothing that may
//! have been acknowledged is ever dropped silently.
//!
//! Two steps: [`scan`] reads and checks everything and changes nothing (`check`
//! runs it too, on a copy of the state database, so that it finds whatever
//! would keep the store from opening); [`finish`] then cuts a torn tail and
//! positions the writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::catalog::{self, SegmentInfo};
use super::reader::{self, Position, Tail};
use super::record::LogRecord;
use super::seal;
use super::segment::{self, StoreId};
use super::writer::{LogWriter, Resume};
use crate::error::{Error, Result};
use crate::fs::{self, Fs, OpenMode};

/// The last durable state of the materialised store: the revision it holds and
/// the log position just after that revision's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Revision of the last commit included.
    pub revision: u64,
    /// Where the next commit's frames start.
    pub position: Position,
}

/// A torn tail that was cut off while opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutTail {
    /// The segment that was cut.
    pub segment: PathBuf,
    /// Offset where the cut starts.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// Where the cut bytes were saved.
    pub saved_to: PathBuf,
    /// What was wrong with the first cut frame.
    pub problem: String,
}

/// The log, opened and ready to append to.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Positioned after the last complete commit.
    pub writer: LogWriter,
    /// Commits handed to the caller for replay.
    pub replayed: u64,
    /// The torn tail that was cut, if any.
    pub cut: Option<CutTail>,
}

/// Settings the writer continues with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterSettings {
    pub segment_size: u64,
    pub preallocate: u64,
}

/// What reading the log from a checkpoint found, before anything is changed:
/// the checks of opening a store, without its writes.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// The segments, checked.
    segments: Vec<SegmentInfo>,
    /// Where the complete commits end.
    end: reader::LogEnd,
    /// Commits handed to the caller.
    pub replayed: u64,
    /// A torn tail to cut: where it starts, the frame that failed, and why.
    torn: Option<(u64, u64, String)>,
    /// A rotation a crash interrupted: the segment before the (empty) last one
    /// is not sealed yet.
    rotating: bool,
}

impl Scanned {
    /// Revision of the last complete commit in the log.
    pub(crate) fn last_revision(&self) -> u64 {
        self.end.last_revision
    }
}

/// Reads the log in `dir` of the store `store_id`, whose materialised state is
/// at `checkpoint`, and passes every complete commit after it to `apply`, in
/// order, with every check of opening a store: segment headers and links, the
/// checkpoint inside the log, a newest segment that is missing or cut, frames,
/// revisions, and a damaged tail that is a torn write rather than damage inside
/// the log. Changes nothing.
///
/// # Errors
/// `Corrupt` (with what to do) for anything that keeps the store from opening;
/// `Io`; what `apply` returns.
pub(crate) fn scan(
    fs: &dyn Fs,
    dir: &Path,
    store_id: &StoreId,
    checkpoint: Checkpoint,
    mut apply: impl FnMut(&[LogRecord<'_>], Position) -> Result<()>,
) -> Result<Scanned> {
    let segments = catalog::list(fs, dir, store_id).map_err(with_repair_hint)?;
    let Some(last) = segments.last() else {
        if checkpoint.revision != 0 {
            return Err(Error::corrupt(
                dir,
                0,
                format!(
                    "the log holds no segments, but the state is at revision {}; the log was \
                     removed, so later commits cannot be recovered: restore a backup, or keep \
                     the state with `statelog repair` (it starts a new log from it)",
                    checkpoint.revision
                ),
            ));
        }
        return Ok(Scanned {
            segments,
            end: reader::LogEnd {
                last_revision: 0,
                end: checkpoint.position,
                tail: Tail::Clean,
                stopped: false,
            },
            replayed: 0,
            torn: None,
            rotating: false,
        });
    };
    let replay_from = start_of_replay(&segments, &checkpoint)?;
    // A rotation a crash interrupted: the segment before the (empty) last one
    // was not sealed. Read up to it; `finish` seals it and goes on in the last.
    let rotating = seal::interrupted_rotation(fs, &segments)?;
    let read = if rotating {
        &segments[..segments.len() - 1]
    } else {
        check_newest(fs, last)?;
        &segments[..]
    };
    let Some(newest) = read.last() else {
        return Err(Error::corrupt(dir, 0, "internal: no segment to read"));
    };
    // Past the checkpoint, commits are replayed. A checkpoint in the empty last
    // segment has them all: the one before is read only to find its end.
    let (start, previous, replay) =
        if rotating && checkpoint.position.segment == last.first_revision {
            let from = Position {
                segment: newest.first_revision,
                offset: segment::SEGMENT_HEADER_LEN as u64,
            };
            let previous = if newest.previous == 0 {
                0
            } else {
                newest.first_revision - 1
            };
            (from, previous, false)
        } else {
            (replay_from, checkpoint.revision, true)
        };
    let mut replayed = 0;
    let end = reader::read_commits(fs, read, start, previous, |parts, position| {
        if replay {
            apply(parts, position)?;
            replayed += 1;
        }
        Ok(true)
    })
    .map_err(with_repair_hint)?;
    let torn = match &end.tail {
        Tail::Clean => None,
        Tail::Damaged {
            at,
            damage_at,
            problem,
        } => {
            check_torn(fs, newest, *damage_at, end.last_revision + 1, problem)?;
            Some((*at, *damage_at, problem.clone()))
        }
    };
    if rotating && last.first_revision != end.last_revision + 1 {
        return Err(with_repair_hint(Error::corrupt(
            &last.path,
            28,
            format!(
                "the segment starts at revision {} but the log before it ends at revision {}: \
                 revisions are missing",
                last.first_revision, end.last_revision
            ),
        )));
    }
    Ok(Scanned {
        segments,
        end,
        replayed,
        torn,
        rotating,
    })
}

/// Makes the log of a scan ready to append to: removes unfinished segments,
/// cuts a torn tail (saving it beside the segment), seals a segment whose
/// rotation a crash interrupted, and positions the writer after the last
/// complete commit (starting the log if it has no segment).
///
/// `read_only` (a file system that takes no writes): nothing is changed, not
/// even a torn tail cut, and the writer returned cannot write.
pub(crate) fn finish(
    fs: Arc<dyn Fs>,
    dir: &Path,
    store_id: StoreId,
    settings: WriterSettings,
    scanned: Scanned,
    read_only: bool,
) -> Result<Recovered> {
    if !read_only {
        remove_temporaries(fs.as_ref(), dir)?;
    }
    let Scanned {
        segments,
        end,
        replayed,
        torn,
        rotating,
    } = scanned;
    let Some(last) = segments.last().cloned() else {
        let writer = if read_only {
            LogWriter::detached(fs, dir, store_id)
        } else {
            LogWriter::create(
                fs,
                dir,
                store_id,
                settings.segment_size,
                settings.preallocate,
                1,
            )?
        };
        return Ok(Recovered {
            writer,
            replayed: 0,
            cut: None,
        });
    };
    let newest = if rotating {
        segments[segments.len() - 2].clone()
    } else {
        last.clone()
    };
    let cut = match torn {
        None => None,
        Some((at, _, problem)) if read_only => {
            tracing::warn!(
                segment = %newest.path.display(),
                offset = at,
                problem = %problem,
                "the log ends in a torn write; it held no acknowledged commit, and is left as \
                 it is while the store is read-only"
            );
            None
        }
        Some((at, _, problem)) => Some(cut_torn_tail(fs.as_ref(), &newest, at, problem)?),
    };
    let data_end = if end.end.segment == newest.first_revision {
        end.end.offset
    } else {
        segment::SEGMENT_HEADER_LEN as u64
    };
    let resume = if rotating {
        if !read_only {
            let file = fs
                .open(&newest.path, OpenMode::ReadWrite)
                .map_err(|e| Error::io("open", &newest.path, e))?;
            seal::seal(file.as_ref(), data_end, last.first_revision)
                .map_err(|e| Error::io("seal the log segment", &newest.path, e))?;
            tracing::warn!(
                segment = %newest.path.display(),
                "sealed a log segment whose rotation a crash interrupted"
            );
        }
        Resume {
            path: last.path.clone(),
            first_revision: last.first_revision,
            end: segment::SEGMENT_HEADER_LEN as u64,
            last_revision: end.last_revision,
        }
    } else {
        Resume {
            path: last.path.clone(),
            first_revision: last.first_revision,
            end: data_end,
            last_revision: end.last_revision,
        }
    };
    let writer = if read_only {
        LogWriter::resume_read_only(fs, dir, store_id, resume)?
    } else {
        LogWriter::resume(
            fs,
            dir,
            store_id,
            settings.segment_size,
            settings.preallocate,
            resume,
        )?
    };
    Ok(Recovered {
        writer,
        replayed,
        cut,
    })
}

/// The check of [`scan`] that needs no state database: whether the log lost
/// its newest part (see `seal`). Opening runs it before it opens the state
/// database, whose own crash recovery would otherwise write to it before the
/// open is refused.
///
/// # Errors
/// As [`scan`] for a newest segment that is missing or cut; `Io`.
pub(crate) fn check_end(fs: &dyn Fs, dir: &Path, store_id: &StoreId) -> Result<()> {
    let segments = catalog::list(fs, dir, store_id).map_err(with_repair_hint)?;
    let Some(last) = segments.last() else {
        return Ok(());
    };
    if seal::interrupted_rotation(fs, &segments)? {
        return Ok(());
    }
    check_newest(fs, last)
}

/// Refuses a log that lost its newest part: its last segment is sealed (the
/// segment after it is gone), or its tail was cut off (see `seal`).
fn check_newest(fs: &dyn Fs, last: &SegmentInfo) -> Result<()> {
    if let Some(next) = seal::sealed_next(fs, last)? {
        return Err(Error::corrupt(
            &last.path,
            last.len - seal::SEAL_FRAME_LEN,
            format!(
                "the log's newest segment is missing: this segment was sealed when the log went \
                 on to {}, which is gone, and with it the commits from revision {next} on (how \
                 many is unknown); restore a backup, or accept the loss with `statelog repair` \
                 (the log then ends at revision {})",
                segment::file_name(next),
                next - 1
            ),
        ));
    }
    if let Some(problem) = seal::cut_tail(fs, last)? {
        return Err(Error::corrupt(
            &last.path,
            last.len,
            format!(
                "{problem}; restore a backup, or accept the loss with `statelog repair` (the log \
                 then ends at its last intact commit)"
            ),
        ));
    }
    Ok(())
}

/// Adds what to do to damage found in the log while opening.
fn with_repair_hint(error: Error) -> Error {
    match error {
        Error::Corrupt {
            file,
            offset,
            reason,
        } if !reason.contains("statelog") && file.extension().is_some_and(|e| e == "log") => {
            Error::Corrupt {
                file,
                offset,
                reason: format!(
                    "{reason}; run `statelog check`, then `statelog repair` (it keeps the log up \
                     to the damage and moves the rest aside) or restore a backup"
                ),
            }
        }
        other => other,
    }
}

fn remove_temporaries(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let names = fs
        .read_dir(dir)
        .map_err(|e| Error::io("list the log directory", dir, e))?;
    let mut removed = false;
    for name in names.iter().filter(|n| catalog::is_temporary(n)) {
        // A segment that was being created; it never held a commit.
        let path = dir.join(name);
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove the unfinished segment", &path, e))?;
        removed = true;
    }
    if removed {
        fs.sync_dir(dir)
            .map_err(|e| Error::io("sync the log directory", dir, e))?;
    }
    Ok(())
}

/// Where replay starts: the checkpoint's position, which must lie inside the
/// log as it is now. A state at revision 0 is empty, and the whole log applies
/// to it from its first segment, whatever that is named: a snapshot restored
/// into an empty store replaces the store's empty first segment with one named
/// for the snapshot's revision, and a crash before the state database's next
/// checkpoint leaves the checkpoint at revision 0 naming the old one.
pub(crate) fn start_of_replay(
    segments: &[SegmentInfo],
    checkpoint: &Checkpoint,
) -> Result<Position> {
    if checkpoint.revision == 0
        && let Some(first) = segments.first()
        && first.previous == 0
    {
        return Ok(Position {
            segment: first.first_revision,
            offset: segment::SEGMENT_HEADER_LEN as u64,
        });
    }
    check_checkpoint_in_range(segments, checkpoint)?;
    Ok(checkpoint.position)
}

/// The checkpoint's position must lie inside the log as it is now.
fn check_checkpoint_in_range(segments: &[SegmentInfo], checkpoint: &Checkpoint) -> Result<()> {
    if checkpoint.revision == 0 && checkpoint.position.segment == 0 {
        return Ok(());
    }
    let Some(seg) = segments
        .iter()
        .find(|s| s.first_revision == checkpoint.position.segment)
    else {
        let first = segments.first().map_or(0, |s| s.first_revision);
        return Err(Error::corrupt(
            segments
                .first()
                .and_then(|s| s.path.parent())
                .map(|d| d.join(segment::file_name(checkpoint.position.segment)))
                .unwrap_or_default(),
            0,
            format!(
                "the state was last saved at revision {} in this segment, which is missing (the \
                 log starts at revision {first}); restore a backup, or keep the state with \
                 `statelog repair` (it starts a new log from it)",
                checkpoint.revision
            ),
        ));
    };
    if checkpoint.position.offset > seg.len {
        return Err(Error::corrupt(
            &seg.path,
            seg.len,
            format!(
                "the segment ends at byte {} but the state was saved at revision {} up to byte {}: \
                 the segment was truncated; restore a backup, or keep the state with \
                 `statelog repair` (it starts a new log from it)",
                seg.len, checkpoint.revision, checkpoint.position.offset
            ),
        ));
    }
    Ok(())
}

/// Refuses damage at the end of the last segment that is not a torn write: a
/// valid record after it proves that the damaged commit had been synced.
fn check_torn(
    fs: &dyn Fs,
    last: &SegmentInfo,
    damage_at: u64,
    revision: u64,
    problem: &str,
) -> Result<()> {
    let file = fs
        .open(&last.path, OpenMode::Read)
        .map_err(|e| Error::io("open", &last.path, e))?;
    if let Some(valid) =
        reader::find_frame_after(file.as_ref(), &last.path, damage_at, last.len, revision)?
    {
        return Err(Error::corrupt(
            &last.path,
            damage_at,
            format!(
                "{problem}; a valid record written after revision {revision} was synced follows \
                 at byte {valid}, so this is damage inside the log, not a torn write; run \
                 `statelog check`, then `statelog repair` (it keeps the log up to the damage \
                 and moves the rest aside) or restore a backup"
            ),
        ));
    }
    Ok(())
}

/// Cuts a torn tail off the last segment from `at`: saves the bytes beside it,
/// then zeroes them in place.
fn cut_torn_tail(fs: &dyn Fs, last: &SegmentInfo, at: u64, problem: String) -> Result<CutTail> {
    let file = fs
        .open(&last.path, OpenMode::ReadWrite)
        .map_err(|e| Error::io("open", &last.path, e))?;
    let data_end = reader::data_end(file.as_ref(), &last.path, at, last.len)?.max(at);
    let len = usize::try_from(data_end - at).unwrap_or(usize::MAX);
    let mut cut = vec![0u8; len];
    let n = fs::read_full_at(file.as_ref(), &mut cut, at)
        .map_err(|e| Error::io("read the torn tail of", &last.path, e))?;
    cut.truncate(n);
    let name = last
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut saved_to = last.path.with_file_name(format!("{name}.torn-{at}"));
    let mut attempt = 1;
    while fs.exists(&saved_to).unwrap_or(false) {
        // An earlier cut at the same place: keep both.
        attempt += 1;
        saved_to = last
            .path
            .with_file_name(format!("{name}.torn-{at}-{attempt}"));
    }
    // IMPORTANT: save the bytes before zeroing them: nothing is destroyed.
    fs::write_file_atomic(fs, &saved_to, &cut)
        .map_err(|e| Error::io("save the torn tail to", &saved_to, e))?;
    let zeros = vec![0u8; cut.len()];
    fs::write_all_at(file.as_ref(), &zeros, at)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("cut the torn tail of", &last.path, e))?;
    tracing::warn!(
        segment = %last.path.display(),
        offset = at,
        bytes = cut.len(),
        saved_to = %saved_to.display(),
        problem = %problem,
        "cut a torn write off the end of the log; it held no acknowledged commit"
    );
    Ok(CutTail {
        segment: last.path.clone(),
        offset: at,
        bytes: cut.len() as u64,
        saved_to,
        problem,
    })
}
