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
mod identity;
mod inspect;
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

impl From<crate::backup::verify::Finding> for Problem {
    fn from(f: crate::backup::verify::Finding) -> Problem {
        Problem {
            file: Some(f.file),
            offset: f.offset,
            namespace: None,
            what: f.what,
            action: f.action,
        }
    }
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
