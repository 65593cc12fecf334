//! Segment files: the header codec and the file names. No I/O.
//!
//! A segment is named after the revision of its first record, in 20 decimal
//! digits so that name order is revision order: `00000000000000000001.log`.
//! It starts with a 64-byte header:
//!
//! ```text
//!  0         8        12                 28          36          44      48         56      60       64
//!  +---------+--------+------------------+-----------+-----------+-------+----------+-------+--------+
//!  |  magic  | format |     store id     | first rev | prev rev  | crc   |   step   | crc2  |reserved|
//!  +---------+--------+------------------+-----------+-----------+-------+----------+-------+--------+
//!  magic      b"SLOGSEG\0"
//!  format     u32 LE, the log format version (LOG_FORMAT_VERSION)
//!  store id   16 bytes, the id of the store the segment belongs to
//!  first rev  u64 LE, the revision of the segment's first record
//!  prev rev   u64 LE, the first revision of the segment before it (0 for the
//!             store's first segment): a missing or swapped segment shows in the
//!             headers alone, without reading any frames
//!  crc        u32 LE, CRC-32 of bytes 0..44
//!  step       u64 LE (format 2), the preallocation step the segment is grown
//!             by while it is active (0: none): its size is then always a whole
//!             number of steps, so a cut tail shows (see `seal`)
//!  crc2       u32 LE (format 2), CRC-32 of bytes 0..56
//!  reserved   zero (in format 1, bytes 48..64 are all reserved)
//! ```
//!
//! Frames follow from byte 64 to the end of the data. In format 2 a sealed
//! segment ends with a seal frame naming the segment after it, and is cut
//! right after it; in format 1 it is cut after its last commit. The active
//! segment may continue with zero bytes (preallocated space).

use crate::counter::MAX_REVISION;

/// Identifies a segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLOGSEG\0";
/// The log format this build writes; it reads this one and every one before.
/// 1: the first release; 2: the preallocation step in the header, and seals.
pub const LOG_FORMAT_VERSION: u32 = 2;
/// Bytes of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".log";

const MAGIC_AT: usize = 0;
const FORMAT_AT: usize = 8;
const STORE_ID_AT: usize = 12;
const FIRST_REV_AT: usize = 28;
const PREVIOUS_AT: usize = 36;
const CRC_AT: usize = 44;
const STEP_AT: usize = 48;
const CRC2_AT: usize = 56;
const RESERVED_AT: usize = 60;
/// Where format 1's reserved bytes begin.
const RESERVED_V1_AT: usize = 48;

/// A store's identity: 16 random bytes chosen when it was created.
pub type StoreId = [u8; 16];

/// The decoded header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Log format version.
    pub format: u32,
    /// The store the segment belongs to.
    pub store_id: StoreId,
    /// Revision of the segment's first record.
    pub first_revision: u64,
    /// First revision of the preceding segment; 0 for the store's first segment.
    pub previous: u64,
    /// The preallocation step the segment grows by while active (0: none, and
    /// always 0 in format 1).
    pub step: u64,
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The file is shorter than a header.
    Truncated(usize),
    /// The magic bytes are wrong: not a segment.
    Magic,
    /// The header's checksum does not match.
    Checksum,
    /// Written by a newer statelog.
    Format(u32),
    /// The reserved bytes are not zero.
    Reserved,
    /// The first revision is 0 or beyond the highest a store reaches, or the
    /// previous segment's is not below it.
    Revisions {
        /// The first revision the header names.
        first: u64,
        /// The previous segment's first revision it names.
        previous: u64,
    },
}

impl HeaderProblem {
    /// Says what is wrong, for error messages.
    pub fn describe(&self) -> String {
        match self {
            HeaderProblem::Truncated(n) => {
                format!(
                    "the file has {n} bytes, fewer than a segment header's {SEGMENT_HEADER_LEN}"
                )
            }
            HeaderProblem::Magic => "it does not start with the segment magic bytes".to_owned(),
            HeaderProblem::Checksum => "the segment header's checksum does not match".to_owned(),
            HeaderProblem::Format(v) => format!(
                "log format version {v} is newer than this statelog's {LOG_FORMAT_VERSION}; \
                 open the store with a newer statelog"
            ),
            HeaderProblem::Reserved => {
                "the segment header's reserved bytes are not zero".to_owned()
            }
            HeaderProblem::Revisions { first, previous } => format!(
                "the segment header names first revision {first} and previous segment {previous}; \
                 a segment starts at a revision from 1 to {MAX_REVISION}, after its predecessor's"
            ),
        }
    }
}

impl SegmentHeader {
    /// Encodes the header (format 1 cannot hold a step: it is left out).
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[MAGIC_AT..FORMAT_AT].copy_from_slice(&SEGMENT_MAGIC);
        out[FORMAT_AT..STORE_ID_AT].copy_from_slice(&self.format.to_le_bytes());
        out[STORE_ID_AT..FIRST_REV_AT].copy_from_slice(&self.store_id);
        out[FIRST_REV_AT..PREVIOUS_AT].copy_from_slice(&self.first_revision.to_le_bytes());
        out[PREVIOUS_AT..CRC_AT].copy_from_slice(&self.previous.to_le_bytes());
        let crc = crc32fast::hash(&out[..CRC_AT]);
        out[CRC_AT..STEP_AT].copy_from_slice(&crc.to_le_bytes());
        if self.format >= 2 {
            out[STEP_AT..CRC2_AT].copy_from_slice(&self.step.to_le_bytes());
            let crc2 = crc32fast::hash(&out[..CRC2_AT]);
            out[CRC2_AT..RESERVED_AT].copy_from_slice(&crc2.to_le_bytes());
        }
        out
    }

    /// Decodes and checks a header from the first bytes of a segment.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let Some(head) = bytes.first_chunk::<SEGMENT_HEADER_LEN>() else {
            return Err(HeaderProblem::Truncated(bytes.len()));
        };
        if head[MAGIC_AT..FORMAT_AT] != SEGMENT_MAGIC {
            return Err(HeaderProblem::Magic);
        }
        let crc = u32::from_le_bytes(take(head, CRC_AT));
        if crc32fast::hash(&head[..CRC_AT]) != crc {
            return Err(HeaderProblem::Checksum);
        }
        let format = u32::from_le_bytes(take(head, FORMAT_AT));
        if format > LOG_FORMAT_VERSION || format == 0 {
            return Err(HeaderProblem::Format(format));
        }
        let (step, reserved_at) = if format >= 2 {
            let crc2 = u32::from_le_bytes(take(head, CRC2_AT));
            if crc32fast::hash(&head[..CRC2_AT]) != crc2 {
                return Err(HeaderProblem::Checksum);
            }
            (u64::from_le_bytes(take(head, STEP_AT)), RESERVED_AT)
        } else {
            (0, RESERVED_V1_AT)
        };
        if head[reserved_at..].iter().any(|b| *b != 0) {
            return Err(HeaderProblem::Reserved);
        }
        let first = u64::from_le_bytes(take(head, FIRST_REV_AT));
        let previous = u64::from_le_bytes(take(head, PREVIOUS_AT));
        if first == 0 || first > MAX_REVISION || previous >= first {
            return Err(HeaderProblem::Revisions { first, previous });
        }
        Ok(SegmentHeader {
            format,
            store_id: take(head, STORE_ID_AT),
            first_revision: first,
            previous,
            step,
        })
    }
}

fn take<const N: usize>(head: &[u8; SEGMENT_HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&head[at..at + N]);
    out
}

/// The file name of the segment whose first record has `first_revision`.
pub fn file_name(first_revision: u64) -> String {
    format!("{first_revision:020}{SEGMENT_SUFFIX}")
}

/// The first revision named by a segment file name, or `None` for other files.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            format: LOG_FORMAT_VERSION,
            store_id: [7; 16],
            first_revision: 42,
            previous: 7,
            step: 4 << 20,
        }
    }

    fn format_1() -> SegmentHeader {
        SegmentHeader {
            format: 1,
            step: 0,
            ..header()
        }
    }

    #[test]
    fn round_trip() {
        for h in [header(), format_1()] {
            let bytes = h.encode();
            assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        }
    }

    #[test]
    fn format_1_headers_read_as_before() {
        // Written by the first release: bytes 48..64 zero, no step.
        let mut bytes = [0u8; SEGMENT_HEADER_LEN];
        bytes[..8].copy_from_slice(b"SLOGSEG\0");
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[12..28].copy_from_slice(&[7; 16]);
        bytes[28..36].copy_from_slice(&42u64.to_le_bytes());
        bytes[36..44].copy_from_slice(&7u64.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, format_1().encode());
        assert_eq!(SegmentHeader::decode(&bytes), Ok(format_1()));
    }

    #[test]
    fn every_bit_flip_is_caught() {
        for h in [header(), format_1()] {
            let bytes = h.encode();
            for byte in 0..SEGMENT_HEADER_LEN {
                for bit in 0..8 {
                    let mut damaged = bytes;
                    damaged[byte] ^= 1 << bit;
                    assert!(
                        SegmentHeader::decode(&damaged).is_err(),
                        "format {}: flip at {byte}:{bit}",
                        h.format
                    );
                }
            }
        }
    }

    #[test]
    fn newer_format_is_named() {
        let mut h = header();
        h.format = LOG_FORMAT_VERSION + 1;
        let err = SegmentHeader::decode(&h.encode()).unwrap_err();
        assert_eq!(err, HeaderProblem::Format(LOG_FORMAT_VERSION + 1));
        assert!(err.describe().contains("newer"));
        assert_eq!(
            SegmentHeader::decode(&[0; 10]),
            Err(HeaderProblem::Truncated(10))
        );
    }

    #[test]
    fn revisions_out_of_range_are_refused() {
        for (first, previous) in [(0, 0), (MAX_REVISION + 1, 0), (u64::MAX, 7), (5, 5), (5, 9)] {
            let mut h = header();
            h.first_revision = first;
            h.previous = previous;
            let err = SegmentHeader::decode(&h.encode()).unwrap_err();
            assert_eq!(err, HeaderProblem::Revisions { first, previous });
        }
        let mut h = header();
        h.first_revision = MAX_REVISION;
        assert!(SegmentHeader::decode(&h.encode()).is_ok());
    }

    #[test]
    fn names_sort_by_revision() {
        assert_eq!(file_name(1), "00000000000000000001.log");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_file_name("00000000000000000001.log.torn"), None);
        assert_eq!(parse_file_name("1.log"), None);
        assert_eq!(parse_file_name("0000000000000000000x.log"), None);
    }
}
