//! Restoring a backup into a store on etcd (feature `etcd`): the backup is
//! restored as usual into a scratch directory (every check of
//! [`restore`](super::restore), the stopping point), then the copy's records
//! are loaded into the store on etcd in one transaction
//! (`etcd/restore.rs` says what is kept and what etcd assigns anew).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{RestoreOptions, RestoreReport};
use crate::engine;
use crate::engine::read::LocalView;
use crate::error::Result;
use crate::etcd::restore::Target;
use crate::options::Options;

/// Restores `backup` into the store on etcd at `address`.
pub(crate) fn restore(
    backup: &Path,
    address: &str,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    // Reach the cluster before the work of a local restore.
    let store = &options.store;
    let target = Target::open(address, store.etcd.as_ref(), store.clock.clone())?;
    let scratch = scratch_dir();
    let result = restore_via(backup, &scratch, &target, options, started);
    if let Err(e) = std::fs::remove_dir_all(&scratch)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(
            dir = %scratch.display(),
            error = %e,
            "the restore's scratch directory could not be removed; delete it"
        );
    }
    result
}

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "statelog-restore-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

fn restore_via(
    backup: &Path,
    scratch: &Path,
    target: &Target,
    options: &RestoreOptions,
    started: Instant,
) -> Result<RestoreReport> {
    let local_options = Options::default().serve(false).remote(false);
    let mut scratch_restore = options.clone().overwrite(false);
    scratch_restore.store = local_options.clone();
    let local = super::restore(backup, scratch, &scratch_restore)?;
    let copy = engine::open::hold(scratch, &local_options.create(false))?;
    let view = Arc::new(LocalView::new(copy.engine.visible().get()));
    let loaded = target.load(view, options.overwrite);
    copy.close()?;
    let loaded = loaded?;
    let mut notes = local.notes;
    notes.push(format!(
        "loaded {} records at etcd revision {}: etcd assigns versions and revisions, so the \
         backup's (up to revision {}) were not kept",
        loaded.records, loaded.revision, local.revision
    ));
    Ok(RestoreReport {
        target: target.label(),
        store_id: target.store_id().to_owned(),
        backup_store_id: local.backup_store_id,
        base_revision: local.base_revision,
        base_records: local.base_records,
        revision: loaded.revision,
        time: loaded.time,
        commits_replayed: local.commits_replayed,
        log_bytes: 0,
        replaced: None,
        notes,
        duration: started.elapsed(),
    })
}
