//! One budget, for the whole process, of threads that poll rather than sleep.
//!
//! Waking a sleeping thread costs tens of microseconds (a futex wake, and in a
//! VM an interrupt to a halted vCPU and its scheduling), so a short wait may
//! poll instead: a client for its commit's answer (`serve/channel.rs`), the
//! engine and the sync thread for each other's hand-off (`log/syncer.rs`). A
//! polling thread holds a core, so at most one thread fewer than the cores
//! polls at a time, whichever wait it is in (none on one core): a core is
//! always left to the threads doing the work.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A yield that took longer than this ran another thread: the machine is
/// busy, and a poller should sleep instead.
const GAVE_AWAY: Duration = Duration::from_micros(10);

/// Yields the core once, as a poller does now and then; whether that ran
/// another thread (the yield took longer than [`GAVE_AWAY`]).
pub(crate) fn yield_gave_core_away() -> bool {
    let before = Instant::now();
    std::thread::yield_now();
    before.elapsed() > GAVE_AWAY
}

/// How many threads may poll at once on a machine of `cores`.
pub(crate) fn pollers_allowed(cores: usize) -> usize {
    cores.saturating_sub(1)
}

/// Threads of this process polling now.
static POLLING: AtomicUsize = AtomicUsize::new(0);

/// A turn to poll, within [`pollers_allowed`]; given back when dropped.
pub(crate) struct PollTurn;

impl PollTurn {
    /// Takes a turn, if one is free.
    pub(crate) fn enter() -> Option<PollTurn> {
        static MOST: OnceLock<usize> = OnceLock::new();
        let most = *MOST.get_or_init(|| {
            pollers_allowed(std::thread::available_parallelism().map_or(1, |n| n.get()))
        });
        if POLLING.fetch_add(1, Ordering::Relaxed) < most {
            Some(PollTurn)
        } else {
            POLLING.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

impl Drop for PollTurn {
    fn drop(&mut self) {
        POLLING.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_core_is_always_left_to_the_work() {
        assert_eq!(pollers_allowed(0), 0);
        assert_eq!(pollers_allowed(1), 0);
        assert_eq!(pollers_allowed(2), 1);
        assert_eq!(pollers_allowed(8), 7);
    }
}
