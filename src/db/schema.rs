//! The state database's tables and the byte layout of what they hold.
//!
//! Tables:
//! - `records`: encoded address (see `key.rs`) -> stored record (below).
//! - `meta`: `"schema"` -> u64 LE schema version; `"store_id"` -> 16 bytes;
//!   `"applied"` -> the applied state (below), written in the same redb
//!   transaction as the records it describes, so the two never disagree;
//!   `"backed_up"` -> u64 LE, the last revision a backup copied (absent until
//!   the first backup).
//!
//! Stored record:
//! ```text
//!  0      1         9         17         25        33
//!  +------+---------+---------+----------+---------+----------------------+
//!  | 0x01 | version | created | modified | updated | value (MessagePack)  |
//!  +------+---------+---------+----------+---------+----------------------+
//!  u64 LE each; updated is i64 LE microseconds since the Unix epoch
//! ```
//!
//! Applied state (32 bytes): revision u64, log segment u64, log offset u64, time
//! i64: the last commit applied, where the log continues after it, and its time.

use redb::TableDefinition;

use crate::counter::{MAX_REVISION, MAX_VERSION};
use crate::log::Position;
use crate::time::Timestamp;
use crate::value::Meta;

/// Records by address.
pub(crate) const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// Store metadata.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const META_SCHEMA: &str = "schema";
pub(crate) const META_STORE_ID: &str = "store_id";
pub(crate) const META_APPLIED: &str = "applied";
/// The last revision a backup copied (u64 LE), once the store was backed up:
/// what log retention must keep for the next incremental backup.
pub(crate) const META_BACKED_UP: &str = "backed_up";

/// The schema of the state database this build writes and reads (it reads
/// the older ones too, and records this one at its first writable open).
pub(crate) const SCHEMA_VERSION: u64 = 3;

const RECORD_FORMAT: u8 = 1;
const FORMAT_AT: usize = 0;
const VERSION_AT: usize = 1;
const CREATED_AT: usize = 9;
const MODIFIED_AT: usize = 17;
const UPDATED_AT: usize = 25;
/// Bytes before the value in a stored record.
pub(crate) const RECORD_HEADER_LEN: usize = 33;

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Appends a stored record to `out`.
pub(crate) fn encode_record(meta: &Meta, value: &[u8], out: &mut Vec<u8>) {
    out.reserve(RECORD_HEADER_LEN + value.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&meta.version.to_le_bytes());
    out.extend_from_slice(&meta.create_revision.to_le_bytes());
    out.extend_from_slice(&meta.mod_revision.to_le_bytes());
    out.extend_from_slice(&meta.updated_at.as_micros().to_le_bytes());
    out.extend_from_slice(value);
}

/// Splits a stored record into its metadata and value; `None` if malformed.
pub(crate) fn decode_record(bytes: &[u8]) -> Option<(Meta, &[u8])> {
    if *bytes.get(FORMAT_AT)? != RECORD_FORMAT {
        return None;
    }
    let meta = Meta {
        version: u64_at(bytes, VERSION_AT)?,
        create_revision: u64_at(bytes, CREATED_AT)?,
        mod_revision: u64_at(bytes, MODIFIED_AT)?,
        updated_at: Timestamp::from_micros(u64_at(bytes, UPDATED_AT)? as i64),
    };
    // Counters beyond their ceiling are never written: the bytes are damaged.
    if meta.version > MAX_VERSION
        || meta.create_revision > MAX_REVISION
        || meta.mod_revision > MAX_REVISION
    {
        return None;
    }
    Some((meta, bytes.get(RECORD_HEADER_LEN..)?))
}

/// Only the version of a stored record (0 if malformed).
pub(crate) fn record_version(bytes: &[u8]) -> u64 {
    u64_at(bytes, VERSION_AT).unwrap_or(0)
}

/// What the state database holds, as of its last applied commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    pub revision: u64,
    pub position: Position,
    pub time: Timestamp,
}

impl Applied {
    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[0..8].copy_from_slice(&self.revision.to_le_bytes());
        out[8..16].copy_from_slice(&self.position.segment.to_le_bytes());
        out[16..24].copy_from_slice(&self.position.offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.time.as_micros().to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Applied> {
        if bytes.len() != 32 || u64_at(bytes, 0)? > MAX_REVISION {
            return None;
        }
        Some(Applied {
            revision: u64_at(bytes, 0)?,
            position: Position {
                segment: u64_at(bytes, 8)?,
                offset: u64_at(bytes, 16)?,
            },
            time: Timestamp::from_micros(u64_at(bytes, 24)? as i64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let meta = Meta {
            version: 3,
            create_revision: 7,
            mod_revision: 9,
            updated_at: Timestamp::from_micros(1_767_322_245_000_006),
        };
        let mut out = Vec::new();
        encode_record(&meta, b"\x81\xa1a\x01", &mut out);
        assert_eq!(decode_record(&out), Some((meta, &b"\x81\xa1a\x01"[..])));
        assert_eq!(record_version(&out), 3);
        assert_eq!(decode_record(&out[..10]), None);
        out[0] = 9;
        assert_eq!(decode_record(&out), None);
        let mut beyond = Vec::new();
        let exhausted = Meta {
            version: MAX_VERSION + 1,
            ..meta
        };
        encode_record(&exhausted, b"\xc0", &mut beyond);
        assert_eq!(decode_record(&beyond), None);
    }

    #[test]
    fn applied_round_trip() {
        let applied = Applied {
            revision: 5,
            position: Position {
                segment: 1,
                offset: 640,
            },
            time: Timestamp::from_micros(99),
        };
        assert_eq!(Applied::decode(&applied.encode()), Some(applied));
        assert_eq!(Applied::decode(&[0; 31]), None);
    }
}
