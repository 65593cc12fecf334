//! Checking a backup directory against its manifest before anything is
//! restored from it: every file present with the listed size and CRC-32,
//! every header of this store and in order, the base one complete base commit,
//! and the copied log one unbroken run of revisions from the base to the last
//! revision the manifest names.

use std::path::{Path, PathBuf};

use super::Until;
use super::manifest::{MANIFEST_FILE, Manifest};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::log::archive;
use crate::log::catalog::{self, SegmentInfo};
use crate::log::reader::{self, Position, Tail};
use crate::log::segment::{SEGMENT_HEADER_LEN, StoreId};
use crate::time::Timestamp;

/// A backup as its manifest describes it.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub manifest: Manifest,
    pub store_id: StoreId,
    /// The base file, the bytes of it that count, and its revision.
    pub base: Option<(PathBuf, u64, u64)>,
    /// The copied segments, with the lengths the manifest gives.
    pub segments: Vec<SegmentInfo>,
    /// The revision before the copied log's first commit.
    pub start_previous: u64,
}

/// A backup that checked out.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub view: View,
    /// The first commit after the base: revision, and whether it is a base record.
    pub first_after_base: Option<(u64, bool)>,
    pub commits_after_base: u64,
    pub last_revision: u64,
    /// Where a restore stops, as asked for: revision and commit time.
    pub stop: Option<(u64, Timestamp)>,
    /// Things worth knowing that are not wrong.
    pub notes: Vec<String>,
}

/// One thing wrong with a backup: where, what, and what to do about it
/// (`check` reports it as a `Problem`; `restore` refuses with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The file concerned.
    pub file: PathBuf,
    /// The byte offset in it, if known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub action: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} at byte {offset}: ", self.file.display())?,
            None => write!(f, "{}: ", self.file.display())?,
        }
        write!(f, "{} ({})", self.what, self.action)
    }
}

fn problem(file: &Path, offset: Option<u64>, what: impl Into<String>, action: &str) -> Finding {
    Finding {
        file: file.to_owned(),
        offset,
        what: what.into(),
        action: action.to_owned(),
    }
}

const DAMAGED: &str = "the backup cannot be trusted: take a new backup into a new directory \
                       (restore from another backup if the store is gone)";

/// Checks the backup in `dir` and resolves `until`. I/O errors other than on
/// the backup's own files are errors; everything wrong with the backup is a
/// problem in the list (`None` is returned when the problems prevent reading
/// it at all).
pub(crate) fn verify(
    fs: &dyn Fs,
    dir: &Path,
    until: Until,
) -> Result<(Option<Verified>, Vec<Finding>)> {
    let mut problems = Vec::new();
    let manifest = match Manifest::read_with(fs, dir) {
        Ok(m) => m,
        Err(e) => {
            problems.push(problem(
                &dir.join(MANIFEST_FILE),
                None,
                e.to_string(),
                "point at a backup directory (one holding a MANIFEST written by `statelog \
                 backup`)",
            ));
            return Ok((None, problems));
        }
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let Some(store_id) = manifest.store_id_bytes() else {
        problems.push(problem(
            &manifest_path,
            None,
            "the store id is malformed",
            DAMAGED,
        ));
        return Ok((None, problems));
    };
    let mut notes = Vec::new();
    // Every file: present, long enough, and the checksum the manifest gives.
    let mut files: Vec<(PathBuf, u64, u32)> = Vec::new();
    if let Some(base) = &manifest.base {
        files.push((dir.join(&base.file), base.bytes, base.crc32));
    }
    for s in &manifest.segments {
        files.push((dir.join(&s.file), s.bytes, s.crc32));
    }
    for (path, bytes, crc) in &files {
        if !fs
            .exists(path)
            .map_err(|e| Error::io("look for", path, e))?
        {
            problems.push(problem(
                path,
                None,
                "the file is missing (the manifest lists it)",
                DAMAGED,
            ));
            continue;
        }
        let len = archive::file_len(fs, path)?;
        if len < *bytes {
            problems.push(problem(
                path,
                Some(len),
                format!("the file has {len} bytes, the manifest lists {bytes}: it was truncated"),
                DAMAGED,
            ));
            continue;
        }
        if len > *bytes {
            notes.push(format!(
                "{} has {} bytes after the {bytes} the manifest lists (left by an interrupted \
                 backup run; ignored)",
                path.display(),
                len - bytes
            ));
        }
        let actual = archive::crc_prefix(fs, path, *bytes)?;
        if actual != *crc {
            problems.push(problem(
                path,
                None,
                format!(
                    "the file's CRC-32 is {actual:08x}, the manifest lists {crc:08x}: the file \
                     was changed or damaged"
                ),
                DAMAGED,
            ));
        }
    }
    if !problems.is_empty() {
        return Ok((None, problems));
    }

    // Segment headers: this store, named for their first revision, linked.
    let mut segments: Vec<SegmentInfo> = Vec::new();
    for s in &manifest.segments {
        let path = dir.join(&s.file);
        let header = match catalog::read_header(fs, &path) {
            Ok(h) => h,
            Err(Error::Corrupt { offset, reason, .. }) => {
                problems.push(problem(&path, Some(offset), reason, DAMAGED));
                continue;
            }
            Err(e) => return Err(e),
        };
        if header.store_id != store_id {
            problems.push(problem(
                &path,
                Some(12),
                format!(
                    "the segment belongs to another store (id {}, the backup is of {})",
                    catalog::hex(&header.store_id),
                    manifest.store_id
                ),
                DAMAGED,
            ));
        } else if header.first_revision != s.first_revision {
            problems.push(problem(
                &path,
                Some(28),
                format!(
                    "the header says the segment starts at revision {}, its name says {}",
                    header.first_revision, s.first_revision
                ),
                DAMAGED,
            ));
        } else if let Some(before) = segments.last()
            && header.previous != before.first_revision
        {
            problems.push(problem(
                &path,
                Some(36),
                format!(
                    "the segment before this one should start at revision {}, but the backup's \
                     previous segment starts at {}: a segment is missing",
                    header.previous, before.first_revision
                ),
                DAMAGED,
            ));
        }
        segments.push(SegmentInfo {
            first_revision: s.first_revision,
            previous: header.previous,
            path,
            len: s.bytes,
        });
    }
    if !problems.is_empty() {
        return Ok((None, problems));
    }

    // The base: one complete base commit, as the manifest describes it.
    let base_revision = manifest.base_revision();
    let mut base_time = Timestamp::EPOCH;
    let base = manifest
        .base
        .as_ref()
        .map(|b| (dir.join(&b.file), b.bytes, b.revision));
    if let (Some((path, bytes, revision)), Some(entry)) = (&base, &manifest.base) {
        match archive::read_base(fs, path, *bytes, &store_id, *revision, |_, _| Ok(())) {
            Ok(read) => {
                base_time = Timestamp::from_micros(read.time);
                if read.records != entry.records || base_time != manifest.base_time() {
                    problems.push(problem(
                        &manifest_path,
                        None,
                        format!(
                            "the manifest says the base holds {} records of {}, the base holds \
                             {} of {base_time}",
                            entry.records, entry.time, read.records
                        ),
                        DAMAGED,
                    ));
                }
            }
            Err(Error::Corrupt { offset, reason, .. }) => {
                problems.push(problem(path, Some(offset), reason, DAMAGED));
            }
            Err(e) => return Err(e),
        }
    }

    // The log: one unbroken run of revisions from the base to the end.
    let start_previous = match segments.first() {
        Some(s) if s.previous != 0 => s.first_revision - 1,
        _ => 0,
    };
    let mut first_after_base = None;
    let mut commits_after_base = 0;
    let mut last_revision = base_revision;
    let mut last_time = base_time;
    let mut times: Vec<(u64, Timestamp)> = Vec::new();
    let wants_time = matches!(until, Until::Time(_));
    if let Some(first) = segments.first() {
        if base_revision == 0 && first.previous != 0 {
            problems.push(problem(
                &first.path,
                Some(36),
                format!(
                    "the backup has no base and its log starts at revision {}: revisions 1 to {} \
                     are missing",
                    first.first_revision, start_previous
                ),
                DAMAGED,
            ));
        } else if base_revision > 0 && first.first_revision > base_revision + 1 {
            problems.push(problem(
                &first.path,
                Some(28),
                format!(
                    "the base is at revision {base_revision} but the log starts at revision {}: \
                     revisions {} to {} are missing",
                    first.first_revision,
                    base_revision + 1,
                    first.first_revision - 1
                ),
                DAMAGED,
            ));
        } else {
            let read = reader::read_commits(
                fs,
                &segments,
                Position {
                    segment: first.first_revision,
                    offset: SEGMENT_HEADER_LEN as u64,
                },
                start_previous,
                |parts, _| {
                    let Some(head) = parts.first() else {
                        return Ok(true);
                    };
                    if head.revision <= base_revision {
                        return Ok(true);
                    }
                    if first_after_base.is_none() {
                        first_after_base = Some((head.revision, head.base));
                    }
                    commits_after_base += 1;
                    last_revision = head.revision;
                    last_time = Timestamp::from_micros(head.time);
                    if wants_time {
                        times.push((head.revision, last_time));
                    }
                    Ok(true)
                },
            );
            match read {
                Ok(end) => {
                    if let Tail::Damaged {
                        damage_at,
                        problem: what,
                        ..
                    } = end.tail
                        && let Some(last) = segments.last()
                    {
                        problems.push(problem(&last.path, Some(damage_at), what, DAMAGED));
                    }
                }
                Err(Error::Corrupt {
                    file,
                    offset,
                    reason,
                }) => problems.push(problem(&file, Some(offset), reason, DAMAGED)),
                Err(e) => return Err(e),
            }
            if base_revision > 0
                && let Some((revision, _)) = first_after_base
                && revision != base_revision + 1
            {
                problems.push(problem(
                    &first.path,
                    None,
                    format!(
                        "the base is at revision {base_revision} but the log continues at \
                         revision {revision}"
                    ),
                    DAMAGED,
                ));
            }
        }
    }
    if problems.is_empty() && last_revision != manifest.last_revision {
        problems.push(problem(
            &manifest_path,
            None,
            format!(
                "the manifest says the backup reaches revision {}, but its files end at revision \
                 {last_revision}",
                manifest.last_revision
            ),
            DAMAGED,
        ));
    }
    if problems.is_empty() && last_time != manifest.last_time() {
        problems.push(problem(
            &manifest_path,
            None,
            format!(
                "the manifest says the last commit was at {}, its files say {last_time}",
                manifest.last_time
            ),
            DAMAGED,
        ));
    }
    if !problems.is_empty() {
        return Ok((None, problems));
    }
    let stop = match until {
        Until::End => Some((last_revision, last_time)),
        Until::Revision(n) if n < base_revision => {
            problems.push(problem(
                dir,
                None,
                format!(
                    "revision {n} is before the backup's base (revision {base_revision}); the \
                     backup cannot go back that far"
                ),
                "restore to a revision from the base on, or use an older backup",
            ));
            None
        }
        Until::Revision(n) if n > last_revision => {
            problems.push(problem(
                dir,
                None,
                format!("the backup ends at revision {last_revision}, before revision {n}"),
                "restore to a revision the backup holds, or take a newer backup",
            ));
            None
        }
        Until::Revision(n) if n == base_revision => Some((n, base_time)),
        Until::Revision(n) => {
            // Its time is read when restoring; the restore reports it.
            Some((n, Timestamp::EPOCH))
        }
        Until::Time(t) => match times.iter().rev().find(|(_, time)| *time < t) {
            Some(&(r, time)) => Some((r, time)),
            None if base_revision > 0 && base_time < t => Some((base_revision, base_time)),
            None if base_revision == 0 && first_after_base.is_none() => Some((0, Timestamp::EPOCH)),
            None => {
                problems.push(problem(
                    dir,
                    None,
                    format!(
                        "the backup holds no commit before {t} (its base is at {}, revision \
                         {base_revision})",
                        if base_revision > 0 {
                            base_time.to_string()
                        } else {
                            "the start of the store".to_owned()
                        }
                    ),
                    "restore to a later time, or use an older backup",
                ));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Ok((None, problems));
    }
    Ok((
        Some(Verified {
            view: View {
                manifest,
                store_id,
                base,
                segments,
                start_previous,
            },
            first_after_base,
            commits_after_base,
            last_revision,
            stop,
            notes,
        }),
        problems,
    ))
}

/// After a backup run copied segments: reads the backup's log from the segment
/// `from` (by first revision) to its end, which must be revision `last`, with
/// every check of the commit reader and the segment headers.
pub(crate) fn check_copied_log(
    fs: &dyn Fs,
    dir: &Path,
    manifest: &Manifest,
    from: u64,
    last: u64,
) -> Result<()> {
    let Some(store_id) = manifest.store_id_bytes() else {
        return Err(super::manifest::invalid(
            dir,
            "the manifest's store id is malformed",
        ));
    };
    let mut segments: Vec<SegmentInfo> = Vec::new();
    for s in manifest
        .segments
        .iter()
        .filter(|s| s.first_revision >= from)
    {
        let path = dir.join(&s.file);
        let header = catalog::read_header(fs, &path)?;
        if header.store_id != store_id || header.first_revision != s.first_revision {
            return Err(Error::corrupt(
                &path,
                12,
                "the copied segment's header does not name this store and revision",
            ));
        }
        if let Some(before) = segments.last()
            && header.previous != before.first_revision
        {
            return Err(Error::corrupt(
                &path,
                36,
                "the copied segments do not link up: a segment is missing",
            ));
        }
        segments.push(SegmentInfo {
            first_revision: s.first_revision,
            previous: header.previous,
            path,
            len: s.bytes,
        });
    }
    let Some(first) = segments.first() else {
        return Ok(());
    };
    let previous = if first.previous == 0 {
        0
    } else {
        first.first_revision - 1
    };
    let end = reader::read_commits(
        fs,
        &segments,
        Position {
            segment: first.first_revision,
            offset: SEGMENT_HEADER_LEN as u64,
        },
        previous,
        |_, _| Ok(true),
    )
    .map_err(|e| match e {
        Error::Corrupt {
            file,
            offset,
            reason,
        } => Error::corrupt(
            file,
            offset,
            format!(
                "{reason} (in the copy just made; the store's log has the same damage: run \
                 `statelog check` on the store)"
            ),
        ),
        other => other,
    })?;
    if let Tail::Damaged {
        damage_at, problem, ..
    } = end.tail
    {
        let path = segments.last().map(|s| s.path.clone()).unwrap_or_default();
        return Err(Error::corrupt(path, damage_at, problem));
    }
    if end.last_revision != last {
        return Err(super::manifest::invalid(
            dir,
            format!(
                "the copied log ends at revision {} instead of {last}",
                end.last_revision
            ),
        ));
    }
    Ok(())
}
