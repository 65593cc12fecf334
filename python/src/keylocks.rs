//! Updates of one key from threads of this process take turns.
//!
//! `update` is optimistic: it reads, calls the function, and commits only if
//! the record is unchanged, else tries again. When several Python threads
//! update one hot key, the read-to-commit window includes waiting for the GIL
//! to call the function, so most attempts lose, and a thread that keeps losing
//! exhausts its retries (8 threads x 500 increments of one counter failed that
//! way). Within one handle those threads need not race at all: each update of
//! a key first takes that key's lock here, so they commit one after another
//! with no lost attempt. Writers elsewhere (other processes, `put`,
//! transactions) are still caught by the commit's version check.
//!
//! The wait is bounded: after `WAIT` the update goes ahead optimistically, so
//! nested updates from different threads in opposite key order cannot
//! deadlock. The lock is reentrant, so an update of a key inside the function
//! of an update of the same key does not wait for itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, ReentrantMutex, ReentrantMutexGuard};

/// How long an update waits for another thread's update of the same key.
const WAIT: Duration = Duration::from_secs(2);

type Key = (String, String);

/// The locks of the keys being updated now (entries go when unused).
#[derive(Default)]
pub(crate) struct KeyLocks {
    held: Mutex<HashMap<Key, Arc<ReentrantMutex<()>>>>,
}

/// A key's turn; ends when dropped.
pub(crate) struct Turn<'a> {
    locks: &'a KeyLocks,
    key: Key,
    lock: Option<Arc<ReentrantMutex<()>>>,
}

impl KeyLocks {
    /// Waits (at most `WAIT`) for this key's turn. Call it without the GIL.
    pub(crate) fn turn(&self, namespace: &str, key: &str) -> Turn<'_> {
        let key = (namespace.to_owned(), key.to_owned());
        let lock = Arc::clone(self.held.lock().entry(key.clone()).or_default());
        Turn {
            locks: self,
            key,
            lock: Some(lock),
        }
    }
}

impl Turn<'_> {
    /// Runs `f` during the turn.
    pub(crate) fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let guard: Option<ReentrantMutexGuard<'_, ()>> =
            self.lock.as_ref().and_then(|lock| lock.try_lock_for(WAIT));
        let out = f();
        drop(guard);
        out
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock();
        if let Some(lock) = self.lock.take() {
            // Only the table and this turn hold it: nobody waits, remove it.
            if Arc::strong_count(&lock) == 2 {
                held.remove(&self.key);
            }
        }
    }
}
