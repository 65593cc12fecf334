//! A private temporary directory for the tools' scratch files (a copy of the
//! state database, a state rebuilt from the log), removed when dropped, and
//! removed by the next run when its process was killed.
//!
//! Each directory holds a marker file that its owner keeps locked (`flock`)
//! for as long as it lives; the kernel drops the lock when the owner exits or
//! dies. Before it makes its own, a run removes every directory beside it that
//! is named like one of these, holds the marker, and whose marker it can lock:
//! its owner is gone. A directory without the marker is never touched (it is
//! not ours), nor one whose marker is locked (its owner is running). The
//! directory is set up under a hidden staging name and renamed into place only
//! once its marker is locked, so no run ever sees a live directory unlocked.
//!
//! The one place outside `fs/` that touches the file system directly: the
//! `Fs` boundary has no way to remove a directory, and these directories are
//! the tool's own, never a store's.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Names of scratch directories start with this.
const PREFIX: &str = "statelog-";
/// Staging names: `.statelog-…`, until the marker is locked.
const STAGING_PREFIX: &str = ".statelog-";
const STAGING_SUFFIX: &str = ".new";
/// The marker file, locked by the directory's owner.
const MARKER: &str = "statelog-scratch.lock";
/// An empty staging directory (its owner died before making the marker) is
/// removed only once it is this old, so that a run setting one up right now
/// keeps it.
const STAGING_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
    /// Locked for as long as the directory is in use.
    _marker: File,
}

impl Scratch {
    /// A new directory under `parent` (the system's temporary directory if
    /// `None`); first removes the directories there that killed runs left.
    pub(crate) fn new(parent: Option<&Path>, what: &str) -> Result<Scratch> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_owned);
        remove_abandoned(&parent);
        let failed = |e: std::io::Error| {
            Error::io(
                "create a scratch directory (give another with a scratch option) in",
                &parent,
                e,
            )
        };
        let mut attempt = 0u32;
        loop {
            let name = format!(
                "{PREFIX}{what}-{}-{:08x}",
                std::process::id(),
                fastrand::u32(..)
            );
            let staging = parent.join(format!(".{name}{STAGING_SUFFIX}"));
            let dir = parent.join(&name);
            match std::fs::create_dir(&staging) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(failed(e)),
            }
            let marker = File::create_new(staging.join(MARKER)).map_err(failed)?;
            marker.try_lock().map_err(|e| failed(e.into()))?;
            if dir.exists() {
                // Taken meanwhile (the same name drawn twice): try another.
                let _ = std::fs::remove_dir_all(&staging);
                attempt += 1;
                if attempt > 8 {
                    return Err(failed(std::io::ErrorKind::AlreadyExists.into()));
                }
                continue;
            }
            std::fs::rename(&staging, &dir).map_err(failed)?;
            return Ok(Scratch {
                dir,
                _marker: marker,
            });
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The marker stays locked until the directory is gone (fields drop
        // after this).
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a scratch directory");
        }
    }
}

/// Removes the scratch directories in `parent` whose owners are gone. Never
/// fails: what cannot be removed stays for a later run.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let staging = name.starts_with(STAGING_PREFIX) && name.ends_with(STAGING_SUFFIX);
        if !staging && !name.starts_with(PREFIX) {
            continue;
        }
        // Never through a symbolic link.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let dir = entry.path();
        match OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(MARKER))
        {
            Ok(marker) => {
                if marker.try_lock().is_err() {
                    continue; // Its owner is running.
                }
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => tracing::info!(
                        dir = %dir.display(),
                        "removed the scratch directory of a run that did not finish"
                    ),
                    Err(e) => tracing::warn!(
                        dir = %dir.display(),
                        error = %e,
                        "could not remove the scratch directory of a run that did not finish"
                    ),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && staging => {
                // Its owner died before making the marker: empty, unless it is
                // being set up right now.
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > STAGING_GRACE);
                if old {
                    let _ = std::fs::remove_dir(&dir);
                }
            }
            // No marker: not ours.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_run_removes_what_killed_runs_left_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        // Left by a killed run: the marker is there, and nobody holds it.
        let abandoned = p.join("statelog-check-4711-0000abcd");
        std::fs::create_dir(&abandoned).unwrap();
        std::fs::write(abandoned.join(MARKER), b"").unwrap();
        std::fs::write(abandoned.join("state.redb"), vec![7u8; 4096]).unwrap();
        // Killed while setting up, marker made: removed too.
        let staged = p.join(".statelog-repair-4712-0000abce.new");
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join(MARKER), b"").unwrap();
        // Named alike but without the marker: not ours.
        let lookalike = p.join("statelog-check-notes");
        std::fs::create_dir(&lookalike).unwrap();
        std::fs::write(lookalike.join("keep.txt"), b"mine").unwrap();
        // A file named alike.
        std::fs::write(p.join("statelog-check.txt"), b"mine").unwrap();
        // A live run's directory.
        let live = Scratch::new(Some(p), "check").unwrap();
        let live_name = live
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();

        let next = Scratch::new(Some(p), "repair").unwrap();
        let next_name = next
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut expected = vec![
            "statelog-check-notes".to_owned(),
            "statelog-check.txt".to_owned(),
            live_name.clone(),
            next_name,
        ];
        expected.sort();
        assert_eq!(names(p), expected);
        assert!(live.path().join(MARKER).exists());
        assert_eq!(std::fs::read(lookalike.join("keep.txt")).unwrap(), b"mine");

        drop(next);
        drop(live);
        assert_eq!(names(p), ["statelog-check-notes", "statelog-check.txt"]);
    }

    #[test]
    fn a_symbolic_link_named_like_a_scratch_directory_is_not_followed() {
        let parent = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join(MARKER), b"").unwrap();
        std::fs::write(elsewhere.path().join("data"), b"precious").unwrap();
        let link = parent.path().join("statelog-check-1-00000001");
        std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
        drop(Scratch::new(Some(parent.path()), "check").unwrap());
        assert_eq!(
            std::fs::read(elsewhere.path().join("data")).unwrap(),
            b"precious"
        );
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }
}
