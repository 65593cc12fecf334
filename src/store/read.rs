//! Reading the state database through a published [`View`]: the embedded
//! engine's [`ReadView`], and the point reads of the latest state.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::db_error;
use super::engine::malformed_record;
use super::schema;
use super::view::View;
use crate::access::{Entries, Entry, ReadRecord, ReadView, Stored};
use crate::error::Result;
use crate::key;
use crate::time::Timestamp;

/// One record of `view`.
pub(crate) fn get(view: &View, db_path: &Path, address: &[u8]) -> Result<Option<Stored>> {
    let mut out = None;
    get_with(view, db_path, address, &mut |meta, value| {
        out = Some(Stored {
            meta,
            value: value.to_vec(),
        });
        Ok(())
    })?;
    Ok(out)
}

/// One record of `view`, lent to `read` straight from the state database's
/// page (no copy); false if absent.
pub(crate) fn get_with(
    view: &View,
    db_path: &Path,
    address: &[u8],
    read: ReadRecord<'_>,
) -> Result<bool> {
    let Some(guard) = view
        .records()
        .get(address)
        .map_err(db_error(db_path, "read a record"))?
    else {
        return Ok(false);
    };
    let (meta, bytes) = schema::decode_record(guard.value()).ok_or_else(|| {
        let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
        malformed_record(db_path, namespace, key)
    })?;
    read(meta, bytes)?;
    Ok(true)
}

/// A published view, read as a [`ReadView`]: one MVCC read transaction of the
/// state database, kept open for as long as this is held.
pub(crate) struct LocalView {
    view: Arc<View>,
    db_path: Arc<PathBuf>,
}

impl LocalView {
    pub(crate) fn new(view: Arc<View>, db_path: Arc<PathBuf>) -> LocalView {
        LocalView { view, db_path }
    }
}

impl ReadView for LocalView {
    fn revision(&self) -> u64 {
        self.view.applied().revision
    }

    fn time(&self) -> Timestamp {
        let applied = self.view.applied();
        if applied.revision > 0 {
            applied.time
        } else {
            Timestamp::EPOCH
        }
    }

    fn get(&self, address: &[u8]) -> Result<Option<Stored>> {
        get(&self.view, &self.db_path, address)
    }

    fn version(&self, address: &[u8]) -> Result<u64> {
        Ok(self
            .view
            .records()
            .get(address)
            .map_err(db_error(&self.db_path, "read a record"))?
            .map_or(0, |v| schema::record_version(v.value())))
    }

    fn range(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Entries> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_slice(&start), as_slice(&end));
        let range = self
            .view
            .records()
            .range::<&[u8]>(bounds)
            .map_err(db_error(&self.db_path, "list records"))?;
        Ok(Box::new(LocalEntries {
            range,
            db_path: Arc::clone(&self.db_path),
        }))
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut range = self
                .view
                .records()
                .range::<&[u8]>(from.as_slice()..)
                .map_err(db_error(&self.db_path, "list namespaces"))?;
            let Some(first) = range.next() else { break };
            let (address, _) = first.map_err(db_error(&self.db_path, "list namespaces"))?;
            let Some((namespace, _)) = key::decode(address.value()) else {
                break;
            };
            from = key::namespace_end(namespace);
            out.push(namespace.to_owned());
        }
        Ok(out)
    }

    fn count(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<u64> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_slice(&start), as_slice(&end));
        let mut n = 0;
        for item in self
            .view
            .records()
            .range::<&[u8]>(bounds)
            .map_err(db_error(&self.db_path, "count records"))?
        {
            item.map_err(db_error(&self.db_path, "count records"))?;
            n += 1;
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

/// A range of the records table, streamed (the range keeps its read
/// transaction alive).
struct LocalEntries {
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    db_path: Arc<PathBuf>,
}

impl Iterator for LocalEntries {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        let (address, stored) = match self.range.next()? {
            Ok(pair) => pair,
            Err(e) => return Some(Err(db_error(&self.db_path, "list records")(e))),
        };
        let address = address.value();
        Some(match schema::decode_record(stored.value()) {
            Some((meta, value)) => Ok(Entry {
                address: address.to_vec(),
                meta,
                value: value.to_vec(),
            }),
            None => {
                let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
                Err(malformed_record(&self.db_path, namespace, key))
            }
        })
    }
}
