//! What readers see: the published view of the state database.
//!
//! The engine applies a batch to redb with a non-durable commit *before* its
//! log sync returns (so that the commit's CPU work overlaps the disk write), and
//! redb would show that commit to any new read transaction at once. Readers
//! therefore never begin read transactions of their own: they share the
//! [`View`] the engine publishes once a batch is acknowledged (after its sync in
//! `Sync` mode), and a reader can never observe a state that a crash could take
//! back. A view also carries the revision and commit time it shows, so the state
//! database need not record them on every commit.
//!
//! A view is a commit of the state database plus the tail of writes the
//! engine has made since in the write it holds open (`tail.rs`): what the
//! tail says of an address wins over the database.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use redb::ReadOnlyTable;

use super::schema::{self, Applied, RECORDS};
use super::tail::{Seen, Tail, TailWrite};
use super::{Db, db_error, malformed_record};
use crate::error::Result;
use crate::key;
use crate::value::{Entry, Meta, Stored};

/// One read transaction of the state database, opened when its revision
/// became visible, shared by every reader until the next one replaces it.
pub(crate) struct View {
    /// Opened in its own read transaction, whose snapshot it keeps alive;
    /// shared by the views of one commit.
    records: Arc<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    /// The writes since that commit, as of `applied`.
    tail: Tail,
    applied: Applied,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens a view of what the database holds now, which must be the state
    /// at `applied`.
    pub(crate) fn view(&self, applied: Applied) -> Result<Arc<View>> {
        let records = self.read_table(RECORDS, "open the records table")?;
        Ok(Arc::new(View {
            records: Arc::new(records),
            tail: Tail::default(),
            applied,
            path: self.shared_path(),
        }))
    }
}

impl View {
    /// The same commit of the database with `tail` (the writes since it) on
    /// top: the state at `applied`.
    pub(crate) fn with_tail(&self, tail: Tail, applied: Applied) -> Arc<View> {
        Arc::new(View {
            records: Arc::clone(&self.records),
            tail,
            applied,
            path: Arc::clone(&self.path),
        })
    }

    /// The last commit the view includes.
    pub(crate) fn applied(&self) -> Applied {
        self.applied
    }

    /// One record.
    pub(crate) fn get(&self, address: &[u8]) -> Result<Option<Stored>> {
        let mut out = None;
        self.get_with(address, &mut |meta, value| {
            out = Some(Stored {
                meta,
                value: value.to_vec(),
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// One record, lent to `read` straight from the database's page (no
    /// copy); false if absent.
    pub(crate) fn get_with(
        &self,
        address: &[u8],
        read: &mut dyn FnMut(Meta, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        let guard;
        let stored = match self.tail.get(address) {
            Seen::Stored(stored) => stored,
            Seen::Removed => return Ok(false),
            Seen::Untouched => {
                guard = self
                    .records
                    .get(address)
                    .map_err(db_error(&self.path, "read a record"))?;
                match &guard {
                    Some(guard) => guard.value(),
                    None => return Ok(false),
                }
            }
        };
        let (meta, bytes) = schema::decode_record(stored).ok_or_else(|| {
            let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
            malformed_record(&self.path, namespace, key)
        })?;
        read(meta, bytes)?;
        Ok(true)
    }

    /// A record's version, 0 when absent.
    pub(crate) fn version(&self, address: &[u8]) -> Result<u64> {
        match self.tail.get(address) {
            Seen::Stored(stored) => return Ok(schema::record_version(stored)),
            Seen::Removed => return Ok(0),
            Seen::Untouched => {}
        }
        Ok(self
            .records
            .get(address)
            .map_err(db_error(&self.path, "read a record"))?
            .map_or(0, |v| schema::record_version(v.value())))
    }

    /// The records from `start` to `end`, in address order, streamed (the
    /// range keeps the view's read transaction alive).
    pub(crate) fn range(&self, start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> Result<Entries> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_slice(start), as_slice(end));
        let range = self
            .records
            .range::<&[u8]>(bounds)
            .map_err(db_error(&self.path, "list records"))?;
        Ok(Entries {
            range,
            base_next: None,
            tail: self.tail.range(bounds.0, bounds.1).into_iter(),
            tail_next: None,
            path: Arc::clone(&self.path),
        })
    }

    /// The namespaces holding records, in order.
    pub(crate) fn namespaces(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            // The next namespace either side names, then whether it holds a
            // record once the tail's removals are counted: each namespace's
            // tail writes are looked at once.
            let base = self
                .records
                .range::<&[u8]>(from.as_slice()..)
                .map_err(db_error(&self.path, "list namespaces"))?
                .next()
                .transpose()
                .map_err(db_error(&self.path, "list namespaces"))?
                .map(|(address, _)| address.value().to_vec());
            let tail = self.tail.first_from(&from).map(|address| address.to_vec());
            let Some(first) = [base, tail].into_iter().flatten().min() else {
                break;
            };
            let Some((namespace, _)) = key::decode(&first) else {
                break;
            };
            let end = key::namespace_end(namespace);
            let mut records = self.range(&Bound::Included(from), &Bound::Excluded(end.clone()))?;
            if records.next().transpose()?.is_some() {
                out.push(namespace.to_owned());
            }
            from = end;
        }
        Ok(out)
    }

    /// How many records lie between `start` and `end`.
    pub(crate) fn count(&self, start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> Result<u64> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_slice(start), as_slice(end));
        let mut n = 0;
        for item in self
            .records
            .range::<&[u8]>(bounds)
            .map_err(db_error(&self.path, "count records"))?
        {
            item.map_err(db_error(&self.path, "count records"))?;
            n += 1;
        }
        // The tail's writes: a record it adds counts, one it removes does not.
        for (address, stored) in self.tail.range(bounds.0, bounds.1) {
            let in_base = self
                .records
                .get(&*address)
                .map_err(db_error(&self.path, "count records"))?
                .is_some();
            match (in_base, stored.is_some()) {
                (false, true) => n += 1,
                (true, false) => n -= 1,
                _ => {}
            }
        }
        Ok(n)
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

type Guard = redb::AccessGuard<'static, &'static [u8]>;

/// A range of the records table with the view's tail merged in, streamed.
pub(crate) struct Entries {
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    /// The table's next record, read ahead of the tail's.
    base_next: Option<(Guard, Guard)>,
    /// The tail's writes in the range, in address order.
    tail: std::vec::IntoIter<TailWrite>,
    tail_next: Option<TailWrite>,
    path: Arc<PathBuf>,
}

impl Entries {
    fn entry(&self, address: &[u8], stored: &[u8]) -> Result<Entry> {
        match schema::decode_record(stored) {
            Some((meta, value)) => Ok(Entry {
                address: address.to_vec(),
                meta,
                value: value.to_vec(),
            }),
            None => {
                let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
                Err(malformed_record(&self.path, namespace, key))
            }
        }
    }
}

impl Iterator for Entries {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.base_next.is_none() && self.tail_next.is_none() && self.tail.len() == 0 {
            // Nothing of the tail is left: the table's records as they are.
            return Some(match self.range.next()? {
                Ok((address, stored)) => self.entry(address.value(), stored.value()),
                Err(e) => Err(db_error(&self.path, "list records")(e)),
            });
        }
        loop {
            if self.base_next.is_none() {
                match self.range.next() {
                    None => {}
                    Some(Ok(pair)) => self.base_next = Some(pair),
                    Some(Err(e)) => return Some(Err(db_error(&self.path, "list records")(e))),
                }
            }
            if self.tail_next.is_none() {
                self.tail_next = self.tail.next();
            }
            let tail_first = match (&self.base_next, &self.tail_next) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((address, _)), Some((written, _))) => {
                    match address.value().cmp(&**written) {
                        std::cmp::Ordering::Less => false,
                        std::cmp::Ordering::Equal => {
                            // The tail's write replaces the table's record.
                            self.base_next = None;
                            true
                        }
                        std::cmp::Ordering::Greater => true,
                    }
                }
            };
            if tail_first {
                let (address, stored) = self.tail_next.take()?;
                match stored {
                    Some(stored) => return Some(self.entry(&address, &stored)),
                    // Removed in the tail: nothing to list.
                    None => continue,
                }
            }
            let (address, stored) = self.base_next.take()?;
            return Some(self.entry(address.value(), stored.value()));
        }
    }
}

/// The slot holding the newest published view.
pub(crate) struct Visible(RwLock<Arc<View>>);

impl std::fmt::Debug for Visible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Visible")
            .field("applied", &self.0.read().applied)
            .finish_non_exhaustive()
    }
}

impl Visible {
    pub(crate) fn new(view: Arc<View>) -> Visible {
        Visible(RwLock::new(view))
    }

    /// The newest published view.
    pub(crate) fn get(&self) -> Arc<View> {
        Arc::clone(&self.0.read())
    }

    /// Replaces the published view. Called by the engine only, under its lock,
    /// so that the visible revision never goes backwards.
    pub(crate) fn publish(&self, view: Arc<View>) {
        // The old view is dropped outside the lock.
        let _old = std::mem::replace(&mut *self.0.write(), view);
    }
}
