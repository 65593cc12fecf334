//! Log records into [`Change`]s.

use crate::error::{Error, Result};
use crate::log::frame::{self, Decoded};
use crate::log::record::{self, LogOp, LogRecord};
use crate::time::Timestamp;
use crate::value::{RawValue, Versioned};
use crate::watch::{Change, Event, Scope};

/// The commits in a batch's frames, each as its parts.
pub(crate) fn commits(frames: &[u8]) -> Result<Vec<Vec<LogRecord<'_>>>> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    let mut rest = frames;
    while !rest.is_empty() {
        let Decoded::Frame { payload, frame_len } = frame::decode(rest) else {
            return Err(internal("a published batch holds a bad frame"));
        };
        let part = record::decode(payload)
            .map_err(|e| internal(&format!("a published batch holds a bad record: {e}")))?;
        let more = part.more;
        parts.push(part);
        if !more {
            out.push(std::mem::take(&mut parts));
        }
        rest = &rest[frame_len..];
    }
    Ok(out)
}

fn internal(what: &str) -> Error {
    Error::Poisoned {
        cause: format!("internal error: {what}"),
    }
}

/// One commit's changes in `scope` (no previous values yet).
pub(crate) fn change(parts: &[LogRecord<'_>], scope: &Scope) -> Option<Change> {
    let first = parts.first()?;
    let revision = first.revision;
    let time = Timestamp::from_micros(first.time);
    let mut events = Vec::new();
    for part in parts {
        for op in &part.ops {
            let (namespace, key) = op.address();
            if !scope.covers(namespace, key) {
                continue;
            }
            let (value, deleted_version) = match op {
                LogOp::Put(put) => {
                    let meta = put.meta(revision, time);
                    (
                        Some(Versioned::new(
                            RawValue::from_trusted(put.value.to_vec()),
                            meta,
                        )),
                        0,
                    )
                }
                LogOp::Delete(del) => (None, del.version),
            };
            events.push(Event {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                value,
                deleted_version,
                prev: None,
            });
        }
    }
    Some(Change {
        revision,
        time,
        events,
    })
}
