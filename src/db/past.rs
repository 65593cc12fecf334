//! Reading the store as it was at a past revision (see `history.rs`): a
//! record as of a revision, ranges of records as of one, a record's versions.

use std::iter::Peekable;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use redb::ReadOnlyTable;

use super::history::{self, BY_END, HISTORY, REVISIONS};
use super::schema::{self, RECORDS};
use super::{Db, db_error, malformed_record};
use crate::error::{Error, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::{Entry, Stored};

type Bytes = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The tables a past read needs: the records in a read transaction of their
/// own, the history's tables in another, each begun after revision R was
/// published:
/// whatever later commits they include, the answer for R is the same (a
/// later write moves the version R saw into the history, with an end after
/// R).
pub(crate) struct Tables {
    records: Bytes,
    history: Option<Bytes>,
    /// The split layout's records (`history.rs`), read in the same
    /// transaction as `history`: each of its entries is there.
    by_end: Option<Arc<Bytes>>,
    revisions: Option<ReadOnlyTable<u64, &'static [u8]>>,
    db_path: Arc<PathBuf>,
}

fn open_optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &Db,
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(db_error(db.path(), "open the history")(e)),
    }
}

/// The stored record of a superseded version: in its `history` value
/// (`ended`, under history key `key`), or in `by_end`.
fn superseded_record(
    by_end: Option<&Bytes>,
    key: &[u8],
    ended: &history::Ended<'_>,
    db_path: &std::path::Path,
    address: &[u8],
) -> Result<Stored> {
    let decode = |bytes: &[u8]| {
        schema::decode_record(bytes)
            .map(|(meta, value)| Stored {
                meta,
                value: value.to_vec(),
            })
            .ok_or_else(|| malformed(db_path, address))
    };
    if let Some(bytes) = ended.inline {
        return decode(bytes);
    }
    let mut at = Vec::new();
    history::end_key(ended.end, key, &mut at);
    let guard = match by_end {
        Some(table) => table
            .get(at.as_slice())
            .map_err(db_error(db_path, "read the history"))?,
        None => None,
    };
    // A split entry without its record: damage.
    decode(guard.ok_or_else(|| malformed(db_path, address))?.value())
}

fn malformed(db_path: &std::path::Path, address: &[u8]) -> Error {
    let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
    malformed_record(db_path, namespace, key)
}

impl Tables {
    pub(crate) fn open(db: &Db) -> Result<Tables> {
        let records = db.read_table(RECORDS, "open the records table")?;
        let txn = {
            use redb::ReadableDatabase;
            db.database
                .begin_read()
                .map_err(db_error(db.path(), "begin a read"))?
        };
        let history = open_optional(db, &txn, HISTORY)?;
        let by_end = open_optional(db, &txn, BY_END)?.map(Arc::new);
        let revisions = open_optional(db, &txn, REVISIONS)?;
        drop(txn);
        Ok(Tables {
            records,
            history,
            by_end,
            revisions,
            db_path: db.shared_path(),
        })
    }

    /// The commit time of `revision`, if the index has it.
    pub(crate) fn time_of(&self, revision: u64) -> Result<Option<Timestamp>> {
        let Some(revisions) = &self.revisions else {
            return Ok(None);
        };
        Ok(revisions
            .get(revision)
            .map_err(db_error(&self.db_path, "read the revisions table"))?
            .and_then(|v| history::decode_revision(v.value()).map(|(t, _)| t)))
    }

    /// The last revision committed before `time`, within `low..=high`
    /// (commit times rise with revisions: a binary search).
    pub(crate) fn revision_before(&self, time: Timestamp, low: u64, high: u64) -> Result<u64> {
        let (mut lo, mut hi) = (low, high);
        // Invariant: every revision up to `lo` is before `time` or is `low`;
        // every one after `hi` is not before it.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match self.time_of(mid)? {
                Some(t) if t < time => lo = mid,
                _ => hi = mid - 1,
            }
        }
        Ok(lo)
    }

    /// `address` as of `revision`.
    pub(crate) fn get(&self, address: &[u8], revision: u64) -> Result<Option<Stored>> {
        if let Some(guard) = self
            .records
            .get(address)
            .map_err(db_error(&self.db_path, "read a record"))?
        {
            let (meta, value) = schema::decode_record(guard.value())
                .ok_or_else(|| malformed(&self.db_path, address))?;
            if meta.mod_revision <= revision {
                return Ok(Some(Stored {
                    meta,
                    value: value.to_vec(),
                }));
            }
        }
        let Some(history) = &self.history else {
            return Ok(None);
        };
        let mut low = Vec::new();
        let mut high = Vec::new();
        history::key(address, 0, &mut low);
        history::key(address, revision, &mut high);
        let mut range = history
            .range(low.as_slice()..=high.as_slice())
            .map_err(db_error(&self.db_path, "read the history"))?;
        let Some(last) = range.next_back() else {
            return Ok(None);
        };
        let (key, value) = last.map_err(db_error(&self.db_path, "read the history"))?;
        let ended =
            history::decode(value.value()).ok_or_else(|| malformed(&self.db_path, address))?;
        if ended.end <= revision {
            return Ok(None);
        }
        superseded_record(
            self.by_end.as_deref(),
            key.value(),
            &ended,
            &self.db_path,
            address,
        )
        .map(Some)
    }

    /// Every version `address` had that the index holds, oldest first: each
    /// with when it ended (`None`: it is the current one).
    pub(crate) fn versions(&self, address: &[u8]) -> Result<Vec<Version>> {
        let mut out = Vec::new();
        if let Some(history) = &self.history {
            let mut low = Vec::new();
            let mut high = Vec::new();
            history::key(address, 0, &mut low);
            history::key(address, u64::MAX, &mut high);
            for item in history
                .range(low.as_slice()..=high.as_slice())
                .map_err(db_error(&self.db_path, "read the history"))?
            {
                let (key, value) = item.map_err(db_error(&self.db_path, "read the history"))?;
                let ended = history::decode(value.value())
                    .ok_or_else(|| malformed(&self.db_path, address))?;
                out.push(Version {
                    stored: superseded_record(
                        self.by_end.as_deref(),
                        key.value(),
                        &ended,
                        &self.db_path,
                        address,
                    )?,
                    ended: Some((ended.end, ended.end_time)),
                });
            }
        }
        if let Some(guard) = self
            .records
            .get(address)
            .map_err(db_error(&self.db_path, "read a record"))?
        {
            let (meta, value) = schema::decode_record(guard.value())
                .ok_or_else(|| malformed(&self.db_path, address))?;
            // A record read after a version the history holds may be newer
            // than the history's read: keep the order by revision.
            if out
                .last()
                .is_none_or(|v| v.stored.meta.mod_revision < meta.mod_revision)
            {
                out.push(Version {
                    stored: Stored {
                        meta,
                        value: value.to_vec(),
                    },
                    ended: None,
                });
            }
        }
        Ok(out)
    }
}

/// One version of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub stored: Stored,
    /// The revision and time that replaced or deleted it, if any.
    pub ended: Option<(u64, Timestamp)>,
}

fn history_bound(bound: &Bound<Vec<u8>>, start: bool) -> Bound<Vec<u8>> {
    let with = |address: &[u8], tail: u8| {
        let mut k = address.to_vec();
        k.push(tail);
        k
    };
    match (bound, start) {
        (Bound::Unbounded, _) => Bound::Unbounded,
        (Bound::Included(a), true) => Bound::Included(with(a, 0)),
        (Bound::Excluded(a), true) => Bound::Included(with(a, 1)),
        (Bound::Included(a), false) => Bound::Excluded(with(a, 1)),
        (Bound::Excluded(a), false) => Bound::Excluded(with(a, 0)),
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

type RawRange = redb::Range<'static, &'static [u8], &'static [u8]>;

/// The records of a range as of a revision: the records table and the
/// history merged in address order.
pub(crate) struct PastEntries {
    records: Peekable<RawRange>,
    history: Option<Peekable<RawRange>>,
    by_end: Option<Arc<Bytes>>,
    revision: u64,
    db_path: Arc<PathBuf>,
}

impl PastEntries {
    fn peek_record(&mut self) -> Result<Option<Vec<u8>>> {
        match self.records.peek() {
            None => Ok(None),
            Some(Ok((k, _))) => Ok(Some(k.value().to_vec())),
            Some(Err(_)) => match self.records.next() {
                Some(Err(e)) => Err(db_error(&self.db_path, "list records")(e)),
                _ => Ok(None),
            },
        }
    }

    fn peek_history(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(history) = &mut self.history else {
            return Ok(None);
        };
        match history.peek() {
            None => Ok(None),
            Some(Ok((k, _))) => Ok(history::split_key(k.value()).map(|(a, _)| a.to_vec())),
            Some(Err(_)) => match history.next() {
                Some(Err(e)) => Err(db_error(&self.db_path, "read the history")(e)),
                _ => Ok(None),
            },
        }
    }

    /// Consumes the history entries of `address`: the version in force at
    /// the revision, if any.
    fn history_of(&mut self, address: &[u8]) -> Result<Option<Entry>> {
        let revision = self.revision;
        let db_path = Arc::clone(&self.db_path);
        let Some(history) = &mut self.history else {
            return Ok(None);
        };
        let mut found: Option<Entry> = None;
        loop {
            let same = match history.peek() {
                Some(Ok((k, _))) => {
                    history::split_key(k.value()).is_some_and(|(a, _)| a == address)
                }
                _ => false,
            };
            if !same {
                return Ok(found);
            }
            let Some(item) = history.next() else {
                return Ok(found);
            };
            let (k, v) = item.map_err(db_error(&db_path, "read the history"))?;
            let Some((_, start)) = history::split_key(k.value()) else {
                continue;
            };
            if start > revision {
                continue;
            }
            let ended = history::decode(v.value()).ok_or_else(|| malformed(&db_path, address))?;
            found = if ended.end > revision {
                let stored = superseded_record(
                    self.by_end.as_deref(),
                    k.value(),
                    &ended,
                    &db_path,
                    address,
                )?;
                Some(Entry {
                    address: address.to_vec(),
                    meta: stored.meta,
                    value: stored.value,
                })
            } else {
                None
            };
        }
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        loop {
            let record = self.peek_record()?;
            let past = self.peek_history()?;
            let (address, take_record, take_history) = match (record, past) {
                (None, None) => return Ok(None),
                (Some(r), None) => (r, true, false),
                (None, Some(h)) => (h, false, true),
                (Some(r), Some(h)) => match r.cmp(&h) {
                    std::cmp::Ordering::Less => (r, true, false),
                    std::cmp::Ordering::Greater => (h, false, true),
                    std::cmp::Ordering::Equal => (r, true, true),
                },
            };
            let mut current = None;
            if take_record && let Some(item) = self.records.next() {
                let (_, v) = item.map_err(db_error(&self.db_path, "list records"))?;
                let (meta, value) = schema::decode_record(v.value())
                    .ok_or_else(|| malformed(&self.db_path, &address))?;
                if meta.mod_revision <= self.revision {
                    current = Some(Entry {
                        address: address.clone(),
                        meta,
                        value: value.to_vec(),
                    });
                }
            }
            let past = if take_history {
                self.history_of(&address)?
            } else {
                None
            };
            if let Some(entry) = current.or(past) {
                return Ok(Some(entry));
            }
        }
    }
}

impl Iterator for PastEntries {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        self.step().transpose()
    }
}

impl Tables {
    /// The records from `start` to `end` as of `revision`, in address order,
    /// streamed.
    pub(crate) fn range(
        &self,
        revision: u64,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<PastEntries> {
        let db_path = Arc::clone(&self.db_path);
        let records = self
            .records
            .range::<&[u8]>((as_slice(&start), as_slice(&end)))
            .map_err(db_error(&db_path, "list records"))?
            .peekable();
        let history = match &self.history {
            None => None,
            Some(h) => {
                let (s, e) = (history_bound(&start, true), history_bound(&end, false));
                Some(
                    h.range::<&[u8]>((as_slice(&s), as_slice(&e)))
                        .map_err(db_error(&db_path, "read the history"))?
                        .peekable(),
                )
            }
        };
        Ok(PastEntries {
            records,
            history,
            by_end: self.by_end.clone(),
            revision,
            db_path,
        })
    }
}
