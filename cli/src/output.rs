//! The shapes of `--json` output that several commands share, values as JSON
//! text, and numbers for people.
//!
//! Every document a command prints is a type of the command line's own
//! (never a library struct, whose fields may change with the library), and
//! carries `"shape": SHAPE` as its first member. Durations are whole
//! milliseconds, under the name `duration`.
//!
//! Values are rendered by the library's snapshot mapping
//! ([`statelog::RawValue::to_json`]), so what `get` prints is what `export`
//! writes and `set` and `import` read; they are embedded in the documents as
//! they are, member order included.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue as JsonText;
use statelog::{RawValue, Versioned};

/// The version of the documents' shapes: raised when a member is renamed,
/// removed or changes its meaning (adding one does not raise it).
pub const SHAPE: u32 = 1;

/// A duration as the documents give it: whole milliseconds.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A size for people: "512 bytes", "1.5 KiB", "5.0 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A value as compact JSON, ready to embed in a document.
pub fn json_text(value: &RawValue) -> anyhow::Result<Box<JsonText>> {
    let text = value
        .to_json()
        .map_err(anyhow::Error::msg)
        .context("the stored value cannot be shown as JSON; the store may be damaged")?;
    JsonText::from_string(text).context("internal error: the value's JSON did not parse")
}

/// A value as JSON indented for people, as a JSON export writes it.
pub fn pretty(value: &RawValue) -> anyhow::Result<String> {
    value
        .to_json_pretty()
        .map_err(anyhow::Error::msg)
        .context("the stored value cannot be shown as JSON; the store may be damaged")
}

/// One record: what `get --json` prints and `list --json` lists; the members
/// of a JSON snapshot's record, with the address first.
#[derive(Debug, Serialize)]
pub struct RecordDoc<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    pub key: &'a str,
    pub version: u64,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub updated_at: String,
    pub value: Box<JsonText>,
}

impl<'a> RecordDoc<'a> {
    pub fn new(
        namespace: Option<&'a str>,
        key: &'a str,
        record: &Versioned<RawValue>,
    ) -> anyhow::Result<RecordDoc<'a>> {
        Ok(RecordDoc {
            namespace,
            key,
            version: record.version,
            create_revision: record.create_revision,
            mod_revision: record.mod_revision,
            updated_at: record.updated_at.to_string(),
            value: json_text(&record.value)?,
        })
    }
}

/// What a write did: `set`, `patch` and `incr` print this (and more).
#[derive(Debug, Serialize)]
pub struct WriteDoc<'a> {
    pub namespace: &'a str,
    pub key: &'a str,
    /// The record's version after the write.
    pub version: u64,
    /// The revision of the commit.
    pub revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// The new value (for `incr`, the field's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<JsonText>>,
    /// True when an idempotency key's first result is printed again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// False when `--if-changed` found the value unchanged (nothing written).
    #[serde(skip_serializing_if = "is_true")]
    pub changed: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One problem `check` found or `repair` met: where, what, what to do.
#[derive(Debug, Serialize)]
pub struct ProblemDoc {
    pub file: Option<String>,
    pub offset: Option<u64>,
    pub namespace: Option<String>,
    pub what: String,
    pub action: String,
}

impl ProblemDoc {
    pub fn new(p: &statelog::maintenance::Problem) -> ProblemDoc {
        ProblemDoc {
            file: p.file.as_ref().map(|f| f.display().to_string()),
            offset: p.offset,
            namespace: p.namespace.clone(),
            what: p.what.clone(),
            action: p.action.clone(),
        }
    }
}

/// Shortens `text` to `max` characters for a one-line display.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// "1 record", "2 records".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_member_order_in_documents() {
        let raw = RawValue::from_json(r#"{"z": 1, "a": {"$int": "18446744073709551615"}}"#)
            .expect("valid");
        let doc = WriteDoc {
            namespace: "n",
            key: "k",
            version: 1,
            revision: 2,
            field: None,
            value: Some(json_text(&raw).expect("renders")),
            replayed: false,
            changed: true,
        };
        assert_eq!(
            serde_json::to_string(&doc).expect("serialises"),
            r#"{"namespace":"n","key":"k","version":1,"revision":2,"value":{"z":1,"a":{"$int":"18446744073709551615"}}}"#
        );
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("héllo", 5), "héllo");
        assert_eq!(shorten("héllo world", 5), "héll…");
        assert_eq!(plural(1, "record", "records"), "1 record");
        assert_eq!(plural(0, "record", "records"), "0 records");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
    }
}
