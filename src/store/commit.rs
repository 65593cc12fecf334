//! Group commit: threads that commit at the same time share one log write and
//! one sync.
//!
//! A committing thread queues its request. If no thread is leading, it becomes
//! the leader at once (a lone writer never waits for company), takes every
//! queued request as one batch, and runs it through the engine. Requests that
//! arrive meanwhile wait; when the batch is done the leader hands each waiter
//! its own result and passes leadership to the oldest waiting request, whose
//! thread takes all that queued up during the previous sync as the next batch.
//! Handing over, rather than leading on, bounds every caller's latency to its
//! own batch and the one before.
//!
//! A lone writer finds the queue empty and leads at once: it never waits for
//! company.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::access::request::{Outcome, Request};
use crate::error::Result;

/// Counts what the committer does, for [`Stats`](crate::Stats).
#[derive(Debug, Default)]
pub(crate) struct BatchCounters {
    pub batches: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
enum State {
    Waiting,
    Lead,
    Done(Result<Outcome>),
}

#[derive(Debug)]
struct Slot {
    request: Arc<Request>,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Vec<Arc<Slot>>,
    leading: bool,
}

/// What the leader runs a batch through: the engine.
pub(crate) trait Leader {
    /// Commits a batch; one result per request, in order.
    fn run_batch(&self, requests: &[&Request]) -> Vec<Result<Outcome>>;
    /// Whether a batch costs a sync (`Durability::Sync`): then the leader
    /// wakes its callers before passing the leadership on.
    fn syncs(&self) -> bool;
}

/// The group-commit queue of one store.
#[derive(Debug, Default)]
pub(crate) struct Committer {
    queue: Mutex<Queue>,
    pub counters: BatchCounters,
}

impl Committer {
    /// Commits `request` (possibly together with others) and returns its result.
    pub(crate) fn commit(&self, leader: &impl Leader, request: Arc<Request>) -> Result<Outcome> {
        let slot = Arc::new(Slot {
            request,
            state: Mutex::new(State::Waiting),
            wake: Condvar::new(),
        });
        let lead_now = {
            let mut queue = self.queue.lock();
            queue.pending.push(Arc::clone(&slot));
            if queue.leading {
                false
            } else {
                queue.leading = true;
                true
            }
        };
        if !lead_now {
            let mut state = slot.state.lock();
            loop {
                match std::mem::replace(&mut *state, State::Waiting) {
                    State::Waiting => slot.wake.wait(&mut state),
                    State::Done(result) => return result,
                    State::Lead => break,
                }
            }
        }
        self.lead(leader);
        let mut state = slot.state.lock();
        match std::mem::replace(&mut *state, State::Waiting) {
            State::Done(result) => result,
            // Our request was in the batch we led, so it has a result.
            State::Waiting | State::Lead => unreachable_result(),
        }
    }

    /// Runs one batch: everything queued now (our own request included).
    fn lead(&self, leader: &impl Leader) {
        let batch = std::mem::take(&mut self.queue.lock().pending);
        let requests: Vec<&Request> = batch.iter().map(|slot| &*slot.request).collect();
        let results = leader.run_batch(&requests);
        self.counters
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Who goes first, the next batch or this batch's callers? When a batch
        // costs a sync, waking this batch's callers first lets them queue up
        // again and join the next batch (measured: larger batches, more commits
        // per second). Without a sync, starting the next batch at once wins.
        if leader.syncs() {
            self.deliver(batch, results);
            self.pass_leadership();
        } else {
            self.pass_leadership();
            self.deliver(batch, results);
        }
    }

    fn deliver(&self, batch: Vec<Arc<Slot>>, results: Vec<Result<Outcome>>) {
        for (slot, result) in batch.iter().zip(results) {
            *slot.state.lock() = State::Done(result);
            slot.wake.notify_one();
        }
    }

    fn pass_leadership(&self) {
        let mut queue = self.queue.lock();
        match queue.pending.first() {
            None => queue.leading = false,
            Some(next) => {
                *next.state.lock() = State::Lead;
                next.wake.notify_one();
            }
        }
    }
}

#[cold]
fn unreachable_result() -> Result<Outcome> {
    Err(crate::Error::Poisoned {
        cause: "internal error: a led batch returned no result for its leader".to_owned(),
    })
}
