//! The messages of the protocol: plain types of their own, encoded as
//! MessagePack maps with named fields (so that a later version can add
//! optional fields), never the engine's types. `convert.rs` and `error.rs`
//! translate.
//!
//! A connection starts with a [`ClientHello`] answered by a [`ServerHello`];
//! then the client sends one [`Request`] at a time and reads [`Response`]s
//! until a final one (anything but [`Response::Progress`]). [`Request::Unpin`]
//! has no answer.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// What every client hello starts with.
pub const MAGIC: &str = "statelog";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first message of a connection, from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// Always [`MAGIC`].
    pub magic: String,
    /// The client's protocol version.
    pub version: u32,
    /// The store the client means (32 hex digits, from its identity file).
    pub store_id: String,
    /// The client's process id (for the holder's log and messages).
    pub pid: u32,
    /// What the connection is for.
    pub purpose: Purpose,
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Requests and their answers, one at a time.
    Requests,
}

/// The holder's answer to a [`ClientHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerHello {
    /// Requests may follow.
    Welcome {
        /// The holder's protocol version.
        version: u32,
        /// The store it holds.
        store_id: String,
        /// The holder's process id.
        pid: u32,
        /// Why the holder has the store read-only, if it does.
        #[serde(default)]
        read_only: Option<String>,
    },
    /// The connection is refused and closed.
    Refused {
        /// The holder's protocol version.
        version: u32,
        /// The holder's process id.
        pid: u32,
        /// Why, for the client's error message.
        reason: String,
    },
}

/// A bound of a range of encoded addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bound {
    /// From or up to this address, included.
    Included(ByteBuf),
    /// From or up to this address, excluded.
    Excluded(ByteBuf),
    /// No bound.
    Unbounded,
}

/// A record's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Version.
    pub version: u64,
    /// Create revision.
    pub created: u64,
    /// Modify revision.
    pub modified: u64,
    /// Update time, microseconds since the Unix epoch.
    pub updated: i64,
}

/// A record: metadata and value (MessagePack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Metadata.
    pub meta: Meta,
    /// The value.
    pub value: ByteBuf,
}

/// A record of a range, with its encoded address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `namespace 0x00 key`.
    pub address: ByteBuf,
    /// Metadata.
    pub meta: Meta,
    /// The value.
    pub value: ByteBuf,
}

/// A precondition of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The record.
    pub address: ByteBuf,
    /// Its version (0: absent).
    pub expected: u64,
    /// Its modify revision, when the commit depends on the very write read.
    #[serde(default)]
    pub modified: Option<u64>,
}

/// A write of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// The record.
    pub address: ByteBuf,
    /// The new value; `None` deletes.
    pub value: Option<ByteBuf>,
    /// Skip a put whose value equals the stored one.
    #[serde(default)]
    pub skip_unchanged: bool,
}

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// The record now has `meta`.
    Put {
        /// Its metadata.
        meta: Meta,
        /// False when skipped as unchanged.
        changed: bool,
    },
    /// The record, at `version`, was removed.
    Deleted {
        /// The version it had.
        version: u64,
    },
    /// There was nothing to delete.
    Absent,
}

/// Counters of the holder's store (see [`crate::Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Current revision.
    pub revision: u64,
    /// Revision of the last checkpoint.
    pub checkpoint_revision: u64,
    /// Commits since the holder opened the store.
    pub commits: u64,
    /// Group commits.
    pub batches: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// Commits replayed when the holder opened the store.
    pub replayed_on_open: u64,
    /// Log bytes written.
    pub log_bytes: u64,
    /// Connections the holder serves.
    #[serde(default)]
    pub clients: u64,
    /// Snapshots pinned by them.
    #[serde(default)]
    pub pinned: u64,
    /// The first revision the store can read back.
    #[serde(default)]
    pub first_revision: u64,
}

/// What a backup run did (see [`crate::backup::BackupReport`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The backup directory (as the holder names it).
    pub destination: ByteBuf,
    /// The store's id.
    pub store_id: String,
    /// A first run.
    pub full: bool,
    /// The base's revision.
    pub base_revision: u64,
    /// The last revision the backup holds.
    pub revision: u64,
    /// Its commit time (µs).
    pub time: i64,
    /// Records in the base written.
    pub base_records: u64,
    /// Bytes of the base written.
    pub base_bytes: u64,
    /// Segments copied or extended.
    pub segments_copied: u64,
    /// Bytes written in all.
    pub bytes_copied: u64,
    /// Of those, log bytes.
    pub log_bytes_copied: u64,
    /// The backup's size.
    pub backup_bytes: u64,
    /// How long the run took (µs).
    pub duration_micros: u64,
}

/// A record of a restore, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// `namespace 0x00 key`.
    pub address: ByteBuf,
    /// The metadata it keeps.
    pub meta: Meta,
    /// The value.
    pub value: ByteBuf,
}

/// A request of the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The revision readers see now. Answer: [`Reply::Revision`].
    Revision,
    /// One record as readers see it now. Answer: [`Reply::Record`].
    Get {
        /// The record.
        address: ByteBuf,
    },
    /// Pins a snapshot on this connection (replacing one pinned before) for
    /// the `View*` requests. Answer: [`Reply::Pinned`].
    Pin,
    /// Releases the pinned snapshot. No answer.
    Unpin,
    /// One record of the pinned snapshot. Answer: [`Reply::Record`].
    ViewGet {
        /// The record.
        address: ByteBuf,
    },
    /// Records of the pinned snapshot in address order, from `start`, at most
    /// `limit` (the holder may send fewer). Answer: [`Reply::Page`].
    ViewRange {
        /// Lower bound.
        start: Bound,
        /// Upper bound.
        end: Bound,
        /// Most entries wanted.
        limit: u32,
    },
    /// The namespaces of the pinned snapshot. Answer: [`Reply::Namespaces`].
    ViewNamespaces,
    /// How many records of the pinned snapshot lie in a range. Answer:
    /// [`Reply::Count`].
    ViewCount {
        /// Lower bound.
        start: Bound,
        /// Upper bound.
        end: Bound,
    },
    /// A commit: all writes at one new revision if every check holds.
    /// Answer: [`Reply::Committed`].
    Commit {
        /// Preconditions.
        checks: Vec<Check>,
        /// Writes, at most one per address.
        writes: Vec<Write>,
    },
    /// Loads records into an empty store. Answer: [`Reply::Restored`].
    Restore {
        /// The store's revision afterwards.
        revision: u64,
        /// Its commit time (µs).
        time: i64,
        /// The records.
        records: Vec<RestoreRecord>,
    },
    /// A checkpoint now. Answer: [`Reply::Done`].
    Checkpoint,
    /// The holder's counters. Answer: [`Reply::Stats`].
    Stats,
    /// A backup into `dest` (an absolute path), written by the holder.
    /// Answers: [`Response::Progress`] as it goes, then [`Reply::Backup`].
    Backup {
        /// The backup directory.
        dest: ByteBuf,
    },
    /// Makes this connection a watch: answered by [`Reply::Watching`] (or
    /// the error, such as a compacted starting revision), then
    /// [`Response::Watch`] messages until the watch ends with
    /// [`Response::Failed`]. The client ends it by closing the connection.
    Watch {
        /// What to watch.
        scope: WatchScope,
        /// The first revision wanted; `None`: the next commit.
        from: Option<u64>,
        /// Whether events carry the record's previous version.
        prev: bool,
        /// Batches the holder may queue for this watch.
        buffer: u64,
    },
    /// Pins a snapshot of the past (a revision, or the commits before a
    /// time in µs), like [`Request::Pin`]. Answer: [`Reply::Pinned`].
    PinAt {
        /// The revision.
        revision: Option<u64>,
        /// The time.
        time: Option<i64>,
    },
    /// Every version of a record the store holds. Answer:
    /// [`Reply::History`].
    History {
        /// The record.
        address: ByteBuf,
    },
    /// A commit with patches or coordination (fences, revision
    /// preconditions, an idempotency key, a lease, a lock). Answer:
    /// [`Reply::CommittedWith`]. (A holder that does not know it refuses it,
    /// rather than ignoring what it asks for.)
    CommitWith {
        /// Preconditions on versions.
        checks: Vec<Check>,
        /// Writes, at most one per address.
        writes: Vec<WriteWith>,
        /// The coordination parts.
        coord: Coord,
    },
    /// A new lease. Answer: [`Reply::Lease`].
    LeaseGrant {
        /// Its TTL (µs).
        ttl_micros: u64,
        /// Who takes it (a description).
        holder: String,
    },
    /// Keeps a lease alive. Answer: [`Reply::Alive`].
    LeaseKeepAlive {
        /// The lease.
        lease: u64,
    },
    /// Ends a lease now. Answer: [`Reply::LeaseEnded`].
    LeaseRevoke {
        /// The lease.
        lease: u64,
    },
    /// What is left of each lease's time. Answer: [`Reply::Remaining`].
    LeaseRemaining,
    /// Takes a lock under a lease, waiting up to `wait_micros` for its
    /// release (the holder wakes the waiter when it is released, and keeps
    /// the lease alive meanwhile, sending [`Progress::Waiting`]). Answer:
    /// [`Reply::Locked`].
    LockWait {
        /// The lock.
        name: String,
        /// The lease.
        lease: u64,
        /// How long to wait (µs); 0: try once.
        wait_micros: u64,
    },
}

/// What a watch covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchScope {
    /// Every record.
    All,
    /// One namespace.
    Namespace {
        /// The namespace.
        namespace: String,
    },
    /// One record.
    Key {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// The keys of a namespace with a prefix.
    Prefix {
        /// The namespace.
        namespace: String,
        /// The prefix.
        prefix: String,
    },
}

/// One record written by a watched commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// What was written; `None`: deleted.
    pub value: Option<Record>,
    /// The version a delete removed.
    pub deleted_version: u64,
    /// The version before, when asked for.
    pub prev: Option<Record>,
}

/// What a watch connection carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchFrame {
    /// A commit's events in scope.
    Change {
        /// The revision.
        revision: u64,
        /// Its commit time (µs).
        time: i64,
        /// The events.
        events: Vec<WatchEvent>,
    },
    /// Nothing in scope up to `revision` (also sent to show the holder is
    /// there).
    Progress {
        /// The revision.
        revision: u64,
    },
}

/// One version of a record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The commit's revision.
    pub revision: u64,
    /// Its time (µs).
    pub time: i64,
    /// What it wrote; `None`: it deleted the record.
    pub value: Option<Record>,
}

/// A write of [`Request::CommitWith`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteWith {
    /// The record.
    pub address: ByteBuf,
    /// What to do.
    pub op: WriteOp,
}

/// What a [`WriteWith`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Store a value.
    Put {
        /// The value (MessagePack).
        value: ByteBuf,
        /// Skip it when it equals the stored one.
        skip_unchanged: bool,
    },
    /// Delete the record.
    Delete,
    /// Patch the record's value at commit.
    Patch {
        /// The operations, in order.
        ops: Vec<PatchOp>,
        /// Skip the write when the result equals the stored value.
        skip_unchanged: bool,
    },
}

/// One operation of a patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchOp {
    /// `set`, `remove`, `add`, `append`, `append-unique` or `merge`.
    pub op: String,
    /// Field names from the top of the value.
    pub path: Vec<String>,
    /// The operand (MessagePack).
    pub value: Option<ByteBuf>,
}

/// A fence: lock `lock` must be held with `token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The lock.
    pub lock: String,
    /// The token.
    pub token: u64,
}

/// A record must have been last written at `revision` (0: be absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionCheck {
    /// The record.
    pub address: ByteBuf,
    /// The revision.
    pub revision: u64,
}

/// An idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// The key.
    pub key: String,
    /// How long to keep it (µs).
    pub keep_micros: u64,
    /// For a closure-based call (`update`, a transaction, an import): what
    /// identifies the call, compared instead of the writes.
    #[serde(default)]
    pub call: Option<ByteBuf>,
    /// That call's result (MessagePack), kept for its replays.
    #[serde(default)]
    pub result: Option<ByteBuf>,
}

/// Taking or giving back a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockOp {
    /// Take a lock under a lease.
    Acquire {
        /// The lock.
        name: String,
        /// The lease.
        lease: u64,
    },
    /// Give a lock back.
    Release {
        /// The lock.
        name: String,
        /// The token it is held with.
        token: u64,
    },
}

/// The coordination parts of [`Request::CommitWith`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coord {
    /// Fences.
    pub fences: Vec<Fence>,
    /// Revision preconditions.
    pub revisions: Vec<RevisionCheck>,
    /// An idempotency key.
    pub idempotency: Option<Idempotency>,
    /// Bind the puts to this lease.
    pub lease: Option<u64>,
    /// Take or give back a lock.
    pub lock: Option<LockOp>,
}

/// A value a patch computed, by the index of its write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patched {
    /// The write's index.
    pub index: u32,
    /// The value.
    pub value: ByteBuf,
}

/// A lease's remaining time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remaining {
    /// The lease.
    pub lease: u64,
    /// What is left (µs).
    pub micros: u64,
}

/// A final answer's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// A revision.
    Revision(u64),
    /// A record, or none.
    Record(Option<Record>),
    /// The pinned snapshot's revision and commit time (µs).
    Pinned {
        /// Revision.
        revision: u64,
        /// Commit time.
        time: i64,
    },
    /// Entries of a range; `more` when the range continues after the last.
    Page {
        /// The entries.
        entries: Vec<Entry>,
        /// Whether more follow.
        more: bool,
    },
    /// Namespace names.
    Namespaces(Vec<String>),
    /// A count.
    Count(u64),
    /// A commit's outcome.
    Committed {
        /// Its revision; `None` when nothing changed.
        revision: Option<u64>,
        /// One per write, in order.
        writes: Vec<WriteOutcome>,
        /// True when no other request was in the holder while this one ran:
        /// the client may poll for its next commit's answer (see
        /// `serve/channel.rs`). Absent from older holders: false.
        #[serde(default)]
        alone: bool,
    },
    /// The revision of a restored store.
    Restored(u64),
    /// Done.
    Done,
    /// Counters.
    Stats(Stats),
    /// A backup's report.
    Backup(BackupReport),
    /// The watch runs: [`Response::Watch`] messages follow.
    Watching,
    /// A record's versions, oldest first.
    History(Vec<Version>),
    /// The outcome of a [`Request::CommitWith`].
    CommittedWith {
        /// Its revision; `None` when nothing changed.
        revision: Option<u64>,
        /// One per write, in order.
        writes: Vec<WriteOutcome>,
        /// The values patches computed.
        patched: Vec<Patched>,
        /// True when this is the remembered outcome of an earlier request with
        /// the same idempotency key: nothing was written now.
        replayed: bool,
        /// As in [`Reply::Committed`].
        #[serde(default)]
        alone: bool,
    },
    /// A new lease's id.
    Lease(u64),
    /// A lease kept alive for its TTL (µs).
    Alive(u64),
    /// A lease ended, at this revision (`None`: it had ended).
    LeaseEnded(Option<u64>),
    /// What is left of each lease's time.
    Remaining(Vec<Remaining>),
    /// A lock granted: its fencing token.
    Locked(u64),
}

/// Progress of a long request (so the client's wait measures silence, not
/// the whole run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// A backup run's progress.
    Backup {
        /// Records written into the base so far.
        records: u64,
        /// Log bytes copied so far.
        bytes_copied: u64,
        /// Log bytes to copy in all.
        bytes_to_copy: u64,
    },
    /// A [`Request::LockWait`] still waits (and keeps its lease alive).
    Waiting,
}

/// A message from the holder after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request succeeded.
    Reply(Reply),
    /// The request failed with this error.
    Failed(super::error::WireError),
    /// The request goes on; a final answer follows.
    Progress(Progress),
    /// The request was not executed (the holder is closing): send it again,
    /// to whoever holds the store next.
    NotExecuted {
        /// Why.
        reason: String,
    },
    /// A watch's next message (not final: the watch goes on).
    Watch(WatchFrame),
}

/// Encodes a message as MessagePack with named fields, appending to `out`.
///
/// # Errors
/// The encoder's message (only for types that cannot be encoded, never for
/// these).
pub fn encode_into<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), String> {
    rmp_serde::encode::write_named(out, message).map_err(|e| e.to_string())
}

/// How deep a message may nest. The protocol's own types need a few levels;
/// the limit keeps fields a reader skips (unknown ones) from recursing deep
/// into a connection thread's small stack.
const MAX_DEPTH: usize = 32;

/// Decodes a message: exactly one MessagePack value of type `T`.
///
/// # Errors
/// What is wrong with the bytes.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut decoder = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    decoder.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut decoder).map_err(|e| e.to_string())?;
    let used = decoder.position();
    if used != bytes.len() as u64 {
        return Err(format!(
            "{} bytes follow the message",
            bytes.len() as u64 - used
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit's answer as holders before the `alone` hint sent it.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum EarlierReply {
        Committed {
            revision: Option<u64>,
            writes: Vec<WriteOutcome>,
        },
    }

    fn encoded<T: Serialize>(message: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(message, &mut out).unwrap();
        out
    }

    #[test]
    fn a_commit_answer_without_the_hint_reads_as_not_alone() {
        let earlier = EarlierReply::Committed {
            revision: Some(7),
            writes: vec![WriteOutcome::Absent],
        };
        let reply: Reply = decode(&encoded(&earlier)).unwrap();
        assert_eq!(
            reply,
            Reply::Committed {
                revision: Some(7),
                writes: vec![WriteOutcome::Absent],
                alone: false,
            }
        );
    }

    #[test]
    fn an_earlier_client_reads_a_commit_answer_with_the_hint() {
        let reply = Reply::Committed {
            revision: Some(7),
            writes: vec![WriteOutcome::Deleted { version: 3 }],
            alone: true,
        };
        let bytes = encoded(&reply);
        let earlier: EarlierReply = decode(&bytes).unwrap();
        assert_eq!(
            earlier,
            EarlierReply::Committed {
                revision: Some(7),
                writes: vec![WriteOutcome::Deleted { version: 3 }],
            }
        );
        assert_eq!(decode::<Reply>(&bytes).unwrap(), reply);
    }
}
