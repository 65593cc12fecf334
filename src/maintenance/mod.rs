//! The recovery tool's store side: [`check`] (read-only, for a store or a
//! backup), [`repair`] and [`compact`].
//!
//! ```
//! use statelog::maintenance::{check, CheckOptions};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = statelog::Store::open(dir.path().join("state"), Default::default())?;
//! store.put("jobs", "build", &"queued")?;
//! store.close()?;
//! let report = check(dir.path().join("state"), &CheckOptions::new())?;
//! assert!(report.is_ok(), "{:?}", report.problems);
//! # Ok::<(), statelog::Error>(())
//! ```
//!
//! They work on the real file system, with the store closed (they take its
//! lock, so no writer runs meanwhile). What each does and decides is in
//! `DESIGN.md`, "Backups, restore, check and repair".

mod check;
mod compact;
mod rebase;
mod repair;
mod scratch;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

pub use self::check::{
    CheckOptions, CheckReport, CheckedKind, Compared, IntegrityOutcome, LogReport, NamespaceReport,
    StateReport, check, check_backup,
};
pub use self::compact::{CompactReport, compact};
pub use self::repair::{Lost, RepairOptions, RepairReport, repair};
use crate::time::Timestamp;

/// Serializes a report's duration as whole milliseconds.
fn millis<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One thing wrong, where it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file concerned, if one is.
    pub file: Option<PathBuf>,
    /// The byte offset in it, if known.
    pub offset: Option<u64>,
    /// The namespace concerned (for a state that differs from the log).
    pub namespace: Option<String>,
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub action: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.offset) {
            (Some(file), Some(offset)) => write!(f, "{} at byte {offset}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            _ => {}
        }
        if let Some(ns) = &self.namespace {
            write!(f, "namespace {ns}: ")?;
        }
        write!(f, "{} ({})", self.what, self.action)
    }
}

/// The store id of the store in `path`; [`Error::NotAStore`](crate::Error::NotAStore)
/// when there is none.
pub(crate) fn store_id_of(
    fs: &dyn crate::fs::Fs,
    path: &std::path::Path,
) -> crate::Result<crate::log::segment::StoreId> {
    let id = path.join(crate::store::open::ID_FILE);
    if !fs
        .exists(&id)
        .map_err(|e| crate::Error::io("look for", &id, e))?
    {
        return Err(crate::Error::NotAStore {
            path: path.to_owned(),
            reason: format!(
                "there is no {} file (it is not a store, or its creation never finished)",
                crate::store::open::ID_FILE
            ),
        });
    }
    crate::store::open::read_id_file(fs, path)
}

/// A store whose identity file is missing or unreadable, and the id its files
/// agree on.
pub(crate) struct LostIdentity {
    /// Why `STATELOG` could not be used.
    pub why: String,
    /// The id, and where it was read.
    pub evidence: crate::store::identity::Evidence,
}

impl LostIdentity {
    /// The problem, as `check` and `repair` report it, for the store in `path`.
    pub(crate) fn problem(&self, path: &std::path::Path) -> Problem {
        Problem {
            file: Some(path.join(crate::store::open::ID_FILE)),
            offset: None,
            namespace: None,
            what: format!(
                "the store's identity file is {}; the store's files name store id {} ({})",
                self.why,
                crate::log::catalog::hex(&self.evidence.store_id),
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
    fs: &dyn crate::fs::Fs,
    path: &std::path::Path,
    options: &crate::Options,
) -> crate::Result<(
    crate::log::segment::StoreId,
    Box<dyn crate::fs::LockGuard>,
    Option<LostIdentity>,
)> {
    let why = match store_id_of(fs, path) {
        Ok(id) => {
            let lock = crate::store::open::take_lock(fs, path, options)?;
            return Ok((id, lock, None));
        }
        Err(crate::Error::NotAStore { reason, .. }) if fs.exists(path).unwrap_or(false) => reason,
        Err(e) => return Err(e),
    };
    // Only a directory holding a store's files gets a lock file.
    crate::store::identity::evidence(fs, path, options)?;
    let lock = crate::store::open::take_lock(fs, path, options)?;
    let evidence = crate::store::identity::evidence(fs, path, options)?;
    let why = if fs
        .exists(&path.join(crate::store::open::ID_FILE))
        .unwrap_or(false)
    {
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

/// A time as a compact name part: `20260102T030405Z`.
pub(crate) fn stamp(t: Timestamp) -> String {
    let text = t.to_string();
    let mut out: String = text
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_names() {
        let t: Timestamp = "2026-01-02T03:04:05.000006Z".parse().unwrap();
        assert_eq!(stamp(t), "20260102T030405Z");
    }
}
