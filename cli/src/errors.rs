//! Errors as JSON (`--json`): one object on one line of stderr,
//!
//! ```json
//! {"shape": 1, "error": {"kind": "conflict", "exit_code": 3,
//!  "message": "did not set jobs/j1", "causes": ["jobs/j1 is at version 2, not 1"],
//!  "fields": {"namespace": "jobs", "key": "j1", "expected": 1, "actual": 2, "attempts": 1}}}
//! ```
//!
//! `kind` and `fields` come from the outermost error in the chain that says
//! what went wrong (the one that decides the exit code): a library error
//! names its variant (`conflict`, `busy`, `corrupt`, ...) and carries its
//! fields; an error of the command line's own names its exit code's meaning
//! (`usage`, `not_found`, `conflict`, `error`, ...) and has no fields.
//! Durations are whole milliseconds, paths are text.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::exit::{Code, Failure};
use crate::output::SHAPE;

/// What `--json` prints for an error.
#[derive(Debug, Serialize)]
pub struct ErrorDoc {
    pub shape: u32,
    pub error: ErrorBody,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub kind: String,
    pub exit_code: u8,
    pub message: String,
    pub causes: Vec<String>,
    pub fields: Map<String, Value>,
}

impl ErrorDoc {
    /// The document for `err`, which exits with `code`.
    pub fn new(err: &anyhow::Error, code: Code) -> ErrorDoc {
        let (kind, fields) = err
            .chain()
            .find_map(|cause| {
                if let Some(f) = cause.downcast_ref::<Failure>() {
                    return Some((code_kind(f.code).to_owned(), Map::new()));
                }
                cause.downcast_ref::<statelog::Error>().map(library)
            })
            .unwrap_or_else(|| (code_kind(code).to_owned(), Map::new()));
        ErrorDoc {
            shape: SHAPE,
            error: ErrorBody {
                kind,
                exit_code: code as u8,
                message: err.to_string(),
                causes: err.chain().skip(1).map(|c| c.to_string()).collect(),
                fields,
            },
        }
    }

    /// A usage error (a bad command line), exit 2, with the command's usage
    /// line when clap gave one.
    pub fn usage(message: &str, usage: Option<String>) -> ErrorDoc {
        let mut fields = Map::new();
        if let Some(usage) = usage {
            fields.insert("usage".to_owned(), Value::String(usage));
        }
        ErrorDoc {
            shape: SHAPE,
            error: ErrorBody {
                kind: code_kind(Code::Usage).to_owned(),
                exit_code: Code::Usage as u8,
                message: message.to_owned(),
                causes: Vec::new(),
                fields,
            },
        }
    }
}

/// The kind of an error the command line raises itself: what its exit code
/// means.
fn code_kind(code: Code) -> &'static str {
    match code {
        Code::Ok | Code::Error => "error",
        Code::Usage => "usage",
        Code::Conflict => "conflict",
        Code::NotFound => "not_found",
        Code::Busy => "busy",
        Code::OutcomeUnknown => "outcome_unknown",
        Code::TimedOut => "timed_out",
        Code::KeyReused => "idempotency_key_reused",
    }
}

fn millis(d: &std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A library error's kind and fields.
fn library(e: &statelog::Error) -> (String, Map<String, Value>) {
    use statelog::Error as E;
    let (kind, fields) = match e {
        E::InvalidKey {
            part,
            value,
            reason,
        } => (
            "invalid_key",
            json!({"part": format!("{part:?}").to_lowercase(), "value": value, "reason": reason}),
        ),
        E::Conflict {
            namespace,
            key,
            expected,
            actual,
            attempts,
        } => (
            "conflict",
            json!({"namespace": namespace, "key": key, "expected": expected, "actual": actual,
                   "attempts": attempts}),
        ),
        E::Decode {
            namespace,
            key,
            type_name,
            message,
        } => (
            "decode",
            json!({"namespace": namespace, "key": key, "type_name": type_name,
                   "message": message}),
        ),
        E::Encode {
            namespace,
            key,
            message,
        } => (
            "encode",
            json!({"namespace": namespace, "key": key, "message": message}),
        ),
        E::InvalidValue {
            namespace,
            key,
            message,
        } => (
            "invalid_value",
            json!({"namespace": namespace, "key": key, "message": message}),
        ),
        E::TooLarge { what, size, limit } => (
            "too_large",
            json!({"what": what, "size": size, "limit": limit}),
        ),
        E::Corrupt {
            file,
            offset,
            reason,
        } => (
            "corrupt",
            json!({"file": file.display().to_string(), "offset": offset, "reason": reason}),
        ),
        E::NotAStore { path, reason } => (
            "not_a_store",
            json!({"path": path.display().to_string(), "reason": reason}),
        ),
        E::UnsupportedFormat {
            path,
            found,
            supported,
        } => (
            "unsupported_format",
            json!({"path": path.display().to_string(), "found": found, "supported": supported}),
        ),
        E::Busy { path, pid, waited } => (
            "busy",
            json!({"path": path.display().to_string(), "pid": pid, "waited": millis(waited)}),
        ),
        E::Io { op, path, source } => (
            "io",
            json!({"op": op, "path": path.display().to_string(),
                   "errno": source.raw_os_error()}),
        ),
        E::Database { op, path, hint, .. } => (
            "database",
            json!({"op": op, "path": path.display().to_string(), "hint": hint}),
        ),
        E::Poisoned { cause } => ("poisoned", json!({"cause": cause})),
        E::ReadOnly { path, reason } => (
            "read_only",
            json!({"path": path.display().to_string(), "reason": reason}),
        ),
        E::Closed => ("closed", json!({})),
        E::NotEmpty { revision } => ("not_empty", json!({"revision": revision})),
        E::InvalidOption { name, reason } => {
            ("invalid_option", json!({"name": name, "reason": reason}))
        }
        E::InvalidSnapshot {
            line,
            column,
            section,
            message,
        } => (
            "invalid_snapshot",
            json!({"line": line, "column": column, "section": section, "message": message}),
        ),
        E::InvalidBackup { path, reason } => (
            "invalid_backup",
            json!({"path": path.display().to_string(), "reason": reason}),
        ),
        E::TargetNotEmpty { path, reason } => (
            "target_not_empty",
            json!({"path": path.display().to_string(), "reason": reason}),
        ),
        E::Exhausted { record, value } => (
            "exhausted",
            json!({
                "namespace": record.as_ref().map(|(ns, _)| ns),
                "key": record.as_ref().map(|(_, key)| key),
                "value": value,
            }),
        ),
        E::OutcomeUnknown { path, pid, reason } => (
            "outcome_unknown",
            json!({"path": path.display().to_string(), "pid": pid, "reason": reason}),
        ),
        E::Refused { path, pid, reason } => (
            "refused",
            json!({"path": path.display().to_string(), "pid": pid, "reason": reason}),
        ),
        E::Disconnected { path, pid, reason } => (
            "disconnected",
            json!({"path": path.display().to_string(), "pid": pid, "reason": reason}),
        ),
        E::Unsupported { what, reason } => ("unsupported", json!({"what": what, "reason": reason})),
        E::SnapshotIo { op, source } => (
            "snapshot_io",
            json!({"op": op, "errno": source.raw_os_error()}),
        ),
        E::Compacted {
            requested,
            compacted,
        } => (
            "compacted",
            json!({"requested": requested, "first_revision": compacted}),
        ),
        E::WatchCancelled {
            resume_from,
            reason,
        } => (
            "watch_cancelled",
            json!({"resume_from": resume_from, "reason": reason}),
        ),
        E::PatchFailed {
            namespace,
            key,
            message,
        } => (
            "patch_failed",
            json!({"namespace": namespace, "key": key, "message": message}),
        ),
        E::RevisionMismatch {
            namespace,
            key,
            expected,
            actual,
        } => (
            "revision_mismatch",
            json!({"namespace": namespace, "key": key, "expected": expected, "actual": actual}),
        ),
        E::Fenced {
            lock,
            token,
            current,
        } => (
            "fenced",
            json!({"lock": lock, "token": token, "current": current}),
        ),
        E::LockHeld {
            lock,
            token,
            holder,
            waited,
        } => (
            "lock_held",
            json!({"lock": lock, "token": token, "holder": holder, "waited": millis(waited)}),
        ),
        E::LeaseExpired { lease } => ("lease_expired", json!({"lease": format!("{lease:016x}")})),
        E::IdempotencyKeyReused { key, first } => (
            "idempotency_key_reused",
            json!({"key": key, "first": first}),
        ),
        E::Value {
            message,
            line,
            column,
        } => (
            "value",
            json!({"message": message, "line": line, "column": column}),
        ),
        // A kind this build does not know yet: its message says what it is.
        _ => ("error", json!({})),
    };
    let fields = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    (kind.to_owned(), fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::fail;

    #[test]
    fn the_outermost_known_error_gives_the_kind_and_fields() {
        let conflict = statelog::Error::Conflict {
            namespace: "jobs".into(),
            key: "j1".into(),
            expected: 1,
            actual: 2,
            attempts: 1,
        };
        let err = anyhow::Error::new(conflict).context("did not set jobs/j1");
        let doc = serde_json::to_value(ErrorDoc::new(&err, Code::Conflict)).unwrap();
        assert_eq!(
            doc,
            json!({"shape": 1, "error": {
                "kind": "conflict", "exit_code": 3, "message": "did not set jobs/j1",
                "causes": [err.chain().nth(1).unwrap().to_string()],
                "fields": {"namespace": "jobs", "key": "j1", "expected": 1, "actual": 2,
                           "attempts": 1}}})
        );
        let err = fail(Code::NotFound, "jobs/j9 does not exist");
        let doc = serde_json::to_value(ErrorDoc::new(&err, Code::NotFound)).unwrap();
        assert_eq!(doc["error"]["kind"], "not_found");
        assert_eq!(doc["error"]["fields"], json!({}));
    }

    #[test]
    fn durations_are_milliseconds() {
        let busy = statelog::Error::Busy {
            path: "s".into(),
            pid: Some(7),
            waited: std::time::Duration::from_millis(1500),
        };
        let doc = ErrorDoc::new(&anyhow::Error::new(busy), Code::Busy);
        assert_eq!(doc.error.fields["waited"], 1500);
        assert_eq!(doc.error.fields["pid"], 7);
    }
}
