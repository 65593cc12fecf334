//! Opening a store: create it if asked, take the process lock, check the formats,
//! open the state database, and recover the log.
//!
//! A store directory holds:
//! - `STATELOG`: the store's identity (JSON: format name and version, store id,
//!   creation time). Written last when a store is created, so a directory with a
//!   `STATELOG` file is a complete store.
//! - `LOCK`: locked (flock) by the process that has the store open; holds its pid.
//! - `state.redb`: the materialised state.
//! - `log/`: the log segments.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use redb::Database;
use serde::{Deserialize, Serialize};

use super::db_error;
use super::engine::Engine;
use super::identity::{self, Leftovers};
use super::replay::Replayer;
use super::schema::{self, Applied, META, RECORDS, SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::fs::overlay::Overlay;
use crate::fs::{self, BoxedBackend, Fs, LockError, LockGuard};
use crate::log::Position;
use crate::log::catalog;
use crate::log::recovery::{self, Checkpoint, CutTail, Scanned, WriterSettings};
use crate::log::segment::{SEGMENT_HEADER_LEN, StoreId};
use crate::options::Options;
use crate::time::Timestamp;

/// The identity file of a store.
pub(crate) const ID_FILE: &str = "STATELOG";
/// The lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The state database.
pub(crate) const DB_FILE: &str = "state.redb";
/// The log directory.
pub(crate) const LOG_DIR: &str = "log";
/// The store layout this build creates and opens.
pub const STORE_FORMAT_VERSION: u64 = 1;
const FORMAT_NAME: &str = "statelog";

#[derive(Debug, Serialize, Deserialize)]
struct IdFile {
    format: String,
    version: u64,
    store_id: String,
    created_at: String,
}

/// Everything `open` produces.
pub(crate) struct Opened {
    pub db: Arc<Database>,
    pub engine: Engine,
    pub store_id: StoreId,
    pub lock: Box<dyn LockGuard>,
    pub replayed: u64,
    pub cut: Option<CutTail>,
}

/// What the lock step of [`open_with`] came to.
pub(crate) enum Lock<T> {
    /// This process holds the store now: open it.
    Taken(Box<dyn LockGuard>),
    /// Another process holds it; `T` is how to reach it instead.
    Other(T),
}

/// Opens (or creates) the store in `path` once `lock` has taken its lock, or
/// returns what `lock` found instead of the lock.
pub(crate) fn open_with<T>(
    path: &Path,
    options: &Options,
    lock: impl FnOnce(&dyn Fs, &Path) -> Result<Lock<T>>,
) -> Result<std::result::Result<Opened, T>> {
    options.validate()?;
    let fs = Arc::clone(&options.fs);
    let fs_ref = fs.as_ref();
    let exists = fs_ref
        .exists(path)
        .map_err(|e| Error::io("look for the store directory", path, e))?;
    if !exists {
        if !options.create {
            return Err(Error::NotAStore {
                path: path.to_owned(),
                reason: "the directory does not exist (create the store first)".to_owned(),
            });
        }
        create_dirs_durably(fs_ref, path)?;
    }
    let initialised = classify_directory(fs_ref, path, options.create)?;
    let lock = match lock(fs_ref, path)? {
        Lock::Taken(guard) => guard,
        Lock::Other(other) => return Ok(Err(other)),
    };
    // Another process may have created the store while we waited for the lock.
    let initialised = initialised || has_id_file(fs_ref, path)?;
    if !initialised {
        create_store(fs_ref, path)?;
    }
    let store_id = read_id_file(fs_ref, path)?;
    let writable = identity::remove_stale_marker(fs_ref, path)
        .and_then(|()| open_store(&fs, path, options, store_id, None));
    let opened = match writable {
        Ok(opened) => opened,
        // A full or read-only file system: the store can still be read (and
        // exported, and backed up elsewhere). Nothing is written from here on.
        Err(e) if cannot_write(&e) => {
            let reason = super::engine::error_chain(&e);
            tracing::warn!(
                store = %path.display(),
                cause = %reason,
                "the store's file system takes no writes: opened read-only"
            );
            open_store(&fs, path, options, store_id, Some(reason))?
        }
        Err(e) => return Err(e),
    };
    Ok(Ok(Opened {
        db: opened.db,
        engine: opened.engine,
        store_id,
        lock,
        replayed: opened.replayed,
        cut: opened.cut,
    }))
}

/// Whether an error says the file system takes no writes (full, over quota,
/// read-only), as opposed to damage or a failing disk.
fn cannot_write(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => fs::cannot_write(source),
        Error::Database { source, .. } => source
            .downcast_ref::<redb::Error>()
            .is_some_and(|e| matches!(e, redb::Error::Io(io) if fs::cannot_write(io))),
        _ => false,
    }
}

/// What [`open_store`] opened.
struct Parts {
    db: Arc<Database>,
    engine: Engine,
    replayed: u64,
    cut: Option<CutTail>,
}

/// Opens the state database and recovers the log (the lock is held). With
/// `read_only` (why the file system takes no writes), nothing is written: the
/// state database runs on an in-memory overlay, the log is replayed into it
/// and not cut, no checkpoint is taken, and the engine refuses commits.
fn open_store(
    fs: &Arc<dyn Fs>,
    path: &Path,
    options: &Options,
    store_id: StoreId,
    read_only: Option<String>,
) -> Result<Parts> {
    let fs_ref = fs.as_ref();
    let db_path = path.join(DB_FILE);
    if !fs_ref
        .exists(&db_path)
        .map_err(|e| Error::io("look for", &db_path, e))?
    {
        return Err(Error::corrupt(
            &db_path,
            0,
            "the state database is missing; `statelog repair` rebuilds it from the log when the \
             log reaches back to the store's first revision",
        ));
    }
    // A log that lost its newest part is refused before the state database
    // is opened: redb's own recovery of an unclean close writes to it.
    recovery::check_end(fs_ref, &path.join(LOG_DIR), &store_id)?;
    let fence = Arc::new(AtomicBool::new(false));
    let db = match read_only {
        Some(_) => open_database_unwritten(fs_ref, &db_path, options)?,
        None => open_database(fs_ref, &db_path, options, Arc::clone(&fence))?,
    };
    // An open that fails writes nothing more: redb would make the replayed,
    // non-durable commits durable when the database is dropped.
    let fail = |e: Error| {
        fence.store(true, std::sync::atomic::Ordering::Release);
        e
    };
    let log_dir = path.join(LOG_DIR);
    // A damaged file can make redb panic while the state is read and replayed
    // onto (what `verify_on_open` would have caught first): an error, not a
    // panic in the caller's process.
    let replayed = super::contain_panic(|| replay_log(fs_ref, &db, &db_path, &log_dir, &store_id))
        .map_err(|panicked| damaged(&db_path, panicked))
        .and_then(|replayed| replayed)
        .map_err(fail)?;
    let (durable, applied) = (replayed.durable, replayed.applied);
    let settings = WriterSettings {
        segment_size: options.segment_size,
        preallocate: options.preallocate,
    };
    let recovered = recovery::finish(
        Arc::clone(fs),
        &log_dir,
        store_id,
        settings,
        replayed.scanned,
        read_only.is_some(),
    )
    .map_err(fail)?;
    let backed_up = replayed.backed_up;
    let db = Arc::new(db);
    let mut engine = Engine::new(
        Arc::clone(&db),
        db_path,
        recovered.writer,
        options.durability,
        applied,
        durable,
        Arc::clone(&fence),
    )
    .map_err(fail)?;
    engine.retention = options.retention;
    engine.clock = options.clock.clone();
    engine.backed_up = backed_up;
    engine.history_from =
        crate::history::floor(&db, &engine.db_path, applied.revision, read_only.is_none())
            .map_err(fail)?;
    let read_only = read_only.is_some_and(|why| {
        engine.read_only = Some(why);
        true
    });
    if recovered.replayed > 0 && !read_only {
        // Make the replay durable now, so a crash right after opening does not
        // replay it again.
        engine.checkpoint()?;
        tracing::info!(
            replayed = recovered.replayed,
            revision = applied.revision,
            "replayed the log after an unclean shutdown"
        );
    }
    Ok(Parts {
        db,
        engine,
        replayed: recovered.replayed,
        cut: recovered.cut,
    })
}

/// The state database brought up to the end of the log, as opening a store
/// does it, before the log is changed.
pub(crate) struct Replayed {
    /// The durable checkpoint the state database held.
    pub durable: Applied,
    /// The state reached.
    pub applied: Applied,
    /// What the log held.
    pub scanned: Scanned,
    /// The last revision a backup copied.
    pub backed_up: Option<u64>,
}

/// Every check opening a store makes of its state database and log, and the
/// replay: reads the metadata of `db` (of store `store_id`), replays the log in
/// `log_dir` from its checkpoint onto it (in a non-durable transaction), checks
/// that the log ends at the state's revision and that the state can be read.
/// Changes no file of the log: `open` then cuts a torn tail and appends, and
/// `check` runs this on a copy of the state database, so that it finds
/// whatever would keep the store from opening.
///
/// # Errors
/// What `open` fails with for a damaged state database or log.
pub(crate) fn replay_log(
    fs: &dyn Fs,
    db: &Database,
    db_path: &Path,
    log_dir: &Path,
    store_id: &StoreId,
) -> Result<Replayed> {
    let durable = read_meta(db, db_path, store_id)?;
    let checkpoint = Checkpoint {
        revision: durable.revision,
        position: durable.position,
    };
    let mut replayer = Replayer::new(db, db_path, durable);
    let scanned = recovery::scan(fs, log_dir, store_id, checkpoint, |parts, end| {
        replayer.apply(parts, end)
    })?;
    let applied = replayer.finish()?;
    if scanned.last_revision() != applied.revision {
        return Err(Error::corrupt(
            db_path,
            0,
            format!(
                "the state database is at revision {} but the log ends at revision {}; the log \
                 lost commits the state has: restore a backup, or keep the state with \
                 `statelog repair` (it starts a new log from it)",
                applied.revision,
                scanned.last_revision()
            ),
        ));
    }
    let backed_up = read_backed_up(db, db_path)?;
    super::view::View::open(db, db_path, applied)?;
    Ok(Replayed {
        durable,
        applied,
        scanned,
        backed_up,
    })
}

/// Creates `path` and any missing parents, and syncs the directory holding each
/// new one: otherwise a power loss can take the whole store directory (and every
/// commit in it) back, however carefully the files inside were synced.
fn create_dirs_durably(fs: &dyn Fs, path: &Path) -> Result<()> {
    let mut created = Vec::new();
    let mut at = path;
    while !fs
        .exists(at)
        .map_err(|e| Error::io("look for the directory", at, e))?
    {
        created.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    fs.create_dir_all(path)
        .map_err(|e| Error::io("create the store directory", path, e))?;
    for dir in created.iter().rev() {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs.sync_dir(parent)
            .map_err(|e| Error::io("sync the directory", parent, e))?;
    }
    Ok(())
}

fn has_id_file(fs: &dyn Fs, path: &Path) -> Result<bool> {
    let id = path.join(ID_FILE);
    fs.exists(&id)
        .map_err(|e| Error::io("look for the store's identity file", &id, e))
}

/// Whether the directory holds a store (false: a store may be created in
/// it); an error when it holds something else, or a store's files without
/// its identity file (never cleared: see `identity`).
fn classify_directory(fs: &dyn Fs, path: &Path, create: bool) -> Result<bool> {
    if has_id_file(fs, path)? {
        return Ok(true);
    }
    let reason = match identity::leftovers(fs, path)? {
        Leftovers::Nothing | Leftovers::Unfinished(_) if create => return Ok(false),
        Leftovers::Nothing => format!("there is no {ID_FILE} file (create the store first)"),
        Leftovers::Unfinished(_) => format!(
            "its creation, or a restore into it, did not finish ({} is there): run the restore \
             again, or create the store anew",
            identity::CREATING_FILE
        ),
        Leftovers::StoreFiles(files) => Leftovers::describe_store_files(&files),
        Leftovers::Other(other) => format!(
            "it holds other files ({other:?} among them) but no {ID_FILE} file; choose an empty \
             or new directory"
        ),
    };
    Err(Error::NotAStore {
        path: path.to_owned(),
        reason,
    })
}

pub(crate) fn take_lock(fs: &dyn Fs, path: &Path, options: &Options) -> Result<Box<dyn LockGuard>> {
    lock_dir(fs, path, LOCK_FILE, options.lock_timeout)
}

/// Takes the lock file `name` of directory `dir`, waiting up to `timeout`;
/// [`Error::Busy`] names `dir` and the holder when it stays held.
pub(crate) fn lock_dir(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    timeout: std::time::Duration,
) -> Result<Box<dyn LockGuard>> {
    let lock_path = dir.join(name);
    fs::lock_with_timeout(fs, &lock_path, timeout).map_err(|(e, waited)| match e {
        LockError::Held(pid) => Error::Busy {
            path: dir.to_owned(),
            pid,
            waited,
        },
        LockError::Io(e) => Error::io("lock", &lock_path, e),
    })
}

/// Creates a new, empty store. Runs under the lock.
fn create_store(fs: &dyn Fs, path: &Path) -> Result<()> {
    let (store_id, now) = prepare_store(fs, path)?;
    identity::finish(fs, path, &store_id, now)
}

/// Everything of creating a store but the identity file: clears what an
/// unfinished creation left (and refuses anything else), draws a new store
/// id, marks the creation as begun, creates and initialises the state database
/// and the log directory. Runs under the lock. Until [`identity::finish`] the
/// directory is not a store (a restore builds a store's contents in between).
pub(crate) fn prepare_store(fs: &dyn Fs, path: &Path) -> Result<(StoreId, Timestamp)> {
    // Only what a marked, unfinished creation wrote is cleared: a directory
    // holding anything else of a store (a store that lost its identity file)
    // is never emptied.
    let refuse = |reason: String| Error::NotAStore {
        path: path.to_owned(),
        reason,
    };
    match identity::leftovers(fs, path)? {
        Leftovers::Nothing => {}
        Leftovers::Unfinished(_) => identity::clear_unfinished(fs, path)?,
        Leftovers::StoreFiles(files) => {
            return Err(refuse(Leftovers::describe_store_files(&files)));
        }
        Leftovers::Other(other) => {
            return Err(refuse(format!(
                "it holds other files ({other:?} among them) but no {ID_FILE} file; choose an \
                 empty or new directory"
            )));
        }
    }
    let db_path = path.join(DB_FILE);
    let log_dir = path.join(LOG_DIR);
    let mut store_id: StoreId = [0; 16];
    getrandom::fill(&mut store_id).map_err(|e| {
        Error::io(
            "draw a random store id for",
            path,
            std::io::Error::other(e.to_string()),
        )
    })?;
    let now = Timestamp::now();
    identity::begin(fs, path, &store_id, now)?;
    let applied = Applied {
        revision: 0,
        position: Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN as u64,
        },
        time: now,
    };
    create_database(fs, &db_path, &store_id, applied)?;
    // The first segment is created by recovery, which starts an empty log.
    fs.create_dir_all(&log_dir)
        .map_err(|e| Error::io("create", &log_dir, e))?;
    fs.sync_dir(path)
        .map_err(|e| Error::io("sync the store directory", path, e))?;
    Ok((store_id, now))
}

/// Creates the state database `db_path` of store `store_id`, empty, with the
/// schema version, the store id and `applied`, durably.
pub(crate) fn create_database(
    fs: &dyn Fs,
    db_path: &Path,
    store_id: &StoreId,
    applied: Applied,
) -> Result<()> {
    let backend = fs
        .db_backend(db_path)
        .map_err(|e| Error::io("create", db_path, e))?;
    let db = redb::Builder::new()
        .create_with_backend(BoxedBackend(backend, Arc::default()))
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

/// Writes the identity file of the store in `path`: the last step of creating
/// a store, after which the directory is one.
pub(crate) fn write_id_file(
    fs: &dyn Fs,
    path: &Path,
    store_id: &StoreId,
    created: Timestamp,
) -> Result<()> {
    let id = IdFile {
        format: FORMAT_NAME.to_owned(),
        version: STORE_FORMAT_VERSION,
        store_id: catalog::hex(store_id),
        created_at: created.to_string(),
    };
    let mut text = serde_json::to_string_pretty(&id).unwrap_or_default();
    text.push('\n');
    let id_path = path.join(ID_FILE);
    // IMPORTANT: written last; its presence is what makes the directory a store.
    fs::write_file_atomic(fs, &id_path, text.as_bytes())
        .map_err(|e| Error::io("write the store's identity file", &id_path, e))?;
    Ok(())
}

pub(crate) fn read_id_file(fs: &dyn Fs, path: &Path) -> Result<StoreId> {
    let id_path = path.join(ID_FILE);
    let bytes = fs::read_file(fs, &id_path)
        .map_err(|e| Error::io("read the identity file", &id_path, e))?;
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| not_a_store(format!("{ID_FILE} is not valid JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(not_a_store(format!(
            "{ID_FILE} does not name the {FORMAT_NAME:?} format"
        )));
    }
    if let Some(version) = value.get("version").and_then(|v| v.as_u64())
        && version > STORE_FORMAT_VERSION
    {
        return Err(Error::UnsupportedFormat {
            path: id_path,
            found: version,
            supported: STORE_FORMAT_VERSION,
        });
    }
    let id: IdFile = serde_json::from_value(value)
        .map_err(|e| not_a_store(format!("{ID_FILE} is incomplete ({e})")))?;
    parse_store_id(&id.store_id).ok_or_else(|| {
        not_a_store(format!(
            "{ID_FILE} has a malformed store id {:?}",
            id.store_id
        ))
    })
}

pub(crate) fn parse_store_id(text: &str) -> Option<StoreId> {
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

pub(crate) fn open_database(
    fs: &dyn Fs,
    db_path: &Path,
    options: &Options,
    fence: Arc<AtomicBool>,
) -> Result<Database> {
    let backend = fs
        .db_backend(db_path)
        .map_err(|e| Error::io("open", db_path, e))?;
    open_backend(BoxedBackend(backend, fence), db_path, options)
}

/// Opens the state database without ever writing its file: what redb or a
/// replay changes stays in memory ([`Overlay`]).
pub(crate) fn open_database_unwritten(
    fs: &dyn Fs,
    db_path: &Path,
    options: &Options,
) -> Result<Database> {
    let overlay = fs
        .db_backend_read(db_path)
        .and_then(Overlay::new)
        .map_err(|e| Error::io("open", db_path, e))?;
    open_backend(overlay, db_path, options)
}

fn open_backend(
    backend: impl redb::StorageBackend,
    db_path: &Path,
    options: &Options,
) -> Result<Database> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(options.cache_size);
    builder.set_check_integrity_on_open(options.verify_on_open);
    // redb may panic on a file it cannot make sense of; report that as damage
    // instead of taking the caller down.
    let opened = super::contain_panic(|| builder.create_with_backend(backend));
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

fn damaged(db_path: &Path, what: String) -> Error {
    Error::Database {
        op: "open the state database",
        path: db_path.to_owned(),
        hint: "the file is damaged; `statelog repair` rebuilds it from the log when the log \
               reaches back to the store's first revision, otherwise restore a backup",
        source: what.into(),
    }
}

/// The last revision a backup copied, if the store was ever backed up.
pub(crate) fn read_backed_up(db: &Database, db_path: &Path) -> Result<Option<u64>> {
    let meta = super::read_table(db, db_path, META, "open the meta table")?;
    Ok(meta
        .get(schema::META_BACKED_UP)
        .map_err(db_error(db_path, "read the meta table"))?
        .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes)))
}

pub(crate) fn read_meta(db: &Database, db_path: &Path, store_id: &StoreId) -> Result<Applied> {
    let read = super::contain_panic(|| -> Result<_> {
        let meta = super::read_table(db, db_path, META, "open the meta table")?;
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
        .ok_or_else(|| Error::corrupt(db_path, 0, "the state database has no schema version"))?;
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
                "the state database belongs to another store (this store's id is {}); it was \
                 copied in from elsewhere",
                catalog::hex(store_id)
            ),
        ));
    }
    applied_bytes
        .as_deref()
        .and_then(Applied::decode)
        .ok_or_else(|| Error::corrupt(db_path, 0, "the state database has no applied revision"))
}
