//! The lossless mapping between stored values (MessagePack) and JSON, shared by
//! every adapter.
//!
//! Plain JSON holds most values as they are: nil, booleans, strings, arrays,
//! maps with string keys, integers a JSON reader parses exactly (|n| ≤ 2^53 − 1)
//! and finite floats (always written with a `.` or an exponent, so they come back
//! as floats). Everything else is an *escape*: an object with exactly one member
//! whose name starts with `$`:
//!
//! | MessagePack | JSON |
//! | --- | --- |
//! | integer beyond ±(2^53 − 1), also one beyond 64 bits (extension type 105, `bigint`) | `{"$int": "18446744073709551615"}` |
//! | NaN, +∞, −∞ | `{"$float": "NaN"}`, `{"$float": "inf"}`, `{"$float": "-inf"}` |
//! | binary | `{"$bin": "<base64, standard alphabet, padded>"}` |
//! | extension type | `{"$ext": [<type, −128..127>, "<base64>"]}` |
//! | map with a non-string key, a repeated key, or a single key starting with `$` | `{"$map": [[<key>, <value>], ...]}` |
//!
//! Reading reverses each escape; an object with one `$` member whose name is
//! not one of these is an error, never silently a map. Map order is kept as
//! stored (a struct's fields in declaration order), so re-encoding gives the
//! same MessagePack bytes. A 32-bit float is widened to 64 bits exactly and
//! comes back as a 64-bit float (decoding it into an `f32` gives the same
//! number); NaN payload bits are not kept. Integers are read exactly, written
//! plainly or in `$int`, of any size up to `bigint::MAX_LEN`: never through an
//! f64. An `$ext` of type 105 must be a canonical integer.

use std::collections::HashSet;
use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rmpv::{Integer, Value};
use struson::reader::{
    JsonReader, JsonStreamReader, ReaderError, SyntaxErrorKind, UnexpectedStructureKind, ValueType,
};

use crate::bigint;
use crate::error::quote;
use crate::value::MAX_DEPTH;

/// Largest integer magnitude a JSON reader that parses numbers as f64 holds
/// exactly: 2^53 − 1.
pub(crate) const MAX_SAFE_INT: i128 = (1 << 53) - 1;

/// Deepest JSON nesting accepted inside one value: every MessagePack level may
/// take three JSON levels (`{"$map": [[k, v]]}`).
const MAX_JSON_DEPTH: usize = 3 * MAX_DEPTH + 3;

/// A place in a JSON text: line and column from 1 (column in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Place {
    pub line: u64,
    pub column: Option<u64>,
}

/// Why reading JSON failed: bad input at a place, or the reader failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    Bad { place: Place, message: String },
    Io(std::io::Error),
}

impl ReadError {
    pub(crate) fn bad(place: Place, message: impl Into<String>) -> ReadError {
        ReadError::Bad {
            place,
            message: message.into(),
        }
    }
}

/// How JSON maps to values on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Escapes are decoded (snapshots written by statelog).
    Tagged,
    /// Every object is a map (legacy files written by other tools).
    Plain,
}

// ---------------------------------------------------------------------------
// Writing

/// Appends `value` as JSON. `indent` is the nesting level of the value when
/// `pretty` (two spaces per level); compact output has no whitespace at all.
pub(crate) fn write_value(
    value: &Value,
    pretty: bool,
    indent: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => write_integer(*i, pretty, out),
        Value::F32(f) => write_float(f64::from(*f), pretty, out)?,
        Value::F64(f) => write_float(*f, pretty, out)?,
        Value::String(s) => match s.as_str() {
            Some(s) => write_str(s, out),
            None => return Err("a string in the value is not valid UTF-8".to_owned()),
        },
        Value::Binary(bytes) => {
            let encoded = BASE64.encode(bytes);
            write_escape(b"$bin", pretty, out, |out| write_str(&encoded, out));
        }
        Value::Ext(bigint::EXT_TYPE, payload) => {
            let text =
                bigint::to_decimal(payload).map_err(|e| format!("the value is damaged: {e}"))?;
            write_escape(b"$int", pretty, out, |out| write_str(&text, out));
        }
        Value::Ext(kind, bytes) => {
            let encoded = BASE64.encode(bytes);
            write_escape(b"$ext", pretty, out, |out| {
                out.push(b'[');
                out.extend_from_slice(kind.to_string().as_bytes());
                out.extend_from_slice(if pretty { b", " } else { b"," });
                write_str(&encoded, out);
                out.push(b']');
            });
        }
        Value::Array(items) => {
            write_seq(items.iter(), pretty, indent, out, |item, out| {
                write_value(item, pretty, indent + 1, out)
            })?;
        }
        Value::Map(entries) => {
            if let Some(keys) = plain_keys(entries) {
                write_object(keys.into_iter().zip(entries.iter()), pretty, indent, out)?;
            } else {
                // {"$map": [[k, v], ...]}
                out.push(b'{');
                newline(pretty, indent + 1, out);
                write_str("$map", out);
                out.extend_from_slice(if pretty { b": " } else { b":" });
                write_seq(entries.iter(), pretty, indent + 1, out, |(k, v), out| {
                    if pretty && !is_container(k) && !is_container(v) {
                        // A pair of scalars stays on one line: [1, "one"].
                        out.push(b'[');
                        write_value(k, pretty, indent + 2, out)?;
                        out.extend_from_slice(b", ");
                        write_value(v, pretty, indent + 2, out)?;
                        out.push(b']');
                        return Ok(());
                    }
                    write_seq([k, v].into_iter(), pretty, indent + 2, out, |item, out| {
                        write_value(item, pretty, indent + 3, out)
                    })
                })?;
                newline(pretty, indent, out);
                out.push(b'}');
            }
        }
    }
    Ok(())
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::Array(_) | Value::Map(_))
}

fn write_object<'a>(
    members: impl ExactSizeIterator<Item = (&'a str, &'a (Value, Value))>,
    pretty: bool,
    indent: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if members.len() == 0 {
        out.extend_from_slice(b"{}");
        return Ok(());
    }
    out.push(b'{');
    for (i, (name, (_, value))) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        newline(pretty, indent + 1, out);
        write_str(name, out);
        out.extend_from_slice(if pretty { b": " } else { b":" });
        write_value(value, pretty, indent + 1, out)?;
    }
    newline(pretty, indent, out);
    out.push(b'}');
    Ok(())
}

fn write_seq<T>(
    items: impl ExactSizeIterator<Item = T>,
    pretty: bool,
    indent: usize,
    out: &mut Vec<u8>,
    mut each: impl FnMut(T, &mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    if items.len() == 0 {
        out.extend_from_slice(b"[]");
        return Ok(());
    }
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        newline(pretty, indent + 1, out);
        each(item, out)?;
    }
    newline(pretty, indent, out);
    out.push(b']');
    Ok(())
}

/// A one-line escape object: `{"$tag": <payload>}`.
fn write_escape(tag: &[u8], pretty: bool, out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(tag);
    out.extend_from_slice(if pretty { b"\": " } else { b"\":" });
    payload(out);
    out.push(b'}');
}

fn newline(pretty: bool, indent: usize, out: &mut Vec<u8>) {
    if pretty {
        out.push(b'\n');
        out.resize(out.len() + 2 * indent, b' ');
    }
}

/// The keys of a map that can be written as a JSON object: all strings, no
/// repeats, and not a single key starting with `$` (which would read back as an
/// escape). `None` if it must be written as `$map`.
fn plain_keys(entries: &[(Value, Value)]) -> Option<Vec<&str>> {
    let keys: Vec<&str> = entries
        .iter()
        .map(|(k, _)| match k {
            Value::String(s) => s.as_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if keys.len() == 1 && keys[0].starts_with('$') {
        return None;
    }
    if keys.len() > 1 {
        let mut seen = HashSet::with_capacity(keys.len());
        if !keys.iter().all(|k| seen.insert(*k)) {
            return None;
        }
    }
    Some(keys)
}

fn write_integer(i: Integer, pretty: bool, out: &mut Vec<u8>) {
    let n: i128 = match (i.as_i64(), i.as_u64()) {
        (Some(n), _) => i128::from(n),
        (None, Some(n)) => i128::from(n),
        (None, None) => 0,
    };
    let text = n.to_string();
    if (-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&n) {
        out.extend_from_slice(text.as_bytes());
    } else {
        write_escape(b"$int", pretty, out, |out| write_str(&text, out));
    }
}

fn write_float(f: f64, pretty: bool, out: &mut Vec<u8>) -> Result<(), String> {
    let special = if f.is_nan() {
        "NaN"
    } else if f == f64::INFINITY {
        "inf"
    } else if f == f64::NEG_INFINITY {
        "-inf"
    } else {
        // serde_json writes the shortest text that reads back as the same f64,
        // always with a `.` or an exponent.
        return serde_json::to_writer(&mut *out, &f).map_err(|e| e.to_string());
    };
    write_escape(b"$float", pretty, out, |out| write_str(special, out));
    Ok(())
}

/// Appends `s` as a JSON string: `"` and `\` and control characters escaped,
/// everything else (all of Unicode) kept as it is.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

// ---------------------------------------------------------------------------
// Reading

/// The reader every adapter uses: no limit from the reader itself on depth or
/// number size (checked here), several top-level values allowed (JSON Lines;
/// a document checks for trailing data itself).
pub(crate) fn reader<R: Read>(input: R) -> JsonStreamReader<R> {
    JsonStreamReader::new_custom(
        input,
        struson::reader::ReaderSettings {
            allow_comments: false,
            allow_trailing_comma: false,
            allow_multiple_top_level: true,
            track_path: false,
            max_nesting_depth: None,
            restrict_number_values: false,
        },
    )
}

/// The place the reader is at. Exact right after `peek` or `has_next`.
pub(crate) fn place<R: Read>(r: &JsonStreamReader<R>) -> Place {
    r.current_position(false)
        .line_pos
        .map_or_else(Place::default, |p| Place {
            line: p.line + 1,
            column: Some(p.column + 1),
        })
}

/// Converts an error of the JSON reader.
pub(crate) fn reader_error(e: ReaderError) -> ReadError {
    let at = |pos: &struson::reader::JsonReaderPosition| {
        pos.line_pos.map_or_else(Place::default, |p| Place {
            line: p.line + 1,
            column: Some(p.column + 1),
        })
    };
    match e {
        ReaderError::SyntaxError(e) => ReadError::bad(at(&e.location), syntax_message(e.kind)),
        ReaderError::UnexpectedValueType {
            expected,
            actual,
            location,
        } => ReadError::bad(
            at(&location),
            format!(
                "expected {} but found {}",
                type_name(expected),
                type_name(actual)
            ),
        ),
        ReaderError::UnexpectedStructure { kind, location } => ReadError::bad(
            at(&location),
            match kind {
                UnexpectedStructureKind::TooShortArray { expected_index } => {
                    format!("the array needs at least {} items", expected_index + 1)
                }
                UnexpectedStructureKind::MissingObjectMember { member_name } => {
                    format!("the member {} is missing", quote(&member_name))
                }
                _ => "the array or object has an unexpected number of entries".to_owned(),
            },
        ),
        ReaderError::MaxNestingDepthExceeded { location, .. } => {
            ReadError::bad(at(&location), "the JSON nests too deeply")
        }
        ReaderError::UnsupportedNumberValue { number, location } => {
            ReadError::bad(at(&location), format!("unsupported number {number}"))
        }
        ReaderError::IoError { error, location } => {
            if error.kind() == std::io::ErrorKind::InvalidData {
                ReadError::bad(at(&location), "the input is not valid UTF-8")
            } else {
                ReadError::Io(error)
            }
        }
        other => ReadError::bad(Place::default(), other.to_string()),
    }
}

fn syntax_message(kind: SyntaxErrorKind) -> String {
    match kind {
        SyntaxErrorKind::CommentsNotEnabled => "JSON does not allow comments",
        SyntaxErrorKind::InvalidLiteral => "invalid literal (expected true, false or null)",
        SyntaxErrorKind::TrailingDataAfterLiteral | SyntaxErrorKind::TrailingDataAfterNumber => {
            "unexpected characters after a value"
        }
        SyntaxErrorKind::UnexpectedClosingBracket => "unexpected closing bracket",
        SyntaxErrorKind::UnexpectedComma => "unexpected comma",
        SyntaxErrorKind::MissingComma => "a comma is missing",
        SyntaxErrorKind::TrailingCommaNotEnabled => "JSON does not allow a comma before ] or }",
        SyntaxErrorKind::UnexpectedColon => "unexpected colon",
        SyntaxErrorKind::MissingColon => "a colon is missing after the member name",
        SyntaxErrorKind::MalformedNumber => "malformed number",
        SyntaxErrorKind::ExpectingMemberNameOrObjectEnd => "expected a member name in quotes or }",
        SyntaxErrorKind::MalformedJson => "this is not JSON",
        SyntaxErrorKind::NotEscapedControlCharacter => {
            "a control character in a string must be escaped (\\n, \\u0001, ...)"
        }
        SyntaxErrorKind::UnknownEscapeSequence => "unknown escape sequence in a string",
        SyntaxErrorKind::MalformedEscapeSequence => "malformed escape sequence in a string",
        SyntaxErrorKind::UnpairedSurrogatePairEscapeSequence => {
            "a \\u escape is half of a surrogate pair"
        }
        SyntaxErrorKind::IncompleteDocument => {
            "the JSON ends early (a bracket or quote is missing)"
        }
        SyntaxErrorKind::TrailingData => "unexpected data after the end of the JSON",
        _ => return format!("JSON syntax error ({kind})"),
    }
    .to_owned()
}

pub(crate) fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Array => "an array",
        ValueType::Object => "an object",
        ValueType::String => "a string",
        ValueType::Number => "a number",
        ValueType::Boolean => "true or false",
        ValueType::Null => "null",
    }
}

enum Frame {
    Array {
        items: Vec<Value>,
    },
    Object {
        members: Vec<(String, Value)>,
        names: HashSet<String>,
        pending: Option<String>,
        at: Place,
    },
}

/// Reads one JSON value (of any nesting, without recursion) as a stored value.
pub(crate) fn read_value<R: Read>(
    r: &mut JsonStreamReader<R>,
    mode: Mode,
) -> Result<Value, ReadError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut done = open(r, &mut stack)?;
    loop {
        if let Some(value) = done.take() {
            match stack.last_mut() {
                None => return Ok(value),
                Some(Frame::Array { items }) => items.push(value),
                Some(Frame::Object {
                    members, pending, ..
                }) => members.push((pending.take().unwrap_or_default(), value)),
            }
        }
        let more = r.has_next().map_err(reader_error)?;
        let at = place(r);
        match stack.last_mut() {
            None => return Err(ReadError::bad(at, "internal error: no open value")),
            Some(Frame::Array { .. }) if more => done = open(r, &mut stack)?,
            Some(Frame::Object { names, pending, .. }) if more => {
                let name = r.next_name_owned().map_err(reader_error)?;
                if !names.insert(name.clone()) {
                    return Err(ReadError::bad(
                        at,
                        format!("the object has the member {} twice", quote(&name)),
                    ));
                }
                *pending = Some(name);
                done = open(r, &mut stack)?;
            }
            Some(Frame::Array { .. }) => {
                r.end_array().map_err(reader_error)?;
                if let Some(Frame::Array { items }) = stack.pop() {
                    done = Some(Value::Array(items));
                }
            }
            Some(Frame::Object { .. }) => {
                r.end_object().map_err(reader_error)?;
                if let Some(Frame::Object { members, at, .. }) = stack.pop() {
                    done = Some(close_object(members, at, mode)?);
                }
            }
        }
    }
}

/// Reads a scalar (returned) or opens an array or object (pushed on `stack`).
fn open<R: Read>(
    r: &mut JsonStreamReader<R>,
    stack: &mut Vec<Frame>,
) -> Result<Option<Value>, ReadError> {
    let kind = r.peek().map_err(reader_error)?;
    let at = place(r);
    let value = match kind {
        ValueType::Null => {
            r.next_null().map_err(reader_error)?;
            Value::Nil
        }
        ValueType::Boolean => Value::Boolean(r.next_bool().map_err(reader_error)?),
        ValueType::String => Value::from(r.next_string().map_err(reader_error)?),
        ValueType::Number => {
            let text = r.next_number_as_string().map_err(reader_error)?;
            parse_number(&text).map_err(|m| ReadError::bad(at, m))?
        }
        ValueType::Array | ValueType::Object => {
            if stack.len() >= MAX_JSON_DEPTH {
                return Err(ReadError::bad(
                    at,
                    format!(
                        "the value nests deeper than {MAX_JSON_DEPTH} arrays and objects; \
                         stored values nest at most {MAX_DEPTH} levels"
                    ),
                ));
            }
            if kind == ValueType::Array {
                r.begin_array().map_err(reader_error)?;
                stack.push(Frame::Array { items: Vec::new() });
            } else {
                r.begin_object().map_err(reader_error)?;
                stack.push(Frame::Object {
                    members: Vec::new(),
                    names: HashSet::new(),
                    pending: None,
                    at,
                });
            }
            return Ok(None);
        }
    };
    Ok(Some(value))
}

/// A JSON number: an integer if written without `.` and exponent (it must fit
/// in 64 bits), otherwise a finite 64-bit float.
pub(crate) fn parse_number(text: &str) -> Result<Value, String> {
    if text.contains(['.', 'e', 'E']) {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::F64(f)),
            _ => Err(format!(
                "the number {text} is beyond the range of a 64-bit float; \
                 write {{\"$float\": \"inf\"}} for infinity"
            )),
        }
    } else {
        // Exactly, of any stored size: never through f64.
        bigint::parse(text)
    }
}

fn close_object(
    mut members: Vec<(String, Value)>,
    at: Place,
    mode: Mode,
) -> Result<Value, ReadError> {
    if mode == Mode::Tagged
        && members.len() == 1
        && members[0].0.starts_with('$')
        && let Some((tag, payload)) = members.pop()
    {
        return unescape(&tag, payload).map_err(|m| ReadError::bad(at, m));
    }
    Ok(Value::Map(
        members
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    ))
}

fn unescape(tag: &str, payload: Value) -> Result<Value, String> {
    let want = |what: &str| format!("{{\"{tag}\": ...}} must hold {what}");
    match tag {
        "$int" => {
            let Value::String(s) = &payload else {
                return Err(want(
                    "the integer as a string, e.g. \"18446744073709551615\"",
                ));
            };
            bigint::parse(s.as_str().unwrap_or_default())
                .map_err(|e| format!("{{\"$int\": ...}}: {e}"))
        }
        "$float" => match &payload {
            Value::String(s) if s.as_str() == Some("NaN") => Ok(Value::F64(f64::NAN)),
            Value::String(s) if s.as_str() == Some("inf") => Ok(Value::F64(f64::INFINITY)),
            Value::String(s) if s.as_str() == Some("-inf") => Ok(Value::F64(f64::NEG_INFINITY)),
            _ => Err(want("\"NaN\", \"inf\" or \"-inf\"")),
        },
        "$bin" => {
            let Value::String(s) = &payload else {
                return Err(want("the bytes as a base64 string"));
            };
            decode_base64(s.as_str().unwrap_or_default()).map(Value::Binary)
        }
        "$ext" => match &payload {
            Value::Array(items) => match items.as_slice() {
                [Value::Integer(kind), Value::String(data)] => {
                    let kind = kind
                        .as_i64()
                        .and_then(|k| i8::try_from(k).ok())
                        .ok_or_else(|| want("an extension type from -128 to 127"))?;
                    let data = decode_base64(data.as_str().unwrap_or_default())?;
                    if kind == bigint::EXT_TYPE {
                        bigint::check(&data).map_err(|e| {
                            format!(
                                "{e}; extension type {kind} is reserved for integers beyond \
                                 64 bits: write them as {{\"$int\": \"<decimal>\"}}"
                            )
                        })?;
                    }
                    Ok(Value::Ext(kind, data))
                }
                _ => Err(want("[type, \"base64\"]")),
            },
            _ => Err(want("[type, \"base64\"]")),
        },
        "$map" => {
            let Value::Array(pairs) = payload else {
                return Err(want("an array of [key, value] pairs"));
            };
            let mut entries = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match pair {
                    Value::Array(kv) if kv.len() == 2 => {
                        let mut kv = kv.into_iter();
                        if let (Some(k), Some(v)) = (kv.next(), kv.next()) {
                            entries.push((k, v));
                        }
                    }
                    _ => return Err(want("an array of [key, value] pairs")),
                }
            }
            Ok(Value::Map(entries))
        }
        _ => Err(format!(
            "unknown escape {tag}: an object whose only member starts with $ is an escape \
             ($int, $float, $bin, $ext or $map); write a map with such a key as \
             {{\"$map\": [[{tag}, ...]]}}",
            tag = quote(tag)
        )),
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    BASE64.decode(text).map_err(|e| {
        format!(
            "{} is not base64 (standard alphabet, padded): {e}",
            quote(text)
        )
    })
}

/// Encodes a value as MessagePack (the compact encoding of each item).
pub(crate) fn to_msgpack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

/// Decodes stored MessagePack.
pub(crate) use crate::value::tree as from_msgpack;

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &Value, pretty: bool) -> String {
        let mut out = Vec::new();
        write_value(value, pretty, 0, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn back(text: &str) -> Value {
        let mut r = reader(text.as_bytes());
        read_value(&mut r, Mode::Tagged).unwrap()
    }

    fn bad(text: &str) -> (Place, String) {
        let mut r = reader(text.as_bytes());
        match read_value(&mut r, Mode::Tagged) {
            Err(ReadError::Bad { place, message }) => (place, message),
            other => panic!("{text}: {other:?}"),
        }
    }

    fn map(entries: Vec<(Value, Value)>) -> Value {
        Value::Map(entries)
    }

    #[test]
    fn plain_values_stay_plain() {
        let v = map(vec![
            ("status".into(), "running".into()),
            ("progress".into(), Value::from(10)),
            ("ratio".into(), Value::F64(0.5)),
            ("whole".into(), Value::F64(2.0)),
            ("tags".into(), Value::Array(vec!["a".into(), Value::Nil])),
            ("empty".into(), map(vec![])),
            ("none".into(), Value::Array(vec![])),
        ]);
        let text = json(&v, false);
        assert_eq!(
            text,
            r#"{"status":"running","progress":10,"ratio":0.5,"whole":2.0,"tags":["a",null],"empty":{},"none":[]}"#
        );
        assert_eq!(back(&text), v);
        let pretty = json(&v, true);
        assert!(
            pretty.contains("\n  \"status\": \"running\",\n"),
            "{pretty}"
        );
        assert_eq!(back(&pretty), v);
    }

    #[test]
    fn what_json_cannot_hold_is_escaped_and_comes_back() {
        let cases = [
            (Value::from(u64::MAX), r#"{"$int":"18446744073709551615"}"#),
            (Value::from(i64::MIN), r#"{"$int":"-9223372036854775808"}"#),
            (Value::from(1i64 << 53), r#"{"$int":"9007199254740992"}"#),
            (Value::from((1i64 << 53) - 1), "9007199254740991"),
            (Value::from(-(1i64 << 53) + 1), "-9007199254740991"),
            (Value::F64(f64::INFINITY), r#"{"$float":"inf"}"#),
            (Value::F64(f64::NEG_INFINITY), r#"{"$float":"-inf"}"#),
            (Value::F64(-0.0), "-0.0"),
            (
                Value::Binary(vec![0, 1, 254, 255]),
                r#"{"$bin":"AAH+/w=="}"#,
            ),
            (Value::Ext(-3, vec![7]), r#"{"$ext":[-3,"Bw=="]}"#),
            (
                map(vec![(Value::from(1), "one".into())]),
                r#"{"$map":[[1,"one"]]}"#,
            ),
            (
                map(vec![("$int".into(), "5".into())]),
                r#"{"$map":[["$int","5"]]}"#,
            ),
            (
                map(vec![("a".into(), 1.into()), ("a".into(), 2.into())]),
                r#"{"$map":[["a",1],["a",2]]}"#,
            ),
            // Two members, one starting with $: not an escape, a plain object.
            (
                map(vec![("$a".into(), 1.into()), ("b".into(), 2.into())]),
                r#"{"$a":1,"b":2}"#,
            ),
        ];
        for (value, expected) in cases {
            let text = json(&value, false);
            assert_eq!(text, expected);
            let again = back(&text);
            assert_eq!(to_msgpack(&again), to_msgpack(&value), "{text}");
            assert_eq!(json(&again, true), json(&value, true));
        }
        let nan = back(r#"{"$float":"NaN"}"#);
        assert!(matches!(nan, Value::F64(f) if f.is_nan()));
        assert_eq!(json(&Value::F32(f32::NAN), false), r#"{"$float":"NaN"}"#);
    }

    #[test]
    fn integers_beyond_64_bits_are_exact_in_both_spellings() {
        let two_64 = Value::Ext(105, vec![1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let below = Value::Ext(
            105,
            vec![0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        for (value, text) in [
            (&two_64, "18446744073709551616"),
            (&below, "-9223372036854775809"),
        ] {
            assert_eq!(json(value, false), format!(r#"{{"$int":"{text}"}}"#));
            assert_eq!(&back(&json(value, true)), value);
            // A plain literal reads exactly too, as does the `$ext` spelling.
            assert_eq!(&back(text), value);
        }
        assert_eq!(back(r#"{"$ext": [105, "AQAAAAAAAAAA"]}"#), two_64);
        // 2^53 + 1 and beyond: never rounded through f64.
        assert_eq!(
            back("9007199254740993"),
            Value::from(9_007_199_254_740_993u64)
        );
        assert_eq!(
            back("1180591620717411303425"),
            Value::Ext(105, vec![0x40, 0, 0, 0, 0, 0, 0, 0, 1])
        );
    }

    #[test]
    fn f32_is_widened_exactly() {
        let text = json(&Value::F32(0.1), false);
        assert_eq!(text, "0.10000000149011612");
        let Value::F64(f) = back(&text) else { panic!() };
        assert_eq!(f as f32, 0.1f32);
    }

    #[test]
    fn strings_keep_unicode_and_escape_controls() {
        let s = "é \u{1F600} \" \\ \n\t\u{1}\u{7f}\u{2028}";
        let text = json(&Value::from(s), false);
        assert_eq!(
            text,
            "\"é \u{1F600} \\\" \\\\ \\n\\t\\u0001\u{7f}\u{2028}\""
        );
        assert_eq!(back(&text), Value::from(s));
    }

    #[test]
    fn bad_escapes_and_numbers_are_errors_with_places() {
        let (at, m) = bad("[1,\n  {\"$nope\": 1}]");
        assert_eq!((at.line, at.column), (2, Some(3)));
        assert!(m.contains("unknown escape \"$nope\""), "{m}");
        let (_, m) = bad(r#"{"$int": "12x"}"#);
        assert!(m.contains("not an integer"), "{m}");
        let (_, m) = bad(r#"{"$bin": "!!"}"#);
        assert!(m.contains("not base64"), "{m}");
        let (_, m) = bad(r#"{"$ext": [300, ""]}"#);
        assert!(m.contains("-128 to 127"), "{m}");
        let (_, m) = bad(r#"{"$map": [[1]]}"#);
        assert!(m.contains("[key, value] pairs"), "{m}");
        let (at, m) = bad(&format!("[\n {}]", "9".repeat(2467)));
        assert_eq!((at.line, at.column), (2, Some(2)));
        assert!(m.contains("beyond the integers statelog stores"), "{m}");
        let (_, m) = bad(&format!(r#"{{"$int": "-{}"}}"#, "9".repeat(2467)));
        assert!(m.contains("beyond the integers statelog stores"), "{m}");
        // Extension type 105 holds canonical integers beyond 64 bits only.
        let (_, m) = bad(r#"{"$ext": [105, "AAAAAAAAAAAB"]}"#);
        assert!(m.contains("reserved for integers beyond 64 bits"), "{m}");
        let mut out = Vec::new();
        let err = write_value(&Value::Ext(105, vec![0; 9]), false, 0, &mut out).unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        let (_, m) = bad("1e999");
        assert!(m.contains("beyond the range"), "{m}");
        let (at, m) = bad("{\"a\": 1,\n \"a\": 2}");
        assert_eq!(at.line, 2);
        assert!(m.contains("member \"a\" twice"), "{m}");
        let (at, m) = bad("[1, 2");
        assert_eq!(at.line, 1);
        assert!(m.contains("ends early"), "{m}");
        let (_, m) = bad(&"[".repeat(MAX_JSON_DEPTH + 1));
        assert!(m.contains("nests deeper"), "{m}");
    }

    #[test]
    fn plain_mode_reads_escapes_as_maps() {
        let mut r = reader(r#"{"$int": "5"}"#.as_bytes());
        let v = read_value(&mut r, Mode::Plain).unwrap();
        assert_eq!(v, map(vec![("$int".into(), "5".into())]));
    }

    #[test]
    fn deep_values_do_not_recurse_while_reading() {
        let depth = MAX_JSON_DEPTH;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let mut r = reader(text.as_bytes());
        assert!(read_value(&mut r, Mode::Tagged).is_ok());
    }
}
