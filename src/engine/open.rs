//! Opening a store: create it if asked, take the process lock, check the formats,
//! open the state database, and recover the log. The directory's files are
//! `layout/`'s.

use std::path::Path;
use std::sync::Arc;

use super::{Engine, Recovered};
use crate::db::{self, Db, file};
use crate::error::{self, Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::layout::creation::{self, classify_directory, create_dirs_durably, create_store};
use crate::layout::{self, DB_FILE, LOG_DIR, identity};
use crate::log::recovery::{self, CutTail, WriterSettings};
use crate::log::segment::StoreId;
use crate::options::Options;

/// Everything `open` produces.
pub(crate) struct Opened {
    pub engine: Engine,
    pub store_id: StoreId,
    pub lock: Box<dyn LockGuard>,
    pub replayed: u64,
    pub cut: Option<CutTail>,
}

impl Opened {
    /// Closes the engine (a final checkpoint), then releases the lock.
    pub(crate) fn close(mut self) -> Result<()> {
        self.engine.close()
    }
}

/// Opens the store in `path` in this process, waiting for its lock up to the
/// options' lock timeout and never reaching a holder instead: what the tools
/// do that need the store to themselves (compacting it, proving that a
/// restored or repaired store opens).
pub(crate) fn hold(path: &Path, options: &Options) -> Result<Opened> {
    let opened = open_with::<std::convert::Infallible>(path, options, |fs, dir| {
        Ok(Lock::Taken(layout::take_lock(fs, dir, options)?))
    })?;
    Ok(match opened {
        Ok(opened) => opened,
        Err(never) => match never {},
    })
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
    let initialised = initialised || identity::exists(fs_ref, path)?;
    if !initialised {
        create_store(fs_ref, path)?;
    }
    let store_id = identity::read(fs_ref, path)?;
    let writable = creation::remove_stale_marker(fs_ref, path)
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
    // A log that lost its newest part is refused before the state database
    // is opened: redb's own recovery of an unclean close writes to it.
    recovery::check_end(fs_ref, &path.join(LOG_DIR), &store_id)?;
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
    // A writable store keeps a replay that fits in memory there: readers see
    // it at once, and the engine writes it to the state database before
    // anything else uses the database (`engine/held.rs`).
    let defer = read_only.is_none();
    let replayed =
        db::contain_panic(|| db::replay::replay_log(fs_ref, &db, &log_dir, &store_id, defer))
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
    let writable = read_only.is_none();
    // The index holds no replayed commit yet when the replay is deferred.
    let nothing_before = replayed
        .deferred
        .as_ref()
        .and_then(db::replay::Deferred::history_floor)
        .unwrap_or(applied.revision);
    let history_from = db::history::floor(&db, nothing_before, writable).map_err(fail)?;
    let mut engine = Engine::new(
        db,
        recovered.writer,
        options,
        Recovered {
            applied,
            checkpointed: durable,
            backed_up: replayed.backed_up,
            read_only,
            history_from,
            deferred: replayed.deferred,
        },
    )?;
    if recovered.replayed > 0 && writable {
        if !engine.catching_up() {
            // Make the replay durable now, so a crash right after opening
            // does not replay it again. (A deferred replay is applied and
            // checkpointed by the holder's background thread, or by whatever
            // needs the state database first: `Engine::catch_up`.)
            engine.checkpoint()?;
        }
        tracing::info!(
            replayed = recovered.replayed,
            revision = applied.revision,
            deferred = engine.catching_up(),
            "replayed the log after an unclean shutdown"
        );
    }
    Ok(Parts {
        engine,
        replayed: recovered.replayed,
        cut: recovered.cut,
    })
}
