//! Applying log records to the state database: how recovery brings the state up
//! to the end of the log (and, later, how a restore rebuilds a store).
//!
//! Replay needs no user code: every record carries the resulting metadata. It
//! still checks each operation against the state it lands on (a put's version
//! follows the stored one, a delete removes the version it names), so a log that
//! does not continue the state it is applied to is reported rather than applied.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, WriteTransaction};

use super::db_error;
use super::schema::{self, Applied, META, Meta, RECORDS};
use crate::error::{Error, Result};
use crate::key;
use crate::log::Position;
use crate::log::record::{LogOp, LogRecord};
use crate::time::Timestamp;

/// Commits applied per state-database transaction during replay.
const COMMITS_PER_TXN: u64 = 20_000;

/// Applies commits to a state database, in revision order.
pub(crate) struct Replayer<'db> {
    db: &'db Database,
    path: PathBuf,
    txn: Option<WriteTransaction>,
    in_txn: u64,
    applied: Applied,
    scratch: Vec<u8>,
}

impl<'db> Replayer<'db> {
    pub(crate) fn new(db: &'db Database, path: &Path, applied: Applied) -> Replayer<'db> {
        Replayer {
            db,
            path: path.to_owned(),
            txn: None,
            in_txn: 0,
            applied,
            scratch: Vec::new(),
        }
    }

    /// Applies one complete commit (all its parts); `end` is where the log
    /// continues after it.
    pub(crate) fn apply(&mut self, parts: &[LogRecord<'_>], end: Position) -> Result<()> {
        let path = self.path.clone();
        if self.txn.is_none() {
            let mut txn = self
                .db
                .begin_write()
                .map_err(db_error(&path, "begin replay"))?;
            txn.set_durability(redb::Durability::None)
                .map_err(db_error(&path, "set the durability of replay"))?;
            self.txn = Some(txn);
        }
        let Some(txn) = self.txn.as_ref() else {
            return Ok(());
        };
        let Some(first) = parts.first() else {
            return Ok(());
        };
        let revision = first.revision;
        let time = Timestamp::from_micros(first.time);
        {
            let mut table = txn
                .open_table(RECORDS)
                .map_err(db_error(&path, "open the records table"))?;
            for part in parts {
                for op in &part.ops {
                    let (namespace, key) = op.address();
                    let address = key::encode_unchecked(namespace, key);
                    let stored = table
                        .get(address.as_slice())
                        .map_err(db_error(&path, "read a record"))?
                        .map(|guard| schema::decode_record(guard.value()).map(|(meta, _)| meta));
                    let current = match stored {
                        Some(Some(meta)) => Some(meta),
                        Some(None) => {
                            return Err(super::engine::malformed_record(&path, namespace, key));
                        }
                        None => None,
                    };
                    match op {
                        LogOp::Put(put) => {
                            let meta = Meta {
                                version: put.version,
                                create_revision: put.created,
                                mod_revision: put.modified.unwrap_or(revision),
                                updated_at: put.updated.map_or(time, Timestamp::from_micros),
                            };
                            if !part.base {
                                let expected_version = current.map_or(0, |m| m.version) + 1;
                                let expected_created =
                                    current.map_or(revision, |m| m.create_revision);
                                if put.version != expected_version
                                    || put.created != expected_created
                                {
                                    return Err(self.diverged(
                                        revision,
                                        namespace,
                                        key,
                                        format!(
                                            "writes version {} (created at {}) over version {} \
                                             (created at {})",
                                            put.version,
                                            put.created,
                                            current.map_or(0, |m| m.version),
                                            current.map_or(0, |m| m.create_revision)
                                        ),
                                    ));
                                }
                            }
                            self.scratch.clear();
                            schema::encode_record(&meta, &put.value, &mut self.scratch);
                            table
                                .insert(address.as_slice(), self.scratch.as_slice())
                                .map_err(db_error(&path, "write a record"))?;
                        }
                        LogOp::Delete(del) => {
                            let had = current.map_or(0, |m| m.version);
                            if had != del.version {
                                return Err(self.diverged(
                                    revision,
                                    namespace,
                                    key,
                                    format!(
                                        "deletes version {} but version {had} is stored",
                                        del.version
                                    ),
                                ));
                            }
                            table
                                .remove(address.as_slice())
                                .map_err(db_error(&path, "remove a record"))?;
                        }
                    }
                }
            }
            self.applied = Applied {
                revision,
                position: end,
                time: time.max(self.applied.time),
            };
            let mut meta = txn
                .open_table(META)
                .map_err(db_error(&path, "open the meta table"))?;
            meta.insert(schema::META_APPLIED, self.applied.encode().as_slice())
                .map_err(db_error(&path, "record the applied revision"))?;
        }
        self.in_txn += 1;
        if self.in_txn >= COMMITS_PER_TXN {
            self.commit()?;
        }
        Ok(())
    }

    fn diverged(&self, revision: u64, namespace: &str, key: &str, what: String) -> Error {
        Error::corrupt(
            &self.path,
            0,
            format!(
                "the log's commit at revision {revision} {what} for {namespace}/{key}: the log does \
                 not continue this state database (it was replaced or rolled back past the log); \
                 `statelog repair` can rebuild the state from the log"
            ),
        )
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(txn) = self.txn.take() {
            txn.commit()
                .map_err(db_error(&self.path, "commit replayed records"))?;
        }
        self.in_txn = 0;
        Ok(())
    }

    /// Commits what is pending and returns the state reached.
    pub(crate) fn finish(mut self) -> Result<Applied> {
        self.commit()?;
        Ok(self.applied)
    }
}
