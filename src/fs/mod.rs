//! The file-system boundary: every byte the store reads or writes, and every
//! directory change, goes through [`Fs`] and [`FileHandle`].
//!
//! Production uses [`RealFs`]. The test kit plugs in a simulated file system that
//! keeps written-but-unsynced bytes apart from synced ones (to simulate power
//! loss) and injects short writes, ENOSPC and EIO. Keeping the boundary this
//! narrow is what makes those tests possible.

mod real;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use real::RealFs;

/// One open file.
#[allow(clippy::len_without_is_empty)]
pub trait FileHandle: Send + Sync + Debug {
    /// Reads at `offset`; may return fewer bytes than asked, 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes at `offset`; may write fewer bytes than given.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes the file's data (and its size, if it changed) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Asks the operating system to start writing `len` bytes at `offset` to
    /// the disk, without waiting, ahead of a [`sync_data`](Self::sync_data)
    /// that will wait for them. A hint: it may do nothing, and promises nothing
    /// about durability.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
    /// Truncates or extends (with zeros) the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current size.
    fn len(&self) -> io::Result<u64>;
}

/// How [`Fs::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; the file must not exist yet.
    CreateNew,
}

/// Held while a process owns a store; dropping it releases the store.
pub trait LockGuard: Send + Sync + Debug {}

/// Why [`Fs::try_lock`] did not get the lock.
#[derive(Debug)]
pub enum LockError {
    /// Someone else holds it; the pid written by the holder, if readable.
    Held(Option<u32>),
    /// The lock file could not be used.
    Io(io::Error),
}

/// The operations the store performs on its directory.
pub trait Fs: Send + Sync + Debug + 'static {
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of the directory holding the lock file `path`
    /// without waiting, recording our pid in the file. The lock must not depend
    /// on the file alone: deleting it must not let a second user in.
    fn try_lock(&self, path: &Path) -> Result<Box<dyn LockGuard>, LockError>;
    /// A storage backend for the state database at `path`, created if missing.
    fn db_backend(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>>;
    /// A storage backend for the existing state database at `path` that is only
    /// read (the state database then keeps every change in memory); it may
    /// refuse writes. By default the same as [`db_backend`](Self::db_backend).
    fn db_backend_read(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        self.db_backend(path)
    }
    /// The absolute path that `path` names, with symbolic links resolved as
    /// far as the path exists (the rest need not exist yet), for telling
    /// whether two directories are one or nest. By default the path made
    /// absolute, lexically.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(lexical(&std::path::absolute(path)?))
    }
}

/// `path` with `.` and `..` taken out lexically.
pub(crate) fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// How two directories relate, when one holds the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nesting {
    /// They are the same directory.
    Same,
    /// The first is inside the second.
    Inside,
    /// The first holds the second.
    Holds,
}

/// Whether directories `a` and `b` (which need not exist) are one, or one is
/// inside the other.
pub(crate) fn nesting(fs: &dyn Fs, a: &Path, b: &Path) -> io::Result<Option<Nesting>> {
    let (a, b) = (fs.resolve(a)?, fs.resolve(b)?);
    Ok(if a == b {
        Some(Nesting::Same)
    } else if a.starts_with(&b) {
        Some(Nesting::Inside)
    } else if b.starts_with(&a) {
        Some(Nesting::Holds)
    } else {
        None
    })
}

/// Whether an error says the file system takes no writes at all: full, over
/// quota, or mounted read-only.
pub(crate) fn cannot_write(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Writes all of `buf` at `offset`, continuing after short writes.
pub(crate) fn write_all_at(
    file: &dyn FileHandle,
    mut buf: &[u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file system accepted no bytes",
                ));
            }
            Ok(n) => {
                buf = buf.get(n..).unwrap_or_default();
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from `offset`; returns how many bytes were read before the end of
/// the file (less than `buf.len()` only at the end).
pub(crate) fn read_full_at(
    file: &dyn FileHandle,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or_default();
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads a whole (small) file.
pub(crate) fn read_file(fs: &dyn Fs, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0; len];
    let n = read_full_at(file.as_ref(), &mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

/// Writes a small file so that it either has its old content or all of the new
/// one after a crash: write a temporary file, sync it, rename it over the target,
/// sync the directory.
pub(crate) fn write_file_atomic(fs: &dyn Fs, path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    if fs.exists(&tmp)? {
        fs.remove_file(&tmp)?;
    }
    let file = fs.open(&tmp, OpenMode::CreateNew)?;
    write_all_at(file.as_ref(), data, 0)?;
    file.sync_data()?;
    drop(file);
    fs.rename(&tmp, path)?;
    fs.sync_dir(dir)
}

/// Polls [`Fs::try_lock`] until it succeeds or `timeout` passes.
pub(crate) fn lock_with_timeout(
    fs: &dyn Fs,
    path: &Path,
    timeout: Duration,
) -> Result<Box<dyn LockGuard>, (LockError, Duration)> {
    let start = std::time::Instant::now();
    let mut warned = false;
    let mut pause = Duration::from_micros(200);
    loop {
        match fs.try_lock(path) {
            Ok(guard) => return Ok(guard),
            Err(LockError::Held(pid)) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err((LockError::Held(pid), waited));
                }
                if !warned && waited >= Duration::from_secs(1) {
                    tracing::warn!(
                        lock = %path.display(),
                        holder = ?pid,
                        "waiting for the store's lock"
                    );
                    warned = true;
                }
                // Random pauses keep many waiting processes from polling in step.
                let jitter = Duration::from_micros(fastrand::u64(0..=pause.as_micros() as u64));
                std::thread::sleep((pause / 2 + jitter).min(timeout.saturating_sub(waited)));
                pause = (pause * 2).min(Duration::from_millis(8));
            }
            Err(e) => return Err((e, start.elapsed())),
        }
    }
}
