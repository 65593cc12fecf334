//! Reading a whole log that may be damaged, without changing anything: how far
//! it is intact, where and how it is damaged, and what can still be read after
//! the damage. `check` reports from it; `repair` cuts the log where it says.
//!
//! Unlike opening a store, which reads only from the checkpoint on, a survey
//! reads every frame of every segment from the first, with every check of the
//! commit reader (checksums, revision order, segment headers and back-links).

use std::path::{Path, PathBuf};

use super::archive;
use super::catalog::{self, SegmentInfo};
use super::reader::{self, Position, Tail};
use super::record;
use super::seal;
use super::segment::{self, SEGMENT_HEADER_LEN, StoreId};
use crate::error::{Error, Result};
use crate::fs::{Fs, OpenMode};

/// Where the readable log stops being intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// The damaged file.
    pub file: PathBuf,
    /// Where in it.
    pub offset: u64,
    /// What is wrong.
    pub problem: String,
    /// Whether it is a torn write at the very end of the log, which opening the
    /// store cuts by itself (no record after it proves it was ever synced).
    pub torn: bool,
}

/// The log lost its newest part: its last segment is sealed (the one after
/// it is gone), or its tail was cut off (see `seal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LostNewest {
    /// The newest remaining segment.
    pub file: PathBuf,
    /// Where the loss begins in it.
    pub offset: u64,
    /// What was lost, and how it shows.
    pub problem: String,
}

/// What a survey found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Survey {
    /// Every file named like a segment, in revision order.
    pub files: Vec<PathBuf>,
    /// The segments, from the first, whose headers are intact and link up.
    pub chain: Vec<SegmentInfo>,
    /// Whether the log reaches back to the store's first commit (its first
    /// segment names no previous one): revision 1, or a base record.
    pub complete: bool,
    /// The revision before the first one the log holds (the previous revision
    /// to read it from).
    pub start_previous: u64,
    /// The first commit read: its revision, and whether it is a base record.
    pub first: Option<(u64, bool)>,
    /// The last complete, intact commit: its revision and the position after it.
    pub end: Option<(u64, Position)>,
    /// Index in `chain` of the segment where the intact part ends.
    pub end_segment: usize,
    /// Complete commits read.
    pub commits: u64,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// The first damage, if any.
    pub damage: Option<Damage>,
    /// The lowest and highest revision of intact records found after the damage.
    pub beyond: Option<(u64, u64)>,
    /// The log lost its newest segment or the tail of its last one.
    pub lost_newest: Option<LostNewest>,
    /// A rotation was interrupted (the last segment holds nothing and the one
    /// before it is not sealed): opening finishes it; the log is read up to the
    /// segment before the last.
    pub rotation_interrupted: bool,
}

impl Survey {
    /// Revision of the last intact commit (the previous revision if none).
    pub(crate) fn last_revision(&self) -> u64 {
        self.end.map_or(self.start_previous, |(r, _)| r)
    }

    /// Where a reader of the intact log starts.
    pub(crate) fn start(&self) -> Option<Position> {
        self.chain.first().map(|s| Position {
            segment: s.first_revision,
            offset: SEGMENT_HEADER_LEN as u64,
        })
    }
}

/// Surveys the log in `dir` of the store `store_id`.
///
/// # Errors
/// Only `Io` (damage is reported in the result).
pub(crate) fn survey(fs: &dyn Fs, dir: &Path, store_id: &StoreId) -> Result<Survey> {
    let found = catalog::segment_files(fs, dir)?;
    let files: Vec<PathBuf> = found.iter().map(|(_, p)| p.clone()).collect();
    let mut bytes = 0;
    for path in &files {
        bytes += archive::file_len(fs, path)?;
    }
    let mut chain: Vec<SegmentInfo> = Vec::new();
    let mut header_damage = None;
    for (named, path) in found {
        let header = match catalog::read_header(fs, &path) {
            Ok(header) => header,
            Err(Error::Corrupt {
                file,
                offset,
                reason,
            }) => {
                header_damage = Some((file, offset, reason));
                break;
            }
            Err(e) => return Err(e),
        };
        let problem = if header.store_id != *store_id {
            Some((
                12,
                format!(
                    "the segment belongs to another store (id {})",
                    catalog::hex(&header.store_id)
                ),
            ))
        } else if header.first_revision != named {
            Some((
                28,
                format!(
                    "the header says the segment starts at revision {}, but its name says {named}",
                    header.first_revision
                ),
            ))
        } else if let Some(before) = chain.last()
            && header.previous != before.first_revision
        {
            Some((
                36,
                format!(
                    "the segment before this one should start at revision {}, but the log's \
                     previous segment starts at {}: a segment is missing or out of place",
                    header.previous, before.first_revision
                ),
            ))
        } else {
            None
        };
        if let Some((offset, problem)) = problem {
            header_damage = Some((path, offset, problem));
            break;
        }
        let len = archive::file_len(fs, &path)?;
        chain.push(SegmentInfo {
            first_revision: named,
            previous: header.previous,
            path,
            len,
        });
    }
    // With no intact segment at all, the log reaches back only if it is empty
    // (a damaged first header could have belonged to any segment).
    let complete = chain.first().map_or(files.is_empty(), |s| s.previous == 0);
    let start_previous = match chain.first() {
        Some(s) if s.previous != 0 => s.first_revision - 1,
        _ => 0,
    };
    // The end of the log, when every segment's header is intact: a rotation
    // to finish, or a lost newest segment or cut tail.
    let mut rotation_interrupted = false;
    let mut lost_newest = None;
    if header_damage.is_none()
        && let Some(last) = chain.last()
    {
        rotation_interrupted = seal::interrupted_rotation(fs, &chain)?;
        if rotation_interrupted {
            // Opening seals the segment before the last; nothing was lost.
        } else if let Some(next) = seal::sealed_next(fs, last)? {
            lost_newest = Some(LostNewest {
                file: last.path.clone(),
                offset: last.len - seal::SEAL_FRAME_LEN,
                problem: format!(
                    "the log's newest segment is missing: this one was sealed when the log went \
                     on to {}, which is gone, and with it the commits from revision {next} on \
                     (how many is unknown)",
                    segment::file_name(next)
                ),
            });
        } else if let Some(problem) = seal::cut_tail(fs, last)? {
            lost_newest = Some(LostNewest {
                file: last.path.clone(),
                offset: last.len,
                problem,
            });
        }
    }
    let read_len = chain.len() - usize::from(rotation_interrupted);
    let mut out = Survey {
        files,
        chain,
        complete,
        start_previous,
        first: None,
        end: None,
        end_segment: 0,
        commits: 0,
        bytes,
        damage: None,
        beyond: None,
        lost_newest,
        rotation_interrupted,
    };
    let Some(start) = out.start() else {
        out.damage = header_damage.map(|(file, offset, problem)| Damage {
            file,
            offset,
            problem,
            torn: false,
        });
        if let Some(damage) = &out.damage {
            out.beyond = scan_beyond(fs, &out.files, &damage.file, damage.offset)?;
        }
        return Ok(out);
    };
    let mut first = None;
    let mut end = None;
    let mut commits = 0;
    let read = reader::read_commits(
        fs,
        &out.chain[..read_len],
        start,
        out.start_previous,
        |parts, position| {
            if let Some(head) = parts.first() {
                if first.is_none() {
                    first = Some((head.revision, head.base));
                }
                end = Some((head.revision, position));
                commits += 1;
            }
            Ok(true)
        },
    );
    out.first = first;
    out.end = end;
    out.commits = commits;
    out.end_segment = end
        .and_then(|(_, p)| out.chain.iter().position(|s| s.first_revision == p.segment))
        .unwrap_or(0);
    let last_revision = out.last_revision();
    out.damage = match read {
        Ok(log_end) => match log_end.tail {
            Tail::Clean => header_damage.map(|(file, offset, problem)| Damage {
                file,
                offset,
                problem,
                torn: false,
            }),
            Tail::Damaged {
                damage_at, problem, ..
            } => {
                let last = out.chain[..read_len].last().cloned();
                let mut torn = false;
                // A cut tail ends in a partial frame too, but it is no torn write.
                if let Some(last) = &last
                    && header_damage.is_none()
                    && out.lost_newest.is_none()
                {
                    let file = fs
                        .open(&last.path, OpenMode::Read)
                        .map_err(|e| Error::io("open", &last.path, e))?;
                    torn = reader::find_frame_after(
                        file.as_ref(),
                        &last.path,
                        damage_at,
                        last.len,
                        last_revision + 1,
                    )?
                    .is_none();
                }
                last.map(|last| Damage {
                    file: last.path,
                    offset: damage_at,
                    problem,
                    torn,
                })
            }
        },
        Err(Error::Corrupt {
            file,
            offset,
            reason,
        }) => Some(Damage {
            file,
            offset,
            problem: reason,
            torn: false,
        }),
        Err(e) => return Err(e),
    };
    if let Some(damage) = &out.damage {
        out.beyond = scan_beyond(fs, &out.files, &damage.file, damage.offset)?;
    }
    Ok(out)
}

/// The lowest and highest revision of intact records after `offset` of `file`
/// and in every segment file after it.
fn scan_beyond(
    fs: &dyn Fs,
    files: &[PathBuf],
    file: &Path,
    offset: u64,
) -> Result<Option<(u64, u64)>> {
    let Some(index) = files.iter().position(|f| f == file) else {
        return Ok(None);
    };
    let mut range: Option<(u64, u64)> = None;
    for (i, path) in files.iter().enumerate().skip(index) {
        let len = archive::file_len(fs, path)?;
        let handle = fs
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open", path, e))?;
        // The first frame at or after the header (or after the damage).
        let search_from = if i == index {
            offset
        } else {
            SEGMENT_HEADER_LEN as u64 - 1
        };
        let mut next = reader::find_frame_after(handle.as_ref(), path, search_from, len, 0)?;
        while let Some(at) = next {
            let (stop, stop_at) =
                reader::scan_frames(handle.as_ref(), path, len, at, |_, _, payload| {
                    if let Ok(r) = record::decode(payload)
                        && r.check().is_ok()
                    {
                        range = Some(match range {
                            None => (r.revision, r.revision),
                            Some((lo, hi)) => (lo.min(r.revision), hi.max(r.revision)),
                        });
                    }
                    Ok(true)
                })?;
            next = match stop {
                reader::FrameStop::Damaged(_) => {
                    reader::find_frame_after(handle.as_ref(), path, stop_at, len, 0)?
                }
                _ => None,
            };
        }
    }
    Ok(range)
}
