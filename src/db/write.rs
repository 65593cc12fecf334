//! The engine's writes: one batch of commits in a write transaction that is
//! not durable on its own, checkpoints (which make it durable), and the
//! backed-up mark.
//!
//! What a batch writes is decided by the engine (preconditions, versions);
//! [`Records`] is the records table as it sees it inside the open batch: a
//! write returns what it replaced, so that each write walks the B-tree once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, Table};

use super::schema::{self, Applied, META, RECORDS};
use super::{Db, db_error, malformed_record};
use crate::error::Result;
use crate::value::Meta;

/// A write transaction of the state database whose commit is not durable on
/// its own (a checkpoint makes it so). Dropped without [`commit`](Batch::commit),
/// nothing of it lands.
///
/// The tables its batches write stay open for its life: a write the engine
/// holds across batches (`engine/held.rs`) opens them once, not per batch.
pub(crate) struct Batch {
    txn: OpenWrite,
    path: Arc<PathBuf>,
}

self_cell::self_cell!(
    /// A write transaction and the tables opened in it.
    struct OpenWrite {
        owner: redb::WriteTransaction,
        #[covariant]
        dependent: Tables,
    }
);

/// The tables a batch writes: the records, and the history index.
struct Tables<'t> {
    records: Table<'t, &'static [u8], &'static [u8]>,
    history: History<'t>,
}

/// The history index's writer, opened by the first write that needs it and
/// kept open with the write: a held write's first batch only reads before
/// its log write, and opens the history's tables after it, while the log
/// syncs; its later batches find them open.
struct History<'t> {
    writer: Option<super::history::Writer<'t>>,
    txn: &'t redb::WriteTransaction,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("path", &self.path).finish()
    }
}

/// The records table inside an open [`Batch`], with the history index it
/// keeps up to date: every version a write replaces or removes goes into it.
pub(crate) struct Records<'a, 't> {
    tables: &'a mut Tables<'t>,
    /// The revision and time of the commit being written (what a removal
    /// ends a version at).
    at: (u64, crate::time::Timestamp),
    path: &'a Path,
    scratch: &'a mut Vec<u8>,
}

/// What a write replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// Nothing: the record was absent.
    Absent,
    /// A record with this metadata.
    Record(Meta),
    /// A record whose header cannot be read.
    Malformed,
}

impl Replaced {
    fn of(stored: Option<&[u8]>) -> Replaced {
        match stored.map(schema::decode_record) {
            None => Replaced::Absent,
            Some(Some((meta, _))) => Replaced::Record(meta),
            Some(None) => Replaced::Malformed,
        }
    }
}

impl Db {
    /// Begins a batch; `op` names it in errors ("begin a write").
    pub(crate) fn begin_batch(&self, op: &'static str) -> Result<Batch> {
        let path = self.shared_path();
        let txn = OpenWrite::try_new(self.begin_nondurable(op)?, |txn| {
            let records = txn
                .open_table(RECORDS)
                .map_err(db_error(&path, "open the records table"))?;
            Ok::<_, crate::Error>(Tables {
                records,
                history: History { writer: None, txn },
            })
        })?;
        Ok(Batch { txn, path })
    }

    /// Makes the state durable at `applied` (a checkpoint): a durable commit,
    /// with redb's quick repair, recording `applied`.
    pub(crate) fn checkpoint(&self, applied: &Applied) -> Result<()> {
        let path = self.path();
        let mut txn = self
            .database
            .begin_write()
            .map_err(db_error(path, "begin a checkpoint"))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(db_error(path, "set the durability of a checkpoint"))?;
        txn.set_quick_repair(true);
        {
            let mut meta = txn
                .open_table(META)
                .map_err(db_error(path, "open the meta table"))?;
            meta.insert(schema::META_APPLIED, applied.encode().as_slice())
                .map_err(db_error(path, "record the checkpoint"))?;
        }
        txn.commit().map_err(db_error(path, "commit a checkpoint"))
    }

    /// Records that a backup copied the log up to `revision`, without a sync
    /// (the next checkpoint makes it durable).
    pub(crate) fn record_backed_up(&self, revision: u64) -> Result<()> {
        let path = self.path();
        let txn = self.begin_nondurable("begin a write")?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(db_error(path, "open the meta table"))?;
            meta.insert(schema::META_BACKED_UP, revision.to_le_bytes().as_slice())
                .map_err(db_error(path, "record the backed-up revision"))?;
        }
        txn.commit()
            .map_err(db_error(path, "record the backed-up revision"))
    }
}

impl Batch {
    /// Lends the records table to `write`, for the batch's writes;
    /// `scratch` is the buffer stored records are encoded in.
    pub(crate) fn records<R>(
        &mut self,
        scratch: &mut Vec<u8>,
        write: impl FnOnce(&mut Records<'_, '_>) -> R,
    ) -> R {
        let path = &self.path;
        self.txn.with_dependent_mut(|_, tables| {
            write(&mut Records {
                tables,
                at: (0, crate::time::Timestamp::EPOCH),
                path,
                scratch,
            })
        })
    }

    /// Records `applied` in the metadata, in this batch (a restored base).
    pub(crate) fn set_applied(&self, applied: &Applied) -> Result<()> {
        let mut meta = self
            .txn
            .borrow_owner()
            .open_table(META)
            .map_err(db_error(&self.path, "open the meta table"))?;
        meta.insert(schema::META_APPLIED, applied.encode().as_slice())
            .map_err(db_error(&self.path, "record the applied revision"))?;
        Ok(())
    }

    /// Commits the batch, not durably: redb shows it to new read transactions
    /// at once, so readers only use views published after the log is synced.
    /// `op` names it in errors.
    pub(crate) fn commit(self, op: &'static str) -> Result<()> {
        // The tables close first: redb commits only a write with none open.
        self.txn
            .into_owner()
            .commit()
            .map_err(db_error(&self.path, op))
    }

    /// Drops the batch: nothing of it lands.
    pub(crate) fn abort(self) -> Result<()> {
        self.txn
            .into_owner()
            .abort()
            .map_err(db_error(&self.path, "abort a write"))
    }
}

impl<'t> History<'t> {
    fn writer(&mut self, path: &Path) -> Result<&mut super::history::Writer<'t>> {
        let opened = match self.writer.take() {
            Some(opened) => opened,
            None => super::history::Writer::open(self.txn, path)?,
        };
        Ok(self.writer.insert(opened))
    }

    /// Keeps `old`, the stored record of `address` that the commit `at`
    /// replaced or removed.
    fn superseded(
        &mut self,
        path: &Path,
        address: &[u8],
        old: &[u8],
        (end, end_time): (u64, crate::time::Timestamp),
    ) -> Result<()> {
        self.writer(path)?.superseded(address, old, end, end_time)
    }
}

impl Records<'_, '_> {
    /// Lends the record at `address` (metadata and value) to `read`; `None`
    /// if absent.
    pub(crate) fn read<R>(
        &self,
        address: &[u8],
        namespace: &str,
        key: &str,
        read: impl FnOnce(Meta, &[u8]) -> R,
    ) -> Result<Option<R>> {
        let Some(guard) = self
            .tables
            .records
            .get(address)
            .map_err(db_error(self.path, "read a record"))?
        else {
            return Ok(None);
        };
        let (meta, value) = schema::decode_record(guard.value())
            .ok_or_else(|| malformed_record(self.path, namespace, key))?;
        Ok(Some(read(meta, value)))
    }

    /// The error for a record whose header cannot be read.
    pub(crate) fn malformed(&self, namespace: &str, key: &str) -> crate::Error {
        malformed_record(self.path, namespace, key)
    }

    /// The writes that follow belong to the commit at `revision`, `time`.
    pub(crate) fn at(&mut self, revision: u64, time: crate::time::Timestamp) {
        self.at = (revision, time);
    }

    /// Records the commit at `revision` (written) in the history index.
    pub(crate) fn committed(
        &mut self,
        revision: u64,
        time: crate::time::Timestamp,
        base: bool,
    ) -> Result<()> {
        self.tables
            .history
            .writer(self.path)?
            .revision(revision, time, base)
    }

    /// Stores a record; returns what it replaced (which the history keeps).
    pub(crate) fn put(&mut self, address: &[u8], meta: &Meta, value: &[u8]) -> Result<Replaced> {
        self.scratch.clear();
        schema::encode_record(meta, value, self.scratch);
        let old = self
            .tables
            .records
            .insert(address, self.scratch.as_slice())
            .map_err(db_error(self.path, "write a record"))?;
        if let Some(old) = &old {
            self.tables.history.superseded(
                self.path,
                address,
                old.value(),
                (meta.mod_revision, meta.updated_at),
            )?;
        }
        Ok(Replaced::of(old.as_ref().map(|g| g.value())))
    }

    /// Stores a record already encoded (`schema::encode_record`) by the
    /// commit set with [`at`](Self::at); the version it replaces goes into
    /// the history.
    pub(crate) fn put_stored(&mut self, address: &[u8], stored: &[u8]) -> Result<()> {
        let old = self
            .tables
            .records
            .insert(address, stored)
            .map_err(db_error(self.path, "write a record"))?;
        if let Some(old) = &old {
            self.tables
                .history
                .superseded(self.path, address, old.value(), self.at)?;
        }
        Ok(())
    }

    /// Removes a record; returns what it removed (which the history keeps).
    pub(crate) fn remove(&mut self, address: &[u8]) -> Result<Replaced> {
        let old = self
            .tables
            .records
            .remove(address)
            .map_err(db_error(self.path, "remove a record"))?;
        if let Some(old) = &old {
            self.tables
                .history
                .superseded(self.path, address, old.value(), self.at)?;
        }
        Ok(Replaced::of(old.as_ref().map(|g| g.value())))
    }

    /// Whether the table holds no record.
    pub(crate) fn is_empty(&self) -> Result<bool> {
        self.tables
            .records
            .is_empty()
            .map_err(db_error(self.path, "check the records table"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::past;
    use crate::fs::RealFs;
    use crate::log::Position;
    use crate::options::Options;
    use crate::time::Timestamp;

    fn at(revision: u64) -> Timestamp {
        Timestamp::from_micros(i64::try_from(revision).unwrap() * 1_000)
    }

    fn meta(version: u64, revision: u64) -> Meta {
        Meta {
            version,
            create_revision: 1,
            mod_revision: revision,
            updated_at: at(revision),
        }
    }

    /// One commit of `value` at `revision` in one use of the batch's tables.
    fn put(batch: &mut Batch, address: &[u8], revision: u64, value: &[u8]) {
        let mut scratch = Vec::new();
        batch
            .records(&mut scratch, |records| {
                records.at(revision, at(revision));
                records.put(address, &meta(revision, revision), value)?;
                records.committed(revision, at(revision), false)
            })
            .unwrap();
    }

    #[test]
    fn a_batch_keeps_its_tables_open_across_uses_and_lands_every_use_at_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&RealFs, &dir.path().join("state"), &Options::default()).unwrap();
        let address = crate::key::encode("ns", "k").unwrap();
        let mut batch = db.begin_batch("begin a write").unwrap();
        put(&mut batch, &address, 1, b"one");
        // A later use of the same open tables sees the earlier one's write,
        // and its put supersedes it into the history.
        let mut scratch = Vec::new();
        let seen = batch.records(&mut scratch, |records| {
            records.read(&address, "ns", "k", |meta, value| {
                (meta.version, value.to_vec())
            })
        });
        assert_eq!(seen.unwrap(), Some((1, b"one".to_vec())));
        put(&mut batch, &address, 2, b"two");
        // The metadata table opens beside the open ones.
        let applied = Applied {
            revision: 2,
            position: Position {
                segment: 1,
                offset: 64,
            },
            time: at(2),
        };
        batch.set_applied(&applied).unwrap();
        batch.commit("commit a write").unwrap();

        assert_eq!(db.snapshot().unwrap().applied().unwrap(), applied);
        let past = past::Tables::open(&db).unwrap();
        let value_at = |revision| past.get(&address, revision).unwrap().map(|s| s.value);
        assert_eq!(value_at(1), Some(b"one".to_vec()));
        assert_eq!(value_at(2), Some(b"two".to_vec()));

        // A batch dropped after a use lands nothing of it.
        let mut batch = db.begin_batch("begin a write").unwrap();
        put(&mut batch, &address, 3, b"three");
        batch.abort().unwrap();
        let view = db.view(applied).unwrap();
        assert_eq!(view.get(&address).unwrap().unwrap().value, b"two");
        assert_eq!(
            past::Tables::open(&db)
                .unwrap()
                .versions(&address)
                .unwrap()
                .len(),
            2
        );
    }
}
