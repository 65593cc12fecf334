//! Segment files outside the running log: copying them into a backup, the
//! backup's base segment (writing and reading it), a segment's age, and moving
//! segments away (retention, repair).
//!
//! A base segment is an ordinary segment file (the 64-byte header, then frames)
//! holding exactly one commit: the `base` record of a snapshot, split into parts
//! of about 4 MiB (`more` on every part but the last). Its header names the
//! store and the snapshot's revision as the first revision, and 0 as the
//! previous segment. Because it is the log's own codec, restoring a backup is
//! plain replay.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frame;
use super::reader::{self, FrameStop};
use super::record::{self, LogOp, LogRecord, PutOp};
use super::segment::{LOG_FORMAT_VERSION, SEGMENT_HEADER_LEN, SegmentHeader, StoreId};
use crate::error::{Error, Result};
use crate::fs::{self, FileHandle, Fs, OpenMode};

/// Bytes moved per read and write when copying.
const COPY_CHUNK: usize = 1 << 20;
/// Parts of a base record are cut at about this many bytes.
const PART_TARGET: usize = 4 << 20;

/// CRC-32 of the first `len` bytes of `path`.
///
/// # Errors
/// `Corrupt` when the file is shorter than `len`; `Io`.
pub(crate) fn crc_prefix(fs: &dyn Fs, path: &Path, len: u64) -> Result<u32> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let at = read_chunks(file.as_ref(), path, 0, len, |_, chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    if at < len {
        return Err(Error::corrupt(
            path,
            at,
            format!("the file ends at byte {at}, before the {len} bytes expected"),
        ));
    }
    Ok(hasher.finalize())
}

/// Reads bytes `from..to` of `file` (at `path`) a chunk at a time, handing
/// each to `each` with its offset. Returns where it stopped: `to`, or sooner
/// where the file ends (after handing over the short last chunk).
pub(crate) fn read_chunks(
    file: &dyn FileHandle,
    path: &Path,
    from: u64,
    to: u64,
    mut each: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<u64> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut at = from;
    while at < to {
        let want = usize::try_from(to - at)
            .unwrap_or(COPY_CHUNK)
            .min(COPY_CHUNK);
        let n =
            fs::read_full_at(file, &mut buf[..want], at).map_err(|e| Error::io("read", path, e))?;
        if n > 0 {
            each(at, &buf[..n])?;
        }
        at += n as u64;
        if n < want {
            break;
        }
    }
    Ok(at)
}

/// The size of a file.
pub(crate) fn file_len(fs: &dyn Fs, path: &Path) -> Result<u64> {
    fs.open(path, OpenMode::Read)
        .and_then(|f| f.len())
        .map_err(|e| Error::io("read the size of", path, e))
}

/// Copies bytes `from..to` of `src` to the same offsets of `dst` and syncs
/// `dst`. With `from` 0 the destination is created (a leftover of an
/// interrupted copy is replaced); otherwise it must hold at least `from` bytes
/// whose CRC-32 is `crc_before`, and anything after them (again a leftover) is
/// cut first. Returns the CRC-32 of `dst`'s first `to` bytes, computed from
/// the bytes written.
pub(crate) fn copy_range(
    fs: &dyn Fs,
    src: &Path,
    dst: &Path,
    from: u64,
    to: u64,
    crc_before: u32,
) -> Result<u32> {
    let input = fs
        .open(src, OpenMode::Read)
        .map_err(|e| Error::io("open", src, e))?;
    let output = if from == 0 {
        if fs.exists(dst).map_err(|e| Error::io("look for", dst, e))? {
            fs.remove_file(dst)
                .map_err(|e| Error::io("remove the unfinished copy", dst, e))?;
        }
        fs.open(dst, OpenMode::CreateNew)
            .map_err(|e| Error::io("create", dst, e))?
    } else {
        let file = fs
            .open(dst, OpenMode::ReadWrite)
            .map_err(|e| Error::io("open", dst, e))?;
        file.set_len(from)
            .map_err(|e| Error::io("cut the unfinished copy", dst, e))?;
        file
    };
    let mut hasher = if from == 0 {
        crc32fast::Hasher::new()
    } else {
        crc32fast::Hasher::new_with_initial(crc_before)
    };
    let end = read_chunks(input.as_ref(), src, from, to, |at, chunk| {
        fs::write_all_at(output.as_ref(), chunk, at).map_err(|e| Error::io("write", dst, e))?;
        hasher.update(chunk);
        Ok(())
    })?;
    if end < to {
        return Err(Error::corrupt(
            src,
            end,
            format!("the segment ended at byte {end} while {to} bytes were being copied"),
        ));
    }
    output.sync_data().map_err(|e| Error::io("sync", dst, e))?;
    Ok(hasher.finalize())
}

/// Writes a base segment: the snapshot of a store at one revision as one
/// multi-part `base` commit.
#[derive(Debug)]
pub(crate) struct BaseWriter {
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    revision: u64,
    time: i64,
    at: u64,
    hasher: crc32fast::Hasher,
    pending: Vec<LogOp<'static>>,
    pending_size: usize,
    records: u64,
    buf: Vec<u8>,
}

/// What [`BaseWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BaseWritten {
    pub bytes: u64,
    pub crc32: u32,
    pub records: u64,
}

impl BaseWriter {
    /// Starts the base segment `path` (replacing a leftover) for the snapshot of
    /// store `store_id` at `revision`, committed at `time` (µs).
    pub(crate) fn create(
        fs: &dyn Fs,
        path: &Path,
        store_id: &StoreId,
        revision: u64,
        time: i64,
    ) -> Result<BaseWriter> {
        if fs
            .exists(path)
            .map_err(|e| Error::io("look for", path, e))?
        {
            fs.remove_file(path)
                .map_err(|e| Error::io("remove the unfinished base", path, e))?;
        }
        let file = fs
            .open(path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create the base segment", path, e))?;
        let header = SegmentHeader {
            format: LOG_FORMAT_VERSION,
            store_id: *store_id,
            first_revision: revision,
            previous: 0,
            step: 0,
        }
        .encode();
        fs::write_all_at(file.as_ref(), &header, 0)
            .map_err(|e| Error::io("write the base segment", path, e))?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header);
        Ok(BaseWriter {
            path: path.to_owned(),
            file,
            revision,
            time,
            at: SEGMENT_HEADER_LEN as u64,
            hasher,
            pending: Vec::new(),
            pending_size: 0,
            records: 0,
            buf: Vec::new(),
        })
    }

    /// Adds one record (in address order) with its metadata.
    pub(crate) fn put(&mut self, op: PutOp<'static>) -> Result<()> {
        let size = op.ns.len() + op.key.len() + op.value.len() + 64;
        if self.pending_size > 0 && self.pending_size + size > PART_TARGET {
            // Another record follows, so this part is not the last.
            self.write_part(true)?;
        }
        self.pending_size += size;
        self.records += 1;
        self.pending.push(LogOp::Put(op));
        Ok(())
    }

    fn write_part(&mut self, more: bool) -> Result<()> {
        let record = LogRecord {
            revision: self.revision,
            time: self.time,
            ops: std::mem::take(&mut self.pending),
            more,
            base: true,
            synced: None,
        };
        self.pending_size = 0;
        self.buf.clear();
        let start = frame::begin(&mut self.buf);
        record::encode_into(&record, &mut self.buf)
            .map_err(|why| Error::corrupt(&self.path, self.at, format!("cannot encode: {why}")))?;
        frame::finish(&mut self.buf, start).map_err(|len| Error::TooLarge {
            what: format!("a part of the base at revision {}", self.revision),
            size: len,
            limit: frame::MAX_FRAME_PAYLOAD,
        })?;
        fs::write_all_at(self.file.as_ref(), &self.buf, self.at)
            .map_err(|e| Error::io("write the base segment", &self.path, e))?;
        self.hasher.update(&self.buf);
        self.at += self.buf.len() as u64;
        Ok(())
    }

    /// Writes the last part and syncs the file.
    pub(crate) fn finish(mut self) -> Result<BaseWritten> {
        self.write_part(false)?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync the base segment", &self.path, e))?;
        Ok(BaseWritten {
            bytes: self.at,
            crc32: self.hasher.finalize(),
            records: self.records,
        })
    }
}

/// What [`read_base`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BaseRead {
    /// The commit time of the base.
    pub time: i64,
    /// Frames (parts) read.
    pub parts: u64,
    /// Records in all parts.
    pub records: u64,
}

/// Reads the base segment `path` (its first `len` bytes): checks the header
/// (store `store_id`, first revision `revision`, no previous segment) and that
/// the frames form exactly one complete base commit at `revision`, handing each
/// part to `visit` with the offset after it.
///
/// # Errors
/// `Corrupt` naming the file and offset of whatever is wrong; `Io`; what
/// `visit` returns.
pub(crate) fn read_base(
    fs: &dyn Fs,
    path: &Path,
    len: u64,
    store_id: &StoreId,
    revision: u64,
    mut visit: impl FnMut(&LogRecord<'_>, u64) -> Result<()>,
) -> Result<BaseRead> {
    let header = super::catalog::read_header(fs, path)?;
    if header.store_id != *store_id {
        return Err(Error::corrupt(
            path,
            12,
            format!(
                "the base belongs to another store (id {}, the backup is of {})",
                super::catalog::hex(&header.store_id),
                super::catalog::hex(store_id)
            ),
        ));
    }
    if header.first_revision != revision || header.previous != 0 {
        return Err(Error::corrupt(
            path,
            28,
            format!(
                "the header says the base is at revision {} (previous {}), where revision \
                 {revision} was expected",
                header.first_revision, header.previous
            ),
        ));
    }
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let mut read = BaseRead {
        time: 0,
        parts: 0,
        records: 0,
    };
    let mut complete = false;
    let (stop, at) = reader::scan_frames(
        file.as_ref(),
        path,
        len,
        SEGMENT_HEADER_LEN as u64,
        |at, next, payload| {
            let part = record::decode(payload).map_err(|e| {
                Error::corrupt(path, at, format!("the record does not decode: {e}"))
            })?;
            part.check()
                .map_err(|e| Error::corrupt(path, at, format!("the record is invalid: {e}")))?;
            if complete {
                return Err(Error::corrupt(
                    path,
                    at,
                    "a record follows the last part of the base",
                ));
            }
            if part.revision != revision || !part.base {
                return Err(Error::corrupt(
                    path,
                    at,
                    format!(
                        "a record of revision {} (base: {}) where a part of the base at revision \
                         {revision} was expected",
                        part.revision, part.base
                    ),
                ));
            }
            if read.parts > 0 && part.time != read.time {
                return Err(Error::corrupt(
                    path,
                    at,
                    "the parts of the base disagree on its time",
                ));
            }
            read.time = part.time;
            read.parts += 1;
            read.records += part.ops.len() as u64;
            complete = !part.more;
            visit(&part, next)?;
            Ok(true)
        },
    )?;
    match stop {
        FrameStop::End if complete => Ok(read),
        FrameStop::End | FrameStop::Zero => Err(Error::corrupt(
            path,
            at,
            if read.parts == 0 {
                "the base holds no record".to_owned()
            } else {
                format!(
                    "the base ends after {} parts without its last part: the file is truncated",
                    read.parts
                )
            },
        )),
        FrameStop::Damaged(problem) => Err(Error::corrupt(path, at, problem)),
    }
}

/// The commit time (µs) of the first record of the segment `path`, if it has
/// a readable one.
pub(crate) fn first_commit_time(fs: &dyn Fs, path: &Path, len: u64) -> Result<Option<i64>> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let mut time = None;
    reader::scan_frames(
        file.as_ref(),
        path,
        len,
        SEGMENT_HEADER_LEN as u64,
        |_, _, payload| {
            time = record::decode(payload).ok().map(|r| r.time);
            Ok(false)
        },
    )?;
    Ok(time)
}

/// A put of a record with all its metadata, as a base carries it.
pub(crate) fn base_put(
    namespace: &str,
    key: &str,
    version: u64,
    created: u64,
    modified: u64,
    updated: i64,
    value: &[u8],
) -> PutOp<'static> {
    PutOp {
        ns: Cow::Owned(namespace.to_owned()),
        key: Cow::Owned(key.to_owned()),
        version,
        created,
        value: Cow::Owned(value.to_vec()),
        modified: Some(modified),
        updated: Some(updated),
    }
}

/// Takes back what an unfinished copy wrote: cuts `path` back to `keep` bytes
/// (what a manifest lists of it), or removes it when it lists none, and syncs.
/// A file that is not there is fine.
pub(crate) fn take_back(fs: &dyn Fs, path: &Path, keep: Option<u64>) -> Result<()> {
    if !fs
        .exists(path)
        .map_err(|e| Error::io("look for", path, e))?
    {
        return Ok(());
    }
    match keep {
        None => fs
            .remove_file(path)
            .map_err(|e| Error::io("remove the unfinished copy", path, e)),
        Some(len) => fs
            .open(path, OpenMode::ReadWrite)
            .and_then(|file| {
                if file.len()? > len {
                    file.set_len(len)?;
                    file.sync_data()?;
                }
                Ok(())
            })
            .map_err(|e| Error::io("cut the unfinished copy", path, e)),
    }
}

/// Moves `path` into the directory `aside` (created if missing), under its own
/// name, and syncs both directories. Nothing is ever deleted.
pub(crate) fn move_into(fs: &dyn Fs, path: &Path, aside: &Path) -> Result<PathBuf> {
    fs.create_dir_all(aside)
        .map_err(|e| Error::io("create", aside, e))?;
    let name = path.file_name().unwrap_or_default();
    let to = aside.join(name);
    fs.rename(path, &to)
        .map_err(|e| Error::io("move aside", path, e))?;
    fs.sync_dir(aside)
        .map_err(|e| Error::io("sync the directory", aside, e))?;
    if let Some(parent) = path.parent() {
        fs.sync_dir(parent)
            .map_err(|e| Error::io("sync the directory", parent, e))?;
    }
    Ok(to)
}

/// Cuts the segment `path` at `offset`: the bytes from there on are first
/// copied to `aside/<name>.from-<offset>` (synced), then the segment is
/// truncated and synced. Returns where the bytes went.
pub(crate) fn cut_into(fs: &dyn Fs, path: &Path, offset: u64, aside: &Path) -> Result<PathBuf> {
    fs.create_dir_all(aside)
        .map_err(|e| Error::io("create", aside, e))?;
    let len = file_len(fs, path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let to = aside.join(format!("{name}.from-{offset}"));
    let src = fs
        .open(path, OpenMode::ReadWrite)
        .map_err(|e| Error::io("open", path, e))?;
    if fs.exists(&to).map_err(|e| Error::io("look for", &to, e))? {
        fs.remove_file(&to)
            .map_err(|e| Error::io("replace the unfinished copy", &to, e))?;
    }
    let dst = fs
        .open(&to, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &to, e))?;
    read_chunks(src.as_ref(), path, offset, len, |at, chunk| {
        fs::write_all_at(dst.as_ref(), chunk, at - offset).map_err(|e| Error::io("write", &to, e))
    })?;
    // IMPORTANT: the copy is durable before the segment loses the bytes.
    dst.sync_data().map_err(|e| Error::io("sync", &to, e))?;
    fs.sync_dir(aside)
        .map_err(|e| Error::io("sync the directory", aside, e))?;
    src.set_len(offset)
        .and_then(|()| src.sync_data())
        .map_err(|e| Error::io("cut", path, e))?;
    Ok(to)
}
