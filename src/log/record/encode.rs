//! The log record's encoder, written out field by field (each MessagePack
//! marker through `rmp`, the crate under rmp-serde): the bytes are exactly those
//! of the record's serde form through `rmp_serde::encode::write_named` (a map
//! with named fields, each integer in its smallest MessagePack form, the value
//! as `bin`), which the tests below prove on random records. By hand because
//! a bulk load spends a good part of its time encoding records, and because a
//! commit's operations can be written from the engine's own view of them
//! without a `Vec` of [`LogOp`] first.

use super::{DeleteOp, LogOp, PutOp};

/// What a record holds besides its operations: written by [`head`], the
/// operations by [`op`] (`ops` of them), and then [`tail`].
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// The revision.
    pub revision: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub time: i64,
    /// How many operations follow the head.
    pub ops: usize,
    /// Further parts follow.
    pub more: bool,
    /// A restore's base commit.
    pub base: bool,
    /// The durability watermark.
    pub synced: Option<u64>,
}

/// Writes the record's map header, its revision and time, and the header of
/// its array of operations.
pub fn head(head: &Head, out: &mut Vec<u8>) -> Result<(), String> {
    let fields =
        3 + usize::from(head.more) + usize::from(head.base) + usize::from(head.synced.is_some());
    map_len(fields, out);
    str("rev", out)?;
    uint(head.revision, out);
    str("time", out)?;
    sint(head.time, out);
    str("ops", out)?;
    array_len(head.ops, out)
}

/// Writes the fields after the operations.
pub fn tail(head: &Head, out: &mut Vec<u8>) -> Result<(), String> {
    if head.more {
        str("more", out)?;
        let _ = rmp::encode::write_bool(out, true);
    }
    if head.base {
        str("base", out)?;
        let _ = rmp::encode::write_bool(out, true);
    }
    if let Some(synced) = head.synced {
        str("synced", out)?;
        uint(synced, out);
    }
    Ok(())
}

/// Writes one operation: a map of one entry, the kind naming its fields.
pub fn op(op: &LogOp<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    map_len(1, out);
    match op {
        LogOp::Put(p) => put(p, out),
        LogOp::Delete(d) => delete(d, out),
    }
}

fn put(p: &PutOp<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    str("put", out)?;
    map_len(
        5 + usize::from(p.modified.is_some()) + usize::from(p.updated.is_some()),
        out,
    );
    str("ns", out)?;
    str(&p.ns, out)?;
    str("key", out)?;
    str(&p.key, out)?;
    str("ver", out)?;
    uint(p.version, out);
    str("created", out)?;
    uint(p.created, out);
    str("value", out)?;
    bin(&p.value, out)?;
    if let Some(modified) = p.modified {
        str("modified", out)?;
        uint(modified, out);
    }
    if let Some(updated) = p.updated {
        str("updated", out)?;
        sint(updated, out);
    }
    Ok(())
}

fn delete(d: &DeleteOp<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    str("del", out)?;
    map_len(3, out);
    str("ns", out)?;
    str(&d.ns, out)?;
    str("key", out)?;
    str(&d.key, out)?;
    str("ver", out)?;
    uint(d.version, out);
    Ok(())
}

/// A length as MessagePack's 32-bit length, or why not.
fn len32(len: usize, what: &str) -> Result<u32, String> {
    u32::try_from(len).map_err(|_| format!("{what} of {len} bytes is beyond MessagePack's limit"))
}

// The markers themselves come from `rmp`, the crate under rmp-serde, so
// each is chosen exactly as rmp-serde chooses it; writing to a `Vec` fails
// only for lengths beyond MessagePack's 32 bits, checked first.

fn map_len(len: usize, out: &mut Vec<u8>) {
    // A record's maps have at most seven entries.
    debug_assert!(len < 16);
    let _ = rmp::encode::write_map_len(out, len as u32);
}

fn array_len(len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let len = len32(len, "an array")?;
    let _ = rmp::encode::write_array_len(out, len);
    Ok(())
}

fn str(s: &str, out: &mut Vec<u8>) -> Result<(), String> {
    len32(s.len(), "a string")?;
    let _ = rmp::encode::write_str(out, s);
    Ok(())
}

fn bin(b: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    len32(b.len(), "a value")?;
    let _ = rmp::encode::write_bin(out, b);
    Ok(())
}

fn uint(n: u64, out: &mut Vec<u8>) {
    let _ = rmp::encode::write_uint(out, n);
}

fn sint(n: i64, out: &mut Vec<u8>) {
    let _ = rmp::encode::write_sint(out, n);
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::super::{LogRecord, encode_into, encode_resynced};
    use super::*;

    /// The format's definition: the record's serde form, as written before
    /// the encoder was written by hand.
    fn by_serde(record: &LogRecord<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        rmp_serde::encode::write_named(&mut out, record).unwrap();
        out
    }

    fn by_hand(record: &LogRecord<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(record, &mut out).unwrap();
        out
    }

    /// Integers around every boundary of MessagePack's forms.
    fn uint_() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            (0u32..64).prop_flat_map(|shift| {
                let at = 1u64 << shift;
                (at.saturating_sub(2)..=at.saturating_add(2)).boxed()
            }),
            Just(u64::MAX),
        ]
    }

    fn sint_() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            (0u32..63).prop_flat_map(|shift| {
                let at = 1i64 << shift;
                prop_oneof![at - 2..=at + 2, -at - 2..=-at + 2].boxed()
            }),
            Just(i64::MIN),
            Just(i64::MAX),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,40}",
            "\\PC{0,12}",
            (0usize..3).prop_map(|i| "x".repeat([255, 256, 70_000][i])),
        ]
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (0usize..4).prop_map(|i| vec![7u8; [255, 256, 65_535, 65_536][i]]),
        ]
    }

    fn op_() -> impl Strategy<Value = LogOp<'static>> {
        prop_oneof![
            (
                text(),
                text(),
                uint_(),
                uint_(),
                bytes(),
                proptest::option::of(uint_()),
                proptest::option::of(sint_()),
            )
                .prop_map(|(ns, key, version, created, value, modified, updated)| {
                    LogOp::Put(PutOp {
                        ns: Cow::Owned(ns),
                        key: Cow::Owned(key),
                        version,
                        created,
                        value: Cow::Owned(value),
                        modified,
                        updated,
                    })
                }),
            (text(), text(), uint_()).prop_map(|(ns, key, version)| {
                LogOp::Delete(DeleteOp {
                    ns: Cow::Owned(ns),
                    key: Cow::Owned(key),
                    version,
                })
            }),
        ]
    }

    fn record_() -> impl Strategy<Value = LogRecord<'static>> {
        (
            uint_(),
            sint_(),
            proptest::collection::vec(op_(), 0..20),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(uint_()),
        )
            .prop_map(|(revision, time, ops, more, base, synced)| LogRecord {
                revision,
                time,
                ops,
                more,
                base,
                synced,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn a_record_encodes_to_the_bytes_of_its_serde_form(
            record in record_(),
            other in proptest::option::of(uint_()),
        ) {
            prop_assert_eq!(by_hand(&record), by_serde(&record));
            let mut resynced = Vec::new();
            encode_resynced(&record, other, &mut resynced).unwrap();
            let mut expected = record.clone();
            expected.synced = other;
            prop_assert_eq!(resynced, by_serde(&expected));
        }
    }

    #[test]
    fn long_arrays_of_operations_encode_as_serde_does() {
        // 16 and 65,536 operations: the array header's wider forms.
        for count in [15, 16, 65_535, 65_536] {
            let record = LogRecord {
                revision: 9,
                time: 1,
                ops: (0..count)
                    .map(|i| {
                        LogOp::Delete(DeleteOp {
                            ns: "n".into(),
                            key: Cow::Owned(format!("k{i}")),
                            version: i,
                        })
                    })
                    .collect(),
                more: false,
                base: false,
                synced: Some(8),
            };
            assert_eq!(by_hand(&record), by_serde(&record), "{count} operations");
        }
    }
}
