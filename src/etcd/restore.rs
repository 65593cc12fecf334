//! Restoring a backup into a store on etcd: `backup::restore` restores it as
//! usual into a scratch directory (every check, the stopping point), then
//! this loads its records into the store under the prefix in one etcd
//! transaction, values and update times kept. etcd assigns versions and
//! revisions, so the records start again at version 1 (or go on from the
//! version a replaced record had) at the load's revision: the same as a merge
//! import of the backup's state into an empty store.
//!
//! One transaction: all or nothing, and within etcd's limits
//! (`Error::LimitExceeded` names the one exceeded; raise it on the cluster and
//! tell statelog). Into a store with records only with `overwrite`: then the
//! transaction also deletes the records the backup lacks, and applies only if
//! the store did not change since they were listed.

use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;

use super::EtcdOptions;
use super::client::to_i64;
use super::ops::{EtcdStore, compare, header_revision};
use super::proto;
use super::record;
use crate::access::ReadView;
use crate::error::{Error, Result};
use crate::time::{Clock, Timestamp};

/// A store on etcd that a backup is restored into (`backup::restore` does
/// the rest).
pub(crate) struct Target {
    store: EtcdStore,
    store_id: String,
}

/// What loading the records did.
pub(crate) struct Loaded {
    /// The etcd revision of the load.
    pub revision: u64,
    /// Its time.
    pub time: Timestamp,
    /// The records written.
    pub records: u64,
}

impl Target {
    /// Reaches the store at `address`, creating it when it does not exist.
    pub(crate) fn open(address: &str, etcd: Option<&EtcdOptions>, clock: Clock) -> Result<Target> {
        let (store, store_id) = super::open_store(address, etcd, true, clock)?;
        Ok(Target { store, store_id })
    }

    /// The store as errors and reports name it.
    pub(crate) fn label(&self) -> PathBuf {
        self.store.label()
    }

    /// The store id, 32 hex digits.
    pub(crate) fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Loads every record `records` shows into the store in one transaction.
    pub(crate) fn load(&self, records: Arc<dyn ReadView>, overwrite: bool) -> Result<Loaded> {
        let (revision, time, records) = load(&self.store, records, overwrite)?;
        Ok(Loaded {
            revision,
            time,
            records,
        })
    }
}

/// Loads every record of `copy` into `store` in one transaction; returns the
/// revision, its time and the number of records.
fn load(
    store: &EtcdStore,
    copy: Arc<dyn ReadView>,
    overwrite: bool,
) -> Result<(u64, Timestamp, u64)> {
    let layout = store.layout();
    let head = store.head()?;
    let (records_start, records_end) = layout.records();
    // What the store holds now, when it may be replaced.
    let mut existing = std::collections::BTreeSet::new();
    if overwrite {
        store.list_all(head.read_at, |r| {
            existing.insert(layout.record(&r.namespace, &r.key)?);
            Ok(())
        })?;
    }
    let now = Timestamp::now();
    let mut success = Vec::new();
    let entries = copy.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)?;
    for entry in entries {
        let entry = entry?;
        let etcd_key = layout.record_of_address(&entry.address);
        existing.remove(&etcd_key);
        success.push(proto::RequestOp {
            request: Some(proto::Request::Put(proto::PutRequest {
                key: etcd_key,
                value: record::encode(entry.meta.updated_at, &entry.value),
                lease: 0,
                prev_kv: false,
            })),
        });
    }
    let records = success.len() as u64;
    for key in existing {
        success.push(proto::RequestOp {
            request: Some(proto::Request::DeleteRange(proto::DeleteRangeRequest {
                key,
                range_end: Vec::new(),
                prev_kv: false,
            })),
        });
    }
    success.push(super::ops::last_put(layout, now));
    let mut compares = Vec::new();
    if let Some(identity) = store_identity(store) {
        compares.push(identity);
    }
    if overwrite {
        // Nothing committed since the listing.
        compares.push(match head.revision {
            0 => compare(
                &layout.meta("last"),
                proto::CompareTarget::Version,
                proto::TargetUnion::Version(0),
            ),
            r => compare(
                &layout.meta("last"),
                proto::CompareTarget::Mod,
                proto::TargetUnion::ModRevision(to_i64(r)),
            ),
        });
    } else {
        // No record at all: every key of the range at version 0.
        let mut empty = compare(
            &records_start,
            proto::CompareTarget::Version,
            proto::TargetUnion::Version(0),
        );
        empty.range_end = records_end;
        compares.push(empty);
    }
    let request = proto::TxnRequest {
        compare: compares,
        success,
        failure: Vec::new(),
    };
    store.limits().check(
        request.compare.len(),
        request.success.len(),
        0,
        request.encoded_len(),
        records as usize,
    )?;
    let response = store.client().txn(request)?;
    if !response.succeeded {
        let now = store.head()?;
        return Err(Error::TargetNotEmpty {
            path: store.label(),
            reason: if overwrite {
                format!(
                    "the store changed while the restore read it (now at revision {}); run the \
                     restore again",
                    now.revision
                )
            } else {
                format!(
                    "it holds records (revision {}); restore into an empty prefix, or replace \
                     them with overwrite (`--overwrite`), which deletes and writes in one \
                     transaction",
                    now.revision
                )
            },
        });
    }
    Ok((header_revision(response.header.as_ref()), now, records))
}

fn store_identity(store: &EtcdStore) -> Option<proto::Compare> {
    store.identity().map(|revision| {
        compare(
            &store.layout().meta("store"),
            proto::CompareTarget::Mod,
            proto::TargetUnion::ModRevision(to_i64(revision)),
        )
    })
}
