//! Restoring a backup: check all of it, then build a new store by replay.
//!
//! 1. The backup is verified completely (manifest, every file's size and
//!    CRC-32, headers, the base, every frame and the revisions from the base
//!    to the end) and the stopping point resolved, before the target is
//!    touched. Any problem refuses the restore and changes nothing.
//! 2. The target must be new, empty, or hold only what an interrupted restore
//!    or store creation left (no `STATELOG`). A store there is replaced only
//!    with `overwrite`: it is locked (so nobody uses it), then moved aside to
//!    `<target>.replaced-<time>`, never deleted. Anything else is refused.
//! 3. The new store (a new store id: a restored store is a new history) is
//!    built without its identity file: the base becomes its log's first (base)
//!    commit, then each later commit up to the stopping point is appended
//!    verbatim (revision, time, operations) and applied through the replay
//!    code, the log synced every 16 MiB and at the end, and a checkpoint taken.
//!    The identity file is written last: until then the directory is not a
//!    store, and a crash leaves something the next restore replaces.
//! 4. The new store is opened once to prove it opens at the revision reached.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::build::{self, Source};
use super::verify::{self, Verified};
use super::{RestoreOptions, RestoreProgress, RestoreReport, Until};
use crate::engine;
use crate::error::{Error, Result};
use crate::fs::{Fs, Nesting};
use crate::layout::creation::{self, Leftovers};
use crate::layout::{self, DB_FILE, ID_FILE};
use crate::log::catalog;
use crate::time::Timestamp;

/// Restores the backup in `backup` into a new store in `target`, up to
/// `options.until`.
///
/// ```no_run
/// use statelog::backup::{restore, RestoreOptions, Until};
/// let t: statelog::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
/// let report = restore("/backups/state", "/tmp/state-at-10", &RestoreOptions::new().until(Until::Time(t)))?;
/// println!("restored revision {} of {}", report.revision, report.time);
/// # Ok::<(), statelog::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidBackup`] when the backup is missing, damaged, from a store
/// other than its manifest says, has a gap in its revisions, or does not reach
/// the stopping point (the message names the file and what is wrong);
/// [`Error::TargetNotEmpty`] when the target holds anything and `overwrite`
/// is not set, or holds something other than a store; [`Error::Busy`] when the
/// store to replace is open; [`Error::Io`], [`Error::Database`]. Nothing in
/// the target is changed by a refused restore.
pub fn restore(
    backup: impl AsRef<Path>,
    target: impl AsRef<Path>,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let backup = backup.as_ref();
    let target = target.as_ref();
    if let Some(address) = crate::access::etcd_address(target) {
        #[cfg(feature = "etcd")]
        return super::etcd::restore(backup, address, options);
        #[cfg(not(feature = "etcd"))]
        return Err({
            let _ = address;
            crate::access::etcd_not_built()
        });
    }
    let fs = Arc::clone(&options.store.fs);
    refuse_nested(fs.as_ref(), backup, target)?;
    let (verified, problems) = verify::verify(fs.as_ref(), backup, options.until)?;
    let Some(verified) = verified.filter(|_| problems.is_empty()) else {
        let first = problems.first();
        return Err(Error::InvalidBackup {
            path: first.map_or_else(|| backup.to_owned(), |p| p.file.clone()),
            reason: problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        });
    };
    let Some((stop, _)) = verified.stop else {
        return Err(Error::InvalidBackup {
            path: backup.to_owned(),
            reason: "the stopping point could not be resolved".to_owned(),
        });
    };
    let replaced = prepare_target(fs.as_ref(), target, options)?;
    let source = source_of(&verified, stop);
    let total_commits = stop.saturating_sub(verified.view.manifest.base_revision())
        + u64::from(source.base.is_some());
    let total_bytes = verified.view.manifest.bytes();
    let store_options = options.store.clone().create(false);
    let callback = options.progress.clone();
    let mut progress = |commits: u64, bytes: u64| {
        if let Some(f) = &callback {
            f(&RestoreProgress {
                commits,
                commits_total: total_commits,
                bytes,
                bytes_total: total_bytes,
            });
        }
    };
    let built = build::build_store(&fs, target, &store_options, &source, &mut progress)?;
    // Prove it opens where the restore says it stopped.
    let held = engine::open::hold(target, &store_options)?;
    let opened = held.engine.revision();
    held.close()?;
    if opened != built.revision {
        return Err(Error::corrupt(
            target.join(DB_FILE),
            0,
            format!(
                "the restored store opens at revision {opened}, not {} where the restore \
                 stopped",
                built.revision
            ),
        ));
    }
    let mut notes = verified.notes.clone();
    if let Until::Time(t) = options.until {
        notes.push(format!(
            "stopped at the last commit before {t}: revision {} of {}",
            built.revision, built.time
        ));
    }
    Ok(RestoreReport {
        target: target.to_owned(),
        store_id: catalog::hex(&built.store_id),
        backup_store_id: verified.view.manifest.store_id.clone(),
        base_revision: verified.view.manifest.base_revision(),
        base_records: built.base_records,
        revision: built.revision,
        time: if built.revision == 0 {
            Timestamp::EPOCH
        } else {
            built.time
        },
        commits_replayed: built
            .commits
            .saturating_sub(u64::from(source.base.is_some())),
        log_bytes: built.bytes,
        replaced,
        notes,
        duration: started.elapsed(),
    })
}

fn source_of(verified: &Verified, stop: u64) -> Source {
    Source {
        base: verified.view.base.clone(),
        store_id: verified.view.store_id,
        segments: verified.view.segments.clone(),
        start_previous: verified.view.start_previous,
        first_after_base: verified.first_after_base,
        until: stop,
    }
}

/// Refuses a target that is the backup, lies inside it or holds it: building
/// the store would change the backup being read, and moving a store aside
/// would move the backup with it.
fn refuse_nested(fs: &dyn Fs, backup: &Path, target: &Path) -> Result<()> {
    let nesting = crate::fs::nesting(fs, target, backup)
        .map_err(|e| Error::io("resolve the restore target", target, e))?;
    let what = match nesting {
        None => return Ok(()),
        Some(Nesting::Same) => "is the backup's own directory",
        Some(Nesting::Inside) => "is inside the backup's directory",
        Some(Nesting::Holds) => "holds the backup's directory",
    };
    Err(Error::TargetNotEmpty {
        path: target.to_owned(),
        reason: format!(
            "it {what} ({}); restore into a directory outside the backup",
            backup.display()
        ),
    })
}

/// Makes sure the target may be built in; moves a store there aside when
/// overwriting. Returns where it went.
fn prepare_target(fs: &dyn Fs, target: &Path, options: &RestoreOptions) -> Result<Option<PathBuf>> {
    if !fs
        .exists(target)
        .map_err(|e| Error::io("look for", target, e))?
    {
        create_dir_durably(fs, target)?;
        return Ok(None);
    }
    let names = fs
        .read_dir(target)
        .map_err(|e| Error::io("list", target, e))?;
    if names.is_empty() {
        return Ok(None);
    }
    let is_store = names.iter().any(|n| n == ID_FILE);
    if !is_store {
        // What an unfinished creation or restore left is replaced; the files of
        // a store that lost its identity file never are.
        let refuse = |reason: String| Error::TargetNotEmpty {
            path: target.to_owned(),
            reason,
        };
        return match creation::leftovers(fs, target)? {
            Leftovers::Nothing | Leftovers::Unfinished(_) => Ok(None),
            Leftovers::StoreFiles(files) => Err(refuse(format!(
                "{}, or restore into another directory",
                Leftovers::describe_store_files(&files)
            ))),
            Leftovers::Other(other) => Err(refuse(format!(
                "it holds other files ({other:?} among them) and is not a store; restore into \
                 an empty or new directory"
            ))),
        };
    }
    if !options.overwrite {
        return Err(Error::TargetNotEmpty {
            path: target.to_owned(),
            reason: "it holds a store; restore into an empty or new directory, or ask to \
                     overwrite (the store there is then moved aside, not deleted)"
                .to_owned(),
        });
    }
    // Nobody may be using the store being replaced.
    let lock = layout::take_lock(fs, target, &options.store)?;
    let aside = layout::replaced_name(fs, target)?;
    fs.rename(target, &aside)
        .map_err(|e| Error::io("move the store being replaced aside", target, e))?;
    drop(lock);
    create_dir_durably(fs, target)?;
    Ok(Some(aside))
}

fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.create_dir_all(dir)
        .map_err(|e| Error::io("create", dir, e))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs.sync_dir(parent)
        .map_err(|e| Error::io("sync the directory", parent, e))
}
