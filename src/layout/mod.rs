//! The store directory: what its files are called, the identity file, a
//! creation in progress, and the lock.
//!
//! ```text
//! <store>/
//!   STATELOG      identity (identity.rs), written last when a store is created
//!   LOCK          flock-ed, with the directory itself, by the process holding the store
//!   statelog.sock the holder's socket, while it serves (serve/socket.rs)
//!   state.redb    the state database (db/)
//!   log/          the log segments (log/)
//!   repair-<time>/  what `repair` moved aside
//!   CREATING      only while a store is created or restored (creation.rs)
//! ```
//!
//! **Invariant:** the only place that names a store's files; everything else
//! joins these names onto the store's path.

pub(crate) mod creation;
pub(crate) mod identity;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::{self, Fs, LockError, LockGuard};
use crate::options::Options;
use crate::time::Timestamp;

/// The identity file of a store.
pub(crate) const ID_FILE: &str = "STATELOG";
/// The lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The state database.
pub(crate) const DB_FILE: &str = "state.redb";
/// The log directory.
pub(crate) const LOG_DIR: &str = "log";
/// The marker of a creation in progress.
pub(crate) const CREATING_FILE: &str = "CREATING";
/// The socket of the process holding the store, while it serves.
pub(crate) const SOCKET_FILE: &str = "statelog.sock";
/// The name a socket is bound under before it is renamed into place.
pub(crate) const SOCKET_BINDING_FILE: &str = "statelog.sock.tmp";
/// What `repair` moves aside goes into a directory named with this and a time.
const REPAIR_DIR_PREFIX: &str = "repair-";

/// The store layout this build creates and opens.
pub const STORE_FORMAT_VERSION: u64 = 1;

/// Takes the lock of the store in `path`, waiting up to the options' lock
/// timeout.
pub(crate) fn take_lock(fs: &dyn Fs, path: &Path, options: &Options) -> Result<Box<dyn LockGuard>> {
    lock_dir(fs, path, LOCK_FILE, options.lock_timeout)
}

/// Takes the lock file `name` of directory `dir` (a store's, or a backup's),
/// waiting up to `timeout`; [`Error::Busy`] names `dir` and the holder when it
/// stays held.
pub(crate) fn lock_dir(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    timeout: Duration,
) -> Result<Box<dyn LockGuard>> {
    let lock_path = dir.join(name);
    fs::lock_with_timeout(fs, &lock_path, timeout).map_err(|(e, waited)| match e {
        LockError::Held(pid) => Error::Busy {
            path: dir.to_owned(),
            pid,
            waited,
        },
        LockError::Io(e) => Error::io("lock", &lock_path, e),
    })
}

/// Whether `name` (in a store directory) is a directory `repair` made.
pub(crate) fn is_repair_dir(name: &str) -> bool {
    name.starts_with(REPAIR_DIR_PREFIX)
}

/// A new directory in the store `path` for what `repair` moves aside:
/// `repair-<time>`, or `repair-<time>-<n>` when that is taken.
pub(crate) fn repair_dir(fs: &dyn Fs, path: &Path) -> Result<PathBuf> {
    free_name(fs, |suffix| {
        path.join(format!(
            "{REPAIR_DIR_PREFIX}{}{suffix}",
            stamp(Timestamp::now())
        ))
    })
}

/// Where a store in `target` that a restore replaces is moved:
/// `<target>.replaced-<time>`, or with `-<n>` when that is taken.
pub(crate) fn replaced_name(fs: &dyn Fs, target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".to_owned());
    free_name(fs, |suffix| {
        target.with_file_name(format!(
            "{name}.replaced-{}{suffix}",
            stamp(Timestamp::now())
        ))
    })
}

/// The first of `name("")`, `name("-2")`, `name("-3")`, ... that does not
/// exist.
fn free_name(fs: &dyn Fs, name: impl Fn(&str) -> PathBuf) -> Result<PathBuf> {
    let mut path = name("");
    let mut n = 1;
    while fs
        .exists(&path)
        .map_err(|e| Error::io("look for", &path, e))?
    {
        n += 1;
        path = name(&format!("-{n}"));
    }
    Ok(path)
}

/// A time as a compact name part: `20260102T030405Z`.
pub(crate) fn stamp(t: Timestamp) -> String {
    let text = t.to_string();
    let mut out: String = text
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_names() {
        let t: Timestamp = "2026-01-02T03:04:05.000006Z".parse().unwrap();
        assert_eq!(stamp(t), "20260102T030405Z");
    }
}
