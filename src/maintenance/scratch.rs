//! A private temporary directory for the tools' scratch files (a copy of the
//! state database, a state rebuilt from the log), removed when dropped.
//!
//! The one place outside `fs/` that touches the file system directly: the
//! `Fs` boundary has no way to remove a directory, and these directories are
//! the tool's own, never a store's.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A new directory under `parent` (the system's temporary directory if
    /// `None`).
    pub(crate) fn new(parent: Option<&Path>, what: &str) -> Result<Scratch> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_owned);
        let mut attempt = 0u32;
        loop {
            let dir = parent.join(format!(
                "statelog-{what}-{}-{:08x}",
                std::process::id(),
                fastrand::u32(..)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Scratch { dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::io(
                        "create a scratch directory (give another with a scratch option) in",
                        parent,
                        e,
                    ));
                }
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a scratch directory");
        }
    }
}
