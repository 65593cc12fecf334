//! Fields inside a value: dotted paths (`meta.host`), typed values given on
//! the command line (`progress=50`), reading, setting and adding to fields.
//!
//! Values are handled as MessagePack trees (`rmpv::Value`), so every other
//! field of a record keeps its exact type, bytes and order when one is set.
//!
//! Grammar, also in the README:
//! - A path is field names separated by `.`; a backslash makes the next
//!   character literal (`a\.b` is the one field `a.b`). Empty names are
//!   errors. `get --field` also indexes arrays with a number (`items.0`).
//! - `FIELD=VALUE` splits at the first `=` not escaped by a backslash.
//! - VALUE is typed: `true`, `false`, `null`; a JSON number (`50`, `-1.5`,
//!   `1e3`; no leading zeros, so `007` is a string); a JSON string in double
//!   quotes (`"50"` is the string 50); anything else is the string as
//!   written (`running`, `node7`, the empty string for `k=`).

use std::fmt;

use rmpv::Value;
use statelog::{RawValue, Shown, bigint};

/// A field path such as `meta.host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// As the user wrote it, for messages.
    pub text: String,
    /// The field names, unescaped; never empty.
    pub names: Vec<String>,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Shown::new(&self.text))
    }
}

const PATH_HELP: &str = "write fields as a.b.c; a backslash makes the next character \
literal (a\\.b is the field \"a.b\")";

impl FieldPath {
    /// Parses `a.b.c`. The error is a usage error (exit 2).
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let mut names = Vec::new();
        let mut name = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next) => name.push(next),
                    None => {
                        return Err(format!(
                            "the field path \"{}\" ends with a lone backslash; {PATH_HELP}",
                            Shown::new(text)
                        ));
                    }
                },
                '.' => names.push(std::mem::take(&mut name)),
                c => name.push(c),
            }
        }
        names.push(name);
        if names.iter().any(String::is_empty) {
            return Err(format!(
                "the field path \"{}\" has an empty field name; {PATH_HELP}",
                Shown::new(text)
            ));
        }
        Ok(FieldPath {
            text: text.to_owned(),
            names,
        })
    }

    /// The path up to and including name `i`, for messages.
    fn prefix(&self, i: usize) -> String {
        Shown::new(&self.names[..=i].join(".")).to_string()
    }
}

/// Splits `FIELD=VALUE` at the first `=` not escaped by a backslash. The error
/// is a usage error (exit 2).
pub fn split_assignment(expr: &str) -> Result<(FieldPath, &str), String> {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' => return Ok((FieldPath::parse(&expr[..i])?, &expr[i + 1..])),
            _ => i += 1,
        }
    }
    Err(format!(
        "\"{}\" is not FIELD=VALUE (for example status=running, progress=50, meta.host=node7)",
        Shown::new(expr)
    ))
}

/// The value `VALUE` of `FIELD=VALUE` stands for (see the module docs). The
/// error (a malformed quoted string, an integer beyond ±2^8191) exits 1.
pub fn typed_value(text: &str) -> Result<Value, String> {
    match text {
        "true" => Ok(Value::Boolean(true)),
        "false" => Ok(Value::Boolean(false)),
        "null" => Ok(Value::Nil),
        _ if text.starts_with('"') => match parse_json(text) {
            Ok(value @ Value::String(_)) => Ok(value),
            Ok(_) | Err(_) => Err(format!(
                "{} starts with a double quote but is not one JSON string; write a quoted \
                 string as \"text\" with \\\" for quotes inside it",
                Shown::new(text)
            )),
        },
        _ if is_json_number(text) => parse_json(text).map_err(|e| {
            let text = Shown::new(text);
            format!("{text} is not a number statelog can store ({e}); quote it to store text: '\"{text}\"'")
        }),
        _ => Ok(Value::from(text)),
    }
}

/// Parses JSON text with the snapshot mapping (escapes such as `{"$int": ..}`
/// included) into a tree.
pub fn parse_json(text: &str) -> Result<Value, String> {
    let raw = RawValue::from_json(text).map_err(|e| e.to_string())?;
    decode(&raw)
}

/// The tree of a stored value.
pub fn decode(raw: &RawValue) -> Result<Value, String> {
    let mut bytes = raw.as_msgpack();
    rmpv::decode::read_value(&mut bytes).map_err(|e| format!("the stored value is damaged: {e}"))
}

/// A tree as a storable value (checked as the store checks values).
pub fn encode(value: &Value) -> Result<RawValue, String> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).map_err(|e| e.to_string())?;
    RawValue::from_msgpack(bytes).map_err(|e| e.to_string())
}

/// True for text that is exactly a JSON number:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A value as a script wants it from `$(...)`: a string without quotes, an
/// integer in full decimal (also beyond 2^53, where JSON output escapes it),
/// anything else as compact JSON.
pub fn raw_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) if s.as_str().is_some() => Ok(s.as_str().unwrap_or_default().to_owned()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Ext(bigint::EXT_TYPE, payload) => {
            bigint::to_decimal(payload).map_err(|e| format!("the stored value is damaged: {e}"))
        }
        other => encode(other)?.to_json().map_err(|e| e.to_string()),
    }
}

/// What kind of value this is, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "null",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => "a number",
        Value::Ext(bigint::EXT_TYPE, _) => "a number",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary data",
        Value::Array(_) => "an array",
        Value::Map(_) => "an object",
        Value::Ext(..) => "an extension value",
    }
}

/// What a value is, with a short rendering of it, for messages:
/// `a string ("running")`, `null`.
fn describe(value: &Value) -> String {
    match value {
        Value::Nil => "null".to_owned(),
        other => format!("{} ({})", kind(other), preview(other)),
    }
}

/// A short JSON rendering of a value, for messages.
fn preview(value: &Value) -> String {
    let text = encode(value)
        .ok()
        .and_then(|raw| raw.to_json().ok())
        .unwrap_or_else(|| "?".to_owned());
    crate::output::shorten(&text, 40)
}

fn member<'a>(entries: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// The field at `path`, or why there is none (a not-found, exit 4).
pub fn lookup<'a>(root: &'a Value, path: &FieldPath) -> Result<&'a Value, String> {
    let mut at = root;
    for (i, name) in path.names.iter().enumerate() {
        let next = match at {
            Value::Map(entries) => member(entries, name),
            Value::Array(items) => name.parse::<usize>().ok().and_then(|n| items.get(n)),
            other => {
                let holder = if i == 0 {
                    "the value".to_owned()
                } else {
                    format!("field {}", path.prefix(i - 1))
                };
                return Err(format!(
                    "there is no field {path}: {holder} is {}, not an object",
                    describe(other)
                ));
            }
        };
        match next {
            Some(value) => at = value,
            None => return Err(format!("there is no field {}", path.prefix(i))),
        }
    }
    Ok(at)
}

/// A number to add with `incr`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    /// Parses BY: an integer, or a finite decimal number. Usage error (exit 2).
    pub fn parse(text: &str) -> Result<Number, String> {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Number::Int(n.into()));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Number::Int(n.into()));
        }
        match text.parse::<f64>() {
            // As in JSON values: only text with `.` or an exponent is a float,
            // so an integer too large for 64 bits is an error, not rounded.
            Ok(f) if f.is_finite() && is_json_number(text) && text.contains(['.', 'e', 'E']) => {
                Ok(Number::Float(f))
            }
            _ => Err(format!(
                "\"{}\" is not a number (an integer of 64 bits, or a decimal such as 0.5)",
                Shown::new(text)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> FieldPath {
        FieldPath::parse(text).expect("valid path")
    }

    fn json(value: &Value) -> String {
        encode(value).expect("encodes").to_json().expect("renders")
    }

    #[test]
    fn paths_split_on_unescaped_dots() {
        assert_eq!(path("a.b.c").names, ["a", "b", "c"]);
        assert_eq!(
            path(r"pages.index\.md.hash").names,
            ["pages", "index.md", "hash"]
        );
        assert_eq!(path(r"a\\.b").names, ["a\\", "b"]);
        for bad in ["", "a..b", ".a", "a.", "a\\"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn assignments_split_at_the_first_unescaped_equals() {
        let (p, v) = split_assignment("meta.host=node=7").expect("valid");
        assert_eq!(
            (p.names, v),
            (vec!["meta".to_owned(), "host".to_owned()], "node=7")
        );
        let (p, v) = split_assignment(r"a\=b=1").expect("valid");
        assert_eq!((p.names, v), (vec!["a=b".to_owned()], "1"));
        let (_, v) = split_assignment("k=").expect("valid");
        assert_eq!(v, "");
        assert!(split_assignment("status").is_err());
        assert!(split_assignment("=5").is_err());
    }

    #[test]
    fn values_are_typed_as_documented() {
        let cases = [
            ("50", "50"),
            ("-1.5", "-1.5"),
            ("1e3", "1000.0"),
            ("0", "0"),
            ("true", "true"),
            ("false", "false"),
            ("null", "null"),
            ("\"50\"", "\"50\""),
            ("\"a \\\"b\\\"\"", "\"a \\\"b\\\"\""),
            ("007", "\"007\""),
            ("+5", "\"+5\""),
            ("1.", "\"1.\""),
            ("running", "\"running\""),
            ("", "\"\""),
            ("True", "\"True\""),
            ("NaN", "\"NaN\""),
            ("[1]", "\"[1]\""),
            ("18446744073709551616", r#"{"$int":"18446744073709551616"}"#),
        ];
        for (text, expected) in cases {
            let value = typed_value(text).expect(text);
            assert_eq!(json(&value), expected, "{text:?}");
        }
        assert!(typed_value("\"open").is_err());
        assert!(typed_value("\"a\" \"b\"").is_err());
        assert!(typed_value(&"9".repeat(2467)).is_err());
        assert!(typed_value("1e999").is_err());
    }

    #[test]
    fn lookup_finds_fields_and_array_items() {
        let v = parse_json(r#"{"a": {"b": [10, {"c": "x"}]}, "n": null}"#).expect("json");
        assert_eq!(json(lookup(&v, &path("a.b.1.c")).expect("found")), "\"x\"");
        assert_eq!(json(lookup(&v, &path("n")).expect("found")), "null");
        assert!(
            lookup(&v, &path("a.z"))
                .unwrap_err()
                .contains("no field a.z")
        );
        assert!(lookup(&v, &path("a.b.7")).is_err());
        let e = lookup(&v, &path("a.b.0.x")).unwrap_err();
        assert!(e.contains("field a.b.0 is a number"), "{e}");
    }

    #[test]
    fn raw_text_is_for_scripts() {
        let v = parse_json(
            r#"["a b", 5, -7, {"$int": "18446744073709551615"}, 0.5, true, {"x": "y"}, -340282366920938463463374607431768211457]"#,
        )
        .expect("json");
        let Value::Array(items) = v else {
            panic!("an array")
        };
        let texts: Vec<String> = items
            .iter()
            .map(|i| raw_text(i).expect("renders"))
            .collect();
        assert_eq!(
            texts,
            [
                "a b",
                "5",
                "-7",
                "18446744073709551615",
                "0.5",
                "true",
                r#"{"x":"y"}"#,
                "-340282366920938463463374607431768211457"
            ]
        );
    }

    #[test]
    fn by_is_a_number() {
        assert_eq!(Number::parse("5"), Ok(Number::Int(5)));
        assert_eq!(Number::parse("-5"), Ok(Number::Int(-5)));
        assert_eq!(
            Number::parse("18446744073709551615"),
            Ok(Number::Int(u64::MAX.into()))
        );
        assert_eq!(Number::parse("0.25"), Ok(Number::Float(0.25)));
        for bad in [
            "",
            "x",
            "1e999",
            "NaN",
            "inf",
            "0x10",
            "18446744073709551616",
        ] {
            assert!(Number::parse(bad).is_err(), "{bad:?}");
        }
    }
}
