//! A thread that runs the log's sync of a batch while the engine applies the
//! batch to the state database: redb's apply and commit then overlap the
//! whole sync (the disk's write and its flush), not only the write.
//!
//! One job at a time: the engine starts a sync, does its work, and waits for
//! the sync's outcome before it publishes anything.
//!
//! Both hand-offs may spin before they sleep. Waking a sleeping thread costs
//! tens of microseconds here (a futex wake, and in a VM an interrupt to a
//! halted vCPU and its scheduling), as much as redb's work the thread is
//! there to overlap. So the engine, waiting for a sync's outcome, polls it
//! for about as long as the last sync took ([`wait_window`]), and the thread,
//! done with a sync, polls for the next job for about twice the last gap
//! between jobs ([`idle_window`]); each only when that time was short, and
//! only while cores are spare (the process's one budget of polling threads,
//! `poll_turn`, shared with the remote client's polls), and a spin that finds
//! another thread wanting its core (a yield that gave the core away) sleeps
//! at once and sits out the next hand-offs ([`Backoff`]). While the thread
//! polls, the engine leaves out the writeback hint
//! ([`Syncer::picks_up_at_once`]).
//!
//! The turn to poll passes from one side to the other at each hand-off: the
//! engine polls for a sync's outcome until the thread delivers it, and the
//! thread, which then polls for the next job, usually asks for the turn
//! before the engine has seen the outcome and given the turn back. So the
//! thread waits a little for a turn the engine holds ([`TURN_WAIT_MOST`])
//! rather than go to sleep: asleep, its next job would cost the engine the
//! writeback hint and a wake-up, and the sync a thread's scheduling.
//!
//! The thread that sleeps anyway (it sat out, or its gap was long) is woken
//! when a batch begins ([`Syncer::expect`]) rather than when its job is
//! posted: its wake-up then overlaps the batch's check and log write, and it
//! polls for the job that follows within microseconds.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// A sync the thread runs. Kept in the thread's slot between batches, so a
/// batch may update the last one in place (handing over allocates nothing).
pub(crate) trait Job: Send + 'static {
    /// Runs the sync.
    fn run(&mut self) -> Result<()>;
}

/// A sync that took longer than this is not polled for the next time: the
/// wake-up is then a small part of the wait.
pub(crate) const WAIT_SPIN_MOST: Duration = Duration::from_micros(500);
/// The thread polls for its next job only when the last one came within
/// this of the sync before it, and for at most this long.
pub(crate) const IDLE_SPIN_MOST: Duration = Duration::from_micros(300);
/// Added to each window: a sync's time, and a gap, vary.
const SPIN_SLACK: Duration = Duration::from_micros(20);
/// How long a thread woken ahead of its job ([`Syncer::expect`]) polls for
/// it before it sleeps again.
pub(crate) const EXPECT_SPIN_MOST: Duration = Duration::from_micros(100);
/// How long the sync thread waits for the turn to poll while the engine,
/// which polled for the outcome just delivered, is about to give it back.
pub(crate) const TURN_WAIT_MOST: Duration = Duration::from_micros(20);
/// A spinning thread yields this often, to find out whether another thread
/// wants its core.
const YIELD_EVERY: Duration = Duration::from_micros(10);
/// After this many spins in a row gave their core away, a side sleeps through
/// the most hand-offs without spinning (2 to the power of it).
const SIT_OUT_SHIFT_MOST: u32 = 8;

/// How long the engine polls for a sync's outcome, counted from the sync's
/// start: half as long again as the last sync took and a little more, when
/// that was at most [`WAIT_SPIN_MOST`]; otherwise not at all.
pub(crate) fn wait_window(last_sync: Option<Duration>) -> Duration {
    match last_sync {
        Some(took) if took <= WAIT_SPIN_MOST => took + took / 2 + SPIN_SLACK,
        _ => Duration::ZERO,
    }
}

/// How long the thread polls for its next job after a sync, counted from the
/// sync's end: twice the last gap between a sync's end and the next job, and
/// a little more, within [`IDLE_SPIN_MOST`]; not at all when that gap was
/// longer.
pub(crate) fn idle_window(last_gap: Option<Duration>) -> Duration {
    match last_gap {
        Some(gap) if gap <= IDLE_SPIN_MOST => (gap * 2 + SPIN_SLACK).min(IDLE_SPIN_MOST),
        _ => Duration::ZERO,
    }
}

/// Whether one side of the hand-off spins, from what its spins met. A spin
/// that gave its core away (another thread wanted it: the machine is busy)
/// makes the side sleep through the next 2 hand-offs without spinning, the
/// next one in a row 4, and so on up to 256: a spinner preempted on a busy
/// machine waits for its turn on a core, where a sleeper woken would have
/// been run first. A spin that caught its hand-off starts again.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Backoff {
    crowded_in_a_row: u32,
    sit_out: u32,
}

impl Backoff {
    /// Whether this hand-off may spin (one sat out when not).
    pub(crate) fn allows(&mut self) -> bool {
        if self.sit_out > 0 {
            self.sit_out -= 1;
            false
        } else {
            true
        }
    }

    /// Learns from how a spin ended.
    pub(crate) fn spun(&mut self, spun: Spun) {
        match spun {
            Spun::Ready => self.crowded_in_a_row = 0,
            Spun::Expired => {}
            Spun::Crowded => {
                self.crowded_in_a_row = (self.crowded_in_a_row + 1).min(SIT_OUT_SHIFT_MOST);
                self.sit_out = 1 << self.crowded_in_a_row;
            }
        }
    }
}

/// How a spin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spun {
    /// The flag was set.
    Ready,
    /// The deadline passed first (or no turn to spin was free).
    Expired,
    /// A yield gave the core to another thread: the machine is busy.
    Crowded,
}

/// Polls `flag` until it is set or `deadline` passes, yielding every
/// [`YIELD_EVERY`]; gives up when a yield ran another thread. With no turn
/// to poll free, it waits for one for at most `turn_wait` (watching `flag`
/// meanwhile), then gives up.
pub(crate) fn spin_until(flag: &AtomicBool, deadline: Instant, turn_wait: Duration) -> Spun {
    if flag.load(Ordering::Acquire) {
        return Spun::Ready;
    }
    let mut turn_by = None;
    loop {
        if let Some(_turn) = crate::poll_turn::PollTurn::enter() {
            return spin(flag, deadline);
        }
        for _ in 0..16 {
            if flag.load(Ordering::Acquire) {
                return Spun::Ready;
            }
            std::hint::spin_loop();
        }
        let now = Instant::now();
        let turn_by = *turn_by.get_or_insert_with(|| deadline.min(now + turn_wait));
        if now >= turn_by {
            return Spun::Expired;
        }
    }
}

/// [`spin_until`] once the turn is taken.
fn spin(flag: &AtomicBool, deadline: Instant) -> Spun {
    let mut yielded = Instant::now();
    loop {
        for _ in 0..64 {
            if flag.load(Ordering::Acquire) {
                return Spun::Ready;
            }
            std::hint::spin_loop();
        }
        let now = Instant::now();
        if now >= deadline {
            return Spun::Expired;
        }
        if now.duration_since(yielded) >= YIELD_EVERY {
            if crate::poll_turn::yield_gave_core_away() {
                return Spun::Crowded;
            }
            yielded = Instant::now();
        }
    }
}

/// The sync thread, stopped and joined when dropped.
pub(crate) struct Syncer<J: Job> {
    shared: Arc<Shared<J>>,
    thread: Option<JoinHandle<()>>,
    /// The engine's side of the hand-off: what its last wait learnt.
    waits: std::cell::Cell<Learnt>,
    /// When the engine posted its last job.
    posted_at: std::cell::Cell<Instant>,
}

impl<J: Job> std::fmt::Debug for Syncer<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer").finish_non_exhaustive()
    }
}

/// What one side learnt from its waits: how long the thing it waited for
/// took last time, and whether it spins.
#[derive(Debug, Clone, Copy, Default)]
struct Learnt {
    took: Option<Duration>,
    backoff: Backoff,
}

struct Shared<J> {
    /// Set when a job is posted; cleared by the thread when it takes it.
    posted: AtomicBool,
    /// Set while the thread polls for its next job.
    polling: AtomicBool,
    /// Set while the engine polls for an outcome (and holds a turn to).
    engine_polling: AtomicBool,
    /// Set when the posted job's outcome is in; cleared by the next post.
    finished: AtomicBool,
    state: Mutex<State<J>>,
    /// The thread sleeps on this for a job.
    to_thread: Condvar,
    /// The engine sleeps on this for an outcome.
    to_engine: Condvar,
}

struct State<J> {
    /// The last job, kept for the next (`None` until the first, or after a
    /// job panicked).
    job: Option<J>,
    /// When the job was posted.
    posted_at: Instant,
    /// The outcome of the job posted last, once it ran.
    outcome: Option<Result<()>>,
    /// How long that job's sync took.
    took: Duration,
    thread_asleep: bool,
    /// Set by [`Syncer::expect`] when it woke the sleeping thread ahead of
    /// its job; cleared by the thread.
    expected: bool,
    /// How many times the thread woke ahead of a job.
    woken_ahead: u64,
    engine_asleep: bool,
    stop: bool,
}

impl<J: Job> Syncer<J> {
    /// Starts the thread.
    pub(crate) fn spawn() -> std::io::Result<Syncer<J>> {
        let shared = Arc::new(Shared {
            posted: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            engine_polling: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            state: Mutex::new(State {
                job: None,
                posted_at: Instant::now(),
                outcome: None,
                took: Duration::ZERO,
                thread_asleep: false,
                expected: false,
                woken_ahead: 0,
                engine_asleep: false,
                stop: false,
            }),
            to_thread: Condvar::new(),
            to_engine: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("statelog-sync".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared)
            })?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
            waits: std::cell::Cell::new(Learnt::default()),
            posted_at: std::cell::Cell::new(Instant::now()),
        })
    }

    /// Posts a job: `prepare` gets the slot holding the last job (`None` at
    /// first) and leaves the job to run in it. [`wait`](Self::wait)
    /// returns its outcome.
    pub(crate) fn start(&self, prepare: impl FnOnce(&mut Option<J>)) {
        let mut state = self.shared.state.lock();
        prepare(&mut state.job);
        state.outcome = None;
        state.posted_at = Instant::now();
        self.posted_at.set(state.posted_at);
        self.shared.finished.store(false, Ordering::Relaxed);
        self.shared.posted.store(true, Ordering::Release);
        if state.thread_asleep {
            self.shared.to_thread.notify_one();
        }
    }

    /// Tells the thread that a job is on its way (a batch is being checked
    /// and written): a sleeping thread is woken now and polls for the job
    /// for at most [`EXPECT_SPIN_MOST`], so that its wake-up overlaps the
    /// batch's preparation instead of following the post, and the post
    /// finds it polling (no writeback hint, no wake-up on the batch's path).
    pub(crate) fn expect(&self) {
        if self.shared.polling.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.shared.state.lock();
        if state.thread_asleep && !state.expected {
            state.expected = true;
            self.shared.to_thread.notify_one();
        }
    }

    /// Whether the thread is polling for a job now: one posted now starts
    /// within microseconds. A hint: the thread may stop polling at once.
    pub(crate) fn picks_up_at_once(&self) -> bool {
        self.shared.polling.load(Ordering::Relaxed)
    }

    /// Waits for the job posted last and returns its outcome.
    pub(crate) fn wait(&self) -> Result<()> {
        let mut learnt = self.waits.get();
        let window = wait_window(learnt.took);
        if window > Duration::ZERO && learnt.backoff.allows() {
            // Counted from the post: the engine's own work overlapped part
            // of the sync already.
            let deadline = self.posted_at.get() + window;
            self.shared.engine_polling.store(true, Ordering::Relaxed);
            let spun = spin_until(&self.shared.finished, deadline, Duration::ZERO);
            self.shared.engine_polling.store(false, Ordering::Relaxed);
            learnt.backoff.spun(spun);
        }
        let mut state = self.shared.state.lock();
        loop {
            if let Some(outcome) = state.outcome.take() {
                learnt.took = Some(state.took);
                self.waits.set(learnt);
                return outcome;
            }
            state.engine_asleep = true;
            self.shared.to_engine.wait(&mut state);
            state.engine_asleep = false;
        }
    }
}

impl<J: Job> Drop for Syncer<J> {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.to_thread.notify_one();
        if let Some(thread) = self.thread.take() {
            // The thread catches its jobs' panics: it ends when told to.
            let _ = thread.join();
        }
    }
}

fn run<J: Job>(shared: &Shared<J>) {
    let mut learnt = Learnt::default();
    let mut done_at = Instant::now();
    // Whether the engine was polling for the outcome just delivered.
    let mut engine_polled = false;
    loop {
        let window = idle_window(learnt.took);
        if window > Duration::ZERO && learnt.backoff.allows() {
            shared.polling.store(true, Ordering::Relaxed);
            let turn_wait = if engine_polled {
                TURN_WAIT_MOST
            } else {
                Duration::ZERO
            };
            let spun = spin_until(&shared.posted, done_at + window, turn_wait);
            shared.polling.store(false, Ordering::Relaxed);
            learnt.backoff.spun(spun);
        }
        let mut state = shared.state.lock();
        while !shared.posted.load(Ordering::Acquire) {
            if state.stop {
                return;
            }
            if std::mem::take(&mut state.expected) {
                // Woken ahead of the job: poll for it, a core permitting.
                state.woken_ahead += 1;
                drop(state);
                shared.polling.store(true, Ordering::Relaxed);
                let deadline = Instant::now() + EXPECT_SPIN_MOST;
                spin_until(&shared.posted, deadline, Duration::ZERO);
                shared.polling.store(false, Ordering::Relaxed);
                state = shared.state.lock();
                continue;
            }
            state.thread_asleep = true;
            shared.to_thread.wait(&mut state);
            state.thread_asleep = false;
        }
        shared.posted.store(false, Ordering::Relaxed);
        state.expected = false;
        learnt.took = Some(state.posted_at.saturating_duration_since(done_at));
        let job = state.job.take();
        drop(state);
        let began = Instant::now();
        let (job, outcome) = match job {
            Some(mut job) => match catch_unwind(AssertUnwindSafe(|| job.run())) {
                Ok(outcome) => (Some(job), outcome),
                Err(_) => (
                    None,
                    Err(Error::Poisoned {
                        cause: "internal error: the log's sync panicked".to_owned(),
                    }),
                ),
            },
            None => (
                None,
                Err(Error::Poisoned {
                    cause: "internal error: a sync was started with no job".to_owned(),
                }),
            ),
        };
        done_at = Instant::now();
        let mut state = shared.state.lock();
        state.job = job;
        state.outcome = Some(outcome);
        state.took = done_at.duration_since(began);
        engine_polled = shared.engine_polling.load(Ordering::Relaxed);
        shared.finished.store(true, Ordering::Release);
        if state.engine_asleep {
            shared.to_engine.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A job that counts its runs and fails every third round.
    struct Counted {
        round: usize,
        ran: Arc<AtomicUsize>,
    }

    impl Job for Counted {
        fn run(&mut self) -> Result<()> {
            self.ran.fetch_add(1, Ordering::SeqCst);
            assert!(self.round != usize::MAX, "a sync that panics");
            if self.round.is_multiple_of(3) {
                Err(Error::Poisoned {
                    cause: format!("round {}", self.round),
                })
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn each_wait_returns_the_outcome_of_the_job_started_before_it() {
        let syncer = Syncer::<Counted>::spawn().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for round in 0..200 {
            syncer.start(|job| match job {
                Some(job) => job.round = round,
                None => {
                    *job = Some(Counted {
                        round,
                        ran: Arc::clone(&ran),
                    });
                }
            });
            if round % 50 == 7 {
                // A long gap: the thread goes to sleep before the next job.
                std::thread::sleep(Duration::from_millis(2));
            }
            match syncer.wait() {
                Ok(()) => assert_ne!(round % 3, 0),
                Err(e) => assert!(e.to_string().contains(&format!("round {round}")), "{e}"),
            }
            assert_eq!(ran.load(Ordering::SeqCst), round + 1);
        }
        // A job that panics is reported, and the next start builds a new one.
        syncer.start(|job| {
            if let Some(job) = job {
                job.round = usize::MAX;
            }
        });
        let err = syncer.wait().unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        let mut fresh = false;
        syncer.start(|job| {
            fresh = job.is_none();
            *job = Some(Counted {
                round: 1,
                ran: Arc::clone(&ran),
            });
        });
        assert!(fresh);
        syncer.wait().unwrap();
        drop(syncer);
    }

    /// Waits (at most ten seconds) until the thread sleeps for a job, no
    /// hint pending, having woken ahead of a job `woken_ahead` times.
    fn until_asleep(syncer: &Syncer<Counted>, woken_ahead: u64) {
        let started = Instant::now();
        loop {
            {
                let state = syncer.shared.state.lock();
                if state.thread_asleep && !state.expected && state.woken_ahead == woken_ahead {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the thread never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_thread_woken_ahead_of_its_job_sleeps_again_without_it_and_runs_the_next() {
        let syncer = Syncer::<Counted>::spawn().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let post = |round| {
            syncer.start(|job| {
                *job = Some(Counted {
                    round,
                    ran: Arc::clone(&ran),
                })
            })
        };
        until_asleep(&syncer, 0);
        // No job comes: the thread wakes, takes the hint, polls at most its
        // window, and sleeps again; nothing runs.
        syncer.expect();
        until_asleep(&syncer, 1);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        // A hint followed by its job, at once and after a while: each runs
        // once, with its own outcome.
        for (round, pause) in [(1, Duration::ZERO), (2, Duration::from_millis(2))] {
            syncer.expect();
            std::thread::sleep(pause);
            post(round);
            syncer.wait().unwrap();
            assert_eq!(ran.load(Ordering::SeqCst), round);
            // The thread polls for its next job a while, then sleeps.
            let woken = syncer.shared.state.lock().woken_ahead;
            assert!(woken <= 1 + round as u64, "{woken}");
            until_asleep(&syncer, woken);
        }
        // A job posted before the thread saw the hint clears it (or the
        // thread took the hint first): either way no hint is left pending.
        syncer.expect();
        post(3);
        assert!(syncer.wait().is_err(), "round 3 fails");
        let woken = syncer.shared.state.lock().woken_ahead;
        until_asleep(&syncer, woken);
        assert_eq!(ran.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_engine_polls_only_after_a_short_sync_and_not_forever() {
        assert_eq!(wait_window(None), Duration::ZERO);
        let quick = Duration::from_micros(100);
        let window = wait_window(Some(quick));
        assert!(window > quick, "{window:?}");
        assert!(window <= WAIT_SPIN_MOST * 2, "{window:?}");
        let slow = WAIT_SPIN_MOST + Duration::from_micros(1);
        assert_eq!(wait_window(Some(slow)), Duration::ZERO);
        assert!(wait_window(Some(WAIT_SPIN_MOST)) > WAIT_SPIN_MOST);
    }

    #[test]
    fn the_thread_polls_for_its_next_job_only_after_a_short_gap_within_its_bound() {
        assert_eq!(idle_window(None), Duration::ZERO);
        let short = Duration::from_micros(30);
        let window = idle_window(Some(short));
        assert!(
            window >= short * 2 && window <= IDLE_SPIN_MOST,
            "{window:?}"
        );
        assert_eq!(idle_window(Some(IDLE_SPIN_MOST)), IDLE_SPIN_MOST, "capped");
        let long = IDLE_SPIN_MOST + Duration::from_micros(1);
        assert_eq!(idle_window(Some(long)), Duration::ZERO);
    }

    /// How many hand-offs in a row `backoff` sleeps through before it spins.
    fn sat_out(backoff: &mut Backoff) -> u32 {
        let mut n = 0;
        while !backoff.allows() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_crowded_spin_doubles_the_hand_offs_slept_through_and_a_caught_one_starts_again() {
        let mut backoff = Backoff::default();
        assert_eq!(sat_out(&mut backoff), 0);
        backoff.spun(Spun::Expired);
        assert_eq!(sat_out(&mut backoff), 0);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for n in 1..=10u32 {
            backoff.spun(Spun::Crowded);
            got.push(sat_out(&mut backoff));
            expected.push(1 << n.min(SIT_OUT_SHIFT_MOST));
        }
        assert_eq!(got, expected);
        // A spin that ran to its deadline learns nothing about the machine.
        backoff.spun(Spun::Expired);
        backoff.spun(Spun::Crowded);
        assert_eq!(sat_out(&mut backoff), 1 << SIT_OUT_SHIFT_MOST);
        backoff.spun(Spun::Ready);
        assert_eq!(sat_out(&mut backoff), 0);
        backoff.spun(Spun::Crowded);
        assert_eq!(sat_out(&mut backoff), 2);
    }

    #[test]
    fn a_spin_waits_for_a_turn_held_elsewhere_only_within_its_bound() {
        // Every free turn taken, as by an engine polling for an outcome.
        let mut held = Vec::new();
        while let Some(turn) = crate::poll_turn::PollTurn::enter() {
            held.push(turn);
        }
        let flag = Arc::new(AtomicBool::new(false));
        let far = Instant::now() + Duration::from_secs(60);
        // Without a wait for a turn, no turn means no spin.
        assert_eq!(spin_until(&flag, far, Duration::ZERO), Spun::Expired);
        // With one, it waits that long (a turn another test gives back
        // meanwhile is polled with, to the deadline).
        let began = Instant::now();
        let soon = began + Duration::from_millis(50);
        assert_ne!(
            spin_until(&flag, soon, Duration::from_millis(2)),
            Spun::Ready
        );
        assert!(began.elapsed() >= Duration::from_millis(2));
        // A turn given back, then the flag set: the waiting spin sees it.
        let set = Arc::clone(&flag);
        let other_side = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            drop(held);
            std::thread::sleep(Duration::from_millis(5));
            set.store(true, Ordering::Release);
        });
        let spun = spin_until(&flag, far, Duration::from_secs(60));
        // Ready, or a yield that gave the core away once it polled.
        assert_ne!(spun, Spun::Expired);
        other_side.join().unwrap();
    }

    #[test]
    fn a_spin_ends_when_the_flag_is_set_or_at_its_deadline() {
        let flag = Arc::new(AtomicBool::new(true));
        assert_eq!(
            spin_until(&flag, Instant::now(), Duration::ZERO),
            Spun::Ready
        );
        assert_eq!(spin(&flag, Instant::now()), Spun::Ready);
        flag.store(false, Ordering::Release);
        let deadline = Instant::now() + Duration::from_micros(200);
        match spin(&flag, deadline) {
            Spun::Expired => assert!(Instant::now() >= deadline),
            // A yield ran another thread: a busy machine gives up early.
            Spun::Crowded => {}
            Spun::Ready => panic!("the flag was never set"),
        }
        let set = Arc::clone(&flag);
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            set.store(true, Ordering::Release);
        });
        let spun = spin(&flag, Instant::now() + Duration::from_secs(60));
        assert_ne!(spun, Spun::Expired);
        if spun == Spun::Ready {
            assert!(flag.load(Ordering::Acquire));
        }
        setter.join().unwrap();
    }
}
