//! What a forked child must not keep of its parent's stores: their files.
//!
//! `fork` copies every file descriptor, and a lock taken with `flock` (the
//! store's `LOCK` and directory, redb's database file) is held for as long as
//! any copy of its descriptor is open. A child that lives on after its parent
//! closed a store would otherwise keep that store locked, and keep its socket
//! listening with nobody accepting. So right after a fork (Python's
//! `os.register_at_fork(after_in_child=...)`), the child points every
//! descriptor it inherited on a store directory this process has open at
//! `/dev/null`. The numbers stay taken, so the parent's handles, which the
//! child never closes (`PyStore`'s `Drop`), can never close a file the child
//! opened later under the same number.
//!
//! Descriptors are found through `/proc` (Linux); elsewhere nothing is done.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use pyo3::prelude::*;

/// Store directories open in this process (canonical paths), once per open
/// handle. Locked only with the GIL held, so a fork (which holds the GIL)
/// never happens while another thread holds the lock.
static OPEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Records a store directory opened by this process.
pub(crate) fn opened(_py: Python<'_>, dir: &Path) {
    if let Ok(dir) = std::fs::canonicalize(dir) {
        OPEN.lock().push(dir);
    }
}

/// Forgets one opening of a store directory (the handle was closed).
pub(crate) fn closed(_py: Python<'_>, dir: &Path) {
    if let Ok(dir) = std::fs::canonicalize(dir) {
        let mut open = OPEN.lock();
        if let Some(i) = open.iter().position(|d| *d == dir) {
            open.swap_remove(i);
        }
    }
}

/// Run in the child after a fork: detaches the inherited descriptors of the
/// parent's open stores. Returns how many it detached.
#[pyfunction]
pub(crate) fn _after_fork_in_child(_py: Python<'_>) -> usize {
    let dirs: Vec<PathBuf> = match OPEN.try_lock() {
        Some(mut open) => std::mem::take(&mut *open),
        None => return 0,
    };
    if dirs.is_empty() {
        return 0;
    }
    detach(&dirs)
}

#[cfg(target_os = "linux")]
fn detach(dirs: &[PathBuf]) -> usize {
    use std::os::fd::AsRawFd;

    let within = |path: &Path| dirs.iter().any(|dir| path.starts_with(dir));
    let sockets = unix_sockets();
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut targets = Vec::new();
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let ours = match socket_inode(&target) {
            Some(inode) => sockets.iter().any(|(i, path)| *i == inode && within(path)),
            None => within(&target),
        };
        if ours {
            targets.push(fd);
        }
    }
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return 0;
    };
    let mut detached = 0;
    for fd in targets {
        if fd == null.as_raw_fd() {
            continue;
        }
        // SAFETY: dup3 only replaces what descriptor `fd` refers to; both
        // descriptors are open. Close-on-exec is kept, as std opens files.
        if unsafe { libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC) } == fd {
            detached += 1;
        }
    }
    detached
}

#[cfg(not(target_os = "linux"))]
fn detach(_dirs: &[PathBuf]) -> usize {
    0
}

/// `socket:[12345]` -> 12345.
#[cfg(target_os = "linux")]
fn socket_inode(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The bound Unix sockets of this network namespace: inode and path
/// (`/proc/net/unix`; accepted connections show their listener's path).
#[cfg(target_os = "linux")]
fn unix_sockets() -> Vec<(u64, PathBuf)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Seven fields, then a space and the path (which may hold spaces).
            let mut rest = line;
            let mut inode = "";
            for _ in 0..7 {
                rest = rest.trim_start();
                let end = rest.find(' ').unwrap_or(rest.len());
                inode = &rest[..end];
                rest = &rest[end..];
            }
            let path = rest.strip_prefix(' ')?;
            Some((inode.parse().ok()?, PathBuf::from(path)))
        })
        .collect()
}
