//! The background thread of a store this process holds: it wakes every tick,
//! or sooner when a checkpoint is wanted, and does the holder's background
//! work (in `Relaxed` mode, syncing the log; checkpoints when they are due:
//! `store/local.rs`).

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    stop: bool,
    checkpoint_wanted: bool,
}

/// Wakes the background thread.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<State>,
    wake: Condvar,
}

impl Signal {
    /// Asks for a checkpoint soon.
    pub(crate) fn want_checkpoint(&self) {
        let mut state = self.state.lock();
        if !state.checkpoint_wanted {
            state.checkpoint_wanted = true;
            self.wake.notify_one();
        }
    }

    /// Asks the thread to end.
    pub(crate) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_one();
    }
}

/// Runs `work` every `tick`, or sooner when a checkpoint is wanted, until
/// [`Signal::stop`].
pub(crate) fn run(signal: &Signal, tick: Duration, mut work: impl FnMut()) {
    loop {
        {
            let mut state = signal.state.lock();
            if !state.stop && !state.checkpoint_wanted {
                signal.wake.wait_for(&mut state, tick);
            }
            if state.stop {
                return;
            }
            state.checkpoint_wanted = false;
        }
        work();
    }
}
