//! Backups and point-in-time restore.
//!
//! [`Store::backup`](crate::Store::backup) writes a backup directory: a base
//! (one consistent snapshot of the state, as a segment file holding one base
//! commit), the log segments written since, and a `MANIFEST`. Later runs into
//! the same directory copy only the new log. [`restore`] builds a new store
//! from a backup by loading the base and replaying the log, up to the end, a
//! revision, or a point in time:
//!
//! ```
//! use statelog::backup::{restore, RestoreOptions, Until};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = statelog::Store::open(dir.path().join("state"), Default::default())?;
//! store.backup(dir.path().join("backup"))?;               // the base, at revision 0
//! store.put("jobs", "build", &"queued")?;                  // revision 1
//! store.put("jobs", "build", &"failed")?;                  // revision 2
//! store.backup(dir.path().join("backup"))?;               // copies the new log
//!
//! let options = RestoreOptions::new().until(Until::Revision(1));
//! let report = restore(dir.path().join("backup"), dir.path().join("as-of-1"), &options)?;
//! assert_eq!(report.revision, 1);
//! let old = statelog::Store::open(dir.path().join("as-of-1"), Default::default())?;
//! assert_eq!(old.get::<String>("jobs", "build")?.unwrap().value, "queued");
//! # Ok::<(), statelog::Error>(())
//! ```
//!
//! The layout, the manifest and the rules are in `DESIGN.md`, "Backups,
//! restore, check and repair".

pub(crate) mod build;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
pub(crate) mod etcd_run;
pub(crate) mod manifest;
mod restore;
pub(crate) mod run;
pub(crate) mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use self::manifest::{
    BACKUP_FORMAT, BACKUP_FORMAT_VERSION, BaseEntry, MANIFEST_FILE, Manifest, SegmentEntry,
};
pub use self::restore::restore;
pub use crate::access::{BackupOptions, BackupProgress, BackupReport};
use crate::options::Options;
use crate::time::Timestamp;

/// How far [`restore`] replays the backup's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Until {
    /// Everything the backup holds.
    #[default]
    End,
    /// Up to and including this revision.
    Revision(u64),
    /// Every commit made before this time (commits at or after it are left out).
    Time(Timestamp),
}

/// Progress of a restore, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Commits replayed so far (the base counts as one).
    pub commits: u64,
    /// Commits the restore replays in all.
    pub commits_total: u64,
    /// Bytes of the backup read so far.
    pub bytes: u64,
    /// Bytes of the backup in all.
    pub bytes_total: u64,
}

type RestoreCallback = Arc<dyn Fn(&RestoreProgress) + Send + Sync>;

/// Options of [`restore`].
#[derive(Clone)]
pub struct RestoreOptions {
    pub(crate) until: Until,
    pub(crate) overwrite: bool,
    pub(crate) store: Options,
    pub(crate) progress: Option<RestoreCallback>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            until: Until::End,
            overwrite: false,
            store: Options::default(),
            progress: None,
        }
    }
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("until", &self.until)
            .field("overwrite", &self.overwrite)
            .field("store", &self.store)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl RestoreOptions {
    /// Restore everything, into an empty or new directory.
    pub fn new() -> RestoreOptions {
        RestoreOptions::default()
    }

    /// Where to stop. Default: [`Until::End`].
    pub fn until(mut self, until: Until) -> Self {
        self.until = until;
        self
    }

    /// Whether a store in the target may be replaced. It is moved aside to
    /// `<target>.replaced-<time>` (never deleted) once the backup has checked
    /// out. Default: false (a target holding anything is refused).
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// The options the new store is created with (segment size, lock wait, the
    /// file system). `create` is ignored.
    pub fn store_options(mut self, options: Options) -> Self {
        self.store = options;
        self
    }

    /// Calls `f` as the restore proceeds (from the thread running it).
    pub fn progress(mut self, f: impl Fn(&RestoreProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The new store.
    pub target: PathBuf,
    /// The new store's id: a restored store is a new history.
    pub store_id: String,
    /// The id of the store the backup is of.
    pub backup_store_id: String,
    /// The backup's base revision.
    pub base_revision: u64,
    /// Records in the base.
    pub base_records: u64,
    /// The revision the restore stopped at: the new store's revision.
    pub revision: u64,
    /// Its commit time.
    pub time: Timestamp,
    /// Commits replayed after the base.
    pub commits_replayed: u64,
    /// Bytes written to the new store's log.
    pub log_bytes: u64,
    /// Where a store that was in the target went (with `overwrite`).
    pub replaced: Option<PathBuf>,
    /// Things worth knowing that were not wrong.
    pub notes: Vec<String>,
    /// How long it took.
    pub duration: Duration,
}
