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

use super::{CoordRequest, LeaseOp, LeaseRecord};
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

    /// Ends the thread of [`run`].
    pub(crate) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
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
