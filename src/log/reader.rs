//! Reading the log back: frames of one segment, then whole commits across
//! segments, with every check that makes a record count.
//!
//! A frame counts only if its header and payload checksums match; a commit counts
//! only if its record decodes, passes [`LogRecord::check`], has the revision that
//! follows the one before it, and all its parts are present. A sealed (non-last)
//! segment must end exactly after its last complete commit, or after its seal
//! (log format 2), which names the revision after that commit and is the last
//! frame. Damage anywhere but
//! the tail of the last segment is an error; the tail of the last segment is
//! reported to the caller, which decides whether it is a torn write (see
//! `recovery`).

use std::path::Path;

use super::catalog::SegmentInfo;
use super::frame::{self, FRAME_HEADER_LEN};
use super::record::{self, LogRecord};
use super::segment::SEGMENT_HEADER_LEN;
use crate::error::{Error, Result};
use crate::fs::{self, FileHandle, Fs, OpenMode};

/// A place in the log: a segment (by its first revision) and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// First revision of the segment.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// Where a frame scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameStop {
    /// Exactly at the end of the file.
    End,
    /// At an all-zero frame header.
    Zero,
    /// At a frame that does not verify.
    Damaged(String),
}

/// The most a frame scan reads at once (replaying a long log).
const WINDOW: usize = 1 << 20;
/// What a frame scan reads first, doubling up to [`WINDOW`]: opening a store
/// that closed cleanly finds the end of its log in the first few bytes.
const FIRST_WINDOW: usize = 64 << 10;
/// The buffer for checking that the rest of a segment is zeros: small enough
/// to stay in the processor's cache while the kernel copies the page cache
/// into it, and to cost no fresh pages (an open reads the preallocated rest
/// of the active segment, 4 MiB by default, through it).
const ZERO_CHUNK: usize = 64 << 10;

/// Visits the frames of one segment from byte `from`, in order. `visit` gets each
/// frame's offset, the offset after it, and its payload, and returns whether to go
/// on. Returns why it stopped and where.
pub(crate) fn scan_frames(
    file: &dyn FileHandle,
    path: &Path,
    file_len: u64,
    from: u64,
    mut visit: impl FnMut(u64, u64, &[u8]) -> Result<bool>,
) -> Result<(FrameStop, u64)> {
    let mut file_len = file_len;
    let mut buf: Vec<u8> = Vec::new();
    let mut window_size = FIRST_WINDOW;
    // Invariant: buf holds the file's bytes from buf_start, and
    // buf_start <= pos <= buf_start + buf.len().
    let mut buf_start = from;
    let mut pos = from;
    loop {
        if pos >= file_len {
            return Ok((FrameStop::End, pos));
        }
        let window = &buf[(pos - buf_start) as usize..];
        match frame::decode(window) {
            frame::Decoded::Frame { payload, frame_len } => {
                let next = pos + frame_len as u64;
                if !visit(pos, next, payload)? {
                    return Ok((FrameStop::End, next));
                }
                pos = next;
            }
            frame::Decoded::Incomplete { needed } => {
                let remaining = file_len - pos;
                let want = needed.unwrap_or(FRAME_HEADER_LEN) as u64;
                if window.len() as u64 >= remaining {
                    // Every byte the file has from here is in the window, and the
                    // frame needs more: it runs past the end of the file.
                    if remaining < FRAME_HEADER_LEN as u64 && is_zero(window) {
                        return Ok((FrameStop::Zero, pos));
                    }
                    let problem = if needed.is_none() {
                        format!("the file ends {remaining} bytes into a frame header")
                    } else {
                        format!(
                            "a frame of {want} bytes starts here but the file ends after {remaining}"
                        )
                    };
                    return Ok((FrameStop::Damaged(problem), pos));
                }
                let size = want.max(window_size as u64).min(remaining) as usize;
                window_size = (window_size * 2).min(WINDOW);
                buf.clear();
                buf.resize(size, 0);
                let n = fs::read_full_at(file, &mut buf, pos)
                    .map_err(|e| Error::io("read the log segment", path, e))?;
                buf.truncate(n);
                buf_start = pos;
                if n < size {
                    // The file is shorter than its size said (it shrank meanwhile).
                    file_len = pos + n as u64;
                }
            }
            frame::Decoded::BadHeader(frame::HeaderError::Zero) => {
                return Ok((FrameStop::Zero, pos));
            }
            frame::Decoded::BadHeader(e) => return Ok((FrameStop::Damaged(e.describe()), pos)),
            frame::Decoded::BadPayload { .. } => {
                return Ok((
                    FrameStop::Damaged("the frame's payload checksum does not match".to_owned()),
                    pos,
                ));
            }
        }
    }
}

/// Whether every byte of `file` from `from` to `len` is zero.
pub(crate) fn rest_is_zero(
    file: &dyn FileHandle,
    path: &Path,
    from: u64,
    len: u64,
) -> Result<bool> {
    let mut buf = vec![0u8; ZERO_CHUNK];
    let mut pos = from;
    while pos < len {
        let want = ((len - pos) as usize).min(ZERO_CHUNK);
        let n = fs::read_full_at(file, &mut buf[..want], pos)
            .map_err(|e| Error::io("read the log segment", path, e))?;
        if n == 0 {
            break;
        }
        if !is_zero(&buf[..n]) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Whether every byte is zero; compares against zeros in blocks (a `memcmp`),
/// which is fast even in unoptimised builds.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    bytes
        .chunks(BLOCK)
        .all(|chunk| chunk == &ZEROS[..chunk.len()])
}

/// Offset just past the last non-zero byte of the file at or after `from`.
pub(crate) fn data_end(file: &dyn FileHandle, path: &Path, from: u64, len: u64) -> Result<u64> {
    let mut buf = vec![0u8; ZERO_CHUNK];
    let mut end = from;
    let mut pos = from;
    while pos < len {
        let want = ((len - pos) as usize).min(ZERO_CHUNK);
        let n = fs::read_full_at(file, &mut buf[..want], pos)
            .map_err(|e| Error::io("read the log segment", path, e))?;
        if n == 0 {
            break;
        }
        if !is_zero(&buf[..n])
            && let Some(last) = buf[..n].iter().rposition(|b| *b != 0)
        {
            end = pos + last as u64 + 1;
        }
        pos += n as u64;
    }
    Ok(end)
}

/// The first offset after `from` where a complete, verified frame starts whose
/// record proves that the log was synced at least up to `revision` when it was
/// written (its `synced` watermark reaches `revision`, or it has none, as in
/// records from before the watermark existed), if any.
///
/// Used to tell a torn tail from damage in the middle of the log. Damage at
/// `revision` followed only by records written before `revision` was synced is
/// a torn write: those records were all unsynced at the crash too (in `Sync`
/// mode: parts of the same batch; in `Relaxed` mode: commits since the last
/// sync), so none of them was durable, and cutting them all leaves a prefix. A
/// record written after `revision` was synced means the damage hit synced data.
pub(crate) fn find_frame_after(
    file: &dyn FileHandle,
    path: &Path,
    from: u64,
    len: u64,
    revision: u64,
) -> Result<Option<u64>> {
    if from >= len {
        return Ok(None);
    }
    let size = usize::try_from(len - from).unwrap_or(usize::MAX);
    let mut rest = vec![0u8; size];
    let n = fs::read_full_at(file, &mut rest, from)
        .map_err(|e| Error::io("read the log segment", path, e))?;
    rest.truncate(n);
    for at in 1..rest.len() {
        if let frame::Decoded::Frame { payload, .. } = frame::decode(&rest[at..])
            && let Ok(record) = record::decode(payload)
            && record.synced.is_none_or(|synced| synced >= revision)
        {
            return Ok(Some(from + at as u64));
        }
    }
    Ok(None)
}

/// How the log ended, as far as [`read_commits`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEnd {
    /// Revision of the last complete commit read (the starting revision if none).
    pub last_revision: u64,
    /// Where the next frame goes: just after the last complete commit.
    pub end: Position,
    /// How the last segment ended after that.
    pub tail: Tail,
    /// Whether the visitor stopped the read early.
    pub stopped: bool,
}

/// The end of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The data ends cleanly: at the end of the file, or followed only by zeros.
    Clean,
    /// Bytes after the last complete commit that are not a complete commit: a torn
    /// write, or damage. `at` is where the incomplete data starts (the first part of
    /// an incomplete commit, or the bad frame), `damage_at` the frame that failed.
    Damaged {
        /// Start of the bytes that do not form a complete commit.
        at: u64,
        /// The frame that failed to verify.
        damage_at: u64,
        /// What failed.
        problem: String,
    },
}

/// The result of visiting one commit: go on, or stop the read here.
pub(crate) type Flow = bool;

/// Reads complete commits from `start` to the end of the log, checking that
/// revisions continue from `previous_revision` (0: the store was empty, and the
/// first commit may be a base record at any revision). `visit` gets the parts of
/// each commit and the position after it. Damage in a sealed segment, a
/// revision out of sequence, or an undecodable record is an error naming the file
/// and offset; the state of the last segment's tail is returned.
pub(crate) fn read_commits(
    fs: &dyn Fs,
    segments: &[SegmentInfo],
    start: Position,
    previous_revision: u64,
    mut visit: impl FnMut(&[LogRecord<'_>], Position) -> Result<Flow>,
) -> Result<LogEnd> {
    let first = segments
        .iter()
        .position(|s| s.first_revision == start.segment)
        .ok_or_else(|| {
            Error::corrupt(
                segment_path_hint(segments, start.segment),
                start.offset,
                format!(
                    "the log segment holding revision {} is missing; the state cannot be \
                     brought up to date from this log",
                    previous_revision + 1
                ),
            )
        })?;
    let mut commits = Commits {
        last_revision: previous_revision,
        end: start,
        stopped: false,
    };
    let last_index = segments.len() - 1;
    for (index, seg) in segments.iter().enumerate().skip(first) {
        let from = if index == first {
            start.offset.max(SEGMENT_HEADER_LEN as u64)
        } else {
            commits.enter(seg)?;
            SEGMENT_HEADER_LEN as u64
        };
        let read = commits.read_segment(fs, seg, from, &mut visit)?;
        if commits.stopped {
            return Ok(commits.ended(Tail::Clean));
        }
        if index == last_index {
            return Ok(commits.ended(read.tail));
        }
        read.check_sealed(seg)?;
    }
    Ok(commits.ended(Tail::Clean))
}

/// Where a read of the log stands between segments.
struct Commits {
    /// Revision of the last complete commit read.
    last_revision: u64,
    /// Just after the last complete commit.
    end: Position,
    /// Whether the visitor stopped the read.
    stopped: bool,
}

/// How one segment's frames ended.
struct SegmentRead {
    tail: Tail,
    /// The scan stopped exactly at the end of the file.
    ended_exactly: bool,
    /// Where it stopped.
    stop_at: u64,
}

/// The commit being read in one segment.
struct InSegment<'s> {
    seg: &'s SegmentInfo,
    /// The parts read so far of a commit not yet complete.
    parts: Vec<LogRecord<'static>>,
    /// Where that commit's first part starts.
    parts_start: u64,
    /// A seal was read: it must be the last frame.
    sealed: bool,
}

impl Commits {
    /// A new segment must start exactly at the next revision.
    fn enter(&mut self, seg: &SegmentInfo) -> Result<()> {
        if seg.first_revision != self.last_revision + 1 && self.last_revision != 0 {
            return Err(Error::corrupt(
                &seg.path,
                28,
                format!(
                    "the segment starts at revision {} but the log before it ends at revision \
                     {}: revisions are missing",
                    seg.first_revision, self.last_revision
                ),
            ));
        }
        self.end = Position {
            segment: seg.first_revision,
            offset: SEGMENT_HEADER_LEN as u64,
        };
        Ok(())
    }

    fn ended(&self, tail: Tail) -> LogEnd {
        LogEnd {
            last_revision: self.last_revision,
            end: self.end,
            tail,
            stopped: self.stopped,
        }
    }

    /// Reads the commits of one segment from `from`, handing each complete
    /// one to `visit`; says how the segment ended.
    fn read_segment(
        &mut self,
        fs: &dyn Fs,
        seg: &SegmentInfo,
        from: u64,
        visit: &mut impl FnMut(&[LogRecord<'_>], Position) -> Result<Flow>,
    ) -> Result<SegmentRead> {
        let file = fs
            .open(&seg.path, OpenMode::Read)
            .map_err(|e| Error::io("open", &seg.path, e))?;
        let mut inside = InSegment {
            seg,
            parts: Vec::new(),
            parts_start: self.end.offset,
            sealed: false,
        };
        let (stop, stop_at) = scan_frames(
            file.as_ref(),
            &seg.path,
            seg.len,
            from,
            |at, next, payload| self.frame(&mut inside, at, next, payload, visit),
        )?;
        if self.stopped {
            return Ok(SegmentRead {
                tail: Tail::Clean,
                ended_exactly: false,
                stop_at,
            });
        }
        let incomplete = !inside.parts.is_empty();
        let at = if incomplete {
            inside.parts_start
        } else {
            stop_at
        };
        let damaged = |problem: &str| Tail::Damaged {
            at,
            damage_at: stop_at,
            problem: problem.to_owned(),
        };
        let ended_exactly = stop == FrameStop::End;
        let tail = match stop {
            FrameStop::End if !incomplete => Tail::Clean,
            FrameStop::End => damaged("the last commit's final part is missing"),
            FrameStop::Zero => {
                if !rest_is_zero(file.as_ref(), &seg.path, stop_at, seg.len)? {
                    damaged("non-zero bytes follow zero bytes after the last frame")
                } else if !incomplete {
                    Tail::Clean
                } else {
                    damaged("the last commit's final part is missing")
                }
            }
            FrameStop::Damaged(problem) => damaged(&problem),
        };
        Ok(SegmentRead {
            tail,
            ended_exactly,
            stop_at,
        })
    }

    /// One frame of a segment: a seal, or a part of a commit; a commit's last
    /// part hands the whole commit to `visit`. Returns whether to go on.
    fn frame(
        &mut self,
        inside: &mut InSegment<'_>,
        at: u64,
        next: u64,
        payload: &[u8],
        visit: &mut impl FnMut(&[LogRecord<'_>], Position) -> Result<Flow>,
    ) -> Result<bool> {
        let path = &inside.seg.path;
        if inside.sealed {
            return Err(Error::corrupt(
                path,
                at,
                "a frame follows the segment's seal, which must be its last",
            ));
        }
        if let Some(successor) = record::decode_seal(payload) {
            self.check_seal(inside, at, successor)?;
            inside.sealed = true;
            return Ok(true);
        }
        let record = record::decode(payload)
            .map_err(|e| Error::corrupt(path, at, format!("the record does not decode: {e}")))?;
        record
            .check()
            .map_err(|e| Error::corrupt(path, at, format!("the record is invalid: {e}")))?;
        let expected = self.check_record(inside, at, &record)?;
        if inside.parts.is_empty() {
            inside.parts_start = at;
        }
        if record.more {
            inside.parts.push(into_owned(record));
            return Ok(true);
        }
        let position = Position {
            segment: inside.seg.first_revision,
            offset: next,
        };
        let go_on = if inside.parts.is_empty() {
            visit(std::slice::from_ref(&record), position)?
        } else {
            inside.parts.push(into_owned(record));
            let go_on = visit(&inside.parts, position)?;
            inside.parts.clear();
            go_on
        };
        self.last_revision = expected;
        self.end = position;
        if !go_on {
            self.stopped = true;
        }
        Ok(go_on)
    }

    /// A seal must follow a complete commit and name the next revision.
    fn check_seal(&self, inside: &InSegment<'_>, at: u64, successor: u64) -> Result<()> {
        if inside.parts.is_empty() && successor == self.last_revision + 1 {
            return Ok(());
        }
        Err(Error::corrupt(
            &inside.seg.path,
            at,
            format!(
                "the segment's seal names revision {successor} as the next segment's first, but \
                 the segment ends {}",
                if inside.parts.is_empty() {
                    format!("at revision {}", self.last_revision)
                } else {
                    "inside a commit".to_owned()
                }
            ),
        ))
    }

    /// A record must have the revision that follows (a base record at any
    /// revision, as the log's first commit), agree with the other parts of its
    /// commit, and (as a segment's first record in an empty store) be the
    /// revision the segment is named for. Returns its revision.
    fn check_record(&self, inside: &InSegment<'_>, at: u64, record: &LogRecord<'_>) -> Result<u64> {
        let (path, last_revision) = (&inside.seg.path, self.last_revision);
        let expected = if let Some(p) = inside.parts.first() {
            p.revision
        } else if last_revision == 0 && record.base {
            record.revision
        } else {
            last_revision + 1
        };
        let wrong = if record.revision != expected {
            format!(
                "the record has revision {} where revision {expected} was expected",
                record.revision
            )
        } else if inside.parts.first().is_some_and(|p| p.base != record.base) {
            "the parts of one commit disagree on whether it is a base record".to_owned()
        } else if record.base && inside.parts.is_empty() && last_revision != 0 {
            format!(
                "a base record (the first commit of a restored store) follows revision \
                 {last_revision}"
            )
        } else if inside.parts.is_empty()
            && last_revision == 0
            && inside.seg.first_revision != record.revision
        {
            format!(
                "the first record has revision {} but the segment is named for {}",
                record.revision, inside.seg.first_revision
            )
        } else {
            return Ok(expected);
        };
        Err(Error::corrupt(path, at, wrong))
    }
}

impl SegmentRead {
    /// Sealed segments end exactly after a complete commit (or their seal);
    /// a zero-filled remainder is left by a crash while a segment was being
    /// sealed.
    fn check_sealed(self, seg: &SegmentInfo) -> Result<()> {
        match self.tail {
            Tail::Clean if self.ended_exactly => Ok(()),
            Tail::Clean => Err(Error::corrupt(
                &seg.path,
                self.stop_at,
                "a sealed segment has zero bytes after its last frame",
            )),
            Tail::Damaged {
                damage_at, problem, ..
            } => Err(Error::corrupt(
                &seg.path,
                damage_at,
                format!("{problem} (in a sealed segment, so this is not a torn write)"),
            )),
        }
    }
}

fn segment_path_hint(segments: &[SegmentInfo], first_revision: u64) -> std::path::PathBuf {
    segments
        .first()
        .and_then(|s| s.path.parent())
        .map(|dir| dir.join(super::segment::file_name(first_revision)))
        .unwrap_or_default()
}

/// Detaches a record from the buffer it was decoded from.
pub(crate) fn into_owned(record: LogRecord<'_>) -> LogRecord<'static> {
    use super::record::{DeleteOp, LogOp, PutOp};
    use std::borrow::Cow;
    LogRecord {
        revision: record.revision,
        time: record.time,
        more: record.more,
        base: record.base,
        synced: record.synced,
        ops: record
            .ops
            .into_iter()
            .map(|op| match op {
                LogOp::Put(p) => LogOp::Put(PutOp {
                    ns: Cow::Owned(p.ns.into_owned()),
                    key: Cow::Owned(p.key.into_owned()),
                    version: p.version,
                    created: p.created,
                    value: Cow::Owned(p.value.into_owned()),
                    modified: p.modified,
                    updated: p.updated,
                }),
                LogOp::Delete(d) => LogOp::Delete(DeleteOp {
                    ns: Cow::Owned(d.ns.into_owned()),
                    key: Cow::Owned(d.key.into_owned()),
                    version: d.version,
                }),
            })
            .collect(),
    }
}
