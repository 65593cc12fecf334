//! What a caller hands to the commit path, and what it gets back.

use super::schema::Meta;
use crate::time::Timestamp;

/// A precondition: the record at `address` must have version `expected` (0:
/// absent) when the commit is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub address: Vec<u8>,
    pub expected: u64,
    /// When set, the record must also still have this modification revision:
    /// be the very write that was read. Versions start again at 1 when a
    /// deleted record is re-created, so the version alone cannot tell the write
    /// that was read from a later one that reached the same version (ABA);
    /// `update` and transactions, which commit what they computed from a read,
    /// set it.
    pub modified: Option<u64>,
}

/// One write; a request holds at most one per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub address: Vec<u8>,
    pub kind: WriteKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// Store a value (MessagePack). With `skip_unchanged`, a value identical to
    /// the stored one is not written: no new version, no log record.
    Put {
        value: Vec<u8>,
        skip_unchanged: bool,
    },
    /// Remove the record (a no-op when absent).
    Delete,
}

/// An atomic unit of work: all writes happen, at one new revision, if every
/// check holds; otherwise nothing happens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Request {
    pub checks: Vec<Check>,
    pub writes: Vec<Write>,
}

/// What became of each write of a committed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// The record now has `meta`; `changed` is false when the write was skipped
    /// as unchanged.
    Put { meta: Meta, changed: bool },
    /// The record, which had `version`, was removed.
    Deleted { version: u64 },
    /// There was nothing to delete.
    Absent,
}

/// The result of a committed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The revision the request created; `None` when every write was a no-op.
    pub revision: Option<u64>,
    /// One entry per write, in request order.
    pub writes: Vec<WriteOutcome>,
}

/// A record of a snapshot being restored, with the metadata it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseRecord {
    pub address: Vec<u8>,
    pub meta: Meta,
    pub value: Vec<u8>,
}

/// A whole snapshot restored into an empty store as its first commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseLoad {
    pub revision: u64,
    pub time: Timestamp,
    pub records: Vec<BaseRecord>,
}
