//! The exporter's fast path: a stored value written as compact JSON straight
//! from its MessagePack bytes, without decoding it into a tree first.
//!
//! It takes only values that JSON holds as they are (null, booleans, integers
//! within ±(2^53 − 1), finite floats, UTF-8 strings, arrays, and maps whose
//! keys are distinct strings, not a lone `$` key), and writes exactly what
//! `mapping::write_value` writes for them in compact mode. Anything else
//! (binary data, extensions, big integers, NaN, a map that needs `$map`, damage)
//! makes it give up, and the caller writes the value the general way, which
//! escapes it or reports what is wrong.

use super::mapping::{MAX_SAFE_INT, write_str};

/// Containers nested deeper than this go the general way.
const MAX_DEPTH: usize = 64;

/// Appends the value in `bytes` to `out` as compact JSON and returns true;
/// false if the value needs the general path (then `out` holds a partial
/// write the caller must cut off).
pub(crate) fn write(bytes: &[u8], out: &mut Vec<u8>) -> bool {
    let mut input = Input { bytes, at: 0 };
    value(&mut input, out, 0).is_some() && input.at == bytes.len()
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Some(out)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A big-endian unsigned number of `n` bytes.
    fn number(&mut self, n: usize) -> Option<u64> {
        let b = self.take(n)?;
        Some(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
    }

    fn len(&mut self, n: usize) -> Option<usize> {
        usize::try_from(self.number(n)?).ok()
    }

    fn text(&mut self, len: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(len)?).ok()
    }
}

fn value(input: &mut Input<'_>, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    let marker = input.byte()?;
    match marker {
        0x00..=0x7f => integer(i128::from(marker), out),
        0xe0..=0xff => integer(i128::from(marker as i8), out),
        0xc0 => out.extend_from_slice(b"null"),
        0xc2 => out.extend_from_slice(b"false"),
        0xc3 => out.extend_from_slice(b"true"),
        0xcc..=0xcf => {
            let n = input.number(1 << (marker - 0xcc))?;
            if i128::from(n) > MAX_SAFE_INT {
                return None;
            }
            integer(i128::from(n), out);
        }
        0xd0..=0xd3 => {
            let width = 1usize << (marker - 0xd0);
            let raw = input.number(width)?;
            // Sign-extend the `width`-byte two's complement number.
            let shift = 64 - 8 * width as u32;
            let n = i128::from(((raw << shift) as i64) >> shift);
            if !(-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&n) {
                return None;
            }
            integer(n, out);
        }
        0xca => {
            let bits = u32::try_from(input.number(4)?).ok()?;
            float(f64::from(f32::from_bits(bits)), out)?;
        }
        0xcb => float(f64::from_bits(input.number(8)?), out)?,
        0xa0..=0xbf => write_str(input.text(usize::from(marker & 0x1f))?, out),
        0xd9..=0xdb => {
            let len = input.len(1 << (marker - 0xd9))?;
            write_str(input.text(len)?, out);
        }
        0x90..=0x9f => array(input, usize::from(marker & 0x0f), out, depth)?,
        0xdc | 0xdd => {
            let len = input.len(if marker == 0xdc { 2 } else { 4 })?;
            array(input, len, out, depth)?;
        }
        0x80..=0x8f => map(input, usize::from(marker & 0x0f), out, depth)?,
        0xde | 0xdf => {
            let len = input.len(if marker == 0xde { 2 } else { 4 })?;
            map(input, len, out, depth)?;
        }
        // Binary data, extensions, and the unused marker 0xc1.
        _ => return None,
    }
    Some(())
}

fn integer(n: i128, out: &mut Vec<u8>) {
    out.extend_from_slice(n.to_string().as_bytes());
}

fn float(f: f64, out: &mut Vec<u8>) -> Option<()> {
    if !f.is_finite() {
        return None;
    }
    // As `mapping::write_value` writes it: the shortest text that reads back
    // as the same f64.
    serde_json::to_writer(&mut *out, &f).ok()
}

fn array(input: &mut Input<'_>, len: usize, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth >= MAX_DEPTH {
        return None;
    }
    out.push(b'[');
    for i in 0..len {
        if i > 0 {
            out.push(b',');
        }
        value(input, out, depth + 1)?;
    }
    out.push(b']');
    Some(())
}

fn map(input: &mut Input<'_>, len: usize, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut keys: Vec<&str> = Vec::with_capacity(len.min(64));
    out.push(b'{');
    for i in 0..len {
        if i > 0 {
            out.push(b',');
        }
        let marker = input.byte()?;
        let key_len = match marker {
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9..=0xdb => input.len(1 << (marker - 0xd9))?,
            // A key that is not a string: the map needs `$map`.
            _ => return None,
        };
        let key = input.text(key_len)?;
        write_str(key, out);
        out.push(b':');
        value(input, out, depth + 1)?;
        keys.push(key);
    }
    out.push(b'}');
    // A lone key starting with `$` would read back as an escape; repeated
    // keys would not read back at all: both need `$map`.
    if keys.len() == 1 && keys[0].starts_with('$') {
        return None;
    }
    if keys.len() > 1 {
        keys.sort_unstable();
        if keys.windows(2).any(|pair| pair[0] == pair[1]) {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::mapping::{to_msgpack, write_value};
    use rmpv::Value;

    /// What the general path writes.
    fn general(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(value, false, 0, &mut out).unwrap();
        out
    }

    fn fast(value: &Value) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        write(&to_msgpack(value), &mut out).then_some(out)
    }

    fn s(text: &str) -> Value {
        Value::from(text)
    }

    #[test]
    fn plain_values_are_written_as_the_general_path_writes_them() {
        let values = vec![
            Value::Nil,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::from(0),
            Value::from(127),
            Value::from(128),
            Value::from(-1),
            Value::from(-32),
            Value::from(-33),
            Value::from(-129),
            Value::from(65_536),
            Value::from(-70_000),
            Value::from((1i64 << 53) - 1),
            Value::from(-((1i64 << 53) - 1)),
            Value::from(u64::from(u32::MAX) + 7),
            Value::F32(1.5),
            Value::F32(0.1),
            Value::F64(0.1),
            Value::F64(-2.5e300),
            Value::F64(3.0),
            s(""),
            s("plain"),
            s("quote \" backslash \\ newline \n tab \t bell \u{7} é 日本"),
            s(&"x".repeat(40)),
            s(&"y".repeat(300)),
            s(&"z".repeat(70_000)),
            Value::Array(vec![]),
            Value::Array((0..20).map(Value::from).collect()),
            Value::Map(vec![]),
            Value::Map(vec![(s("$a"), Value::from(1)), (s("b"), Value::from(2))]),
            Value::Map(
                (0..20)
                    .map(|i| (s(&format!("k{i}")), Value::Array(vec![Value::from(i)])))
                    .collect(),
            ),
            Value::Map(vec![
                (s("version"), Value::from(3)),
                (s("at"), Value::from(1_700_000_000_000_000i64 / 1_000_000)),
                (s("payload"), s(&"p".repeat(200))),
                (
                    s("nested"),
                    Value::Map(vec![(s("list"), Value::Array(vec![Value::Nil, s("a")]))]),
                ),
            ]),
        ];
        for value in &values {
            let written = fast(value).unwrap_or_else(|| panic!("gave up on {value}"));
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(general(value)).unwrap(),
                "{value}"
            );
        }
    }

    #[test]
    fn values_that_need_escapes_go_the_general_way() {
        let values = vec![
            Value::from(1i64 << 53),
            Value::from(-(1i64 << 53)),
            Value::from(u64::MAX),
            Value::F64(f64::NAN),
            Value::F32(f32::INFINITY),
            Value::F64(f64::NEG_INFINITY),
            Value::Binary(vec![1, 2, 3]),
            Value::Ext(5, vec![1]),
            Value::Map(vec![(Value::from(1), s("one"))]),
            Value::Map(vec![(s("$int"), s("1"))]),
            Value::Map(vec![(s("a"), Value::from(1)), (s("a"), Value::from(2))]),
            Value::Array(vec![Value::Map(vec![(Value::Nil, Value::Nil)])]),
        ];
        for value in &values {
            assert_eq!(fast(value), None, "{value}");
        }
        // Too deep for the fast path, fine for the general one.
        let mut deep = Value::from(1);
        for _ in 0..=MAX_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(fast(&deep), None);
    }

    #[test]
    fn damaged_bytes_go_the_general_way() {
        let whole = to_msgpack(&Value::Map(vec![(s("k"), s("value"))]));
        let mut out = Vec::new();
        for cut in 0..whole.len() {
            assert!(!write(&whole[..cut], &mut out), "cut at {cut}");
        }
        let mut longer = whole.clone();
        longer.push(0xc0);
        assert!(!write(&longer, &mut out));
        // A string that is not UTF-8.
        assert!(!write(&[0xa2, 0xff, 0xfe], &mut out));
        assert!(write(&whole, &mut out));
    }

    #[test]
    fn random_values_agree_with_the_general_path() {
        let mut rng = fastrand::Rng::with_seed(20);
        let mut fast_ones = 0;
        for _ in 0..3_000 {
            let value = random(&mut rng, 0);
            if let Some(written) = fast(&value) {
                fast_ones += 1;
                assert_eq!(written, general(&value), "{value}");
            }
        }
        // Most random values are plain: the comparison above ran.
        assert!(fast_ones > 1_000, "{fast_ones}");
    }

    fn random(rng: &mut fastrand::Rng, depth: usize) -> Value {
        let pick = if depth > 3 {
            rng.u8(0..8)
        } else {
            rng.u8(0..11)
        };
        match pick {
            0 => Value::Nil,
            1 => Value::Boolean(rng.bool()),
            2 => Value::from(rng.i64(..) >> rng.u32(0..64)),
            3 => Value::from(rng.u64(..) >> rng.u32(0..64)),
            4 => Value::F64(f64::from_bits(rng.u64(..))),
            5 => Value::F32(f32::from_bits(rng.u32(..))),
            6 | 7 => {
                let len = rng.usize(0..12);
                let text: String = (0..len)
                    .map(|_| match rng.u8(0..4) {
                        0 => rng.char('\u{0}'..'\u{20}'),
                        1 => rng.char('\u{80}'..'\u{3000}'),
                        2 => ['"', '\\', '$'][rng.usize(0..3)],
                        _ => rng.alphanumeric(),
                    })
                    .collect();
                Value::from(text)
            }
            8 => Value::Array(
                (0..rng.usize(0..5))
                    .map(|_| random(rng, depth + 1))
                    .collect(),
            ),
            9 => Value::Map(
                (0..rng.usize(0..5))
                    .map(|_| {
                        let key = match rng.u8(0..6) {
                            0 => Value::from(rng.u8(..)),
                            1 => s("$x"),
                            2 => s("same"),
                            _ => Value::from(format!("k{}", rng.u16(..))),
                        };
                        (key, random(rng, depth + 1))
                    })
                    .collect(),
            ),
            _ => Value::Binary(vec![rng.u8(..); rng.usize(0..4)]),
        }
    }
}
