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

use serde::{Deserialize, Serialize};

use super::engine::Engine;
use super::identity::{self, Leftovers};
use crate::db::schema::Applied;
use crate::db::{self, Db, file};
use crate::error::{self, Error, Result};
use crate::fs::{self, Fs, LockError, LockGuard};
use crate::log::Position;
use crate::log::catalog;
use crate::log::recovery::{self, CutTail, WriterSettings};
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
        Err(e) if file::cannot_write(&e) => {
            let reason = error::chain(&e);
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
        engine: opened.engine,
        store_id,
        lock,
        replayed: opened.replayed,
        cut: opened.cut,
    }))
}

/// What [`open_store`] opened.
struct Parts {
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
    let db = match read_only {
        Some(_) => Db::open_unwritten(fs_ref, &db_path, options)?,
        None => Db::open(fs_ref, &db_path, options)?,
    };
    // An open that fails writes nothing more: redb would make the replayed,
    // non-durable commits durable when the database is dropped.
    let fail = |e: Error| {
        db.fence();
        e
    };
    let log_dir = path.join(LOG_DIR);
    // A damaged file can make redb panic while the state is read and replayed
    // onto (what `verify_on_open` would have caught first): an error, not a
    // panic in the caller's process.
    let replayed = db::contain_panic(|| db::replay::replay_log(fs_ref, &db, &log_dir, &store_id))
        .map_err(|panicked| file::damaged(&db_path, panicked))
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
    let mut engine = Engine::new(db, recovered.writer, options.durability, applied, durable)?;
    engine.retention = options.retention;
    engine.clock = options.clock.clone();
    engine.backed_up = backed_up;
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
        engine,
        replayed: recovered.replayed,
        cut: recovered.cut,
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
    file::create(fs, &db_path, &store_id, applied)?;
    // The first segment is created by recovery, which starts an empty log.
    fs.create_dir_all(&log_dir)
        .map_err(|e| Error::io("create", &log_dir, e))?;
    fs.sync_dir(path)
        .map_err(|e| Error::io("sync the store directory", path, e))?;
    Ok((store_id, now))
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
