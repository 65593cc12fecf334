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
//!
//! Waiting for the callers just released: when a batch costs a sync, the
//! callers a batch released are likely to commit again within microseconds
//! (a pipeline's writers, each with its next update). Without waiting, the
//! next batch takes only those who queued during the sync, and the released
//! ones wait out that whole batch and its sync (sixteen writers averaged 13.4
//! a batch without the wait, 15.9 with it; BENCHMARKS.md). So a leader whose
//! queue does not yet hold as many requests from after the release as the
//! release handed back waits for them, for at most about twice as long as
//! they took to come back the last time ([`company_window`]), and only when
//! the last time all of them came back. A lone writer is all its release
//! handed back, so it never waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

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

#[derive(Debug)]
struct Queue {
    pending: Vec<Arc<Slot>>,
    leading: bool,
    /// Requests queued since the store opened.
    arrivals: u64,
    /// The last release: [`Release::callers`] handed back after `arrivals`
    /// reached `mark`.
    release: Release,
    /// How long after its release the last release's callers were all back
    /// (`None`: not all came back before the release after it).
    last_return: Option<Duration>,
    /// Set while a leader waits for the released callers.
    leader_waits: bool,
    /// The longest wait for them ([`COMPANY_WAIT_MOST`]; tests lengthen it).
    wait_most: Duration,
}

/// The callers a synced batch handed back.
#[derive(Debug, Clone, Copy)]
struct Release {
    callers: u64,
    mark: u64,
    at: Instant,
    /// Whether all of them came back.
    back: bool,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            pending: Vec::new(),
            leading: false,
            arrivals: 0,
            release: Release {
                callers: 0,
                mark: 0,
                at: Instant::now(),
                back: true,
            },
            last_return: None,
            leader_waits: false,
            wait_most: COMPANY_WAIT_MOST,
        }
    }
}

impl Queue {
    /// Requests queued since the last release.
    fn returned(&self) -> u64 {
        self.arrivals - self.release.mark
    }
}

/// A leader waits for the callers released at most this long.
const COMPANY_WAIT_MOST: Duration = Duration::from_micros(200);
/// Added to the window: coming back varies.
const COMPANY_SLACK: Duration = Duration::from_micros(20);

/// How long after a release a leader waits for the callers it handed back:
/// twice as long as they took to come back the last time, and a little more,
/// within `most`; not at all when not all of them came back the last time.
fn company_window(last_return: Option<Duration>, most: Duration) -> Duration {
    match last_return {
        Some(took) => (took * 2 + COMPANY_SLACK).min(most),
        None => Duration::ZERO,
    }
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
    /// A waiting leader sleeps on this for the callers released.
    company: Condvar,
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
            queue.arrivals += 1;
            if !queue.release.back && queue.returned() >= queue.release.callers {
                queue.release.back = true;
                queue.last_return = Some(queue.release.at.elapsed());
                if queue.leader_waits {
                    self.company.notify_one();
                }
            }
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

    /// Runs one batch: everything queued now (our own request included),
    /// once the callers of the last release are back or their window passed.
    fn lead(&self, leader: &impl Leader) {
        let batch = {
            let mut queue = self.queue.lock();
            if leader.syncs() && !queue.release.back {
                let window = company_window(queue.last_return, queue.wait_most);
                if window > Duration::ZERO {
                    let deadline = queue.release.at + window;
                    queue.leader_waits = true;
                    while !queue.release.back {
                        if self.company.wait_until(&mut queue, deadline).timed_out() {
                            break;
                        }
                    }
                    queue.leader_waits = false;
                }
            }
            std::mem::take(&mut queue.pending)
        };
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
            self.release(batch.len() as u64);
            self.deliver(batch, results);
            self.pass_leadership();
        } else {
            self.pass_leadership();
            self.deliver(batch, results);
        }
    }

    /// Marks the release of a synced batch's `callers`, before they are woken.
    fn release(&self, callers: u64) {
        let mut queue = self.queue.lock();
        if !queue.release.back {
            // Not all of the last release came back before this one.
            queue.last_return = None;
        }
        queue.release = Release {
            callers,
            mark: queue.arrivals,
            at: Instant::now(),
            // One caller with nobody queued is a lone writer: it never
            // waits for company.
            back: callers == 0 || (callers == 1 && queue.pending.is_empty()),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records each batch's size; every request gets the same recognisable
    /// error, so that each caller can tell it got an answer.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<usize>>,
        syncs: bool,
    }

    impl Leader for Recorder {
        fn run_batch(&self, requests: &[&Request]) -> Vec<Result<Outcome>> {
            self.batches.lock().push(requests.len());
            requests
                .iter()
                .map(|_| {
                    Err(Error::Poisoned {
                        cause: "recorded".to_owned(),
                    })
                })
                .collect()
        }

        fn syncs(&self) -> bool {
            self.syncs
        }
    }

    fn commit(committer: &Committer, leader: &Recorder) {
        let result = committer.commit(leader, Arc::new(Request::default()));
        assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}");
    }

    /// A committer whose last synced batch released `callers`, who all came
    /// back in `last_return` the time before; waits last up to a minute.
    fn released(callers: u64, last_return: Option<Duration>) -> Committer {
        let committer = Committer::default();
        {
            let mut queue = committer.queue.lock();
            queue.wait_most = Duration::from_secs(60);
            queue.last_return = last_return;
            queue.release = Release {
                callers,
                mark: 0,
                at: Instant::now(),
                back: false,
            };
        }
        committer
    }

    #[test]
    fn the_window_is_twice_the_last_return_within_its_bound_and_none_after_a_straggler() {
        let most = COMPANY_WAIT_MOST;
        assert_eq!(company_window(None, most), Duration::ZERO);
        let quick = Duration::from_micros(30);
        let window = company_window(Some(quick), most);
        assert!(window >= quick * 2 && window <= most, "{window:?}");
        assert_eq!(company_window(Some(most), most), most);
    }

    #[test]
    fn a_leader_waits_for_the_callers_released_and_takes_them_in_one_batch() {
        let leader = Recorder {
            syncs: true,
            ..Recorder::default()
        };
        let committer = released(3, Some(Duration::from_secs(30)));
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| commit(&committer, &leader));
                // Arrivals spread out: without the wait, the first would lead
                // a batch of its own.
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert_eq!(*leader.batches.lock(), vec![3]);
        let queue = committer.queue.lock();
        assert!(queue.last_return.is_some());
        // The batch released three again, none back yet.
        assert_eq!((queue.release.callers, queue.release.back), (3, false));
    }

    #[test]
    fn no_wait_when_the_last_release_did_not_all_come_back() {
        let leader = Recorder {
            syncs: true,
            ..Recorder::default()
        };
        let committer = released(3, None);
        let started = Instant::now();
        commit(&committer, &leader);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(*leader.batches.lock(), vec![1]);
        // Two of the three never came back: the next release learns no
        // return time, so nobody waits for them.
        commit(&committer, &leader);
        assert!(committer.queue.lock().last_return.is_none());
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_lone_writer_never_waits_and_nothing_waits_without_a_sync() {
        for syncs in [true, false] {
            let leader = Recorder {
                syncs,
                ..Recorder::default()
            };
            let committer = Committer::default();
            committer.queue.lock().wait_most = Duration::from_secs(60);
            let started = Instant::now();
            for _ in 0..100 {
                commit(&committer, &leader);
            }
            assert!(started.elapsed() < Duration::from_secs(30));
            assert_eq!(*leader.batches.lock(), vec![1; 100]);
        }
        // Without a sync, a released batch is never waited for.
        let leader = Recorder::default();
        let committer = released(3, Some(Duration::from_secs(30)));
        let started = Instant::now();
        commit(&committer, &leader);
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn writers_in_a_loop_share_batches_and_each_gets_its_own_result() {
        let leader = Recorder {
            syncs: true,
            ..Recorder::default()
        };
        let committer = Committer::default();
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        commit(&committer, &leader);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::Relaxed), 2000);
        let batches = leader.batches.lock();
        assert_eq!(batches.iter().sum::<usize>(), 2000);
        assert!(batches.iter().all(|&n| (1..=4).contains(&n)), "{batches:?}");
    }
}
