//! The bytes of a record's etcd value, and etcd's limits on a transaction.
//!
//! ```text
//!  0      1           9
//!  +------+-----------+----------------------+
//!  | 0x01 | updated   | value (MessagePack)  |
//!  +------+-----------+----------------------+
//!  updated = i64 LE microseconds since the Unix epoch (the writer's clock)
//! ```
//!
//! Version, create revision and modification revision are etcd's own (its
//! `KeyValue`), so the value carries only what etcd does not keep: when the
//! record was written.

use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::value::Meta;

const FORMAT: u8 = 1;
/// Bytes before the MessagePack value.
pub const HEADER_LEN: usize = 9;

/// A record's etcd value.
pub fn encode(updated_at: Timestamp, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.push(FORMAT);
    out.extend_from_slice(&updated_at.as_micros().to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The update time and MessagePack value of a record's etcd value; `None` if
/// the bytes were not written by [`encode`].
pub fn decode(bytes: &[u8]) -> Option<(Timestamp, &[u8])> {
    if *bytes.first()? != FORMAT {
        return None;
    }
    let updated = i64::from_le_bytes(bytes.get(1..HEADER_LEN)?.try_into().ok()?);
    Some((Timestamp::from_micros(updated), bytes.get(HEADER_LEN..)?))
}

/// A record's metadata from etcd's key-value fields and the update time.
pub(crate) fn meta(kv: &super::proto::KeyValue, updated_at: Timestamp) -> Meta {
    Meta {
        version: u64::try_from(kv.version).unwrap_or(0),
        create_revision: u64::try_from(kv.create_revision).unwrap_or(0),
        mod_revision: u64::try_from(kv.mod_revision).unwrap_or(0),
        updated_at,
    }
}

/// The limits of the etcd cluster a commit must fit in. etcd does not report
/// them, so the client is told (the defaults are etcd's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// etcd's `--max-txn-ops`: operations per list of a transaction (the
    /// compares, the success ops, the failure ops). Default 128.
    pub max_txn_ops: usize,
    /// etcd's `--max-request-bytes`: the largest request. Default 1.5 MiB.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_txn_ops: 128,
            max_request_bytes: 1536 * 1024,
        }
    }
}

/// What etcd adds around a transaction when it proposes it (a request header
/// with an id, a user name and an auth revision): kept free below the limit.
const PROPOSAL_OVERHEAD: usize = 512;

impl Limits {
    /// Refuses a transaction etcd would refuse, before anything is sent:
    /// `compares`, `success` and `failure` are its list lengths, `bytes` its
    /// encoded size, `writes` the statelog writes it carries.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] naming the limit and how to get under it.
    pub fn check(
        &self,
        compares: usize,
        success: usize,
        failure: usize,
        bytes: usize,
        writes: usize,
    ) -> Result<()> {
        let ops = compares.max(success).max(failure);
        if ops > self.max_txn_ops {
            return Err(Error::LimitExceeded {
                limit: "--max-txn-ops",
                what: format!(
                    "a transaction of {writes} writes and {compares} checks ({ops} etcd \
                     operations in one list; the limit is {})",
                    self.max_txn_ops
                ),
                hint: format!(
                    "commit at most {} records per transaction, or raise --max-txn-ops on \
                     every member of the cluster and tell statelog the new limit",
                    self.max_txn_ops
                ),
            });
        }
        if bytes + PROPOSAL_OVERHEAD > self.max_request_bytes {
            return Err(Error::LimitExceeded {
                limit: "--max-request-bytes",
                what: format!(
                    "a transaction of {bytes} bytes (the limit is {} bytes, less {PROPOSAL_OVERHEAD} \
                     for etcd's own header)",
                    self.max_request_bytes
                ),
                hint: "write smaller values or fewer records per transaction, or raise \
                       --max-request-bytes on every member of the cluster and tell statelog \
                       the new limit"
                    .into(),
            });
        }
        Ok(())
    }
}

/// The error for an etcd value that is not a statelog record.
pub(crate) fn foreign(namespace: &str, key: &str) -> Error {
    Error::Decode {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        type_name: "a statelog record",
        message: "the etcd value under this key was not written by statelog (another program \
                  shares the store's prefix?)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_foreign_bytes_are_refused() {
        let t = Timestamp::from_micros(1_767_322_245_000_006);
        let bytes = encode(t, &[0x93, 1, 2, 3]);
        assert_eq!(bytes.len(), HEADER_LEN + 4);
        assert_eq!(decode(&bytes), Some((t, &[0x93, 1, 2, 3][..])));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(decode(&[1, 0, 0]), None);
        assert_eq!(decode(b"{\"json\": true}"), None);
    }

    #[test]
    fn limits_name_the_etcd_option() {
        let limits = Limits::default();
        assert!(limits.check(128, 128, 128, 1000, 128).is_ok());
        let e = limits.check(10, 129, 10, 1000, 129).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("--max-txn-ops"), "{text}");
        assert!(text.contains("129 writes"), "{text}");
        assert!(text.contains("nothing was written"), "{text}");
        let e = limits.check(1, 1, 1, 1536 * 1024, 1).unwrap_err();
        assert!(e.to_string().contains("--max-request-bytes"), "{e}");
        assert!(limits.check(1, 1, 1, 1536 * 1024 - 512, 1).is_ok());
    }
}
