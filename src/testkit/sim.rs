//! An in-memory file system that can lose power.
//!
//! A killed process keeps its writes in the kernel's page cache, so killing one
//! never tests the order of syncs. [`SimFs`] does: like SQLite's crash-test VFS
//! and the LazyFS runs of etcd, it keeps, for every file, the bytes that were
//! synced apart from the writes made since, and for every directory the
//! entries that were synced apart from the creations, renames and removals made
//! since. [`SimFs::restart`] simulates a power loss: it returns a new file
//! system holding what survived, and a seeded [`Loss::Random`] drops, reorders
//! and tears the unsynced part the way a disk may:
//!
//! - each unsynced write is cut into blocks at multiples of a block size (512
//!   bytes, 4 KiB, or the whole write), and each block survives or not on its
//!   own, so a later write can survive an earlier one and a write can be torn;
//! - each unsynced size change survives or not on its own;
//! - of each directory's unsynced changes a prefix survives (a journaling file
//!   system keeps their order), and an entry whose directory did not survive
//!   is gone.
//!
//! A synced write always survives: what the store syncs is what the store may
//! rely on, and this file system checks exactly that.
//!
//! Every operation that changes something counts; [`SimFs::power_off_after`]
//! cuts the power at a chosen operation, so a test can crash the store at every
//! point of a commit, a checkpoint, a segment rotation or a recovery. Once the
//! power is off every operation fails, so the handle of the crashed store can
//! be dropped without changing anything.
//!
//! Paths must be absolute; `/` always exists.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::fs::{FileHandle, Fs, LockError, LockGuard, OpenMode};

/// What a simulated power loss does to what was written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Nothing is lost: every write reached the disk (as after a killed process).
    Nothing,
    /// Everything unsynced is lost: files and directories are as last synced.
    Everything,
    /// A seeded random disk: for this crash it picks a block size and a chance
    /// of survival, then keeps or drops each unsynced block and size change on
    /// its own, and a random prefix of each directory's unsynced changes.
    Random(u64),
}

/// An in-memory file system with a page cache that a power loss can empty.
/// Cloning gives another handle to the same machine.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SimFs")
            .field("on", &state.on)
            .field("ops", &state.ops)
            .field("entries", &state.names.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
}

#[derive(Debug, Clone)]
enum DirOp {
    Set(PathBuf, Entry),
    Unset(PathBuf),
    Rename(PathBuf, PathBuf, Entry),
}

#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives any power loss.
    durable: Vec<u8>,
    /// The changes from `durable` to `data`, in order.
    pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
struct State {
    on: bool,
    ops: u64,
    off_at: Option<u64>,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    /// The namespace programs see.
    names: BTreeMap<PathBuf, Entry>,
    /// The namespace a power loss keeps for sure.
    durable_names: BTreeMap<PathBuf, Entry>,
    /// Unsynced changes, by the directory they change.
    dir_ops: BTreeMap<PathBuf, Vec<DirOp>>,
    /// Locked paths and the pid recorded by the holder.
    locks: BTreeMap<PathBuf, u32>,
}

fn powered_off() -> io::Error {
    io::Error::other("simulated power loss: the machine is off")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn normalize(path: &Path) -> io::Result<PathBuf> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the simulated file system needs absolute paths, not {path:?}"),
        ));
    }
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsupported path {path:?}"),
                ));
            }
        }
    }
    Ok(out)
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned)
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(bytes.len());
    if data.len() < end {
        data.resize(end, 0);
    }
    if let Some(target) = data.get_mut(start..end) {
        target.copy_from_slice(bytes);
    }
}

fn apply(data: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write(offset, bytes) => write_into(data, *offset, bytes),
        Pending::SetLen(len) => data.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

fn apply_dir_op(names: &mut BTreeMap<PathBuf, Entry>, op: &DirOp) {
    match op {
        DirOp::Set(path, entry) => {
            names.insert(path.clone(), *entry);
        }
        DirOp::Unset(path) => {
            names.remove(path);
        }
        DirOp::Rename(from, to, entry) => {
            names.remove(from);
            names.insert(to.clone(), *entry);
        }
    }
}

impl State {
    fn new() -> State {
        let mut names = BTreeMap::new();
        names.insert(PathBuf::from("/"), Entry::Dir);
        State {
            on: true,
            ops: 0,
            off_at: None,
            next_inode: 1,
            inodes: BTreeMap::new(),
            durable_names: names.clone(),
            names,
            dir_ops: BTreeMap::new(),
            locks: BTreeMap::new(),
        }
    }

    fn check_on(&self) -> io::Result<()> {
        if self.on { Ok(()) } else { Err(powered_off()) }
    }

    /// Counts one operation that changes something; cuts the power when it is
    /// the chosen one (the operation then does not happen).
    fn mutate(&mut self) -> io::Result<()> {
        self.check_on()?;
        self.ops += 1;
        if self.off_at.is_some_and(|at| self.ops >= at) {
            self.on = false;
            return Err(powered_off());
        }
        Ok(())
    }

    fn dir_change(&mut self, dir: PathBuf, op: DirOp) {
        apply_dir_op(&mut self.names, &op);
        self.dir_ops.entry(dir).or_default().push(op);
    }

    fn require_dir(&self, path: &Path) -> io::Result<()> {
        match self.names.get(path) {
            Some(Entry::Dir) => Ok(()),
            Some(Entry::File(_)) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is a file", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn file(&self, path: &Path) -> io::Result<u64> {
        match self.names.get(path) {
            Some(Entry::File(ino)) => Ok(*ino),
            Some(Entry::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn create_file(&mut self, path: &Path) -> io::Result<u64> {
        let dir = parent_of(path);
        self.require_dir(&dir)?;
        if self.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        self.mutate()?;
        let ino = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(ino, Inode::default());
        self.dir_change(dir, DirOp::Set(path.to_owned(), Entry::File(ino)));
        Ok(ino)
    }

    fn inode(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other("internal: a simulated file lost its inode"))
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.mutate()?;
        let inode = self.inode(ino)?;
        write_into(&mut inode.data, offset, bytes);
        inode.pending.push(Pending::Write(offset, bytes.to_vec()));
        Ok(())
    }

    fn set_len(&mut self, ino: u64, len: u64) -> io::Result<()> {
        self.mutate()?;
        let inode = self.inode(ino)?;
        let op = Pending::SetLen(len);
        apply(&mut inode.data, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn sync(&mut self, ino: u64) -> io::Result<()> {
        self.mutate()?;
        let inode = self.inode(ino)?;
        for op in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &op);
        }
        Ok(())
    }

    /// What a power loss leaves, as a new machine that is on.
    fn survivor(&self, loss: Loss) -> State {
        let mut rng = match loss {
            Loss::Random(seed) => Some(fastrand::Rng::with_seed(seed)),
            Loss::Nothing | Loss::Everything => None,
        };
        let (keep_chance, block) = match rng.as_mut() {
            Some(rng) => (
                [0.0, 0.25, 0.5, 0.75, 0.9, 1.0][rng.usize(0..6)],
                [512u64, 4096, u64::MAX][rng.usize(0..3)],
            ),
            None if loss == Loss::Nothing => (1.0, u64::MAX),
            None => (0.0, u64::MAX),
        };
        let keep = |rng: &mut Option<fastrand::Rng>| match rng {
            Some(rng) => rng.f64() < keep_chance,
            None => keep_chance >= 1.0,
        };
        let mut names = self.durable_names.clone();
        for ops in self.dir_ops.values() {
            let kept = match rng.as_mut() {
                Some(rng) => rng.usize(0..=ops.len()),
                None if loss == Loss::Nothing => ops.len(),
                None => 0,
            };
            for op in &ops[..kept] {
                apply_dir_op(&mut names, op);
            }
        }
        // Entries whose directory did not survive are gone (parents first).
        let mut paths: Vec<PathBuf> = names.keys().cloned().collect();
        paths.sort_by_key(|p| p.components().count());
        for path in paths {
            if path == Path::new("/") {
                continue;
            }
            if names.get(&parent_of(&path)) != Some(&Entry::Dir) {
                names.remove(&path);
            }
        }
        let mut inodes = BTreeMap::new();
        for (ino, inode) in &self.inodes {
            if !names.values().any(|e| *e == Entry::File(*ino)) {
                continue;
            }
            let mut data = inode.durable.clone();
            for op in &inode.pending {
                match op {
                    Pending::SetLen(_) => {
                        if keep(&mut rng) {
                            apply(&mut data, op);
                        }
                    }
                    Pending::Write(offset, bytes) => {
                        let mut at = *offset;
                        let end = offset + bytes.len() as u64;
                        while at < end {
                            let next = if block == u64::MAX {
                                end
                            } else {
                                ((at / block + 1) * block).min(end)
                            };
                            if keep(&mut rng) {
                                let from = (at - offset) as usize;
                                let to = (next - offset) as usize;
                                write_into(&mut data, at, &bytes[from..to]);
                            }
                            at = next;
                        }
                    }
                }
            }
            inodes.insert(
                *ino,
                Inode {
                    data: data.clone(),
                    durable: data,
                    pending: Vec::new(),
                },
            );
        }
        State {
            on: true,
            ops: 0,
            off_at: None,
            next_inode: self.next_inode,
            inodes,
            durable_names: names.clone(),
            names,
            dir_ops: BTreeMap::new(),
            locks: BTreeMap::new(),
        }
    }
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

impl SimFs {
    /// An empty machine, powered on, with only `/`.
    pub fn new() -> SimFs {
        SimFs {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    /// Cuts the power when `ops` more operations that change something (writes,
    /// size changes, syncs, creations, renames, removals) have been attempted:
    /// that operation fails and does not happen, and so does everything after.
    pub fn power_off_after(&self, ops: u64) {
        let mut state = self.state.lock();
        state.off_at = Some(state.ops + ops.max(1));
    }

    /// Cuts the power now.
    pub fn power_off(&self) {
        self.state.lock().on = false;
    }

    /// Whether the power is still on.
    pub fn is_on(&self) -> bool {
        self.state.lock().on
    }

    /// Operations that changed something so far (see [`power_off_after`](Self::power_off_after)).
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Simulates a power loss: cuts the power of this machine (for good) and
    /// returns a new one, powered on, whose disk holds what survived.
    pub fn restart(&self, loss: Loss) -> SimFs {
        let mut state = self.state.lock();
        state.on = false;
        SimFs {
            state: Arc::new(Mutex::new(state.survivor(loss))),
        }
    }

    /// An independent copy of this machine (page cache included), powered on,
    /// with no lock held: for running many tests from one prepared store.
    pub fn duplicate(&self) -> SimFs {
        let mut copy = self.state.lock().clone();
        copy.on = true;
        copy.off_at = None;
        copy.locks.clear();
        SimFs {
            state: Arc::new(Mutex::new(copy)),
        }
    }

    /// Every file, in path order.
    pub fn files(&self) -> Vec<PathBuf> {
        let state = self.state.lock();
        state
            .names
            .iter()
            .filter(|(_, e)| matches!(e, Entry::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// A file's content as programs see it.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        let ino = state.file(&path)?;
        Ok(state.inode(ino)?.data.clone())
    }

    /// Replaces a file's content, durably, creating it (and durably so) if it
    /// does not exist: for tests that damage files. Works with the power off.
    pub fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        let ino = match state.names.get(&path) {
            Some(Entry::File(ino)) => *ino,
            Some(Entry::Dir) => return Err(io::Error::other("a directory")),
            None => {
                state.require_dir(&parent_of(&path))?;
                let ino = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(ino, Inode::default());
                state.names.insert(path.clone(), Entry::File(ino));
                state.durable_names.insert(path.clone(), Entry::File(ino));
                ino
            }
        };
        let inode = state.inode(ino)?;
        inode.data = data.to_vec();
        inode.durable = data.to_vec();
        inode.pending.clear();
        Ok(())
    }

    /// Removes a file, durably: for tests that damage stores.
    pub fn remove_file_durably(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        state.file(&path)?;
        state.names.remove(&path);
        state.durable_names.remove(&path);
        Ok(())
    }

    /// Writes and size changes made to a file since it was last synced.
    pub fn unsynced_changes(&self, path: &Path) -> io::Result<usize> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        let ino = state.file(&path)?;
        Ok(state.inode(ino)?.pending.len())
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        state.check_on()?;
        let ino = match mode {
            OpenMode::CreateNew => state.create_file(&path)?,
            OpenMode::Read | OpenMode::ReadWrite => state.file(&path)?,
        };
        Ok(SimFile {
            state: Arc::clone(&self.state),
            ino,
            path,
            writable: mode != OpenMode::Read,
        })
    }
}

/// An open file of a [`SimFs`]. Like a file descriptor it follows the file, not
/// its name.
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    path: PathBuf,
    writable: bool,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).finish()
    }
}

impl SimFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is open for reading only", self.path.display()),
            ))
        }
    }
}

impl FileHandle for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.state.lock();
        state.check_on()?;
        let data = &state.inode(self.ino)?.data;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.check_writable()?;
        self.state.lock().write(self.ino, offset, buf)?;
        Ok(buf.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.state.lock().sync(self.ino)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.state.lock().set_len(self.ino, len)
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.state.lock();
        state.check_on()?;
        Ok(state.inode(self.ino)?.data.len() as u64)
    }
}

/// The state database's storage on a [`SimFs`].
#[derive(Debug)]
struct SimBackend(SimFile);

impl redb::StorageBackend for SimBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let n = self.0.read_at(out, offset)?;
        if n < out.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end of {}",
                    out.len(),
                    self.0.path.display()
                ),
            ));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write_at(data, offset).map(|_| ())
    }
}

/// A lock on a [`SimFs`]; released when dropped.
struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl std::fmt::Debug for SimLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLock").field("path", &self.path).finish()
    }
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FileHandle>> {
        Ok(Arc::new(self.open_file(path, mode)?))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        state.check_on()?;
        let mut at = PathBuf::from("/");
        for part in path.components().skip(1) {
            at.push(part);
            match state.names.get(&at) {
                Some(Entry::Dir) => {}
                Some(Entry::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is a file", at.display()),
                    ));
                }
                None => {
                    state.mutate()?;
                    state.dir_change(parent_of(&at), DirOp::Set(at.clone(), Entry::Dir));
                }
            }
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = normalize(path)?;
        let state = self.state.lock();
        state.check_on()?;
        state.require_dir(&path)?;
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(path.as_path()))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let path = normalize(path)?;
        let state = self.state.lock();
        state.check_on()?;
        Ok(state.names.contains_key(&path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let from = normalize(from)?;
        let to = normalize(to)?;
        let mut state = self.state.lock();
        state.check_on()?;
        let ino = state.file(&from)?;
        let dir = parent_of(&from);
        if parent_of(&to) != dir {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the simulated file system renames only within a directory",
            ));
        }
        if state.names.get(&to) == Some(&Entry::Dir) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", to.display()),
            ));
        }
        state.mutate()?;
        state.dir_change(dir, DirOp::Rename(from, to, Entry::File(ino)));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        state.check_on()?;
        state.file(&path)?;
        state.mutate()?;
        state.dir_change(parent_of(&path), DirOp::Unset(path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path)?;
        let mut state = self.state.lock();
        state.check_on()?;
        state.require_dir(&path)?;
        state.mutate()?;
        for op in state.dir_ops.remove(&path).unwrap_or_default() {
            apply_dir_op(&mut state.durable_names, &op);
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> Result<Box<dyn LockGuard>, LockError> {
        let path = normalize(path).map_err(LockError::Io)?;
        let mut state = self.state.lock();
        state.check_on().map_err(LockError::Io)?;
        if let Some(pid) = state.locks.get(&path) {
            return Err(LockError::Held(Some(*pid)));
        }
        let ino = match state.names.get(&path) {
            Some(Entry::File(ino)) => *ino,
            _ => state.create_file(&path).map_err(LockError::Io)?,
        };
        let pid = std::process::id();
        state
            .set_len(ino, 0)
            .and_then(|()| state.write(ino, 0, format!("{pid}\n").as_bytes()))
            .map_err(LockError::Io)?;
        state.locks.insert(path.clone(), pid);
        Ok(Box::new(SimLock {
            state: Arc::clone(&self.state),
            path,
        }))
    }

    fn db_backend(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        let mode = if self.exists(path)? {
            OpenMode::ReadWrite
        } else {
            OpenMode::CreateNew
        };
        Ok(Box::new(SimBackend(self.open_file(path, mode)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn synced_data_and_entries_survive_and_unsynced_ones_may_not() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.write_at(b"world", 5).unwrap();
        let g = fs.open(&p("/d/b"), OpenMode::CreateNew).unwrap();
        g.write_at(b"x", 0).unwrap();
        g.sync_data().unwrap();

        let lost = fs.restart(Loss::Everything);
        assert_eq!(lost.read_file(&p("/d/a")).unwrap(), b"hello");
        // b's data was synced but its directory entry was not.
        assert!(!lost.exists(&p("/d/b")).unwrap());

        let kept = fs.restart(Loss::Nothing);
        assert_eq!(kept.read_file(&p("/d/a")).unwrap(), b"helloworld");
        assert_eq!(kept.read_file(&p("/d/b")).unwrap(), b"x");

        // The old machine is off for good.
        assert!(f.write_at(b"!", 0).is_err());
        assert!(!fs.is_on());
    }

    #[test]
    fn random_losses_tear_and_reorder_but_never_touch_synced_bytes() {
        let mut seen_torn = false;
        let mut seen_reordered = false;
        for seed in 0..200 {
            let fs = SimFs::new();
            let f = fs.open(&p("/f"), OpenMode::CreateNew).unwrap();
            fs.sync_dir(&p("/")).unwrap();
            f.write_at(&[1; 600], 0).unwrap();
            f.sync_data().unwrap();
            f.write_at(&[2; 9000], 600).unwrap();
            f.write_at(&[3; 100], 9600).unwrap();
            let after = fs.restart(Loss::Random(seed));
            let data = after.read_file(&p("/f")).unwrap();
            assert_eq!(&data[..600], &[1; 600][..], "seed {seed}");
            let second: Vec<u8> = data.get(600..9600).map(<[u8]>::to_vec).unwrap_or_default();
            if second.contains(&2) && second.iter().any(|b| *b != 2) {
                seen_torn = true;
            }
            if data.get(9600) == Some(&3) && !second.iter().all(|b| *b == 2) {
                seen_reordered = true;
            }
            // The same seed gives the same disk.
            let fs2 = SimFs::new();
            let f2 = fs2.open(&p("/f"), OpenMode::CreateNew).unwrap();
            fs2.sync_dir(&p("/")).unwrap();
            f2.write_at(&[1; 600], 0).unwrap();
            f2.sync_data().unwrap();
            f2.write_at(&[2; 9000], 600).unwrap();
            f2.write_at(&[3; 100], 9600).unwrap();
            assert_eq!(
                fs2.restart(Loss::Random(seed)).read_file(&p("/f")).unwrap(),
                data
            );
        }
        assert!(seen_torn && seen_reordered);
    }

    #[test]
    fn power_off_after_counts_changes() {
        let fs = SimFs::new();
        fs.power_off_after(2);
        let f = fs.open(&p("/f"), OpenMode::CreateNew).unwrap();
        assert!(f.write_at(b"a", 0).is_err());
        assert!(!fs.is_on());
        assert!(fs.read_file(&p("/f")).unwrap().is_empty());
    }

    #[test]
    fn locks_exclude_until_dropped() {
        let fs = SimFs::new();
        let guard = fs.try_lock(&p("/LOCK")).unwrap();
        assert!(matches!(
            fs.try_lock(&p("/LOCK")),
            Err(LockError::Held(Some(_)))
        ));
        drop(guard);
        assert!(fs.try_lock(&p("/LOCK")).is_ok());
    }
}
