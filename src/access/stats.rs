//! Counters a store handle keeps.

/// What a store has done since the process holding it opened it, and what
/// this handle did; see [`Store::stats`](crate::Store::stats).
///
/// `conflicts` and `retries` count this handle's own calls; everything else
/// is the holder's (the same for every process it serves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The store's current revision.
    pub revision: u64,
    /// The revision the last checkpoint made durable in the state database.
    pub checkpoint_revision: u64,
    /// Transactions committed (each took one revision).
    pub commits: u64,
    /// Commit attempts refused because a version precondition failed.
    pub conflicts: u64,
    /// Attempts repeated by `update` and `transaction` after a conflict.
    pub retries: u64,
    /// Group commits: log writes that carried one or more transactions.
    pub batches: u64,
    /// Checkpoints run.
    pub checkpoints: u64,
    /// Commits replayed from the log when the store was opened.
    pub replayed_on_open: u64,
    /// Bytes appended to the log.
    pub log_bytes: u64,
    /// Connections from other processes the holder serves now.
    pub clients: u64,
    /// Snapshots those connections have pinned now (each keeps an old
    /// revision of the state database alive until released).
    pub pinned: u64,
}
