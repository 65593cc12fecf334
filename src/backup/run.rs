//! A backup run (`Store::backup`): the base is one MVCC read of the state,
//! taken while holding the engine only for one log sync; the log after the
//! last run is copied from the segment files while writers go on.
//!
//! A run ([`run`]):
//! 1. checks the destination: a new or empty directory, or a backup of this
//!    store (its `MANIFEST` names this store's id);
//! 2. under the engine ([`Source::consistent_point`]): syncs the log (in
//!    `Relaxed` mode, commits may be visible before they are durable; a backup
//!    claims only durable ones), takes a snapshot of the state (the first run
//!    only), notes the revision and where the log ends, lists the segments,
//!    and pins the first one it needs so retention cannot remove it meanwhile;
//! 3. without the engine: writes the base (first run), copies the segments
//!    holding revisions after the last run (new ones whole, the grown one's
//!    new bytes after checking the bytes copied before are still the same),
//!    reads every copied file back, and reads the copied log through the
//!    commit reader;
//! 4. writes the manifest (atomically), records the backed-up revision for
//!    retention and unpins.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::manifest::{
    self, BACKUP_LOG_DIR, BaseEntry, LOCK_FILE, MANIFEST_FILE, Manifest, SegmentEntry, invalid,
};
use super::verify;
use crate::access::{BackupOptions, BackupProgress, BackupReport};
use crate::db::rebuild;
use crate::engine::BackupPoint;
use crate::error::{Error, Result};
use crate::fs::{Fs, Nesting};
use crate::layout::{self, LOG_DIR};
use crate::log::archive::{self, BaseWritten};
use crate::log::catalog::{self, SegmentInfo};
use crate::log::segment::{self, StoreId};
use crate::time::Timestamp;

/// What a backup run needs of the store it copies: the process holding the
/// store implements it (`store/local.rs`).
pub(crate) trait Source {
    /// The store's directory.
    fn dir(&self) -> &Path;
    /// The store's id.
    fn store_id(&self) -> &StoreId;
    /// The file system the store is on.
    fn fs(&self) -> &dyn Fs;
    /// How long to wait for the destination's lock.
    fn lock_timeout(&self) -> Duration;
    /// Under the store's single writer: the consistent point (with a snapshot
    /// of the state when `snapshot`), then, with the writer still held, the
    /// log pinned from the segment `pin` picks on (retention keeps it until
    /// [`unpin`](Self::unpin)).
    fn consistent_point(
        &self,
        snapshot: bool,
        pin: &mut dyn FnMut(&BackupPoint) -> Result<Option<u64>>,
    ) -> Result<BackupPoint>;
    /// The run ended: retention may remove what it pinned.
    fn unpin(&self);
    /// The backup now holds the log up to `revision`.
    fn backed_up(&self, revision: u64) -> Result<()>;
}

/// Clears the retention pin when the run ends, however it ends.
struct Unpin<'a>(&'a dyn Source);

impl Drop for Unpin<'_> {
    fn drop(&mut self) {
        self.0.unpin();
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
    files: Vec<(PathBuf, Option<u64>)>,
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

/// A run in progress: the manifest it builds, the files it wrote, and its
/// progress callback.
struct Run<'a> {
    fs: &'a dyn Fs,
    dest: &'a Path,
    manifest: Manifest,
    unfinished: Unfinished<'a>,
    options: &'a BackupOptions,
    /// Log bytes this run copies in all.
    to_copy: u64,
}

/// What a run copied of the log.
#[derive(Default)]
struct Copied {
    bytes: u64,
    segments: usize,
}

/// Runs a backup of `source` into `dest` (see `Store::backup`).
pub(crate) fn run(
    source: &dyn Source,
    dest: &Path,
    options: &BackupOptions,
) -> Result<BackupReport> {
    let started = Instant::now();
    let fs = source.fs();
    let store_hex = catalog::hex(source.store_id());
    refuse_nested(fs, dest, source.dir())?;
    create_destination(fs, dest)?;
    // Backups of other stores or from other processes take turns too; what
    // the directory holds is read under its lock.
    let _dest_lock = layout::lock_dir(fs, dest, LOCK_FILE, source.lock_timeout())?;
    let existing = read_destination(fs, dest, &store_hex)?;
    if existing.is_none() {
        remove_leftovers(fs, dest)?;
    }
    let (point, needed) = consistent_point(source, dest, existing.as_ref())?;
    let _unpin = Unpin(source);
    let applied = point.applied;
    let manifest = existing
        .clone()
        .unwrap_or_else(|| Manifest::new(store_hex.clone(), Timestamp::now()));
    let mut run = Run::new(fs, dest, manifest, &needed, options);
    let base = match point.snapshot {
        Some(snapshot) => Some(run.write_base(snapshot, applied, source.store_id())?),
        None => None,
    };
    let copied = run.copy_log(&needed)?;
    // What was copied must read as one unbroken log up to `revision`.
    if let Some(m) = &existing
        && copied.segments > 0
    {
        let from = needed
            .first()
            .map(|n| n.segment.first_revision)
            .unwrap_or(m.last_revision);
        verify::check_copied_log(fs, dest, &run.manifest, from, applied.revision)?;
    }
    let manifest = run.finish(applied)?;
    if let Err(e) = source.backed_up(applied.revision) {
        tracing::warn!(
            error = %e,
            "the backup is complete, but the store could not record it; log retention may \
             keep more than needed until the next backup"
        );
    }
    Ok(BackupReport {
        destination: dest.to_owned(),
        store_id: store_hex,
        full: base.is_some() || existing.is_none(),
        base_revision: manifest.base_revision(),
        revision: applied.revision,
        time: applied.time,
        base_records: base.map_or(0, |w| w.records),
        base_bytes: base.map_or(0, |w| w.bytes),
        segments_copied: copied.segments,
        bytes_copied: copied.bytes + base.map_or(0, |w| w.bytes),
        log_bytes_copied: copied.bytes,
        backup_bytes: manifest.bytes(),
        duration: started.elapsed(),
    })
}

/// Step 2: the consistent point (everything up to its revision is durable
/// in the log), and the store's segments this run copies, pinned.
fn consistent_point(
    source: &dyn Source,
    dest: &Path,
    existing: Option<&Manifest>,
) -> Result<(BackupPoint, Vec<Needed>)> {
    let fs = source.fs();
    let log_dir = source.dir().join(LOG_DIR);
    let mut needed = Vec::new();
    let point = source.consistent_point(existing.is_none(), &mut |point| {
        if let Some(m) = existing {
            let segments = catalog::list(fs, &log_dir, source.store_id())?;
            needed = needed_segments(dest, m, &segments, point.applied.revision, point.end)?;
        }
        Ok(needed.first().map(|n| n.segment.first_revision))
    })?;
    Ok((point, needed))
}

impl<'a> Run<'a> {
    fn new(
        fs: &'a dyn Fs,
        dest: &'a Path,
        manifest: Manifest,
        needed: &[Needed],
        options: &'a BackupOptions,
    ) -> Run<'a> {
        let to_copy = needed
            .iter()
            .map(|n| {
                n.to - manifest
                    .entry(n.segment.first_revision)
                    .map_or(0, |e| e.bytes)
            })
            .sum();
        Run {
            fs,
            dest,
            manifest,
            unfinished: Unfinished {
                fs,
                files: vec![(dest.join(format!("{MANIFEST_FILE}.tmp")), None)],
            },
            options,
            to_copy,
        }
    }

    fn progress(&self, records: u64, copied: u64) {
        if let Some(callback) = &self.options.progress {
            callback(&BackupProgress {
                records,
                bytes_copied: copied,
                bytes_to_copy: self.to_copy,
            });
        }
    }

    /// Step 3, first run: the base, written from the snapshot (dropped as
    /// soon as it is written), read back, and entered in the manifest.
    fn write_base(
        &mut self,
        snapshot: crate::db::Snapshot,
        applied: crate::db::schema::Applied,
        store_id: &StoreId,
    ) -> Result<BaseWritten> {
        let (fs, dest) = (self.fs, self.dest);
        let name = manifest::base_file_name(applied.revision);
        let path = dest.join(&name);
        self.unfinished.files.push((path.clone(), None));
        let written =
            rebuild::write_base(fs, &snapshot, &path, store_id, applied, &mut |records| {
                self.progress(records, 0)
            })?;
        drop(snapshot);
        let read_back = archive::crc_prefix(fs, &path, written.bytes)?;
        if read_back != written.crc32 {
            return Err(invalid(
                &path,
                "the base reads back differently from what was written: check the backup disk",
            ));
        }
        sync_dir(fs, dest)?;
        self.manifest.base = Some(BaseEntry {
            file: name,
            revision: applied.revision,
            time: applied.time.to_string(),
            records: written.records,
            bytes: written.bytes,
            crc32: written.crc32,
        });
        Ok(written)
    }

    /// Step 3: the log since the last run, each segment copied (or
    /// extended), read back and entered in the manifest.
    fn copy_log(&mut self, needed: &[Needed]) -> Result<Copied> {
        let mut copied = Copied::default();
        let backup_log = self.dest.join(BACKUP_LOG_DIR);
        if !needed.is_empty() {
            self.fs
                .create_dir_all(&backup_log)
                .map_err(|e| Error::io("create", &backup_log, e))?;
        }
        for n in needed {
            if let Some(bytes) = self.copy_segment(n)? {
                copied.bytes += bytes;
                copied.segments += 1;
                self.progress(0, copied.bytes);
            }
        }
        if copied.segments > 0 {
            sync_dir(self.fs, &backup_log)?;
        }
        self.manifest.segments.sort_by_key(|e| e.first_revision);
        Ok(copied)
    }

    /// Brings one segment into the backup; returns the bytes copied, `None`
    /// when the backup holds it all already.
    fn copy_segment(&mut self, n: &Needed) -> Result<Option<u64>> {
        let fs = self.fs;
        let rel = manifest::segment_file(n.segment.first_revision);
        let dst = self.dest.join(&rel);
        let before = self.manifest.entry(n.segment.first_revision).cloned();
        let (from, crc_before) = match &before {
            Some(entry) if entry.bytes == n.to => return Ok(None),
            Some(entry) if entry.bytes > n.to => {
                return Err(invalid(
                    &dst,
                    format!(
                        "the backup holds {} bytes of this segment, but the store's copy of \
                         it ends at {}: the store's history diverged from the backup's; back \
                         up into a new directory",
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
        self.unfinished
            .files
            .push((dst.clone(), before.as_ref().map(|e| e.bytes)));
        let crc = archive::copy_range(fs, &n.segment.path, &dst, from, n.to, crc_before)?;
        if archive::crc_prefix(fs, &dst, n.to)? != crc {
            return Err(invalid(
                &dst,
                "the copy reads back differently from what was written: check the backup disk",
            ));
        }
        let entry = SegmentEntry {
            file: rel,
            first_revision: n.segment.first_revision,
            bytes: n.to,
            crc32: crc,
        };
        match self
            .manifest
            .segments
            .iter_mut()
            .find(|e| e.first_revision == entry.first_revision)
        {
            Some(e) => *e = entry,
            None => self.manifest.segments.push(entry),
        }
        Ok(Some(n.to - from))
    }

    /// Step 4: the manifest, written atomically; from then on the backup
    /// holds what the run copied.
    fn finish(mut self, applied: crate::db::schema::Applied) -> Result<Manifest> {
        let (fs, dest) = (self.fs, self.dest);
        let manifest = &mut self.manifest;
        manifest.last_revision = applied.revision;
        manifest.last_time = applied.time.to_string();
        manifest.updated_at = Timestamp::now().to_string();
        manifest.runs += 1;
        if let Err(e) = manifest.write(fs, dest) {
            // Renamed into place before a later step failed: it lists the
            // files, which stay.
            if Manifest::read_with(fs, dest).is_ok_and(|on_disk| on_disk == *manifest) {
                self.unfinished.keep();
            }
            return Err(e);
        }
        self.unfinished.keep();
        Ok(self.manifest)
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
