//! Creating a store, and what a directory without an identity file
//! (`STATELOG`) holds: what may be done with it.
//!
//! A creation (a new store, or a restore building one) first writes a marker,
//! `CREATING`, naming the store id it is about to create; then the state
//! database and the log; then `STATELOG`; then it removes the marker. So:
//!
//! - `STATELOG` present: a store (a marker beside it is stale; opening removes it).
//! - no `STATELOG`, a marker, and only files of the marker's store: an
//!   unfinished creation or restore, which never held anything but what it was
//!   building. The next creation clears it.
//! - no `STATELOG`, no marker, and a state database, log segments, torn tails
//!   or repair directories: a store that lost its identity file. Nothing ever
//!   clears it; `repair` rebuilds the identity from the store id its files
//!   agree on (segment headers, the state database's metadata).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CREATING_FILE, DB_FILE, ID_FILE, LOCK_FILE, LOG_DIR, identity, is_repair_dir};
use crate::db::{self, schema::Applied};
use crate::error::{Error, Result};
use crate::fs::{self, Fs};
use crate::log::Position;
use crate::log::catalog;
use crate::log::segment::{self, SEGMENT_HEADER_LEN, StoreId};
use crate::time::Timestamp;

const MARKER_FORMAT: &str = "statelog-creating";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    store_id: String,
    started_at: String,
}

/// What a directory without an identity file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leftovers {
    /// Nothing that can hold data: nothing at all, a lock file, an empty log
    /// directory, temporary files.
    Nothing,
    /// What a creation or restore of the store with this id left when it did
    /// not finish: cleared by the next creation.
    Unfinished(StoreId),
    /// Files of a store with no identity file, by name (`log/` with what it
    /// holds): never cleared.
    StoreFiles(Vec<String>),
    /// A file that is nothing of a store.
    Other(String),
}

impl Leftovers {
    /// What to tell a user about a directory holding a store's files but no
    /// identity file.
    pub(crate) fn describe_store_files(files: &[String]) -> String {
        format!(
            "it holds a store's files ({}) but no {ID_FILE} identity file, so it was left as it \
             is; `statelog repair` rebuilds the identity from them",
            files.join(", ")
        )
    }
}

/// Inspects the directory `path` (which has no `STATELOG`).
pub(crate) fn leftovers(fs: &dyn Fs, path: &Path) -> Result<Leftovers> {
    let names = fs
        .read_dir(path)
        .map_err(|e| Error::io("list the store directory", path, e))?;
    let marker = if names.iter().any(|n| n == CREATING_FILE) {
        match read_marker(fs, path) {
            Some(id) => Some(id),
            None => return Ok(Leftovers::Other(CREATING_FILE.to_owned())),
        }
    } else {
        None
    };
    let mut data = Vec::new();
    let mut building = Vec::new();
    for name in &names {
        match name.as_str() {
            LOCK_FILE | CREATING_FILE => {}
            n if n.ends_with(".tmp")
                && (n.starts_with(ID_FILE) || n.starts_with(CREATING_FILE)) => {}
            DB_FILE => building.push(DB_FILE.to_owned()),
            LOG_DIR => log_files(fs, &path.join(LOG_DIR), marker, &mut data, &mut building)?,
            n if is_repair_dir(n) => data.push(format!("{n}/")),
            other => return Ok(Leftovers::Other(other.to_owned())),
        }
    }
    Ok(match marker {
        Some(id) if data.is_empty() => Leftovers::Unfinished(id),
        _ if data.is_empty() && building.is_empty() => Leftovers::Nothing,
        _ => {
            data.extend(building);
            data.sort();
            Leftovers::StoreFiles(data)
        }
    })
}

/// Sorts the files of the log directory into what an unfinished creation of
/// the store `marker` may have written (`building`) and what must be kept.
fn log_files(
    fs: &dyn Fs,
    dir: &Path,
    marker: Option<StoreId>,
    data: &mut Vec<String>,
    building: &mut Vec<String>,
) -> Result<()> {
    let names = fs
        .read_dir(dir)
        .map_err(|e| Error::io("list the log directory", dir, e))?;
    for name in names {
        let shown = format!("{LOG_DIR}/{name}");
        if catalog::is_temporary(&name)
            && segment::parse_file_name(&name[..name.len() - 4]).is_some()
        {
            // A segment being created: it never held a commit.
            continue;
        }
        if segment::parse_file_name(&name).is_none() {
            // Torn tails cut off and anything else: kept.
            data.push(shown);
            continue;
        }
        let ours = match (marker, catalog::read_header(fs, &dir.join(&name))) {
            (Some(id), Ok(header)) => header.store_id == id,
            // Written after the marker, or damaged: the marker vouches for it.
            (Some(_), Err(Error::Corrupt { .. })) => true,
            (_, Err(e @ Error::Io { .. })) => return Err(e),
            _ => false,
        };
        if ours {
            building.push(shown);
        } else {
            data.push(shown);
        }
    }
    Ok(())
}

fn read_marker(fs: &dyn Fs, path: &Path) -> Option<StoreId> {
    let bytes = fs::read_file(fs, &path.join(CREATING_FILE)).ok()?;
    let marker: Marker = serde_json::from_slice(&bytes).ok()?;
    if marker.format != MARKER_FORMAT {
        return None;
    }
    catalog::parse_hex(&marker.store_id)
}

/// Clears what an unfinished creation left (see [`Leftovers::Unfinished`]):
/// its state database and its log segments. The marker stays until the next
/// one replaces it, so that a crash meanwhile leaves it marked.
pub(crate) fn clear_unfinished(fs: &dyn Fs, path: &Path) -> Result<()> {
    let db_path = path.join(DB_FILE);
    if fs
        .exists(&db_path)
        .map_err(|e| Error::io("look for", &db_path, e))?
    {
        fs.remove_file(&db_path)
            .map_err(|e| Error::io("remove the unfinished", &db_path, e))?;
    }
    let log_dir = path.join(LOG_DIR);
    if fs
        .exists(&log_dir)
        .map_err(|e| Error::io("look for", &log_dir, e))?
    {
        for name in fs
            .read_dir(&log_dir)
            .map_err(|e| Error::io("list", &log_dir, e))?
        {
            let file = log_dir.join(&name);
            fs.remove_file(&file)
                .map_err(|e| Error::io("remove the unfinished", &file, e))?;
        }
        fs.sync_dir(&log_dir)
            .map_err(|e| Error::io("sync the directory", &log_dir, e))?;
    }
    fs.sync_dir(path)
        .map_err(|e| Error::io("sync the store directory", path, e))
}

/// Marks the creation of the store `store_id` in `path` as begun (durably):
/// until [`finish`] removes the marker, the next creation may clear what this
/// one writes.
pub(crate) fn begin(fs: &dyn Fs, path: &Path, store_id: &StoreId, now: Timestamp) -> Result<()> {
    let marker = Marker {
        format: MARKER_FORMAT.to_owned(),
        store_id: catalog::hex(store_id),
        started_at: now.to_string(),
    };
    let mut text = serde_json::to_string_pretty(&marker).unwrap_or_default();
    text.push('\n');
    let marker_path = path.join(CREATING_FILE);
    fs::write_file_atomic(fs, &marker_path, text.as_bytes())
        .map_err(|e| Error::io("write the creation marker", &marker_path, e))
}

/// Ends a creation: writes the identity file (from here the directory is a
/// store), then removes the marker.
pub(crate) fn finish(
    fs: &dyn Fs,
    path: &Path,
    store_id: &StoreId,
    created: Timestamp,
) -> Result<()> {
    identity::write(fs, path, store_id, created)?;
    remove_stale_marker(fs, path)
}

/// Removes the marker of a store's finished creation, if one is left (a crash
/// right after the identity file was written). Not synced: should it come
/// back, it is removed again.
pub(crate) fn remove_stale_marker(fs: &dyn Fs, path: &Path) -> Result<()> {
    let marker = path.join(CREATING_FILE);
    if fs
        .exists(&marker)
        .map_err(|e| Error::io("look for", &marker, e))?
    {
        fs.remove_file(&marker)
            .map_err(|e| Error::io("remove the creation marker", &marker, e))?;
    }
    Ok(())
}

/// Creates `path` and any missing parents, and syncs the directory holding each
/// new one: otherwise a power loss can take the whole store directory (and every
/// commit in it) back, however carefully the files inside were synced.
pub(crate) fn create_dirs_durably(fs: &dyn Fs, path: &Path) -> Result<()> {
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

/// Whether the directory holds a store (false: a store may be created in
/// it); an error when it holds something else, or a store's files without
/// its identity file (never cleared: see `identity`).
pub(crate) fn classify_directory(fs: &dyn Fs, path: &Path, create: bool) -> Result<bool> {
    if identity::exists(fs, path)? {
        return Ok(true);
    }
    let reason = match leftovers(fs, path)? {
        Leftovers::Nothing | Leftovers::Unfinished(_) if create => return Ok(false),
        Leftovers::Nothing => format!("there is no {ID_FILE} file (create the store first)"),
        Leftovers::Unfinished(_) => format!(
            "its creation, or a restore into it, did not finish ({} is there): run the restore \
             again, or create the store anew",
            CREATING_FILE
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

/// Creates a new, empty store. Runs under the lock.
pub(crate) fn create_store(fs: &dyn Fs, path: &Path) -> Result<()> {
    let (store_id, now) = prepare_store(fs, path)?;
    finish(fs, path, &store_id, now)
}

/// Everything of creating a store but the identity file: clears what an
/// unfinished creation left (and refuses anything else), draws a new store
/// id, marks the creation as begun, creates and initialises the state database
/// and the log directory. Runs under the lock. Until [`finish`] the
/// directory is not a store (a restore builds a store's contents in between).
pub(crate) fn prepare_store(fs: &dyn Fs, path: &Path) -> Result<(StoreId, Timestamp)> {
    // Only what a marked, unfinished creation wrote is cleared: a directory
    // holding anything else of a store (a store that lost its identity file)
    // is never emptied.
    let refuse = |reason: String| Error::NotAStore {
        path: path.to_owned(),
        reason,
    };
    match leftovers(fs, path)? {
        Leftovers::Nothing => {}
        Leftovers::Unfinished(_) => clear_unfinished(fs, path)?,
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
    begin(fs, path, &store_id, now)?;
    let applied = Applied {
        revision: 0,
        position: Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN as u64,
        },
        time: now,
    };
    db::file::create(fs, &db_path, &store_id, applied)?;
    // The first segment is created by recovery, which starts an empty log.
    fs.create_dir_all(&log_dir)
        .map_err(|e| Error::io("create", &log_dir, e))?;
    fs.sync_dir(path)
        .map_err(|e| Error::io("sync the store directory", path, e))?;
    Ok((store_id, now))
}
