//! Where a store's keys live in etcd's flat key space.
//!
//! ```text
//! <prefix> 0x00 'r' <namespace> 0x00 <key>   a record (the address of key.rs)
//! <prefix> 0x00 'm' <name>                    store metadata (the identity: "store")
//! <prefix> 0x00 'l' ...                       reserved: leases and locks
//! <prefix> 0x00 'f' ...                       reserved: fencing counters
//! <prefix> 0x00 'i' ...                       reserved: idempotency keys
//! ```
//!
//! The prefix may not contain a control character, so the 0x00 after it ends
//! it unambiguously: no store's keys fall inside another store's ranges, even
//! when one prefix begins with another ("ci" and "ci/state"). A namespace is
//! one contiguous range (`[..ns 0x00, ..ns 0x01)`) and the records of a store
//! are one range (`[.. 'r', .. 's')`), both in (namespace, key) byte order.

use crate::error::{Error, Result};
use crate::key;

/// Longest store prefix accepted, in bytes of UTF-8.
pub const MAX_PREFIX_LEN: usize = 256;

const SEPARATOR: u8 = 0;
const RECORDS: u8 = b'r';
const META: u8 = b'm';

/// The keys of one store: everything under its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// The layout of the store at `prefix`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an empty prefix, one longer than
    /// [`MAX_PREFIX_LEN`], or one with a control character.
    pub fn new(prefix: &str) -> Result<Layout> {
        // The address rules of key.rs, with a limit of its own.
        let refuse = |reason: String| Error::InvalidOption {
            name: "prefix",
            reason: format!("the store prefix {prefix:?} cannot be used: {reason}"),
        };
        if prefix.is_empty() {
            return Err(refuse(
                "it is empty; name one, as in etcd://HOST:PORT/PREFIX".into(),
            ));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(refuse(format!(
                "it is {} bytes long; the limit is {MAX_PREFIX_LEN}",
                prefix.len()
            )));
        }
        if let Some(at) = key::first_control(prefix) {
            return Err(refuse(format!(
                "it contains a control character at byte {at}"
            )));
        }
        Ok(Layout {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix the layout was made for.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn with_tag(&self, tag: u8, extra: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 2 + extra);
        out.extend_from_slice(self.prefix.as_bytes());
        out.push(SEPARATOR);
        out.push(tag);
        out
    }

    /// The etcd key of a record; validates the address as the embedded store does.
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn record(&self, namespace: &str, key: &str) -> Result<Vec<u8>> {
        let address = key::encode(namespace, key)?;
        Ok(self.record_of_address(&address))
    }

    /// The etcd key of an encoded address (`namespace 0x00 key`).
    pub(crate) fn record_of_address(&self, address: &[u8]) -> Vec<u8> {
        let mut out = self.with_tag(RECORDS, address.len());
        out.extend_from_slice(address);
        out
    }

    /// The encoded address (`namespace 0x00 key`) of a record's etcd key;
    /// `None` for a key outside this store's records.
    pub(crate) fn address_of<'k>(&self, etcd_key: &'k [u8]) -> Option<&'k [u8]> {
        let head = self.with_tag(RECORDS, 0);
        etcd_key.strip_prefix(head.as_slice())
    }

    /// The namespace and key of a record's etcd key; `None` for a key that is
    /// not a record of this store.
    pub fn decode_record<'k>(&self, etcd_key: &'k [u8]) -> Option<(&'k str, &'k str)> {
        key::decode(self.address_of(etcd_key)?)
    }

    /// `[start, end)` of every record of the store.
    pub fn records(&self) -> (Vec<u8>, Vec<u8>) {
        let start = self.with_tag(RECORDS, 0);
        let end = self.with_tag(RECORDS + 1, 0);
        (start, end)
    }

    /// `[start, end)` of the records of one namespace whose keys begin with
    /// `key_prefix` (empty: the whole namespace).
    pub fn namespace(&self, namespace: &str, key_prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.record_of_address(&key::namespace_start(namespace, key_prefix));
        let end = if key_prefix.is_empty() {
            self.record_of_address(&key::namespace_end(namespace))
        } else {
            prefix_end(&start)
        };
        (start, end)
    }

    /// The key of a store metadata entry.
    pub fn meta(&self, name: &str) -> Vec<u8> {
        let mut out = self.with_tag(META, name.len());
        out.extend_from_slice(name.as_bytes());
        out
    }

    /// `[start, end)` of everything the store owns, metadata included: what a
    /// role needs permission on.
    pub fn everything(&self) -> (Vec<u8>, Vec<u8>) {
        let mut start = self.prefix.as_bytes().to_vec();
        start.push(SEPARATOR);
        let mut end = self.prefix.as_bytes().to_vec();
        end.push(SEPARATOR + 1);
        (start, end)
    }
}

/// The smallest key after every key that begins with `prefix` (etcd's range
/// end for a prefix): the prefix with its last byte below 0xff incremented and
/// what follows dropped. All 0xff (or empty) has no end: `[0]`, which etcd
/// reads as "to the end of the key space".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[b'a', 0xfe, 0xff, 0xff]), [b'a', 0xff]);
        assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }

    #[test]
    fn prefixes_follow_the_address_rules() {
        assert!(Layout::new("ci/state").is_ok());
        assert!(Layout::new(&"p".repeat(MAX_PREFIX_LEN)).is_ok());
        let e = Layout::new("").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = Layout::new("a\nb").unwrap_err();
        assert!(e.to_string().contains("control character at byte 1"), "{e}");
        let e = Layout::new(&"p".repeat(MAX_PREFIX_LEN + 1)).unwrap_err();
        assert!(e.to_string().contains("257 bytes"), "{e}");
        let e = Layout::new("x").unwrap().record("ns", "").unwrap_err();
        assert!(matches!(e, Error::InvalidKey { .. }), "{e}");
    }

    #[test]
    fn one_prefix_never_reaches_into_another() {
        let outer = Layout::new("ci").unwrap();
        let inner = Layout::new("ci/state").unwrap();
        let sibling = Layout::new("ci\u{7e}").unwrap();
        for other in [&inner, &sibling] {
            let key = other.record("r", "k").unwrap();
            let (start, end) = outer.everything();
            assert!(!(start <= key && key < end), "{key:?}");
            assert_eq!(outer.decode_record(&key), None);
        }
    }

    #[test]
    fn reserved_areas_are_outside_the_records() {
        let layout = Layout::new("s").unwrap();
        let (start, end) = layout.records();
        let meta = layout.meta("store");
        assert!(!(start <= meta && meta < end));
        let (all_start, all_end) = layout.everything();
        assert!(all_start <= meta && meta < all_end);
        assert!(all_start <= start && end <= all_end);
    }

    proptest! {
        #[test]
        fn records_round_trip_and_sort_in_namespace_order(
            prefix in "[a-z/]{1,8}",
            a in ("[a-zA-Z0-9 é/._-]{1,6}", "[a-zA-Z0-9 é/._-]{1,6}"),
            b in ("[a-zA-Z0-9 é/._-]{1,6}", "[a-zA-Z0-9 é/._-]{1,6}"),
        ) {
            let layout = Layout::new(&prefix).unwrap();
            let ka = layout.record(&a.0, &a.1).unwrap();
            let kb = layout.record(&b.0, &b.1).unwrap();
            prop_assert_eq!(layout.decode_record(&ka), Some((a.0.as_str(), a.1.as_str())));
            prop_assert_eq!(ka.cmp(&kb), (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            let (start, end) = layout.namespace(&a.0, "");
            prop_assert!(start <= ka && ka < end);
            prop_assert_eq!(start <= kb && kb < end, a.0 == b.0);
            let (rs, re) = layout.records();
            prop_assert!(rs <= ka && ka < re);
            let first: String = b.1.chars().take(1).collect();
            let (ps, pe) = layout.namespace(&b.0, &first);
            prop_assert!(ps <= kb && kb < pe);
            prop_assert_eq!(ps <= ka && ka < pe, a.0 == b.0 && a.1.starts_with(&first));
        }
    }
}
