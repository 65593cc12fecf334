//! Lease clocks in the process holding the store.
//!
//! A lease's deadline is kept on the monotonic clock (`Instant`) of the
//! process that enforces it, so a wall-clock jump neither ends nor extends a
//! lease. Deadlines live only in memory: when a holder opens the store, every
//! lease in the log gets its full TTL from then on (a restart never ends a
//! lease early; a lease whose holder died with the store's holder ends one
//! TTL after the next holder opened the store). The end of a lease is a
//! commit, made by the thread here ([`run`]) as soon as its deadline passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{CoordRequest, LeaseOp, LeaseRecord, LockOp};
use crate::access::ReadView;
use crate::access::request::{Check, Outcome, Request, Write, WriteKind};
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// What the lease thread needs of the process holding the store.
pub(crate) trait Holder {
    /// Commits through the group-commit queue.
    fn commit(&self, request: Request) -> Result<Outcome>;
    /// The newest published view.
    fn view(&self) -> Result<Arc<dyn ReadView>>;
    /// The lease clocks.
    fn leases(&self) -> &Leases;
    /// The store's clock (for idempotency keys' expiry).
    fn now(&self) -> Timestamp;
}

/// The shortest TTL accepted.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(100);
/// The longest TTL accepted (a day).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy)]
struct Clock {
    ttl: Duration,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct State {
    leases: HashMap<u64, Clock>,
    stop: bool,
}

/// The leases of the store this process holds.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    state: Mutex<State>,
    wake: Condvar,
    /// How many commits have released locks (a lock given back, a lease
    /// ended); lock waiters sleep until it moves.
    released: Mutex<u64>,
    release: Condvar,
}

/// Checks a TTL asked for.
pub(crate) fn check_ttl(ttl: Duration) -> Result<()> {
    if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&ttl) {
        return Err(Error::InvalidOption {
            name: "ttl",
            reason: format!(
                "a lease's TTL is from {} ms to {} s, not {} ms",
                MIN_LEASE_TTL.as_millis(),
                MAX_LEASE_TTL.as_secs(),
                ttl.as_millis()
            ),
        });
    }
    Ok(())
}

impl Leases {
    /// Starts the clock of a lease: its full TTL from now.
    pub(crate) fn start(&self, id: u64, ttl: Duration) {
        let mut state = self.state.lock();
        state.leases.insert(
            id,
            Clock {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        self.wake.notify_one();
    }

    /// Keeps a lease alive: its full TTL from now. Returns the TTL.
    pub(crate) fn keep_alive(&self, id: u64) -> Result<Duration> {
        let mut state = self.state.lock();
        match state.leases.get_mut(&id) {
            Some(clock) if clock.deadline > Instant::now() => {
                clock.deadline = Instant::now() + clock.ttl;
                Ok(clock.ttl)
            }
            _ => Err(Error::LeaseExpired { lease: id }),
        }
    }

    /// Refuses a lease whose time is up (even if its end is not committed yet).
    pub(crate) fn check_alive(&self, id: u64) -> Result<()> {
        match self.state.lock().leases.get(&id) {
            Some(clock) if clock.deadline > Instant::now() => Ok(()),
            _ => Err(Error::LeaseExpired { lease: id }),
        }
    }

    /// Forgets a lease (it is being ended).
    pub(crate) fn forget(&self, id: u64) -> bool {
        self.state.lock().leases.remove(&id).is_some()
    }

    /// What is left of each lease's time.
    pub(crate) fn remaining(&self) -> HashMap<u64, Duration> {
        let now = Instant::now();
        self.state
            .lock()
            .leases
            .iter()
            .map(|(id, c)| (*id, c.deadline.saturating_duration_since(now)))
            .collect()
    }

    /// How many commits have released locks so far: read before trying a
    /// lock, then passed to [`wait_release`](Self::wait_release), so that a
    /// release in between is not missed.
    pub(crate) fn releases(&self) -> u64 {
        *self.released.lock()
    }

    /// Wakes every lock waiter: a commit released locks.
    pub(crate) fn released(&self) {
        *self.released.lock() += 1;
        self.release.notify_all();
    }

    /// Waits until a release after `seen` (see [`releases`](Self::releases)),
    /// or `until`.
    pub(crate) fn wait_release(&self, seen: u64, until: Instant) {
        let mut released = self.released.lock();
        while *released == seen {
            if self.release.wait_until(&mut released, until).timed_out() {
                return;
            }
        }
    }

    /// Ends the thread of [`run`].
    pub(crate) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
        // Lock waiters try once more and find the store closed.
        self.released();
    }

    /// Waits for the next deadline, or `until`; returns the leases whose
    /// time is up (forgotten here; perhaps none), or `None` when told to stop.
    fn next_expired(&self, until: Instant) -> Option<Vec<u64>> {
        let mut state = self.state.lock();
        loop {
            if state.stop {
                return None;
            }
            let now = Instant::now();
            let expired: Vec<u64> = state
                .leases
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            if !expired.is_empty() || now >= until {
                for id in &expired {
                    state.leases.remove(id);
                }
                return Some(expired);
            }
            let next = state
                .leases
                .values()
                .map(|c| c.deadline)
                .min()
                .map_or(until, |d| d.min(until));
            self.wake.wait_until(&mut state, next);
        }
    }
}

/// How often, at most, a lock waiter keeps its lease alive and asks whether
/// it is still wanted (the lease's TTL / 3 when shorter).
const WAIT_TICK: Duration = Duration::from_millis(500);

/// The fencing token of a granted lock: the revision of the commit that took
/// it.
pub(crate) fn granted_token(outcome: &Outcome) -> Result<u64> {
    outcome.revision.ok_or_else(|| Error::Poisoned {
        cause: "internal error: a lock was granted without a commit".to_owned(),
    })
}

/// Takes lock `name` under `lease`, waiting up to `wait` for it: each try is
/// a commit, and between tries the waiter sleeps until a commit releases a
/// lock ([`Leases::released`]) or its time is up, keeping its lease alive
/// and asking `still_wanted` every tick. Returns the grant's token.
pub(crate) fn lock_wait(
    shared: &dyn Holder,
    name: &str,
    lease: u64,
    wait: Duration,
    still_wanted: &dyn Fn() -> bool,
) -> Result<u64> {
    let start = Instant::now();
    let deadline = start.checked_add(wait).unwrap_or(start + MAX_LEASE_TTL);
    let leases = shared.leases();
    let mut every = WAIT_TICK;
    let mut tick = start + every;
    if !wait.is_zero() {
        every = (leases.keep_alive(lease)? / 3).min(WAIT_TICK);
        tick = Instant::now() + every;
    }
    loop {
        let seen = leases.releases();
        match shared.commit(acquire_request(name, lease)) {
            Ok(outcome) => return granted_token(&outcome),
            Err(Error::LockHeld {
                lock,
                token,
                holder,
                ..
            }) => {
                if Instant::now() >= deadline {
                    return Err(Error::LockHeld {
                        lock,
                        token,
                        holder,
                        waited: start.elapsed(),
                    });
                }
            }
            Err(e) => return Err(e),
        }
        // Until a release (then try again) or the deadline (then try a
        // last time), keeping the lease alive.
        loop {
            leases.wait_release(seen, deadline.min(tick));
            if leases.releases() != seen || Instant::now() >= deadline {
                break;
            }
            if Instant::now() >= tick {
                if !still_wanted() {
                    return Err(Error::LeaseExpired { lease });
                }
                leases.keep_alive(lease)?;
                tick = Instant::now() + every;
            }
        }
    }
}

/// The request that takes lock `name` under lease `lease`.
pub(crate) fn acquire_request(name: &str, lease: u64) -> Request {
    Request {
        coord: CoordRequest {
            lock: Some(LockOp::Acquire {
                name: name.to_owned(),
                lease,
            }),
            ..CoordRequest::default()
        },
        ..Request::default()
    }
}

/// The request that begins lease `id`.
pub(crate) fn grant_request(id: u64, ttl: Duration, holder: &str) -> Request {
    Request {
        coord: CoordRequest {
            lease_op: Some(LeaseOp::Grant {
                id,
                ttl,
                holder: holder.to_owned(),
            }),
            ..CoordRequest::default()
        },
        ..Request::default()
    }
}

/// The request that ends lease `id`.
pub(crate) fn end_request(id: u64) -> Request {
    Request {
        coord: CoordRequest {
            lease_op: Some(LeaseOp::End { id }),
            ..CoordRequest::default()
        },
        ..Request::default()
    }
}

/// Starts the clocks of the leases the store holds (after it was opened).
pub(crate) fn load(shared: &dyn Holder) -> Result<()> {
    let view = shared.view()?;
    let start = crate::key::namespace_start(super::LEASES, "");
    let end = crate::key::namespace_end(super::LEASES);
    for entry in view.range(
        std::ops::Bound::Included(start),
        std::ops::Bound::Excluded(end),
    )? {
        let entry = entry?;
        let Some((_, key)) = crate::key::decode(&entry.address) else {
            continue;
        };
        let Some(id) = super::lease_id(key) else {
            continue;
        };
        let record = LeaseRecord::decode(&entry.value)?;
        shared
            .leases()
            .start(id, Duration::from_millis(record.ttl_ms));
    }
    Ok(())
}

/// How often expired idempotency keys are pruned (and once when a holder
/// opens the store).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Ends leases as their time runs out, and prunes expired idempotency keys,
/// until [`Leases::stop`].
pub(crate) fn run(shared: &dyn Holder) {
    let mut prune_at = Instant::now() + PRUNE_EVERY;
    while let Some(expired) = shared.leases().next_expired(prune_at) {
        for id in expired {
            match shared.commit(end_request(id)) {
                Ok(outcome) => {
                    tracing::info!(lease = %super::lease_key(id), revision = ?outcome.revision, "a lease expired");
                }
                Err(Error::LeaseExpired { .. }) => {}
                Err(e) => {
                    tracing::warn!(lease = %super::lease_key(id), error = %e, "cannot end an expired lease");
                }
            }
        }
        if Instant::now() >= prune_at {
            prune(shared);
            prune_at = Instant::now() + PRUNE_EVERY;
        }
    }
}

/// Deletes the idempotency keys whose time is up, in one commit (each only
/// if unchanged since it was read).
pub(crate) fn prune(shared: &dyn Holder) {
    let result = (|| -> Result<Option<u64>> {
        let view = shared.view()?;
        let now = shared.now().as_micros();
        let start = crate::key::namespace_start(super::IDEMPOTENCY, "");
        let end = crate::key::namespace_end(super::IDEMPOTENCY);
        let mut request = Request::default();
        for entry in view.range(
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        )? {
            let entry = entry?;
            let expired = super::records::IdempotencyRecord::decode(&entry.value)
                .is_ok_and(|r| r.expires <= now);
            if expired {
                request.checks.push(Check {
                    address: entry.address.clone(),
                    expected: entry.meta.version,
                    modified: Some(entry.meta.mod_revision),
                });
                request.writes.push(Write {
                    address: entry.address,
                    kind: WriteKind::Delete,
                });
            }
        }
        if request.writes.is_empty() {
            return Ok(None);
        }
        Ok(shared.commit(request)?.revision)
    })();
    match result {
        Ok(Some(revision)) => tracing::debug!(revision, "pruned expired idempotency keys"),
        Ok(None) => {}
        // A key renewed meanwhile: the next round takes the others.
        Err(Error::Conflict { .. }) => {}
        Err(e) => tracing::warn!(error = %e, "cannot prune expired idempotency keys"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A holder whose lock "sync" is held until `free`, counting the tries.
    #[derive(Default)]
    struct Fake {
        leases: Leases,
        free: AtomicBool,
        tries: AtomicUsize,
    }

    impl Holder for Fake {
        fn commit(&self, _request: Request) -> Result<Outcome> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            if !self.free.load(Ordering::SeqCst) {
                return Err(Error::LockHeld {
                    lock: "sync".to_owned(),
                    token: 1,
                    holder: "another".to_owned(),
                    waited: Duration::ZERO,
                });
            }
            Ok(Outcome {
                revision: Some(9),
                writes: Vec::new(),
                patched: Vec::new(),
                replayed: false,
            })
        }

        fn view(&self) -> Result<Arc<dyn ReadView>> {
            Err(Error::Closed)
        }

        fn leases(&self) -> &Leases {
            &self.leases
        }

        fn now(&self) -> Timestamp {
            Timestamp::now()
        }
    }

    /// A waiter tries once, sleeps through a second of the lock being held
    /// (keeping its lease alive), and tries again only when woken by the
    /// release: two tries, where polling every few milliseconds made dozens.
    #[test]
    fn a_waiter_tries_again_only_when_woken_by_a_release() {
        let fake = Arc::new(Fake::default());
        fake.leases.start(7, Duration::from_millis(300));
        let waiter = {
            let fake = Arc::clone(&fake);
            std::thread::spawn(move || {
                lock_wait(fake.as_ref(), "sync", 7, Duration::from_secs(60), &|| true)
            })
        };
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(fake.tries.load(Ordering::SeqCst), 1);
        fake.free.store(true, Ordering::SeqCst);
        fake.leases.released();
        assert_eq!(waiter.join().unwrap().unwrap(), 9);
        assert_eq!(fake.tries.load(Ordering::SeqCst), 2);
        // Its lease was kept alive while it slept.
        assert!(fake.leases.check_alive(7).is_ok());
    }

    /// A waiter whose asker went away stops at the next tick.
    #[test]
    fn a_waiter_no_longer_wanted_stops() {
        let fake = Fake::default();
        fake.leases.start(7, Duration::from_millis(300));
        let err = lock_wait(&fake, "sync", 7, Duration::from_secs(60), &|| false).unwrap_err();
        assert!(matches!(err, Error::LeaseExpired { lease: 7 }), "{err:?}");
        assert_eq!(fake.tries.load(Ordering::SeqCst), 1);
    }
}
