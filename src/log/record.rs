//! The log record: one committed transaction (or one part of a large one), as
//! MessagePack with named fields.
//!
//! A record describes its commit completely: the revision, the commit time, and
//! every resolved operation with the metadata it produced (new version, create
//! revision) and the full value. Replaying it needs no user code and no state
//! beyond what the record names, which is what lets the same records serve
//! recovery, backups, point-in-time restore and (later) the change feed.
//!
//! ```text
//! { "rev": 17, "time": 1767322245000006,
//!   "ops": [ {"put": {"ns": "tasks", "key": "t1", "ver": 3, "created": 9, "value": <bin>}},
//!            {"del": {"ns": "tasks", "key": "t0", "ver": 5}} ],
//!   "synced": 16,   // the log was durable up to this revision when this was written
//!   "more": true,   // only when further parts of the same revision follow
//!   "base": true }  // only for a restore's first commit, which may start at any revision
//! ```
//!
//! Fields added later must be optional (`serde(default)`), so that older logs stay
//! readable; anything else needs a new log format version.
//!
//! The one payload that is not a record is a segment's seal (log format 2), its
//! last frame: `{"seal": 1234}`, the first revision of the segment after it,
//! always encoded in the same 15 bytes.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub(crate) mod encode;

use crate::counter::{MAX_REVISION, MAX_VERSION};
use crate::error::Shown;

/// One commit, or one part of a commit that is split over several frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord<'a> {
    /// The revision this commit created.
    #[serde(rename = "rev")]
    pub revision: u64,
    /// Commit time, microseconds since the Unix epoch (UTC).
    #[serde(rename = "time")]
    pub time: i64,
    /// The operations, in the order they apply.
    #[serde(rename = "ops", borrow)]
    pub ops: Vec<LogOp<'a>>,
    /// Further parts of the same revision follow. A commit counts only once its
    /// last part (the one without `more`) is in the log.
    #[serde(rename = "more", default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// The first commit of a restored store: its records keep the versions and
    /// revisions of the snapshot, and its revision need not follow the previous one.
    #[serde(rename = "base", default, skip_serializing_if = "is_false")]
    pub base: bool,
    /// The log was synced up to this revision when this record was written: the
    /// writer's durability watermark. Recovery uses it to tell a torn tail (the
    /// damaged commit was never synced, so every valid record after it was
    /// written before it was synced, with a lower watermark) from damage to
    /// synced data (a later record proves, by its watermark, that the damaged
    /// one had been synced). Absent in records written before it existed, which
    /// recovery treats as proof of durability (the stricter reading).
    #[serde(rename = "synced", default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One resolved operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogOp<'a> {
    /// Store a value.
    #[serde(rename = "put", borrow)]
    Put(PutOp<'a>),
    /// Remove a record.
    #[serde(rename = "del", borrow)]
    Delete(DeleteOp<'a>),
}

/// A record written, with the metadata it has afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOp<'a> {
    /// Namespace.
    #[serde(borrow)]
    pub ns: Cow<'a, str>,
    /// Key.
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    /// The record's version after this write.
    #[serde(rename = "ver")]
    pub version: u64,
    /// The revision that created the record.
    pub created: u64,
    /// The value, MessagePack.
    #[serde(borrow, with = "serde_bytes")]
    pub value: Cow<'a, [u8]>,
    /// Only in base records: the record's modification revision (otherwise the
    /// record's revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<u64>,
    /// Only in base records: the record's update time (otherwise the record's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
}

impl PutOp<'_> {
    /// The record's metadata after this write, in a commit at `revision` and
    /// `time` (a base record carries its own modification revision and time).
    pub fn meta(&self, revision: u64, time: crate::time::Timestamp) -> crate::value::Meta {
        crate::value::Meta {
            version: self.version,
            create_revision: self.created,
            mod_revision: self.modified.unwrap_or(revision),
            updated_at: self
                .updated
                .map_or(time, crate::time::Timestamp::from_micros),
        }
    }
}

/// A record removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOp<'a> {
    /// Namespace.
    #[serde(borrow)]
    pub ns: Cow<'a, str>,
    /// Key.
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    /// The version the record had when it was removed.
    #[serde(rename = "ver")]
    pub version: u64,
}

impl LogOp<'_> {
    /// The namespace and key the operation touches.
    pub fn address(&self) -> (&str, &str) {
        match self {
            LogOp::Put(p) => (&p.ns, &p.key),
            LogOp::Delete(d) => (&d.ns, &d.key),
        }
    }
}

/// Appends the MessagePack encoding of `record` to `out`: the bytes of its
/// serde form with named fields (`encode` writes them by hand).
pub fn encode_into(record: &LogRecord<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    encode_resynced(record, record.synced, out)
}

/// Appends the encoding of `record` with its watermark replaced by `synced`:
/// how a record read from one log is written into another (a restore), where
/// the watermark must say what that log had synced.
pub fn encode_resynced(
    record: &LogRecord<'_>,
    synced: Option<u64>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let head = encode::Head {
        revision: record.revision,
        time: record.time,
        ops: record.ops.len(),
        more: record.more,
        base: record.base,
        synced,
    };
    encode::head(&head, out)?;
    for op in &record.ops {
        encode::op(op, out)?;
    }
    encode::tail(&head, out)
}

/// The bytes a seal's payload starts with: a map of one entry, `"seal"`, and
/// a 64-bit unsigned integer (big-endian, as MessagePack has it).
const SEAL_PREFIX: [u8; 7] = [0x81, 0xa4, b's', b'e', b'a', b'l', 0xcf];
/// Bytes of a seal's payload.
pub const SEAL_PAYLOAD_LEN: usize = SEAL_PREFIX.len() + 8;

/// The payload of the seal of a segment whose successor starts at `next`.
pub fn encode_seal(next: u64) -> [u8; SEAL_PAYLOAD_LEN] {
    let mut out = [0u8; SEAL_PAYLOAD_LEN];
    out[..SEAL_PREFIX.len()].copy_from_slice(&SEAL_PREFIX);
    out[SEAL_PREFIX.len()..].copy_from_slice(&next.to_be_bytes());
    out
}

/// The revision a seal names, if `payload` is a seal.
pub fn decode_seal(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(&SEAL_PREFIX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Decodes a record from a frame's payload, borrowing strings and values from it.
pub fn decode(payload: &[u8]) -> Result<LogRecord<'_>, String> {
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    LogRecord::deserialize(&mut de).map_err(|e| e.to_string())
}

impl LogRecord<'_> {
    /// Checks what the decoder cannot: revisions and versions in range, addresses
    /// valid. Returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.revision == 0 {
            return Err("revision 0 is never written".to_owned());
        }
        if self.revision > MAX_REVISION {
            return Err(format!(
                "revision {} is beyond the highest a store reaches ({MAX_REVISION})",
                self.revision
            ));
        }
        if self.ops.is_empty() && !self.more && !self.base {
            return Err("a commit without operations is never written".to_owned());
        }
        if let Some(synced) = self.synced
            && synced >= self.revision
        {
            return Err(format!(
                "the record says the log was synced up to revision {synced}, not before its own \
                 revision {}",
                self.revision
            ));
        }
        for op in &self.ops {
            let (ns, key) = op.address();
            crate::key::encode_stored(ns, key).map_err(|e| e.to_string())?;
            let problem = match op {
                LogOp::Put(p) => {
                    let modified = p.modified.unwrap_or(self.revision);
                    if p.version == 0 || p.version > MAX_VERSION {
                        Some(format!("version {}, outside 1 to {MAX_VERSION}", p.version))
                    } else if p.created == 0 || p.created > modified || modified > self.revision {
                        Some(format!(
                            "revisions out of order (created {}, modified {modified}, commit {})",
                            p.created, self.revision
                        ))
                    } else if !self.base && (p.modified.is_some() || p.updated.is_some()) {
                        Some("base metadata outside a base record".to_owned())
                    } else {
                        None
                    }
                }
                LogOp::Delete(d) => (d.version == 0 || d.version > MAX_VERSION)
                    .then(|| format!("version {}, outside 1 to {MAX_VERSION}", d.version)),
            };
            if let Some(problem) = problem {
                let kind = match op {
                    LogOp::Put(_) => "put",
                    LogOp::Delete(_) => "delete",
                };
                return Err(format!(
                    "{kind} of {}/{} with {problem}",
                    Shown::new(ns),
                    Shown::new(key)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_is_a_map_naming_the_next_segment_and_never_a_record() {
        let seal = encode_seal(1234);
        assert_eq!(decode_seal(&seal), Some(1234));
        let value = rmpv::decode::read_value(&mut &seal[..]).unwrap();
        assert_eq!(value["seal"].as_u64(), Some(1234));
        assert!(decode(&seal).is_err());
        assert_eq!(decode_seal(&seal[..14]), None);
        let mut record = Vec::new();
        encode_into(&sample(), &mut record).unwrap();
        assert_eq!(decode_seal(&record), None);
    }

    fn sample() -> LogRecord<'static> {
        LogRecord {
            revision: 17,
            time: 1_767_322_245_000_006,
            ops: vec![
                LogOp::Put(PutOp {
                    ns: "tasks".into(),
                    key: "t1".into(),
                    version: 3,
                    created: 9,
                    value: Cow::Owned(vec![0x81, 0xa1, b'a', 1]),
                    modified: None,
                    updated: None,
                }),
                LogOp::Delete(DeleteOp {
                    ns: "tasks".into(),
                    key: "t0".into(),
                    version: 5,
                }),
            ],
            more: false,
            base: false,
            synced: Some(16),
        }
    }

    #[test]
    fn round_trip_borrows() {
        let mut buf = Vec::new();
        encode_into(&sample(), &mut buf).unwrap();
        let back = decode(&buf).unwrap();
        assert_eq!(back, sample());
        assert!(back.check().is_ok());
        if let LogOp::Put(p) = &back.ops[0] {
            assert!(matches!(p.value, Cow::Borrowed(_)));
            assert!(matches!(p.ns, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn encoding_is_self_describing() {
        let mut buf = Vec::new();
        encode_into(&sample(), &mut buf).unwrap();
        // Field names are in the bytes, so tools can read records without the types.
        let text = String::from_utf8_lossy(&buf);
        for name in [
            "rev", "time", "ops", "put", "del", "ver", "created", "synced",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }

    #[test]
    fn a_resynced_record_differs_only_in_its_watermark() {
        let mut plain = Vec::new();
        encode_into(&sample(), &mut plain).unwrap();
        let mut same = Vec::new();
        encode_resynced(&sample(), Some(16), &mut same).unwrap();
        assert_eq!(plain, same);
        let mut other = Vec::new();
        encode_resynced(&sample(), Some(3), &mut other).unwrap();
        let mut expected = sample();
        expected.synced = Some(3);
        assert_eq!(decode(&other).unwrap(), expected);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(decode(b"\xff\xff").is_err());
        assert!(decode(b"").is_err());
        assert!(decode(b"\x81\xa3rev\x01").is_err());
    }

    #[test]
    fn check_catches_impossible_records() {
        let mut r = sample();
        r.revision = 5;
        r.synced = Some(4);
        assert!(r.check().unwrap_err().contains("out of order"));
        let mut r = sample();
        r.synced = Some(17);
        assert!(r.check().unwrap_err().contains("synced up to revision 17"));
        let mut r = sample();
        r.ops.clear();
        assert!(r.check().is_err());
        let mut r = sample();
        r.revision = u64::MAX;
        assert!(r.check().unwrap_err().contains("beyond the highest"));
        for version in [0, MAX_VERSION + 1, u64::MAX] {
            let mut r = sample();
            if let LogOp::Put(p) = &mut r.ops[0] {
                p.version = version;
            }
            assert!(r.check().unwrap_err().contains("outside 1 to"), "{version}");
            let mut r = sample();
            if let LogOp::Delete(d) = &mut r.ops[1] {
                d.version = version;
            }
            assert!(r.check().unwrap_err().contains("outside 1 to"), "{version}");
        }
        let mut r = sample();
        if let LogOp::Put(p) = &mut r.ops[0] {
            p.key = "bad\nkey".into();
        }
        assert!(r.check().is_err());
    }
}
