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
    let mut v = match Verifier::new(fs, dir) {
        Ok(v) => v,
        Err(problem) => return Ok((None, vec![problem])),
    };
    v.check_files()?;
    if !v.problems.is_empty() {
        return Ok((None, v.problems));
    }
    let segments = v.check_headers()?;
    if !v.problems.is_empty() {
        return Ok((None, v.problems));
    }
    let base_time = v.check_base()?;
    let log = v.read_log(&segments, base_time, until)?;
    v.check_end(&log);
    if !v.problems.is_empty() {
        return Ok((None, v.problems));
    }
    let stop = v.resolve_stop(until, &log, base_time);
    if !v.problems.is_empty() {
        return Ok((None, v.problems));
    }
    let base = v
        .manifest
        .base
        .as_ref()
        .map(|b| (dir.join(&b.file), b.bytes, b.revision));
    Ok((
        Some(Verified {
            view: View {
                manifest: v.manifest,
                store_id: v.store_id,
                base,
                segments,
                start_previous: log.start_previous,
            },
            first_after_base: log.first_after_base,
            commits_after_base: log.commits_after_base,
            last_revision: log.last_revision,
            stop,
            notes: v.notes,
        }),
        v.problems,
    ))
}

/// A verification in progress: the backup, and what was found so far.
struct Verifier<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    manifest: Manifest,
    manifest_path: PathBuf,
    store_id: StoreId,
    problems: Vec<Finding>,
    notes: Vec<String>,
}

/// What reading the backup's log found.
struct LogRead {
    /// The revision before the copied log's first commit.
    start_previous: u64,
    /// The first commit after the base: revision, and whether it is a base
    /// record.
    first_after_base: Option<(u64, bool)>,
    commits_after_base: u64,
    last_revision: u64,
    last_time: Timestamp,
    /// Each commit's revision and time, when stopping at a time.
    times: Vec<(u64, Timestamp)>,
}

impl<'a> Verifier<'a> {
    /// Reads the manifest, which must name a well-formed store id.
    fn new(fs: &'a dyn Fs, dir: &'a Path) -> std::result::Result<Verifier<'a>, Finding> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::read_with(fs, dir).map_err(|e| {
            problem(
                &manifest_path,
                None,
                e.to_string(),
                "point at a backup directory (one holding a MANIFEST written by `statelog \
                 backup`)",
            )
        })?;
        let store_id = manifest
            .store_id_bytes()
            .ok_or_else(|| problem(&manifest_path, None, "the store id is malformed", DAMAGED))?;
        Ok(Verifier {
            fs,
            dir,
            manifest,
            manifest_path,
            store_id,
            problems: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// Every file: present, long enough, and the checksum the manifest gives.
    fn check_files(&mut self) -> Result<()> {
        let (fs, dir) = (self.fs, self.dir);
        let mut files: Vec<(PathBuf, u64, u32)> = Vec::new();
        if let Some(base) = &self.manifest.base {
            files.push((dir.join(&base.file), base.bytes, base.crc32));
        }
        for s in &self.manifest.segments {
            files.push((dir.join(&s.file), s.bytes, s.crc32));
        }
        for (path, bytes, crc) in &files {
            if !fs
                .exists(path)
                .map_err(|e| Error::io("look for", path, e))?
            {
                self.damaged(path, None, "the file is missing (the manifest lists it)");
                continue;
            }
            let len = archive::file_len(fs, path)?;
            if len < *bytes {
                self.damaged(
                    path,
                    Some(len),
                    format!(
                        "the file has {len} bytes, the manifest lists {bytes}: it was truncated"
                    ),
                );
                continue;
            }
            if len > *bytes {
                self.notes.push(format!(
                    "{} has {} bytes after the {bytes} the manifest lists (left by an \
                     interrupted backup run; ignored)",
                    path.display(),
                    len - bytes
                ));
            }
            let actual = archive::crc_prefix(fs, path, *bytes)?;
            if actual != *crc {
                self.damaged(
                    path,
                    None,
                    format!(
                        "the file's CRC-32 is {actual:08x}, the manifest lists {crc:08x}: the \
                         file was changed or damaged"
                    ),
                );
            }
        }
        Ok(())
    }

    /// Segment headers: this store, named for their first revision, linked.
    fn check_headers(&mut self) -> Result<Vec<SegmentInfo>> {
        let mut segments: Vec<SegmentInfo> = Vec::new();
        for s in &self.manifest.segments {
            let path = self.dir.join(&s.file);
            let header = match catalog::read_header(self.fs, &path) {
                Ok(h) => h,
                Err(Error::Corrupt { offset, reason, .. }) => {
                    self.problems
                        .push(problem(&path, Some(offset), reason, DAMAGED));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let wrong = if header.store_id != self.store_id {
                Some((
                    12,
                    format!(
                        "the segment belongs to another store (id {}, the backup is of {})",
                        catalog::hex(&header.store_id),
                        self.manifest.store_id
                    ),
                ))
            } else if header.first_revision != s.first_revision {
                Some((
                    28,
                    format!(
                        "the header says the segment starts at revision {}, its name says {}",
                        header.first_revision, s.first_revision
                    ),
                ))
            } else if let Some(before) = segments.last()
                && header.previous != before.first_revision
            {
                Some((
                    36,
                    format!(
                        "the segment before this one should start at revision {}, but the \
                         backup's previous segment starts at {}: a segment is missing",
                        header.previous, before.first_revision
                    ),
                ))
            } else {
                None
            };
            if let Some((offset, what)) = wrong {
                self.problems
                    .push(problem(&path, Some(offset), what, DAMAGED));
            }
            segments.push(SegmentInfo {
                first_revision: s.first_revision,
                previous: header.previous,
                path,
                len: s.bytes,
            });
        }
        Ok(segments)
    }

    /// The base: one complete base commit, as the manifest describes it.
    /// Returns its commit time (the epoch without a base).
    fn check_base(&mut self) -> Result<Timestamp> {
        let Some(entry) = &self.manifest.base else {
            return Ok(Timestamp::EPOCH);
        };
        let path = self.dir.join(&entry.file);
        let read = archive::read_base(
            self.fs,
            &path,
            entry.bytes,
            &self.store_id,
            entry.revision,
            |_, _| Ok(()),
        );
        match read {
            Ok(read) => {
                let base_time = Timestamp::from_micros(read.time);
                if read.records != entry.records || base_time != self.manifest.base_time() {
                    let what = format!(
                        "the manifest says the base holds {} records of {}, the base holds {} \
                         of {base_time}",
                        entry.records, entry.time, read.records
                    );
                    self.problems
                        .push(problem(&self.manifest_path, None, what, DAMAGED));
                }
                Ok(base_time)
            }
            Err(Error::Corrupt { offset, reason, .. }) => {
                self.problems
                    .push(problem(&path, Some(offset), reason, DAMAGED));
                Ok(Timestamp::EPOCH)
            }
            Err(e) => Err(e),
        }
    }

    /// The log: one unbroken run of revisions from the base to the end.
    fn read_log(
        &mut self,
        segments: &[SegmentInfo],
        base_time: Timestamp,
        until: Until,
    ) -> Result<LogRead> {
        let base_revision = self.manifest.base_revision();
        let start_previous = match segments.first() {
            Some(s) if s.previous != 0 => s.first_revision - 1,
            _ => 0,
        };
        let mut log = LogRead {
            start_previous,
            first_after_base: None,
            commits_after_base: 0,
            last_revision: base_revision,
            last_time: base_time,
            times: Vec::new(),
        };
        let Some(first) = segments.first() else {
            return Ok(log);
        };
        if base_revision == 0 && first.previous != 0 {
            let what = format!(
                "the backup has no base and its log starts at revision {}: revisions 1 to {} \
                 are missing",
                first.first_revision, start_previous
            );
            self.damaged(&first.path, Some(36), what);
            return Ok(log);
        }
        if base_revision > 0 && first.first_revision > base_revision + 1 {
            let what = format!(
                "the base is at revision {base_revision} but the log starts at revision {}: \
                 revisions {} to {} are missing",
                first.first_revision,
                base_revision + 1,
                first.first_revision - 1
            );
            self.damaged(&first.path, Some(28), what);
            return Ok(log);
        }
        let wants_time = matches!(until, Until::Time(_));
        let start = Position {
            segment: first.first_revision,
            offset: SEGMENT_HEADER_LEN as u64,
        };
        let read = reader::read_commits(self.fs, segments, start, start_previous, |parts, _| {
            let Some(head) = parts.first() else {
                return Ok(true);
            };
            if head.revision <= base_revision {
                return Ok(true);
            }
            if log.first_after_base.is_none() {
                log.first_after_base = Some((head.revision, head.base));
            }
            log.commits_after_base += 1;
            log.last_revision = head.revision;
            log.last_time = Timestamp::from_micros(head.time);
            if wants_time {
                log.times.push((head.revision, log.last_time));
            }
            Ok(true)
        });
        match read {
            Ok(end) => {
                if let Tail::Damaged {
                    damage_at,
                    problem: what,
                    ..
                } = end.tail
                    && let Some(last) = segments.last()
                {
                    self.damaged(&last.path, Some(damage_at), what);
                }
            }
            Err(Error::Corrupt {
                file,
                offset,
                reason,
            }) => self.damaged(&file, Some(offset), reason),
            Err(e) => return Err(e),
        }
        if base_revision > 0
            && let Some((revision, _)) = log.first_after_base
            && revision != base_revision + 1
        {
            let what = format!(
                "the base is at revision {base_revision} but the log continues at revision \
                 {revision}"
            );
            self.damaged(&first.path, None, what);
        }
        Ok(log)
    }

    /// The files must end where the manifest says the backup does.
    fn check_end(&mut self, log: &LogRead) {
        if !self.problems.is_empty() {
            return;
        }
        let manifest_path = self.manifest_path.clone();
        if log.last_revision != self.manifest.last_revision {
            let what = format!(
                "the manifest says the backup reaches revision {}, but its files end at revision \
                 {}",
                self.manifest.last_revision, log.last_revision
            );
            self.damaged(&manifest_path, None, what);
        } else if log.last_time != self.manifest.last_time() {
            let what = format!(
                "the manifest says the last commit was at {}, its files say {}",
                self.manifest.last_time, log.last_time
            );
            self.damaged(&manifest_path, None, what);
        }
    }

    /// Where a restore stops, as asked for: revision and commit time.
    fn resolve_stop(
        &mut self,
        until: Until,
        log: &LogRead,
        base_time: Timestamp,
    ) -> Option<(u64, Timestamp)> {
        let base_revision = self.manifest.base_revision();
        let last_revision = log.last_revision;
        let refused = |what: String, action: &str| problem(self.dir, None, what, action);
        let refusal = match until {
            Until::End => return Some((last_revision, log.last_time)),
            Until::Revision(n) if n < base_revision => refused(
                format!(
                    "revision {n} is before the backup's base (revision {base_revision}); the \
                     backup cannot go back that far"
                ),
                "restore to a revision from the base on, or use an older backup",
            ),
            Until::Revision(n) if n > last_revision => refused(
                format!("the backup ends at revision {last_revision}, before revision {n}"),
                "restore to a revision the backup holds, or take a newer backup",
            ),
            Until::Revision(n) if n == base_revision => return Some((n, base_time)),
            // Its time is read when restoring; the restore reports it.
            Until::Revision(n) => return Some((n, Timestamp::EPOCH)),
            Until::Time(t) => match log.times.iter().rev().find(|(_, time)| *time < t) {
                Some(&(r, time)) => return Some((r, time)),
                None if base_revision > 0 && base_time < t => {
                    return Some((base_revision, base_time));
                }
                None if base_revision == 0 && log.first_after_base.is_none() => {
                    return Some((0, Timestamp::EPOCH));
                }
                None => refused(
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
                ),
            },
        };
        self.problems.push(refusal);
        None
    }

    /// Something is wrong with a file of the backup: it cannot be trusted.
    fn damaged(&mut self, file: &Path, offset: Option<u64>, what: impl Into<String>) {
        self.problems.push(problem(file, offset, what, DAMAGED));
    }
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
