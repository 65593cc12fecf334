//! Integers beyond 64 bits: how they are stored, and their decimal text.
//!
//! MessagePack's integers run from -2^63 to 2^64 - 1. An integer outside that
//! range is stored as a MessagePack extension value of type [`EXT_TYPE`]
//! (105, ASCII `i`) whose payload is the integer in two's complement,
//! big-endian, in as few bytes as hold it: no leading `0x00` byte before a byte
//! below `0x80`, no leading `0xff` byte before a byte from `0x80`. Integers
//! that fit in 64 bits are always plain MessagePack integers, so exactly one
//! encoding exists for every integer, and a payload that breaks any of these
//! rules (or is longer than [`MAX_LEN`]) is refused as damaged.
//!
//! ```
//! use statelog::{RawValue, bigint};
//! // 2^64: one byte more than u64 holds.
//! let raw = RawValue::from_value(&(1u128 << 64))?;
//! assert_eq!(raw.as_msgpack(), &[0xc7, 9, 105, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
//! assert_eq!(raw.to_json()?, r#"{"$int":"18446744073709551616"}"#);
//! assert_eq!(raw.decode::<u128>()?, 1u128 << 64);
//! assert_eq!(bigint::to_decimal(&raw.as_msgpack()[3..])?, "18446744073709551616");
//! // Integers that fit in 64 bits stay plain MessagePack integers.
//! assert_eq!(RawValue::from_value(&7i128)?.as_msgpack(), &[7]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decimal;
pub(crate) mod serde;

pub(crate) use decimal::parse;
pub use decimal::to_decimal;

/// The MessagePack extension type of integers beyond 64 bits (105, ASCII `i`).
/// Values of this type are integers, and must be canonical (module docs).
pub const EXT_TYPE: i8 = 105;

/// Longest payload of an integer beyond 64 bits, in bytes: integers from
/// -2^8191 to 2^8191 - 1 (at most 2,466 decimal digits) are stored. The bound
/// keeps decimal conversion, whose cost grows with the square of the length,
/// cheap for any input, and keeps every stored integer within the 4,300 digits
/// Python converts to and from text by default.
pub const MAX_LEN: usize = 1024;

/// Checks that `payload` is the canonical payload of an integer beyond 64 bits
/// (module docs).
///
/// ```
/// use statelog::bigint::check;
/// assert!(check(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_ok()); // 2^64
/// assert!(check(&[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err()); // fits in u64
/// assert!(check(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err()); // a redundant leading byte
/// ```
///
/// # Errors
/// A message saying which rule the payload breaks.
pub fn check(payload: &[u8]) -> Result<(), String> {
    let what = "an integer beyond 64 bits (MessagePack extension type 105)";
    if payload.len() > MAX_LEN {
        return Err(format!(
            "{what} takes {} bytes, over the limit of {MAX_LEN} (from -2^8191 to 2^8191 - 1)",
            payload.len()
        ));
    }
    if payload.len() < 9 {
        return Err(format!(
            "{what} has {} bytes, but such an integer needs at least 9: \
             one that fits in 64 bits is a plain MessagePack integer",
            payload.len()
        ));
    }
    let redundant = match (payload[0], payload[1]) {
        (0x00, second) => second < 0x80,
        (0xff, second) => second >= 0x80,
        _ => false,
    };
    if redundant {
        return Err(format!(
            "{what} starts with a redundant byte 0x{:02x}: the payload must be as short as \
             possible",
            payload[0]
        ));
    }
    if payload.len() == 9 && payload[0] == 0x00 {
        return Err(format!(
            "{what} holds a number that fits in 64 bits, which must be a plain MessagePack \
             integer"
        ));
    }
    Ok(())
}

/// The canonical payload of `n`, or `None` if it fits in 64 bits (and is
/// stored as a plain integer).
pub(crate) fn from_i128(n: i128) -> Option<Vec<u8>> {
    if i64::try_from(n).is_ok() || u64::try_from(n).is_ok() {
        return None;
    }
    Some(minimal(&n.to_be_bytes()))
}

/// The canonical payload of `n`, or `None` if it fits in 64 bits.
pub(crate) fn from_u128(n: u128) -> Option<Vec<u8>> {
    if u64::try_from(n).is_ok() {
        return None;
    }
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&n.to_be_bytes());
    Some(minimal(&bytes))
}

/// Two's complement bytes with redundant leading bytes dropped.
pub(crate) fn minimal(bytes: &[u8]) -> Vec<u8> {
    let mut start = 0;
    while start + 1 < bytes.len() {
        let redundant = match (bytes[start], bytes[start + 1]) {
            (0x00, next) => next < 0x80,
            (0xff, next) => next >= 0x80,
            _ => false,
        };
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

/// The integer of a canonical payload as an `i128`, if it fits.
pub(crate) fn to_i128(payload: &[u8]) -> Option<i128> {
    if payload.is_empty() || payload.len() > 16 {
        return None;
    }
    let fill = if payload[0] >= 0x80 { 0xff } else { 0x00 };
    let mut bytes = [fill; 16];
    bytes[16 - payload.len()..].copy_from_slice(payload);
    Some(i128::from_be_bytes(bytes))
}

/// The integer of a canonical payload as a `u128`, if it fits.
pub(crate) fn to_u128(payload: &[u8]) -> Option<u128> {
    if payload.is_empty() || payload[0] >= 0x80 {
        return None;
    }
    let digits = if payload.len() == 17 && payload[0] == 0 {
        &payload[1..]
    } else if payload.len() <= 16 {
        payload
    } else {
        return None;
    };
    let mut bytes = [0u8; 16];
    bytes[16 - digits.len()..].copy_from_slice(digits);
    Some(u128::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_64_bit_edges_are_plain_and_one_beyond_is_not() {
        assert_eq!(from_i128(i128::from(i64::MIN)), None);
        assert_eq!(from_i128(i128::from(u64::MAX)), None);
        let below = from_i128(i128::from(i64::MIN) - 1).unwrap();
        assert_eq!(
            below,
            [0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        check(&below).unwrap();
        let above = from_i128(i128::from(u64::MAX) + 1).unwrap();
        assert_eq!(above, [1, 0, 0, 0, 0, 0, 0, 0, 0]);
        check(&above).unwrap();
        let max = from_u128(u128::MAX).unwrap();
        assert_eq!(max.len(), 17);
        check(&max).unwrap();
        assert_eq!(to_u128(&max), Some(u128::MAX));
        assert_eq!(to_i128(&max), None);
        let min = from_i128(i128::MIN).unwrap();
        assert_eq!(to_i128(&min), Some(i128::MIN));
        assert_eq!(to_u128(&min), None);
    }

    #[test]
    fn non_canonical_payloads_are_refused() {
        for (payload, says) in [
            (vec![1; 8], "at least 9"),
            (vec![0x80; 8], "at least 9"),
            (vec![], "at least 9"),
            ([vec![0x00], vec![0xff; 8]].concat(), "fits in 64 bits"),
            (
                [vec![0x00, 0x01], vec![0; 8]].concat(),
                "redundant byte 0x00",
            ),
            (
                [vec![0xff, 0x80], vec![0; 8]].concat(),
                "redundant byte 0xff",
            ),
            (vec![1; MAX_LEN + 1], "over the limit"),
        ] {
            let err = check(&payload).unwrap_err();
            assert!(err.contains(says), "{payload:?}: {err}");
        }
        // The smallest negative beyond 64 bits, and the longest payloads.
        check(&[0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
        check(&[vec![0x7f], vec![0xff; MAX_LEN - 1]].concat()).unwrap();
        check(&[vec![0x80], vec![0; MAX_LEN - 1]].concat()).unwrap();
    }
}
