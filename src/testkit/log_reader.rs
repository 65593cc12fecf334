//! Reading a store's log back, for tests that check what was logged: every
//! complete commit from the first segment on, with every integrity check of the
//! recovery reader (checksums, revision order, segment links).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fs::Fs;
use crate::log::catalog;
use crate::log::reader::{self, Position, Tail};
use crate::log::record::LogOp;
use crate::log::segment::{self, SEGMENT_HEADER_LEN};

/// One complete commit of the log (all its parts joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Its revision.
    pub revision: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub time: i64,
    /// Whether it is the base commit of a restored store.
    pub base: bool,
    /// The operations of all its parts, in order.
    pub ops: Vec<LogOp<'static>>,
    /// How many frames it took.
    pub parts: usize,
    /// The segment (by first revision) and offset just after it.
    pub end: Position,
}

/// A store's log as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogContents {
    /// Every complete commit, in revision order.
    pub commits: Vec<Commit>,
    /// The segment files, in order.
    pub segments: Vec<PathBuf>,
    /// Bytes after the last complete commit that do not form one: the segment,
    /// the offset and what is wrong.
    pub damaged_tail: Option<(PathBuf, u64, String)>,
}

/// The (start, end) byte offsets of each whole frame of a segment file's
/// bytes, from after its header up to the first thing that is not a frame.
pub fn frame_spans(segment: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let Some(crate::log::frame::Decoded::Frame { frame_len, .. }) =
        segment.get(at..).map(crate::log::frame::decode)
    {
        out.push((at, at + frame_len));
        at += frame_len;
    }
    out
}

/// Reads the log of the store in `store_dir` through `fs`. Damage anywhere but
/// at the end of the last segment is an error, as when opening the store.
pub fn read_log(fs: &dyn Fs, store_dir: &Path) -> Result<LogContents> {
    let dir = store_dir.join("log");
    let Some(first) = catalog::segment_files(fs, &dir)?.first().map(|(r, _)| *r) else {
        return Ok(LogContents {
            commits: Vec::new(),
            segments: Vec::new(),
            damaged_tail: None,
        });
    };
    let header = catalog::read_header(fs, &dir.join(segment::file_name(first)))?;
    let segments = catalog::list(fs, &dir, &header.store_id)?;
    let mut commits = Vec::new();
    let end = reader::read_commits(
        fs,
        &segments,
        Position {
            segment: first,
            offset: SEGMENT_HEADER_LEN as u64,
        },
        0,
        |parts, end| {
            let Some(head) = parts.first() else {
                return Ok(true);
            };
            commits.push(Commit {
                revision: head.revision,
                time: head.time,
                base: head.base,
                ops: parts
                    .iter()
                    .flat_map(|p| reader::into_owned(p.clone()).ops)
                    .collect(),
                parts: parts.len(),
                end,
            });
            Ok(true)
        },
    )?;
    let last = segments.last().map(|s| s.path.clone()).unwrap_or_default();
    Ok(LogContents {
        commits,
        segments: segments.into_iter().map(|s| s.path).collect(),
        damaged_tail: match end.tail {
            Tail::Clean => None,
            Tail::Damaged { at, problem, .. } => Some((last, at, problem)),
        },
    })
}
