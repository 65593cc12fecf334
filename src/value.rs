//! Values: how typed values become MessagePack and back, and the types that carry
//! a value together with its metadata ([`Meta`], [`Versioned`]; `Stored` and
//! `Entry`, a record as a backend reads it).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bigint;
use crate::error::{Error, Result, Shown};
use crate::time::Timestamp;

/// Largest encoded value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 16 << 20;

/// Deepest nesting of arrays and maps accepted in a raw value: 256 arrays or
/// maps inside one another (an empty one counts) pass, 257 do not.
pub const MAX_DEPTH: usize = 256;

/// The metadata every record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Meta {
    /// 1 when created, +1 on every write; starts again at 1 after a delete.
    pub version: u64,
    /// The revision that created the record.
    pub create_revision: u64,
    /// The revision that last wrote it.
    pub mod_revision: u64,
    /// When it was last written (the commit time).
    pub updated_at: Timestamp,
}

/// A record as a backend reads it: metadata and value (MessagePack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub meta: Meta,
    pub value: Vec<u8>,
}

/// A record of a range, with its encoded address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub address: Vec<u8>,
    pub meta: Meta,
    pub value: Vec<u8>,
}

/// A value together with the metadata of the record that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// 1 when the record was created, +1 on every write since.
    pub version: u64,
    /// The revision that created the record.
    pub create_revision: u64,
    /// The revision that last wrote it.
    pub mod_revision: u64,
    /// When it was last written (UTC).
    pub updated_at: Timestamp,
}

impl<T> Versioned<T> {
    pub(crate) fn new(value: T, meta: Meta) -> Versioned<T> {
        Versioned {
            value,
            version: meta.version,
            create_revision: meta.create_revision,
            mod_revision: meta.mod_revision,
            updated_at: meta.updated_at,
        }
    }

    /// The metadata without the value.
    pub fn meta(&self) -> Meta {
        Meta {
            version: self.version,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            updated_at: self.updated_at,
        }
    }

    /// Replaces the value, keeping the metadata.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        let meta = self.meta();
        Versioned::new(f(self.value), meta)
    }
}

/// A stored value as its MessagePack bytes, for code that handles values without
/// knowing their Rust type (snapshots, the command line).
///
/// ```
/// use statelog::RawValue;
/// let raw = RawValue::from_value(&("ok", 3)).unwrap();
/// let back: (String, u32) = raw.decode().unwrap();
/// assert_eq!(back, ("ok".to_owned(), 3));
/// assert!(RawValue::from_msgpack(vec![0x92, 0x01]).is_err()); // an array missing an item
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawValue(Vec<u8>);

impl RawValue {
    /// Wraps MessagePack bytes after checking they hold exactly one value.
    ///
    /// # Errors
    /// [`Error::Value`] saying what is wrong and at which byte: the bytes
    /// end early, hold more than one value, nest deeper than [`MAX_DEPTH`],
    /// or hold a string that is not UTF-8.
    pub fn from_msgpack(bytes: Vec<u8>) -> Result<RawValue> {
        check_msgpack(&bytes).map_err(Error::value)?;
        Ok(RawValue(bytes))
    }

    /// Encodes a typed value the way the store does (MessagePack, named fields).
    ///
    /// # Errors
    /// [`Error::Value`] when the value cannot be encoded (its `Serialize`
    /// fails, such as a map with keys that are not strings or numbers).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<RawValue> {
        let mut bytes = Vec::with_capacity(128);
        write_named(&mut bytes, value).map_err(Error::value)?;
        Ok(RawValue(bytes))
    }

    /// The MessagePack bytes.
    pub fn as_msgpack(&self) -> &[u8] {
        &self.0
    }

    /// The MessagePack bytes, owned.
    pub fn into_msgpack(self) -> Vec<u8> {
        self.0
    }

    /// Decodes into a typed value.
    ///
    /// # Errors
    /// [`Error::Value`] when the value is not a `T` (its message names the
    /// type).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        read(&self.0).map_err(|message| {
            Error::value(format!(
                "the value is not a {}: {message}",
                std::any::type_name::<T>()
            ))
        })
    }

    pub(crate) fn from_trusted(bytes: Vec<u8>) -> RawValue {
        RawValue(bytes)
    }
}

/// Checks that `bytes` hold exactly one complete MessagePack value, nested at
/// most [`MAX_DEPTH`] deep, with valid UTF-8 in its strings. Iterative, so no
/// input can exhaust the stack.
pub(crate) fn check_msgpack(bytes: &[u8]) -> std::result::Result<(), String> {
    // Items still to read at each open level; the bottom level is the one value.
    let mut levels: Vec<u64> = vec![1];
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
        let end = at.checked_add(n).filter(|end| *end <= bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "the value ends early: {n} more bytes needed at byte {at}"
            ));
        };
        let out = &bytes[*at..end];
        *at = end;
        Ok(out)
    };
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    while let Some(remaining) = levels.last_mut() {
        if *remaining == 0 {
            levels.pop();
            continue;
        }
        *remaining -= 1;
        let start = at;
        let marker = take(&mut at, 1)?[0];
        // (bytes of a length field, bytes of payload known now, items that follow)
        let (len_bytes, fixed, items, string): (usize, u64, u64, bool) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0, false),
            0x80..=0x8f => (0, 0, 2 * u64::from(marker & 0x0f), false),
            0x90..=0x9f => (0, 0, u64::from(marker & 0x0f), false),
            0xa0..=0xbf => (0, u64::from(marker & 0x1f), 0, true),
            0xc4 | 0xd9 => (1, 0, 0, marker == 0xd9),
            0xc5 | 0xda => (2, 0, 0, marker == 0xda),
            0xc6 | 0xdb => (4, 0, 0, marker == 0xdb),
            0xc7 => (1, 1, 0, false),
            0xc8 => (2, 1, 0, false),
            0xc9 => (4, 1, 0, false),
            0xca => (0, 4, 0, false),
            0xcb => (0, 8, 0, false),
            0xcc | 0xd0 => (0, 1, 0, false),
            0xcd | 0xd1 => (0, 2, 0, false),
            0xce | 0xd2 => (0, 4, 0, false),
            0xcf | 0xd3 => (0, 8, 0, false),
            0xd4 => (0, 2, 0, false),
            0xd5 => (0, 3, 0, false),
            0xd6 => (0, 5, 0, false),
            0xd7 => (0, 9, 0, false),
            0xd8 => (0, 17, 0, false),
            0xdc => (2, 0, 1, false),
            0xdd => (4, 0, 1, false),
            0xde => (2, 0, 2, false),
            0xdf => (4, 0, 2, false),
            0xc1 => {
                return Err(format!(
                    "byte {start} is 0xc1, which MessagePack never uses"
                ));
            }
        };
        let counted = if len_bytes > 0 {
            be(take(&mut at, len_bytes)?)
        } else {
            0
        };
        let (payload, nested) = match marker {
            0xdc..=0xdf => (0, counted * items),
            0xc7..=0xc9 => (counted + fixed, 0),
            _ if len_bytes > 0 => (counted, 0),
            _ => (fixed, items),
        };
        let payload = usize::try_from(payload).map_err(|_| "a length is too large".to_owned())?;
        let body = take(&mut at, payload)?;
        if string && std::str::from_utf8(body).is_err() {
            return Err(format!("the string at byte {start} is not valid UTF-8"));
        }
        if matches!(marker, 0xc7..=0xc9 | 0xd4..=0xd8)
            && body.first().map(|&t| t as i8) == Some(bigint::EXT_TYPE)
        {
            bigint::check(&body[1..]).map_err(|e| format!("at byte {start}: {e}"))?;
        }
        // An array or map opens a level, empty or not: with `levels.len() - 1`
        // containers around it, this one is at depth `levels.len()`.
        let container = matches!(marker, 0x80..=0x9f | 0xdc..=0xdf);
        if container && levels.len() > MAX_DEPTH {
            return Err(format!(
                "the value nests deeper than {MAX_DEPTH} levels of arrays and maps"
            ));
        }
        if nested > 0 {
            levels.push(nested);
        }
    }
    if at != bytes.len() {
        return Err(format!("{} bytes follow the value", bytes.len() - at));
    }
    Ok(())
}

/// Decodes one whole MessagePack value into a tree; bytes after it are an
/// error.
pub(crate) fn tree(bytes: &[u8]) -> std::result::Result<rmpv::Value, String> {
    let mut input = bytes;
    let value = rmpv::decode::read_value(&mut input).map_err(|e| e.to_string())?;
    if !input.is_empty() {
        return Err(format!("{} bytes follow the value", input.len()));
    }
    Ok(value)
}

/// What kind of value a tree is, for messages.
pub(crate) fn kind(value: &rmpv::Value) -> &'static str {
    use rmpv::Value;
    match value {
        Value::Nil => "null",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => "a number",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary data",
        Value::Array(_) => "an array",
        Value::Map(_) => "an object",
        Value::Ext(..) => "an extension value",
    }
}

/// Encodes a value for storage.
pub(crate) fn encode<T: Serialize + ?Sized>(
    namespace: &str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>> {
    // Most values are small records: start with room for one, to skip the first
    // few reallocations of growing from nothing.
    let mut bytes = Vec::with_capacity(128);
    encode_into(namespace, key, value, &mut bytes)?;
    Ok(bytes)
}

/// [`encode`] through `scratch` (cleared first, its capacity kept for the next
/// value): many values encoded one after another (a transaction's puts) cost
/// one allocation of exactly their size each, not a buffer grown from empty.
pub(crate) fn encode_through<T: Serialize + ?Sized>(
    namespace: &str,
    key: &str,
    value: &T,
    scratch: &mut Vec<u8>,
) -> Result<Vec<u8>> {
    scratch.clear();
    encode_into(namespace, key, value, scratch)?;
    Ok(scratch.as_slice().to_vec())
}

/// Appends a value's encoding to `out`, checked against the size limit.
fn encode_into<T: Serialize + ?Sized>(
    namespace: &str,
    key: &str,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<()> {
    write_named(out, value).map_err(|message| Error::Encode {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        message,
    })?;
    check_len(namespace, key, out.len())
}

pub(crate) fn check_len(namespace: &str, key: &str, len: usize) -> Result<()> {
    if len > MAX_VALUE_LEN {
        return Err(Error::TooLarge {
            what: format!(
                "the value for {}/{}",
                Shown::new(namespace),
                Shown::new(key)
            ),
            size: len,
            limit: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Decodes a stored value as `T`.
pub(crate) fn decode<T: DeserializeOwned>(namespace: &str, key: &str, bytes: &[u8]) -> Result<T> {
    read(bytes).map_err(|message| Error::Decode {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        type_name: std::any::type_name::<T>(),
        message,
    })
}

/// MessagePack with named fields, `i128` and `u128` as stored integers
/// (`bigint`).
fn write_named<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> std::result::Result<(), String> {
    let mut serializer = rmp_serde::Serializer::new(out).with_struct_map();
    value
        .serialize(bigint::serde::Ser(&mut serializer))
        .map_err(|e| e.to_string())
}

/// The inverse of [`write_named`]: one value, nothing after it.
fn read<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    let value = T::deserialize(bigint::serde::De(&mut deserializer)).map_err(|e| e.to_string())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Task {
        status: String,
        progress: u8,
    }

    #[test]
    fn values_are_stored_with_field_names() {
        let bytes = encode(
            "tasks",
            "t1",
            &Task {
                status: "running".into(),
                progress: 5,
            },
        )
        .unwrap();
        // A map with named fields, readable without the Rust type.
        let value: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(value["status"], "running");
        assert_eq!(value["progress"], 5);
    }

    #[test]
    fn wrong_type_names_the_record() {
        let bytes = encode("tasks", "t1", &"just a string").unwrap();
        let err = decode::<Task>("tasks", "t1", &bytes).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tasks/t1"), "{text}");
        assert!(text.contains("Task"), "{text}");
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    enum Amount {
        Whole(i128),
        Pair(u128, i128),
        Named { n: u128 },
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Wide {
        signed: i128,
        unsigned: u128,
        maybe: Option<i128>,
        list: Vec<i128>,
        keyed: std::collections::BTreeMap<u128, i128>,
        amounts: Vec<Amount>,
    }

    #[test]
    fn i128_and_u128_are_plain_integers_when_they_fit_and_type_105_when_not() {
        let small = encode("n", "k", &5i128).unwrap();
        assert_eq!(small, [5]);
        assert_eq!(encode("n", "k", &u128::from(u64::MAX)).unwrap()[0], 0xcf);
        let big = encode("n", "k", &-(1i128 << 64)).unwrap();
        assert_eq!(big, [0xc7, 9, 105, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        check_msgpack(&big).unwrap();
        assert_eq!(decode::<i128>("n", "k", &big).unwrap(), -(1i128 << 64));
        assert_eq!(decode::<i64>("n", "k", &small).unwrap(), 5);

        let wide = Wide {
            signed: i128::MIN,
            unsigned: u128::MAX,
            maybe: Some(-(1i128 << 100)),
            list: vec![0, -1, i128::MAX, i128::from(i64::MIN) - 1],
            keyed: [(u128::MAX, 1), (7, i128::MIN)].into_iter().collect(),
            amounts: vec![
                Amount::Whole(1i128 << 90),
                Amount::Pair(1u128 << 127, -3),
                Amount::Named { n: 1u128 << 64 },
            ],
        };
        let bytes = encode("n", "k", &wide).unwrap();
        check_msgpack(&bytes).unwrap();
        assert_eq!(decode::<Wide>("n", "k", &bytes).unwrap(), wide);
        let raw = RawValue::from_value(&wide).unwrap();
        assert_eq!(raw.as_msgpack(), bytes.as_slice());
        assert_eq!(raw.decode::<Wide>().unwrap(), wide);
        // Readable without the Rust type: the same integers as a generic tree.
        let tree = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(
            tree["signed"],
            rmpv::Value::Ext(105, i128::MIN.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn integers_that_do_not_fit_the_type_asked_for_are_clear_errors() {
        let too_big = encode("n", "k", &u128::MAX).unwrap();
        let err = decode::<i128>("n", "k", &too_big).unwrap_err().to_string();
        assert!(
            err.contains(
                "the integer 340282366920938463463374607431768211455 does not fit in an i128"
            ),
            "{err}"
        );
        let negative = encode("n", "k", &-1i64).unwrap();
        let err = decode::<u128>("n", "k", &negative).unwrap_err().to_string();
        assert!(
            err.contains("the integer -1 does not fit in an u128"),
            "{err}"
        );
        let err = decode::<u64>("n", "k", &too_big).unwrap_err().to_string();
        assert!(err.contains("n/k"), "{err}");
        let huge = [vec![0xc8, 0x01, 0x00, 105, 0x01], vec![0; 255]].concat();
        check_msgpack(&huge).unwrap();
        let err = decode::<i128>("n", "k", &huge).unwrap_err().to_string();
        assert!(err.contains("does not fit in an i128"), "{err}");
        // A damaged payload (it fits in 64 bits) is refused when read.
        let damaged = [vec![0xc7, 9, 105, 0], vec![0xff; 8]].concat();
        let err = decode::<i128>("n", "k", &damaged).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        let err = check_msgpack(&damaged).unwrap_err();
        assert!(
            err.contains("at byte 0") && err.contains("fits in 64 bits"),
            "{err}"
        );
        // Another extension type is not an integer.
        let other = vec![0xd4, 7, 1];
        let err = decode::<i128>("n", "k", &other).unwrap_err().to_string();
        assert!(err.contains("extension value of type 7"), "{err}");
    }

    #[test]
    fn i128_written_by_earlier_versions_as_16_bytes_still_reads() {
        // rmp-serde alone writes an i128 as 16 bytes of binary.
        let n = -(1i128 << 100) + 12_345;
        let old = rmp_serde::to_vec_named(&n).unwrap();
        assert_eq!(old[..2], [0xc4, 16]);
        assert_eq!(decode::<i128>("n", "k", &old).unwrap(), n);
        let old = rmp_serde::to_vec_named(&u128::MAX).unwrap();
        assert_eq!(decode::<u128>("n", "k", &old).unwrap(), u128::MAX);
    }

    #[test]
    fn raw_value_errors_are_typed_and_say_what_and_where() {
        match RawValue::from_msgpack(vec![0x92, 0x01]) {
            Err(Error::Value {
                message,
                line: None,
                column: None,
            }) => assert!(
                message.contains("ends early") && message.contains("at byte 2"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        let raw = RawValue::from_value(&"text").unwrap();
        let err = raw.decode::<u32>().unwrap_err();
        assert!(matches!(err, Error::Value { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("the value is not a u32: "),
            "{err}"
        );
    }

    #[test]
    fn msgpack_check() {
        assert!(check_msgpack(&[0xc0]).is_ok());
        assert!(check_msgpack(&[0xc0, 0xc0]).is_err());
        assert!(check_msgpack(&[]).is_err());
        assert!(check_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut deep = vec![0x91; 100_000];
        deep.push(0xc0);
        assert!(check_msgpack(&deep).is_err());
        // MAX_DEPTH arrays pass, whether the innermost holds a scalar or is
        // empty; one more does not.
        let around_nil = [vec![0x91; MAX_DEPTH], vec![0xc0]].concat();
        let empty_inside = [vec![0x91; MAX_DEPTH - 1], vec![0x90]].concat();
        for ok in [around_nil, empty_inside] {
            assert!(check_msgpack(&ok).is_ok());
            let deeper = [vec![0x91], ok].concat();
            assert!(check_msgpack(&deeper).is_err());
        }
        assert!(check_msgpack(&[0xa2, 0xff, 0xfe]).is_err());
        assert!(check_msgpack(&[0xc1]).is_err());
        assert!(check_msgpack(&[0x82, 0x01]).is_err());
    }

    #[test]
    fn msgpack_check_accepts_what_the_encoder_writes() {
        let value = serde_json::json!({
            "s": "text", "n": -5, "big": u64::MAX, "f": 1.5, "a": [1, [2, [3]]],
            "m": {"k": null, "t": true}, "long": "x".repeat(70_000),
            "many": (0..70_000).collect::<Vec<u32>>(),
        });
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        check_msgpack(&bytes).unwrap();
        let bin = rmp_serde::to_vec(&serde_bytes::ByteBuf::from(vec![1u8; 300])).unwrap();
        check_msgpack(&bin).unwrap();
        for cut in 0..bytes.len().min(200) {
            assert!(check_msgpack(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
