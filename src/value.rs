//! Values: how typed values become MessagePack and back, and the types that carry
//! a value together with its metadata ([`Meta`], [`Versioned`]; `Stored` and
//! `Entry`, a record as a backend reads it).

use serde::Serialize;
use serde::de::DeserializeOwned;

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
    pub fn from_msgpack(bytes: Vec<u8>) -> std::result::Result<RawValue, String> {
        check_msgpack(&bytes)?;
        Ok(RawValue(bytes))
    }

    /// Encodes a typed value the way the store does (MessagePack, named fields).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> std::result::Result<RawValue, String> {
        rmp_serde::to_vec_named(value)
            .map(RawValue)
            .map_err(|e| e.to_string())
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
    pub fn decode<T: DeserializeOwned>(&self) -> std::result::Result<T, String> {
        rmp_serde::from_slice(&self.0).map_err(|e| e.to_string())
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

/// Encodes a value for storage.
pub(crate) fn encode<T: Serialize + ?Sized>(
    namespace: &str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>> {
    // Most values are small records: start with room for one, to skip the first
    // few reallocations of growing from nothing.
    let mut bytes = Vec::with_capacity(128);
    rmp_serde::encode::write_named(&mut bytes, value).map_err(|e| Error::Encode {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    })?;
    check_len(namespace, key, bytes.len())?;
    Ok(bytes)
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
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        type_name: std::any::type_name::<T>(),
        message: e.to_string(),
    })
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
