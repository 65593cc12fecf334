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
//!   (`db::replay::replay_log`), run on the copy, so that check never passes a store
//!   that open refuses.
//!
//! For a backup: the manifest and every file's size and CRC-32, headers,
//! revisions from the base to the end, and a trial restore into a scratch
//! directory (which replays every commit and checks each operation follows).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Problem;
use super::scratch::Scratch;
use crate::backup::build;
use crate::backup::{self, Until};
use crate::db::inspect::{self, Comparison};
use crate::db::schema::Applied;
use crate::db::{Db, contain_panic, rebuild, replay};
use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::layout::{DB_FILE, ID_FILE, LOG_DIR};
use crate::log::catalog;
use crate::log::segment::StoreId;
use crate::log::survey::{self, Survey};
use crate::options::Options;
use crate::time::Timestamp;

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

/// The state database as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DbState {
    /// No `state.redb`.
    Missing,
    /// It cannot be opened, belongs to another store, or has no usable metadata.
    Unusable(String),
    /// redb's integrity check failed.
    Damaged(String),
    /// It opens and checks out; `matches` is false when it differs from the log.
    Healthy { applied: Applied, matches: bool },
}

/// A store inspected: the report and what repair decides from.
pub(crate) struct Inspection {
    pub report: CheckReport,
    pub survey: Survey,
    pub db: DbState,
    /// The log has a commit at the checkpoint's revision ending where the
    /// checkpoint says (or this could not be compared).
    pub position_ok: bool,
    /// Where the checkpoint's revision ends in the log, when found.
    pub position_in_log: Option<crate::log::Position>,
    /// Why the store would not open as it is, when its state database is
    /// healthy (open's checks and replay, run on the copy).
    pub does_not_open: Option<String>,
}

fn hex64(v: u64) -> String {
    format!("{v:016x}")
}

/// Inspects the store in `path` (the caller holds its lock).
pub(crate) fn inspect_store(
    fs: &dyn Fs,
    path: &Path,
    store_id: &StoreId,
    options: &Options,
    scratch: &Scratch,
    compare_state: bool,
) -> Result<Inspection> {
    let started = Instant::now();
    let log_dir = path.join(LOG_DIR);
    let db_path = path.join(DB_FILE);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let survey = survey::survey(fs, &log_dir, store_id)?;
    let last = survey.last_revision();
    let mut damage_problem = None;
    if let Some(damage) = &survey.damage {
        if damage.torn {
            notes.push(format!(
                "the log ends in a torn write at byte {} of {} ({}): it was never acknowledged, \
                 and the next open cuts it",
                damage.offset,
                damage.file.display(),
                damage.problem
            ));
        } else {
            let lost = match survey.beyond {
                Some((_, hi)) if hi > last => format!(
                    "revisions {} to {hi}, read beyond the damage, would be lost",
                    last + 1
                ),
                _ => format!("nothing after revision {last} could be read beyond the damage"),
            };
            damage_problem = Some(problems.len());
            problems.push(Problem {
                file: Some(damage.file.clone()),
                offset: Some(damage.offset),
                namespace: None,
                what: format!(
                    "the log is damaged: {}; it is intact up to revision {last}",
                    damage.problem
                ),
                action: format!(
                    "`statelog repair` keeps the log up to revision {last} and moves the rest \
                     aside ({lost}), or restore a backup"
                ),
            });
        }
    }
    if let Some(lost) = &survey.lost_newest {
        problems.push(Problem {
            file: Some(lost.file.clone()),
            offset: Some(lost.offset),
            namespace: None,
            what: format!("the log lost its newest part: {}", lost.problem),
            action: format!(
                "restore a backup, or accept the loss with `statelog repair` (the log then ends \
                 at revision {last})"
            ),
        });
    }
    if survey.rotation_interrupted {
        notes.push(
            "a crash interrupted a segment rotation (the newest segment holds nothing, and the \
             one before it is not sealed yet): the next open finishes it"
                .to_owned(),
        );
    }
    let log = LogReport {
        segments: survey.files.len(),
        bytes: survey.bytes,
        first_revision: survey.first.map(|(r, _)| r),
        last_revision: last,
        commits: survey.commits,
        reaches_start: survey.complete,
    };

    // The state database, on a copy.
    let mut db_state = DbState::Missing;
    let mut state = None;
    let mut position_ok = true;
    let mut position_in_log = None;
    let mut does_not_open = None;
    let exists = fs
        .exists(&db_path)
        .map_err(|e| Error::io("look for", &db_path, e))?;
    let repair_hint = if survey.complete {
        "`statelog repair` rebuilds it from the log, which reaches back to the store's first \
         revision"
    } else {
        "the log no longer reaches back to the store's first revision, so it cannot be rebuilt \
         from the log: restore a backup"
    };
    if !exists {
        problems.push(Problem {
            file: Some(db_path.clone()),
            offset: None,
            namespace: None,
            what: "the state database is missing".to_owned(),
            action: repair_hint.to_owned(),
        });
    } else {
        let copy_path = scratch.path().join(DB_FILE);
        let copy = inspect::open_copy(fs, &db_path, &copy_path, store_id, options)?;
        let integrity = match &copy.integrity {
            Some(Ok(true)) => IntegrityOutcome::Passed,
            Some(Ok(false)) => IntegrityOutcome::Repairable,
            Some(Err(e)) => IntegrityOutcome::Failed(e.clone()),
            None => IntegrityOutcome::NotRun,
        };
        if let Some(why) = &copy.open_error {
            db_state = DbState::Unusable(why.clone());
            problems.push(Problem {
                file: Some(db_path.clone()),
                offset: None,
                namespace: None,
                what: format!("the state database cannot be used: {why}"),
                action: repair_hint.to_owned(),
            });
        } else if integrity != IntegrityOutcome::Passed {
            let why = match &integrity {
                IntegrityOutcome::Failed(e) => e.clone(),
                _ => "its pages do not match their checksums".to_owned(),
            };
            db_state = DbState::Damaged(why.clone());
            problems.push(Problem {
                file: Some(db_path.clone()),
                offset: None,
                namespace: None,
                what: format!("the state database fails its integrity check: {why}"),
                action: repair_hint.to_owned(),
            });
        }
        let healthy = matches!(db_state, DbState::Missing);
        if let (Some(applied), false) = (copy.applied, healthy) {
            // Its pages are not walked: redb trusts what it reads, and may panic.
            let compared = Compared::NotCompared {
                reason: "the state database is damaged".to_owned(),
            };
            state = Some(state_report(applied, integrity.clone(), compared, None));
        }
        if let (Some(db), Some(applied), true) = (&copy.db, copy.applied, healthy) {
            let (problems_before, notes_before) = (problems.len(), notes.len());
            let walked = contain_panic(|| -> Result<()> {
                let mut comparison = None;
                let compared = if !compare_state {
                    Compared::NotCompared {
                        reason: "not asked for".to_owned(),
                    }
                } else if applied.revision > last {
                    problems.push(Problem {
                        file: Some(db_path.clone()),
                        offset: None,
                        namespace: None,
                        what: format!(
                            "the state database's checkpoint is at revision {}, but the intact log \
                             ends at revision {last}",
                            applied.revision
                        ),
                        action: "`statelog repair` re-bases the log on the state database (a new \
                                 base segment at its revision; the old log is moved aside)"
                            .to_owned(),
                    });
                    Compared::NotCompared {
                        reason: format!(
                            "the log ends before the checkpoint (revision {})",
                            applied.revision
                        ),
                    }
                } else if survey.complete {
                    let rebuilt_path = scratch.path().join("rebuilt.redb");
                    match rebuild::replay_into_new(
                        fs,
                        &rebuilt_path,
                        store_id,
                        options,
                        &survey.chain,
                        survey.start_previous,
                        applied.revision,
                    ) {
                        Ok(rebuilt) => {
                            position_in_log = Some(rebuilt.position);
                            if applied.revision > 0 && rebuilt.position != applied.position {
                                position_ok = false;
                                problems.push(Problem {
                                    file: Some(db_path.clone()),
                                    offset: None,
                                    namespace: None,
                                    what: format!(
                                        "the checkpoint says revision {} ends at byte {} of segment \
                                         {}, but in the log it ends at byte {} of segment {}",
                                        applied.revision,
                                        applied.position.offset,
                                        applied.position.segment,
                                        rebuilt.position.offset,
                                        rebuilt.position.segment
                                    ),
                                    action: "`statelog repair` points the checkpoint at the log"
                                        .to_owned(),
                                });
                            }
                            {
                                let rebuilt_db = Db::open(fs, &rebuilt_path, options)?;
                                comparison = Some(inspect::compare_full(db, &rebuilt_db)?);
                            }
                            // The commits after the checkpoint must replay onto it.
                            if last > applied.revision
                                && let Err(e) = rebuild::replay_continue(
                                    fs,
                                    &rebuilt_path,
                                    options,
                                    &survey.chain,
                                    rebuilt,
                                    last,
                                )
                            {
                                problems.push(Problem {
                                    file: Some(log_dir.clone()),
                                    offset: None,
                                    namespace: None,
                                    what: format!(
                                        "the log after the checkpoint (revision {}) does not replay \
                                         onto it: {e}",
                                        applied.revision
                                    ),
                                    action: "the log contradicts itself: restore a backup".to_owned(),
                                });
                            }
                            Compared::Full {
                                revision: applied.revision,
                            }
                        }
                        Err(e) => {
                            problems.push(Problem {
                                file: Some(log_dir.clone()),
                                offset: None,
                                namespace: None,
                                what: format!(
                                    "replaying the log from its start does not work: {}",
                                    e
                                ),
                                action: "the log contradicts itself: restore a backup".to_owned(),
                            });
                            Compared::NotCompared {
                                reason: "the log does not replay".to_owned(),
                            }
                        }
                    }
                } else {
                    let from = survey.start_previous + 1;
                    if applied.revision < survey.start_previous {
                        Compared::NotCompared {
                            reason: format!(
                                "the log starts at revision {from}, after the checkpoint at {}",
                                applied.revision
                            ),
                        }
                    } else {
                        let touched_path = scratch.path().join("touched.redb");
                        let (touched, position) = inspect::fold_partial(
                            fs,
                            &touched_path,
                            store_id,
                            options,
                            &survey.chain,
                            survey.start_previous,
                            applied.revision,
                        )?;
                        position_in_log = position;
                        if let Some(position) = position
                            && position != applied.position
                        {
                            position_ok = false;
                            problems.push(Problem {
                                file: Some(db_path.clone()),
                                offset: None,
                                namespace: None,
                                what: format!(
                                    "the checkpoint says revision {} ends at byte {} of segment {}, \
                                     but in the log it ends at byte {} of segment {}",
                                    applied.revision,
                                    applied.position.offset,
                                    applied.position.segment,
                                    position.offset,
                                    position.segment
                                ),
                                action: "`statelog repair` points the checkpoint at the log".to_owned(),
                            });
                        }
                        let c = inspect::compare_partial(db, &touched, from)?;
                        let verified = c.verified;
                        let total: u64 = c.state.iter().map(|n| n.records).sum();
                        notes.push(format!(
                            "the log starts at revision {from} (log retention removed older \
                             segments): {verified} of {total} records were written since and \
                             checked against it; older records can only be checked against a \
                             backup"
                        ));
                        comparison = Some(c);
                        Compared::Partial {
                            from_revision: from,
                            revision: applied.revision,
                            verified,
                        }
                    }
                };
                if comparison.is_none() {
                    // Not compared: the state's own digests, for the report.
                    let own = inspect::compare_full(db, db)?;
                    comparison = Some(inspect::Comparison {
                        rebuilt: Vec::new(),
                        ..own
                    });
                }
                let mut matches = true;
                if let Some(c) = &comparison
                    && !c.differing.is_empty()
                {
                    matches = false;
                    difference_problems(&db_path, c, survey.complete, &mut problems);
                }
                if last > applied.revision {
                    notes.push(format!(
                        "{} commits after the checkpoint (revisions {} to {last}) are replayed at \
                         the next open",
                        last - applied.revision,
                        applied.revision + 1
                    ));
                }
                db_state = DbState::Healthy { applied, matches };
                if applied.revision > last
                    && let Some(index) = damage_problem
                {
                    // The state is newer than the intact log: repair keeps it.
                    problems[index].action = format!(
                        "the state database (revision {}) is past the damage: `statelog \
                         repair` re-bases the log on it and keeps the commits the log holds \
                         after it; or restore a backup",
                        applied.revision
                    );
                }
                state = Some(state_report(
                    applied,
                    integrity.clone(),
                    compared,
                    comparison,
                ));
                Ok(())
            });
            match walked {
                Ok(walked) => walked?,
                Err(panicked) => {
                    // Damage its checksums did not show: reported like theirs.
                    problems.truncate(problems_before);
                    notes.truncate(notes_before);
                    problems.push(Problem {
                        file: Some(db_path.clone()),
                        offset: None,
                        namespace: None,
                        what: format!("the state database is damaged: {panicked}"),
                        action: repair_hint.to_owned(),
                    });
                    let compared = Compared::NotCompared {
                        reason: "the state database is damaged".to_owned(),
                    };
                    let outcome = IntegrityOutcome::Failed(panicked.clone());
                    state = Some(state_report(applied, outcome, compared, None));
                    db_state = DbState::Damaged(panicked);
                }
            }
        }
        // Whatever else keeps the store from opening: open's own checks and
        // replay, run on the copy.
        if let (DbState::Healthy { .. }, Some(db)) = (&db_state, &copy.db) {
            let trial = contain_panic(|| replay::replay_log(fs, db, &log_dir, store_id));
            let failed = match trial {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(panicked) => Some(panicked),
            };
            if let Some(why) = failed {
                if problems.is_empty() {
                    problems.push(Problem {
                        file: Some(path.to_owned()),
                        offset: None,
                        namespace: None,
                        what: format!("the store does not open: {why}"),
                        action: repair_hint.to_owned(),
                    });
                }
                does_not_open = Some(why);
            }
        }
    }
    let report = CheckReport {
        path: path.to_owned(),
        kind: CheckedKind::Store,
        store_id: Some(catalog::hex(store_id)),
        problems,
        notes,
        log,
        state,
        duration: started.elapsed(),
    };
    Ok(Inspection {
        report,
        survey,
        db: db_state,
        position_ok,
        position_in_log,
        does_not_open,
    })
}

fn difference_problems(
    db_path: &Path,
    c: &Comparison,
    complete: bool,
    problems: &mut Vec<Problem>,
) {
    for (namespace, count) in &c.differing {
        let example = c
            .samples
            .iter()
            .filter(|d| &d.namespace == namespace)
            .map(|d| format!("{}: {}", d.key, d.what))
            .collect::<Vec<_>>()
            .join("; ");
        problems.push(Problem {
            file: Some(db_path.to_owned()),
            offset: None,
            namespace: Some(namespace.clone()),
            what: format!(
                "{count} record(s) of the state database differ from the log ({example})"
            ),
            action: if complete {
                "`statelog repair` rebuilds the state database from the log (the source of \
                 truth); the damaged file is moved aside"
                    .to_owned()
            } else {
                "the log no longer reaches back far enough to rebuild the state: restore a \
                 backup, or repair the records by hand"
                    .to_owned()
            },
        });
    }
}

fn state_report(
    applied: Applied,
    integrity: IntegrityOutcome,
    compared: Compared,
    comparison: Option<Comparison>,
) -> StateReport {
    let c = comparison.unwrap_or_default();
    let namespaces: Vec<NamespaceReport> = c
        .state
        .iter()
        .map(|n| NamespaceReport {
            namespace: n.namespace.clone(),
            records: n.records,
            digest: hex64(n.digest),
            log_digest: c
                .rebuilt
                .iter()
                .find(|r| r.namespace == n.namespace)
                .map(|r| hex64(r.digest))
                .or_else(|| {
                    matches!(compared, Compared::Full { .. }).then(|| hex64(0xcbf2_9ce4_8422_2325))
                }),
            differing: c.differing.get(&n.namespace).copied().unwrap_or(0),
        })
        .chain(
            // Namespaces only the log has.
            c.rebuilt
                .iter()
                .filter(|r| !c.state.iter().any(|n| n.namespace == r.namespace))
                .map(|r| NamespaceReport {
                    namespace: r.namespace.clone(),
                    records: 0,
                    digest: hex64(0xcbf2_9ce4_8422_2325),
                    log_digest: Some(hex64(r.digest)),
                    differing: c.differing.get(&r.namespace).copied().unwrap_or(0),
                }),
        )
        .collect();
    StateReport {
        revision: applied.revision,
        time: if applied.revision == 0 {
            Timestamp::EPOCH.to_string()
        } else {
            applied.time.to_string()
        },
        records: c.state.iter().map(|n| n.records).sum(),
        integrity,
        compared,
        namespaces,
    }
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
