//! A thread that runs the log's sync of a batch while the engine applies the
//! batch to the state database: redb's apply and commit then overlap the
//! whole sync (the disk's write and its flush), not only the write.
//!
//! One job at a time: the engine starts a sync, does its work, and waits for
//! the sync's outcome before it publishes anything.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// A sync to run (the gate orders it with every other sync of the log).
pub(crate) type Job = Box<dyn FnOnce() -> Result<()> + Send>;

/// The sync thread, stopped and joined when dropped.
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    job: Option<Job>,
    done: Option<Result<()>>,
    stop: bool,
}

impl Syncer {
    /// Starts the thread.
    pub(crate) fn spawn() -> std::io::Result<Syncer> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("statelog-sync".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared)
            })?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands `job` to the thread; [`wait`](Self::wait) returns its outcome.
    pub(crate) fn start(&self, job: Job) {
        let mut state = self.shared.state.lock();
        state.job = Some(job);
        state.done = None;
        self.shared.changed.notify_all();
    }

    /// Waits for the job started last and returns its outcome.
    pub(crate) fn wait(&self) -> Result<()> {
        let mut state = self.shared.state.lock();
        loop {
            if let Some(done) = state.done.take() {
                return done;
            }
            self.shared.changed.wait(&mut state);
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread catches its jobs' panics: it ends when told to.
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    let mut state = shared.state.lock();
    loop {
        if let Some(job) = state.job.take() {
            let done = MutexGuard::unlocked(&mut state, || {
                catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|_| {
                    Err(Error::Poisoned {
                        cause: "internal error: the log's sync panicked".to_owned(),
                    })
                })
            });
            state.done = Some(done);
            shared.changed.notify_all();
            continue;
        }
        if state.stop {
            return;
        }
        shared.changed.wait(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_wait_returns_the_outcome_of_the_job_started_before_it() {
        let syncer = Syncer::spawn().unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for round in 0..100 {
            let counted = Arc::clone(&ran);
            syncer.start(Box::new(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if round % 3 == 0 {
                    Err(Error::Poisoned {
                        cause: format!("round {round}"),
                    })
                } else {
                    Ok(())
                }
            }));
            match syncer.wait() {
                Ok(()) => assert_ne!(round % 3, 0),
                Err(e) => assert!(e.to_string().contains(&format!("round {round}")), "{e}"),
            }
            assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), round + 1);
        }
        syncer.start(Box::new(|| panic!("a sync that panics")));
        assert!(syncer.wait().is_err());
        drop(syncer);
    }
}
