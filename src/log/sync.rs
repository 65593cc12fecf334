//! The one way the log's files are synced: through a [`SyncGate`], which
//! lets one sync run at a time and remembers the first failure.
//!
//! IMPORTANT: after a failed `fdatasync` the kernel may have dropped the pages
//! it could not write and still report the next sync of the same file as a
//! success. Syncs run outside the engine's lock (a batch's sync overlaps the
//! next batch being written), so a later sync could otherwise return success
//! before the engine has learnt of the failure, and a checkpoint or a later
//! batch would then trust a log that lost data. The gate closes that window:
//! once a sync through it failed, every later one fails too, until the store
//! is reopened (which reads the log back to learn what is durable).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::fs::FileHandle;

/// Serializes the log's syncs, makes their first failure permanent, and
/// holds the revision up to which the log is durable.
#[derive(Debug)]
pub(crate) struct SyncGate {
    /// Why a sync failed, once one did. Held during each sync.
    failed: Mutex<Option<(io::ErrorKind, String)>>,
    /// The log is durable up to this revision.
    synced: AtomicU64,
    /// The last complete commit written to the active segment.
    written: AtomicU64,
    /// Counts the active segments: a sync of an older one does not cover
    /// what was written since.
    generation: AtomicU64,
}

impl SyncGate {
    /// A gate for a log durable up to `revision`.
    pub(crate) fn new(revision: u64) -> SyncGate {
        SyncGate {
            failed: Mutex::new(None),
            synced: AtomicU64::new(revision),
            written: AtomicU64::new(revision),
            generation: AtomicU64::new(0),
        }
    }

    /// The writer wrote commits up to `revision` into the active segment
    /// (every byte of them is in the file).
    pub(crate) fn wrote(&self, revision: u64) {
        self.written.store(revision, Ordering::Release);
    }

    /// The writer switched to a new active segment (before writing into it).
    pub(crate) fn new_segment(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The active segment's generation, for [`sync_up_to`](Self::sync_up_to).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The revision up to which the log is known to be durable.
    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Records that everything up to `revision` is durable (a sync that did
    /// not go through [`sync`](Self::sync): a new segment written whole).
    pub(crate) fn note(&self, revision: u64) {
        self.synced.fetch_max(revision, Ordering::AcqRel);
    }

    /// Syncs `file`, whose writes make the log complete up to `revision`;
    /// fails without syncing once any sync through this gate failed.
    pub(crate) fn sync(&self, file: &dyn FileHandle, revision: u64) -> io::Result<()> {
        self.sync_with(|| file.sync_data(), revision)
    }

    /// Runs `sync` (a sync of the log's files that makes the log durable up
    /// to `revision`) under the gate.
    pub(crate) fn sync_with(
        &self,
        sync: impl FnOnce() -> io::Result<()>,
        revision: u64,
    ) -> io::Result<()> {
        let mut failed = self.failed.lock();
        if let Some((kind, why)) = &*failed {
            return Err(io::Error::new(
                *kind,
                format!("an earlier sync of the log failed ({why}); reopen the store"),
            ));
        }
        match sync() {
            Ok(()) => {
                self.note(revision);
                Ok(())
            }
            Err(e) => {
                *failed = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Makes the log durable up to `revision`, written into `file` (the
    /// active segment of `generation`), unless a sync already did. A sync
    /// covers everything written to the file before it starts: commits
    /// written while an earlier sync ran ride on this one.
    pub(crate) fn sync_up_to(
        &self,
        file: &dyn FileHandle,
        revision: u64,
        generation: u64,
    ) -> io::Result<()> {
        // Bytes a successful sync covered stay durable whatever failed since.
        if self.synced() >= revision {
            return Ok(());
        }
        let mut failed = self.failed.lock();
        if self.synced() >= revision {
            return Ok(());
        }
        // Read before the generation: a commit written into a newer segment
        // was written after that segment's generation was counted.
        let written = self.written.load(Ordering::Acquire);
        let covers = if self.generation() == generation {
            written.max(revision)
        } else {
            revision
        };
        if let Some((kind, why)) = &*failed {
            return Err(io::Error::new(
                *kind,
                format!("an earlier sync of the log failed ({why}); reopen the store"),
            ));
        }
        match file.sync_data() {
            Ok(()) => {
                self.note(covers);
                Ok(())
            }
            Err(e) => {
                *failed = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug, Default)]
    struct Counted {
        syncs: AtomicUsize,
        fail_next: std::sync::atomic::AtomicBool,
    }

    impl FileHandle for Counted {
        fn read_at(&self, _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
            Ok(0)
        }
        fn write_at(&self, buf: &[u8], _offset: u64) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn sync_data(&self) -> io::Result<()> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return Err(io::Error::other("injected"));
            }
            Ok(())
        }
        fn set_len(&self, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(0)
        }
    }

    #[test]
    fn a_failed_sync_fails_every_later_one_without_syncing() {
        let gate = SyncGate::new(3);
        let file = Counted::default();
        gate.sync(&file, 4).unwrap();
        assert_eq!(gate.synced(), 4);
        file.fail_next.store(true, Ordering::SeqCst);
        assert!(gate.sync(&file, 5).is_err());
        assert_eq!(gate.synced(), 4);
        // The file would sync fine now; the gate does not let it.
        let err = gate.sync(&file, 6).unwrap_err();
        assert!(err.to_string().contains("reopen"), "{err}");
        gate.sync_up_to(&file, 4, 0).unwrap();
        assert_eq!(file.syncs.load(Ordering::SeqCst), 2);
        assert_eq!(gate.synced(), 4);
    }

    #[test]
    fn a_revision_already_synced_costs_no_sync() {
        let gate = SyncGate::new(0);
        let file = Counted::default();
        gate.sync_up_to(&file, 7, 0).unwrap();
        gate.sync_up_to(&file, 7, 0).unwrap();
        gate.sync_up_to(&file, 5, 0).unwrap();
        assert_eq!(file.syncs.load(Ordering::SeqCst), 1);
        gate.sync_up_to(&file, 8, 0).unwrap();
        assert_eq!(file.syncs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_sync_covers_what_was_written_to_its_segment_before_it_started() {
        let gate = SyncGate::new(0);
        let file = Counted::default();
        gate.wrote(3);
        gate.sync_up_to(&file, 1, 0).unwrap();
        assert_eq!(gate.synced(), 3);
        gate.sync_up_to(&file, 2, 0).unwrap();
        gate.sync_up_to(&file, 3, 0).unwrap();
        assert_eq!(file.syncs.load(Ordering::SeqCst), 1);
        // Written into a newer segment: a sync of the old one covers only
        // what it was asked for.
        gate.new_segment();
        gate.wrote(9);
        gate.sync_up_to(&file, 5, 0).unwrap();
        assert_eq!(gate.synced(), 5);
        gate.sync_up_to(&file, 6, 1).unwrap();
        assert_eq!(gate.synced(), 9);
        assert_eq!(file.syncs.load(Ordering::SeqCst), 3);
    }
}
