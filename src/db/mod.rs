//! The state database (`state.redb`): the materialised state of a store, a
//! redb B-tree of records that can always be rebuilt from the log.
//!
//! - `schema`: the tables and the byte layout of a stored record.
//! - `file`: opening and creating the database file, its metadata.
//! - `storage`, `overlay`: the storage redb runs on: the file behind a fence
//!   that a poisoned engine raises, or an in-memory overlay that never writes.
//! - `view`, `tail`: the read views the engine publishes, and reads through
//!   them; a view's tail, the writes redb holds but has not committed.
//! - `write`: the engine's writes (one batch, checkpoints, the backed-up mark).
//! - `replay`: applying log records (recovery, and the tools after it).
//! - `rebuild`: state from log records outside the commit path (restore,
//!   repair), and the state as a base segment (backups).
//! - `history`, `past`: the history index (superseded versions, commit
//!   times) and reading the store as it was at a past revision.
//! - `inspect`: reading a possibly damaged database for `check`.
//! - `compact`: redb's compaction of the file.
//!
//! **Invariant:** the only module that uses redb. What it hands out is its
//! own types ([`Db`], [`view::View`], [`write::Batch`], ...), never redb's.

pub(crate) mod compact;
pub(crate) mod file;
pub(crate) mod history;
pub(crate) mod inspect;
pub(crate) mod overlay;
pub(crate) mod past;
pub(crate) mod rebuild;
pub(crate) mod replay;
pub(crate) mod schema;
pub(crate) mod storage;
pub(crate) mod tail;
pub(crate) mod view;
pub(crate) mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, ReadableDatabase};

use crate::error::{Error, Result, Shown};

/// An open state database. The engine holds the one of the store it holds;
/// the tools open their own (copies, scratch databases).
pub(crate) struct Db {
    database: Database,
    path: Arc<PathBuf>,
    /// Raised by [`Db::fence`]: the storage then refuses every change.
    fence: Arc<AtomicBool>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// One consistent read of the whole database (a redb read transaction), kept
/// for as long as it is held: what a backup's base is written from.
pub(crate) struct Snapshot {
    txn: redb::ReadTransaction,
    path: Arc<PathBuf>,
}

impl Db {
    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The database file, shared (for readers that outlive a borrow).
    pub(crate) fn shared_path(&self) -> Arc<PathBuf> {
        Arc::clone(&self.path)
    }

    /// From now on the storage refuses every change: redb makes pending
    /// non-durable commits durable when the database is dropped, which must
    /// not happen once they may be ahead of the durable log (invariant 4).
    pub(crate) fn fence(&self) {
        self.fence.store(true, Ordering::Release);
    }

    /// One consistent read of everything the database holds now.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let txn = self
            .database
            .begin_read()
            .map_err(db_error(&self.path, "begin a read"))?;
        Ok(Snapshot {
            txn,
            path: self.shared_path(),
        })
    }

    /// Opens `table` in a read transaction of its own (the table keeps the
    /// transaction's snapshot alive); `op` names the table in errors.
    pub(crate) fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: redb::TableDefinition<'static, K, V>,
        op: &'static str,
    ) -> Result<redb::ReadOnlyTable<K, V>> {
        self.database
            .begin_read()
            .map_err(db_error(&self.path, "begin a read"))?
            .open_table(table)
            .map_err(db_error(&self.path, op))
    }

    /// Begins a write whose commit is not durable on its own (a checkpoint
    /// makes it so); `op` names it in errors ("begin a write").
    pub(crate) fn begin_nondurable(&self, op: &'static str) -> Result<redb::WriteTransaction> {
        let mut txn = self
            .database
            .begin_write()
            .map_err(db_error(&self.path, op))?;
        txn.set_durability(redb::Durability::None)
            .map_err(db_error(&self.path, "set the durability of a write"))?;
        Ok(txn)
    }
}

/// Runs `read`, which reads a state database that may be damaged. redb trusts
/// the pages it reads and panics on some damage its checksums have not been
/// asked to verify first (a page it cannot parse, an index past a page's end);
/// such a panic is returned as a description of the damage, with redb's
/// message, instead of unwinding into the caller. The last line of defence:
/// the tools verify a copy's checksums before they walk it.
pub(crate) fn contain_panic<T>(read: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        format!("the database library panicked while reading it: {message}")
    })
}

/// Converts any redb error into [`Error::Database`] for `path`.
pub(crate) fn db_error<E: Into<redb::Error>>(
    path: &Path,
    op: &'static str,
) -> impl FnOnce(E) -> Error {
    let path = path.to_owned();
    move |e| {
        let e: redb::Error = e.into();
        let hint = match &e {
            redb::Error::Corrupted(_) => {
                "the file is damaged; `statelog repair` rebuilds it from the log when the log \
                 reaches back to the store's first revision"
            }
            redb::Error::PreviousIo => "an earlier write failed; close and reopen the store",
            redb::Error::Io(_) => "check the disk and its free space",
            _ => "close and reopen the store; if this persists, run `statelog check`",
        };
        Error::Database {
            op,
            path,
            hint,
            source: Box::new(e),
        }
    }
}

/// A stored record whose header cannot be read.
pub(crate) fn malformed_record(path: &Path, namespace: &str, key: &str) -> Error {
    Error::Database {
        op: "read a record",
        path: path.to_owned(),
        hint: "the stored record is malformed; run `statelog check`",
        source: format!(
            "the record {}/{} has a malformed header",
            Shown::new(namespace),
            Shown::new(key)
        )
        .into(),
    }
}
