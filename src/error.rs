//! The one error type of the library, and its `Result` alias.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
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
    #[error("invalid {part} \"{}\": {reason}", Shown::new(.value))]
    InvalidKey {
        /// Which part was rejected.
        part: KeyPart,
        /// The rejected text (the message shows it escaped and shortened).
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A precondition on a record's version did not hold: a compare-and-swap or a
    /// transaction lost a race, or `update` gave up after its retries.
    ///
    /// Version 0 stands for "does not exist".
    #[error("conflict on {}/{}: {}{}", Shown::new(.namespace), Shown::new(.key),
        describe_conflict(*.expected, *.actual), retry_hint(*.attempts))]
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
    #[error("cannot decode {}/{} as {type_name}: {message}", Shown::new(.namespace),
        Shown::new(.key))]
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
    #[error("cannot encode the value for {}/{}: {message}", Shown::new(.namespace),
        Shown::new(.key))]
    Encode {
        /// Namespace of the record.
        namespace: String,
        /// Key of the record.
        key: String,
        /// What the encoder reported.
        message: String,
    },

    /// Raw bytes handed in as a value are not one complete MessagePack value.
    #[error("the value for {}/{} is not valid MessagePack: {message}", Shown::new(.namespace),
        Shown::new(.key))]
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
    #[error("{} is corrupt at byte {offset}: {reason}", Shown::path(.file))]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// What is wrong, and what can be done about it.
        reason: String,
    },

    /// The directory exists but does not hold a statelog store.
    #[error("{} is not a statelog store: {reason}", Shown::path(.path))]
    NotAStore {
        /// The directory that was opened.
        path: PathBuf,
        /// Why it is not taken to be a store.
        reason: String,
    },

    /// A file of the store was written by a newer statelog than this one.
    #[error("{} has format version {found}, but this statelog reads versions up to {supported}; \
        open it with a newer statelog", Shown::path(.path))]
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
        the lock wait", Shown::path(.path), describe_holder(*.pid))]
    Busy {
        /// The store (or backup) directory.
        path: PathBuf,
        /// The process id of the holder, when it could be read.
        pid: Option<u32>,
        /// How long this open waited.
        waited: Duration,
    },

    /// An operating-system call on one of the store's files failed.
    #[error("cannot {op} {}", Shown::path(.path))]
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
    #[error("the state database {} failed while trying to {op}; {hint}", Shown::path(.path))]
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

    /// The store was opened read-only because its file system takes no writes
    /// (it is full, over quota, or mounted read-only): reads, exports and
    /// backups work; every change is refused and nothing is written.
    #[error("the store at {} is open read-only ({reason}); nothing was changed: free space on \
        its disk (or make it writable) and open it again to write", .path.display())]
    ReadOnly {
        /// The store directory.
        path: PathBuf,
        /// Why it could not be opened for writing.
        reason: String,
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
    #[error("the backup at {} cannot be used: {reason}", Shown::path(.path))]
    InvalidBackup {
        /// The backup directory (or the file in it that is wrong).
        path: PathBuf,
        /// What is wrong, and what to do about it.
        reason: String,
    },

    /// A restore's target directory already holds something, and overwriting
    /// was not asked for, or it holds something that is not a store. Nothing
    /// was changed.
    #[error("{} cannot be restored into: {reason}", Shown::path(.path))]
    TargetNotEmpty {
        /// The target directory.
        path: PathBuf,
        /// What it holds, and what to do.
        reason: String,
    },

    /// A revision or version reached the highest value a store counts to
    /// ([`MAX_REVISION`](crate::MAX_REVISION), [`MAX_VERSION`](crate::MAX_VERSION)).
    /// The commit was refused and nothing was written; no counter ever wraps.
    /// Ordinary use never gets here (imports start counters at most at
    /// [`MAX_IMPORTED_REVISION`](crate::MAX_IMPORTED_REVISION)).
    #[error("{} is at {value}, the highest a store counts to; nothing was written. Copy the \
        records into a new store with a merge import (`statelog export`, then `statelog import \
        --mode merge` into the new store), which starts the counters again",
        describe_counter(.record.as_ref()))]
    Exhausted {
        /// The record whose version is exhausted, as (namespace, key); `None`
        /// for the store's revision.
        record: Option<(String, String)>,
        /// The counter's value.
        value: u64,
    },

    /// A commit (or a restore) was sent, and what would have said whether it
    /// was applied never came: the process holding the store went away or
    /// stopped answering, or (a store on etcd) the member it went to failed,
    /// lost its leader or timed out. It may or may not have been applied.
    /// Nothing is retried for you: read what it would have written before
    /// doing it again (an increment must not count twice). The command line
    /// exits with 6.
    #[error("the outcome of a commit to {} is unknown: {}; read what the commit writes to \
        find out whether it was applied before retrying it", Shown::path(.path),
        Shown::whole(.reason))]
    OutcomeUnknown {
        /// The store: its directory, or its `etcd://` address.
        path: PathBuf,
        /// The process id of the holder, when known (`None` on etcd).
        pid: Option<u32>,
        /// What happened, naming who: "process 12 holds the store and went
        /// away before answering", "etcd member 10.0.0.2:2379 failed ...".
        reason: String,
    },

    /// The process holding the store, or the etcd cluster holding it, refused
    /// this one: another user the store directory does not grant access,
    /// another protocol version, too many connections, an operation the
    /// holder performs only for its own user; on etcd, wrong or missing
    /// credentials, or a user without permission on the store's prefix.
    #[error("{} refused this process: {}", describe_refuser(.path, *.pid),
        Shown::whole(.reason))]
    Refused {
        /// The store: its directory, or its `etcd://` address.
        path: PathBuf,
        /// The process id of the holder, when known (`None` on etcd).
        pid: Option<u32>,
        /// Why, and what to do.
        reason: String,
    },

    /// The connection to the process holding the store was lost while it kept
    /// something for this handle: a snapshot being read (start again with a
    /// new one; `Store::transaction` does that by itself), or an answer that
    /// could not be read.
    #[error("lost the connection to {}, which holds {}: {}", describe_holder(*.pid),
        Shown::path(.path), Shown::whole(.reason))]
    Disconnected {
        /// The store directory.
        path: PathBuf,
        /// The process id of the holder, when known.
        pid: Option<u32>,
        /// What happened, and what was lost.
        reason: String,
    },

    /// The operation is not available through the way this handle reaches the
    /// store.
    #[error("{what} is not supported here: {reason}")]
    Unsupported {
        /// The operation.
        what: String,
        /// Why, and what to do instead.
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
    #[error("cannot reach etcd at {} to {op} ({}); check that the cluster is running and \
        reachable from here, or raise the timeout", Shown::new(.endpoints), Shown::whole(.reason))]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What was being done.
        op: &'static str,
        /// The last failure seen.
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

    /// A read or watch asked for a revision the store no longer keeps: log
    /// retention removed it (an embedded store), or etcd compacted its
    /// history past it.
    #[error("revision {requested} is no longer available: the store's history was compacted{}; \
        read or watch from a later revision", describe_compacted(*.compacted))]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The first revision still available, when known.
        compacted: Option<u64>,
    },

    /// A watch ended before its watcher dropped it: it fell too far behind
    /// (its buffer filled), the store was closed, or its holder went away.
    /// Watching again from `resume_from` misses nothing and repeats nothing.
    #[error("the watch was cancelled: {}; watch again from revision {resume_from} to miss nothing",
        Shown::whole(.reason))]
    WatchCancelled {
        /// The first revision the watcher did not get.
        resume_from: u64,
        /// Why.
        reason: String,
    },

    /// etcd answered with an error not covered by another variant.
    #[error("etcd at {} failed to {op}: {} (gRPC status {code})", Shown::new(.endpoint),
        Shown::whole(.message))]
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

    /// A patch could not be applied to the record's value at commit (a path
    /// through something that is not an object, adding to something that is
    /// not a number, an overflow); nothing was written.
    #[error("cannot patch {}/{}: {}; nothing was written", Shown::new(.namespace),
        Shown::new(.key), Shown::whole(.message))]
    PatchFailed {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
        /// What is wrong.
        message: String,
    },

    /// A precondition on a record's modification revision failed at commit.
    #[error("{}/{} {}; nothing was written; re-read it and decide again",
        Shown::new(.namespace), Shown::new(.key), describe_revisions(*.expected, *.actual))]
    RevisionMismatch {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
        /// The revision required (0: absent).
        expected: u64,
        /// The record's modification revision (0: absent).
        actual: u64,
    },

    /// A write fenced by a lock found the lock no longer held with the token
    /// it carried: its holder lost it (its lease ended) and somebody else may
    /// hold it now. Nothing was written.
    #[error("lock \"{}\" is not held with token {token} any more ({}); nothing was written: \
        the holder lost the lock (its lease ended), so stop and take the lock again",
        Shown::new(.lock), describe_fence(*.current))]
    Fenced {
        /// The lock.
        lock: String,
        /// The token the write carried.
        token: u64,
        /// The token of whoever holds it now, if anybody does.
        current: Option<u64>,
    },

    /// A lock is held by somebody else (after waiting `waited`).
    #[error("lock \"{}\" is held by {} (token {token}){}", Shown::new(.lock),
        Shown::new(.holder), describe_lock_wait(*.waited))]
    LockHeld {
        /// The lock.
        lock: String,
        /// The holder's fencing token.
        token: u64,
        /// Who holds it (as its lease says).
        holder: String,
        /// How long this caller waited.
        waited: Duration,
    },

    /// A lease is gone: it ended (revoked, or not kept alive within its TTL),
    /// and with it its locks and the records bound to it.
    #[error(
        "lease {lease:016x} has ended (it was revoked, or not kept alive within its TTL); \
        its locks and the records bound to it are gone: take a new lease"
    )]
    LeaseExpired {
        /// The lease.
        lease: u64,
    },

    /// An idempotency key was used before for a different request.
    #[error("the idempotency key \"{}\" was used for a different request{}; nothing was \
        written: use a new key for a new request", Shown::new(.key), describe_first(*.first))]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The revision of the first request's commit, if it wrote one.
        first: Option<u64>,
    },

    /// A value outside any record is not what was asked of it: bytes that
    /// are not one valid MessagePack value, a value that is not of the type
    /// asked for or cannot be encoded, JSON text that is not a value statelog
    /// can store, a value JSON cannot show (the functions of
    /// [`RawValue`](crate::RawValue)). A record's own value is
    /// [`Error::Decode`] or [`Error::InvalidValue`], naming the record.
    #[error("{}{message}", describe_json_place(*.line, *.column))]
    Value {
        /// What is wrong (for MessagePack, with the byte it is at).
        message: String,
        /// For JSON text: the line of the problem, from 1; 0 when the text
        /// ended early.
        line: Option<u64>,
        /// For JSON text: the column of the problem, from 1.
        column: Option<u64>,
    },
}

/// "line L, column C: " before a message about JSON text.
fn describe_json_place(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(0), _) => "at the end of the input: ".to_owned(),
        (Some(line), Some(column)) => format!("line {line}, column {column}: "),
        (Some(line), None) => format!("line {line}: "),
        (None, _) => String::new(),
    }
}

impl Error {
    /// An [`Error::Value`] without a place.
    pub(crate) fn value(message: impl Into<String>) -> Error {
        Error::Value {
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

fn describe_revisions(expected: u64, actual: u64) -> String {
    match (expected, actual) {
        (0, a) => format!("was to be absent, but exists (modified at revision {a})"),
        (e, 0) => format!("was to be at revision {e}, but does not exist"),
        (e, a) => format!("was to be at revision {e}, but was modified at revision {a}"),
    }
}

fn describe_fence(current: Option<u64>) -> String {
    match current {
        Some(t) => format!("it is held with token {t} now"),
        None => "nobody holds it now".to_owned(),
    }
}

fn describe_lock_wait(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!("; waited {:.1} s", waited.as_secs_f64())
    }
}

fn describe_first(first: Option<u64>) -> String {
    first.map_or_else(String::new, |r| {
        format!(" (first committed at revision {r})")
    })
}

fn describe_compacted(compacted: Option<u64>) -> String {
    compacted.map_or_else(String::new, |c| {
        format!(" (the first revision still available is {c})")
    })
}

fn describe_place(line: u64, column: Option<u64>, section: Option<&str>) -> String {
    let mut out = match (line, column) {
        (0, _) => "the end of the input".to_owned(),
        (line, Some(column)) => format!("line {line}, column {column}"),
        (line, None) => format!("line {line}"),
    };
    if let Some(section) = section {
        out.push_str(&format!(" ({})", Shown::new(section)));
    }
    out
}

fn describe_counter(record: Option<&(String, String)>) -> String {
    match record {
        Some((namespace, key)) => format!(
            "the version of {}/{}",
            Shown::new(namespace),
            Shown::new(key)
        ),
        None => "the store's revision".to_owned(),
    }
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

/// Who refused: the holder of a store directory, or the store (an etcd
/// cluster's address names itself).
fn describe_refuser(path: &Path, pid: Option<u32>) -> String {
    match pid {
        Some(_) => format!("{} holds {} and", describe_holder(pid), Shown::path(path)),
        None => Shown::path(path).to_string(),
    }
}

pub(crate) fn describe_holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) if pid == std::process::id() => {
            format!("another handle in this process (pid {pid})")
        }
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

/// Text from outside the store (a key, a namespace, a value, a file name) as
/// messages show it: control characters escaped (`\n`, `\u{1b}`) and so are
/// the characters that reorder text on screen (U+202A to U+202E, U+2066 to
/// U+2069), so that the text cannot break a line, drive a terminal or disguise
/// itself; and text longer than [`Shown::LIMIT`] characters shortened in the
/// middle, with its length in bytes. Every message of the library and of the
/// command line shows such text through this.
///
/// ```
/// use statelog::Shown;
/// assert_eq!(Shown::new("a\nb\u{1b}[31m").to_string(), "a\\nb\\u{1b}[31m");
/// let long = Shown::new(&"k".repeat(100_000)).to_string();
/// assert!(long.len() < 200 && long.contains("100000 bytes"), "{long}");
/// assert_eq!(Shown::new("tasks").to_string(), "tasks");
/// ```
#[derive(Debug, Clone)]
pub struct Shown<'a> {
    text: Cow<'a, str>,
    shorten: bool,
}

impl<'a> Shown<'a> {
    /// Longest text shown whole, in characters.
    pub const LIMIT: usize = 120;
    /// Characters kept from the start of a shortened text.
    const HEAD: usize = 80;
    /// Characters kept from its end.
    const TAIL: usize = 24;

    /// `text`, escaped and shortened.
    pub fn new(text: &'a str) -> Shown<'a> {
        Shown {
            text: Cow::Borrowed(text),
            shorten: true,
        }
    }

    /// A path, escaped and shortened (not UTF-8: with replacement characters).
    pub fn path(path: &'a Path) -> Shown<'a> {
        Shown {
            text: path.to_string_lossy(),
            shorten: true,
        }
    }

    /// `text` escaped but never shortened: for a whole message, whose parts
    /// were shortened where they were put in.
    pub fn whole(text: &'a str) -> Shown<'a> {
        Shown {
            text: Cow::Borrowed(text),
            shorten: false,
        }
    }

    fn escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control()
                    || ('\u{202a}'..='\u{202e}').contains(&c)
                    || ('\u{2066}'..='\u{2069}').contains(&c) =>
                {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?;
                }
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// `text` in double quotes, as messages show it (see [`Shown`]).
pub(crate) fn quote(text: &str) -> String {
    format!("\"{}\"", Shown::new(text))
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text.as_ref();
        if !self.shorten || text.chars().nth(Shown::LIMIT).is_none() {
            return Shown::escaped(f, text);
        }
        let head_end = text
            .char_indices()
            .nth(Shown::HEAD)
            .map_or(text.len(), |(at, _)| at);
        let tail_start = text
            .char_indices()
            .rev()
            .nth(Shown::TAIL - 1)
            .map_or(0, |(at, _)| at);
        Shown::escaped(f, &text[..head_end])?;
        write!(f, "…({} bytes in all)…", text.len())?;
        Shown::escaped(f, &text[tail_start..])
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
            Error::Exhausted { record, value } => Error::Exhausted {
                record: record.clone(),
                value: *value,
            },
            Error::ReadOnly { path, reason } => Error::ReadOnly {
                path: path.clone(),
                reason: reason.clone(),
            },
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

/// The error and its sources, on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
    fn user_text_is_escaped_and_shortened_in_every_message() {
        let key = format!("a\nb\u{1b}[31m{}", "x".repeat(100_000));
        let errors = [
            Error::InvalidKey {
                part: KeyPart::Key,
                value: key.clone(),
                reason: "no".into(),
            },
            Error::Conflict {
                namespace: "n\r".into(),
                key: key.clone(),
                expected: 0,
                actual: 1,
                attempts: 1,
            },
            Error::io("open", PathBuf::from(&key), std::io::Error::other("x")),
            Error::InvalidSnapshot {
                line: 3,
                column: None,
                section: Some(key.clone()),
                message: "bad".into(),
            },
            Error::Exhausted {
                record: Some(("n".into(), key.clone())),
                value: 7,
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.len() < 1_000, "{} bytes", text.len());
            assert!(!text.chars().any(char::is_control), "{text}");
            assert!(text.contains("a\\nb\\u{1b}[31m"), "{text}");
        }
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
