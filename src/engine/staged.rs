//! A batch's writes, resolved and held back from the state database until
//! the batch is in the log.
//!
//! A log record needs only the versions a batch reads, not redb's inserts:
//! the batch is checked, resolved and encoded against the open write's reads
//! and its own earlier writes ([`Staged::read`]), written to the log, and
//! only then applied to redb ([`Staged::apply`]) while the disk writes it
//! (`batch.rs`). Later requests of a batch see the writes of earlier ones
//! exactly as if they were in redb already.
//!
//! A batch with many writes (a bulk load) writes into redb as it goes instead
//! ("in place"): there the write held across batches (`held.rs`) gains
//! little, while a staged blind put costs two B-tree walks (a read for its
//! version, then the insert) where an insert in place reports what it
//! replaced.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;

use crate::db::schema;
use crate::db::tail::Tail;
use crate::db::write::{Records, Replaced};
use crate::error::Result;
use crate::time::Timestamp;
use crate::value::Meta;

/// The staged writes of one batch (kept by the engine for reuse).
#[derive(Debug, Default)]
pub(super) struct Staged {
    /// Addresses and stored records (as `schema::encode_record` lays them
    /// out), back to back.
    bytes: Vec<u8>,
    writes: Vec<Write>,
    commits: Vec<Commit>,
    /// The latest write to each address, by the address's hash; writes of
    /// other addresses with the same hash are chained through
    /// [`Write::earlier`].
    latest: HashMap<u64, usize>,
    hasher: RandomState,
    /// The batch writes into redb as it goes: nothing is staged.
    in_place: bool,
}

/// A put (the stored record) or a removal (`record: None`).
#[derive(Debug)]
struct Write {
    address: Range<usize>,
    record: Option<Range<usize>>,
    /// The write before this one whose address has the same hash.
    earlier: Option<usize>,
}

/// A commit of the batch: its revision and time, and where its writes end.
#[derive(Debug)]
struct Commit {
    revision: u64,
    time: Timestamp,
    end: usize,
}

impl Staged {
    /// Empties it for the next batch, keeping its buffers; `in_place`: the
    /// batch writes into redb as it goes.
    pub(super) fn clear(&mut self, in_place: bool) {
        self.in_place = in_place;
        self.bytes.clear();
        self.writes.clear();
        self.commits.clear();
        self.latest.clear();
    }

    /// Lends the record at `address` as the batch left it (its own writes,
    /// else the state database) to `read`; `None` if absent.
    pub(super) fn read<R>(
        &self,
        records: &Records<'_, '_>,
        address: &[u8],
        (namespace, key): (&str, &str),
        read: impl FnOnce(Meta, &[u8]) -> R,
    ) -> Result<Option<R>> {
        let Some(write) = self.latest(address) else {
            return records.read(address, namespace, key, read);
        };
        let Some(record) = &write.record else {
            return Ok(None);
        };
        let (meta, value) = schema::decode_record(&self.bytes[record.clone()])
            .ok_or_else(|| records.malformed(namespace, key))?;
        Ok(Some(read(meta, value)))
    }

    /// The metadata of the record at `address` as the batch left it.
    pub(super) fn meta(
        &self,
        records: &Records<'_, '_>,
        address: &[u8],
        name: (&str, &str),
    ) -> Result<Option<Meta>> {
        self.read(records, address, name, |meta, _| meta)
    }

    /// Puts `value` at `address`, with the metadata `meta` makes from the
    /// record's current one: `known` when a precondition read it, otherwise
    /// found out here. Returns the metadata written.
    pub(super) fn put(
        &mut self,
        records: &mut Records<'_, '_>,
        address: &[u8],
        name: (&str, &str),
        value: &[u8],
        known: Option<Option<Meta>>,
        meta: impl Fn(Option<Meta>) -> Result<Meta>,
    ) -> Result<Meta> {
        if !self.in_place {
            let current = match known {
                Some(known) => known,
                None => self.meta(records, address, name)?,
            };
            let written = meta(current)?;
            self.stage_put(address, &written, value);
            return Ok(written);
        }
        let mut written = meta(known.flatten())?;
        let replaced = records.put(address, &written, value)?;
        if known.is_none() {
            // A blind put: the record it replaced decides the version.
            match replaced {
                Replaced::Absent => {}
                Replaced::Malformed => return Err(records.malformed(name.0, name.1)),
                Replaced::Record(old) => {
                    written = meta(Some(old))?;
                    records.put(address, &written, value)?;
                }
            }
        }
        Ok(written)
    }

    /// Removes the record at `address`; returns the metadata it had (`None`:
    /// absent, nothing to remove).
    pub(super) fn remove(
        &mut self,
        records: &mut Records<'_, '_>,
        address: &[u8],
        name: (&str, &str),
    ) -> Result<Option<Meta>> {
        if self.in_place {
            return match records.remove(address)? {
                Replaced::Absent => Ok(None),
                Replaced::Malformed => Err(records.malformed(name.0, name.1)),
                Replaced::Record(old) => Ok(Some(old)),
            };
        }
        let current = self.meta(records, address, name)?;
        if current.is_some() {
            self.push(address, None);
        }
        Ok(current)
    }

    /// The writes since the last commit belong to the commit at `revision`,
    /// `time` (set on `records` with `Records::at` before them).
    pub(super) fn committed(
        &mut self,
        records: &mut Records<'_, '_>,
        revision: u64,
        time: Timestamp,
    ) -> Result<()> {
        if self.in_place {
            return records.committed(revision, time, false);
        }
        self.commits.push(Commit {
            revision,
            time,
            end: self.writes.len(),
        });
        Ok(())
    }

    fn stage_put(&mut self, address: &[u8], meta: &Meta, value: &[u8]) {
        let at = self.bytes.len();
        schema::encode_record(meta, value, &mut self.bytes);
        let record = at..self.bytes.len();
        self.push(address, Some(record));
    }

    /// Applies the staged commits, in order, to the open batch: the records
    /// and the history index, as if each write had been made when staged.
    pub(super) fn apply(&self, records: &mut Records<'_, '_>) -> Result<()> {
        let mut from = 0;
        for commit in &self.commits {
            records.at(commit.revision, commit.time);
            for write in &self.writes[from..commit.end] {
                let address = &self.bytes[write.address.clone()];
                match &write.record {
                    Some(record) => records.put_stored(address, &self.bytes[record.clone()])?,
                    None => {
                        records.remove(address)?;
                    }
                }
            }
            records.committed(commit.revision, commit.time, false)?;
            from = commit.end;
        }
        Ok(())
    }

    /// Writes the staged writes into `tail`, in order (the latest write of
    /// an address wins), once they are applied.
    pub(super) fn write_tail(&self, tail: &mut Tail) {
        for write in &self.writes {
            let stored = write.record.as_ref().map(|r| &self.bytes[r.clone()]);
            tail.write(&self.bytes[write.address.clone()], stored);
        }
    }

    fn push(&mut self, address: &[u8], record: Option<Range<usize>>) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(address);
        let index = self.writes.len();
        let earlier = self.latest.insert(self.hasher.hash_one(address), index);
        self.writes.push(Write {
            address: at..self.bytes.len(),
            record,
            earlier,
        });
    }

    /// The batch's latest write to `address`, if any.
    fn latest(&self, address: &[u8]) -> Option<&Write> {
        if self.writes.is_empty() {
            return None;
        }
        let mut next = self.latest.get(&self.hasher.hash_one(address)).copied();
        while let Some(index) = next {
            let write = &self.writes[index];
            if self.bytes[write.address.clone()] == *address {
                return Some(write);
            }
            next = write.earlier;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::request::{Check, Outcome, Request, Write as RequestWrite, WriteKind};
    use crate::{Options, Store};

    fn put(address: &[u8], value: &str, skip_unchanged: bool) -> RequestWrite {
        RequestWrite {
            address: address.to_vec(),
            kind: WriteKind::Put {
                value: crate::value::encode("ns", "k", value).unwrap(),
                skip_unchanged,
            },
        }
    }

    fn request(checks: Vec<Check>, writes: Vec<RequestWrite>) -> Request {
        Request {
            checks,
            writes,
            ..Request::default()
        }
    }

    /// The version a committed request gave its one write.
    fn version(outcome: &crate::error::Result<Outcome>) -> (Option<u64>, String) {
        let outcome = outcome.as_ref().unwrap();
        (outcome.revision, format!("{:?}", outcome.writes[0]))
    }

    #[test]
    fn later_requests_of_one_batch_see_the_writes_of_earlier_ones() {
        one_key_in_one_batch(0);
    }

    #[test]
    fn later_requests_of_a_batch_written_in_place_see_the_writes_of_earlier_ones() {
        // Enough other writes that the batch goes into redb as it goes.
        one_key_in_one_batch(300);
    }

    /// Eight requests on one key in one batch, the first with `padding`
    /// writes to other keys.
    fn one_key_in_one_batch(padding: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let address = crate::key::encode("ns", "k").unwrap();
        let check = |expected, modified| Check {
            address: address.clone(),
            expected,
            modified,
        };
        let delete = RequestWrite {
            address: address.clone(),
            kind: WriteKind::Delete,
        };
        let mut opened = super::super::open::hold(&path, &Options::default()).unwrap();
        let mut first = vec![put(&address, "one", false)];
        let others: Vec<Vec<u8>> = (0..padding)
            .map(|i| crate::key::encode("ns", &format!("other{i}")).unwrap())
            .collect();
        first.extend(others.iter().map(|a| put(a, "other", false)));
        let requests = [
            request(vec![check(0, None)], first),
            // Reads the version the request before it wrote, not redb's.
            request(vec![check(1, Some(1))], vec![put(&address, "two", false)]),
            request(vec![check(1, None)], vec![put(&address, "late", false)]),
            request(vec![], vec![delete.clone()]),
            request(vec![], vec![delete]),
            request(vec![], vec![put(&address, "three", false)]),
            request(vec![], vec![put(&address, "three", true)]),
            request(vec![check(1, Some(4))], vec![put(&address, "four", false)]),
        ];
        let requests: Vec<&Request> = requests.iter().collect();
        let results = opened.engine.commit_batch(&requests);
        assert_eq!(results.len(), 8);
        assert!(version(&results[0]).1.contains("version: 1,"));
        assert_eq!(results[1].as_ref().unwrap().revision, Some(2));
        assert!(version(&results[1]).1.contains("version: 2,"));
        match &results[2] {
            Err(crate::Error::Conflict {
                expected, actual, ..
            }) => assert_eq!((*expected, *actual), (1, 2)),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            version(&results[3]),
            (Some(3), "Deleted { version: 2 }".to_owned())
        );
        assert_eq!(version(&results[4]), (None, "Absent".to_owned()));
        assert!(
            version(&results[5])
                .1
                .contains("version: 1, create_revision: 4,")
        );
        // Unchanged against the value staged by the request before it.
        assert_eq!(results[6].as_ref().unwrap().revision, None);
        assert!(version(&results[6]).1.contains("changed: false"));
        assert!(
            version(&results[7])
                .1
                .contains("version: 2, create_revision: 4,")
        );
        assert_eq!(opened.engine.revision(), 5);
        opened.close().unwrap();

        // What reached the state database, and its history, after a clean close.
        let store = Store::open(&path, Options::default()).unwrap();
        let now = store.get::<String>("ns", "k").unwrap().unwrap();
        assert_eq!(
            (now.value.as_str(), now.version, now.mod_revision),
            ("four", 2, 5)
        );
        let at = |revision| {
            store
                .snapshot_at_revision(revision)
                .unwrap()
                .get::<String>("ns", "k")
                .unwrap()
                .map(|v| (v.value, v.version))
        };
        assert_eq!(at(1), Some(("one".to_owned(), 1)));
        assert_eq!(at(2), Some(("two".to_owned(), 2)));
        assert_eq!(at(3), None);
        assert_eq!(at(4), Some(("three".to_owned(), 1)));
        if padding > 0 {
            let other = store.get::<String>("ns", "other7").unwrap().unwrap();
            assert_eq!((other.version, other.mod_revision), (1, 1));
        }
        store.close().unwrap();
    }

    #[test]
    fn the_latest_write_to_an_address_wins_and_others_are_kept_apart() {
        let mut staged = Staged::default();
        let meta = |version| Meta {
            version,
            create_revision: 1,
            mod_revision: version,
            updated_at: Timestamp::EPOCH,
        };
        staged.stage_put(b"ns\0a", &meta(1), b"one");
        staged.stage_put(b"ns\0b", &meta(1), b"bee");
        staged.stage_put(b"ns\0a", &meta(2), b"two");
        staged.push(b"ns\0b", None);
        fn stored(staged: &Staged, address: &[u8]) -> Option<Option<(Meta, Vec<u8>)>> {
            staged.latest(address).map(|w| {
                w.record.clone().and_then(|r| {
                    schema::decode_record(&staged.bytes[r]).map(|(m, v)| (m, v.to_vec()))
                })
            })
        }
        assert_eq!(
            stored(&staged, b"ns\0a"),
            Some(Some((meta(2), b"two".to_vec())))
        );
        assert_eq!(stored(&staged, b"ns\0b"), Some(None));
        assert_eq!(stored(&staged, b"ns\0c"), None);
        staged.clear(false);
        assert_eq!(stored(&staged, b"ns\0a"), None);
    }
}
