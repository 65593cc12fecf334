//! One value as JSON text, mapped exactly as snapshots map values: for tools
//! that show or take a single value (the command line's `get`, `set` and
//! `patch`), so that what they print and parse is what export writes and
//! import reads.

use struson::reader::JsonReader as _;

use super::mapping::{self, Mode, ReadError};
use super::{BYTE_ORDER_MARK, encode_value};
use crate::error::{Error, Result};
use crate::value::RawValue;

impl RawValue {
    /// The value as compact JSON (no whitespace), mapped as snapshots map
    /// values: what JSON cannot hold (big integers, NaN and infinities, binary,
    /// non-string map keys, extension types) becomes a one-member `$` object
    /// that [`from_json`](Self::from_json) reverses. Map members keep their
    /// stored order.
    ///
    /// ```
    /// use statelog::RawValue;
    /// #[derive(serde::Serialize)]
    /// struct Job { status: &'static str, n: u32 }
    /// let raw = RawValue::from_value(&Job { status: "running", n: 3 })?;
    /// assert_eq!(raw.to_json()?, r#"{"status":"running","n":3}"#);
    /// let big = RawValue::from_value(&u64::MAX)?;
    /// assert_eq!(big.to_json()?, r#"{"$int":"18446744073709551615"}"#);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Value`] if the bytes are not valid MessagePack (a damaged
    /// value).
    pub fn to_json(&self) -> Result<String> {
        self.render(false)
    }

    /// Like [`to_json`](Self::to_json), indented by two spaces per level, as a
    /// JSON snapshot writes values.
    ///
    /// ```
    /// use statelog::RawValue;
    /// let raw = RawValue::from_json(r#"{"a": [1, 2.5]}"#)?;
    /// assert_eq!(raw.to_json_pretty()?, "{\n  \"a\": [\n    1,\n    2.5\n  ]\n}");
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`to_json`](Self::to_json).
    pub fn to_json_pretty(&self) -> Result<String> {
        self.render(true)
    }

    fn render(&self, pretty: bool) -> Result<String> {
        let value = mapping::from_msgpack(self.as_msgpack()).map_err(Error::value)?;
        let mut out = Vec::new();
        mapping::write_value(&value, pretty, 0, &mut out).map_err(Error::value)?;
        String::from_utf8(out).map_err(|e| Error::value(e.to_string()))
    }

    /// Parses one JSON value as a snapshot import does: integers without `.`
    /// or exponent stay integers, exactly, of any size up to ±2^8191 (beyond
    /// 64 bits as [`bigint`](crate::bigint) extension values), other numbers are
    /// 64-bit floats, objects keep their member order, and `$` escapes
    /// (`{"$int": "..."}`, `{"$bin": "..."}`, ...) are decoded. Nothing but
    /// whitespace may follow the value.
    ///
    /// ```
    /// use statelog::RawValue;
    /// let raw = RawValue::from_json(r#"{"progress": 50, "data": {"$bin": "AAE="}}"#)?;
    /// #[derive(serde::Deserialize)]
    /// struct Job { progress: u8, #[serde(with = "serde_bytes")] data: Vec<u8> }
    /// let job: Job = raw.decode()?;
    /// assert_eq!((job.progress, job.data), (50, vec![0, 1]));
    ///
    /// let err = RawValue::from_json("{\"a\": 1,\n \"b\": }").unwrap_err();
    /// assert!(err.to_string().starts_with("line 2, column 7:"), "{err}");
    /// assert!(matches!(err, statelog::Error::Value { line: Some(2), column: Some(7), .. }));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// A UTF-8 byte order mark before the value is skipped.
    ///
    /// # Errors
    /// [`Error::Value`]. For a problem in the text, with its `line` and
    /// `column` (line 0: the text ended early), and a message that starts
    /// with them (`line 2, column 7: ...`, or `at the end of the input:
    /// ...`): invalid JSON, a member name twice in one object, an integer
    /// beyond ±2^8191, an unknown or malformed escape. For a value that reads
    /// but cannot be stored, without a place, a message starting with `the
    /// value`: nesting deeper than [`MAX_DEPTH`](crate::MAX_DEPTH) arrays and
    /// maps, or larger than [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN) as
    /// MessagePack.
    pub fn from_json(text: &str) -> Result<RawValue> {
        let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
        let mut reader = mapping::reader(text.as_bytes());
        let value = mapping::read_value(&mut reader, Mode::Tagged)
            .and_then(|value| {
                // Fails if anything but whitespace follows the value.
                reader
                    .consume_trailing_whitespace()
                    .map_err(mapping::reader_error)?;
                Ok(value)
            })
            .map_err(|e| match e {
                ReadError::Bad { place, message } => Error::Value {
                    message,
                    line: Some(place.line),
                    column: place.column.filter(|_| place.line != 0),
                },
                ReadError::Io(e) => Error::value(e.to_string()),
            })?;
        encode_value(&value).map_err(Error::value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind_of_value() {
        let text = r#"{"s":"x","i":-5,"big":{"$int":"18446744073709551615"},"f":2.0,"nan":{"$float":"NaN"},"b":{"$bin":"AAE="},"e":{"$ext":[3,"Bw=="]},"m":{"$map":[[1,"one"]]},"a":[null,true,false],"o":{}}"#;
        let raw = RawValue::from_json(text).unwrap();
        assert_eq!(raw.to_json().unwrap(), text);
        let pretty = raw.to_json_pretty().unwrap();
        assert!(pretty.contains("\n  \"s\": \"x\",\n"), "{pretty}");
        assert_eq!(RawValue::from_json(&pretty).unwrap(), raw);
    }

    #[test]
    fn matches_what_the_store_encodes() {
        #[derive(serde::Serialize)]
        struct Job {
            status: &'static str,
            progress: u8,
            ok: bool,
        }
        let typed = Job {
            status: "running",
            progress: 50,
            ok: true,
        };
        let raw =
            RawValue::from_json(r#" {"status": "running", "progress": 50, "ok": true} "#).unwrap();
        assert_eq!(raw, RawValue::from_value(&typed).unwrap());
    }

    #[test]
    fn bad_input_names_the_place() {
        let cases = [
            ("", "ends early"),
            ("{\"a\": 1", "line 1, column 8: the JSON ends early"),
            ("[1, 2] 3", "line 1, column 8"),
            ("{\"a\": 1, \"a\": 2}", "twice"),
            ("{\"$nope\": 1}", "unknown escape"),
            ("nul", "line 1"),
        ];
        let beyond = format!("[0,\n{}]", "9".repeat(2467));
        let err = RawValue::from_json(&beyond).unwrap_err();
        assert!(matches!(
            err,
            Error::Value {
                line: Some(2),
                column: Some(1),
                ..
            }
        ));
        let err = err.to_string();
        assert!(
            err.starts_with("line 2, column 1: the integer")
                && err.contains("beyond the integers statelog stores"),
            "{err}"
        );
        for (text, expected) in cases {
            let err = RawValue::from_json(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert!(
            RawValue::from_json(&deep)
                .unwrap_err()
                .to_string()
                .contains("nests deeper")
        );
    }
}
