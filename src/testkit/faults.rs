//! Fault injection: a file system that fails on purpose.
//!
//! [`FaultyFs`] wraps another [`Fs`] (the real one or a [`SimFs`](super::sim::SimFs))
//! and, following [`Rule`]s, makes chosen operations on chosen files fail with
//! EIO or ENOSPC, or write only part of what they were given; it can also
//! simulate a disk that fills up ([`FaultyFs::set_free_space`]). The state
//! database's storage goes through it too. Rules can be changed while a store
//! runs, so a test can break the disk, watch the store's answer, and repair the
//! disk again.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::fs::{FileHandle, Fs, LockError, LockGuard, OpenMode};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// Which files a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Log segments (`log/*.log`, and `*.log.tmp` while one is created).
    Log,
    /// The state database (`state.redb`).
    Db,
    /// Everything else: the identity file, saved torn tails, directories.
    Other,
    /// Every file.
    Any,
}

/// Which operation a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// Writing bytes.
    Write,
    /// Syncing a file.
    Sync,
    /// Changing a file's size.
    SetLen,
    /// Creating a file.
    Create,
    /// Renaming a file (classified by its new name).
    Rename,
    /// Removing a file.
    Remove,
    /// Syncing a directory (classified as [`Target::Other`]).
    SyncDir,
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with EIO and does nothing.
    Eio,
    /// The operation fails with ENOSPC and does nothing.
    NoSpace,
    /// A write stores only the first half of its bytes and says so; the next
    /// write to the same open file fails with ENOSPC (a disk that ran out of
    /// space in the middle of a write). Other operations fail with EIO. The
    /// state database's storage cannot report a short write, so there it fails
    /// with ENOSPC after writing the first half.
    Short,
}

/// When to inject a fault: on the matching operations after the first `skip`
/// ones, at most `times` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The files.
    pub target: Target,
    /// The operation.
    pub op: Op,
    /// Matching operations to let through first.
    pub skip: u64,
    /// How many times to fail, then let everything through again.
    pub times: u64,
    /// What to do.
    pub fault: Fault,
}

impl Rule {
    /// Fails every matching operation from now on.
    pub fn new(target: Target, op: Op, fault: Fault) -> Rule {
        Rule {
            target,
            op,
            skip: 0,
            times: u64::MAX,
            fault,
        }
    }

    /// Lets the first `n` matching operations through.
    pub fn skip(mut self, n: u64) -> Rule {
        self.skip = n;
        self
    }

    /// Fails only `n` times.
    pub fn times(mut self, n: u64) -> Rule {
        self.times = n;
        self
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<(Rule, u64, u64)>,
    free_space: Option<u64>,
    injected: u64,
    seen: BTreeMap<(Target, Op), u64>,
}

impl State {
    fn decide(&mut self, target: Target, op: Op) -> Option<Fault> {
        *self.seen.entry((target, op)).or_default() += 1;
        for (rule, seen, fired) in &mut self.rules {
            if rule.op != op || (rule.target != Target::Any && rule.target != target) {
                continue;
            }
            *seen += 1;
            if *seen > rule.skip && *fired < rule.times {
                *fired += 1;
                self.injected += 1;
                return Some(rule.fault);
            }
        }
        None
    }
}

fn error(code: i32, what: &str, path: &Path) -> io::Error {
    let os = io::Error::from_raw_os_error(code);
    io::Error::new(
        os.kind(),
        format!("injected fault: {what} {}: {os}", path.display()),
    )
}

fn fail(fault: Fault, what: &str, path: &Path) -> io::Error {
    match fault {
        Fault::NoSpace => error(ENOSPC, what, path),
        Fault::Eio | Fault::Short => error(EIO, what, path),
    }
}

/// Which kind of store file `path` is.
pub fn classify(path: &Path) -> Target {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let in_log = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "log");
    if in_log && (name.ends_with(".log") || name.ends_with(".log.tmp")) {
        Target::Log
    } else if name == crate::layout::DB_FILE {
        Target::Db
    } else {
        Target::Other
    }
}

/// A file system that fails when told to. Cloning gives another handle to the
/// same rules.
#[derive(Clone)]
pub struct FaultyFs {
    inner: Arc<dyn Fs>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FaultyFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyFs")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl FaultyFs {
    /// Wraps `inner`; no fault until a rule is added.
    pub fn new(inner: Arc<dyn Fs>) -> FaultyFs {
        FaultyFs {
            inner,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Adds a rule.
    pub fn inject(&self, rule: Rule) {
        self.state.lock().rules.push((rule, 0, 0));
    }

    /// Removes every rule and the space limit: the disk works again.
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.rules.clear();
        state.free_space = None;
    }

    /// Limits the bytes files may still grow by (`None`: no limit). A write that
    /// does not fit stores what fits and reports a short write; the next one
    /// fails with ENOSPC.
    pub fn set_free_space(&self, bytes: Option<u64>) {
        self.state.lock().free_space = bytes;
    }

    /// Faults injected so far (space exhaustion included).
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    /// How many operations of a kind on a kind of file were attempted so far.
    pub fn seen(&self, target: Target, op: Op) -> u64 {
        self.state
            .lock()
            .seen
            .get(&(target, op))
            .copied()
            .unwrap_or(0)
    }

    fn check(&self, path: &Path, op: Op, what: &str) -> io::Result<()> {
        let target = if op == Op::SyncDir {
            Target::Other
        } else {
            classify(path)
        };
        match self.state.lock().decide(target, op) {
            Some(fault) => Err(fail(fault, what, path)),
            None => Ok(()),
        }
    }

    /// Takes `wanted` bytes of growth from the free space; returns how many
    /// may be used.
    fn grow(&self, wanted: u64) -> u64 {
        let mut state = self.state.lock();
        match state.free_space {
            None => wanted,
            Some(free) => {
                let granted = wanted.min(free);
                state.free_space = Some(free - granted);
                if granted < wanted {
                    state.injected += 1;
                }
                granted
            }
        }
    }
}

struct FaultyFile {
    inner: Arc<dyn FileHandle>,
    fs: FaultyFs,
    path: PathBuf,
    /// A short write happened; the next write fails with ENOSPC.
    full: AtomicBool,
}

impl std::fmt::Debug for FaultyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyFile")
            .field("path", &self.path)
            .finish()
    }
}

impl FaultyFile {
    /// How many of `len` bytes at `offset` fit on the disk.
    fn fitting(&self, offset: u64, len: usize) -> io::Result<usize> {
        let size = self.inner.len()?;
        let end = offset + len as u64;
        if end <= size {
            return Ok(len);
        }
        let growth = end - size.max(offset);
        let granted = self.fs.grow(growth);
        Ok(len - (growth - granted) as usize)
    }
}

impl FileHandle for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.full.swap(false, Ordering::AcqRel) {
            return Err(error(ENOSPC, "write to", &self.path));
        }
        let mut n = buf.len();
        match self.fs.state.lock().decide(classify(&self.path), Op::Write) {
            None => {}
            Some(Fault::Short) => n = (buf.len() / 2).max(1).min(buf.len()),
            Some(fault) => return Err(fail(fault, "write to", &self.path)),
        }
        let fits = self.fitting(offset, n)?;
        if fits == 0 && n > 0 {
            return Err(error(ENOSPC, "write to", &self.path));
        }
        let written = self.inner.write_at(&buf[..fits], offset)?;
        if written < buf.len() {
            self.full.store(true, Ordering::Release);
        }
        Ok(written)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.check(&self.path, Op::Sync, "sync")?;
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.check(&self.path, Op::SetLen, "resize")?;
        let size = self.inner.len()?;
        if len > size && self.fs.grow(len - size) < len - size {
            return Err(error(ENOSPC, "resize", &self.path));
        }
        self.inner.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

/// The state database's storage, failing when told to.
struct FaultyBackend {
    inner: Box<dyn redb::StorageBackend>,
    fs: FaultyFs,
    path: PathBuf,
}

impl std::fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("path", &self.path)
            .finish()
    }
}

impl redb::StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.fs.check(&self.path, Op::SetLen, "resize")?;
        let size = self.inner.len()?;
        if len > size && self.fs.grow(len - size) < len - size {
            return Err(error(ENOSPC, "resize", &self.path));
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.fs.check(&self.path, Op::Sync, "sync")?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let decided = self.fs.state.lock().decide(Target::Db, Op::Write);
        match decided {
            None => {}
            Some(Fault::Short) => {
                let half = data.len() / 2;
                self.inner.write(offset, &data[..half])?;
                return Err(error(ENOSPC, "write to", &self.path));
            }
            Some(fault) => return Err(fail(fault, "write to", &self.path)),
        }
        let size = self.inner.len()?;
        let end = offset + data.len() as u64;
        if end > size {
            let growth = end - size.max(offset);
            if self.fs.grow(growth) < growth {
                return Err(error(ENOSPC, "write to", &self.path));
            }
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

impl Fs for FaultyFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        if mode == OpenMode::CreateNew {
            self.check(path, Op::Create, "create")?;
        }
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open(path, mode)?,
            fs: self.clone(),
            path: path.to_owned(),
            full: AtomicBool::new(false),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(path, Op::Create, "create the directory")?;
        self.inner.create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.read_dir(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(to, Op::Rename, "rename to")?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(path, Op::Remove, "remove")?;
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(path, Op::SyncDir, "sync the directory")?;
        self.inner.sync_dir(path)
    }

    fn try_lock(&self, path: &Path) -> Result<Box<dyn LockGuard>, LockError> {
        self.inner.try_lock(path)
    }

    fn db_backend(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        Ok(Box::new(FaultyBackend {
            inner: self.inner.db_backend(path)?,
            fs: self.clone(),
            path: path.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::sim::SimFs;

    #[test]
    fn rules_skip_then_fail_then_stop() {
        let fs = FaultyFs::new(Arc::new(SimFs::new()));
        fs.create_dir_all(Path::new("/s/log")).unwrap();
        let f = fs
            .open(Path::new("/s/log/1.log"), OpenMode::CreateNew)
            .unwrap();
        fs.inject(
            Rule::new(Target::Log, Op::Sync, Fault::Eio)
                .skip(1)
                .times(1),
        );
        f.sync_data().unwrap();
        let e = f.sync_data().unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        f.sync_data().unwrap();
        assert_eq!(fs.injected(), 1);
        assert_eq!(fs.seen(Target::Log, Op::Sync), 3);
    }

    #[test]
    fn a_full_disk_writes_what_fits_then_refuses() {
        let fs = FaultyFs::new(Arc::new(SimFs::new()));
        let f = fs.open(Path::new("/x"), OpenMode::CreateNew).unwrap();
        fs.set_free_space(Some(10));
        assert_eq!(f.write_at(&[1; 16], 0).unwrap(), 10);
        let e = f.write_at(&[1; 6], 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        // Overwriting needs no space.
        assert_eq!(f.write_at(&[2; 10], 0).unwrap(), 10);
        fs.clear();
        assert_eq!(f.write_at(&[1; 6], 10).unwrap(), 6);
    }

    #[test]
    fn files_are_classified_by_name() {
        assert_eq!(
            classify(Path::new("/s/log/00000000000000000001.log")),
            Target::Log
        );
        assert_eq!(
            classify(Path::new("/s/log/00000000000000000001.log.tmp")),
            Target::Log
        );
        assert_eq!(classify(Path::new("/s/state.redb")), Target::Db);
        assert_eq!(classify(Path::new("/s/STATELOG")), Target::Other);
        assert_eq!(
            classify(Path::new("/s/log/00000000000000000001.log.torn-64")),
            Target::Other
        );
    }
}
