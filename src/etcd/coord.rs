//! Coordination on etcd: patches, revision preconditions, fences, idempotency
//! keys, leases and locks.
//!
//! The embedded store's own evaluation (`coord::expand`) runs against the
//! records as etcd has them now, and its result is committed as one `Txn`
//! that compares every record the evaluation read (`MOD ==` the read, or
//! `VERSION == 0` for an absent one) and every record it writes. So the
//! commit applies only to the state the evaluation saw; when a compare fails
//! (another writer got there first), it is evaluated again: a
//! compare-and-swap loop against each record's modification revision.
//! Because every written record was read, the outcome (versions, create
//! revisions) is known before the `Txn` is sent, up to the commit's revision,
//! which is filled in from etcd's answer.
//!
//! - **Leases** are etcd leases (the statelog lease id is the etcd one). The
//!   lease record (`statelog:leases/<id>`), the locks taken under it and the
//!   records bound to it are put with that lease attached, so when it expires
//!   or is revoked etcd deletes them all at one revision. A later put of a
//!   bound record without the lease detaches it (it is somebody else's now).
//! - **Locks** (`statelog:locks/<name>`): taken by a `Txn` that compares the
//!   lock absent and the lease record present; the fencing token is the lock
//!   key's create revision, which is the revision of that `Txn`: strictly
//!   increasing across all clients. A fence compares the lock key as read.
//! - **Idempotency keys** (`statelog:idempotency/<key>`): checked and written
//!   in the commit's own `Txn`, under an etcd lease of the key's retention
//!   (etcd forgets the key when it ends). The outcome kept in it names the
//!   commit's revision as 0, which reads as the key's own modification
//!   revision (written in the same `Txn`) when it is replayed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::client::to_i64;
use super::ops::{EtcdStore, as_read_compare, check_compare, compare, conflict, header_revision};
use super::{errors, proto, record};
use crate::access::request::{Outcome, Request, WriteKind, WriteOutcome};
use crate::coord::{self, Expansion, IDEMPOTENCY, LEASES, LOCKS, LockOp};
use crate::error::{Error, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::Meta;

/// Every record the evaluation read or the commit writes, as read (metadata
/// and MessagePack value), or `None` when absent.
type Reads = BTreeMap<Vec<u8>, Option<(Meta, Vec<u8>)>>;

/// How long a commit keeps evaluating again while other writers get there
/// first (same-record writers of one process take turns before this, see
/// `store/etcd.rs`).
const KEEP_TRYING: Duration = Duration::from_secs(30);

impl EtcdStore {
    /// Commits a request with coordination parts or patches (see the module
    /// documentation).
    ///
    /// # Errors
    /// What `coord::expand` decides ([`Error::PatchFailed`],
    /// [`Error::RevisionMismatch`], [`Error::Fenced`], [`Error::LockHeld`],
    /// [`Error::LeaseExpired`], [`Error::IdempotencyKeyReused`]), the errors
    /// of [`commit_request`](Self::commit_request), and [`Error::Conflict`]
    /// when other writers kept changing what it read for 30 s.
    pub(crate) fn commit_coordinated(&self, request: &Request) -> Result<Outcome> {
        let mut key_lease = None;
        let result = self.coordinated_rounds(request, &mut key_lease);
        // A lease the key was not written with is given back; but after an
        // unknown outcome the key may have been written with it, and
        // revoking it would delete the key a resend must find.
        let unused = match &result {
            Ok(_) => key_lease.is_some_and(|(_, used)| !used),
            Err(Error::OutcomeUnknown { .. }) => false,
            Err(_) => true,
        };
        if let Some((lease, _)) = key_lease
            && unused
            && let Err(e) = self.client().lease_revoke(lease)
        {
            tracing::debug!(lease, error = %e, "cannot revoke an unused idempotency key lease");
        }
        result
    }

    fn coordinated_rounds(
        &self,
        request: &Request,
        key_lease: &mut Option<(i64, bool)>,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let now = self.clock().now();
            let mut reads = Reads::new();
            let expansion = {
                let mut read = |address: &[u8]| -> Result<Option<(Meta, Vec<u8>)>> {
                    if let Some(found) = reads.get(address) {
                        return Ok(found.clone());
                    }
                    let found = self.get_address(address, 0)?;
                    reads.insert(address.to_vec(), found.clone());
                    Ok(found)
                };
                coord::expand(request, 0, now, &mut read)?
            };
            let idempotency_key = request
                .coord
                .idempotency
                .as_ref()
                .map(|i| key::encode_unchecked(IDEMPOTENCY, &i.key));
            // The revision of the commit that recorded the key.
            let first = || {
                idempotency_key
                    .as_ref()
                    .and_then(|a| reads.get(a))
                    .and_then(|r| r.as_ref().map(|(m, _)| m.mod_revision))
                    .unwrap_or(0)
            };
            let expanded = match expansion {
                Expansion::Failed(Error::IdempotencyKeyReused {
                    key,
                    first: Some(0),
                }) => {
                    return Err(Error::IdempotencyKeyReused {
                        key,
                        first: Some(first()),
                    });
                }
                Expansion::Failed(e) => return Err(e),
                Expansion::Replay(outcome) => return Ok(fill(outcome, first())),
                Expansion::Ready(expanded) => expanded,
            };
            let mut writes = expanded.request.writes.clone();
            for write in &writes {
                if !reads.contains_key(&write.address) {
                    let found = self.get_address(&write.address, 0)?;
                    reads.insert(write.address.clone(), found);
                }
            }
            let mut leases: Vec<i64> = writes
                .iter()
                .enumerate()
                .map(|(i, w)| lease_of(request, i < expanded.user_writes, &w.address))
                .collect();
            let predicted = predict(&expanded.request.writes, &reads, now)?;
            if predicted.revision.is_some()
                && let Some(remember) =
                    expanded.remember_write(&expanded.finish(predicted.clone()))?
            {
                let lease = match key_lease {
                    Some((lease, _)) => *lease,
                    None => {
                        let keep = request
                            .coord
                            .idempotency
                            .as_ref()
                            .map_or(Duration::ZERO, |i| i.keep);
                        let (lease, _) = self.client().lease_grant(ttl_seconds(keep))?;
                        *key_lease = Some((lease, false));
                        lease
                    }
                };
                writes.push(remember);
                leases.push(lease);
            }
            if predicted.revision.is_none() && request.checks.is_empty() && reads.is_empty() {
                return Ok(expanded.finish(predicted));
            }
            let txn = self.coordinated_txn(request, &writes, &leases, &reads, now)?;
            match self.client().txn(txn) {
                Ok(response) if response.succeeded => {
                    if let Some((_, used)) = key_lease.as_mut() {
                        *used = writes.len() > expanded.request.writes.len();
                    }
                    let revision = header_revision(response.header.as_ref());
                    let outcome = if predicted.revision.is_some() {
                        fill(predicted, revision)
                    } else {
                        predicted
                    };
                    return Ok(expanded.finish(outcome));
                }
                Ok(response) => self.refusal(request, &response)?,
                // A lease ended after it was read (a lease the request uses,
                // or the one granted for its idempotency key): evaluate again,
                // with a new lease for the key.
                Err(e) if errors::is_lease_not_found(&e) => *key_lease = None,
                Err(e) => return Err(e),
            }
            if started.elapsed() >= KEEP_TRYING {
                let (address, version) = reads.iter().next().map_or((&[][..], 0), |(a, r)| {
                    (a.as_slice(), r.as_ref().map_or(0, |(m, _)| m.version))
                });
                let mut e = conflict(address, version, version + 1);
                if let Error::Conflict { attempts: a, .. } = &mut e {
                    *a = attempts;
                }
                return Err(e);
            }
            // Another writer got there first; after a few rounds, let it go on.
            if attempts > 3 {
                let pause = 1 + u64::from(attempts.min(50));
                std::thread::sleep(Duration::from_millis(fastrand::u64(0..=pause)));
            }
        }
    }

    /// The `Txn`: the identity, the caller's checks and every record read
    /// compared; the writes that change something (each with its lease) and
    /// `last`; on failure, the identity and the checked records read back.
    fn coordinated_txn(
        &self,
        request: &Request,
        writes: &[crate::access::request::Write],
        leases: &[i64],
        reads: &Reads,
        now: Timestamp,
    ) -> Result<proto::TxnRequest> {
        let layout = self.layout();
        let mut compares = Vec::new();
        let mut failure = Vec::new();
        let mut read_back = |key: Vec<u8>| {
            failure.push(proto::RequestOp {
                request: Some(proto::Request::Range(proto::RangeRequest {
                    key,
                    keys_only: true,
                    ..Default::default()
                })),
            });
        };
        if let Some(identity) = self.identity() {
            let key = layout.meta("store");
            compares.push(compare(
                &key,
                proto::CompareTarget::Mod,
                proto::TargetUnion::ModRevision(to_i64(identity)),
            ));
            read_back(key);
        }
        for check in &request.checks {
            let key = layout.record_of_address(&check.address);
            compares.push(check_compare(&key, check));
            read_back(key);
        }
        for (address, read) in reads {
            let key = layout.record_of_address(address);
            compares.push(as_read_compare(&key, read.as_ref().map(|(meta, _)| meta)));
        }
        let mut success = Vec::new();
        for (write, lease) in writes.iter().zip(leases) {
            let key = layout.record_of_address(&write.address);
            let read = reads.get(&write.address).and_then(Option::as_ref);
            match &write.kind {
                WriteKind::Put {
                    value,
                    skip_unchanged,
                } => {
                    if *skip_unchanged && read.is_some_and(|(_, stored)| stored == value) {
                        continue;
                    }
                    success.push(proto::RequestOp {
                        request: Some(proto::Request::Put(proto::PutRequest {
                            key,
                            value: record::encode(now, value),
                            lease: *lease,
                            prev_kv: false,
                        })),
                    });
                }
                WriteKind::Delete => {
                    if read.is_none() {
                        continue;
                    }
                    success.push(proto::RequestOp {
                        request: Some(proto::Request::DeleteRange(proto::DeleteRangeRequest {
                            key,
                            range_end: Vec::new(),
                            prev_kv: false,
                        })),
                    });
                }
                WriteKind::Patch { .. } => return Err(unexpanded()),
            }
        }
        if !success.is_empty() {
            success.push(super::ops::last_put(layout, now));
        }
        let txn = proto::TxnRequest {
            compare: compares,
            success,
            failure,
        };
        self.limits().check(
            txn.compare.len(),
            txn.success.len(),
            txn.failure.len(),
            prost::Message::encoded_len(&txn),
            request.writes.len(),
        )?;
        Ok(txn)
    }

    /// The leases (id and seconds left) whose records the store holds now.
    pub(crate) fn lease_clocks(&self) -> Result<Vec<(u64, Duration)>> {
        let (start, end) = self.layout().namespace(LEASES, "");
        let mut ids = Vec::new();
        self.scan(start, end, 0, &mut |found| {
            if let Some(id) = coord::lease_id(&found.key) {
                ids.push(id);
            }
            Ok(())
        })?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(ttl) = self.client().lease_time_to_live(to_i64(id))? {
                out.push((id, Duration::from_secs(u64::try_from(ttl).unwrap_or(0))));
            }
        }
        Ok(out)
    }
}

/// The etcd lease a write is put with: a lease record its own; a lock being
/// taken the lease taking it; a caller's write bound to a lease that lease;
/// anything else none (which detaches a record from a lease it was bound to).
fn lease_of(request: &Request, users: bool, address: &[u8]) -> i64 {
    let Some((namespace, name)) = key::decode(address) else {
        return 0;
    };
    if namespace == LEASES {
        return coord::lease_id(name).map_or(0, to_i64);
    }
    if namespace == LOCKS
        && let Some(LockOp::Acquire { name: lock, lease }) = &request.coord.lock
        && lock == name
    {
        return to_i64(*lease);
    }
    if users && let Some(lease) = request.coord.lease {
        return to_i64(lease);
    }
    0
}

/// What a commit of `writes` onto `reads` does, with 0 for its revision (not
/// known before etcd answers).
fn predict(
    writes: &[crate::access::request::Write],
    reads: &Reads,
    now: Timestamp,
) -> Result<Outcome> {
    let mut changed_any = false;
    let mut out = Vec::with_capacity(writes.len());
    for write in writes {
        let read = reads.get(&write.address).and_then(Option::as_ref);
        out.push(match &write.kind {
            WriteKind::Put {
                value,
                skip_unchanged,
            } => match read {
                Some((meta, stored)) if *skip_unchanged && stored == value => WriteOutcome::Put {
                    meta: *meta,
                    changed: false,
                },
                _ => {
                    changed_any = true;
                    WriteOutcome::Put {
                        meta: Meta {
                            version: read.map_or(0, |(m, _)| m.version) + 1,
                            create_revision: read.map_or(0, |(m, _)| m.create_revision),
                            mod_revision: 0,
                            updated_at: now,
                        },
                        changed: true,
                    }
                }
            },
            WriteKind::Delete => match read {
                Some((meta, _)) => {
                    changed_any = true;
                    WriteOutcome::Deleted {
                        version: meta.version,
                    }
                }
                None => WriteOutcome::Absent,
            },
            WriteKind::Patch { .. } => return Err(unexpanded()),
        });
    }
    Ok(Outcome {
        revision: changed_any.then_some(0),
        writes: out,
        patched: Vec::new(),
        replayed: false,
    })
}

/// `outcome` with its revision 0 (a prediction, or an idempotency key's kept
/// outcome) read as `revision`.
fn fill(mut outcome: Outcome, revision: u64) -> Outcome {
    if outcome.revision == Some(0) {
        outcome.revision = Some(revision);
    }
    for write in &mut outcome.writes {
        if let WriteOutcome::Put { meta, .. } = write {
            if meta.mod_revision == 0 {
                meta.mod_revision = revision;
            }
            if meta.create_revision == 0 {
                meta.create_revision = revision;
            }
        }
    }
    outcome
}

/// An etcd lease's TTL for `keep`, in whole seconds (rounded up).
pub(crate) fn ttl_seconds(keep: Duration) -> i64 {
    let millis = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    to_i64(millis.div_ceil(1000).max(1))
}

fn unexpanded() -> Error {
    Error::Poisoned {
        cause: "internal error: a patch reached an etcd transaction unevaluated".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_outcome_reads_its_revision_from_the_key() {
        let meta = |version, created, modified| Meta {
            version,
            create_revision: created,
            mod_revision: modified,
            updated_at: Timestamp::EPOCH,
        };
        let kept = Outcome {
            revision: Some(0),
            writes: vec![
                WriteOutcome::Put {
                    meta: meta(1, 0, 0),
                    changed: true,
                },
                WriteOutcome::Put {
                    meta: meta(4, 7, 0),
                    changed: true,
                },
                WriteOutcome::Put {
                    meta: meta(2, 3, 5),
                    changed: false,
                },
                WriteOutcome::Deleted { version: 2 },
            ],
            patched: Vec::new(),
            replayed: true,
        };
        let filled = fill(kept, 42);
        assert_eq!(filled.revision, Some(42));
        assert_eq!(
            filled.writes[..3],
            [
                WriteOutcome::Put {
                    meta: meta(1, 42, 42),
                    changed: true
                },
                WriteOutcome::Put {
                    meta: meta(4, 7, 42),
                    changed: true
                },
                WriteOutcome::Put {
                    meta: meta(2, 3, 5),
                    changed: false
                },
            ]
        );
        assert_eq!(ttl_seconds(Duration::from_millis(200)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(2001)), 3);
    }
}
