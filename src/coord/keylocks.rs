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

use std::collections::{HashMap, VecDeque};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Whose turn each key is.
#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    held: Mutex<HashMap<Vec<u8>, Key>>,
    freed: Condvar,
}

/// A key in use: who has its turn and who waits for it, in arrival order.
/// Turns are handed to the oldest waiter rather than taken by whoever runs
/// first: a thread that gives the key up and asks again at once would
/// otherwise win it back before the woken waiters run, and a waiter could
/// go without a turn for hundreds of updates.
#[derive(Debug)]
struct Key {
    owner: Option<ThreadId>,
    waiting: VecDeque<u64>,
    next_ticket: u64,
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
        let ticket = match held.get_mut(address) {
            None => {
                held.insert(
                    address.to_vec(),
                    Key {
                        owner: Some(me),
                        waiting: VecDeque::new(),
                        next_ticket: 0,
                    },
                );
                return self.granted(address);
            }
            Some(key) if key.owner == Some(me) => return self.unqueued(),
            Some(key) => {
                let ticket = key.next_ticket;
                key.next_ticket += 1;
                key.waiting.push_back(ticket);
                ticket
            }
        };
        loop {
            let timed_out = self.freed.wait_until(&mut held, deadline).timed_out();
            let Some(key) = held.get_mut(address) else {
                // Unreachable while this ticket waits in the key's queue.
                return self.unqueued();
            };
            if key.owner.is_none() && key.waiting.front() == Some(&ticket) {
                key.waiting.pop_front();
                key.owner = Some(me);
                return self.granted(address);
            }
            if timed_out {
                key.waiting.retain(|&t| t != ticket);
                if key.owner.is_none() {
                    // The turn was free and waited for this ticket's
                    // predecessors: pass it on, or let the key go.
                    if key.waiting.is_empty() {
                        held.remove(address);
                    } else {
                        self.freed.notify_all();
                    }
                }
                return self.unqueued();
            }
        }
    }

    fn granted(&self, address: &[u8]) -> Turn<'_> {
        Turn {
            locks: self,
            address: Some(address.to_vec()),
        }
    }

    fn unqueued(&self) -> Turn<'_> {
        Turn {
            locks: self,
            address: None,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(address) = self.address.take() {
            let mut held = self.locks.held.lock();
            match held.get_mut(&address) {
                Some(key) if !key.waiting.is_empty() => {
                    key.owner = None;
                    drop(held);
                    self.locks.freed.notify_all();
                }
                _ => {
                    held.remove(&address);
                }
            }
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

    #[test]
    fn a_thread_that_gives_a_key_up_and_asks_again_waits_behind_the_waiters() {
        let locks = Arc::new(KeyLocks::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = locks.turn(b"k", Duration::from_secs(60));
        let waiter = {
            let (locks, order) = (Arc::clone(&locks), Arc::clone(&order));
            std::thread::spawn(move || {
                let _turn = locks.turn(b"k", Duration::from_secs(60));
                order.lock().push("waiter");
            })
        };
        while locks
            .held
            .lock()
            .get(&b"k"[..])
            .map_or(0, |k| k.waiting.len())
            == 0
        {
            std::thread::yield_now();
        }
        drop(first);
        let again = locks.turn(b"k", Duration::from_secs(60));
        order.lock().push("again");
        drop(again);
        waiter.join().expect("the waiter got its turn");
        assert_eq!(*order.lock(), ["waiter", "again"]);
        assert!(locks.held.lock().is_empty());
    }
}
