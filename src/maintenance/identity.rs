//! A store whose identity file (`STATELOG`) is missing or unreadable: the
//! store id its files agree on (segment headers, the state database's
//! metadata), which `check` reports and `repair` writes back.

use std::path::Path;

use super::Problem;
use crate::db;
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::layout::creation::{self, Leftovers};
use crate::layout::{self, CREATING_FILE, DB_FILE, ID_FILE, LOG_DIR, identity};
use crate::log::catalog;
use crate::log::segment::StoreId;
use crate::options::Options;

/// A store whose identity file is missing or unreadable, and the id its files
/// agree on.
pub(crate) struct LostIdentity {
    /// Why `STATELOG` could not be used.
    pub why: String,
    /// The id, and where it was read.
    pub evidence: Evidence,
}

impl LostIdentity {
    /// The problem, as `check` and `repair` report it, for the store in `path`.
    pub(crate) fn problem(&self, path: &Path) -> Problem {
        Problem {
            file: Some(path.join(ID_FILE)),
            offset: None,
            namespace: None,
            what: format!(
                "the store's identity file is {}; the store's files name store id {} ({})",
                self.why,
                catalog::hex(&self.evidence.store_id),
                self.evidence.sources.join(" and ")
            ),
            action: "`statelog repair` rebuilds it from them".to_owned(),
        }
    }
}

/// Takes the lock of the store in `path` for a tool, with its id. When the
/// identity file is missing or unreadable but the store's files agree on a
/// store id, that id and what was wrong (the file is left as it is).
///
/// # Errors
/// [`Error::NotAStore`](crate::Error::NotAStore) when `path` holds no store
/// (nor the files of one); [`Error::Busy`](crate::Error::Busy).
pub(crate) fn lock_store(
    fs: &dyn Fs,
    path: &Path,
    options: &Options,
) -> Result<(StoreId, Box<dyn LockGuard>, Option<LostIdentity>)> {
    let why = match identity::store_id_of(fs, path) {
        Ok(id) => {
            let lock = layout::take_lock(fs, path, options)?;
            return Ok((id, lock, None));
        }
        Err(Error::NotAStore { reason, .. }) if fs.exists(path).unwrap_or(false) => reason,
        Err(e) => return Err(e),
    };
    // Only a directory holding a store's files gets a lock file.
    evidence(fs, path, options)?;
    let lock = layout::take_lock(fs, path, options)?;
    let evidence = evidence(fs, path, options)?;
    let why = if fs.exists(&path.join(ID_FILE)).unwrap_or(false) {
        format!("unreadable ({why})")
    } else {
        "missing".to_owned()
    };
    Ok((
        evidence.store_id,
        lock,
        Some(LostIdentity { why, evidence }),
    ))
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
    if let Leftovers::Unfinished(_) = creation::leftovers(fs, path)? {
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
        && let Some(id) = db::file::read_store_id(fs, &db_path, options)
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
