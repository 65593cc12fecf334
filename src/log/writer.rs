//! Appending to the log: the active segment, its preallocation, syncing, and
//! rotation to a new segment.
//!
//! IMPORTANT: the order of syncs here is what recovery relies on.
//! - A new segment is written under a `.tmp` name with its header, synced, renamed
//!   to its final name, and the directory synced, before any commit goes into it.
//! - On rotation the old segment is synced, then the new one created, then the
//!   old one sealed (a seal frame naming the new one, cut right after it,
//!   synced), all before any commit goes into the new one: only the last
//!   segment can have a torn tail, and a seal proves its successor existed.
//! - Preallocated space is zero-filled and synced before commits are written into
//!   it, so a commit's sync never changes the file's size; a write of 64 KiB or
//!   more (or a whole step) extends the file by whole steps (synced) before it
//!   is written, without zeros under it. The
//!   active segment's size is thus always a whole number of steps (`seal`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::catalog;
use super::reader::Position;
use super::seal;
use super::segment::{self, LOG_FORMAT_VERSION, SEGMENT_HEADER_LEN, SegmentHeader, StoreId};
use super::sync::SyncGate;
use crate::error::{Error, Result};
use crate::fs::{self, FileHandle, Fs, OpenMode};

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// A commit of at least this many bytes is written into space that was not
/// zero-filled first; smaller ones land in zeros.
const WRITE_THROUGH: u64 = 64 << 10;

/// The writing end of the log.
#[derive(Debug)]
pub(crate) struct LogWriter {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    store_id: StoreId,
    segment_size: u64,
    preallocate: u64,
    active: Active,
    /// Revision of the last complete commit written (0 before any).
    last_revision: u64,
    /// Every sync of the log goes through it; it holds the revision the log
    /// is durable up to: the watermark written into each record (see
    /// `LogRecord::synced`).
    gate: Arc<SyncGate>,
}

#[derive(Debug)]
struct Active {
    first_revision: u64,
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    /// Where the next frame goes.
    end: u64,
    /// Bytes of the file, preallocated zeros included.
    allocated: u64,
    /// Whether any commit has been written into this segment.
    has_commits: bool,
    /// The preallocation step it grows by (0: none).
    grow_by: u64,
    /// Log format 2: its size stays whole steps of `grow_by`, and it is sealed
    /// with a seal frame. A format 1 segment (written before) is neither.
    format_2: bool,
    /// Where the bytes written since the last sync begin, if any were.
    unsynced_from: Option<u64>,
}

/// What the writer needs to know to continue an existing log.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    /// The active (last) segment.
    pub path: PathBuf,
    /// Its first revision.
    pub first_revision: u64,
    /// Where the data ends.
    pub end: u64,
    /// Revision of the last complete commit in the log.
    pub last_revision: u64,
}

impl LogWriter {
    /// Starts the log of a new store with an empty first segment for `first_revision`.
    pub(crate) fn create(
        fs: Arc<dyn Fs>,
        dir: &Path,
        store_id: StoreId,
        segment_size: u64,
        preallocate: u64,
        first_revision: u64,
    ) -> Result<LogWriter> {
        let active = create_segment(fs.as_ref(), dir, &store_id, first_revision, 0, preallocate)?;
        Ok(LogWriter {
            fs,
            dir: dir.to_owned(),
            store_id,
            segment_size,
            preallocate,
            active,
            last_revision: first_revision.saturating_sub(1),
            gate: Arc::new(SyncGate::new(first_revision.saturating_sub(1))),
        })
    }

    /// Continues an existing log after recovery has found its end. Everything in
    /// it is taken to be durable: opening a store checkpoints (syncing the log)
    /// whenever recovery found commits past the last checkpoint.
    pub(crate) fn resume(
        fs: Arc<dyn Fs>,
        dir: &Path,
        store_id: StoreId,
        segment_size: u64,
        preallocate: u64,
        resume: Resume,
    ) -> Result<LogWriter> {
        Self::resume_with(
            fs,
            dir,
            store_id,
            segment_size,
            preallocate,
            resume,
            OpenMode::ReadWrite,
        )
    }

    /// The end of an existing log for a store opened read-only: it knows where
    /// the log ends, holds the active segment open only for reading, and is
    /// never written (the engine refuses every commit first).
    pub(crate) fn resume_read_only(
        fs: Arc<dyn Fs>,
        dir: &Path,
        store_id: StoreId,
        resume: Resume,
    ) -> Result<LogWriter> {
        Self::resume_with(fs, dir, store_id, u64::MAX, 0, resume, OpenMode::Read)
    }

    /// A store opened read-only whose log has no segment yet (it never
    /// committed): an end with no file behind it.
    pub(crate) fn detached(fs: Arc<dyn Fs>, dir: &Path, store_id: StoreId) -> LogWriter {
        let path = dir.join(segment::file_name(1));
        LogWriter {
            fs,
            dir: dir.to_owned(),
            store_id,
            segment_size: u64::MAX,
            preallocate: 0,
            active: Active {
                first_revision: 1,
                file: Arc::new(NoFile(path.clone())),
                path,
                end: SEGMENT_HEADER_LEN as u64,
                allocated: SEGMENT_HEADER_LEN as u64,
                has_commits: false,
                grow_by: 0,
                format_2: true,
                unsynced_from: None,
            },
            last_revision: 0,
            gate: Arc::new(SyncGate::new(0)),
        }
    }

    fn resume_with(
        fs: Arc<dyn Fs>,
        dir: &Path,
        store_id: StoreId,
        segment_size: u64,
        preallocate: u64,
        resume: Resume,
        mode: OpenMode,
    ) -> Result<LogWriter> {
        let file = fs
            .open(&resume.path, mode)
            .map_err(|e| Error::io("open the active log segment", &resume.path, e))?;
        let allocated = file
            .len()
            .map_err(|e| Error::io("read the size of", &resume.path, e))?;
        let header = catalog::read_header(fs.as_ref(), &resume.path)?;
        // A format 1 segment grows by the configured step; a format 2 one by the
        // step its header names, whatever the configuration says now.
        let format_2 = header.format >= 2;
        let grow_by = if format_2 { header.step } else { preallocate };
        Ok(LogWriter {
            fs,
            dir: dir.to_owned(),
            store_id,
            segment_size,
            preallocate,
            active: Active {
                first_revision: resume.first_revision,
                path: resume.path,
                file,
                end: resume.end,
                allocated,
                has_commits: resume.end > SEGMENT_HEADER_LEN as u64,
                grow_by,
                format_2,
                unsynced_from: None,
            },
            last_revision: resume.last_revision,
            gate: Arc::new(SyncGate::new(resume.last_revision)),
        })
    }

    /// Where the next frame will be written (before any rotation).
    pub(crate) fn position(&self) -> Position {
        Position {
            segment: self.active.first_revision,
            offset: self.active.end,
        }
    }

    /// Revision of the last complete commit written.
    pub(crate) fn last_revision(&self) -> u64 {
        self.last_revision
    }

    /// The active segment's file, for syncing without holding the writer.
    pub(crate) fn active_file(&self) -> Arc<dyn FileHandle> {
        Arc::clone(&self.active.file)
    }

    /// The revision up to which the log is known to be durable.
    pub(crate) fn synced_revision(&self) -> u64 {
        self.gate.synced()
    }

    /// The gate every sync of the log goes through, for syncing the active
    /// file (see [`active_file`](Self::active_file)) without holding the
    /// writer.
    pub(crate) fn gate(&self) -> &Arc<SyncGate> {
        &self.gate
    }

    /// Makes room for `len` bytes of commits starting at revision `next_revision`:
    /// seals the segment and starts a new one when the active one is full, and
    /// extends the preallocated space. Returns where the bytes will go.
    pub(crate) fn reserve(&mut self, len: usize, next_revision: u64) -> Result<Position> {
        if self.active.has_commits && self.active.end + len as u64 > self.segment_size {
            self.rotate(next_revision)?;
        }
        self.make_room(len as u64)?;
        Ok(self.position())
    }

    /// Grows the active segment so that `len` more bytes fit.
    fn make_room(&mut self, len: u64) -> Result<()> {
        let needed = self.active.end + len;
        let step = self.active.grow_by;
        if step == 0 || needed <= self.active.allocated {
            return Ok(());
        }
        // Small commits, whose syncs must not touch metadata, land in
        // preallocated, zero-filled space. A large write gains nothing from
        // zeros written ahead of it (its sync updates the size and allocates
        // its blocks once, amortised over the write) and would write every
        // byte twice (a bulk load's commits of a few MiB did): the file is only
        // extended, by whole steps (format 2 keeps its size so), or (format 1)
        // left to the write.
        if len < WRITE_THROUGH.min(step) {
            self.extend_to(needed)
        } else if self.active.format_2 {
            let target = needed.div_ceil(step) * step;
            let file = &self.active.file;
            self.gate
                .sync_with(
                    || file.set_len(target).and_then(|()| file.sync_data()),
                    self.last_revision,
                )
                .map_err(|e| Error::io("preallocate the log segment", &self.active.path, e))?;
            self.active.allocated = target;
            Ok(())
        } else {
            Ok(())
        }
    }

    /// Makes room for `len` more bytes of the commit whose first part was just
    /// written: never rotates, because all parts of a commit must be in one
    /// segment (a large commit may make a segment exceed `segment_size`).
    pub(crate) fn reserve_more(&mut self, len: usize) -> Result<Position> {
        self.make_room(len as u64)?;
        Ok(self.position())
    }

    /// The log directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system the log is on.
    pub(crate) fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// The store the log belongs to.
    pub(crate) fn store_id(&self) -> &StoreId {
        &self.store_id
    }

    /// Writes `bytes` (whole frames of complete commits, the last of which has
    /// `last_revision`) at the position returned by [`reserve`](Self::reserve).
    /// Returns the position after them. Not synced.
    pub(crate) fn write(&mut self, bytes: &[u8], last_revision: u64) -> Result<Position> {
        let at = self.active.end;
        fs::write_all_at(self.active.file.as_ref(), bytes, at)
            .map_err(|e| Error::io("append to the log segment", &self.active.path, e))?;
        if self.active.unsynced_from.is_none() {
            self.active.unsynced_from = Some(at);
        }
        self.active.end += bytes.len() as u64;
        self.active.allocated = self.active.allocated.max(self.active.end);
        self.active.has_commits = true;
        self.last_revision = last_revision;
        self.gate.wrote(last_revision);
        Ok(self.position())
    }

    /// Starts writing what was written since the last sync (or the last
    /// call) to the disk, so that work done before [`sync`](Self::sync)
    /// overlaps the disk's write. A hint only; `sync` still decides
    /// durability.
    pub(crate) fn start_sync(&mut self) {
        if let Some(from) = self.active.unsynced_from.take() {
            self.active
                .file
                .start_writeback(from, self.active.end.saturating_sub(from));
        }
    }

    /// Makes everything written so far durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.gate
            .sync(self.active.file.as_ref(), self.last_revision)
            .map_err(|e| Error::io("sync the log segment", &self.active.path, e))?;
        self.active.unsynced_from = None;
        Ok(())
    }

    /// The active segment's path, for messages.
    pub(crate) fn active_path(&self) -> &Path {
        &self.active.path
    }

    /// Writes the first commit of a restored store, whose revision the snapshot
    /// chooses: `frames` (the whole base commit at `revision`) become the log's
    /// first segment, named for `revision`, in place of the empty one. Durable
    /// when it returns; returns the position after the frames.
    ///
    /// IMPORTANT: atomic across a crash at any point. The new segment is
    /// written and synced under its temporary name with the frames already in
    /// it; the empty segment is removed (directory synced); then the new one is
    /// renamed into place (directory synced). A crash before the rename leaves
    /// an empty log (recovery removes the temporary file and starts the log
    /// again at revision 1): the empty store. After it, the log holds the whole
    /// base, and recovery replays it onto the empty state (a state at revision
    /// 0 takes the log from its first segment, whatever it is named).
    pub(crate) fn restart_with(&mut self, revision: u64, frames: &[u8]) -> Result<Position> {
        if self.active.has_commits || self.last_revision != 0 {
            return Err(Error::NotEmpty {
                revision: self.last_revision,
            });
        }
        if self.active.first_revision == revision {
            self.reserve(frames.len(), revision)?;
            let end = self.write(frames, revision)?;
            self.sync()?;
            return Ok(end);
        }
        let fs = Arc::clone(&self.fs);
        let staged = write_segment(
            fs.as_ref(),
            &self.dir,
            &self.store_id,
            revision,
            0,
            self.preallocate,
            frames,
        )?;
        let old = self.active.path.clone();
        fs.remove_file(&old)
            .map_err(|e| Error::io("remove the empty log segment", &old, e))?;
        fs.sync_dir(&self.dir)
            .map_err(|e| Error::io("sync the log directory", &self.dir, e))?;
        self.gate.new_segment();
        self.active = install_segment(fs.as_ref(), &self.dir, staged)?;
        self.last_revision = revision;
        self.gate.wrote(revision);
        self.gate.note(revision);
        Ok(self.position())
    }

    fn rotate(&mut self, next_revision: u64) -> Result<()> {
        let old = &self.active;
        let path = &old.path;
        self.gate
            .sync(old.file.as_ref(), self.last_revision)
            .map_err(|e| Error::io("seal the log segment", path, e))?;
        let next = create_segment(
            self.fs.as_ref(),
            &self.dir,
            &self.store_id,
            next_revision,
            old.first_revision,
            self.preallocate,
        )?;
        // IMPORTANT: seal only once the next segment exists durably (a seal
        // proves its successor existed), and before any commit goes into it
        // (only the last segment can have a torn tail). A crash in between
        // leaves this one unsealed and the next one empty: opening finishes.
        let sealed = if old.format_2 {
            seal::seal(old.file.as_ref(), old.end, next_revision)
        } else {
            old.file
                .set_len(old.end)
                .and_then(|()| old.file.sync_data())
        };
        sealed.map_err(|e| Error::io("seal the log segment", path, e))?;
        tracing::debug!(segment = %next.path.display(), "log segment started");
        self.gate.new_segment();
        self.active = next;
        Ok(())
    }

    fn extend_to(&mut self, needed: u64) -> Result<()> {
        let step = self.active.grow_by;
        let target = needed.div_ceil(step) * step;
        let file = self.active.file.as_ref();
        let from = self.active.allocated;
        self.gate
            .sync_with(
                || zero_fill(file, from, target).and_then(|()| file.sync_data()),
                self.last_revision,
            )
            .map_err(|e| Error::io("preallocate the log segment", &self.active.path, e))?;
        self.active.allocated = target;
        Ok(())
    }
}

/// The file behind a [`LogWriter::detached`]: there is none.
#[derive(Debug)]
struct NoFile(PathBuf);

impl NoFile {
    fn refuse(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::ReadOnlyFilesystem,
            format!(
                "{} was never created: the store is open read-only",
                self.0.display()
            ),
        )
    }
}

impl FileHandle for NoFile {
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> std::io::Result<usize> {
        Ok(0)
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> std::io::Result<usize> {
        Err(self.refuse())
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&self, _len: u64) -> std::io::Result<()> {
        Err(self.refuse())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }
}

fn zero_fill(file: &dyn FileHandle, from: u64, to: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(ZEROS.len());
        fs::write_all_at(file, &ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// A segment written and synced under its temporary name, not yet in place.
struct Staged {
    tmp: PathBuf,
    active: Active,
}

/// Creates a segment: header written and synced under a temporary name, renamed
/// into place, directory synced.
fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    store_id: &StoreId,
    first_revision: u64,
    previous: u64,
    preallocate: u64,
) -> Result<Active> {
    let staged = write_segment(
        fs,
        dir,
        store_id,
        first_revision,
        previous,
        preallocate,
        &[],
    )?;
    install_segment(fs, dir, staged)
}

/// Writes a segment under its temporary name: the header, then `frames` (whole
/// commits), then preallocated zeros; synced.
fn write_segment(
    fs: &dyn Fs,
    dir: &Path,
    store_id: &StoreId,
    first_revision: u64,
    previous: u64,
    preallocate: u64,
    frames: &[u8],
) -> Result<Staged> {
    let path = dir.join(segment::file_name(first_revision));
    let tmp = dir.join(format!("{}.tmp", segment::file_name(first_revision)));
    let header = SegmentHeader {
        format: LOG_FORMAT_VERSION,
        store_id: *store_id,
        first_revision,
        previous,
        step: preallocate,
    };
    if fs.exists(&tmp).unwrap_or(false) {
        fs.remove_file(&tmp)
            .map_err(|e| Error::io("remove the leftover", &tmp, e))?;
    }
    let file = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create the log segment", &tmp, e))?;
    let end = SEGMENT_HEADER_LEN as u64 + frames.len() as u64;
    let allocated = if preallocate > 0 {
        // Whole steps (format 2): a cut tail then shows in the size.
        end.div_ceil(preallocate) * preallocate
    } else {
        end
    };
    zero_fill(file.as_ref(), end, allocated)
        .and_then(|()| fs::write_all_at(file.as_ref(), frames, SEGMENT_HEADER_LEN as u64))
        .and_then(|()| fs::write_all_at(file.as_ref(), &header.encode(), 0))
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("write the log segment", &tmp, e))?;
    Ok(Staged {
        tmp,
        active: Active {
            first_revision,
            path,
            file,
            end,
            allocated,
            has_commits: !frames.is_empty(),
            grow_by: preallocate,
            format_2: true,
            unsynced_from: None,
        },
    })
}

/// Renames a staged segment into place and syncs the directory.
fn install_segment(fs: &dyn Fs, dir: &Path, staged: Staged) -> Result<Active> {
    let Staged { tmp, active } = staged;
    fs.rename(&tmp, &active.path)
        .map_err(|e| Error::io("rename the new log segment", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync the log directory", dir, e))?;
    Ok(active)
}
