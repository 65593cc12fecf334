//! `compact`: a checkpoint, the log retention policy, and redb's own
//! compaction of the state database file.
//!
//! redb compacts only with the database to itself, which no open store can
//! give (the engine and readers share the database), so this opens the store,
//! checkpoints, applies retention and closes it, then takes the store's lock
//! itself and compacts the file. Compaction moves pages, not data: a commit
//! another process made in between (it would have to get the lock first) is
//! compacted along with the rest.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::layout::{self, DB_FILE, LOG_DIR};
use crate::log::archive;
use crate::options::Options;
use crate::{db, engine};

/// What [`compact`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    /// The store's revision.
    pub revision: u64,
    /// Log segments retention removed.
    pub segments_removed: usize,
    /// Their bytes.
    pub log_bytes_removed: u64,
    /// Segments the policy would remove but a backup has not copied yet.
    pub segments_held_for_backup: usize,
    /// Bytes of the log afterwards.
    pub log_bytes: u64,
    /// Bytes of the state database before.
    pub state_bytes_before: u64,
    /// And after.
    pub state_bytes_after: u64,
    /// How long it took.
    #[serde(serialize_with = "super::millis")]
    pub duration: Duration,
}

/// Checkpoints the store in `path`, applies its log retention policy
/// (`options`' [`RetentionPolicy`](crate::RetentionPolicy)), and compacts the
/// state database file.
///
/// # Errors
/// The errors of [`Store::open`](crate::Store::open) (a missing, busy or
/// damaged store); [`Error::Database`] if compaction fails (the file is left
/// as redb leaves a failed compaction: whole); [`Error::Io`].
pub fn compact(path: impl AsRef<Path>, options: &Options) -> Result<CompactReport> {
    let started = Instant::now();
    let path = path.as_ref();
    let fs = RealFs;
    // This process must hold the store itself (it compacts the file after).
    let options = options.clone().create(false);
    let db_path = path.join(DB_FILE);
    let state_bytes_before = archive::file_len(&fs, &db_path)?;
    let mut held = engine::open::hold(path, &options)?;
    held.engine.check_writable()?;
    held.engine.checkpoint()?;
    let outcome = held.engine.retain()?;
    let revision = held.engine.revision();
    held.close()?;

    let _lock = layout::take_lock(&fs, path, &options)?;
    db::compact::compact(&fs, &db_path, &options)?;
    let state_bytes_after = archive::file_len(&fs, &db_path)?;
    let log_dir = path.join(LOG_DIR);
    let mut log_bytes = 0;
    for name in fs
        .read_dir(&log_dir)
        .map_err(|e| Error::io("list", &log_dir, e))?
    {
        if crate::log::segment::parse_file_name(&name).is_some() {
            log_bytes += archive::file_len(&fs, &log_dir.join(name))?;
        }
    }
    Ok(CompactReport {
        revision,
        segments_removed: outcome.removed.len(),
        log_bytes_removed: outcome.removed.iter().map(|r| r.bytes).sum(),
        segments_held_for_backup: outcome.held_for_backup,
        log_bytes,
        state_bytes_before,
        state_bytes_after,
        duration: started.elapsed(),
    })
}
