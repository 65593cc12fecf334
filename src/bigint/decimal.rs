//! Decimal text of integers of any stored size, without a big-number crate:
//! magnitudes as little-endian 32-bit limbs, converted a billion at a time.
//! Quadratic in the length, which `MAX_LEN` keeps small.

use rmpv::Value;

use super::{EXT_TYPE, MAX_LEN, check, minimal};
use crate::error::Shown;

/// Most significant digits of a stored integer: 2^8191 has 2,466.
const MAX_DIGITS: usize = 2466;

const BILLION: u64 = 1_000_000_000;

/// The decimal text of the integer in a payload of type [`EXT_TYPE`].
///
/// # Errors
/// The payload is not canonical (see [`check`]): a damaged value.
pub fn to_decimal(payload: &[u8]) -> Result<String, String> {
    check(payload)?;
    let negative = payload[0] >= 0x80;
    let mut limbs = limbs_of(&magnitude(payload, negative));
    let mut chunks: Vec<u32> = Vec::new();
    while !limbs.is_empty() {
        let mut rem = 0u64;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            // cur < BILLION << 32, so the quotient fits in 32 bits.
            *limb = (cur / BILLION) as u32;
            rem = cur % BILLION;
        }
        chunks.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut text = String::with_capacity(chunks.len() * 9 + 1);
    if negative {
        text.push('-');
    }
    let mut chunks = chunks.iter().rev();
    if let Some(first) = chunks.next() {
        text.push_str(&first.to_string());
    }
    for chunk in chunks {
        text.push_str(&format!("{chunk:09}"));
    }
    Ok(text)
}

/// Parses a decimal integer (an optional `-`, then digits) of any stored size:
/// a plain integer if it fits in 64 bits, else an extension value of type
/// [`EXT_TYPE`].
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Value::from(n));
    }
    if let Ok(n) = text.parse::<u64>() {
        return Ok(Value::from(n));
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not an integer", Shown::new(text)));
    }
    let digits = digits.trim_start_matches('0');
    let too_large = || {
        format!(
            "the integer {} is beyond the integers statelog stores (from -2^8191 to \
             2^8191 - 1, at most {MAX_DIGITS} digits)",
            Shown::new(text)
        )
    };
    if digits.len() > MAX_DIGITS {
        return Err(too_large());
    }
    // Beyond 64 bits, so not zero.
    let mut limbs: Vec<u32> = Vec::with_capacity(digits.len() / 9 + 1);
    let head = digits.len() % 9;
    let chunks = std::iter::once(&digits[..head])
        .filter(|c| !c.is_empty())
        .chain((head..digits.len()).step_by(9).map(|i| &digits[i..i + 9]));
    for chunk in chunks {
        let mut carry = chunk
            .parse::<u64>()
            .map_err(|_| format!("{} is not an integer", Shown::new(text)))?;
        let scale = 10u64.pow(chunk.len() as u32);
        for limb in limbs.iter_mut() {
            let cur = u64::from(*limb) * scale + carry;
            *limb = cur as u32;
            carry = cur >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    // Big-endian two's complement, with a zero byte ahead for the sign.
    let mut bytes = vec![0u8];
    bytes.extend(limbs.iter().rev().flat_map(|l| l.to_be_bytes()));
    if negative {
        negate(&mut bytes);
    }
    let payload = minimal(&bytes);
    if payload.len() > MAX_LEN {
        return Err(too_large());
    }
    Ok(Value::Ext(EXT_TYPE, payload))
}

/// The magnitude of a two's complement number, big-endian.
fn magnitude(payload: &[u8], negative: bool) -> Vec<u8> {
    let mut bytes = payload.to_vec();
    if negative {
        negate(&mut bytes);
    }
    bytes
}

/// Two's complement negation in place: invert, add one.
fn negate(bytes: &mut [u8]) {
    let mut carry = true;
    for b in bytes.iter_mut().rev() {
        let (sum, overflow) = (!*b).overflowing_add(u8::from(carry));
        *b = sum;
        carry = overflow;
    }
}

/// Big-endian bytes as little-endian 32-bit limbs, without leading zeros.
fn limbs_of(bytes: &[u8]) -> Vec<u32> {
    let mut limbs: Vec<u32> = bytes
        .rchunks(4)
        .map(|chunk| chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
        .collect();
    while limbs.last() == Some(&0) {
        limbs.pop();
    }
    limbs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(value: Value) -> Vec<u8> {
        match value {
            Value::Ext(EXT_TYPE, payload) => payload,
            other => panic!("not a big integer: {other:?}"),
        }
    }

    #[test]
    fn i128_values_agree_with_the_standard_library() {
        let mut cases = vec![
            i128::MIN,
            i128::MAX,
            i128::from(i64::MIN) - 1,
            i128::from(u64::MAX) + 1,
            -(1i128 << 100),
            (1i128 << 100) - 1,
            10i128.pow(30),
            -(10i128.pow(30)),
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834_u128;
        for _ in 0..500 {
            x = x.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(1);
            cases.push((x as i128) >> (x % 60));
        }
        for n in cases {
            let text = n.to_string();
            match super::super::from_i128(n) {
                None => assert!(matches!(parse(&text).unwrap(), Value::Integer(_))),
                Some(expected) => {
                    assert_eq!(payload(parse(&text).unwrap()), expected, "{n}");
                    assert_eq!(to_decimal(&expected).unwrap(), text);
                }
            }
        }
    }

    #[test]
    fn the_largest_integers_read_and_one_more_does_not() {
        // 2^8191 - 1 and -2^8191 have the longest payloads.
        let max = [vec![0x7f], vec![0xff; MAX_LEN - 1]].concat();
        let min = [vec![0x80], vec![0; MAX_LEN - 1]].concat();
        let max_text = to_decimal(&max).unwrap();
        let min_text = to_decimal(&min).unwrap();
        assert_eq!(max_text.len(), MAX_DIGITS);
        assert_eq!(min_text, format!("-{}", plus_one(&max_text)));
        assert_eq!(payload(parse(&max_text).unwrap()), max);
        assert_eq!(payload(parse(&min_text).unwrap()), min);
        for beyond in [
            plus_one(&max_text),
            format!("-{}", plus_one(&plus_one(&max_text))),
        ] {
            let err = parse(&beyond).unwrap_err();
            assert!(err.contains("beyond the integers"), "{err}");
        }
        let err = parse(&"9".repeat(100_000)).unwrap_err();
        assert!(err.contains("at most 2466 digits"), "{err}");
    }

    fn plus_one(text: &str) -> String {
        let mut digits: Vec<u8> = text.bytes().collect();
        for d in digits.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                return String::from_utf8(digits).unwrap();
            }
        }
        format!("1{}", String::from_utf8(digits).unwrap())
    }

    #[test]
    fn text_that_is_not_an_integer_is_refused() {
        for text in ["", "-", "+", "1.5", "12x", "--1", " 1", "1e30", "0x10"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        assert_eq!(
            payload(parse("000018446744073709551616").unwrap()),
            [1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
