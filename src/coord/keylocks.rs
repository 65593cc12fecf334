//! Same-key `update`s of one process take turns.
//!
//! An update reads, runs the caller's closure, and commits only if the
//! record is unchanged. Threads of one process updating one hot record would
//! otherwise mostly collide: each commit invalidates what all the others
//! read, so closures run many times and a thread can exhaust its retries.
//! Queued here, each update reads what the one before it wrote and commits at
//! once; the commit's check still guards against other processes.
//!
//! The wait is bounded (then the update goes ahead unqueued, guarded by its
//! check as before), and a thread that already holds a key's turn (an update
//! inside another update's closure) does not wait for itself.

use std::collections::HashMap;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Whose turn each key is.
#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    held: Mutex<HashMap<Vec<u8>, ThreadId>>,
    freed: Condvar,
}

/// A key's turn; the next waiter's comes when it is dropped.
pub(crate) struct Turn<'a> {
    locks: &'a KeyLocks,
    address: Option<Vec<u8>>,
}

impl KeyLocks {
    /// Waits (at most `limit`) for `address`'s turn.
    pub(crate) fn turn(&self, address: &[u8], limit: Duration) -> Turn<'_> {
        let me = std::thread::current().id();
        let deadline = Instant::now() + limit;
        let mut held = self.held.lock();
        loop {
            match held.get(address) {
                None => {
                    held.insert(address.to_vec(), me);
                    return Turn {
                        locks: self,
                        address: Some(address.to_vec()),
                    };
                }
                Some(owner) if *owner == me => {
                    return Turn {
                        locks: self,
                        address: None,
                    };
                }
                Some(_) => {
                    if self.freed.wait_until(&mut held, deadline).timed_out() {
                        return Turn {
                            locks: self,
                            address: None,
                        };
                    }
                }
            }
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(address) = self.address.take() {
            self.locks.held.lock().remove(&address);
            self.locks.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_thread_at_a_time_per_key_and_reentrant() {
        let locks = Arc::new(KeyLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside) = (Arc::clone(&locks), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _turn = locks.turn(b"k", Duration::from_secs(60));
                        let _again = locks.turn(b"k", Duration::from_secs(60));
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread saw another inside");
        }
        assert!(locks.held.lock().is_empty());
    }
}
