//! The operating system's file system.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{FileHandle, Fs, LockError, LockGuard, OpenMode, cannot_write};

/// The real file system, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

impl FileHandle for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; the file
        // descriptor is open for as long as `self` lives. It starts writeback
        // of the range's dirty pages and returns; errors surface in the
        // fdatasync that follows, so its result is not needed.
        unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// A locked directory and its locked `LOCK` file (when the file could be
/// created). The kernel drops both locks when the files are closed, also when
/// the process dies, so no stale lock can stay behind.
///
/// The directory's own lock is the guard that matters: it cannot be deleted
/// while the directory is in use, whereas a `LOCK` file can (a new one would
/// then be created and locked by the next process, beside the holder's). The
/// file lock is kept for the holder's pid, which waiting processes name, and
/// for statelog versions that lock only the file.
#[derive(Debug)]
struct DirLock {
    // Dropped in this order: the file's lock goes first, so that whoever takes
    // the directory's lock next finds the file free (and does not back off).
    _file: Option<File>,
    _dir: File,
}

impl LockGuard for DirLock {}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

impl Fs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        Ok(Arc::new(RealFile(options.open(path)?)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> Result<Box<dyn LockGuard>, LockError> {
        use std::os::unix::fs::MetadataExt;
        let dir_path = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let dir = File::open(dir_path).map_err(LockError::Io)?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LockError::Held(read_pid(path))),
            Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        // The directory may have been renamed (a store moved aside by a
        // restore) between opening and locking it: then this lock guards
        // nothing at `dir_path`; try again.
        let locked = dir.metadata().map_err(LockError::Io)?;
        let now = std::fs::metadata(dir_path).map_err(LockError::Io)?;
        if (locked.dev(), locked.ino()) != (now.dev(), now.ino()) {
            return Err(LockError::Held(None));
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(file) => Some(file),
            // On a full or read-only file system the directory's lock alone
            // guards the store, so that it can still be read.
            Err(e) if cannot_write(&e) => None,
            Err(e) => return Err(LockError::Io(e)),
        };
        if let Some(file) = &file {
            match file.try_lock() {
                Ok(()) => {}
                // Held by a statelog that locks only the file.
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockError::Held(read_pid(path)));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
            }
            // The pid is only for the messages of processes that have to wait:
            // failing to write it (a full disk) does not matter. Written over
            // the old one before the size is set, so that no block is freed
            // and needed again.
            let pid = format!("{}\n", std::process::id());
            let written = file
                .write_all_at(pid.as_bytes(), 0)
                .and_then(|()| file.set_len(pid.len() as u64));
            if let Err(e) = written {
                tracing::debug!(lock = %path.display(), error = %e, "could not record the pid");
            }
        }
        Ok(Box::new(DirLock {
            _file: file,
            _dir: dir,
        }))
    }

    fn db_backend_read(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        let file = OpenOptions::new().read(true).open(path)?;
        let backend = redb::backends::FileBackend::new(file).map_err(io::Error::other)?;
        Ok(Box::new(backend))
    }

    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let absolute = super::lexical(&std::path::absolute(path)?);
        // The longest part that exists, with its links resolved, then the rest.
        let mut existing = absolute.as_path();
        let mut rest = Vec::new();
        loop {
            match std::fs::canonicalize(existing) {
                Ok(mut resolved) => {
                    resolved.extend(rest.iter().rev());
                    return Ok(resolved);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match (existing.parent(), existing.file_name()) {
                        (Some(parent), Some(name)) => {
                            rest.push(name.to_owned());
                            existing = parent;
                        }
                        _ => return Ok(absolute),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn db_backend(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let backend = redb::backends::FileBackend::new(file).map_err(io::Error::other)?;
        Ok(Box::new(backend))
    }
}
