//! Inspecting a store (under its lock): what `check` reports and what
//! `repair` decides from.
//!
//! 1. The log is surveyed from its first segment: damage, a torn tail, a lost
//!    newest part, an interrupted rotation ([`Inspector::survey_findings`]).
//! 2. The state database is copied to a scratch directory, opened there and
//!    put through redb's integrity check; a copy that fails it is not read
//!    further ([`Inspector::state_database`]).
//! 3. A healthy copy is compared with the log, with redb's panics contained
//!    ([`Inspector::compare_with_log`]): with the whole log replayed from its
//!    start when it reaches back there ([`Inspector::compare_full`]), else
//!    with the keys the remaining log wrote ([`Inspector::compare_partial`]).
//! 4. Open's own checks and replay run on the copy ([`Inspector::trial_open`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Problem;
use super::check::{
    CheckReport, CheckedKind, Compared, IntegrityOutcome, LogReport, NamespaceReport, StateReport,
};
use super::scratch::Scratch;
use crate::db::inspect::{self, Comparison, DbCopy};
use crate::db::schema::Applied;
use crate::db::{Db, contain_panic, rebuild, replay};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::layout::{DB_FILE, LOG_DIR};
use crate::log::Position;
use crate::log::catalog;
use crate::log::segment::StoreId;
use crate::log::survey::{self, Survey};
use crate::options::Options;
use crate::time::Timestamp;

/// The digest of no records (FNV-1a's offset basis).
const EMPTY_DIGEST: u64 = 0xcbf2_9ce4_8422_2325;

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
    pub position_in_log: Option<Position>,
    /// Why the store would not open as it is, when its state database is
    /// healthy (open's checks and replay, run on the copy).
    pub does_not_open: Option<String>,
}

/// What the state database's inspection found.
struct StateFound {
    db: DbState,
    state: Option<StateReport>,
    position_ok: bool,
    position_in_log: Option<Position>,
    does_not_open: Option<String>,
}

/// The inspection in progress: what it looks at, and what it found so far.
struct Inspector<'a> {
    fs: &'a dyn Fs,
    path: &'a Path,
    store_id: &'a StoreId,
    options: &'a Options,
    scratch: &'a Scratch,
    survey: &'a Survey,
    db_path: PathBuf,
    log_dir: PathBuf,
    problems: Vec<Problem>,
    notes: Vec<String>,
    /// The problem of a damaged log, whose advice depends on the state
    /// database.
    damage_problem: Option<usize>,
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
    let survey = survey::survey(fs, &path.join(LOG_DIR), store_id)?;
    let mut inspector = Inspector {
        fs,
        path,
        store_id,
        options,
        scratch,
        survey: &survey,
        db_path: path.join(DB_FILE),
        log_dir: path.join(LOG_DIR),
        problems: Vec::new(),
        notes: Vec::new(),
        damage_problem: None,
    };
    inspector.survey_findings();
    let found = inspector.state_database(compare_state)?;
    let report = CheckReport {
        path: path.to_owned(),
        kind: CheckedKind::Store,
        store_id: Some(catalog::hex(store_id)),
        problems: inspector.problems,
        notes: inspector.notes,
        log: log_report(&survey),
        state: found.state,
        duration: started.elapsed(),
    };
    Ok(Inspection {
        report,
        survey,
        db: found.db,
        position_ok: found.position_ok,
        position_in_log: found.position_in_log,
        does_not_open: found.does_not_open,
    })
}

/// The log as the survey read it.
fn log_report(survey: &Survey) -> LogReport {
    LogReport {
        segments: survey.files.len(),
        bytes: survey.bytes,
        first_revision: survey.first.map(|(r, _)| r),
        last_revision: survey.last_revision(),
        commits: survey.commits,
        reaches_start: survey.complete,
    }
}

/// A problem with `file` (no offset, no namespace).
fn problem(file: &Path, what: String, action: impl Into<String>) -> Problem {
    Problem {
        file: Some(file.to_owned()),
        offset: None,
        namespace: None,
        what,
        action: action.into(),
    }
}

impl Inspector<'_> {
    /// What to do about a state database that cannot be used.
    fn repair_hint(&self) -> &'static str {
        if self.survey.complete {
            "`statelog repair` rebuilds it from the log, which reaches back to the store's \
             first revision"
        } else {
            "the log no longer reaches back to the store's first revision, so it cannot be \
             rebuilt from the log: restore a backup"
        }
    }

    /// Step 1: what the survey of the log found.
    fn survey_findings(&mut self) {
        let survey = self.survey;
        let last = survey.last_revision();
        if let Some(damage) = &survey.damage {
            if damage.torn {
                self.notes.push(format!(
                    "the log ends in a torn write at byte {} of {} ({}): it was never \
                     acknowledged, and the next open cuts it",
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
                self.damage_problem = Some(self.problems.len());
                self.problems.push(Problem {
                    offset: Some(damage.offset),
                    ..problem(
                        &damage.file,
                        format!(
                            "the log is damaged: {}; it is intact up to revision {last}",
                            damage.problem
                        ),
                        format!(
                            "`statelog repair` keeps the log up to revision {last} and moves the \
                             rest aside ({lost}), or restore a backup"
                        ),
                    )
                });
            }
        }
        if let Some(lost) = &survey.lost_newest {
            self.problems.push(Problem {
                offset: Some(lost.offset),
                ..problem(
                    &lost.file,
                    format!("the log lost its newest part: {}", lost.problem),
                    format!(
                        "restore a backup, or accept the loss with `statelog repair` (the log \
                         then ends at revision {last})"
                    ),
                )
            });
        }
        if survey.rotation_interrupted {
            self.notes.push(
                "a crash interrupted a segment rotation (the newest segment holds nothing, and \
                 the one before it is not sealed yet): the next open finishes it"
                    .to_owned(),
            );
        }
    }

    /// Steps 2 to 4: the state database, on a copy.
    fn state_database(&mut self, compare_state: bool) -> Result<StateFound> {
        let mut found = StateFound {
            db: DbState::Missing,
            state: None,
            position_ok: true,
            position_in_log: None,
            does_not_open: None,
        };
        let exists = self
            .fs
            .exists(&self.db_path)
            .map_err(|e| Error::io("look for", &self.db_path, e))?;
        if !exists {
            let missing = problem(
                &self.db_path,
                "the state database is missing".to_owned(),
                self.repair_hint(),
            );
            self.problems.push(missing);
            return Ok(found);
        }
        let copy_path = self.scratch.path().join(DB_FILE);
        let copy = inspect::open_copy(
            self.fs,
            &self.db_path,
            &copy_path,
            self.store_id,
            self.options,
        )?;
        let integrity = integrity_of(&copy);
        found.db = self.judge_copy(&copy, &integrity);
        // Not judged unusable or damaged: healthy so far.
        let healthy = matches!(found.db, DbState::Missing);
        if let (Some(applied), false) = (copy.applied, healthy) {
            // Its pages are not walked: redb trusts what it reads, and may panic.
            let compared = Compared::NotCompared {
                reason: "the state database is damaged".to_owned(),
            };
            found.state = Some(state_report(applied, integrity.clone(), compared, None));
        }
        if let (Some(db), Some(applied), true) = (&copy.db, copy.applied, healthy) {
            self.walk(db, applied, integrity, compare_state, &mut found)?;
        }
        if let (DbState::Healthy { .. }, Some(db)) = (&found.db, &copy.db) {
            found.does_not_open = self.trial_open(db);
        }
        Ok(found)
    }

    /// Step 2: a copy that cannot be used or fails its integrity check is
    /// reported; otherwise `Missing` stands for "not judged yet".
    fn judge_copy(&mut self, copy: &DbCopy, integrity: &IntegrityOutcome) -> DbState {
        let hint = self.repair_hint();
        if let Some(why) = &copy.open_error {
            let what = format!("the state database cannot be used: {why}");
            self.problems.push(problem(&self.db_path, what, hint));
            return DbState::Unusable(why.clone());
        }
        if *integrity != IntegrityOutcome::Passed {
            let why = match integrity {
                IntegrityOutcome::Failed(e) => e.clone(),
                _ => "its pages do not match their checksums".to_owned(),
            };
            let what = format!("the state database fails its integrity check: {why}");
            self.problems.push(problem(&self.db_path, what, hint));
            return DbState::Damaged(why);
        }
        DbState::Missing
    }

    /// Step 3 with redb's panics contained: a panic is damage its checksums
    /// did not show, reported like theirs (and what the walk found before it
    /// is dropped).
    fn walk(
        &mut self,
        db: &Db,
        applied: Applied,
        integrity: IntegrityOutcome,
        compare_state: bool,
        found: &mut StateFound,
    ) -> Result<()> {
        let (problems_before, notes_before) = (self.problems.len(), self.notes.len());
        let walked =
            contain_panic(|| self.compare_with_log(db, applied, integrity, compare_state, found));
        match walked {
            Ok(walked) => walked,
            Err(panicked) => {
                self.problems.truncate(problems_before);
                self.notes.truncate(notes_before);
                let what = format!("the state database is damaged: {panicked}");
                let damaged = problem(&self.db_path, what, self.repair_hint());
                self.problems.push(damaged);
                let compared = Compared::NotCompared {
                    reason: "the state database is damaged".to_owned(),
                };
                let outcome = IntegrityOutcome::Failed(panicked.clone());
                found.state = Some(state_report(applied, outcome, compared, None));
                found.db = DbState::Damaged(panicked);
                Ok(())
            }
        }
    }

    /// Step 3: the healthy copy against the log.
    fn compare_with_log(
        &mut self,
        db: &Db,
        applied: Applied,
        integrity: IntegrityOutcome,
        compare_state: bool,
        found: &mut StateFound,
    ) -> Result<()> {
        let last = self.survey.last_revision();
        let mut comparison = None;
        let compared = if !compare_state {
            Compared::NotCompared {
                reason: "not asked for".to_owned(),
            }
        } else if applied.revision > last {
            self.checkpoint_beyond_log(applied)
        } else if self.survey.complete {
            self.compare_full(db, applied, &mut comparison, found)?
        } else {
            self.compare_partial(db, applied, &mut comparison, found)?
        };
        let comparison = match comparison {
            Some(comparison) => comparison,
            // Not compared: the state's own digests, for the report.
            None => Comparison {
                rebuilt: Vec::new(),
                ..inspect::compare_full(db, db)?
            },
        };
        let matches = comparison.differing.is_empty();
        if !matches {
            self.difference_problems(&comparison);
        }
        if last > applied.revision {
            self.notes.push(format!(
                "{} commits after the checkpoint (revisions {} to {last}) are replayed at the \
                 next open",
                last - applied.revision,
                applied.revision + 1
            ));
        }
        found.db = DbState::Healthy { applied, matches };
        if applied.revision > last
            && let Some(index) = self.damage_problem
        {
            // The state is newer than the intact log: repair keeps it.
            self.problems[index].action = format!(
                "the state database (revision {}) is past the damage: `statelog repair` \
                 re-bases the log on it and keeps the commits the log holds after it; or \
                 restore a backup",
                applied.revision
            );
        }
        found.state = Some(state_report(applied, integrity, compared, Some(comparison)));
        Ok(())
    }

    /// The state's checkpoint is past the intact log.
    fn checkpoint_beyond_log(&mut self, applied: Applied) -> Compared {
        let last = self.survey.last_revision();
        self.problems.push(problem(
            &self.db_path,
            format!(
                "the state database's checkpoint is at revision {}, but the intact log ends at \
                 revision {last}",
                applied.revision
            ),
            "`statelog repair` re-bases the log on the state database (a new base segment at \
             its revision; the old log is moved aside)",
        ));
        Compared::NotCompared {
            reason: format!(
                "the log ends before the checkpoint (revision {})",
                applied.revision
            ),
        }
    }

    /// The log reaches back to the store's first commit: it is replayed from
    /// there up to the checkpoint into a scratch database, compared with the
    /// state, and the rest of it replayed onto that too.
    fn compare_full(
        &mut self,
        db: &Db,
        applied: Applied,
        comparison: &mut Option<Comparison>,
        found: &mut StateFound,
    ) -> Result<Compared> {
        let (survey, fs, options) = (self.survey, self.fs, self.options);
        let last = survey.last_revision();
        let rebuilt_path = self.scratch.path().join("rebuilt.redb");
        let rebuilt = match rebuild::replay_into_new(
            fs,
            &rebuilt_path,
            self.store_id,
            options,
            &survey.chain,
            survey.start_previous,
            applied.revision,
        ) {
            Ok(rebuilt) => rebuilt,
            Err(e) => {
                self.problems.push(problem(
                    &self.log_dir,
                    format!("replaying the log from its start does not work: {e}"),
                    "the log contradicts itself: restore a backup",
                ));
                return Ok(Compared::NotCompared {
                    reason: "the log does not replay".to_owned(),
                });
            }
        };
        found.position_in_log = Some(rebuilt.position);
        if applied.revision > 0 && rebuilt.position != applied.position {
            found.position_ok = false;
            self.checkpoint_elsewhere(applied, rebuilt.position);
        }
        {
            let rebuilt_db = Db::open(fs, &rebuilt_path, options)?;
            *comparison = Some(inspect::compare_full(db, &rebuilt_db)?);
        }
        // The commits after the checkpoint must replay onto it.
        if last > applied.revision
            && let Err(e) =
                rebuild::replay_continue(fs, &rebuilt_path, options, &survey.chain, rebuilt, last)
        {
            self.problems.push(problem(
                &self.log_dir,
                format!(
                    "the log after the checkpoint (revision {}) does not replay onto it: {e}",
                    applied.revision
                ),
                "the log contradicts itself: restore a backup",
            ));
        }
        Ok(Compared::Full {
            revision: applied.revision,
        })
    }

    /// Log retention removed the log's start: the keys the remaining log
    /// wrote up to the checkpoint are compared with the state.
    fn compare_partial(
        &mut self,
        db: &Db,
        applied: Applied,
        comparison: &mut Option<Comparison>,
        found: &mut StateFound,
    ) -> Result<Compared> {
        let survey = self.survey;
        let from = survey.start_previous + 1;
        if applied.revision < survey.start_previous {
            return Ok(Compared::NotCompared {
                reason: format!(
                    "the log starts at revision {from}, after the checkpoint at {}",
                    applied.revision
                ),
            });
        }
        let touched_path = self.scratch.path().join("touched.redb");
        let (touched, position) = inspect::fold_partial(
            self.fs,
            &touched_path,
            self.store_id,
            self.options,
            &survey.chain,
            survey.start_previous,
            applied.revision,
        )?;
        found.position_in_log = position;
        if let Some(position) = position
            && position != applied.position
        {
            found.position_ok = false;
            self.checkpoint_elsewhere(applied, position);
        }
        let c = inspect::compare_partial(db, &touched, from)?;
        let verified = c.verified;
        let total: u64 = c.state.iter().map(|n| n.records).sum();
        self.notes.push(format!(
            "the log starts at revision {from} (log retention removed older segments): \
             {verified} of {total} records were written since and checked against it; older \
             records can only be checked against a backup"
        ));
        *comparison = Some(c);
        Ok(Compared::Partial {
            from_revision: from,
            revision: applied.revision,
            verified,
        })
    }

    /// The checkpoint's position is not where the log has its revision end.
    fn checkpoint_elsewhere(&mut self, applied: Applied, in_log: Position) {
        self.problems.push(problem(
            &self.db_path,
            format!(
                "the checkpoint says revision {} ends at byte {} of segment {}, but in the log \
                 it ends at byte {} of segment {}",
                applied.revision,
                applied.position.offset,
                applied.position.segment,
                in_log.offset,
                in_log.segment
            ),
            "`statelog repair` points the checkpoint at the log",
        ));
    }

    /// One problem per namespace whose records differ from the log.
    fn difference_problems(&mut self, c: &Comparison) {
        for (namespace, count) in &c.differing {
            let example = c
                .samples
                .iter()
                .filter(|d| &d.namespace == namespace)
                .map(|d| format!("{}: {}", d.key, d.what))
                .collect::<Vec<_>>()
                .join("; ");
            let action = if self.survey.complete {
                "`statelog repair` rebuilds the state database from the log (the source of \
                 truth); the damaged file is moved aside"
            } else {
                "the log no longer reaches back far enough to rebuild the state: restore a \
                 backup, or repair the records by hand"
            };
            self.problems.push(Problem {
                namespace: Some(namespace.clone()),
                ..problem(
                    &self.db_path,
                    format!(
                        "{count} record(s) of the state database differ from the log ({example})"
                    ),
                    action,
                )
            });
        }
    }

    /// Step 4: whatever else keeps the store from opening: open's own checks
    /// and replay, run on the copy. Reported on its own only when nothing
    /// else was found.
    fn trial_open(&mut self, db: &Db) -> Option<String> {
        let trial =
            contain_panic(|| replay::replay_log(self.fs, db, &self.log_dir, self.store_id, false));
        let why = match trial {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => e.to_string(),
            Err(panicked) => panicked,
        };
        if self.problems.is_empty() {
            let what = format!("the store does not open: {why}");
            self.problems
                .push(problem(self.path, what, self.repair_hint()));
        }
        Some(why)
    }
}

/// What redb's integrity check said of the copy.
fn integrity_of(copy: &DbCopy) -> IntegrityOutcome {
    match &copy.integrity {
        Some(Ok(true)) => IntegrityOutcome::Passed,
        Some(Ok(false)) => IntegrityOutcome::Repairable,
        Some(Err(e)) => IntegrityOutcome::Failed(e.clone()),
        None => IntegrityOutcome::NotRun,
    }
}

fn hex64(v: u64) -> String {
    format!("{v:016x}")
}

/// The state database's part of the report: per namespace, its records and
/// digest beside the log's.
pub(super) fn state_report(
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
                .or_else(|| matches!(compared, Compared::Full { .. }).then(|| hex64(EMPTY_DIGEST))),
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
                    digest: hex64(EMPTY_DIGEST),
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
