//! The store as it was at a past revision, as a [`ReadView`]: the history
//! index's tables (`db/past.rs`) at one revision; which revisions may be
//! asked for; a record's versions as the public API shows them.

use std::ops::Bound;
use std::sync::Arc;

use crate::access::past::{At, RecordVersion};
use crate::access::{Entries, ReadView};
use crate::db::past::{Tables, Version};
use crate::db::schema::Applied;
use crate::error::{Error, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::Stored;

/// The store as of one past revision.
pub(crate) struct AsOfView {
    tables: Arc<Tables>,
    revision: u64,
    time: Timestamp,
}

impl ReadView for AsOfView {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn time(&self) -> Timestamp {
        self.time
    }

    fn get(&self, address: &[u8]) -> Result<Option<Stored>> {
        self.tables.get(address, self.revision)
    }

    fn range(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Entries> {
        Ok(Box::new(self.tables.range(self.revision, start, end)?))
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for entry in self
            .tables
            .range(self.revision, Bound::Unbounded, Bound::Unbounded)?
        {
            let entry = entry?;
            let (namespace, _) = key::decode(&entry.address).unwrap_or(("?", "?"));
            if out.last().is_none_or(|last| last != namespace) {
                out.push(namespace.to_owned());
            }
        }
        Ok(out)
    }
}

/// A view of the store at `at`, from `tables` opened after `visible` was
/// published. Readable: from `low` on (and the empty state at 0 when `low`
/// is at most 1); `first` is what a refusal names.
pub(crate) fn view_at(
    tables: Tables,
    visible: Applied,
    at: At,
    low: u64,
    first: u64,
) -> Result<Arc<dyn ReadView>> {
    let head = visible.revision;
    let readable = |r: u64| r >= low || (r == 0 && low <= 1);
    let revision = match at {
        At::Revision(revision) => revision,
        At::Time(time) => {
            let found = tables.revision_before(time, low.min(head), head)?;
            let found_time = if found == head {
                Some(visible.time)
            } else {
                tables.time_of(found)?
            };
            if found_time.is_some_and(|t| t < time) {
                found
            } else if low <= 1 {
                0
            } else {
                return Err(Error::Compacted {
                    requested: found,
                    compacted: Some(first),
                });
            }
        }
    };
    if revision > head {
        return Err(Error::InvalidOption {
            name: "revision",
            reason: format!("revision {revision} is after the store's current revision {head}"),
        });
    }
    if !readable(revision) {
        return Err(Error::Compacted {
            requested: revision,
            compacted: Some(first),
        });
    }
    let time = if revision == head {
        visible.time
    } else {
        tables.time_of(revision)?.unwrap_or(Timestamp::EPOCH)
    };
    Ok(Arc::new(AsOfView {
        tables: Arc::new(tables),
        revision,
        time,
    }))
}

/// The versions a record's stored versions show, deletes included.
pub(crate) fn record_versions(versions: Vec<Version>) -> Vec<RecordVersion> {
    let mut out = Vec::with_capacity(versions.len());
    let mut iter = versions.into_iter().peekable();
    while let Some(v) = iter.next() {
        let meta = v.stored.meta;
        out.push(RecordVersion {
            revision: meta.mod_revision,
            time: meta.updated_at,
            value: Some(crate::value::Versioned::new(
                crate::value::RawValue::from_trusted(v.stored.value),
                meta,
            )),
        });
        if let Some((end, end_time)) = v.ended {
            let replaced = iter
                .peek()
                .is_some_and(|next| next.stored.meta.mod_revision == end);
            if !replaced {
                out.push(RecordVersion {
                    revision: end,
                    time: end_time,
                    value: None,
                });
            }
        }
    }
    out
}
