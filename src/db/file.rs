//! Opening and creating the database file, and the metadata it records (see
//! `schema`): which store it belongs to, its checkpoint, the backed-up mark.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use redb::ReadableDatabase;

use super::overlay::Overlay;
use super::schema::{self, Applied, META, RECORDS, SCHEMA_VERSION};
use super::storage::Fenced;
use super::{Db, contain_panic, db_error};
use crate::error::{Error, Result};
use crate::fs::{self, Fs};
use crate::log::catalog;
use crate::log::segment::StoreId;
use crate::options::Options;

impl Db {
    /// Opens the database file `db_path` (created if missing) with the
    /// options' cache, behind a fence that [`Db::fence`] raises.
    pub(crate) fn open(fs: &dyn Fs, db_path: &Path, options: &Options) -> Result<Db> {
        let fence = Arc::new(AtomicBool::new(false));
        let backend = fs
            .db_backend(db_path)
            .map_err(|e| Error::io("open", db_path, e))?;
        let database = open_backend(Fenced(backend, Arc::clone(&fence)), db_path, options)?;
        Ok(Db::from_parts(database, db_path, fence))
    }

    /// Opens the database file without ever writing it: what redb or a
    /// replay changes stays in memory ([`Overlay`]).
    pub(crate) fn open_unwritten(fs: &dyn Fs, db_path: &Path, options: &Options) -> Result<Db> {
        let overlay = fs
            .db_backend_read(db_path)
            .and_then(Overlay::new)
            .map_err(|e| Error::io("open", db_path, e))?;
        let database = open_backend(overlay, db_path, options)?;
        Ok(Db::from_parts(database, db_path, Arc::default()))
    }

    fn from_parts(database: redb::Database, db_path: &Path, fence: Arc<AtomicBool>) -> Db {
        Db {
            database,
            path: Arc::new(db_path.to_owned()),
            fence,
        }
    }

    /// The checkpoint the database records, after checking its schema and
    /// that it belongs to store `store_id`.
    pub(crate) fn read_meta(&self, store_id: &StoreId) -> Result<Applied> {
        let db_path = self.path();
        let read = contain_panic(|| -> Result<_> {
            let meta = self.read_table(META, "open the meta table")?;
            let get = |name: &str| -> Result<Option<Vec<u8>>> {
                Ok(meta
                    .get(name)
                    .map_err(db_error(db_path, "read the meta table"))?
                    .map(|v| v.value().to_vec()))
            };
            Ok((
                get(schema::META_SCHEMA)?,
                get(schema::META_STORE_ID)?,
                get(schema::META_APPLIED)?,
            ))
        });
        let (schema_bytes, id_bytes, applied_bytes) = match read {
            Ok(result) => result?,
            Err(panicked) => return Err(damaged(db_path, panicked)),
        };
        let schema = schema_bytes
            .and_then(|b| b.try_into().ok().map(u64::from_le_bytes))
            .ok_or_else(|| {
                Error::corrupt(db_path, 0, "the state database has no schema version")
            })?;
        if schema > SCHEMA_VERSION {
            return Err(Error::UnsupportedFormat {
                path: db_path.to_owned(),
                found: schema,
                supported: SCHEMA_VERSION,
            });
        }
        if id_bytes.as_deref() != Some(store_id.as_slice()) {
            return Err(Error::corrupt(
                db_path,
                0,
                format!(
                    "the state database belongs to another store (this store's id is {}); it \
                     was copied in from elsewhere",
                    catalog::hex(store_id)
                ),
            ));
        }
        applied_bytes
            .as_deref()
            .and_then(Applied::decode)
            .ok_or_else(|| Error::corrupt(db_path, 0, "the state database has no applied revision"))
    }

    /// The last revision a backup copied, if the store was ever backed up.
    pub(crate) fn read_backed_up(&self) -> Result<Option<u64>> {
        let meta = self.read_table(META, "open the meta table")?;
        Ok(meta
            .get(schema::META_BACKED_UP)
            .map_err(db_error(self.path(), "read the meta table"))?
            .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes)))
    }
}

/// Creates the state database `db_path` of store `store_id`, empty, with the
/// schema version, the store id and `applied`, durably.
pub(crate) fn create(
    fs: &dyn Fs,
    db_path: &Path,
    store_id: &StoreId,
    applied: Applied,
) -> Result<()> {
    let backend = fs
        .db_backend(db_path)
        .map_err(|e| Error::io("create", db_path, e))?;
    let db = redb::Builder::new()
        .create_with_backend(Fenced(backend, Arc::default()))
        .map_err(db_error(db_path, "create the state database"))?;
    let mut txn = db
        .begin_write()
        .map_err(db_error(db_path, "initialise the state database"))?;
    txn.set_quick_repair(true);
    {
        txn.open_table(RECORDS)
            .map_err(db_error(db_path, "create the records table"))?;
        let mut meta = txn
            .open_table(META)
            .map_err(db_error(db_path, "create the meta table"))?;
        let schema = SCHEMA_VERSION.to_le_bytes();
        let entries: [(&str, &[u8]); 3] = [
            (schema::META_SCHEMA, &schema),
            (schema::META_STORE_ID, store_id),
            (schema::META_APPLIED, &applied.encode()),
        ];
        for (name, value) in entries {
            meta.insert(name, value)
                .map_err(db_error(db_path, "initialise the meta table"))?;
        }
    }
    txn.commit()
        .map_err(db_error(db_path, "initialise the state database"))?;
    Ok(())
}

/// The store id in the metadata of the database file `db_path`, read without
/// writing the file; `None` when it cannot be read.
pub(crate) fn read_store_id(fs: &dyn Fs, db_path: &Path, options: &Options) -> Option<StoreId> {
    let db = Db::open_unwritten(fs, db_path, options).ok()?;
    let txn = db
        .database
        .begin_read()
        .map_err(db_error(db_path, "begin a read"))
        .ok()?;
    let meta = txn.open_table(META).ok()?;
    let value = meta.get(schema::META_STORE_ID).ok()??;
    value.value().try_into().ok()
}

/// Whether an error says the file system takes no writes (full, over quota,
/// read-only), as opposed to damage or a failing disk: from the file system,
/// or from the state database's storage.
pub(crate) fn cannot_write(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => fs::cannot_write(source),
        Error::Database { source, .. } => source
            .downcast_ref::<redb::Error>()
            .is_some_and(|e| matches!(e, redb::Error::Io(io) if fs::cannot_write(io))),
        _ => false,
    }
}

fn open_backend(
    backend: impl redb::StorageBackend,
    db_path: &Path,
    options: &Options,
) -> Result<redb::Database> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(options.cache_size);
    builder.set_check_integrity_on_open(options.verify_on_open);
    // redb may panic on a file it cannot make sense of; report that as damage
    // instead of taking the caller down.
    let opened = contain_panic(|| builder.create_with_backend(backend));
    match opened {
        Ok(Ok(db)) => Ok(db),
        // Not damage: the disk is full or read-only (opening writes the header).
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if fs::cannot_write(&e) =>
        {
            Err(Error::io("open the state database", db_path, e))
        }
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(Error::Busy {
            path: db_path.to_owned(),
            pid: None,
            waited: std::time::Duration::ZERO,
        }),
        Ok(Err(redb::DatabaseError::UpgradeRequired(v))) => Err(Error::UnsupportedFormat {
            path: db_path.to_owned(),
            found: u64::from(v),
            supported: 3,
        }),
        Ok(Err(e)) => Err(damaged(db_path, e.to_string())),
        Err(panicked) => Err(damaged(db_path, panicked)),
    }
}

/// The state database at `db_path` is damaged: `what` says how.
pub(crate) fn damaged(db_path: &Path, what: String) -> Error {
    Error::Database {
        op: "open the state database",
        path: db_path.to_owned(),
        hint: "the file is damaged; `statelog repair` rebuilds it from the log when the log \
               reaches back to the store's first revision, otherwise restore a backup",
        source: what.into(),
    }
}
