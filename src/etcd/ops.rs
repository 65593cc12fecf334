//! statelog's operations on etcd: reads at a revision, paged listings that are
//! snapshots, and commits as one etcd transaction that compares what was read.
//!
//! A commit ([`Request`], the embedded store's own) becomes one `Txn`:
//! - compares: the store's identity key still the one the handle opened
//!   (`MOD == identity`); each check's version (`VERSION == expected`, which
//!   also holds for an absent key at 0), or, when the check names the write
//!   that was read, its modification revision (`MOD == modified`, which fixes
//!   the version too); for a write that may change nothing (a put skipped
//!   when unchanged, a delete), the state it was read in (`MOD ==` the read,
//!   or `VERSION == 0` when absent);
//! - success: a put (with the previous key-value, for the new metadata,
//!   unless a check names the write it replaces and this handle read that
//!   write: see [`LastReads`]) or a delete per write that changes something,
//!   and the put of the store's
//!   `last` key (the commit time): its modification revision is the store's
//!   revision. A commit that changes nothing sends no write and takes no
//!   revision, as in the embedded store;
//! - failure: a keys-only range of every compared key, so a conflict reports
//!   the actual version from the same atomic step.
//!
//! It is checked against etcd's limits before it is sent, so a commit is
//! either sent whole or refused whole.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message;

use super::client::{Client, to_i64};
use super::keys::Layout;
use super::proto;
use super::record::{self, Limits};
use super::watch::Watch;
use crate::access::request::{Check, Outcome, Request, Write, WriteKind, WriteOutcome};
use crate::error::{Error, Result};
use crate::key;
use crate::time::{Clock, Timestamp};
use crate::value::Meta;
use crate::value::{RawValue, Versioned};

/// For each write that may change nothing (a put skipped when unchanged, a
/// delete): the record as read before the commit (metadata and MessagePack
/// value), or `None` when absent.
type Current = BTreeMap<Vec<u8>, Option<(Meta, Vec<u8>)>>;

/// Records per page of a listing.
pub(crate) const PAGE: i64 = 500;
/// How often a commit is rebuilt when a record read for it (not one of the
/// caller's checks) changed meanwhile.
const REBUILD_ROUNDS: u32 = 32;
/// Records whose last read a handle remembers (see [`LastReads`]).
const REMEMBERED: usize = 4096;

/// The version and create revision of the records this handle read last, by
/// address, with the modification revision they were read at. The write at
/// one key and modification revision never changes, so when a commit's check
/// names that modification revision and holds, the record replaced is that
/// write: its new metadata is known without asking etcd for the previous
/// key-value (`prev_kv`, a read inside etcd's apply).
#[derive(Debug, Default)]
struct LastReads {
    /// address -> (modification revision, version, create revision).
    records: parking_lot::Mutex<std::collections::HashMap<Vec<u8>, (u64, u64, u64)>>,
}

impl LastReads {
    fn remember(&self, address: &[u8], meta: &Meta) {
        let mut records = self.records.lock();
        if records.len() >= REMEMBERED && !records.contains_key(address) {
            records.clear();
        }
        let entry = (meta.mod_revision, meta.version, meta.create_revision);
        match records.get_mut(address) {
            Some(known) => *known = entry,
            None => {
                records.insert(address.to_vec(), entry);
            }
        }
    }

    /// The (version, create revision) of the write at `address` and
    /// `mod_revision`, when it was read.
    fn of(&self, address: &[u8], mod_revision: u64) -> Option<(u64, u64)> {
        let records = self.records.lock();
        let &(modified, version, created) = records.get(address)?;
        (modified == mod_revision).then_some((version, created))
    }
}

/// For each put a check pins to the write it replaces (the check's
/// modification revision): that write's (version, create revision), when this
/// handle read it.
type Replaced = BTreeMap<Vec<u8>, (u64, u64)>;

/// A record read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdRecord {
    /// Its namespace.
    pub namespace: String,
    /// Its key.
    pub key: String,
    /// Its value and metadata.
    pub record: Versioned<RawValue>,
}

/// Where a store stands: its last commit, and the etcd revision it was read
/// at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// The store's revision: the etcd revision of its last commit (0: none).
    pub revision: u64,
    /// That commit's time (the epoch without one).
    pub time: Timestamp,
    /// The cluster's revision when it was read: reading at it shows the same
    /// state of this store as reading at `revision`.
    pub read_at: u64,
}

/// A statelog store kept in etcd under one prefix.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    client: Client,
    layout: Layout,
    limits: Limits,
    /// The modification revision of the store's identity key, which every
    /// commit compares (`None`: not checked, for stores made without one).
    identity: Option<u64>,
    clock: Clock,
    /// What this handle (and its clones) last read of each record.
    reads: std::sync::Arc<LastReads>,
}

impl EtcdStore {
    /// The store under `layout`'s prefix on the cluster `client` reaches. Nothing
    /// is sent yet.
    pub fn new(client: Client, layout: Layout, limits: Limits) -> EtcdStore {
        EtcdStore {
            client,
            layout,
            limits,
            identity: None,
            clock: Clock::default(),
            reads: std::sync::Arc::default(),
        }
    }

    /// Commits compare the identity key's modification revision with
    /// `revision`; commit times come from `clock`.
    pub(crate) fn opened(mut self, identity: u64, clock: Clock) -> EtcdStore {
        self.identity = Some(identity);
        self.clock = clock;
        self
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The modification revision of the identity key commits compare.
    pub(crate) fn identity(&self) -> Option<u64> {
        self.identity
    }

    /// The clock commit times come from.
    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The limits commits are checked against.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// What errors name as the store.
    pub(crate) fn label(&self) -> PathBuf {
        self.client.conn().label.clone()
    }

    /// The store's revision: the etcd revision of its last commit (etcd's
    /// revision counts every write to the cluster, under any prefix; this
    /// counts the store's). 0 for a store without commits.
    ///
    /// # Errors
    /// The connection errors.
    pub fn revision(&self) -> Result<u64> {
        Ok(self.head()?.revision)
    }

    /// The store's last commit and the cluster's revision, read together.
    pub(crate) fn head(&self) -> Result<Head> {
        let response = self.client.range(proto::RangeRequest {
            key: self.layout.meta("last"),
            ..Default::default()
        })?;
        let read_at = header_revision(response.header.as_ref());
        Ok(match response.kvs.first() {
            None => Head {
                revision: 0,
                time: Timestamp::EPOCH,
                read_at,
            },
            Some(kv) => Head {
                revision: u64::try_from(kv.mod_revision).unwrap_or(0),
                time: record::decode(&kv.value).map_or(Timestamp::EPOCH, |(t, _)| t),
                read_at,
            },
        })
    }

    /// Reads one record, at `revision` (0: the latest).
    ///
    /// # Errors
    /// [`Error::InvalidKey`]; [`Error::Compacted`]; the connection errors.
    pub fn get(
        &self,
        namespace: &str,
        key: &str,
        revision: u64,
    ) -> Result<Option<Versioned<RawValue>>> {
        let etcd_key = self.layout.record(namespace, key)?;
        let response = self.client.range(proto::RangeRequest {
            key: etcd_key,
            revision: to_i64(revision),
            ..Default::default()
        })?;
        match response.kvs.first() {
            None => Ok(None),
            Some(kv) => {
                let read = to_versioned(namespace, key, kv)?;
                if revision == 0 {
                    self.reads
                        .remember(&key::encode(namespace, key)?, &read.meta());
                }
                Ok(Some(read))
            }
        }
    }

    /// One record by its encoded address, at `revision` (0: the latest): its
    /// metadata and MessagePack value.
    pub(crate) fn get_address(
        &self,
        address: &[u8],
        revision: u64,
    ) -> Result<Option<(Meta, Vec<u8>)>> {
        let response = self.client.range(proto::RangeRequest {
            key: self.layout.record_of_address(address),
            revision: to_i64(revision),
            ..Default::default()
        })?;
        match response.kvs.into_iter().next() {
            None => Ok(None),
            Some(kv) => {
                let (updated, _) =
                    record::decode(&kv.value).ok_or_else(|| foreign_address(address))?;
                let meta = record::meta(&kv, updated);
                if revision == 0 {
                    self.reads.remember(address, &meta);
                }
                let mut value = kv.value;
                value.drain(..record::HEADER_LEN);
                Ok(Some((meta, value)))
            }
        }
    }

    /// Lists the records of `namespace` whose keys start with `key_prefix`, in
    /// key order, as of one revision: `revision`, or (0) the latest, read page
    /// by page at the revision of the first page. Returns that revision.
    ///
    /// # Errors
    /// [`Error::Compacted`] if etcd compacted the revision while the pages were
    /// read (read again); the connection errors.
    pub fn list(
        &self,
        namespace: &str,
        key_prefix: &str,
        revision: u64,
        mut each: impl FnMut(EtcdRecord) -> Result<()>,
    ) -> Result<u64> {
        key::validate(crate::error::KeyPart::Namespace, namespace)?;
        let (start, end) = self.layout.namespace(namespace, key_prefix);
        self.scan(start, end, revision, &mut each)
    }

    /// Lists every record of the store at one revision (see [`list`](Self::list)).
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub fn list_all(
        &self,
        revision: u64,
        mut each: impl FnMut(EtcdRecord) -> Result<()>,
    ) -> Result<u64> {
        let (start, end) = self.layout.records();
        self.scan(start, end, revision, &mut each)
    }

    pub(super) fn scan(
        &self,
        mut start: Vec<u8>,
        end: Vec<u8>,
        mut revision: u64,
        each: &mut dyn FnMut(EtcdRecord) -> Result<()>,
    ) -> Result<u64> {
        loop {
            let response = self.client.range(proto::RangeRequest {
                key: start.clone(),
                range_end: end.clone(),
                limit: PAGE,
                revision: to_i64(revision),
                ..Default::default()
            })?;
            if revision == 0 {
                revision = header_revision(response.header.as_ref());
            }
            for kv in &response.kvs {
                let Some((namespace, key)) = self.layout.decode_record(&kv.key) else {
                    return Err(record::foreign(&String::from_utf8_lossy(&kv.key), ""));
                };
                each(EtcdRecord {
                    namespace: namespace.to_owned(),
                    key: key.to_owned(),
                    record: to_versioned(namespace, key, kv)?,
                })?;
            }
            match response.kvs.last() {
                Some(last) if response.more => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => return Ok(revision),
            }
        }
    }

    /// Commits a request as one etcd transaction.
    ///
    /// # Errors
    /// [`Error::Conflict`] when a check fails (with the actual version);
    /// [`Error::LimitExceeded`] before anything is sent when the transaction
    /// would exceed etcd's limits (or when etcd refuses it as too large, or its
    /// database is full): nothing is written; [`Error::OutcomeUnknown`] when the
    /// answer was lost; [`Error::NotAStore`] when the store was removed or
    /// replaced since it was opened; the connection errors.
    pub(crate) fn commit_request(&self, request: &Request) -> Result<Outcome> {
        let mut round = 0;
        loop {
            round += 1;
            let current = self.read_current(request)?;
            let replaced = self.replaced(request);
            let now = self.clock.now();
            let txn = self.build_txn(request, &current, &replaced, now)?;
            if txn.success.is_empty() && txn.compare.is_empty() {
                // Nothing to change and nothing to check.
                return Ok(outcome(request, &current, &replaced, &[], 0, now));
            }
            let response = self.client.txn(txn)?;
            let revision = header_revision(response.header.as_ref());
            if response.succeeded {
                return Ok(outcome(
                    request,
                    &current,
                    &replaced,
                    &response.responses,
                    revision,
                    now,
                ));
            }
            self.refusal(request, &response)?;
            // Only a record read for a write that may change nothing moved:
            // read it again and rebuild.
            if round >= REBUILD_ROUNDS {
                let (address, current) = current.iter().next().map_or((&[][..], 0), |(a, c)| {
                    (a.as_slice(), c.as_ref().map_or(0, |c| c.0.version))
                });
                return Err(conflict(address, current, current + 1));
            }
        }
    }

    /// Why a `Txn` was refused, when it is final: the store is gone, or a
    /// caller's check failed. `Ok` when only a record read for the
    /// evaluation moved (evaluate again).
    pub(super) fn refusal(&self, request: &Request, response: &proto::TxnResponse) -> Result<()> {
        let actual = actual_versions(response);
        if let Some(identity) = self.identity {
            let key = self.layout.meta("store");
            if actual.get(&key).map(|a| a.1) != Some(identity) {
                return Err(Error::NotAStore {
                    path: self.label(),
                    reason: "the store this handle opened is gone: its prefix was emptied or \
                             another store was created there since; nothing was written. Open \
                             it again"
                        .into(),
                });
            }
        }
        for check in &request.checks {
            let (version, modified) = actual
                .get(&self.layout.record_of_address(&check.address))
                .copied()
                .unwrap_or((0, 0));
            let holds = match check.modified {
                Some(m) => modified == m,
                None => version == check.expected,
            };
            if !holds {
                return Err(conflict(&check.address, check.expected, version));
            }
        }
        Ok(())
    }

    /// The writes whose replaced record is known (see [`LastReads`]).
    fn replaced(&self, request: &Request) -> Replaced {
        let mut out = Replaced::new();
        for check in &request.checks {
            if let Some(modified) = check.modified
                && let Some((version, created)) = self.reads.of(&check.address, modified)
                // The compare fixes the version as well: a record read at a
                // different one is not this write.
                && version == check.expected
            {
                out.insert(check.address.clone(), (version, created));
            }
        }
        out
    }

    /// For each write that may change nothing (a put skipped when unchanged,
    /// a delete): the record as it is now, or `None` when absent.
    fn read_current(&self, request: &Request) -> Result<Current> {
        let mut out = BTreeMap::new();
        for write in &request.writes {
            let may_change_nothing = match &write.kind {
                WriteKind::Put { skip_unchanged, .. } => *skip_unchanged,
                WriteKind::Delete => true,
                WriteKind::Patch { .. } => false,
            };
            if may_change_nothing {
                out.insert(write.address.clone(), self.get_address(&write.address, 0)?);
            }
        }
        Ok(out)
    }

    fn build_txn(
        &self,
        request: &Request,
        current: &Current,
        replaced: &Replaced,
        now: Timestamp,
    ) -> Result<proto::TxnRequest> {
        let mut compares = Vec::new();
        let mut compared = Vec::new();
        if let Some(identity) = self.identity {
            let key = self.layout.meta("store");
            compares.push(compare(
                &key,
                proto::CompareTarget::Mod,
                proto::TargetUnion::ModRevision(to_i64(identity)),
            ));
            compared.push(key);
        }
        for check in &request.checks {
            let key = self.layout.record_of_address(&check.address);
            compares.push(check_compare(&key, check));
            compared.push(key);
        }
        let mut writes = Vec::new();
        for write in &request.writes {
            let key = self.layout.record_of_address(&write.address);
            if let Some(read) = current.get(&write.address) {
                // Valid only while the record is still as it was read.
                if !compared.contains(&key) {
                    compares.push(as_read_compare(&key, read.as_ref().map(|(meta, _)| meta)));
                    compared.push(key.clone());
                }
            }
            match &write.kind {
                // Requests with patches go through `commit_coordinated`.
                WriteKind::Patch { .. } => {
                    return Err(Error::Poisoned {
                        cause: "internal error: a patch reached a plain etcd commit".to_owned(),
                    });
                }
                WriteKind::Put { value, .. } => {
                    if let Some(Some((_, stored))) = current.get(&write.address)
                        && stored == value
                    {
                        continue;
                    }
                    writes.push(PlannedWrite::Put {
                        key,
                        value,
                        prev_kv: !replaced.contains_key(&write.address),
                    });
                }
                WriteKind::Delete => {
                    if let Some(None) = current.get(&write.address) {
                        continue;
                    }
                    writes.push(PlannedWrite::Delete { key });
                }
            }
        }
        let failure: Vec<proto::RequestOp> = compared
            .iter()
            .map(|key| proto::RequestOp {
                request: Some(proto::Request::Range(proto::RangeRequest {
                    key: key.clone(),
                    keys_only: true,
                    ..Default::default()
                })),
            })
            .collect();
        let txn = proto::TxnRequest {
            compare: compares,
            success: stamped(writes, now, &self.layout),
            failure,
        };
        self.limits.check(
            txn.compare.len(),
            txn.success.len(),
            txn.failure.len(),
            txn.encoded_len(),
            request.writes.len(),
        )?;
        Ok(txn)
    }

    /// Watches every record of the store from `revision` on (0: from now).
    pub fn watch(&self, revision: u64) -> RecordWatch {
        let (start, end) = self.layout.records();
        RecordWatch {
            watch: self.client.watch(start, end, revision),
            layout: self.layout.clone(),
        }
    }
}

/// A write of a commit that changes something (the key in etcd, the
/// MessagePack value as the request holds it).
enum PlannedWrite<'r> {
    Put {
        key: Vec<u8>,
        value: &'r [u8],
        /// Whether etcd returns the record it replaces (for the new
        /// metadata; not when that record is known).
        prev_kv: bool,
    },
    Delete {
        key: Vec<u8>,
    },
}

/// The success ops of a commit with `now` as the update time: the writes,
/// then the store's `last` key (only when something is written).
fn stamped(
    writes: Vec<PlannedWrite<'_>>,
    now: Timestamp,
    layout: &Layout,
) -> Vec<proto::RequestOp> {
    let mut success: Vec<proto::RequestOp> = Vec::with_capacity(writes.len() + 1);
    for write in writes {
        success.push(proto::RequestOp {
            request: Some(match write {
                PlannedWrite::Put {
                    key,
                    value,
                    prev_kv,
                } => proto::Request::Put(proto::PutRequest {
                    key,
                    value: record::encode(now, value),
                    lease: 0,
                    prev_kv,
                }),
                PlannedWrite::Delete { key } => {
                    proto::Request::DeleteRange(proto::DeleteRangeRequest {
                        key,
                        range_end: Vec::new(),
                        prev_kv: true,
                    })
                }
            }),
        });
    }
    if !success.is_empty() {
        success.push(last_put(layout, now));
    }
    success
}

/// The put of the store's `last` key that ends every commit's success ops:
/// the store's revision and the commit's time, at one etcd revision.
pub(crate) fn last_put(layout: &Layout, now: Timestamp) -> proto::RequestOp {
    proto::RequestOp {
        request: Some(proto::Request::Put(proto::PutRequest {
            key: layout.meta("last"),
            value: record::encode(now, &[]),
            lease: 0,
            prev_kv: false,
        })),
    }
}

pub(crate) fn compare(
    key: &[u8],
    target: proto::CompareTarget,
    value: proto::TargetUnion,
) -> proto::Compare {
    proto::Compare {
        result: proto::CompareResult::Equal as i32,
        target: target as i32,
        key: key.to_vec(),
        target_union: Some(value),
        range_end: Vec::new(),
    }
}

/// The compare that holds while the record at `key` is still as it was
/// read: the same modification revision, or still absent.
pub(crate) fn as_read_compare(key: &[u8], read: Option<&crate::value::Meta>) -> proto::Compare {
    match read {
        Some(meta) => compare(
            key,
            proto::CompareTarget::Mod,
            proto::TargetUnion::ModRevision(to_i64(meta.mod_revision)),
        ),
        None => compare(
            key,
            proto::CompareTarget::Version,
            proto::TargetUnion::Version(0),
        ),
    }
}

/// The compare of a transaction's read check on `key`: the modification
/// revision it read, or (without one) the version it expects.
pub(crate) fn check_compare(key: &[u8], check: &Check) -> proto::Compare {
    match check.modified {
        Some(m) => compare(
            key,
            proto::CompareTarget::Mod,
            proto::TargetUnion::ModRevision(to_i64(m)),
        ),
        None => compare(
            key,
            proto::CompareTarget::Version,
            proto::TargetUnion::Version(to_i64(check.expected)),
        ),
    }
}

pub(crate) fn header_revision(header: Option<&proto::ResponseHeader>) -> u64 {
    header.map_or(0, |h| u64::try_from(h.revision).unwrap_or(0))
}

/// The (version, modification revision) of every key the failure branch read.
pub(super) fn actual_versions(response: &proto::TxnResponse) -> BTreeMap<Vec<u8>, (u64, u64)> {
    let mut out = BTreeMap::new();
    for op in &response.responses {
        if let Some(proto::Response::Range(range)) = &op.response {
            for kv in &range.kvs {
                out.insert(
                    kv.key.clone(),
                    (
                        u64::try_from(kv.version).unwrap_or(0),
                        u64::try_from(kv.mod_revision).unwrap_or(0),
                    ),
                );
            }
        }
    }
    out
}

/// What each write of a successful transaction did, in request order.
fn outcome(
    request: &Request,
    current: &Current,
    replaced: &Replaced,
    responses: &[proto::ResponseOp],
    revision: u64,
    now: Timestamp,
) -> Outcome {
    let mut responses = responses.iter();
    let mut changed_any = false;
    let writes = request
        .writes
        .iter()
        .map(|write| match &write.kind {
            // Refused before the transaction is built (`build_txn`).
            WriteKind::Patch { .. } => WriteOutcome::Absent,
            WriteKind::Put { value, .. } => {
                if let Some(Some((meta, stored))) = current.get(&write.address)
                    && stored == value
                {
                    return WriteOutcome::Put {
                        meta: *meta,
                        changed: false,
                    };
                }
                changed_any = true;
                let previous = match responses.next().and_then(|r| r.response.as_ref()) {
                    _ if replaced.contains_key(&write.address) => {
                        replaced.get(&write.address).copied()
                    }
                    Some(proto::Response::Put(put)) => put.prev_kv.as_ref().map(|prev| {
                        (
                            u64::try_from(prev.version).unwrap_or(0),
                            u64::try_from(prev.create_revision).unwrap_or(0),
                        )
                    }),
                    _ => None,
                };
                let meta = match previous {
                    Some((version, created)) if version > 0 => Meta {
                        version: version + 1,
                        create_revision: created,
                        mod_revision: revision,
                        updated_at: now,
                    },
                    _ => Meta {
                        version: 1,
                        create_revision: revision,
                        mod_revision: revision,
                        updated_at: now,
                    },
                };
                WriteOutcome::Put {
                    meta,
                    changed: true,
                }
            }
            WriteKind::Delete => {
                if let Some(None) = current.get(&write.address) {
                    return WriteOutcome::Absent;
                }
                match responses.next().and_then(|r| r.response.as_ref()) {
                    Some(proto::Response::DeleteRange(deleted)) if deleted.deleted > 0 => {
                        changed_any = true;
                        let version = deleted
                            .prev_kvs
                            .first()
                            .map_or(0, |kv| u64::try_from(kv.version).unwrap_or(0));
                        WriteOutcome::Deleted { version }
                    }
                    _ => WriteOutcome::Absent,
                }
            }
        })
        .collect();
    Outcome {
        revision: changed_any.then_some(revision),
        writes,
        patched: Vec::new(),
        replayed: false,
    }
}

pub(super) fn conflict(address: &[u8], expected: u64, actual: u64) -> Error {
    let (namespace, key) = key::decode(address).unwrap_or(("", ""));
    Error::Conflict {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        expected,
        actual,
        attempts: 1,
    }
}

pub(crate) fn foreign_address(address: &[u8]) -> Error {
    let (namespace, key) = key::decode(address).unwrap_or(("", ""));
    record::foreign(namespace, key)
}

pub(crate) fn to_versioned(
    namespace: &str,
    key: &str,
    kv: &proto::KeyValue,
) -> Result<Versioned<RawValue>> {
    let (updated, value) =
        record::decode(&kv.value).ok_or_else(|| record::foreign(namespace, key))?;
    Ok(Versioned::new(
        RawValue::from_trusted(value.to_vec()),
        record::meta(kv, updated),
    ))
}

/// A change to one record, seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordChange {
    /// Written: its new value and metadata.
    Put(Versioned<RawValue>),
    /// Deleted.
    Deleted,
}

/// One event of a [`RecordWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEvent {
    /// The revision of the change.
    pub revision: u64,
    /// The record's namespace.
    pub namespace: String,
    /// The record's key.
    pub key: String,
    /// What happened to it.
    pub change: RecordChange,
}

/// The changes to a store's records, in revision order; see [`Watch`].
#[derive(Debug)]
pub struct RecordWatch {
    watch: Watch,
    layout: Layout,
}

impl RecordWatch {
    /// Waits up to `timeout` for the next batch of changes.
    pub fn next_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<Result<Vec<RecordEvent>>> {
        let batch = self.watch.next_timeout(timeout)?;
        Some(batch.and_then(|batch| {
            batch
                .events
                .iter()
                .map(|event| self.to_event(event))
                .collect()
        }))
    }

    fn to_event(&self, event: &proto::Event) -> Result<RecordEvent> {
        let kv = event.kv.clone().unwrap_or_default();
        let (namespace, key) = self
            .layout
            .decode_record(&kv.key)
            .ok_or_else(|| record::foreign(&String::from_utf8_lossy(&kv.key), ""))?;
        let change = if event.r#type == proto::EventType::Delete as i32 {
            RecordChange::Deleted
        } else {
            RecordChange::Put(to_versioned(namespace, key, &kv)?)
        };
        Ok(RecordEvent {
            revision: u64::try_from(kv.mod_revision).unwrap_or(0),
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            change,
        })
    }
}

/// A commit being put together: checks and writes by namespace and key (the
/// embedded store's `Request`, for code outside the crate).
#[derive(Debug, Clone, Default)]
pub struct Commit {
    request: Request,
}

/// What one write of a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// The record now has this metadata; `changed` is false for an unchanged
    /// value that was left as it was.
    Put {
        /// The record's metadata after the commit.
        meta: Meta,
        /// Whether it was written.
        changed: bool,
    },
    /// The record, at this version, was deleted.
    Deleted {
        /// Its version before the delete.
        version: u64,
    },
    /// There was nothing to delete.
    Absent,
}

/// The result of [`EtcdStore::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The etcd revision of the commit; `None` when it changed nothing.
    pub revision: Option<u64>,
    /// One per write, in order.
    pub writes: Vec<WriteResult>,
}

impl Commit {
    /// An empty commit.
    pub fn new() -> Commit {
        Commit::default()
    }

    /// Requires the record to have `version` (0: absent) and, when given, to
    /// still be the write of `mod_revision`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn expect(
        mut self,
        namespace: &str,
        key: &str,
        version: u64,
        mod_revision: Option<u64>,
    ) -> Result<Commit> {
        self.request.checks.push(Check {
            address: key::encode(namespace, key)?,
            expected: version,
            modified: mod_revision,
        });
        Ok(self)
    }

    /// Writes a value; with `skip_unchanged`, not if it equals the stored one.
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn put(
        mut self,
        namespace: &str,
        key: &str,
        value: RawValue,
        skip_unchanged: bool,
    ) -> Result<Commit> {
        self.request.writes.push(Write {
            address: key::encode(namespace, key)?,
            kind: WriteKind::Put {
                value: value.into_msgpack(),
                skip_unchanged,
            },
        });
        Ok(self)
    }

    /// Deletes a record.
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn delete(mut self, namespace: &str, key: &str) -> Result<Commit> {
        self.request.writes.push(Write {
            address: key::encode(namespace, key)?,
            kind: WriteKind::Delete,
        });
        Ok(self)
    }
}

impl EtcdStore {
    /// Commits checks and writes atomically as one etcd transaction; see
    /// [`commit_request`](Self::commit_request) for what can fail.
    ///
    /// # Errors
    /// [`Error::Conflict`], [`Error::LimitExceeded`], [`Error::OutcomeUnknown`],
    /// and the connection errors.
    pub fn commit(&self, commit: Commit) -> Result<CommitOutcome> {
        let outcome = self.commit_request(&commit.request)?;
        Ok(CommitOutcome {
            revision: outcome.revision,
            writes: outcome
                .writes
                .into_iter()
                .map(|w| match w {
                    WriteOutcome::Put { meta, changed } => WriteResult::Put { meta, changed },
                    WriteOutcome::Deleted { version } => WriteResult::Deleted { version },
                    WriteOutcome::Absent => WriteResult::Absent,
                })
                .collect(),
        })
    }
}
