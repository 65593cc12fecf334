//! The `MANIFEST` of a backup directory: what the backup holds and how to check
//! it. JSON, written last and atomically by every backup run (temporary file,
//! sync, rename, directory sync), so a backup is exactly what its manifest
//! lists; files it does not list are leftovers of an interrupted run.
//!
//! ```text
//! { "format": "statelog-backup", "version": 1,
//!   "store_id": "3f0c...", "created_at": "...", "updated_at": "...", "runs": 3,
//!   "base": { "file": "base-00000000000000000500.log", "revision": 500,
//!             "time": "...", "records": 120, "bytes": 9161, "crc32": 1234 },
//!   "segments": [ { "file": "log/00000000000000000001.log", "first_revision": 1,
//!                   "bytes": 70310, "crc32": 5678 } ],
//!   "last_revision": 900, "last_time": "..." }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::counter::MAX_REVISION;
use crate::error::{Error, Result};
use crate::fs::{self, Fs};
use crate::log::{catalog, segment};
use crate::time::Timestamp;

/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The lock a backup run holds on its backup directory, so that two runs into
/// one directory (from any processes) take turns.
pub const LOCK_FILE: &str = "LOCK";
/// The `format` every manifest names.
pub const BACKUP_FORMAT: &str = "statelog-backup";
/// The manifest version this build writes and reads.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
/// The directory of a backup that holds the copied log segments.
pub const BACKUP_LOG_DIR: &str = "log";

/// What a backup directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// [`BACKUP_FORMAT_VERSION`] when written.
    pub version: u32,
    /// The id of the store backed up (32 hex digits).
    pub store_id: String,
    /// When the first run wrote the base.
    pub created_at: String,
    /// When the last run finished.
    pub updated_at: String,
    /// How many runs wrote into the backup.
    pub runs: u64,
    /// The snapshot the backup starts from; `None` when the store had no commit
    /// at the first run (then the log starts at revision 1).
    pub base: Option<BaseEntry>,
    /// The copied log segments, in revision order.
    pub segments: Vec<SegmentEntry>,
    /// The last revision the backup holds.
    pub last_revision: u64,
    /// Its commit time.
    pub last_time: String,
}

/// The base of a backup: one segment file holding one `base` commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseEntry {
    /// Its path, relative to the backup directory.
    pub file: String,
    /// The revision of the snapshot.
    pub revision: u64,
    /// Its commit time.
    pub time: String,
    /// Records in it.
    pub records: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// CRC-32 (IEEE) of those bytes.
    pub crc32: u32,
}

/// One copied log segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Its path, relative to the backup directory.
    pub file: String,
    /// The revision of its first record (also in its name).
    pub first_revision: u64,
    /// Bytes of it the backup holds (the file may be longer after an
    /// interrupted run; only these count).
    pub bytes: u64,
    /// CRC-32 (IEEE) of those bytes.
    pub crc32: u32,
}

/// The file name of a base at `revision`.
pub(crate) fn base_file_name(revision: u64) -> String {
    format!("base-{revision:020}{}", segment::SEGMENT_SUFFIX)
}

/// The relative path of a copied segment.
pub(crate) fn segment_file(first_revision: u64) -> String {
    format!("{BACKUP_LOG_DIR}/{}", segment::file_name(first_revision))
}

impl Manifest {
    /// The entry of the segment starting at `first_revision`, if the backup
    /// holds it.
    pub(crate) fn entry(&self, first_revision: u64) -> Option<&SegmentEntry> {
        self.segments
            .iter()
            .find(|e| e.first_revision == first_revision)
    }

    /// The manifest of an empty backup of store `store_id`.
    pub(crate) fn new(store_id: String, now: Timestamp) -> Manifest {
        Manifest {
            format: BACKUP_FORMAT.to_owned(),
            version: BACKUP_FORMAT_VERSION,
            store_id,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            runs: 0,
            base: None,
            segments: Vec::new(),
            last_revision: 0,
            last_time: Timestamp::EPOCH.to_string(),
        }
    }

    /// Reads and checks the manifest of the backup in `dir`: the format, and that
    /// every name in it is one a backup writes (a manifest can never point
    /// outside its directory), in order.
    ///
    /// # Errors
    /// [`Error::InvalidBackup`] naming what is wrong; `Io`.
    pub fn read(dir: impl AsRef<Path>) -> Result<Manifest> {
        Manifest::read_with(&crate::fs::RealFs, dir.as_ref())
    }

    pub(crate) fn read_with(fs: &dyn Fs, dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !fs
            .exists(&path)
            .map_err(|e| Error::io("look for", &path, e))?
        {
            return Err(invalid(
                dir,
                format!(
                    "there is no {MANIFEST_FILE} file: it is not a backup, or its first run never finished"
                ),
            ));
        }
        let bytes = fs::read_file(fs, &path).map_err(|e| Error::io("read", &path, e))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(&path, format!("it is not a valid manifest ({e})")))?;
        manifest.validate(&path)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.format != BACKUP_FORMAT {
            return Err(invalid(
                path,
                format!(
                    "it names the format {:?}, not {BACKUP_FORMAT:?}",
                    self.format
                ),
            ));
        }
        if self.version > BACKUP_FORMAT_VERSION || self.version == 0 {
            return Err(Error::UnsupportedFormat {
                path: path.to_owned(),
                found: u64::from(self.version),
                supported: u64::from(BACKUP_FORMAT_VERSION),
            });
        }
        if catalog::parse_hex(&self.store_id).is_none() {
            return Err(invalid(
                path,
                format!("the store id {:?} is not 32 hex digits", self.store_id),
            ));
        }
        let mut reached = 0;
        if let Some(base) = &self.base {
            if base.file != base_file_name(base.revision) || base.revision == 0 {
                return Err(invalid(
                    path,
                    format!(
                        "the base is listed as {:?} at revision {}, which is not a base file's name",
                        base.file, base.revision
                    ),
                ));
            }
            parse_time(path, &base.time)?;
            reached = base.revision;
        }
        let mut previous = None;
        for entry in &self.segments {
            if entry.file != segment_file(entry.first_revision) {
                return Err(invalid(
                    path,
                    format!(
                        "the segment {:?} is not named for its first revision {}",
                        entry.file, entry.first_revision
                    ),
                ));
            }
            if previous.is_some_and(|p| p >= entry.first_revision) {
                return Err(invalid(
                    path,
                    format!("the segment {:?} is out of order", entry.file),
                ));
            }
            previous = Some(entry.first_revision);
        }
        if self.last_revision < reached {
            return Err(invalid(
                path,
                format!(
                    "it says the backup ends at revision {}, before its base at {reached}",
                    self.last_revision
                ),
            ));
        }
        let highest = self.last_revision.max(previous.unwrap_or(0));
        if highest > MAX_REVISION {
            return Err(invalid(
                path,
                format!(
                    "it names revision {highest}, beyond the highest a store reaches \
                     ({MAX_REVISION})"
                ),
            ));
        }
        parse_time(path, &self.last_time)?;
        Ok(())
    }

    /// The base's commit time.
    pub(crate) fn base_time(&self) -> Timestamp {
        self.base
            .as_ref()
            .and_then(|b| b.time.parse().ok())
            .unwrap_or(Timestamp::EPOCH)
    }

    /// The base revision (0 without a base).
    pub fn base_revision(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.revision)
    }

    /// The last commit's time.
    pub fn last_time(&self) -> Timestamp {
        self.last_time.parse().unwrap_or(Timestamp::EPOCH)
    }

    /// The store id as bytes.
    pub(crate) fn store_id_bytes(&self) -> Option<segment::StoreId> {
        catalog::parse_hex(&self.store_id)
    }

    /// Total bytes of the files the backup holds.
    pub fn bytes(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.bytes)
            + self.segments.iter().map(|s| s.bytes).sum::<u64>()
    }

    /// Writes the manifest into `dir` atomically.
    pub(crate) fn write(&self, fs: &dyn Fs, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        fs::write_file_atomic(fs, &path, text.as_bytes())
            .map_err(|e| Error::io("write the backup manifest", &path, e))?;
        Ok(path)
    }
}

fn parse_time(path: &Path, text: &str) -> Result<Timestamp> {
    text.parse()
        .map_err(|e| invalid(path, format!("it holds a bad time: {e}")))
}

pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
    Error::InvalidBackup {
        path: path.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new("00112233445566778899aabbccddeeff".into(), Timestamp::EPOCH);
        m.base = Some(BaseEntry {
            file: base_file_name(5),
            revision: 5,
            time: Timestamp::from_micros(9).to_string(),
            records: 2,
            bytes: 100,
            crc32: 7,
        });
        m.segments.push(SegmentEntry {
            file: segment_file(3),
            first_revision: 3,
            bytes: 64,
            crc32: 1,
        });
        m.last_revision = 7;
        m
    }

    #[test]
    fn a_manifest_cannot_point_outside_its_backup() {
        let path = Path::new("MANIFEST");
        assert!(sample().validate(path).is_ok());
        let mut m = sample();
        m.segments[0].file = "../../etc/passwd".into();
        assert!(m.validate(path).is_err());
        let mut m = sample();
        m.base.as_mut().unwrap().file = "/tmp/base".into();
        assert!(m.validate(path).is_err());
        let mut m = sample();
        m.last_revision = 4;
        let err = m.validate(path).unwrap_err().to_string();
        assert!(err.contains("before its base"), "{err}");
        let mut m = sample();
        m.version = 2;
        assert!(matches!(
            m.validate(path),
            Err(Error::UnsupportedFormat { .. })
        ));
    }

    #[test]
    fn revisions_beyond_the_ceiling_are_refused() {
        let path = Path::new("MANIFEST");
        let mut m = sample();
        m.last_revision = u64::MAX;
        let err = m.validate(path).unwrap_err().to_string();
        assert!(err.contains("beyond the highest"), "{err}");
        let mut m = sample();
        m.segments.push(SegmentEntry {
            file: segment_file(MAX_REVISION + 1),
            first_revision: MAX_REVISION + 1,
            bytes: 64,
            crc32: 1,
        });
        assert!(m.validate(path).is_err());
    }
}
