//! How a log tells that it lost its newest part (log format 2).
//!
//! - Every segment but the newest ends with a seal, a frame naming the first
//!   revision of the segment after it. It is written only once that segment
//!   exists durably (a rotation creates the new segment, then seals the old
//!   one), so a newest segment that ends with a seal lost its successor.
//! - The active (newest) segment grows only in whole steps of its
//!   preallocation (its header names the step), each synced before a commit
//!   goes into it, so its size is a whole number of steps, unless a crash hit
//!   while it grew, and then only zeros lie past the last whole step. A size
//!   inside a step with data past the last whole step means its tail was cut.
//! - A rotation interrupted after the new segment was created and before the
//!   old one was sealed leaves the old one unsealed and the new one empty;
//!   opening finishes it.
//!
//! What stays undetectable: segments of log format 1 (before this), whose
//! sealed segments are only cut to their data; a segment with no
//! preallocation; a cut exactly at a step boundary.

use std::path::Path;

use super::catalog::{self, SegmentInfo};
use super::frame::{self, FRAME_HEADER_LEN};
use super::reader;
use super::record::{self, SEAL_PAYLOAD_LEN};
use super::segment::SEGMENT_HEADER_LEN;
use crate::error::{Error, Result};
use crate::fs::{self, FileHandle, Fs, OpenMode};

/// Bytes of a seal frame.
pub(crate) const SEAL_FRAME_LEN: u64 = (FRAME_HEADER_LEN + SEAL_PAYLOAD_LEN) as u64;

/// The seal frame of a segment whose successor starts at revision `next`.
fn seal_frame(next: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_FRAME_LEN as usize);
    let at = frame::begin(&mut out);
    out.extend_from_slice(&record::encode_seal(next));
    // A payload of 15 bytes always fits in a frame.
    let _ = frame::finish(&mut out, at);
    out
}

/// Seals a segment whose data ends at `end`: writes the seal naming `next`,
/// cuts the file right after it, and syncs.
pub(crate) fn seal(file: &dyn FileHandle, end: u64, next: u64) -> std::io::Result<()> {
    fs::write_all_at(file, &seal_frame(next), end)?;
    file.set_len(end + SEAL_FRAME_LEN)?;
    file.sync_data()
}

/// The revision the seal at the very end of `segment` names, if it ends with
/// one.
pub(crate) fn sealed_next(fs: &dyn Fs, segment: &SegmentInfo) -> Result<Option<u64>> {
    if segment.len < SEGMENT_HEADER_LEN as u64 + SEAL_FRAME_LEN {
        return Ok(None);
    }
    let file = fs
        .open(&segment.path, OpenMode::Read)
        .map_err(|e| Error::io("open", &segment.path, e))?;
    let mut tail = [0u8; SEAL_FRAME_LEN as usize];
    let at = segment.len - SEAL_FRAME_LEN;
    let n = fs::read_full_at(file.as_ref(), &mut tail, at)
        .map_err(|e| Error::io("read the end of", &segment.path, e))?;
    Ok(match frame::decode(&tail[..n]) {
        frame::Decoded::Frame { payload, frame_len } if frame_len == tail.len() => {
            record::decode_seal(payload)
        }
        _ => None,
    })
}

/// What is wrong with the size of the newest segment, if its tail was cut
/// off: its size is not a whole number of its preallocation steps and data
/// lies past the last whole one.
pub(crate) fn cut_tail(fs: &dyn Fs, segment: &SegmentInfo) -> Result<Option<String>> {
    let step = catalog::read_header(fs, &segment.path)?.step;
    if step == 0 || segment.len.is_multiple_of(step) {
        return Ok(None);
    }
    let whole = segment.len / step * step;
    let file = fs
        .open(&segment.path, OpenMode::Read)
        .map_err(|e| Error::io("open", &segment.path, e))?;
    if reader::rest_is_zero(file.as_ref(), &segment.path, whole, segment.len)? {
        // A crash while the segment grew: only zeros past the last whole step.
        return Ok(None);
    }
    Ok(Some(format!(
        "the newest segment is {} bytes, which is not a whole number of its {step}-byte \
         preallocation steps, and it holds data past byte {whole}: its tail was cut off, and \
         the commits after the last one it still holds are lost (how many is unknown)",
        segment.len
    )))
}

/// Whether a rotation was interrupted: the newest segment holds nothing, and
/// the one before it is not sealed naming it. Opening then finishes sealing it.
pub(crate) fn interrupted_rotation(fs: &dyn Fs, segments: &[SegmentInfo]) -> Result<bool> {
    let [.., before, last] = segments else {
        return Ok(false);
    };
    let file = fs
        .open(&last.path, OpenMode::Read)
        .map_err(|e| Error::io("open", &last.path, e))?;
    let mut head = [0u8; FRAME_HEADER_LEN];
    let n = fs::read_full_at(file.as_ref(), &mut head, SEGMENT_HEADER_LEN as u64)
        .map_err(|e| Error::io("read", &last.path, e))?;
    if !reader::is_zero(&head[..n]) {
        return Ok(false);
    }
    if sealed_next(fs, before)? == Some(last.first_revision) {
        return Ok(false);
    }
    reader::rest_is_zero(
        file.as_ref(),
        &last.path,
        SEGMENT_HEADER_LEN as u64,
        last.len,
    )
}

/// Gives the segment `path`, now the newest, a size of whole preallocation
/// steps again (zeros after its data), after a repair cut it; returns the new
/// size if it changed.
pub(crate) fn regrow(fs: &dyn Fs, path: &Path) -> Result<Option<u64>> {
    let step = catalog::read_header(fs, path)?.step;
    let file = fs
        .open(path, OpenMode::ReadWrite)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("read the size of", path, e))?;
    if step == 0 || len.is_multiple_of(step) {
        return Ok(None);
    }
    let whole = len.div_ceil(step) * step;
    file.set_len(whole)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("restore the size of", path, e))?;
    Ok(Some(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_frame_is_a_verified_frame_of_fixed_length() {
        let bytes = seal_frame(77);
        assert_eq!(bytes.len() as u64, SEAL_FRAME_LEN);
        match frame::decode(&bytes) {
            frame::Decoded::Frame { payload, frame_len } => {
                assert_eq!(frame_len, bytes.len());
                assert_eq!(record::decode_seal(payload), Some(77));
            }
            other => panic!("{other:?}"),
        }
    }
}
