//! `repair`: bring a damaged store back to a state that opens, keeping
//! everything that can be kept and moving the rest aside (never deleting).
//!
//! It rebuilds a lost identity file first (from the store id the segment
//! headers and the state database agree on), inspects the store as `check`
//! does (under its lock), then:
//!
//! | the state database | the log | what repair does |
//! | --- | --- | --- |
//! | healthy, its checkpoint within the intact log | damaged | keeps the log up to the last intact commit, moves the rest aside; the next open replays up to there |
//! | healthy, its checkpoint after the intact log (the log before the checkpoint is damaged or lost) | any | re-bases the log on the state database: a new base segment at its checkpoint revision, then the old log's commits after the checkpoint as far as they are intact; the old log is moved aside (the newer state is kept rather than thrown away) |
//! | healthy | intact, but the checkpoint's position does not match it | points the checkpoint at the log |
//! | healthy, nothing above found, but the store does not open (check's trial of open) | reaches back to revision 1 or a base | moves the state database aside and rebuilds it by replaying the log |
//! | healthy, its checkpoint within the intact log | lost its newest segment, or its tail was cut | accepts the loss: a seal naming a segment that is gone (and a partial record) is moved aside, the newest segment gets a size of whole preallocation steps again; "unknown after revision N" |
//! | missing, unreadable, failing its integrity check, or differing from the log | reaches back to revision 1 or a base | cuts a damaged log as above, moves the state database aside, rebuilds it by replaying the log |
//! | as above | does not reach back (log retention removed its start) | nothing: restore a backup |
//!
//! What is moved aside goes to `<store>/repair-<time>/` (`log/` for segments
//! and cut-off tails, `state.redb` for the state database). The report says
//! exactly which revisions were lost: the range still readable beyond the
//! damage, or "unknown after revision N" when nothing after it could be read.
//! Then the store is opened once, to prove it opens.
//!
//! A crash during repair leaves what was moved in the repair directory and the
//! store in a state `repair` handles when run again (every step is a move, a
//! copy followed by a cut, or a new file renamed into place).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Problem;
use super::check::tool_options;
use super::identity::LostIdentity;
use super::inspect::{DbState, Inspection, inspect_store};
use super::scratch::Scratch;
use crate::db::Db;
use crate::db::rebuild;
use crate::db::schema::Applied;
use crate::engine;
use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::layout::{self, DB_FILE, ID_FILE, LOG_DIR, identity};
use crate::log::archive;
use crate::log::catalog::{self, SegmentInfo};
use crate::log::seal;
use crate::log::segment::{self, SEGMENT_HEADER_LEN, StoreId};
use crate::log::survey::{self, Survey};
use crate::options::Options;
use crate::time::Timestamp;

/// Options of [`repair`].
#[derive(Debug, Clone)]
pub struct RepairOptions {
    pub(crate) scratch_dir: Option<PathBuf>,
    pub(crate) lock_timeout: Duration,
}

impl Default for RepairOptions {
    fn default() -> Self {
        RepairOptions {
            scratch_dir: None,
            lock_timeout: Duration::from_secs(30),
        }
    }
}

impl RepairOptions {
    /// The defaults: scratch files in the system's temporary directory, wait up
    /// to 30 s for the store.
    pub fn new() -> RepairOptions {
        RepairOptions::default()
    }

    /// Where the inspection's scratch files go.
    pub fn scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_dir = Some(dir.into());
        self
    }

    /// How long to wait for a process that has the store open.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
}

/// Which revisions a repair lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lost {
    /// None.
    Nothing,
    /// These (inclusive), read beyond the damage but not kept: they cannot be
    /// applied without the commits the damage took. Their records are in the
    /// moved-aside files.
    Revisions {
        /// The first lost revision.
        from: u64,
        /// The last one seen.
        to: u64,
    },
    /// Everything after this revision, as far as the log existed: nothing after
    /// the damage could be read, so how much was there is unknown.
    Unknown {
        /// The last revision kept.
        after: u64,
    },
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// The store.
    pub path: PathBuf,
    /// Its id.
    pub store_id: String,
    /// What the inspection found.
    pub found: Vec<Problem>,
    /// What was done, in order.
    pub actions: Vec<String>,
    /// Where the moved-aside files are (a directory in the store).
    pub aside: Option<PathBuf>,
    /// Each file moved aside (or cut off a segment), where it went.
    pub moved: Vec<PathBuf>,
    /// Which revisions were lost.
    pub lost: Lost,
    /// The revision the store opens at now (0 if it still does not open).
    pub revision: u64,
    /// Problems repair could not fix, and what to do.
    pub unrepaired: Vec<Problem>,
    /// How long it took.
    #[serde(serialize_with = "super::millis")]
    pub duration: Duration,
}

impl RepairReport {
    /// True when the store opens and nothing is left unrepaired.
    pub fn is_repaired(&self) -> bool {
        self.unrepaired.is_empty()
    }
}

/// Repairs the store in `path`; see the module documentation for what it
/// decides. A healthy store is left as it is.
///
/// # Errors
/// [`Error::NotAStore`] when `path` holds no store; [`Error::Busy`] when
/// another process keeps it open; [`Error::Io`] and [`Error::Database`] when a
/// step fails (what was moved stays where the report or the error says; run
/// repair again). What cannot be repaired is in the report's `unrepaired`.
pub fn repair(path: impl AsRef<Path>, options: &RepairOptions) -> Result<RepairReport> {
    let started = Instant::now();
    let path = path.as_ref();
    let real: Arc<dyn Fs> = Arc::new(RealFs);
    let fs = real.as_ref();
    let tool = tool_options(options.lock_timeout);
    let (store_id, lock, lost_identity) = super::identity::lock_store(fs, path, &tool)?;
    let aside = layout::repair_dir(fs, path)?;
    let mut report = RepairReport {
        path: path.to_owned(),
        store_id: catalog::hex(&store_id),
        found: Vec::new(),
        actions: Vec::new(),
        aside: None,
        moved: Vec::new(),
        lost: Lost::Nothing,
        revision: 0,
        unrepaired: Vec::new(),
        duration: Duration::ZERO,
    };
    if let Some(lost) = &lost_identity {
        rebuild_identity(fs, path, &store_id, lost, &aside, &mut report)?;
    }
    let scratch = Scratch::new(options.scratch_dir.as_deref(), "repair")?;
    let inspection = inspect_store(fs, path, &store_id, &tool, &scratch, true)?;
    drop(scratch);
    report
        .found
        .extend(inspection.report.problems.iter().cloned());
    let repair = Repair {
        fs: real,
        path,
        store_id: &store_id,
        tool: &tool,
        aside: &aside,
    };
    if report.found.is_empty() {
        report.actions.push("nothing to repair".to_owned());
    } else if inspection.report.problems.is_empty() {
        // Only the identity file was lost.
    } else {
        repair.fix(&inspection, &mut report)?;
    }
    if !report.moved.is_empty() {
        report.aside = Some(aside.clone());
    }
    drop(lock);
    prove_opens(path, &tool, &mut report)?;
    report.duration = started.elapsed();
    Ok(report)
}

/// What a repair works on.
struct Repair<'a> {
    fs: Arc<dyn Fs>,
    path: &'a Path,
    store_id: &'a StoreId,
    tool: &'a Options,
    /// Where what is moved aside goes.
    aside: &'a Path,
}

impl Repair<'_> {
    /// Decides from the inspection what to do (the table in the module
    /// documentation) and does it.
    fn fix(&self, inspection: &Inspection, report: &mut RepairReport) -> Result<()> {
        let survey = &inspection.survey;
        match &inspection.db {
            DbState::Healthy {
                applied,
                matches: true,
            } if applied.revision > survey.last_revision() => rebase(
                Arc::clone(&self.fs),
                self.path,
                self.store_id,
                self.tool,
                survey,
                applied,
                self.aside,
                report,
            ),
            DbState::Healthy {
                applied,
                matches: true,
            } => self.fix_with_healthy_state(inspection, applied, report),
            damaged if survey.complete => {
                let fs = self.fs.as_ref();
                if survey.damage.is_some() || survey.lost_newest.is_some() {
                    cut_log(fs, survey, self.aside, report)?;
                    reopen_end(fs, self.path, survey, self.aside, report)?;
                }
                rebuild_state(
                    fs,
                    self.path,
                    self.store_id,
                    self.tool,
                    damaged,
                    self.aside,
                    report,
                )
            }
            _ => {
                report.unrepaired.push(Problem {
                    file: Some(self.path.join(DB_FILE)),
                    offset: None,
                    namespace: None,
                    what: format!(
                        "the state database cannot be trusted, and the log starts at revision {} \
                         (log retention removed its start), so it cannot be rebuilt from the \
                         log",
                        survey.start_previous + 1
                    ),
                    action: "restore a backup (`statelog restore`)".to_owned(),
                });
                Ok(())
            }
        }
    }

    /// The state database is healthy and matches the log: the log's end is
    /// repaired, the checkpoint pointed at the log, or (nothing more specific
    /// found, and the store does not open) the state rebuilt.
    fn fix_with_healthy_state(
        &self,
        inspection: &Inspection,
        applied: &Applied,
        report: &mut RepairReport,
    ) -> Result<()> {
        let (fs, survey) = (self.fs.as_ref(), &inspection.survey);
        if survey.damage.is_some() || survey.lost_newest.is_some() {
            cut_log(fs, survey, self.aside, report)?;
            return reopen_end(fs, self.path, survey, self.aside, report);
        }
        if !inspection.position_ok
            && let Some(position) = inspection.position_in_log
        {
            let fixed = Applied {
                position,
                ..*applied
            };
            rebuild::set_checkpoint(fs, &self.path.join(DB_FILE), self.tool, &fixed)?;
            report.actions.push(format!(
                "pointed the checkpoint (revision {}) at byte {} of segment {}, where the log \
                 has it",
                applied.revision, position.offset, position.segment
            ));
            return Ok(());
        }
        let Some(why) = &inspection.does_not_open else {
            return Ok(());
        };
        // Nothing more specific was found: the log is whole, and a state
        // rebuilt from all of it leaves open nothing to replay.
        if survey.complete {
            let found = DbState::Unusable(format!("the store did not open with it: {why}"));
            return rebuild_state(
                fs,
                self.path,
                self.store_id,
                self.tool,
                &found,
                self.aside,
                report,
            );
        }
        report.unrepaired.push(Problem {
            file: Some(self.path.to_owned()),
            offset: None,
            namespace: None,
            what: format!(
                "the store does not open ({why}), and the log starts at revision {} (log \
                 retention removed its start), so the state cannot be rebuilt from the log",
                survey.start_previous + 1
            ),
            action: "restore a backup (`statelog restore`)".to_owned(),
        });
        Ok(())
    }
}

/// Rebuilds a lost identity file from the store id the store's files agree
/// on; an unreadable one is moved aside first.
fn rebuild_identity(
    fs: &dyn Fs,
    path: &Path,
    store_id: &StoreId,
    lost: &LostIdentity,
    aside: &Path,
    report: &mut RepairReport,
) -> Result<()> {
    report.found.push(lost.problem(path));
    let id_path = path.join(ID_FILE);
    if fs
        .exists(&id_path)
        .map_err(|e| Error::io("look for", &id_path, e))?
    {
        fs.create_dir_all(aside)
            .map_err(|e| Error::io("create", aside, e))?;
        let to = aside.join(ID_FILE);
        fs.rename(&id_path, &to)
            .map_err(|e| Error::io("move aside", &id_path, e))?;
        report.actions.push(format!(
            "moved the damaged identity file aside to {}",
            to.display()
        ));
        report.moved.push(to);
    }
    identity::write(fs, path, store_id, Timestamp::now())?;
    report.actions.push(format!(
        "rebuilt the identity file {} (store id {}, read from {})",
        id_path.display(),
        catalog::hex(store_id),
        lost.evidence.sources.join(" and ")
    ));
    Ok(())
}

/// Repair ends by opening the store once: the revision it opens at, or why
/// it still does not open.
fn prove_opens(path: &Path, tool: &Options, report: &mut RepairReport) -> Result<()> {
    match engine::open::hold(path, tool) {
        Ok(held) => {
            report.revision = held.engine.revision();
            held.close()?;
        }
        Err(e) => report.unrepaired.push(Problem {
            file: Some(path.to_owned()),
            offset: None,
            namespace: None,
            what: format!("after the repair the store still does not open: {e}"),
            action: "restore a backup; keep the store directory for analysis".to_owned(),
        }),
    }
    Ok(())
}

/// Keeps the log up to its last intact commit; moves the rest aside.
fn cut_log(fs: &dyn Fs, survey: &Survey, aside: &Path, report: &mut RepairReport) -> Result<()> {
    let aside_log = aside.join(LOG_DIR);
    let intact = survey.last_revision();
    // The segment (by first revision) and offset where the intact log ends.
    let keep = match survey.end {
        Some((_, position)) => Some((position.segment, position.offset)),
        None => survey
            .chain
            .first()
            .map(|s| (s.first_revision, SEGMENT_HEADER_LEN as u64)),
    };
    for file in &survey.files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(first) = segment::parse_file_name(&name) else {
            continue;
        };
        match keep {
            Some((segment, offset)) if first == segment => {
                let len = archive::file_len(fs, file)?;
                if offset < len {
                    let to = archive::cut_into(fs, file, offset, &aside_log)?;
                    report.actions.push(format!(
                        "cut {} at byte {offset} (after revision {intact}); the {} bytes from \
                         there are in {}",
                        file.display(),
                        len - offset,
                        to.display()
                    ));
                    report.moved.push(to);
                }
            }
            Some((segment, _)) if first < segment => {}
            _ => {
                let to = archive::move_into(fs, file, &aside_log)?;
                report.actions.push(format!(
                    "moved {} aside to {}",
                    file.display(),
                    to.display()
                ));
                report.moved.push(to);
            }
        }
    }
    let torn = survey.damage.as_ref().is_some_and(|d| d.torn);
    report.lost = match survey.beyond {
        Some((_, hi)) if hi > intact => Lost::Revisions {
            from: intact + 1,
            to: hi,
        },
        _ => Lost::Unknown { after: intact },
    };
    if torn {
        report.actions.push(
            "the damage was a torn write at the end of the log: what it held was never \
             acknowledged"
                .to_owned(),
        );
    }
    Ok(())
}

/// Makes the newest remaining segment the log's open end again: a seal it
/// ends with (naming a segment that is gone) is cut off into the repair
/// directory, and its size made whole preallocation steps again (after a cut
/// tail, or after `cut_log`), so that opening takes it as it is. This is
/// accepting a lost newest segment or cut tail.
fn reopen_end(
    fs: &dyn Fs,
    path: &Path,
    survey: &Survey,
    aside: &Path,
    report: &mut RepairReport,
) -> Result<()> {
    let log_dir = path.join(LOG_DIR);
    let Some((_, newest)) = catalog::segment_files(fs, &log_dir)?.pop() else {
        return Ok(());
    };
    let len = archive::file_len(fs, &newest)?;
    let info = SegmentInfo {
        first_revision: 0,
        previous: 0,
        path: newest.clone(),
        len,
    };
    if let Some(next) = seal::sealed_next(fs, &info)? {
        let to = archive::cut_into(
            fs,
            &newest,
            len - seal::SEAL_FRAME_LEN,
            &aside.join(LOG_DIR),
        )?;
        report.actions.push(format!(
            "cut the seal off {} (it named {}, which is gone) into {}",
            newest.display(),
            segment::file_name(next),
            to.display()
        ));
        report.moved.push(to);
    }
    if let Some(len) = seal::regrow(fs, &newest)? {
        report.actions.push(format!(
            "gave {} a size of whole preallocation steps again ({len} bytes, zeros after its \
             data)",
            newest.display()
        ));
    }
    if let Some(lost) = &survey.lost_newest {
        let intact = survey.last_revision();
        report.actions.push(format!(
            "accepted the loss of the log's newest part ({}): the log now ends at revision \
             {intact}",
            lost.problem
        ));
        if report.lost == Lost::Nothing || matches!(report.lost, Lost::Unknown { .. }) {
            report.lost = Lost::Unknown { after: intact };
        }
    }
    Ok(())
}

/// Moves the state database aside and rebuilds it by replaying the (cut) log.
fn rebuild_state(
    fs: &dyn Fs,
    path: &Path,
    store_id: &StoreId,
    options: &Options,
    found: &DbState,
    aside: &Path,
    report: &mut RepairReport,
) -> Result<()> {
    let survey = survey::survey(fs, &path.join(LOG_DIR), store_id)?;
    let db_path = path.join(DB_FILE);
    let rebuilt_path = path.join(format!("{DB_FILE}.rebuilding"));
    let applied = rebuild::replay_into_new(
        fs,
        &rebuilt_path,
        store_id,
        options,
        &survey.chain,
        survey.start_previous,
        survey.last_revision(),
    )?;
    let why = match found {
        DbState::Missing => "it was missing".to_owned(),
        DbState::Unusable(why) | DbState::Damaged(why) => why.clone(),
        DbState::Healthy { .. } => "it differed from the log".to_owned(),
    };
    if fs
        .exists(&db_path)
        .map_err(|e| Error::io("look for", &db_path, e))?
    {
        fs.create_dir_all(aside)
            .map_err(|e| Error::io("create", aside, e))?;
        let to = aside.join(DB_FILE);
        fs.rename(&db_path, &to)
            .map_err(|e| Error::io("move aside", &db_path, e))?;
        report.actions.push(format!(
            "moved the state database ({why}) aside to {}",
            to.display()
        ));
        report.moved.push(to);
    }
    fs.rename(&rebuilt_path, &db_path)
        .map_err(|e| Error::io("put the rebuilt state database in place", &rebuilt_path, e))?;
    fs.sync_dir(path)
        .map_err(|e| Error::io("sync the directory", path, e))?;
    report.actions.push(format!(
        "rebuilt the state database by replaying the log ({} commits, up to revision {})",
        survey.commits, applied.revision
    ));
    Ok(())
}

/// The store's segment files from the one named `from` on, as long as their
/// headers are intact and link up.
fn segments_from(
    fs: &dyn Fs,
    files: &[PathBuf],
    from: u64,
    store_id: &StoreId,
) -> Result<Vec<SegmentInfo>> {
    let mut out: Vec<SegmentInfo> = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(first) = segment::parse_file_name(&name).filter(|r| *r >= from) else {
            continue;
        };
        let Ok(header) = catalog::read_header(fs, file) else {
            break;
        };
        if header.store_id != *store_id
            || header.first_revision != first
            || out
                .last()
                .is_some_and(|p| p.first_revision != header.previous)
        {
            break;
        }
        out.push(SegmentInfo {
            first_revision: first,
            previous: header.previous,
            path: file.clone(),
            len: archive::file_len(fs, file)?,
        });
    }
    Ok(out)
}

/// Writes a new log from the state database's state at its checkpoint and the
/// intact commits after it; moves the old log aside.
#[allow(clippy::too_many_arguments)]
fn rebase(
    fs: Arc<dyn Fs>,
    path: &Path,
    store_id: &StoreId,
    options: &Options,
    survey: &Survey,
    applied: &Applied,
    aside: &Path,
    report: &mut RepairReport,
) -> Result<()> {
    let fs_ref = fs.as_ref();
    let db_path = path.join(DB_FILE);
    let log_dir = path.join(LOG_DIR);
    let staging = aside.join("new-log");
    let old = segments_from(fs_ref, &survey.files, applied.position.segment, store_id)?;
    let rebased = {
        let db = Db::open(fs_ref, &db_path, options)?;
        super::rebase::rebase_log(&fs, &db, store_id, options, &old, &staging)?
    };
    report.actions.push(format!(
        "wrote a new log: the state database's state at its checkpoint (revision {}) as a base \
         segment, then {} commits the old log holds after it",
        applied.revision,
        rebased.last_revision - applied.revision
    ));
    let aside_log = aside.join(LOG_DIR);
    for file in &survey.files {
        let to = archive::move_into(fs_ref, file, &aside_log)?;
        report.moved.push(to);
    }
    report.actions.push(format!(
        "moved the old log ({} segment{}, revisions up to {}) aside to {}",
        survey.files.len(),
        if survey.files.len() == 1 { "" } else { "s" },
        survey.beyond.map_or(survey.last_revision(), |(_, hi)| hi
            .max(survey.last_revision())),
        aside_log.display()
    ));
    for segment in &rebased.segments {
        let name = segment.file_name().unwrap_or_default();
        let to = log_dir.join(name);
        fs_ref
            .rename(segment, &to)
            .map_err(|e| Error::io("move the new log segment into place", segment, e))?;
    }
    fs_ref
        .sync_dir(&log_dir)
        .map_err(|e| Error::io("sync the log directory", &log_dir, e))?;
    rebuild::set_checkpoint(fs_ref, &db_path, options, &rebased.base)?;
    report.actions.push(format!(
        "pointed the checkpoint at the new log's base (revision {})",
        applied.revision
    ));
    let seen = survey.beyond.map_or(0, |(_, hi)| hi);
    report.lost = if seen > rebased.last_revision {
        Lost::Revisions {
            from: rebased.last_revision + 1,
            to: seen,
        }
    } else if let Some(why) = &rebased.stopped_by {
        report.actions.push(format!(
            "the old log's commits after revision {} could not be read: {why}",
            rebased.last_revision
        ));
        Lost::Unknown {
            after: rebased.last_revision,
        }
    } else {
        Lost::Nothing
    };
    Ok(())
}
