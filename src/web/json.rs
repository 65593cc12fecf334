//! The JSON the API writes: records with their metadata and their values in
//! the snapshot mapping (the JSON export's: binary as `{"$bin": base64}`,
//! maps with other keys than strings as `{"$map": [...]}`).

use serde::Serialize;
use serde_json::value::RawValue as Json;

use crate::snapshot::mapping;
use crate::value::{RawValue, Versioned};

/// A record as the API shows it.
#[derive(Serialize)]
pub(crate) struct RecordJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    pub key: &'a str,
    pub version: u64,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub updated: String,
    pub value: Box<Json>,
    /// Why `value` is null although the record has one (it cannot be shown
    /// as JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_error: Option<String>,
}

impl<'a> RecordJson<'a> {
    pub(crate) fn new(
        namespace: Option<&'a str>,
        key: &'a str,
        record: &Versioned<RawValue>,
    ) -> RecordJson<'a> {
        let (value, value_error) = value_json(&record.value);
        RecordJson {
            namespace,
            key,
            version: record.version,
            create_revision: record.create_revision,
            mod_revision: record.mod_revision,
            updated: record.updated_at.to_string(),
            value,
            value_error,
        }
    }
}

/// A stored value as JSON, or null and why.
pub(crate) fn value_json(value: &RawValue) -> (Box<Json>, Option<String>) {
    let mut out = Vec::new();
    let written = mapping::from_msgpack(value.as_msgpack())
        .and_then(|v| mapping::write_value(&v, false, 0, &mut out));
    let text = match written {
        Ok(()) => String::from_utf8(out).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match text.and_then(|t| Json::from_string(t).map_err(|e| e.to_string())) {
        Ok(json) => (json, None),
        Err(why) => (null(), Some(why)),
    }
}

/// JSON `null`.
pub(crate) fn null() -> Box<Json> {
    Json::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("null is JSON"))
}
