//! The one error type of the library, and its `Result` alias.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The result type of every fallible statelog operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of a record address was rejected by [`Error::InvalidKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// The namespace.
    Namespace,
    /// The key inside a namespace.
    Key,
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyPart::Namespace => "namespace",
            KeyPart::Key => "key",
        })
    }
}

/// Everything that can go wrong in statelog.
///
/// Each message says what happened, where, and what to do about it. Causes from
/// the operating system or the database file are attached as the error's
/// [`source`](std::error::Error::source), not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A namespace or key is empty, too long, or contains a control character.
    #[error("invalid {part} {value:?}: {reason}")]
    InvalidKey {
        /// Which part was rejected.
        part: KeyPart,
        /// The rejected text (shortened when very long).
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A precondition on a record's version did not hold: a compare-and-swap or a
    /// transaction lost a race, or `update` gave up after its retries.
    ///
    /// Version 0 stands for "does not exist".
    #[error("conflict on {namespace}/{key}: {}{}", describe_conflict(*.expected, *.actual),
        retry_hint(*.attempts))]
    Conflict {
        /// Namespace of the record.
        namespace: String,
        /// Key of the record.
        key: String,
        /// The version the caller expected (0: absent).
        expected: u64,
        /// The version the record had (0: absent).
        actual: u64,
        /// How many attempts were made before giving up (1 for a plain compare-and-swap).
        attempts: u32,
    },

    /// A stored value could not be decoded as the requested type.
    #[error("cannot decode {namespace}/{key} as {type_name}: {message}")]
    Decode {
        /// Namespace of the record.
        namespace: String,
        /// Key of the record.
        key: String,
        /// The Rust type that was requested.
        type_name: &'static str,
        /// What the decoder reported.
        message: String,
    },

    /// A value could not be encoded (its `Serialize` implementation failed).
    #[error("cannot encode the value for {namespace}/{key}: {message}")]
    Encode {
        /// Namespace of the record.
        namespace: String,
        /// Key of the record.
        key: String,
        /// What the encoder reported.
        message: String,
    },

    /// Raw bytes handed in as a value are not one complete MessagePack value.
    #[error("the value for {namespace}/{key} is not valid MessagePack: {message}")]
    InvalidValue {
        /// Namespace of the record.
        namespace: String,
        /// Key of the record.
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// A value or a transaction exceeds a documented size limit.
    #[error("{what} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// A file of the store is damaged: a checksum failed, a revision is missing, or a
    /// header is not what it must be. Nothing was changed; see the reason for what to do.
    #[error("{} is corrupt at byte {offset}: {reason}", .file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// What is wrong, and what can be done about it.
        reason: String,
    },

    /// The directory exists but does not hold a statelog store.
    #[error("{} is not a statelog store: {reason}", .path.display())]
    NotAStore {
        /// The directory that was opened.
        path: PathBuf,
        /// Why it is not taken to be a store.
        reason: String,
    },

    /// A file of the store was written by a newer statelog than this one.
    #[error("{} has format version {found}, but this statelog reads versions up to {supported}; \
        open it with a newer statelog", .path.display())]
    UnsupportedFormat {
        /// The file with the unknown format.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this build understands.
        supported: u64,
    },

    /// Another handle (in this or another process) has the store open, or
    /// another backup is writing into the same backup directory, and it was not
    /// released within the lock wait.
    #[error("{} is in use by {} (waited {waited:?}); wait for it to finish, or raise \
        the lock wait", .path.display(), describe_holder(*.pid))]
    Busy {
        /// The store (or backup) directory.
        path: PathBuf,
        /// The process id of the holder, when it could be read.
        pid: Option<u32>,
        /// How long this open waited.
        waited: Duration,
    },

    /// An operating-system call on one of the store's files failed.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The embedded database file reported an error.
    #[error("the state database {} failed while trying to {op}; {hint}", .path.display())]
    Database {
        /// What was being done.
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// What the user can do about it.
        hint: &'static str,
        /// The database's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A write to the log or a sync failed earlier. The outcome of the commits in
    /// flight at that moment is unknown until the store is reopened, and this handle
    /// refuses further writes (a failed sync may have dropped data the kernel
    /// reported as written).
    #[error(
        "the store refuses writes after an earlier failure ({cause}); close and reopen it \
        to recover"
    )]
    Poisoned {
        /// What failed first.
        cause: String,
    },

    /// The store was closed through another handle.
    #[error("the store has been closed")]
    Closed,

    /// The operation needs an empty store, and this one holds records.
    #[error("the store is not empty (revision {revision}); restore needs an empty store")]
    NotEmpty {
        /// The store's current revision.
        revision: u64,
    },

    /// An option has a value that cannot work.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// What is wrong with the value.
        reason: String,
    },

    /// A snapshot given to import is not valid: broken JSON, a Markdown section
    /// without its value, a duplicate record, an unknown format version, a value
    /// that cannot be stored. Nothing was imported.
    #[error("invalid snapshot at {}: {message}; nothing was imported",
        describe_place(*.line, *.column, .section.as_deref()))]
    InvalidSnapshot {
        /// Line of the input, from 1 (0 if the input ended before anything was read).
        line: u64,
        /// Column in that line, from 1, in characters, when known.
        column: Option<u64>,
        /// The Markdown section or the record concerned, when known.
        section: Option<String>,
        /// What is wrong, and how to put it right.
        message: String,
    },

    /// A backup cannot be used: its manifest is missing or does not match its
    /// files, a file is damaged or belongs to another store, revisions are
    /// missing, it does not reach the requested point, or it holds a history
    /// that diverged from the store's. Nothing was changed; the reason says what
    /// to do.
    #[error("the backup at {} cannot be used: {reason}", .path.display())]
    InvalidBackup {
        /// The backup directory (or the file in it that is wrong).
        path: PathBuf,
        /// What is wrong, and what to do about it.
        reason: String,
    },

    /// A restore's target directory already holds something, and overwriting
    /// was not asked for, or it holds something that is not a store. Nothing
    /// was changed.
    #[error("{} cannot be restored into: {reason}", .path.display())]
    TargetNotEmpty {
        /// The target directory.
        path: PathBuf,
        /// What it holds, and what to do.
        reason: String,
    },

    /// The reader a snapshot is imported from, or the writer it is exported to,
    /// failed.
    #[error("cannot {op} the snapshot stream")]
    SnapshotIo {
        /// What was being done: "read" or "write".
        op: &'static str,
        /// The reader's or writer's error.
        #[source]
        source: std::io::Error,
    },

    /// No member of the etcd cluster answered within the time allowed (every
    /// endpoint was tried). A write was not applied.
    #[error(
        "cannot reach etcd at {endpoints} to {op} ({reason}); check that the cluster is \
        running and reachable from here, or raise the timeout"
    )]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What was being done.
        op: &'static str,
        /// The last failure seen.
        reason: String,
    },

    /// A write reached etcd but its answer did not come back (the connection
    /// broke, the member lost its leader, or the request timed out inside the
    /// cluster): it may or may not have been applied.
    #[error(
        "the outcome of {op} on etcd at {endpoint} is unknown ({reason}); read what it \
        wrote to find out before retrying"
    )]
    OutcomeUnknown {
        /// The member the request went to.
        endpoint: String,
        /// What was being done.
        op: &'static str,
        /// What broke.
        reason: String,
    },

    /// A commit exceeds a limit of the etcd cluster (operations per
    /// transaction, request size, or the database quota). Nothing was written.
    #[error("{what} exceeds etcd's {limit}; nothing was written; {hint}")]
    LimitExceeded {
        /// The limit, named as etcd's option (`--max-txn-ops`, `--max-request-bytes`,
        /// `--quota-backend-bytes`).
        limit: &'static str,
        /// What exceeded it, with the figures.
        what: String,
        /// How to get under it or raise it.
        hint: String,
    },

    /// A read or watch asked for a revision that etcd no longer keeps: its
    /// history was compacted past it.
    #[error("revision {requested} is no longer available: etcd compacted its history{}; \
        read again from the current revision", describe_compacted(*.compacted))]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The revision the history was compacted to, when etcd said.
        compacted: Option<u64>,
    },

    /// etcd refused the credentials, or the user may not do what was asked.
    #[error("etcd at {endpoint} refused {what}: {reason}")]
    AccessDenied {
        /// The member that refused.
        endpoint: String,
        /// What was refused.
        what: String,
        /// etcd's reason, and what to do.
        reason: String,
    },

    /// etcd answered with an error not covered by another variant.
    #[error("etcd at {endpoint} failed to {op}: {message} (gRPC status {code})")]
    Remote {
        /// The member that answered.
        endpoint: String,
        /// What was being done.
        op: &'static str,
        /// The gRPC status code.
        code: String,
        /// etcd's message.
        message: String,
    },
}

fn describe_compacted(compacted: Option<u64>) -> String {
    compacted.map_or_else(String::new, |c| format!(" up to revision {c}"))
}

fn describe_place(line: u64, column: Option<u64>, section: Option<&str>) -> String {
    let mut out = match (line, column) {
        (0, _) => "the end of the input".to_owned(),
        (line, Some(column)) => format!("line {line}, column {column}"),
        (line, None) => format!("line {line}"),
    };
    if let Some(section) = section {
        out.push_str(&format!(" ({section})"));
    }
    out
}

fn describe_conflict(expected: u64, actual: u64) -> String {
    match (expected, actual) {
        (0, a) => format!("expected it to be absent, but it exists at version {a}"),
        (e, 0) => format!("expected version {e}, but it does not exist"),
        (e, a) => format!("expected version {e}, but it is at version {a}"),
    }
}

fn retry_hint(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts; the record is heavily contended)")
    } else {
        "; re-read it and retry".to_owned()
    }
}

fn describe_holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) if pid == std::process::id() => {
            format!("another handle in this process (pid {pid})")
        }
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

impl Error {
    /// True for [`Error::Conflict`]: the caller may re-read and try again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// A copy of this error for the other commits of a failed batch. Sources that
    /// cannot be cloned are carried over as their text.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::InvalidKey {
                part,
                value,
                reason,
            } => Error::InvalidKey {
                part: *part,
                value: value.clone(),
                reason: reason.clone(),
            },
            Error::Conflict {
                namespace,
                key,
                expected,
                actual,
                attempts,
            } => Error::Conflict {
                namespace: namespace.clone(),
                key: key.clone(),
                expected: *expected,
                actual: *actual,
                attempts: *attempts,
            },
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Database {
                op,
                path,
                hint,
                source,
            } => Error::Database {
                op,
                path: path.clone(),
                hint,
                source: source.to_string().into(),
            },
            Error::Corrupt {
                file,
                offset,
                reason,
            } => Error::corrupt(file.clone(), *offset, reason.clone()),
            Error::Poisoned { cause } => Error::Poisoned {
                cause: cause.clone(),
            },
            Error::TooLarge { what, size, limit } => Error::TooLarge {
                what: what.clone(),
                size: *size,
                limit: *limit,
            },
            Error::NotEmpty { revision } => Error::NotEmpty {
                revision: *revision,
            },
            Error::Closed => Error::Closed,
            other => Error::Poisoned {
                cause: other.to_string(),
            },
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_messages_say_what_was_expected() {
        let e = Error::Conflict {
            namespace: "tasks".into(),
            key: "t1".into(),
            expected: 0,
            actual: 3,
            attempts: 1,
        };
        let s = e.to_string();
        assert!(s.contains("tasks/t1"), "{s}");
        assert!(s.contains("expected it to be absent"), "{s}");
        assert!(s.contains("re-read"), "{s}");
        let e = Error::Conflict {
            namespace: "tasks".into(),
            key: "t1".into(),
            expected: 2,
            actual: 0,
            attempts: 100,
        };
        let s = e.to_string();
        assert!(s.contains("does not exist"), "{s}");
        assert!(s.contains("100 attempts"), "{s}");
    }

    #[test]
    fn busy_names_the_holder() {
        let e = Error::Busy {
            path: "/s".into(),
            pid: Some(1),
            waited: Duration::from_secs(2),
        };
        assert!(e.to_string().contains("process 1"));
    }
}
