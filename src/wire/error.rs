//! Errors on the wire: every [`Error`] variant with its fields as plain data,
//! so that a request through the holder fails with the same variant, fields and
//! message as it would in the holder.
//!
//! Paths inside the store directory travel relative to it and are re-rooted on
//! the client's path of the store (the two processes may name it differently).
//! Causes travel as their OS error number (which rebuilds the same
//! `io::Error`) or as text.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{Error, KeyPart};

/// A path: inside the store directory (relative to it), or as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePath {
    /// True when `bytes` is relative to the store directory.
    pub in_store: bool,
    /// The path's bytes.
    pub bytes: ByteBuf,
}

/// An operating-system error: its number when it has one, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireIo {
    /// `errno`.
    pub os_error: Option<i32>,
    /// The error's text.
    pub message: String,
}

/// [`Error`] as data.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireError {
    InvalidKey {
        namespace_part: bool,
        value: String,
        reason: String,
    },
    Conflict {
        namespace: String,
        key: String,
        expected: u64,
        actual: u64,
        attempts: u32,
    },
    Decode {
        namespace: String,
        key: String,
        type_name: String,
        message: String,
    },
    Encode {
        namespace: String,
        key: String,
        message: String,
    },
    InvalidValue {
        namespace: String,
        key: String,
        message: String,
    },
    TooLarge {
        what: String,
        size: u64,
        limit: u64,
    },
    Corrupt {
        file: WirePath,
        offset: u64,
        reason: String,
    },
    NotAStore {
        path: WirePath,
        reason: String,
    },
    UnsupportedFormat {
        path: WirePath,
        found: u64,
        supported: u64,
    },
    Busy {
        path: WirePath,
        pid: Option<u32>,
        waited_micros: u64,
    },
    Io {
        op: String,
        path: WirePath,
        source: WireIo,
    },
    Database {
        op: String,
        path: WirePath,
        hint: String,
        source: String,
    },
    Poisoned {
        cause: String,
    },
    Closed,
    NotEmpty {
        revision: u64,
    },
    InvalidOption {
        name: String,
        reason: String,
    },
    InvalidSnapshot {
        line: u64,
        column: Option<u64>,
        section: Option<String>,
        message: String,
    },
    InvalidBackup {
        path: WirePath,
        reason: String,
    },
    TargetNotEmpty {
        path: WirePath,
        reason: String,
    },
    Exhausted {
        record: Option<(String, String)>,
        value: u64,
    },
    ReadOnly {
        path: WirePath,
        reason: String,
    },
    SnapshotIo {
        op: String,
        source: WireIo,
    },
    OutcomeUnknown {
        path: WirePath,
        pid: Option<u32>,
        reason: String,
    },
    Refused {
        path: WirePath,
        pid: Option<u32>,
        reason: String,
    },
    Disconnected {
        path: WirePath,
        pid: Option<u32>,
        reason: String,
    },
    Unsupported {
        what: String,
        reason: String,
    },
    // The errors of a store on etcd: no holder sends them today (a holder's
    // store is its directory), but every variant has its wire form.
    Unreachable {
        endpoints: String,
        op: String,
        reason: String,
    },
    LimitExceeded {
        limit: String,
        what: String,
        hint: String,
    },
    Compacted {
        requested: u64,
        compacted: Option<u64>,
    },
    Remote {
        endpoint: String,
        op: String,
        code: String,
        message: String,
    },
    WatchCancelled {
        resume_from: u64,
        reason: String,
    },
    PatchFailed {
        namespace: String,
        key: String,
        message: String,
    },
    RevisionMismatch {
        namespace: String,
        key: String,
        expected: u64,
        actual: u64,
    },
    Fenced {
        lock: String,
        token: u64,
        current: Option<u64>,
    },
    LockHeld {
        lock: String,
        token: u64,
        holder: String,
        waited_micros: u64,
    },
    LeaseExpired {
        lease: u64,
    },
    IdempotencyKeyReused {
        key: String,
        first: Option<u64>,
    },
    Value {
        message: String,
        line: Option<u64>,
        column: Option<u64>,
    },
}

fn path_to_wire(path: &Path, store: &Path) -> WirePath {
    use std::os::unix::ffi::OsStrExt;
    match path.strip_prefix(store) {
        Ok(rest) => WirePath {
            in_store: true,
            bytes: ByteBuf::from(rest.as_os_str().as_bytes().to_vec()),
        },
        Err(_) => WirePath {
            in_store: false,
            bytes: ByteBuf::from(path.as_os_str().as_bytes().to_vec()),
        },
    }
}

fn path_from_wire(path: WirePath, store: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let path = PathBuf::from(std::ffi::OsString::from_vec(path.bytes.into_vec()));
    if path.as_os_str().is_empty() {
        return store.to_owned();
    }
    // Only a relative path can be re-rooted; an absolute one claiming to be in
    // the store is taken as it is.
    if path.is_relative() {
        store.join(path)
    } else {
        path
    }
}

fn io_to_wire(e: &std::io::Error) -> WireIo {
    WireIo {
        os_error: e.raw_os_error(),
        message: e.to_string(),
    }
}

fn io_from_wire(e: WireIo) -> std::io::Error {
    match e.os_error {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::other(e.message),
    }
}

/// The same text as a `&'static str`, as some fields of [`Error`] are. Each
/// distinct text is kept once; they come from a fixed set in the holder's
/// code, and a holder sending endless new ones would get a placeholder after
/// a while rather than this process's memory.
fn intern(text: String) -> &'static str {
    const MOST: usize = 4096;
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let mut seen = match seen.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(known) = seen.get(text.as_str()) {
        return known;
    }
    if seen.len() >= MOST {
        return "(an operation of the holder)";
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// Converts an error for the wire; paths under `store` travel relative to it.
pub fn to_wire(e: &Error, store: &Path) -> WireError {
    let p = |path: &Path| path_to_wire(path, store);
    match e {
        Error::InvalidKey {
            part,
            value,
            reason,
        } => WireError::InvalidKey {
            namespace_part: *part == KeyPart::Namespace,
            value: value.clone(),
            reason: reason.clone(),
        },
        Error::Conflict {
            namespace,
            key,
            expected,
            actual,
            attempts,
        } => WireError::Conflict {
            namespace: namespace.clone(),
            key: key.clone(),
            expected: *expected,
            actual: *actual,
            attempts: *attempts,
        },
        Error::Decode {
            namespace,
            key,
            type_name,
            message,
        } => WireError::Decode {
            namespace: namespace.clone(),
            key: key.clone(),
            type_name: (*type_name).to_owned(),
            message: message.clone(),
        },
        Error::Encode {
            namespace,
            key,
            message,
        } => WireError::Encode {
            namespace: namespace.clone(),
            key: key.clone(),
            message: message.clone(),
        },
        Error::InvalidValue {
            namespace,
            key,
            message,
        } => WireError::InvalidValue {
            namespace: namespace.clone(),
            key: key.clone(),
            message: message.clone(),
        },
        Error::TooLarge { what, size, limit } => WireError::TooLarge {
            what: what.clone(),
            size: *size as u64,
            limit: *limit as u64,
        },
        Error::Corrupt {
            file,
            offset,
            reason,
        } => WireError::Corrupt {
            file: p(file),
            offset: *offset,
            reason: reason.clone(),
        },
        Error::NotAStore { path, reason } => WireError::NotAStore {
            path: p(path),
            reason: reason.clone(),
        },
        Error::UnsupportedFormat {
            path,
            found,
            supported,
        } => WireError::UnsupportedFormat {
            path: p(path),
            found: *found,
            supported: *supported,
        },
        Error::Busy { path, pid, waited } => WireError::Busy {
            path: p(path),
            pid: *pid,
            waited_micros: u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
        },
        Error::Io { op, path, source } => WireError::Io {
            op: (*op).to_owned(),
            path: p(path),
            source: io_to_wire(source),
        },
        Error::Database {
            op,
            path,
            hint,
            source,
        } => WireError::Database {
            op: (*op).to_owned(),
            path: p(path),
            hint: (*hint).to_owned(),
            source: source.to_string(),
        },
        Error::Poisoned { cause } => WireError::Poisoned {
            cause: cause.clone(),
        },
        Error::Closed => WireError::Closed,
        Error::NotEmpty { revision } => WireError::NotEmpty {
            revision: *revision,
        },
        Error::InvalidOption { name, reason } => WireError::InvalidOption {
            name: (*name).to_owned(),
            reason: reason.clone(),
        },
        Error::InvalidSnapshot {
            line,
            column,
            section,
            message,
        } => WireError::InvalidSnapshot {
            line: *line,
            column: *column,
            section: section.clone(),
            message: message.clone(),
        },
        Error::InvalidBackup { path, reason } => WireError::InvalidBackup {
            path: p(path),
            reason: reason.clone(),
        },
        Error::TargetNotEmpty { path, reason } => WireError::TargetNotEmpty {
            path: p(path),
            reason: reason.clone(),
        },
        Error::Exhausted { record, value } => WireError::Exhausted {
            record: record.clone(),
            value: *value,
        },
        Error::ReadOnly { path, reason } => WireError::ReadOnly {
            path: p(path),
            reason: reason.clone(),
        },
        Error::SnapshotIo { op, source } => WireError::SnapshotIo {
            op: (*op).to_owned(),
            source: io_to_wire(source),
        },
        Error::OutcomeUnknown { path, pid, reason } => WireError::OutcomeUnknown {
            path: p(path),
            pid: *pid,
            reason: reason.clone(),
        },
        Error::Refused { path, pid, reason } => WireError::Refused {
            path: p(path),
            pid: *pid,
            reason: reason.clone(),
        },
        Error::Disconnected { path, pid, reason } => WireError::Disconnected {
            path: p(path),
            pid: *pid,
            reason: reason.clone(),
        },
        Error::Unsupported { what, reason } => WireError::Unsupported {
            what: what.clone(),
            reason: reason.clone(),
        },
        Error::Unreachable {
            endpoints,
            op,
            reason,
        } => WireError::Unreachable {
            endpoints: endpoints.clone(),
            op: (*op).to_owned(),
            reason: reason.clone(),
        },
        Error::LimitExceeded { limit, what, hint } => WireError::LimitExceeded {
            limit: (*limit).to_owned(),
            what: what.clone(),
            hint: hint.clone(),
        },
        Error::Compacted {
            requested,
            compacted,
        } => WireError::Compacted {
            requested: *requested,
            compacted: *compacted,
        },
        Error::Remote {
            endpoint,
            op,
            code,
            message,
        } => WireError::Remote {
            endpoint: endpoint.clone(),
            op: (*op).to_owned(),
            code: code.clone(),
            message: message.clone(),
        },
        Error::WatchCancelled {
            resume_from,
            reason,
        } => WireError::WatchCancelled {
            resume_from: *resume_from,
            reason: reason.clone(),
        },
        Error::PatchFailed {
            namespace,
            key,
            message,
        } => WireError::PatchFailed {
            namespace: namespace.clone(),
            key: key.clone(),
            message: message.clone(),
        },
        Error::RevisionMismatch {
            namespace,
            key,
            expected,
            actual,
        } => WireError::RevisionMismatch {
            namespace: namespace.clone(),
            key: key.clone(),
            expected: *expected,
            actual: *actual,
        },
        Error::Fenced {
            lock,
            token,
            current,
        } => WireError::Fenced {
            lock: lock.clone(),
            token: *token,
            current: *current,
        },
        Error::LockHeld {
            lock,
            token,
            holder,
            waited,
        } => WireError::LockHeld {
            lock: lock.clone(),
            token: *token,
            holder: holder.clone(),
            waited_micros: u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
        },
        Error::LeaseExpired { lease } => WireError::LeaseExpired { lease: *lease },
        Error::IdempotencyKeyReused { key, first } => WireError::IdempotencyKeyReused {
            key: key.clone(),
            first: *first,
        },
        Error::Value {
            message,
            line,
            column,
        } => WireError::Value {
            message: message.clone(),
            line: *line,
            column: *column,
        },
    }
}

/// Rebuilds an error from the wire; paths inside the store are re-rooted on
/// `store`, this process's path of it.
pub fn from_wire(e: WireError, store: &Path) -> Error {
    let p = |path: WirePath| path_from_wire(path, store);
    match e {
        WireError::InvalidKey {
            namespace_part,
            value,
            reason,
        } => Error::InvalidKey {
            part: if namespace_part {
                KeyPart::Namespace
            } else {
                KeyPart::Key
            },
            value,
            reason,
        },
        WireError::Conflict {
            namespace,
            key,
            expected,
            actual,
            attempts,
        } => Error::Conflict {
            namespace,
            key,
            expected,
            actual,
            attempts,
        },
        WireError::Decode {
            namespace,
            key,
            type_name,
            message,
        } => Error::Decode {
            namespace,
            key,
            type_name: intern(type_name),
            message,
        },
        WireError::Encode {
            namespace,
            key,
            message,
        } => Error::Encode {
            namespace,
            key,
            message,
        },
        WireError::InvalidValue {
            namespace,
            key,
            message,
        } => Error::InvalidValue {
            namespace,
            key,
            message,
        },
        WireError::TooLarge { what, size, limit } => Error::TooLarge {
            what,
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        },
        WireError::Corrupt {
            file,
            offset,
            reason,
        } => Error::Corrupt {
            file: p(file),
            offset,
            reason,
        },
        WireError::NotAStore { path, reason } => Error::NotAStore {
            path: p(path),
            reason,
        },
        WireError::UnsupportedFormat {
            path,
            found,
            supported,
        } => Error::UnsupportedFormat {
            path: p(path),
            found,
            supported,
        },
        WireError::Busy {
            path,
            pid,
            waited_micros,
        } => Error::Busy {
            path: p(path),
            pid,
            waited: Duration::from_micros(waited_micros),
        },
        WireError::Io { op, path, source } => Error::Io {
            op: intern(op),
            path: p(path),
            source: io_from_wire(source),
        },
        WireError::Database {
            op,
            path,
            hint,
            source,
        } => Error::Database {
            op: intern(op),
            path: p(path),
            hint: intern(hint),
            source: source.into(),
        },
        WireError::Poisoned { cause } => Error::Poisoned { cause },
        WireError::Closed => Error::Closed,
        WireError::NotEmpty { revision } => Error::NotEmpty { revision },
        WireError::InvalidOption { name, reason } => Error::InvalidOption {
            name: intern(name),
            reason,
        },
        WireError::InvalidSnapshot {
            line,
            column,
            section,
            message,
        } => Error::InvalidSnapshot {
            line,
            column,
            section,
            message,
        },
        WireError::InvalidBackup { path, reason } => Error::InvalidBackup {
            path: p(path),
            reason,
        },
        WireError::TargetNotEmpty { path, reason } => Error::TargetNotEmpty {
            path: p(path),
            reason,
        },
        WireError::Exhausted { record, value } => Error::Exhausted { record, value },
        WireError::ReadOnly { path, reason } => Error::ReadOnly {
            path: p(path),
            reason,
        },
        WireError::SnapshotIo { op, source } => Error::SnapshotIo {
            op: intern(op),
            source: io_from_wire(source),
        },
        WireError::OutcomeUnknown { path, pid, reason } => Error::OutcomeUnknown {
            path: p(path),
            pid,
            reason,
        },
        WireError::Refused { path, pid, reason } => Error::Refused {
            path: p(path),
            pid,
            reason,
        },
        WireError::Disconnected { path, pid, reason } => Error::Disconnected {
            path: p(path),
            pid,
            reason,
        },
        WireError::Unsupported { what, reason } => Error::Unsupported { what, reason },
        WireError::Unreachable {
            endpoints,
            op,
            reason,
        } => Error::Unreachable {
            endpoints,
            op: intern(op),
            reason,
        },
        WireError::LimitExceeded { limit, what, hint } => Error::LimitExceeded {
            limit: intern(limit),
            what,
            hint,
        },
        WireError::Compacted {
            requested,
            compacted,
        } => Error::Compacted {
            requested,
            compacted,
        },
        WireError::Remote {
            endpoint,
            op,
            code,
            message,
        } => Error::Remote {
            endpoint,
            op: intern(op),
            code,
            message,
        },
        WireError::WatchCancelled {
            resume_from,
            reason,
        } => Error::WatchCancelled {
            resume_from,
            reason,
        },
        WireError::PatchFailed {
            namespace,
            key,
            message,
        } => Error::PatchFailed {
            namespace,
            key,
            message,
        },
        WireError::RevisionMismatch {
            namespace,
            key,
            expected,
            actual,
        } => Error::RevisionMismatch {
            namespace,
            key,
            expected,
            actual,
        },
        WireError::Fenced {
            lock,
            token,
            current,
        } => Error::Fenced {
            lock,
            token,
            current,
        },
        WireError::LockHeld {
            lock,
            token,
            holder,
            waited_micros,
        } => Error::LockHeld {
            lock,
            token,
            holder,
            waited: Duration::from_micros(waited_micros),
        },
        WireError::LeaseExpired { lease } => Error::LeaseExpired { lease },
        WireError::IdempotencyKeyReused { key, first } => {
            Error::IdempotencyKeyReused { key, first }
        }
        WireError::Value {
            message,
            line,
            column,
        } => Error::Value {
            message,
            line,
            column,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: &Error) -> Error {
        let holder = Path::new("/srv/holder/store");
        let client = Path::new("../store");
        let wire = to_wire(e, holder);
        let mut bytes = Vec::new();
        super::super::message::encode_into(&wire, &mut bytes).unwrap();
        let back: WireError = super::super::message::decode(&bytes).unwrap();
        assert_eq!(back, wire);
        from_wire(back, client)
    }

    #[test]
    fn errors_keep_their_variant_fields_and_text() {
        let io = Error::io(
            "sync",
            "/srv/holder/store/log/1.log",
            std::io::Error::from_raw_os_error(5),
        );
        let back = round_trip(&io);
        match &back {
            Error::Io { op, path, source } => {
                assert_eq!(*op, "sync");
                assert_eq!(path, Path::new("../store/log/1.log"));
                assert_eq!(source.raw_os_error(), Some(5));
            }
            other => panic!("{other:?}"),
        }
        let conflict = Error::Conflict {
            namespace: "n".into(),
            key: "k".into(),
            expected: 1,
            actual: 2,
            attempts: 1,
        };
        assert_eq!(round_trip(&conflict).to_string(), conflict.to_string());
        let elsewhere = Error::TargetNotEmpty {
            path: "/backups/b".into(),
            reason: "r".into(),
        };
        assert_eq!(round_trip(&elsewhere).to_string(), elsewhere.to_string());
        let value = Error::Value {
            message: "expected a value".into(),
            line: Some(2),
            column: Some(7),
        };
        match round_trip(&value) {
            Error::Value {
                message,
                line: Some(2),
                column: Some(7),
            } => assert_eq!(message, "expected a value"),
            other => panic!("{other:?}"),
        }
        assert_eq!(value.to_string(), "line 2, column 7: expected a value");
        let db = Error::Database {
            op: "read a record",
            path: "/srv/holder/store/state.redb".into(),
            hint: "h",
            source: "broken".into(),
        };
        let back = round_trip(&db);
        assert!(back.to_string().contains("../store/state.redb"), "{back}");
        assert_eq!(
            std::error::Error::source(&back).unwrap().to_string(),
            "broken"
        );
    }

    #[test]
    fn interned_texts_are_kept_once() {
        let a = intern("an op".to_owned());
        let b = intern("an op".to_owned());
        assert!(std::ptr::eq(a, b));
    }
}
