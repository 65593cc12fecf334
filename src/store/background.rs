//! The background thread of a store: syncs the log in `Relaxed` mode and runs
//! checkpoints when they are due.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Shared;
use crate::options::Durability;

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

/// Runs until [`Signal::stop`].
pub(crate) fn run(shared: Arc<Shared>) {
    let options = &shared.options;
    let tick = match options.durability {
        Durability::Relaxed { max_delay } => max_delay,
        _ => options.checkpoint.interval.min(Duration::from_secs(1)),
    };
    loop {
        {
            let mut state = shared.background.state.lock();
            if !state.stop && !state.checkpoint_wanted {
                shared.background.wake.wait_for(&mut state, tick);
            }
            if state.stop {
                return;
            }
            state.checkpoint_wanted = false;
        }
        if matches!(options.durability, Durability::Relaxed { .. }) {
            flush(&shared);
        }
        let mut engine = shared.engine.lock();
        if engine.checkpoint_due(&options.checkpoint) {
            match engine.checkpoint() {
                Ok(true) => {
                    shared.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "checkpoint failed"),
            }
        }
    }
}

/// Syncs what was written to the log, without holding the engine during the sync.
fn flush(shared: &Shared) {
    let Some((file, revision)) = shared.engine.lock().unsynced() else {
        return;
    };
    if revision <= shared.synced_revision.load(Ordering::Acquire) {
        return;
    }
    let synced = file.sync_data();
    if synced.is_ok() {
        shared.synced_revision.fetch_max(revision, Ordering::AcqRel);
    }
    shared.engine.lock().flushed(revision, synced);
}
