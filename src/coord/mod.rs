//! Coordination: leases, locks with fencing tokens, idempotent commits,
//! preconditions on a record's modification revision, and patches.
//!
//! Everything here is kept as ordinary records in namespaces of statelog's
//! own (`statelog:leases`, `statelog:locks`, `statelog:idempotency`; no user
//! namespace may start with `statelog:`), written by ordinary commits: the
//! log, backups, replay and recovery see them with no change to any format,
//! and each maps onto an etcd key later. What a request asks for here
//! ([`CoordRequest`], and the patch writes) is evaluated at commit, inside the
//! commit's own transaction, by [`expand`]: it reads the records involved as
//! the transaction sees them and turns the request into plain checks, puts
//! and deletes, which the engine then applies as any other.
//!
//! - A **lease** (`statelog:leases/<id, 16 hex digits>`) holds its TTL, who
//!   took it, the locks it holds and the records bound to it. Its clock runs
//!   in the process holding the store (`leases.rs`, monotonic); its end is a
//!   commit deleting it, its locks and the records bound to it.
//! - A **lock** (`statelog:locks/<name>`) names its lease. Its fencing token
//!   is the revision of the commit that granted it, which is the lock
//!   record's create revision: strictly increasing across all grants of all
//!   locks, restarts included, for free.
//! - An **idempotency key** (`statelog:idempotency/<key>`) holds a digest of
//!   the request, its outcome and when the key may be forgotten.

pub(crate) mod keylocks;
pub(crate) mod leases;
pub(crate) mod patch;
mod records;

pub(crate) use crate::access::coord::*;

use std::time::Duration;

use crate::access::request::{Check, Outcome, Request, Write, WriteKind};
use crate::error::{Error, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::Meta;

pub(crate) use records::{IdempotencyRecord, LeaseRecord, LockRecord};

/// Leases.
pub(crate) const LEASES: &str = "statelog:leases";
/// Locks.
pub(crate) const LOCKS: &str = "statelog:locks";
/// Idempotency keys.
pub(crate) const IDEMPOTENCY: &str = "statelog:idempotency";

/// A lease's key: its id as 16 hex digits.
pub(crate) fn lease_key(id: u64) -> String {
    format!("{id:016x}")
}

/// A lease's id from its key.
pub(crate) fn lease_id(key: &str) -> Option<u64> {
    u64::from_str_radix(key, 16).ok()
}

/// Reads a record as the commit's transaction sees it.
pub(crate) type ReadAt<'a> = &'a mut dyn FnMut(&[u8]) -> Result<Option<(Meta, Vec<u8>)>>;

/// What [`expand`] made of a request.
pub(crate) enum Expansion {
    /// A precondition failed: nothing is written.
    Failed(Error),
    /// The idempotency key was used for this very request: its first outcome.
    Replay(Outcome),
    /// The plain request to apply, and what to add to its outcome.
    Ready(Box<Expanded>),
}

/// A request turned into plain checks, puts and deletes.
pub(crate) struct Expanded {
    pub request: Request,
    /// The caller's writes come first in `request.writes`; the outcome keeps
    /// only theirs.
    pub user_writes: usize,
    /// The values the patches computed.
    pub patched: Vec<(usize, Vec<u8>)>,
    /// The idempotency key to record with the outcome.
    pub remember: Option<Remember>,
}

/// An idempotency key to record in the commit that uses it.
pub(crate) struct Remember {
    address: Vec<u8>,
    digest: [u8; 16],
    expires: Timestamp,
    result: Option<Vec<u8>>,
}

/// A lease record as a commit changes it.
struct LeaseSlot {
    id: u64,
    record: Option<LeaseRecord>,
    changed: bool,
}

/// Evaluates the coordination parts and the patches of `request` against
/// the records as the commit's transaction sees them (`read`), at `revision`
/// and `time`.
pub(crate) fn expand(
    request: &Request,
    revision: u64,
    time: Timestamp,
    read: ReadAt<'_>,
) -> Result<Expansion> {
    let coord = &request.coord;
    let mut remember = None;
    if let Some(idempotency) = &coord.idempotency {
        let address = key::encode_unchecked(IDEMPOTENCY, &idempotency.key);
        let digest = match &idempotency.call {
            Some(call) => call_digest(call),
            None => digest(request),
        };
        if let Some((_, bytes)) = read(&address)? {
            let stored = records::IdempotencyRecord::decode(&bytes)?;
            if stored.expires > time.as_micros() {
                if stored.digest.as_slice() != digest.as_slice() {
                    return Ok(Expansion::Failed(Error::IdempotencyKeyReused {
                        key: idempotency.key.clone(),
                        first: stored.revision,
                    }));
                }
                return Ok(Expansion::Replay(stored.outcome()));
            }
        }
        let keep = i64::try_from(idempotency.keep.as_micros()).unwrap_or(i64::MAX);
        remember = Some(Remember {
            address,
            digest,
            expires: Timestamp::from_micros(time.as_micros().saturating_add(keep)),
            result: idempotency.result.clone(),
        });
    }
    for check in &coord.revisions {
        let actual = read(&check.address)?.map_or(0, |(m, _)| m.mod_revision);
        if actual != check.revision {
            let (namespace, key) = key::decode(&check.address).unwrap_or(("?", "?"));
            return Ok(Expansion::Failed(Error::RevisionMismatch {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                expected: check.revision,
                actual,
            }));
        }
    }
    for fence in &coord.fences {
        let current =
            read(&key::encode_unchecked(LOCKS, &fence.lock))?.map(|(m, _)| m.create_revision);
        if current != Some(fence.token) {
            return Ok(Expansion::Failed(Error::Fenced {
                lock: fence.lock.clone(),
                token: fence.token,
                current,
            }));
        }
    }

    let mut writes: Vec<Write> = Vec::with_capacity(request.writes.len() + 2);
    let mut patched = Vec::new();
    for (index, write) in request.writes.iter().enumerate() {
        let kind = match &write.kind {
            WriteKind::Patch {
                ops,
                skip_unchanged,
            } => {
                let (namespace, key) = key::decode(&write.address).unwrap_or(("?", "?"));
                let current = read(&write.address)?;
                let value = match patch::apply(
                    namespace,
                    key,
                    current.as_ref().map(|(_, v)| v.as_slice()),
                    ops,
                ) {
                    Ok(value) => value,
                    Err(e) => return Ok(Expansion::Failed(e)),
                };
                patched.push((index, value.clone()));
                WriteKind::Put {
                    value,
                    skip_unchanged: *skip_unchanged,
                }
            }
            other => other.clone(),
        };
        writes.push(Write {
            address: write.address.clone(),
            kind,
        });
    }
    let user_writes = writes.len();

    let mut leases: Vec<LeaseSlot> = Vec::new();
    let mut internal: Vec<Write> = Vec::new();
    if let Some(op) = &coord.lease_op {
        match op {
            LeaseOp::Grant { id, ttl, holder } => {
                let slot = lease_slot(&mut leases, *id, read)?;
                if slot.record.is_some() {
                    return Ok(Expansion::Failed(Error::InvalidOption {
                        name: "lease",
                        reason: format!("lease {} exists already", lease_key(*id)),
                    }));
                }
                slot.record = Some(LeaseRecord {
                    ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                    holder: holder.clone(),
                    granted: time.as_micros(),
                    locks: Vec::new(),
                    bound: Vec::new(),
                });
                slot.changed = true;
            }
            LeaseOp::End { id } => {
                let slot = lease_slot(&mut leases, *id, read)?;
                let Some(record) = slot.record.take() else {
                    return Ok(Expansion::Failed(Error::LeaseExpired { lease: *id }));
                };
                slot.changed = true;
                for name in &record.locks {
                    let address = key::encode_unchecked(LOCKS, name);
                    if let Some((_, bytes)) = read(&address)?
                        && LockRecord::decode(&bytes)?.lease == *id
                    {
                        internal.push(delete(address));
                    }
                }
                for (namespace, key, bound_at) in &record.bound {
                    let address = key::encode_unchecked(namespace, key);
                    // Only the write that was bound goes: a record written
                    // since (without the lease) is somebody else's now.
                    if read(&address)?.is_some_and(|(m, _)| m.mod_revision == *bound_at) {
                        internal.push(delete(address));
                    }
                }
            }
        }
    }
    match &coord.lock {
        Some(LockOp::Acquire { name, lease }) => {
            let address = key::encode_unchecked(LOCKS, name);
            if let Some((meta, bytes)) = read(&address)? {
                let held = LockRecord::decode(&bytes)?;
                return Ok(Expansion::Failed(Error::LockHeld {
                    lock: name.clone(),
                    token: meta.create_revision,
                    holder: held.holder,
                    waited: Duration::ZERO,
                }));
            }
            let slot = lease_slot(&mut leases, *lease, read)?;
            let Some(record) = slot.record.as_mut() else {
                return Ok(Expansion::Failed(Error::LeaseExpired { lease: *lease }));
            };
            record.locks.push(name.clone());
            let holder = record.holder.clone();
            slot.changed = true;
            internal.push(put(
                address,
                LockRecord {
                    lease: *lease,
                    holder,
                }
                .encode()?,
            ));
        }
        Some(LockOp::Release { name, token }) => {
            let address = key::encode_unchecked(LOCKS, name);
            let Some((meta, bytes)) = read(&address)? else {
                return Ok(Expansion::Failed(Error::Fenced {
                    lock: name.clone(),
                    token: *token,
                    current: None,
                }));
            };
            if meta.create_revision != *token {
                return Ok(Expansion::Failed(Error::Fenced {
                    lock: name.clone(),
                    token: *token,
                    current: Some(meta.create_revision),
                }));
            }
            let lease = LockRecord::decode(&bytes)?.lease;
            internal.push(delete(address));
            let slot = lease_slot(&mut leases, lease, read)?;
            if let Some(record) = slot.record.as_mut() {
                record.locks.retain(|n| n != name);
                slot.changed = true;
            }
        }
        None => {}
    }
    if let Some(lease) = coord.lease {
        let slot = lease_slot(&mut leases, lease, read)?;
        let Some(record) = slot.record.as_mut() else {
            return Ok(Expansion::Failed(Error::LeaseExpired { lease }));
        };
        for write in &writes {
            if !matches!(write.kind, WriteKind::Put { .. }) {
                continue;
            }
            let (namespace, key) = key::decode(&write.address).unwrap_or(("?", "?"));
            record
                .bound
                .retain(|(n, k, _)| (n.as_str(), k.as_str()) != (namespace, key));
            record
                .bound
                .push((namespace.to_owned(), key.to_owned(), revision));
        }
        slot.changed = true;
    }
    for slot in leases.into_iter().filter(|s| s.changed) {
        let address = key::encode_unchecked(LEASES, &lease_key(slot.id));
        internal.push(match slot.record {
            Some(record) => put(address, record.encode()?),
            None => delete(address),
        });
    }
    writes.extend(internal);
    let mut checks: Vec<Check> = request.checks.clone();
    checks.shrink_to_fit();
    Ok(Expansion::Ready(Box::new(Expanded {
        request: Request {
            checks,
            writes,
            coord: CoordRequest::default(),
        },
        user_writes,
        patched,
        remember,
    })))
}

fn lease_slot<'s>(
    leases: &'s mut Vec<LeaseSlot>,
    id: u64,
    read: ReadAt<'_>,
) -> Result<&'s mut LeaseSlot> {
    if let Some(at) = leases.iter().position(|s| s.id == id) {
        return Ok(&mut leases[at]);
    }
    let address = key::encode_unchecked(LEASES, &lease_key(id));
    let record = match read(&address)? {
        Some((_, bytes)) => Some(LeaseRecord::decode(&bytes)?),
        None => None,
    };
    leases.push(LeaseSlot {
        id,
        record,
        changed: false,
    });
    let last = leases.len() - 1;
    Ok(&mut leases[last])
}

fn put(address: Vec<u8>, value: Vec<u8>) -> Write {
    Write {
        address,
        kind: WriteKind::Put {
            value,
            skip_unchanged: false,
        },
    }
}

fn delete(address: Vec<u8>) -> Write {
    Write {
        address,
        kind: WriteKind::Delete,
    }
}

impl Expanded {
    /// The outcome the caller gets: its own writes, and the patched values.
    pub(crate) fn finish(&self, mut outcome: Outcome) -> Outcome {
        outcome.writes.truncate(self.user_writes);
        outcome.patched = self.patched.clone();
        outcome
    }

    /// The write that records the idempotency key with `outcome` (the
    /// caller's), if the request has a key.
    pub(crate) fn remember_write(&self, outcome: &Outcome) -> Result<Option<Write>> {
        let Some(remember) = &self.remember else {
            return Ok(None);
        };
        let mut record =
            records::IdempotencyRecord::new(remember.digest, remember.expires, outcome);
        record.result = remember.result.clone().map(serde_bytes::ByteBuf::from);
        Ok(Some(put(remember.address.clone(), record.encode()?)))
    }
}

/// A digest of everything a request asks for but its idempotency key: two
/// requests with the same digest are the same request. (FNV-1a, 128 bits:
/// not a defence against someone crafting collisions, who could as well
/// reuse the key on purpose.)
fn digest(request: &Request) -> [u8; 16] {
    let mut h = Fnv::default();
    h.u64(request.checks.len() as u64);
    for c in &request.checks {
        h.bytes(&c.address);
        h.u64(c.expected);
        h.u64(c.modified.map_or(0, |m| m.saturating_add(1)));
    }
    h.u64(request.writes.len() as u64);
    for w in &request.writes {
        h.bytes(&w.address);
        match &w.kind {
            WriteKind::Put {
                value,
                skip_unchanged,
            } => {
                h.u64(1);
                h.bytes(value);
                h.u64(u64::from(*skip_unchanged));
            }
            WriteKind::Delete => h.u64(2),
            WriteKind::Patch {
                ops,
                skip_unchanged,
            } => {
                h.u64(3);
                h.u64(u64::from(*skip_unchanged));
                h.u64(ops.len() as u64);
                for op in ops {
                    h.bytes(op.kind.name().as_bytes());
                    h.u64(op.path.len() as u64);
                    for name in &op.path {
                        h.bytes(name.as_bytes());
                    }
                    h.bytes(op.value.as_deref().unwrap_or(&[0xc1]));
                }
            }
        }
    }
    let coord = &request.coord;
    h.u64(coord.fences.len() as u64);
    for f in &coord.fences {
        h.bytes(f.lock.as_bytes());
        h.u64(f.token);
    }
    h.u64(coord.revisions.len() as u64);
    for r in &coord.revisions {
        h.bytes(&r.address);
        h.u64(r.revision);
    }
    h.u64(coord.lease.map_or(0, |l| l.saturating_add(1)));
    match &coord.lock {
        None => h.u64(0),
        Some(LockOp::Acquire { name, lease }) => {
            h.u64(1);
            h.bytes(name.as_bytes());
            h.u64(*lease);
        }
        Some(LockOp::Release { name, token }) => {
            h.u64(2);
            h.bytes(name.as_bytes());
            h.u64(*token);
        }
    }
    h.0.to_le_bytes()
}

/// The digest of a closure-based call: its identity (its kind and records),
/// tagged so that it never equals the digest of a plain request.
pub(crate) fn call_digest(call: &[u8]) -> [u8; 16] {
    let mut h = Fnv::default();
    h.bytes(b"call");
    h.bytes(call);
    h.0.to_le_bytes()
}

/// FNV-1a, 128 bits: the request digests here, and the identity of an
/// import (its records) for its idempotency key.
pub(crate) struct Fnv(u128);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
}

impl Fnv {
    fn byte(&mut self, b: u8) {
        self.0 ^= u128::from(b);
        self.0 = self
            .0
            .wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }

    pub(crate) fn u64(&mut self, n: u64) {
        for b in n.to_le_bytes() {
            self.byte(b);
        }
    }

    /// Length first, so that no two sequences of fields hash alike by
    /// moving a boundary.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        for &b in bytes {
            self.byte(b);
        }
    }

    /// The digest.
    pub(crate) fn finish(&self) -> [u8; 16] {
        self.0.to_le_bytes()
    }
}
