//! Finding the segments of a log directory and checking their headers.

use std::path::{Path, PathBuf};

use super::segment::{self, SEGMENT_HEADER_LEN, SegmentHeader, StoreId};
use crate::error::{Error, Result};
use crate::fs::{self, Fs, OpenMode};

/// A segment file whose header has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Revision of its first record (also its name).
    pub first_revision: u64,
    /// First revision of the segment before it, from its header.
    pub previous: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub len: u64,
}

/// Names of the log's own temporary files: a segment being created, a torn
/// tail being saved. Only these are ever removed; any other file is left.
pub(crate) fn is_temporary(name: &str) -> bool {
    name.strip_suffix(".tmp").is_some_and(|stem| {
        segment::parse_file_name(stem).is_some()
            || stem
                .split_once(".torn-")
                .is_some_and(|(segment, _)| segment::parse_file_name(segment).is_some())
    })
}

/// The segment files of `dir` (by their names: first revision and path), in
/// revision order, unchecked.
pub(crate) fn segment_files(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let names = fs
        .read_dir(dir)
        .map_err(|e| Error::io("list the log directory", dir, e))?;
    let mut found: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| segment::parse_file_name(name).map(|rev| (rev, dir.join(name))))
        .collect();
    found.sort();
    Ok(found)
}

/// Lists the segments of `dir` in revision order, checking that each header is
/// intact, belongs to `store_id`, matches its file name, and links to the segment
/// before it.
pub fn list(fs: &dyn Fs, dir: &Path, store_id: &StoreId) -> Result<Vec<SegmentInfo>> {
    let found = segment_files(fs, dir)?;
    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(found.len());
    for (named, path) in found {
        let header = read_header(fs, &path)?;
        if header.store_id != *store_id {
            return Err(Error::corrupt(
                &path,
                12,
                format!(
                    "the segment belongs to another store (id {}, this store is {}); move it \
                     out of the log directory",
                    hex(&header.store_id),
                    hex(store_id)
                ),
            ));
        }
        if header.first_revision != named {
            return Err(Error::corrupt(
                &path,
                28,
                format!(
                    "the header says the segment starts at revision {}, but its name says {named}; \
                     the file was renamed or copied over another",
                    header.first_revision
                ),
            ));
        }
        if let Some(before) = segments.last()
            && header.previous != before.first_revision
        {
            return Err(Error::corrupt(
                &path,
                36,
                format!(
                    "the segment before this one should start at revision {}, but the log's \
                     previous segment starts at {}: a segment is missing or out of place",
                    header.previous, before.first_revision
                ),
            ));
        }
        let len = fs
            .open(&path, OpenMode::Read)
            .and_then(|f| f.len())
            .map_err(|e| Error::io("read the size of", &path, e))?;
        segments.push(SegmentInfo {
            first_revision: named,
            previous: header.previous,
            path,
            len,
        });
    }
    Ok(segments)
}

/// Reads and checks the header of one segment file.
pub fn read_header(fs: &dyn Fs, path: &Path) -> Result<SegmentHeader> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let mut head = [0u8; SEGMENT_HEADER_LEN];
    let n = fs::read_full_at(file.as_ref(), &mut head, 0)
        .map_err(|e| Error::io("read the header of", path, e))?;
    SegmentHeader::decode(&head[..n]).map_err(|problem| Error::corrupt(path, 0, problem.describe()))
}

/// Lower-case hex of a store id, as shown to users.
pub fn hex(id: &StoreId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A store id from its 32 hex digits (as [`hex`] writes them).
pub(crate) fn parse_hex(text: &str) -> Option<StoreId> {
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_logs_own_temporaries_are_temporary() {
        assert!(is_temporary("00000000000000000001.log.tmp"));
        assert!(is_temporary("00000000000000000001.log.torn-4711.tmp"));
        assert!(!is_temporary("00000000000000000001.log"));
        assert!(!is_temporary("00000000000000000001.log.torn-4711"));
        assert!(!is_temporary("notes.tmp"));
        assert!(!is_temporary("x.torn-1.tmp"));
    }
}
