//! The public side of coordination: [`Batch`] (writes with fences,
//! preconditions, an idempotency key, a lease), [`Store::patch`], leases and
//! locks.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Store, Tx, TxOutcome};
use crate::access::request::{Check, Request, Write, WriteKind, WriteOutcome};
use crate::coord::patch::Patch;
use crate::coord::{
    CoordRequest, Fence, IDEMPOTENCY, Idempotency, IdempotencyRecord, LEASES, LOCKS, LeaseRecord,
    LockOp, LockRecord, RevisionCheck, call_digest, check_idempotency_key, check_lock_name,
};
use crate::error::{Error, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::Meta;
use crate::value::{self, RawValue, Versioned};

/// Writes committed together, at one revision, with what they depend on:
/// versions or revisions of records, locks still held (fences), an
/// idempotency key, a lease the records are bound to.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = statelog::Store::open(dir.path(), Default::default()).unwrap();
/// use statelog::{Batch, Patch};
/// let batch = Batch::new()
///     .patch("stats", "totals", &Patch::new().add(&["runs"], 1))
///     .put("runs", "r1", &"done")
///     .idempotency_key("run-r1");
/// let first = store.apply(&batch)?;
/// let again = store.apply(&batch)?;
/// assert!(!first.replayed && again.replayed);
/// assert_eq!(first.revision, again.revision);
/// assert_eq!(store.get::<serde_json::Value>("stats", "totals")?.unwrap().value["runs"], 1);
/// # Ok::<(), statelog::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Batch {
    checks: Vec<Check>,
    writes: Vec<Write>,
    coord: CoordRequest,
    skip_unchanged: bool,
    /// The first thing that could not be added, reported by `apply`.
    error: Option<String>,
    keep: Option<Duration>,
}

/// What became of one write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    /// The record was written (or left alone when unchanged, with
    /// [`Batch::if_changed`]).
    Put {
        /// Its metadata now.
        meta: Meta,
        /// False when skipped as unchanged.
        changed: bool,
        /// For a patch: the value it computed at commit.
        value: Option<RawValue>,
    },
    /// The record, which had `version`, was deleted.
    Deleted {
        /// The version it had.
        version: u64,
    },
    /// There was nothing to delete.
    Absent,
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// The commit's revision; `None` when nothing was written.
    pub revision: Option<u64>,
    /// One per write, in the order they were added.
    pub writes: Vec<WriteResult>,
    /// True when this is the first outcome of the same batch with the same
    /// idempotency key, returned again: nothing was written now.
    pub replayed: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    fn address(&mut self, namespace: &str, key: &str) -> Option<Vec<u8>> {
        match key::encode(namespace, key) {
            Ok(address) => Some(address),
            Err(e) => {
                self.error.get_or_insert(e.to_string());
                None
            }
        }
    }

    fn write(mut self, namespace: &str, key: &str, kind: WriteKind) -> Batch {
        if let Some(address) = self.address(namespace, key) {
            self.writes.push(Write { address, kind });
        }
        self
    }

    /// Writes a value.
    pub fn put<T: Serialize + ?Sized>(self, namespace: &str, key: &str, value: &T) -> Batch {
        match value::encode(namespace, key, value) {
            Ok(bytes) => self.write(
                namespace,
                key,
                WriteKind::Put {
                    value: bytes,
                    skip_unchanged: false,
                },
            ),
            Err(e) => {
                let mut batch = self;
                batch.error.get_or_insert(e.to_string());
                batch
            }
        }
    }

    /// Writes a value given as MessagePack.
    pub fn put_raw(self, namespace: &str, key: &str, value: RawValue) -> Batch {
        self.write(
            namespace,
            key,
            WriteKind::Put {
                value: value.into_msgpack(),
                skip_unchanged: false,
            },
        )
    }

    /// Deletes a record (nothing if it is absent).
    pub fn delete(self, namespace: &str, key: &str) -> Batch {
        self.write(namespace, key, WriteKind::Delete)
    }

    /// Patches a record at commit (see [`Patch`]).
    pub fn patch(mut self, namespace: &str, key: &str, patch: &Patch) -> Batch {
        match patch.checked_ops(namespace, key) {
            Ok(ops) => self.write(
                namespace,
                key,
                WriteKind::Patch {
                    ops,
                    skip_unchanged: false,
                },
            ),
            Err(e) => {
                self.error.get_or_insert(e.to_string());
                self
            }
        }
    }

    /// Requires the record to have `version` (0: to be absent) at commit.
    pub fn if_version(mut self, namespace: &str, key: &str, version: u64) -> Batch {
        if let Some(address) = self.address(namespace, key) {
            self.checks.push(Check {
                address,
                expected: version,
                modified: None,
            });
        }
        self
    }

    /// Requires the record's last write to be the commit at `revision` (0: to
    /// be absent) at commit. Unlike a version, a revision is never reused: a
    /// record deleted and created again is never taken for the old one.
    pub fn if_revision(mut self, namespace: &str, key: &str, revision: u64) -> Batch {
        if let Some(address) = self.address(namespace, key) {
            self.coord
                .revisions
                .push(RevisionCheck { address, revision });
        }
        self
    }

    /// Leaves alone every put and patch whose value equals the stored one: no
    /// new version, and no log record if nothing else changes.
    pub fn if_changed(mut self) -> Batch {
        self.skip_unchanged = true;
        self
    }

    /// Requires lock `lock` to be held with `token` at commit: a holder that
    /// lost the lock (its lease ended) cannot write (see [`Error::Fenced`]).
    pub fn fence(mut self, lock: &str, token: u64) -> Batch {
        if let Err(e) = check_lock_name(lock) {
            self.error.get_or_insert(e.to_string());
        }
        self.coord.fences.push(Fence {
            lock: lock.to_owned(),
            token,
        });
        self
    }

    /// Makes the batch idempotent under `key` (at most 255 bytes): the same
    /// batch applied again with the same key returns the first outcome,
    /// marked [`replayed`](BatchOutcome::replayed), and writes nothing; a
    /// different batch with the key fails with
    /// [`Error::IdempotencyKeyReused`]. Keys are kept for
    /// [`Options::idempotency_retention`](crate::Options::idempotency_retention)
    /// (a day by default), or [`keep_key_for`](Self::keep_key_for).
    pub fn idempotency_key(mut self, key: &str) -> Batch {
        if let Err(e) = check_idempotency_key(key) {
            self.error.get_or_insert(e.to_string());
        }
        self.coord.idempotency = Some(Idempotency {
            key: key.to_owned(),
            keep: Duration::ZERO,
            call: None,
            result: None,
        });
        self
    }

    /// How long this batch's idempotency key is kept.
    pub fn keep_key_for(mut self, keep: Duration) -> Batch {
        self.keep = Some(keep);
        self
    }

    /// Binds the records this batch puts or patches to a lease: they are
    /// deleted when it ends (unless written again without it meanwhile).
    pub fn lease(mut self, lease: &Lease) -> Batch {
        self.coord.lease = Some(lease.id);
        self
    }

    fn to_request(&self, store: &Store) -> Result<Request> {
        if let Some(reason) = &self.error {
            return Err(Error::InvalidOption {
                name: "batch",
                reason: reason.clone(),
            });
        }
        let mut writes = self.writes.clone();
        let mut seen = std::collections::HashSet::new();
        for write in &mut writes {
            if !seen.insert(write.address.clone()) {
                let (namespace, key) = key::decode(&write.address).unwrap_or(("?", "?"));
                return Err(Error::InvalidOption {
                    name: "batch",
                    reason: format!(
                        "{}/{} is written twice in one batch",
                        crate::Shown::new(namespace),
                        crate::Shown::new(key)
                    ),
                });
            }
            if self.skip_unchanged {
                match &mut write.kind {
                    WriteKind::Put { skip_unchanged, .. }
                    | WriteKind::Patch { skip_unchanged, .. } => *skip_unchanged = true,
                    WriteKind::Delete => {}
                }
            }
        }
        let mut coord = self.coord.clone();
        if let Some(idempotency) = &mut coord.idempotency {
            idempotency.keep = self.keep.unwrap_or(store.options().idempotency_retention);
        }
        Ok(Request {
            checks: self.checks.clone(),
            writes,
            coord,
        })
    }
}

/// A lease: ends when revoked or when not kept alive within its TTL, and with
/// it the locks it holds and the records bound to it. Kept by the process
/// holding the store, on its monotonic clock.
///
/// It holds a clone of the [`Store`] handle: the process lets go of the
/// store's files once the store and its leases are all dropped. Dropping a
/// lease does not end it (its TTL does).
#[derive(Debug, Clone)]
pub struct Lease {
    store: Store,
    id: u64,
    ttl: Duration,
}

/// A lock held under a lease, with its fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGrant {
    /// The lock's name.
    pub name: String,
    /// The fencing token: the revision of the commit that granted the lock.
    /// Tokens strictly increase across all grants of all locks of a store.
    pub token: u64,
    /// The lease it is held under.
    pub lease: u64,
}

/// A lock as [`Store::locks`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock's name.
    pub name: String,
    /// Its holder's fencing token.
    pub token: u64,
    /// The lease holding it.
    pub lease: u64,
    /// Who holds it (as the lease says).
    pub holder: String,
    /// When it was granted.
    pub since: Timestamp,
}

/// A lease as [`Store::leases`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// Its id.
    pub id: u64,
    /// Its TTL.
    pub ttl: Duration,
    /// Who took it.
    pub holder: String,
    /// When it was granted.
    pub since: Timestamp,
    /// The locks it holds.
    pub locks: Vec<String>,
    /// How many records are bound to it.
    pub bound: usize,
    /// What is left of its time, as the holder's clock says (`None`: its time
    /// is up and its end is being committed).
    pub remaining: Option<Duration>,
}

impl Lease {
    /// Its id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Keeps it alive: its full TTL from now.
    ///
    /// # Errors
    /// [`Error::LeaseExpired`] when it has ended (its locks are gone).
    pub fn keep_alive(&self) -> Result<()> {
        self.store.call(|b| b.lease_keep_alive(self.id)).map(|_| ())
    }

    /// Ends it now, with its locks and the records bound to it.
    ///
    /// # Errors
    /// The errors of a commit.
    pub fn revoke(&self) -> Result<()> {
        self.store.call(|b| b.lease_revoke(self.id)).map(|_| ())
    }

    /// Takes lock `name` under this lease, waiting up to `wait` for its
    /// holder to release it (keeping this lease alive meanwhile); `None`
    /// tries once.
    ///
    /// # Errors
    /// [`Error::LockHeld`] when it stayed held; [`Error::LeaseExpired`].
    pub fn lock(&self, name: &str, wait: Option<Duration>) -> Result<LockGrant> {
        check_lock_name(name)?;
        // The process holding the store wakes the waiter when a lock is
        // released or a lease ends (through a holder too): no polling.
        // Sent again to the next holder when one closes: with what is left.
        let deadline = std::time::Instant::now() + wait.unwrap_or(Duration::ZERO);
        let token = self.store.call(|b| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            b.lock_wait(name, self.id, left, &|| true)
        })?;
        Ok(LockGrant {
            name: name.to_owned(),
            token,
            lease: self.id,
        })
    }

    /// Gives a lock back. Giving back a lock that is not held with this
    /// token any more is [`Error::Fenced`].
    ///
    /// # Errors
    /// [`Error::Fenced`]; the errors of a commit.
    pub fn unlock(&self, grant: &LockGrant) -> Result<()> {
        let request = Request {
            coord: CoordRequest {
                lock: Some(LockOp::Release {
                    name: grant.name.clone(),
                    token: grant.token,
                }),
                ..CoordRequest::default()
            },
            ..Request::default()
        };
        self.store.commit(&Arc::new(request)).map(|_| ())
    }
}

/// The result of [`Store::update_with_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedUpdate<T> {
    /// The value written and the record's metadata after that write. For a
    /// replay, the first run's: the record may have changed since.
    pub record: Versioned<T>,
    /// True when this is the first call's result with the same idempotency
    /// key, returned again without running the closure: nothing was written
    /// now.
    pub replayed: bool,
}

/// A transaction with an idempotency key: how to keep its closure's result
/// and read it back for a replay.
pub(crate) struct KeyedCall<'a, T> {
    pub idempotency: Idempotency,
    pub encode: &'a dyn Fn(&T) -> Result<Vec<u8>>,
    pub decode: &'a dyn Fn(&[u8]) -> Result<T>,
}

impl<T> KeyedCall<'_, T> {
    /// The first run's outcome, from its kept key.
    pub(crate) fn replay(&self, kept: IdempotencyRecord) -> Result<TxOutcome<T>> {
        let result = kept
            .result
            .as_deref()
            .ok_or_else(|| kept_without_result(&self.idempotency))?;
        Ok(TxOutcome {
            value: (self.decode)(result)?,
            revision: kept.revision,
            replayed: true,
        })
    }
}

fn kept_without_result(idempotency: &Idempotency) -> Error {
    Error::IdempotencyKeyReused {
        key: idempotency.key.clone(),
        first: None,
    }
}

impl IdempotencyRecord {
    /// The first run's result of an `update` of `namespace`/`key`.
    pub(crate) fn updated<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Versioned<T>> {
        let meta = match self.clone().outcome().writes.first() {
            Some(WriteOutcome::Put { meta, .. }) => *meta,
            _ => {
                return Err(Error::Poisoned {
                    cause: "internal error: a kept update has no put".to_owned(),
                });
            }
        };
        let bytes = self.result.as_deref().ok_or_else(|| Error::Poisoned {
            cause: "internal error: a kept update has no value".to_owned(),
        })?;
        Ok(Versioned::new(value::decode(namespace, key, bytes)?, meta))
    }
}

/// What identifies an `update` of `address` for its idempotency key.
fn update_call(address: &[u8]) -> Vec<u8> {
    [b"update\0".as_slice(), address].concat()
}

/// What identifies a transaction for its idempotency key: only that it is
/// one (its records are known only once its closure has run).
const TRANSACTION_CALL: &[u8] = b"transaction";

/// A description of this process, for the holder of a lease.
fn this_process() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        format!("pid {}", std::process::id())
    } else {
        format!("pid {} on {host}", std::process::id())
    }
}

impl Store {
    /// The idempotency of a closure-based call identified by `call`, kept for
    /// `keep` (the store's retention when `None`).
    pub(crate) fn keyed_call(
        &self,
        key: &str,
        call: Vec<u8>,
        keep: Option<Duration>,
    ) -> Result<Idempotency> {
        check_idempotency_key(key)?;
        Ok(Idempotency {
            key: key.to_owned(),
            keep: keep.unwrap_or(self.options().idempotency_retention),
            call: Some(call),
            result: None,
        })
    }

    /// The key of `idempotency`'s call as kept now: `None` when unknown or
    /// expired; [`Error::IdempotencyKeyReused`] when it was used for another
    /// request.
    pub(crate) fn known_call(
        &self,
        idempotency: &Idempotency,
    ) -> Result<Option<IdempotencyRecord>> {
        let address = key::encode_unchecked(IDEMPOTENCY, &idempotency.key);
        let mut found = None;
        self.call(|b| {
            found = None;
            b.get(&address, &mut |meta, bytes| {
                found = Some(IdempotencyRecord::decode(bytes)?.zero_revision_as(meta.mod_revision));
                Ok(())
            })
        })?;
        let Some(kept) = found else {
            return Ok(None);
        };
        if kept.expires <= Timestamp::now().as_micros() {
            return Ok(None);
        }
        let call = idempotency.call.as_deref().unwrap_or_default();
        if kept.digest.as_slice() != call_digest(call).as_slice() || kept.result.is_none() {
            return Err(Error::IdempotencyKeyReused {
                key: idempotency.key.clone(),
                first: kept.revision,
            });
        }
        Ok(Some(kept))
    }

    /// The kept key of a call whose commit was answered as a replay.
    pub(crate) fn kept_call(&self, idempotency: Option<&Idempotency>) -> Result<IdempotencyRecord> {
        let idempotency = idempotency.ok_or_else(|| Error::Poisoned {
            cause: "internal error: a call without a key was replayed".to_owned(),
        })?;
        self.known_call(idempotency)?
            .ok_or_else(|| kept_without_result(idempotency))
    }

    /// [`update`](Self::update) made idempotent under `idempotency_key`: the
    /// first call that succeeds is kept with its result, and a call with the
    /// same key made again returns that result, marked
    /// [`replayed`](KeyedUpdate::replayed), **without running `f`** and
    /// without writing. (A retried closure would read what the first run
    /// wrote and compute something else: the key is checked before `f` runs.)
    ///
    /// "The same call" is an update of the same record: an update of another
    /// record, a transaction or a [`Batch`] with this key fails with
    /// [`Error::IdempotencyKeyReused`]. Keys are kept for
    /// [`Options::idempotency_retention`](crate::Options::idempotency_retention).
    /// Two calls racing with one key both run `f`, but only one writes: the
    /// other returns the first's result as a replay.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let mut runs = 0;
    /// for _ in 0..3 {
    ///     // A step retried after a timeout: it counts once.
    ///     let done = store.update_with_key("deploy-42", "stats", "deploys", |n: Option<u64>| {
    ///         runs += 1;
    ///         Ok::<_, statelog::Error>(n.unwrap_or(0) + 1)
    ///     })?;
    ///     assert_eq!((done.record.value, done.record.version), (1, 1));
    /// }
    /// assert_eq!(runs, 1);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`update`](Self::update); [`Error::IdempotencyKeyReused`];
    /// [`Error::InvalidOption`] for a key that is not valid.
    pub fn update_with_key<T, E, F>(
        &self,
        idempotency_key: &str,
        namespace: &str,
        key: &str,
        f: F,
    ) -> std::result::Result<KeyedUpdate<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnMut(Option<T>) -> std::result::Result<T, E>,
    {
        let address = key::encode(namespace, key)?;
        let keyed = self.keyed_call(idempotency_key, update_call(&address), None)?;
        let (record, replayed) = self.update_keyed(namespace, key, Some(keyed), f)?;
        Ok(KeyedUpdate { record, replayed })
    }

    /// [`transaction`](Self::transaction) made idempotent under
    /// `idempotency_key`: the first run that commits is kept with what `f`
    /// returned, and a call with the same key made again returns that,
    /// marked [`replayed`](TxOutcome::replayed), **without running `f`** and
    /// without writing.
    ///
    /// "The same call" is any transaction: before `f` runs, nothing else is
    /// known about it. An update, an import or a [`Batch`] with this key
    /// fails with [`Error::IdempotencyKeyReused`]. A transaction that writes
    /// nothing commits nothing and keeps no key. Two calls racing with one key
    /// both run `f`, but only one writes: the other returns the first's
    /// result as a replay.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.put("accounts", "a", &10)?;
    /// let pay = |tx: &mut statelog::Tx| {
    ///     let a: i64 = tx.get("accounts", "a")?.map_or(0, |r| r.value);
    ///     tx.put("accounts", "a", &(a - 3))?;
    ///     Ok::<_, statelog::Error>(a - 3)
    /// };
    /// let first = store.transaction_with_key("payment-7", pay)?;
    /// let again = store.transaction_with_key("payment-7", pay)?;
    /// assert_eq!((first.value, again.value), (7, 7));
    /// assert!(!first.replayed && again.replayed);
    /// assert_eq!(store.get::<i64>("accounts", "a")?.unwrap().value, 7);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`transaction`](Self::transaction);
    /// [`Error::IdempotencyKeyReused`]; [`Error::InvalidOption`] for a key
    /// that is not valid; [`Error::Encode`] if what `f` returns cannot be
    /// kept.
    pub fn transaction_with_key<T, E, F>(
        &self,
        idempotency_key: &str,
        f: F,
    ) -> std::result::Result<TxOutcome<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnMut(&mut Tx) -> std::result::Result<T, E>,
    {
        let idempotency = self.keyed_call(idempotency_key, TRANSACTION_CALL.to_vec(), None)?;
        self.keyed_transaction(idempotency, f)
    }

    /// A transaction kept under `idempotency` (its call set).
    pub(crate) fn keyed_transaction<T, E, F>(
        &self,
        idempotency: Idempotency,
        f: F,
    ) -> std::result::Result<TxOutcome<T>, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnMut(&mut Tx) -> std::result::Result<T, E>,
    {
        let key = idempotency.key.clone();
        let encode = |value: &T| value::encode(IDEMPOTENCY, &key, value);
        let decode = |bytes: &[u8]| value::decode(IDEMPOTENCY, &key, bytes);
        let keyed = KeyedCall {
            idempotency,
            encode: &encode,
            decode: &decode,
        };
        self.transaction_keyed(Some(keyed), f)
    }

    /// Commits a [`Batch`]: all its writes at one new revision if everything
    /// it depends on holds, otherwise nothing.
    ///
    /// # Examples
    /// ```
    /// use statelog::{Batch, WriteResult};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let first = store.put("jobs", "build", &"queued")?;
    /// let batch = Batch::new()
    ///     .if_version("jobs", "build", first.version)
    ///     .put("jobs", "build", &"running")
    ///     .delete("queue", "build");
    /// let outcome = store.apply(&batch)?;
    /// assert_eq!(outcome.revision, Some(2));
    /// assert!(matches!(outcome.writes[1], WriteResult::Absent));
    /// // The same batch again: the version it depends on has changed.
    /// assert!(matches!(store.apply(&batch), Err(statelog::Error::Conflict { .. })));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] (a version), [`Error::RevisionMismatch`],
    /// [`Error::Fenced`], [`Error::IdempotencyKeyReused`],
    /// [`Error::PatchFailed`], [`Error::LeaseExpired`],
    /// [`Error::InvalidOption`] for a batch that could not be built (the
    /// first problem), and the errors of a commit.
    pub fn apply(&self, batch: &Batch) -> Result<BatchOutcome> {
        let request = batch.to_request(self)?;
        let outcome = self.commit(&Arc::new(request))?;
        let mut patched = outcome.patched.into_iter().peekable();
        let writes = outcome
            .writes
            .into_iter()
            .enumerate()
            .map(|(index, w)| match w {
                WriteOutcome::Put { meta, changed } => {
                    let value = match patched.peek() {
                        Some((i, _)) if *i == index => {
                            patched.next().map(|(_, v)| RawValue::from_trusted(v))
                        }
                        _ => None,
                    };
                    WriteResult::Put {
                        meta,
                        changed,
                        value,
                    }
                }
                WriteOutcome::Deleted { version } => WriteResult::Deleted { version },
                WriteOutcome::Absent => WriteResult::Absent,
            })
            .collect();
        Ok(BatchOutcome {
            revision: outcome.revision,
            writes,
            replayed: outcome.replayed,
        })
    }

    /// Patches a record at commit: the patch applies to the value the record
    /// has when the commit is applied, so patches never conflict. Returns the
    /// new value and metadata.
    ///
    /// # Examples
    /// ```
    /// use statelog::Patch;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// store.patch("stats", "totals", &Patch::new().add(&["runs"], 1))?;
    /// let totals = store.patch("stats", "totals", &Patch::new().add(&["runs"], 1))?;
    /// assert_eq!(totals.value.to_json().unwrap(), r#"{"runs":2}"#);
    /// assert_eq!(totals.version, 2);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PatchFailed`] (nothing written); [`Error::InvalidKey`]; the
    /// errors of a commit.
    pub fn patch(&self, namespace: &str, key: &str, patch: &Patch) -> Result<Versioned<RawValue>> {
        key::encode(namespace, key)?;
        let outcome = self.apply(&Batch::new().patch(namespace, key, patch))?;
        match outcome.writes.into_iter().next() {
            Some(WriteResult::Put {
                meta,
                value: Some(value),
                ..
            }) => Ok(Versioned::new(value, meta)),
            _ => Err(Error::Poisoned {
                cause: "internal error: a patch produced no value".to_owned(),
            }),
        }
    }

    /// Takes a lease of `ttl` (100 ms to a day). Keep it alive with
    /// [`Lease::keep_alive`] more often than its TTL.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let lease = store.grant_lease(Duration::from_secs(10))?;
    /// let grant = lease.lock("deploy", None)?;
    /// assert_eq!(grant.lease, lease.id());
    /// lease.keep_alive()?;
    /// lease.revoke()?;
    /// assert!(store.locks()?.is_empty());
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a TTL out of range;
    /// [`Error::Unsupported`] for a store on etcd (not yet); the errors of a
    /// commit.
    pub fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        self.grant_lease_as(ttl, &this_process())
    }

    /// Like [`grant_lease`](Self::grant_lease), naming the holder as
    /// `holder` (shown by [`locks`](Self::locks) and [`leases`](Self::leases)).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let lease = store.grant_lease_as(Duration::from_secs(10), "worker-1")?;
    /// let leases = store.leases()?;
    /// assert_eq!((leases[0].id, leases[0].holder.as_str()), (lease.id(), "worker-1"));
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`grant_lease`](Self::grant_lease).
    pub fn grant_lease_as(&self, ttl: Duration, holder: &str) -> Result<Lease> {
        crate::coord::leases::check_ttl(ttl)?;
        let id = self.call(|b| b.lease_grant(ttl, holder))?;
        Ok(Lease {
            store: self.clone(),
            id,
            ttl,
        })
    }

    fn internal_records(&self, namespace: &str) -> Result<Vec<(String, Meta, Vec<u8>)>> {
        let view = self.call(|b| b.snapshot())?;
        let start = key::namespace_start(namespace, "");
        let end = key::namespace_end(namespace);
        let mut out = Vec::new();
        for entry in view.range(Bound::Included(start), Bound::Excluded(end))? {
            let entry = entry?;
            if let Some((_, key)) = key::decode(&entry.address) {
                out.push((key.to_owned(), entry.meta, entry.value));
            }
        }
        Ok(out)
    }

    /// The locks held now, by name.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let lease = store.grant_lease_as(Duration::from_secs(10), "worker-1")?;
    /// let grant = lease.lock("deploy", None)?;
    /// let locks = store.locks()?;
    /// assert_eq!(locks.len(), 1);
    /// assert_eq!((locks[0].name.as_str(), locks[0].token), ("deploy", grant.token));
    /// assert_eq!(locks[0].holder, "worker-1");
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of a read.
    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        self.internal_records(LOCKS)?
            .into_iter()
            .map(|(name, meta, value)| {
                let record = LockRecord::decode(&value)?;
                Ok(LockInfo {
                    name,
                    token: meta.create_revision,
                    lease: record.lease,
                    holder: record.holder,
                    since: meta.updated_at,
                })
            })
            .collect()
    }

    /// The leases, by id.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let lease = store.grant_lease(Duration::from_secs(10))?;
    /// lease.lock("deploy", None)?;
    /// let leases = store.leases()?;
    /// assert_eq!(leases.len(), 1);
    /// assert_eq!(leases[0].locks, ["deploy"]);
    /// assert!(leases[0].remaining.is_some());
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of a read.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>> {
        let remaining: std::collections::HashMap<u64, Duration> = self
            .call(|b| b.lease_remaining())
            .unwrap_or_default()
            .into_iter()
            .collect();
        self.internal_records(LEASES)?
            .into_iter()
            .filter_map(|(key, meta, value)| {
                crate::coord::lease_id(&key).map(|id| (id, meta, value))
            })
            .map(|(id, _, value)| {
                let record = LeaseRecord::decode(&value)?;
                Ok(LeaseInfo {
                    id,
                    ttl: Duration::from_millis(record.ttl_ms),
                    holder: record.holder,
                    since: Timestamp::from_micros(record.granted),
                    locks: record.locks,
                    bound: record.bound.len(),
                    remaining: remaining.get(&id).copied().filter(|d| !d.is_zero()),
                })
            })
            .collect()
    }

    /// How many idempotency keys the store keeps now.
    ///
    /// # Examples
    /// ```
    /// use statelog::Batch;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = statelog::Store::open(dir.path().join("state"), statelog::Options::default())?;
    /// let batch = Batch::new().put("runs", "r1", &"done").idempotency_key("run-r1");
    /// store.apply(&batch)?;
    /// store.apply(&batch)?; // replayed: nothing written
    /// assert_eq!(store.idempotency_keys()?, 1);
    /// # Ok::<(), statelog::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of a read.
    pub fn idempotency_keys(&self) -> Result<u64> {
        Ok(self.internal_records(IDEMPOTENCY)?.len() as u64)
    }
}
