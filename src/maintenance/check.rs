//! `check`: everything that can be verified about a store or a backup, without
//! changing it.
//!
//! For a store (under its lock, so no writer runs meanwhile):
//! - the state database: copied to a scratch directory, opened there and put
//!   through redb's integrity check (which may write, so never on the store's
//!   own file); its store id and checkpoint. A copy that fails it is not read
//!   further (redb may panic on pages it has not verified), and reading one
//!   that passed runs with redb's panics contained and reported as damage;
//! - the log: every frame of every segment from the first (not only after the
//!   checkpoint), the segment headers and their back-links, and the revisions
//!   running on without a gap (`log::survey`);
//! - the state against the log: the log replayed from its start (revision 1
//!   or a base record) up to the checkpoint into a scratch state database,
//!   then both walked in key order with a digest per namespace. When log
//!   retention removed the log's start, the keys the remaining log wrote are
//!   compared instead (and records the state says were written since), and
//!   the report says how much that covered;
//! - whether the store opens: open's own checks and replay
//!   (`db::replay::replay_log`), run on the copy, so that check never passes
//!   a store that open refuses.
//!
//! The inspection itself is `inspect.rs` (repair decides from it too).
//!
//! For a backup: the manifest and every file's size and CRC-32, headers,
//! revisions from the base to the end, and a trial restore into a scratch
//! directory (which replays every commit and checks each operation follows).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Problem;
use super::inspect::{inspect_store, state_report};
use super::scratch::Scratch;
use crate::backup::build;
use crate::backup::{self, Until};
use crate::db::Db;
use crate::db::inspect;
use crate::db::schema::Applied;
use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::layout::{DB_FILE, ID_FILE};
use crate::options::Options;

/// Options of [`check`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub(crate) scratch_dir: Option<PathBuf>,
    pub(crate) lock_timeout: Duration,
    pub(crate) compare_state: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            scratch_dir: None,
            lock_timeout: Duration::from_secs(30),
            compare_state: true,
        }
    }
}

impl CheckOptions {
    /// The defaults: compare the state with the log, scratch files in the
    /// system's temporary directory, wait up to 30 s for the store.
    pub fn new() -> CheckOptions {
        CheckOptions::default()
    }

    /// Where scratch files go (a copy of the state database and a state rebuilt
    /// from the log: up to twice the state's size). Removed afterwards.
    pub fn scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_dir = Some(dir.into());
        self
    }

    /// How long to wait for a process that has the store open.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Whether to compare the state with the log replayed (the slow part: it
    /// replays the whole log). Default: true.
    pub fn compare_state(mut self, compare: bool) -> Self {
        self.compare_state = compare;
        self
    }
}

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckedKind {
    /// A store directory.
    Store,
    /// A backup directory.
    Backup,
}

/// The log, as far as it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogReport {
    /// Segment files.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The first revision the log holds (a base's revision, or 1), if any.
    pub first_revision: Option<u64>,
    /// The last intact revision.
    pub last_revision: u64,
    /// Complete commits read.
    pub commits: u64,
    /// Whether the log reaches back to the store's first commit (revision 1 or
    /// a base); false when log retention removed its start.
    pub reaches_start: bool,
}

/// What redb's integrity check said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "detail")]
pub enum IntegrityOutcome {
    /// Every page checked out.
    Passed,
    /// It failed, and redb could repair the copy (the store's file is damaged).
    Repairable,
    /// It failed.
    Failed(String),
    /// Not run (the file could not be opened).
    NotRun,
}

/// How far the state could be compared with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum Compared {
    /// Every record, against the whole log replayed up to `revision`.
    Full {
        /// The checkpoint revision compared at.
        revision: u64,
    },
    /// The log starts after the store's first revision: the keys it wrote
    /// from `from_revision` to `revision` were compared.
    Partial {
        /// The log's first revision.
        from_revision: u64,
        /// The checkpoint revision compared at.
        revision: u64,
        /// Records the log vouched for.
        verified: u64,
    },
    /// Not compared, and why.
    NotCompared {
        /// Why.
        reason: String,
    },
}

/// One namespace of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceReport {
    /// The namespace.
    pub namespace: String,
    /// Records in the state database.
    pub records: u64,
    /// Digest of its records (FNV-1a, 64 bits, over addresses, metadata and
    /// values in key order), 16 hex digits.
    pub digest: String,
    /// The same digest of the state rebuilt from the log, when compared in full.
    pub log_digest: Option<String>,
    /// Records that differ from the log.
    pub differing: u64,
}

/// The state database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateReport {
    /// The checkpoint revision it records.
    pub revision: u64,
    /// Its commit time (RFC 3339).
    pub time: String,
    /// Records in it.
    pub records: u64,
    /// redb's integrity check.
    pub integrity: IntegrityOutcome,
    /// How it was compared with the log.
    pub compared: Compared,
    /// Per namespace.
    pub namespaces: Vec<NamespaceReport>,
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// What was checked.
    pub path: PathBuf,
    /// A store or a backup.
    pub kind: CheckedKind,
    /// The store's id (of a backup: the store backed up).
    pub store_id: Option<String>,
    /// Everything wrong; empty when all is well.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not wrong.
    pub notes: Vec<String>,
    /// The log (of a backup: the copied log, with the base as its start).
    pub log: LogReport,
    /// The state database (of a backup: the state a restore would produce).
    pub state: Option<StateReport>,
    /// How long the check took.
    #[serde(serialize_with = "super::millis")]
    pub duration: Duration,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the store or backup in `path` (a backup is a directory holding a
/// `MANIFEST`), changing nothing.
///
/// # Errors
/// [`Error::NotAStore`] when `path` is neither; [`Error::Busy`] when another
/// process keeps the store open; [`Error::Io`] for the scratch directory.
/// Whatever is wrong with the store or backup is in the report.
pub fn check(path: impl AsRef<Path>, options: &CheckOptions) -> Result<CheckReport> {
    let path = path.as_ref();
    let fs = RealFs;
    if fs
        .exists(&path.join(backup::MANIFEST_FILE))
        .map_err(|e| Error::io("look for", path, e))?
        && !fs
            .exists(&path.join(ID_FILE))
            .map_err(|e| Error::io("look for", path, e))?
    {
        return check_backup(path, options);
    }
    let tool = tool_options(options.lock_timeout);
    let (store_id, _lock, lost_identity) = super::identity::lock_store(&fs, path, &tool)?;
    let scratch = Scratch::new(options.scratch_dir.as_deref(), "check")?;
    let mut report =
        inspect_store(&fs, path, &store_id, &tool, &scratch, options.compare_state)?.report;
    if let Some(lost) = lost_identity {
        report.problems.insert(0, lost.problem(path));
    }
    Ok(report)
}

/// The options tools open state databases with: a small cache.
pub(crate) fn tool_options(lock_timeout: Duration) -> Options {
    Options::default()
        .cache_size(16 << 20)
        .lock_timeout(lock_timeout)
        .create(false)
}

/// Checks the backup directory `path`, changing nothing: its manifest, every
/// file's size and CRC-32, headers, every frame, the revisions from the base
/// to the end, and (unless `compare_state` is off) a trial restore into a
/// scratch directory. [`check`] calls this for a directory holding a
/// `MANIFEST`; call it directly to insist on a backup.
///
/// # Errors
/// [`Error::Io`] for the scratch directory. Whatever is wrong with the backup
/// (a missing manifest included) is in the report.
pub fn check_backup(path: impl AsRef<Path>, options: &CheckOptions) -> Result<CheckReport> {
    let path = path.as_ref();
    let started = Instant::now();
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let (verified, findings) = backup::verify::verify(fs.as_ref(), path, Until::End)?;
    let mut problems: Vec<Problem> = findings.into_iter().map(Problem::from).collect();
    let mut notes = Vec::new();
    let mut log = LogReport::default();
    let mut state = None;
    let store_id = verified.as_ref().map(|v| v.view.manifest.store_id.clone());
    if let Some(v) = &verified {
        notes.extend(v.notes.iter().cloned());
        let base = v.view.manifest.base_revision();
        log = LogReport {
            segments: v.view.segments.len(),
            bytes: v.view.manifest.bytes(),
            first_revision: Some(if base > 0 { base } else { 1 }).filter(|_| v.last_revision > 0),
            last_revision: v.last_revision,
            commits: v.commits_after_base + u64::from(base > 0),
            reaches_start: base == 0,
        };
        if options.compare_state {
            // A trial restore: every commit replayed and checked.
            let scratch = Scratch::new(options.scratch_dir.as_deref(), "check")?;
            let target = scratch.path().join("restored");
            let source = build::Source {
                base: v.view.base.clone(),
                store_id: v.view.store_id,
                segments: v.view.segments.clone(),
                start_previous: v.view.start_previous,
                first_after_base: v.first_after_base,
                until: v.last_revision,
            };
            let tool = tool_options(options.lock_timeout).preallocate(0);
            match build::build_store(&fs, &target, &tool, &source, &mut |_, _| ()) {
                Ok(built) => {
                    let db_path = target.join(DB_FILE);
                    let db = Db::open(fs.as_ref(), &db_path, &tool)?;
                    let c = inspect::compare_full(&db, &db)?;
                    let applied = Applied {
                        revision: built.revision,
                        position: crate::log::Position {
                            segment: 0,
                            offset: 0,
                        },
                        time: built.time,
                    };
                    let mut report = state_report(
                        applied,
                        IntegrityOutcome::NotRun,
                        Compared::NotCompared {
                            reason: "a backup has no state database; this is the state a \
                                     restore produces"
                                .to_owned(),
                        },
                        Some(c),
                    );
                    for n in &mut report.namespaces {
                        n.log_digest = None;
                    }
                    state = Some(report);
                }
                Err(e) => problems.push(Problem {
                    file: Some(path.to_owned()),
                    offset: None,
                    namespace: None,
                    what: format!("replaying the backup does not work: {}", e),
                    action: "the backup cannot be restored: take a new backup into a new \
                             directory"
                        .to_owned(),
                }),
            }
        }
    }
    Ok(CheckReport {
        path: path.to_owned(),
        kind: CheckedKind::Backup,
        store_id,
        problems,
        notes,
        log,
        state,
        duration: started.elapsed(),
    })
}
