//! What a directory without an identity file (`STATELOG`) holds, and what may
//! be done with it.
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

use super::open::{self, DB_FILE, ID_FILE, LOCK_FILE, LOG_DIR};
use crate::error::{Error, Result};
use crate::fs::{self, Fs};
use crate::log::catalog;
use crate::log::segment::{self, StoreId};
use crate::options::Options;
use crate::time::Timestamp;

/// The marker of a creation in progress.
pub(crate) const CREATING_FILE: &str = "CREATING";
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
            n if n.starts_with("repair-") => data.push(format!("{n}/")),
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
    open::parse_store_id(&marker.store_id)
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
    open::write_id_file(fs, path, store_id, created)?;
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

/// The store id a store's files agree on, for rebuilding a lost identity file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// The id.
    pub store_id: StoreId,
    /// Where it was read: "3 log segment headers", "the state database".
    pub sources: Vec<String>,
}

/// Reads the store id from every segment header in `path`'s log and from the
/// state database's metadata (without writing it). Refuses when they
/// disagree, when nothing names one, or when the directory is an unfinished
/// creation rather than a store.
pub(crate) fn evidence(fs: &dyn Fs, path: &Path, options: &Options) -> Result<Evidence> {
    let refuse = |reason: String| Error::NotAStore {
        path: path.to_owned(),
        reason,
    };
    if let Leftovers::Unfinished(_) = leftovers(fs, path)? {
        return Err(refuse(format!(
            "it is what a store creation or restore left when it did not finish ({CREATING_FILE} \
             is there): run the restore again, or `statelog init` for a new empty store"
        )));
    }
    let mut seen: Vec<(String, StoreId)> = Vec::new();
    let log_dir = path.join(LOG_DIR);
    if fs
        .exists(&log_dir)
        .map_err(|e| Error::io("look for", &log_dir, e))?
    {
        for (_, file) in catalog::segment_files(fs, &log_dir)? {
            if let Ok(header) = catalog::read_header(fs, &file) {
                seen.push((format!("log segment {}", file.display()), header.store_id));
            }
        }
    }
    let db_path = path.join(DB_FILE);
    if fs
        .exists(&db_path)
        .map_err(|e| Error::io("look for", &db_path, e))?
        && let Some(id) = crate::db::file::read_store_id(fs, &db_path, options)
    {
        seen.push(("the state database".to_owned(), id));
    }
    let Some((_, store_id)) = seen.first().cloned() else {
        return Err(refuse(format!(
            "there is no {ID_FILE} file, and no log segment or state database names a store id \
             to rebuild it from"
        )));
    };
    if let Some((other, id)) = seen.iter().find(|(_, id)| *id != store_id) {
        return Err(refuse(format!(
            "there is no {ID_FILE} file, and its files name different stores ({} says {}, {} \
             says {}): move the foreign files out, then run `statelog repair` again",
            seen[0].0,
            catalog::hex(&store_id),
            other,
            catalog::hex(id)
        )));
    }
    let segments = seen.iter().filter(|(s, _)| s.starts_with("log")).count();
    let mut sources = Vec::new();
    if segments > 0 {
        sources.push(format!(
            "{segments} log segment header{}",
            if segments == 1 { "" } else { "s" }
        ));
    }
    if seen.iter().any(|(s, _)| s == "the state database") {
        sources.push("the state database".to_owned());
    }
    Ok(Evidence { store_id, sources })
}
