//! Online backups (`Store::backup`): the base is one MVCC read of the state,
//! taken while holding the engine only for one log sync; the log after the
//! last run is copied from the segment files while writers go on.
//!
//! A run:
//! 1. checks the destination: a new or empty directory, or a backup of this
//!    store (its `MANIFEST` names this store's id);
//! 2. under the engine lock: syncs the log (in `Relaxed` mode, commits may be
//!    visible before they are durable; a backup claims only durable ones),
//!    takes the read transaction (the first run only), notes the revision and
//!    where the log ends, lists the segments, and pins the first one it needs
//!    so retention cannot remove it meanwhile;
//! 3. without the lock: writes the base (first run), copies the segments
//!    holding revisions after the last run (new ones whole, the grown one's new
//!    bytes after checking the bytes copied before are still the same), reads
//!    every copied file back, and reads the copied log through the commit
//!    reader;
//! 4. writes the manifest (atomically), records the backed-up revision for
//!    retention and unpins.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::open::LOG_DIR;
use super::rebuild;
use super::{Shared, Store};
use crate::backup::manifest::{
    self, BACKUP_LOG_DIR, BaseEntry, LOCK_FILE, MANIFEST_FILE, Manifest, SegmentEntry, invalid,
};
use crate::backup::verify;
use crate::backup::{BackupOptions, BackupProgress, BackupReport};
use crate::error::{Error, Result};
use crate::fs::{Fs, Nesting};
use crate::log::archive;
use crate::log::catalog::{self, SegmentInfo};
use crate::log::segment;
use crate::time::Timestamp;

/// Clears the retention pin when the run ends, however it ends.
struct Unpin<'a>(&'a Shared);

impl Drop for Unpin<'_> {
    fn drop(&mut self) {
        self.0.engine.lock().backup_pin = None;
    }
}

/// The files a run writes into, until its manifest lists them: dropped before
/// that (the run failed: a full disk, an I/O error), it takes back what the run
/// wrote, so that a failed run leaves the backup exactly as its manifest lists
/// it (and on a full disk, frees the space it took).
struct Unfinished<'a> {
    fs: &'a dyn Fs,
    /// Each file, and how many of its bytes the manifest lists (`None`: none,
    /// the run created it).
    files: Vec<(std::path::PathBuf, Option<u64>)>,
}

impl Unfinished<'_> {
    /// The run is complete (or its manifest may be on disk): keep everything.
    fn keep(mut self) {
        self.files.clear();
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        for (path, keep) in self.files.drain(..).rev() {
            if let Err(e) = archive::take_back(self.fs, &path, keep) {
                tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "a failed backup run could not take back what it wrote; the manifest does \
                     not list it, and the next run replaces it"
                );
            }
        }
    }
}

/// One segment to bring into the backup: the store's file and how many of its
/// bytes.
struct Needed {
    segment: SegmentInfo,
    to: u64,
}

impl Store {
    /// Backs the store up into the directory `dest`, online: writers go on
    /// meanwhile (they wait at most for one log sync).
    ///
    /// The first run into a directory writes a base (one consistent snapshot
    /// of the state, as a segment file holding one base commit) and a
    /// `MANIFEST`. Later runs into the same directory are incremental: they
    /// copy only the log written since (new segments, and the new end of the
    /// last one), so the backup holds every revision from its base on and
    /// `restore` can stop at any of them. See `DESIGN.md`, "Backups, restore,
    /// check and repair".
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = statelog::Store::open(dir.path().join("state"), Default::default())?;
    /// store.put("jobs", "build", &"queued")?;
    /// let first = store.backup(dir.path().join("backup"))?;
    /// store.put("jobs", "build", &"running")?;
    /// let next = store.backup(dir.path().join("backup"))?;
    /// assert!(first.full && !next.full);
    /// assert_eq!(next.revision, 2);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// Through a holder (another process holds the store), the holder writes
    /// the backup, so only a process of the holder's own user may ask for one
    /// ([`Error::Refused`] otherwise); `dest` is taken relative to this
    /// process's working directory.
    ///
    /// # Errors
    /// [`Error::InvalidBackup`] if `dest` is a backup of another store, was
    /// damaged, or holds a history that diverged from this store's, or if the
    /// store no longer holds the log the backup needs (log retention removed
    /// it; back up into a new directory); [`Error::TargetNotEmpty`] if `dest`
    /// holds other files; [`Error::Corrupt`] if the log being copied is
    /// damaged; [`Error::Io`], [`Error::Database`]; [`Error::Refused`].
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_with(dest, &BackupOptions::default())
    }

    /// [`backup`](Self::backup) with options (a progress callback).
    ///
    /// # Errors
    /// As [`backup`](Self::backup).
    pub fn backup_with(
        &self,
        dest: impl AsRef<Path>,
        options: &BackupOptions,
    ) -> Result<BackupReport> {
        let dest = dest.as_ref();
        self.call(|b| b.backup(dest, options))
    }
}

impl Shared {
    /// A backup run into `dest` (see [`Store::backup`]).
    pub(crate) fn backup(&self, dest: &Path, options: &BackupOptions) -> Result<BackupReport> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let shared = self;
        let _one_at_a_time = shared.backup_lock.lock();
        let started = Instant::now();
        let fs = Arc::clone(&shared.options.fs);
        let fs = fs.as_ref();
        let store_hex = catalog::hex(&shared.store_id);
        refuse_nested(fs, dest, &shared.path)?;
        create_destination(fs, dest)?;
        // Backups of other stores or from other processes take turns too; what
        // the directory holds is read under its lock.
        let _dest_lock = super::open::lock_dir(fs, dest, LOCK_FILE, shared.options.lock_timeout)?;
        let existing = read_destination(fs, dest, &store_hex)?;
        if existing.is_none() {
            remove_leftovers(fs, dest)?;
        }
        let log_dir = shared.path.join(LOG_DIR);

        // The consistent point: everything up to `revision` is durable in the log.
        let (applied, base_at, needed) = {
            let mut engine = shared.engine.lock();
            engine.check_poisoned()?;
            if let Err(e) = engine.log.sync() {
                engine.poison(&e);
                return Err(e);
            }
            let applied = engine.applied;
            shared
                .synced_revision
                .fetch_max(applied.revision, Ordering::AcqRel);
            let end = engine.log.position();
            let segments = catalog::list(fs, &log_dir, &shared.store_id)?;
            // A first run carries all the history the store holds: a base
            // just before the log's first commit (or at the log's own base,
            // for a restored store), read from the history index, and every
            // segment after it, so a restore reaches back as far as the
            // store's own log does.
            let base_at = match &existing {
                Some(_) => None,
                None => {
                    let log_first = segments
                        .first()
                        .map_or(applied.revision + 1, |s| s.first_revision);
                    Some(
                        log_first
                            .saturating_sub(1)
                            .max(engine.history_from)
                            .min(applied.revision),
                    )
                }
            };
            let needed = match (&existing, base_at) {
                (Some(m), _) => needed_segments(dest, m, &segments, applied.revision, end)?,
                (None, Some(base)) => {
                    let mut from = Manifest::new(store_hex.clone(), Timestamp::now());
                    from.last_revision = base;
                    needed_segments(dest, &from, &segments, applied.revision, end)?
                }
                (None, None) => Vec::new(),
            };
            engine.backup_pin = needed.first().map(|n| n.segment.first_revision);
            (applied, base_at.filter(|b| *b > 0), needed)
        };
        let _unpin = Unpin(shared);

        let now = Timestamp::now();
        let mut manifest = existing
            .clone()
            .unwrap_or_else(|| Manifest::new(store_hex.clone(), now));
        let to_copy: u64 = needed
            .iter()
            .map(|n| {
                n.to - manifest
                    .segments
                    .iter()
                    .find(|e| e.first_revision == n.segment.first_revision)
                    .map_or(0, |e| e.bytes)
            })
            .sum();
        let report_progress = |records: u64, copied: u64| {
            if let Some(callback) = &options.progress {
                callback(&BackupProgress {
                    records,
                    bytes_copied: copied,
                    bytes_to_copy: to_copy,
                });
            }
        };

        let mut unfinished = Unfinished {
            fs,
            files: vec![(dest.join(format!("{MANIFEST_FILE}.tmp")), None)],
        };
        // The base, on the first run.
        let mut base_written = None;
        if let Some(base_revision) = base_at {
            let view = shared.view_for_base(base_revision)?;
            let base_time = view.time();
            let name = manifest::base_file_name(base_revision);
            let path = dest.join(&name);
            unfinished.files.push((path.clone(), None));
            let written =
                rebuild::write_base_from_view(fs, view, &path, &shared.store_id, &mut |records| {
                    report_progress(records, 0)
                })?;
            let read_back = archive::crc_prefix(fs, &path, written.bytes)?;
            if read_back != written.crc32 {
                return Err(invalid(
                    &path,
                    "the base reads back differently from what was written: check the backup \
                     disk",
                ));
            }
            sync_dir(fs, dest)?;
            manifest.base = Some(BaseEntry {
                file: name,
                revision: base_revision,
                time: base_time.to_string(),
                records: written.records,
                bytes: written.bytes,
                crc32: written.crc32,
            });
            base_written = Some(written);
        }

        // The log since the last run.
        let copy_from = needed.first().map(|n| n.segment.first_revision);
        let mut copied = 0u64;
        let mut segments_copied = 0usize;
        if !needed.is_empty() {
            let backup_log = dest.join(BACKUP_LOG_DIR);
            fs.create_dir_all(&backup_log)
                .map_err(|e| Error::io("create", &backup_log, e))?;
        }
        for n in &needed {
            let rel = manifest::segment_file(n.segment.first_revision);
            let dst = dest.join(&rel);
            let before = manifest
                .segments
                .iter()
                .find(|e| e.first_revision == n.segment.first_revision)
                .cloned();
            let (from, crc_before) = match &before {
                Some(entry) if entry.bytes == n.to => continue,
                Some(entry) if entry.bytes > n.to => {
                    return Err(invalid(
                        &dst,
                        format!(
                            "the backup holds {} bytes of this segment, but the store's copy of                              it ends at {}: the store's history diverged from the backup's; back                              up into a new directory",
                            entry.bytes, n.to
                        ),
                    ));
                }
                Some(entry) => {
                    check_prefix(fs, &n.segment.path, &dst, entry)?;
                    (entry.bytes, entry.crc32)
                }
                None => (0, 0),
            };
            unfinished
                .files
                .push((dst.clone(), before.as_ref().map(|e| e.bytes)));
            let crc = archive::copy_range(fs, &n.segment.path, &dst, from, n.to, crc_before)?;
            if archive::crc_prefix(fs, &dst, n.to)? != crc {
                return Err(invalid(
                    &dst,
                    "the copy reads back differently from what was written: check the backup \
                     disk",
                ));
            }
            copied += n.to - from;
            segments_copied += 1;
            report_progress(0, copied);
            let entry = SegmentEntry {
                file: rel,
                first_revision: n.segment.first_revision,
                bytes: n.to,
                crc32: crc,
            };
            match manifest
                .segments
                .iter_mut()
                .find(|e| e.first_revision == entry.first_revision)
            {
                Some(e) => *e = entry,
                None => manifest.segments.push(entry),
            }
        }
        if segments_copied > 0 {
            sync_dir(fs, &dest.join(BACKUP_LOG_DIR))?;
        }
        manifest.segments.sort_by_key(|e| e.first_revision);

        // What was copied must read as one unbroken log up to `revision`.
        if let Some(from) = copy_from
            && segments_copied > 0
        {
            verify::check_copied_log(fs, dest, &manifest, from, applied.revision)?;
        }

        manifest.last_revision = applied.revision;
        manifest.last_time = applied.time.to_string();
        manifest.updated_at = Timestamp::now().to_string();
        manifest.runs += 1;
        if let Err(e) = manifest.write(fs, dest) {
            // Renamed into place before a later step failed: it lists the
            // files, which stay.
            if Manifest::read_with(fs, dest).is_ok_and(|on_disk| on_disk == manifest) {
                unfinished.keep();
            }
            return Err(e);
        }
        unfinished.keep();

        if let Err(e) = shared.engine.lock().record_backup(applied.revision) {
            tracing::warn!(
                error = %e,
                "the backup is complete, but the store could not record it; log retention may \
                 keep more than needed until the next backup"
            );
        }
        Ok(BackupReport {
            destination: dest.to_owned(),
            store_id: store_hex,
            full: base_written.is_some() || existing.is_none(),
            base_revision: manifest.base_revision(),
            revision: applied.revision,
            time: applied.time,
            base_records: base_written.map_or(0, |w| w.records),
            base_bytes: base_written.map_or(0, |w| w.bytes),
            segments_copied,
            bytes_copied: copied + base_written.map_or(0, |w| w.bytes),
            log_bytes_copied: copied,
            backup_bytes: manifest.bytes(),
            duration: started.elapsed(),
        })
    }
}

/// Refuses a destination that is the store's directory, lies inside it, or
/// holds it: the backup would copy itself, wait for the store's own lock, or be
/// lost with the store's disk.
fn refuse_nested(fs: &dyn Fs, dest: &Path, store: &Path) -> Result<()> {
    let nesting = crate::fs::nesting(fs, dest, store)
        .map_err(|e| Error::io("resolve the backup destination", dest, e))?;
    let what = match nesting {
        None => return Ok(()),
        Some(Nesting::Same) => "is the store's own directory",
        Some(Nesting::Inside) => "is inside the store's directory",
        Some(Nesting::Holds) => "holds the store's directory",
    };
    Err(Error::InvalidOption {
        name: "backup destination",
        reason: format!(
            "{} {what} ({}); back up into a directory of its own outside the store, best on \
             another disk",
            dest.display(),
            store.display()
        ),
    })
}

/// Creates the destination (and makes its entry durable) if it is missing.
pub(crate) fn create_destination(fs: &dyn Fs, dest: &Path) -> Result<()> {
    if !fs
        .exists(dest)
        .map_err(|e| Error::io("look for", dest, e))?
    {
        fs.create_dir_all(dest)
            .map_err(|e| Error::io("create the backup directory", dest, e))?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(fs, parent)?;
        }
    }
    Ok(())
}

/// Checks the destination: reads its manifest if it is a backup (which must be
/// of this store); refuses any other content.
pub(crate) fn read_destination(
    fs: &dyn Fs,
    dest: &Path,
    store_hex: &str,
) -> Result<Option<Manifest>> {
    let names = fs
        .read_dir(dest)
        .map_err(|e| Error::io("list the backup directory", dest, e))?;
    if names.iter().any(|n| n == MANIFEST_FILE) {
        let manifest = Manifest::read_with(fs, dest)?;
        if manifest.store_id != store_hex {
            return Err(invalid(
                dest,
                format!(
                    "it is a backup of another store (id {}; this store is {store_hex}); back up \
                     into a new directory",
                    manifest.store_id
                ),
            ));
        }
        return Ok(Some(manifest));
    }
    // What an interrupted first run can leave: a base, copied segments, the
    // manifest's temporary file.
    let leftover = |n: &str| {
        n == BACKUP_LOG_DIR
            || n == LOCK_FILE
            || n.starts_with("MANIFEST.")
            || (n.starts_with("base-") && n.contains(segment::SEGMENT_SUFFIX))
    };
    if let Some(other) = names.iter().find(|n| !leftover(n)) {
        return Err(Error::TargetNotEmpty {
            path: dest.to_owned(),
            reason: format!(
                "it holds other files ({other:?} among them) and no backup {MANIFEST_FILE}; back \
                 up into an empty or new directory"
            ),
        });
    }
    Ok(None)
}

/// Removes what an interrupted first run left in `dest` (which holds nothing
/// else, and no manifest): its base, copied segments and temporary manifest,
/// which no manifest lists and the new run does not reuse.
pub(crate) fn remove_leftovers(fs: &dyn Fs, dest: &Path) -> Result<()> {
    let log = dest.join(BACKUP_LOG_DIR);
    let mut files: Vec<std::path::PathBuf> = fs
        .read_dir(dest)
        .map_err(|e| Error::io("list the backup directory", dest, e))?
        .into_iter()
        .filter(|n| {
            (n.starts_with("base-") && n.contains(segment::SEGMENT_SUFFIX))
                || n.starts_with("MANIFEST.")
        })
        .map(|n| dest.join(n))
        .collect();
    if fs
        .exists(&log)
        .map_err(|e| Error::io("look for", &log, e))?
    {
        files.extend(
            fs.read_dir(&log)
                .map_err(|e| Error::io("list", &log, e))?
                .into_iter()
                .filter(|n| segment::parse_file_name(n).is_some())
                .map(|n| log.join(n)),
        );
    }
    for file in files {
        archive::take_back(fs, &file, None)?;
    }
    Ok(())
}

/// The store's segments holding the revisions after the backup's last one, up
/// to the consistent point (`revision`, with the log ending at `end`).
fn needed_segments(
    dest: &Path,
    manifest: &Manifest,
    segments: &[SegmentInfo],
    revision: u64,
    end: crate::log::Position,
) -> Result<Vec<Needed>> {
    let last = manifest.last_revision;
    if last > revision {
        return Err(invalid(
            dest,
            format!(
                "the backup holds revisions up to {last}, but the store is at revision \
                 {revision}: the store's history diverged from the backup's (it lost commits); \
                 back up into a new directory"
            ),
        ));
    }
    if last == revision {
        return Ok(Vec::new());
    }
    let Some(first) = segments.iter().rposition(|s| s.first_revision <= last + 1) else {
        let start = segments.first().map_or(0, |s| s.first_revision);
        return Err(invalid(
            dest,
            format!(
                "the backup ends at revision {last}, but the store's log now starts at revision \
                 {start}: log retention removed revisions the backup lacks; back up into a new \
                 directory (a new base), and keep `keep_until_backed_up` on"
            ),
        ));
    };
    Ok(segments[first..]
        .iter()
        .map(|s| Needed {
            segment: s.clone(),
            to: if s.first_revision == end.segment {
                end.offset
            } else {
                s.len
            },
        })
        .collect())
}

/// Before appending to a copied segment: the store's segment must still begin
/// with exactly the bytes copied before, and the copy must still hold them.
fn check_prefix(fs: &dyn Fs, source: &Path, copy: &Path, entry: &SegmentEntry) -> Result<()> {
    let source_crc = archive::crc_prefix(fs, source, entry.bytes)?;
    if source_crc != entry.crc32 {
        return Err(invalid(
            copy,
            format!(
                "the store's segment {} no longer begins with the {} bytes this backup copied \
                 from it: the store's history diverged from the backup's; back up into a new \
                 directory",
                source.display(),
                entry.bytes
            ),
        ));
    }
    let copy_crc = archive::crc_prefix(fs, copy, entry.bytes).map_err(|e| {
        invalid(
            copy,
            format!("the backup's copy cannot be read back ({e}); run `statelog check --backup`"),
        )
    })?;
    if copy_crc != entry.crc32 {
        return Err(invalid(
            copy,
            "the backup's copy of this segment is damaged (its checksum does not match the \
             manifest); run `statelog check --backup`, and back up into a new directory",
        ));
    }
    Ok(())
}

pub(crate) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync the directory", dir, e))
}
