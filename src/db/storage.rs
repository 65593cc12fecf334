//! The storage the state database runs on: its file (through the file
//! system boundary, `Fs::db_backend`) behind a fence.

use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The file's storage, handed to redb (which takes a backend by value).
///
/// The fence (the second field), once raised, makes the backend refuse every
/// change. The engine raises it when it is poisoned: redb makes its pending
/// non-durable commits durable when the database is dropped, and after a failed
/// log sync those commits may include some the durable log does not have; the
/// state database must never get ahead of the log (invariant 4).
#[derive(Debug)]
pub(crate) struct Fenced(
    pub(crate) Box<dyn redb::StorageBackend>,
    pub(crate) Arc<AtomicBool>,
);

impl Fenced {
    fn check_fence(&self) -> io::Result<()> {
        if self.1.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "the store refuses writes after an earlier failure; reopen it",
            ));
        }
        Ok(())
    }
}

impl redb::StorageBackend for Fenced {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_fence()?;
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.check_fence()?;
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check_fence()?;
        self.0.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.query_lock_range(start, end)
    }
}
