//! Record addresses: validation of namespaces and keys, and their encoding as one
//! redb key.
//!
//! A record is stored under `namespace ++ 0x00 ++ key`. Neither part may contain a
//! control character (NUL included), so the separator is unambiguous and byte order
//! of the encoded form is (namespace, key) order: every key of namespace `a` sorts
//! before every key of namespace `ab`, because 0x00 is smaller than any byte a
//! namespace may contain.

use crate::error::{Error, KeyPart, Result};

/// Longest namespace accepted, in bytes of UTF-8.
pub const MAX_NAMESPACE_LEN: usize = 128;
/// Longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

const SEPARATOR: u8 = 0;

/// Namespaces starting with this hold statelog's own records (leases, locks,
/// idempotency keys: `coord/`); no user namespace may start with it.
pub(crate) const RESERVED_PREFIX: &str = "statelog:";

/// True for a namespace of statelog's own records.
pub(crate) fn is_reserved(namespace: &str) -> bool {
    namespace.starts_with(RESERVED_PREFIX)
}

/// Checks one part of a record address as a user may write it: as
/// [`validate_stored`], and a namespace must not be one of statelog's own.
pub(crate) fn validate(part: KeyPart, text: &str) -> Result<()> {
    validate_stored(part, text)?;
    if part == KeyPart::Namespace && is_reserved(text) {
        return Err(Error::InvalidKey {
            part,
            value: text.to_owned(),
            reason: format!(
                "namespaces starting with \"{RESERVED_PREFIX}\" are reserved for statelog's own \
                 records (leases, locks, idempotency keys)"
            ),
        });
    }
    Ok(())
}

/// Checks one part of an address as the store may hold it (statelog's own
/// namespaces included): not empty, within the length limit, no control
/// character.
pub(crate) fn validate_stored(part: KeyPart, text: &str) -> Result<()> {
    let limit = match part {
        KeyPart::Namespace => MAX_NAMESPACE_LEN,
        KeyPart::Key => MAX_KEY_LEN,
    };
    let reject = |reason: String| Error::InvalidKey {
        part,
        value: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(reject("it is empty".to_owned()));
    }
    if text.len() > limit {
        return Err(reject(format!(
            "it is {} bytes long; the limit is {limit}",
            text.len()
        )));
    }
    if let Some(at) = first_control(text) {
        let c = text[at..].chars().next().unwrap_or_default();
        return Err(reject(format!(
            "it contains the control character U+{:04X} at byte {at}",
            u32::from(c)
        )));
    }
    Ok(())
}

/// Byte offset of the first control character (Unicode category Cc: U+0000 to
/// U+001F, U+007F, U+0080 to U+009F). Scans bytes, not chars: in UTF-8 the C1
/// controls are exactly the pairs 0xC2 0x80..=0x9F, and no other character
/// contains a byte below 0x20 or 0x7F.
pub(crate) fn first_control(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().find_map(|(at, &b)| {
        let c1 = b == 0xC2 && bytes.get(at + 1).is_some_and(|n| (0x80..=0x9F).contains(n));
        (b < 0x20 || b == 0x7F || c1).then_some(at)
    })
}

/// Validates both parts and encodes them as one redb key.
pub(crate) fn encode(namespace: &str, key: &str) -> Result<Vec<u8>> {
    validate(KeyPart::Namespace, namespace)?;
    validate(KeyPart::Key, key)?;
    Ok(encode_unchecked(namespace, key))
}

/// Validates both parts as the store may hold them (statelog's own namespaces
/// included) and encodes them.
pub(crate) fn encode_stored(namespace: &str, key: &str) -> Result<Vec<u8>> {
    validate_stored(KeyPart::Namespace, namespace)?;
    validate_stored(KeyPart::Key, key)?;
    Ok(encode_unchecked(namespace, key))
}

/// Encodes an address whose parts are already known to be valid.
pub(crate) fn encode_unchecked(namespace: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(namespace.len() + 1 + key.len());
    out.extend_from_slice(namespace.as_bytes());
    out.push(SEPARATOR);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The first encoded key of a namespace, optionally narrowed to a key prefix.
pub(crate) fn namespace_start(namespace: &str, key_prefix: &str) -> Vec<u8> {
    encode_unchecked(namespace, key_prefix)
}

/// The exclusive upper bound of a namespace: `namespace ++ 0x01`.
pub(crate) fn namespace_end(namespace: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(namespace.len() + 1);
    out.extend_from_slice(namespace.as_bytes());
    out.push(SEPARATOR + 1);
    out
}

/// Splits an encoded key into its namespace and key. Returns `None` when the bytes
/// were not produced by [`encode`] (no separator, or not UTF-8).
pub(crate) fn decode(encoded: &[u8]) -> Option<(&str, &str)> {
    let at = encoded.iter().position(|b| *b == SEPARATOR)?;
    let namespace = std::str::from_utf8(encoded.get(..at)?).ok()?;
    let key = std::str::from_utf8(encoded.get(at + 1..)?).ok()?;
    Some((namespace, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_long_and_control() {
        let e = encode("", "k").unwrap_err();
        assert!(e.to_string().contains("namespace"), "{e}");
        assert!(e.to_string().contains("empty"), "{e}");
        let e = encode("ns", &"x".repeat(MAX_KEY_LEN + 1)).unwrap_err();
        assert!(e.to_string().contains("1025 bytes"), "{e}");
        let e = encode("ns", "a\nb").unwrap_err();
        assert!(e.to_string().contains("U+000A at byte 1"), "{e}");
        let e = encode("n\0s", "k").unwrap_err();
        assert!(matches!(
            e,
            Error::InvalidKey {
                part: KeyPart::Namespace,
                ..
            }
        ));
        assert!(encode("ns", &"é".repeat(MAX_KEY_LEN / 2)).is_ok());
    }

    #[test]
    fn control_scan_agrees_with_char_is_control() {
        for c in ['\0', '\n', '\u{1f}', '\u{7f}', '\u{80}', '\u{9f}', '\u{85}'] {
            let text = format!("ab{c}cd");
            assert_eq!(first_control(&text), Some(2), "{c:?}");
        }
        for c in [
            ' ',
            '~',
            '\u{a0}',
            'é',
            '\u{2028}',
            '\u{10ffff}',
            'Â',
            '\u{c0}',
        ] {
            let text = format!("ab{c}cd");
            assert_eq!(first_control(&text), None, "{c:?}");
        }
        for code in 0..0x3000u32 {
            if let Some(c) = char::from_u32(code) {
                let text = c.to_string();
                assert_eq!(
                    first_control(&text).is_some(),
                    c.is_control(),
                    "U+{code:04X}"
                );
            }
        }
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let e = encode("ns", &"é".repeat(2000)).unwrap_err();
        assert!(e.to_string().len() < 300);
    }

    #[test]
    fn order_is_namespace_then_key() {
        let mut keys = [
            encode("ab", "a").unwrap(),
            encode("a", "zzz").unwrap(),
            encode("a", "b").unwrap(),
            encode("a b", "a").unwrap(),
        ];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| decode(k).unwrap()).collect();
        assert_eq!(
            decoded,
            [("a", "b"), ("a", "zzz"), ("a b", "a"), ("ab", "a")]
        );
        for k in &keys {
            let (ns, _) = decode(k).unwrap();
            assert!(namespace_start(ns, "").as_slice() <= k.as_slice());
            assert!(k.as_slice() < namespace_end(ns).as_slice());
        }
    }

    #[test]
    fn decode_rejects_foreign_bytes() {
        assert!(decode(b"no-separator").is_none());
        assert!(decode(&[0xff, 0, b'k']).is_none());
    }
}
