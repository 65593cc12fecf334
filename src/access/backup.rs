//! What a backup run is asked and reports: the options and report of
//! `Store::backup_with`, which every backend takes and returns (a holder's
//! clients get the same report). Public as `statelog::backup::*`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::time::Timestamp;

/// Progress of a backup run, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupProgress {
    /// Records written into the base so far (first run only).
    pub records: u64,
    /// Log bytes copied so far.
    pub bytes_copied: u64,
    /// Log bytes this run copies in all.
    pub bytes_to_copy: u64,
}

type BackupCallback = Arc<dyn Fn(&BackupProgress) + Send + Sync>;

/// Options of [`Store::backup_with`](crate::Store::backup_with).
#[derive(Clone, Default)]
pub struct BackupOptions {
    pub(crate) progress: Option<BackupCallback>,
}

impl std::fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupOptions")
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl BackupOptions {
    /// The defaults: no progress callback.
    pub fn new() -> BackupOptions {
        BackupOptions::default()
    }

    /// Calls `f` as the run proceeds (from the thread running the backup).
    pub fn progress(mut self, f: impl Fn(&BackupProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

/// What a backup run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup directory.
    pub destination: PathBuf,
    /// The store's id.
    pub store_id: String,
    /// True for the first run into the directory, which wrote the base.
    pub full: bool,
    /// The revision of the backup's base (0: the store had no commit then).
    pub base_revision: u64,
    /// The last revision the backup now holds.
    pub revision: u64,
    /// Its commit time.
    pub time: Timestamp,
    /// Records in the base written by this run (0 for an incremental run).
    pub base_records: u64,
    /// Bytes of the base written by this run.
    pub base_bytes: u64,
    /// Log segments this run copied or extended.
    pub segments_copied: usize,
    /// Bytes this run wrote into the backup (base and log).
    pub bytes_copied: u64,
    /// Of those, log bytes.
    pub log_bytes_copied: u64,
    /// Bytes the backup holds in all.
    pub backup_bytes: u64,
    /// How long the run took.
    pub duration: Duration,
}
