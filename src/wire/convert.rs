//! Conversions between the wire's types and the engine's. What comes off the
//! wire is untrusted: the holder checks every address and value of a request
//! (`access::request`) before it reaches the engine.

use std::ops::Bound as StdBound;
use std::path::PathBuf;
use std::time::Duration;

use serde_bytes::ByteBuf;

use super::message::{self as m};
use crate::access::coord::{OpKind as PatchKind, PatchOp};
use crate::coord;

use crate::access::request::{
    BaseLoad, BaseRecord, Check, Outcome, Request, Write, WriteKind, WriteOutcome,
};
use crate::access::{BackupProgress, BackupReport, Stats};
use crate::time::Timestamp;
use crate::value::{Entry, Meta, Stored};

fn bytes(v: &[u8]) -> ByteBuf {
    ByteBuf::from(v.to_vec())
}

/// Metadata to the wire.
pub fn meta_to_wire(meta: &Meta) -> m::Meta {
    m::Meta {
        version: meta.version,
        created: meta.create_revision,
        modified: meta.mod_revision,
        updated: meta.updated_at.as_micros(),
    }
}

/// Metadata from the wire.
pub fn meta_from_wire(meta: m::Meta) -> Meta {
    Meta {
        version: meta.version,
        create_revision: meta.created,
        mod_revision: meta.modified,
        updated_at: Timestamp::from_micros(meta.updated),
    }
}

/// A bound to the wire.
pub fn bound_to_wire(bound: &StdBound<Vec<u8>>) -> m::Bound {
    match bound {
        StdBound::Included(v) => m::Bound::Included(bytes(v)),
        StdBound::Excluded(v) => m::Bound::Excluded(bytes(v)),
        StdBound::Unbounded => m::Bound::Unbounded,
    }
}

/// A bound from the wire.
pub fn bound_from_wire(bound: m::Bound) -> StdBound<Vec<u8>> {
    match bound {
        m::Bound::Included(v) => StdBound::Included(v.into_vec()),
        m::Bound::Excluded(v) => StdBound::Excluded(v.into_vec()),
        m::Bound::Unbounded => StdBound::Unbounded,
    }
}

/// A stored record to the wire.
pub fn stored_to_wire(stored: Stored) -> m::Record {
    m::Record {
        meta: meta_to_wire(&stored.meta),
        value: ByteBuf::from(stored.value),
    }
}

/// A stored record from the wire.
pub fn stored_from_wire(record: m::Record) -> Stored {
    Stored {
        meta: meta_from_wire(record.meta),
        value: record.value.into_vec(),
    }
}

/// A range entry to the wire.
pub fn entry_to_wire(entry: Entry) -> m::Entry {
    m::Entry {
        address: ByteBuf::from(entry.address),
        meta: meta_to_wire(&entry.meta),
        value: ByteBuf::from(entry.value),
    }
}

/// A range entry from the wire.
pub fn entry_from_wire(entry: m::Entry) -> Entry {
    Entry {
        address: entry.address.into_vec(),
        meta: meta_from_wire(entry.meta),
        value: entry.value.into_vec(),
    }
}

/// A commit request to the wire.
pub fn commit_to_wire(request: &Request) -> m::Request {
    m::Request::Commit {
        checks: request
            .checks
            .iter()
            .map(|c| m::Check {
                address: bytes(&c.address),
                expected: c.expected,
                modified: c.modified,
            })
            .collect(),
        writes: request
            .writes
            .iter()
            .map(|w| match &w.kind {
                WriteKind::Put {
                    value,
                    skip_unchanged,
                } => m::Write {
                    address: bytes(&w.address),
                    value: Some(bytes(value)),
                    skip_unchanged: *skip_unchanged,
                },
                // Patches go as `CommitWith` (`commit_with_to_wire`).
                WriteKind::Delete | WriteKind::Patch { .. } => m::Write {
                    address: bytes(&w.address),
                    value: None,
                    skip_unchanged: false,
                },
            })
            .collect(),
    }
}

fn checks_to_wire(checks: &[Check]) -> Vec<m::Check> {
    checks
        .iter()
        .map(|c| m::Check {
            address: bytes(&c.address),
            expected: c.expected,
            modified: c.modified,
        })
        .collect()
}

fn checks_from_wire(checks: Vec<m::Check>) -> Vec<Check> {
    checks
        .into_iter()
        .map(|c| Check {
            address: c.address.into_vec(),
            expected: c.expected,
            modified: c.modified,
        })
        .collect()
}

/// A request with patches or coordination to the wire. (A lease's beginning
/// or end is never sent: the holder makes those.)
pub fn commit_with_to_wire(request: &Request) -> m::Request {
    let coord = &request.coord;
    m::Request::CommitWith {
        checks: checks_to_wire(&request.checks),
        writes: request
            .writes
            .iter()
            .map(|w| m::WriteWith {
                address: bytes(&w.address),
                op: match &w.kind {
                    WriteKind::Put {
                        value,
                        skip_unchanged,
                    } => m::WriteOp::Put {
                        value: bytes(value),
                        skip_unchanged: *skip_unchanged,
                    },
                    WriteKind::Delete => m::WriteOp::Delete,
                    WriteKind::Patch {
                        ops,
                        skip_unchanged,
                    } => m::WriteOp::Patch {
                        ops: ops
                            .iter()
                            .map(|op| m::PatchOp {
                                op: op.kind.name().to_owned(),
                                path: op.path.clone(),
                                value: op.value.as_deref().map(bytes),
                            })
                            .collect(),
                        skip_unchanged: *skip_unchanged,
                    },
                },
            })
            .collect(),
        coord: m::Coord {
            fences: coord
                .fences
                .iter()
                .map(|f| m::Fence {
                    lock: f.lock.clone(),
                    token: f.token,
                })
                .collect(),
            revisions: coord
                .revisions
                .iter()
                .map(|r| m::RevisionCheck {
                    address: bytes(&r.address),
                    revision: r.revision,
                })
                .collect(),
            idempotency: coord.idempotency.as_ref().map(|i| m::Idempotency {
                key: i.key.clone(),
                keep_micros: u64::try_from(i.keep.as_micros()).unwrap_or(u64::MAX),
                call: i.call.as_deref().map(bytes),
                result: i.result.as_deref().map(bytes),
            }),
            lease: coord.lease,
            lock: coord.lock.as_ref().map(|l| match l {
                coord::LockOp::Acquire { name, lease } => m::LockOp::Acquire {
                    name: name.clone(),
                    lease: *lease,
                },
                coord::LockOp::Release { name, token } => m::LockOp::Release {
                    name: name.clone(),
                    token: *token,
                },
            }),
        },
    }
}

/// A [`m::Request::CommitWith`] from the wire (not yet checked: see
/// `Request::check_untrusted`).
///
/// # Errors
/// An unknown patch operation.
pub fn commit_with_from_wire(
    checks: Vec<m::Check>,
    writes: Vec<m::WriteWith>,
    wire: m::Coord,
) -> Result<Request, String> {
    let mut out = Vec::with_capacity(writes.len());
    for w in writes {
        let kind = match w.op {
            m::WriteOp::Put {
                value,
                skip_unchanged,
            } => WriteKind::Put {
                value: value.into_vec(),
                skip_unchanged,
            },
            m::WriteOp::Delete => WriteKind::Delete,
            m::WriteOp::Patch {
                ops,
                skip_unchanged,
            } => {
                let mut patch = Vec::with_capacity(ops.len());
                for op in ops {
                    let kind = PatchKind::from_name(&op.op)
                        .ok_or_else(|| format!("unknown patch operation {:?}", op.op))?;
                    let op = PatchOp {
                        kind,
                        path: op.path,
                        value: op.value.map(ByteBuf::into_vec),
                    };
                    op.check()?;
                    patch.push(op);
                }
                WriteKind::Patch {
                    ops: patch,
                    skip_unchanged,
                }
            }
        };
        out.push(Write {
            address: w.address.into_vec(),
            kind,
        });
    }
    Ok(Request {
        checks: checks_from_wire(checks),
        writes: out,
        coord: coord::CoordRequest {
            fences: wire
                .fences
                .into_iter()
                .map(|f| coord::Fence {
                    lock: f.lock,
                    token: f.token,
                })
                .collect(),
            revisions: wire
                .revisions
                .into_iter()
                .map(|r| coord::RevisionCheck {
                    address: r.address.into_vec(),
                    revision: r.revision,
                })
                .collect(),
            idempotency: wire.idempotency.map(|i| coord::Idempotency {
                key: i.key,
                keep: Duration::from_micros(i.keep_micros),
                call: i.call.map(ByteBuf::into_vec),
                result: i.result.map(ByteBuf::into_vec),
            }),
            lease: wire.lease,
            lock: wire.lock.map(|l| match l {
                m::LockOp::Acquire { name, lease } => coord::LockOp::Acquire { name, lease },
                m::LockOp::Release { name, token } => coord::LockOp::Release { name, token },
            }),
            lease_op: None,
        },
    })
}

/// A [`m::Reply::CommittedWith`] for an outcome.
pub fn outcome_with_to_wire(outcome: Outcome) -> m::Reply {
    let patched = outcome
        .patched
        .iter()
        .map(|(i, v)| m::Patched {
            index: u32::try_from(*i).unwrap_or(u32::MAX),
            value: bytes(v),
        })
        .collect();
    let replayed = outcome.replayed;
    match outcome_to_wire(outcome) {
        m::Reply::Committed {
            revision,
            writes,
            alone,
        } => m::Reply::CommittedWith {
            revision,
            writes,
            patched,
            replayed,
            alone,
        },
        other => other,
    }
}

/// An outcome from a [`m::Reply::CommittedWith`].
pub fn outcome_with_from_wire(
    revision: Option<u64>,
    writes: Vec<m::WriteOutcome>,
    patched: Vec<m::Patched>,
    replayed: bool,
) -> Outcome {
    let mut outcome = outcome_from_wire(revision, writes);
    outcome.patched = patched
        .into_iter()
        .map(|p| (p.index as usize, p.value.into_vec()))
        .collect();
    outcome.replayed = replayed;
    outcome
}

/// A commit request from the wire (not yet checked: see
/// `Request::check_untrusted`).
pub fn commit_from_wire(checks: Vec<m::Check>, writes: Vec<m::Write>) -> Request {
    Request {
        checks: checks_from_wire(checks),
        writes: writes
            .into_iter()
            .map(|w| Write {
                address: w.address.into_vec(),
                kind: match w.value {
                    Some(value) => WriteKind::Put {
                        value: value.into_vec(),
                        skip_unchanged: w.skip_unchanged,
                    },
                    None => WriteKind::Delete,
                },
            })
            .collect(),
        coord: coord::CoordRequest::default(),
    }
}

/// A commit's outcome to the wire.
pub fn outcome_to_wire(outcome: Outcome) -> m::Reply {
    m::Reply::Committed {
        revision: outcome.revision,
        writes: outcome
            .writes
            .into_iter()
            .map(|w| match w {
                WriteOutcome::Put { meta, changed } => m::WriteOutcome::Put {
                    meta: meta_to_wire(&meta),
                    changed,
                },
                WriteOutcome::Deleted { version } => m::WriteOutcome::Deleted { version },
                WriteOutcome::Absent => m::WriteOutcome::Absent,
            })
            .collect(),
        alone: false,
    }
}

/// Whether `reply` is a commit's answer saying no other request was in the
/// holder while it ran.
pub fn alone(reply: &m::Reply) -> bool {
    matches!(
        reply,
        m::Reply::Committed { alone: true, .. } | m::Reply::CommittedWith { alone: true, .. }
    )
}

/// A commit's answer's mark saying whether it ran alone in the holder;
/// `None` for other replies.
pub fn alone_mut(reply: &mut m::Reply) -> Option<&mut bool> {
    match reply {
        m::Reply::Committed { alone, .. } | m::Reply::CommittedWith { alone, .. } => Some(alone),
        _ => None,
    }
}

/// A commit's outcome from the wire.
pub fn outcome_from_wire(revision: Option<u64>, writes: Vec<m::WriteOutcome>) -> Outcome {
    Outcome {
        revision,
        writes: writes
            .into_iter()
            .map(|w| match w {
                m::WriteOutcome::Put { meta, changed } => WriteOutcome::Put {
                    meta: meta_from_wire(meta),
                    changed,
                },
                m::WriteOutcome::Deleted { version } => WriteOutcome::Deleted { version },
                m::WriteOutcome::Absent => WriteOutcome::Absent,
            })
            .collect(),
        patched: Vec::new(),
        replayed: false,
    }
}

/// A restore to the wire.
pub fn restore_to_wire(load: &BaseLoad) -> m::Request {
    m::Request::Restore {
        revision: load.revision,
        time: load.time.as_micros(),
        records: load
            .records
            .iter()
            .map(|r| m::RestoreRecord {
                address: bytes(&r.address),
                meta: meta_to_wire(&r.meta),
                value: bytes(&r.value),
            })
            .collect(),
    }
}

/// A restore from the wire (not yet checked: see `BaseLoad::check`).
pub fn restore_from_wire(revision: u64, time: i64, records: Vec<m::RestoreRecord>) -> BaseLoad {
    BaseLoad {
        revision,
        time: Timestamp::from_micros(time),
        records: records
            .into_iter()
            .map(|r| BaseRecord {
                address: r.address.into_vec(),
                meta: meta_from_wire(r.meta),
                value: r.value.into_vec(),
            })
            .collect(),
    }
}

/// Counters to the wire.
pub fn stats_to_wire(stats: &Stats) -> m::Stats {
    m::Stats {
        revision: stats.revision,
        checkpoint_revision: stats.checkpoint_revision,
        commits: stats.commits,
        batches: stats.batches,
        checkpoints: stats.checkpoints,
        replayed_on_open: stats.replayed_on_open,
        log_bytes: stats.log_bytes,
        clients: stats.clients,
        pinned: stats.pinned,
        first_revision: stats.first_revision,
    }
}

/// Counters from the wire (the per-handle ones are zero: the facade adds its
/// own).
pub fn stats_from_wire(stats: m::Stats) -> Stats {
    Stats {
        revision: stats.revision,
        checkpoint_revision: stats.checkpoint_revision,
        commits: stats.commits,
        conflicts: 0,
        retries: 0,
        batches: stats.batches,
        checkpoints: stats.checkpoints,
        replayed_on_open: stats.replayed_on_open,
        log_bytes: stats.log_bytes,
        clients: stats.clients,
        pinned: stats.pinned,
        first_revision: stats.first_revision,
    }
}

fn path_bytes(path: &std::path::Path) -> ByteBuf {
    use std::os::unix::ffi::OsStrExt;
    bytes(path.as_os_str().as_bytes())
}

/// A path from the wire.
pub fn path_from_wire(bytes: ByteBuf) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes.into_vec()))
}

/// A backup request to the wire.
pub fn backup_to_wire(dest: &std::path::Path) -> m::Request {
    m::Request::Backup {
        dest: path_bytes(dest),
    }
}

/// A backup report to the wire.
pub fn backup_report_to_wire(report: &BackupReport) -> m::BackupReport {
    m::BackupReport {
        destination: path_bytes(&report.destination),
        store_id: report.store_id.clone(),
        full: report.full,
        base_revision: report.base_revision,
        revision: report.revision,
        time: report.time.as_micros(),
        base_records: report.base_records,
        base_bytes: report.base_bytes,
        segments_copied: report.segments_copied as u64,
        bytes_copied: report.bytes_copied,
        log_bytes_copied: report.log_bytes_copied,
        backup_bytes: report.backup_bytes,
        duration_micros: u64::try_from(report.duration.as_micros()).unwrap_or(u64::MAX),
    }
}

/// A backup report from the wire.
pub fn backup_report_from_wire(report: m::BackupReport) -> BackupReport {
    BackupReport {
        destination: path_from_wire(report.destination),
        store_id: report.store_id,
        full: report.full,
        base_revision: report.base_revision,
        revision: report.revision,
        time: Timestamp::from_micros(report.time),
        base_records: report.base_records,
        base_bytes: report.base_bytes,
        segments_copied: usize::try_from(report.segments_copied).unwrap_or(usize::MAX),
        bytes_copied: report.bytes_copied,
        log_bytes_copied: report.log_bytes_copied,
        backup_bytes: report.backup_bytes,
        duration: Duration::from_micros(report.duration_micros),
    }
}

/// Backup progress to the wire.
pub fn progress_to_wire(p: &BackupProgress) -> m::Progress {
    m::Progress::Backup {
        records: p.records,
        bytes_copied: p.bytes_copied,
        bytes_to_copy: p.bytes_to_copy,
    }
}

/// Backup progress from the wire (`None`: another request's progress).
pub fn progress_from_wire(p: m::Progress) -> Option<BackupProgress> {
    match p {
        m::Progress::Backup {
            records,
            bytes_copied,
            bytes_to_copy,
        } => Some(BackupProgress {
            records,
            bytes_copied,
            bytes_to_copy,
        }),
        m::Progress::Waiting => None,
    }
}

/// A watch's scope to the wire.
pub(crate) fn scope_to_wire(scope: &crate::watch::Scope) -> m::WatchScope {
    use crate::watch::Scope;
    match scope.clone() {
        Scope::All => m::WatchScope::All,
        Scope::Namespace(namespace) => m::WatchScope::Namespace { namespace },
        Scope::Key(namespace, key) => m::WatchScope::Key { namespace, key },
        Scope::Prefix(namespace, prefix) => m::WatchScope::Prefix { namespace, prefix },
    }
}

/// A watch's scope from the wire.
pub(crate) fn scope_from_wire(scope: m::WatchScope) -> crate::watch::Scope {
    use crate::watch::Scope;
    match scope {
        m::WatchScope::All => Scope::All,
        m::WatchScope::Namespace { namespace } => Scope::Namespace(namespace),
        m::WatchScope::Key { namespace, key } => Scope::Key(namespace, key),
        m::WatchScope::Prefix { namespace, prefix } => Scope::Prefix(namespace, prefix),
    }
}

fn versioned_to_wire(v: crate::value::Versioned<crate::value::RawValue>) -> m::Record {
    let meta = Meta {
        version: v.version,
        create_revision: v.create_revision,
        mod_revision: v.mod_revision,
        updated_at: v.updated_at,
    };
    m::Record {
        meta: meta_to_wire(&meta),
        value: ByteBuf::from(v.value.into_msgpack()),
    }
}

fn versioned_from_wire(record: m::Record) -> crate::value::Versioned<crate::value::RawValue> {
    let stored = stored_from_wire(record);
    crate::value::Versioned::new(
        crate::value::RawValue::from_trusted(stored.value),
        stored.meta,
    )
}

/// A watch's event to the wire.
pub(crate) fn watch_event_to_wire(event: crate::watch::WatchEvent) -> m::WatchFrame {
    match event {
        crate::watch::WatchEvent::Progress { revision } => m::WatchFrame::Progress { revision },
        crate::watch::WatchEvent::Change(change) => m::WatchFrame::Change {
            revision: change.revision,
            time: change.time.as_micros(),
            events: change
                .events
                .into_iter()
                .map(|e| m::WatchEvent {
                    namespace: e.namespace,
                    key: e.key,
                    value: e.value.map(versioned_to_wire),
                    deleted_version: e.deleted_version,
                    prev: e.prev.map(versioned_to_wire),
                })
                .collect(),
        },
    }
}

/// A watch's event from the wire. The values came from the holder's own
/// log and state database; they are checked as MessagePack all the same.
pub(crate) fn watch_event_from_wire(
    frame: m::WatchFrame,
) -> Result<crate::watch::WatchEvent, String> {
    Ok(match frame {
        m::WatchFrame::Progress { revision } => crate::watch::WatchEvent::Progress { revision },
        m::WatchFrame::Change {
            revision,
            time,
            events,
        } => {
            let mut out = Vec::with_capacity(events.len());
            for e in events {
                for record in e.value.iter().chain(e.prev.iter()) {
                    crate::value::check_msgpack(&record.value)?;
                }
                out.push(crate::watch::Event {
                    namespace: e.namespace,
                    key: e.key,
                    value: e.value.map(versioned_from_wire),
                    deleted_version: e.deleted_version,
                    prev: e.prev.map(versioned_from_wire),
                });
            }
            crate::watch::WatchEvent::Change(crate::watch::Change {
                revision,
                time: Timestamp::from_micros(time),
                events: out,
            })
        }
    })
}

/// A record's versions to the wire.
pub(crate) fn versions_to_wire(
    versions: Vec<crate::access::past::RecordVersion>,
) -> Vec<m::Version> {
    versions
        .into_iter()
        .map(|v| m::Version {
            revision: v.revision,
            time: v.time.as_micros(),
            value: v.value.map(versioned_to_wire),
        })
        .collect()
}

/// A record's versions from the wire.
pub(crate) fn versions_from_wire(
    versions: Vec<m::Version>,
) -> Result<Vec<crate::access::past::RecordVersion>, String> {
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        if let Some(record) = &v.value {
            crate::value::check_msgpack(&record.value)?;
        }
        out.push(crate::access::past::RecordVersion {
            revision: v.revision,
            time: Timestamp::from_micros(v.time),
            value: v.value.map(versioned_from_wire),
        });
    }
    Ok(out)
}
