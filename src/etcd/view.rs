//! A snapshot of a store on etcd: every read at one etcd revision (MVCC, so
//! the cluster keeps that state until it compacts its history), listings a
//! page at a time.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use super::client::to_i64;
use super::ops::{EtcdStore, Head, PAGE, foreign_address};
use super::proto;
use super::record;
use crate::access::{Entries, ReadView};
use crate::error::{Error, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::{Entry, Stored};

/// One consistent read of a store on etcd.
pub(crate) struct EtcdView {
    store: EtcdStore,
    head: Head,
}

impl EtcdView {
    pub(crate) fn new(store: EtcdStore, head: Head) -> EtcdView {
        EtcdView { store, head }
    }

    /// A read at the view's etcd revision; a compacted one names the store's
    /// revision the snapshot shows.
    fn read(&self, request: proto::RangeRequest) -> Result<proto::RangeResponse> {
        let request = proto::RangeRequest {
            revision: to_i64(self.head.read_at),
            ..request
        };
        self.store
            .client()
            .range(request)
            .map_err(|e| compacted(e, self.head.revision))
    }

    /// The etcd keys `[start, end)` of a range of addresses.
    fn keys(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
        let layout = self.store.layout();
        let (all_start, all_end) = layout.records();
        let after = |a: &[u8]| {
            let mut k = layout.record_of_address(a);
            k.push(0);
            k
        };
        let start = match start {
            Bound::Included(a) => layout.record_of_address(&a),
            Bound::Excluded(a) => after(&a),
            Bound::Unbounded => all_start,
        };
        let end = match end {
            Bound::Included(a) => after(&a),
            Bound::Excluded(a) => layout.record_of_address(&a),
            Bound::Unbounded => all_end,
        };
        (start, end)
    }
}

/// A compacted read reports the snapshot's revision.
fn compacted(e: Error, revision: u64) -> Error {
    match e {
        Error::Compacted { compacted, .. } => Error::Compacted {
            requested: revision,
            compacted,
        },
        other => other,
    }
}

impl ReadView for EtcdView {
    fn revision(&self) -> u64 {
        self.head.revision
    }

    fn time(&self) -> Timestamp {
        self.head.time
    }

    fn get(&self, address: &[u8]) -> Result<Option<Stored>> {
        Ok(self
            .store
            .get_address(address, self.head.read_at)
            .map_err(|e| compacted(e, self.head.revision))?
            .map(|(meta, value)| Stored { meta, value }))
    }

    fn range(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Entries> {
        let (next, end) = self.keys(start, end);
        let done = next >= end;
        Ok(Box::new(Pages {
            view: self,
            next,
            end,
            buffer: VecDeque::new(),
            done,
        }))
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        // One keys-only read of one key per namespace: the first record at or
        // after the end of the namespace before.
        let layout = self.store.layout();
        let (mut start, end) = layout.records();
        let mut out = Vec::new();
        loop {
            let response = self.read(proto::RangeRequest {
                key: start,
                range_end: end.clone(),
                limit: 1,
                keys_only: true,
                ..Default::default()
            })?;
            let Some(kv) = response.kvs.first() else {
                return Ok(out);
            };
            let (namespace, _) = layout
                .decode_record(&kv.key)
                .ok_or_else(|| record::foreign(&String::from_utf8_lossy(&kv.key), ""))?;
            start = layout.record_of_address(&key::namespace_end(namespace));
            out.push(namespace.to_owned());
        }
    }

    fn count(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<u64> {
        let (start, end) = self.keys(start, end);
        if start >= end {
            return Ok(0);
        }
        let response = self.read(proto::RangeRequest {
            key: start,
            range_end: end,
            count_only: true,
            ..Default::default()
        })?;
        Ok(u64::try_from(response.count).unwrap_or(0))
    }
}

/// The records of a range, read a page at a time at the view's revision.
struct Pages {
    view: Arc<EtcdView>,
    next: Vec<u8>,
    end: Vec<u8>,
    buffer: VecDeque<Entry>,
    done: bool,
}

impl Pages {
    fn fetch(&mut self) -> Result<()> {
        let response = self.view.read(proto::RangeRequest {
            key: self.next.clone(),
            range_end: self.end.clone(),
            limit: PAGE,
            ..Default::default()
        })?;
        let layout = self.view.store.layout();
        for kv in response.kvs {
            let address = layout
                .address_of(&kv.key)
                .ok_or_else(|| record::foreign(&String::from_utf8_lossy(&kv.key), ""))?
                .to_vec();
            let (updated, _) =
                record::decode(&kv.value).ok_or_else(|| foreign_address(&address))?;
            let meta = record::meta(&kv, updated);
            self.next = kv.key;
            self.next.push(0);
            let mut value = kv.value;
            value.drain(..record::HEADER_LEN);
            self.buffer.push_back(Entry {
                address,
                meta,
                value,
            });
        }
        if !response.more {
            self.done = true;
        }
        Ok(())
    }
}

impl Iterator for Pages {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        while self.buffer.is_empty() && !self.done {
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}
