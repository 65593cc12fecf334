//! What reading the past speaks: a point in the past, and a record's
//! versions.

use crate::time::Timestamp;

/// A point in the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// The state right after this revision's commit.
    Revision(u64),
    /// The state left by the commits before this time.
    Time(Timestamp),
}

/// One version of a record's history: what a commit made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordVersion {
    /// The commit's revision.
    pub revision: u64,
    /// Its commit time.
    pub time: Timestamp,
    /// The record it wrote, with its metadata; `None` when it deleted it.
    pub value: Option<crate::value::Versioned<crate::value::RawValue>>,
}
