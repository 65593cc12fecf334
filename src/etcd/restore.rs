//! Restoring a backup into a store on etcd: the backup is restored as usual
//! into a scratch directory (every check of `backup::restore`, the stopping
//! point), then its records are loaded into the store under the prefix in one
//! etcd transaction, values and update times kept. etcd assigns versions and
//! revisions, so the records start again at version 1 (or go on from the
//! version a replaced record had) at the load's revision: the same as a merge
//! import of the backup's state into an empty store.
//!
//! One transaction: all or nothing, and within etcd's limits
//! (`Error::LimitExceeded` names the one exceeded; raise it on the cluster and
//! tell statelog). Into a store with records only with `overwrite`: then the
//! transaction also deletes the records the backup lacks, and applies only if
//! the store did not change since they were listed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message;

use super::client::to_i64;
use super::ops::{EtcdStore, compare, header_revision};
use super::proto;
use super::record;
use crate::backup::{RestoreOptions, RestoreReport};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::store::Store;
use crate::time::Timestamp;

/// Restores `backup` into the store on etcd at `address`.
pub(crate) fn restore(
    backup: &Path,
    address: &str,
    options: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    // Reach the cluster before the work of a local restore.
    let (store, store_id) =
        super::backend::open_store(address, &options.store.clone().create(true))?;
    let scratch = scratch_dir();
    let result = restore_via(backup, &scratch, &store, &store_id, options, started);
    if let Err(e) = std::fs::remove_dir_all(&scratch)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(
            dir = %scratch.display(),
            error = %e,
            "the restore's scratch directory could not be removed; delete it"
        );
    }
    result
}

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "statelog-restore-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

fn restore_via(
    backup: &Path,
    scratch: &Path,
    store: &EtcdStore,
    store_id: &str,
    options: &RestoreOptions,
    started: Instant,
) -> Result<RestoreReport> {
    let local_options = Options::default().serve(false).remote(false);
    let mut scratch_restore = options.clone().overwrite(false);
    scratch_restore.store = local_options.clone();
    let local = crate::backup::restore(backup, scratch, &scratch_restore)?;
    let copy = Store::open(scratch, local_options.create(false))?;
    let loaded = load(store, &copy, options.overwrite);
    copy.close()?;
    let (revision, time, records) = loaded?;
    let mut notes = local.notes;
    notes.push(format!(
        "loaded {records} records at etcd revision {revision}: etcd assigns versions and \
         revisions, so the backup's (up to revision {}) were not kept",
        local.revision
    ));
    Ok(RestoreReport {
        target: store.label(),
        store_id: store_id.to_owned(),
        backup_store_id: local.backup_store_id,
        base_revision: local.base_revision,
        base_records: local.base_records,
        revision,
        time,
        commits_replayed: local.commits_replayed,
        log_bytes: 0,
        replaced: None,
        notes,
        duration: started.elapsed(),
    })
}

/// Loads every record of `copy` into `store` in one transaction; returns the
/// revision, its time and the number of records.
fn load(store: &EtcdStore, copy: &Store, overwrite: bool) -> Result<(u64, Timestamp, u64)> {
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
    let snapshot = copy.snapshot()?;
    for namespace in snapshot.namespaces()? {
        for item in snapshot.list_raw(&namespace, ..)? {
            let (key, record) = item?;
            let etcd_key = layout.record(&namespace, &key)?;
            existing.remove(&etcd_key);
            let updated = record.updated_at;
            success.push(proto::RequestOp {
                request: Some(proto::Request::Put(proto::PutRequest {
                    key: etcd_key,
                    value: record::encode(updated, record.value.as_msgpack()),
                    lease: 0,
                    prev_kv: false,
                })),
            });
        }
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
    success.push(proto::RequestOp {
        request: Some(proto::Request::Put(proto::PutRequest {
            key: layout.meta("last"),
            value: record::encode(now, &[]),
            lease: 0,
            prev_kv: false,
        })),
    });
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
