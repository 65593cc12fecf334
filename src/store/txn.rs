//! Multi-key transactions: reads from one snapshot, writes buffered, and every
//! version read re-checked when the transaction commits.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::snapshot::Snapshot;
use crate::access::request::{Check, Request, Write, WriteKind};
use crate::coord::{CoordRequest, Fence};
use crate::error::{Error, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::Meta;
use crate::value::{self, RawValue, Versioned};

/// A transaction in progress, handed to the closure of
/// [`Store::transaction`](crate::Store::transaction).
///
/// Reads see one consistent snapshot (and the transaction's own writes). Every
/// record read through [`get`](Tx::get) is remembered with the version seen; the
/// commit succeeds only if all of them still have those versions, and all
/// [`expect_version`](Tx::expect_version) preconditions hold. Then all writes
/// apply at one new revision; otherwise none does and the closure runs again.
///
/// Reads through [`snapshot`](Tx::snapshot) (such as listing a namespace) are
/// not re-checked: state such a dependency with `expect_version` on the keys.
#[derive(Debug)]
pub struct Tx {
    snapshot: Snapshot,
    /// Version and modification revision of each record read (0 and `None`:
    /// absent).
    reads: BTreeMap<Vec<u8>, (u64, Option<u64>)>,
    expects: BTreeMap<Vec<u8>, u64>,
    writes: Writes,
    fences: Vec<Fence>,
    /// Where values are encoded before each is copied out at its own size.
    scratch: Vec<u8>,
}

impl Tx {
    pub(crate) fn new(snapshot: Snapshot) -> Tx {
        Tx {
            snapshot,
            reads: BTreeMap::new(),
            expects: BTreeMap::new(),
            writes: Writes::Ascending(Vec::new()),
            fences: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Reads a record as `T` and makes the commit depend on its version.
    ///
    /// A record written earlier in this transaction reads back with its new
    /// value and the version it will get; its `mod_revision` is 0 until the
    /// commit assigns one.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], or [`Error::Decode`] if the value is not a `T`.
    pub fn get<T: DeserializeOwned>(
        &mut self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<Versioned<T>>> {
        let address = key::encode(namespace, key)?;
        let stored = self.snapshot.get_raw(namespace, key)?;
        let seen = (
            stored.as_ref().map_or(0, |r| r.version),
            stored.as_ref().map(|r| r.mod_revision),
        );
        let (seen, _) = *self.reads.entry(address.clone()).or_insert(seen);
        match self.writes.get(&address) {
            Some(WriteKind::Delete) => Ok(None),
            // A transaction's writes are puts and deletes only.
            Some(WriteKind::Patch { .. }) => Err(crate::Error::Unsupported {
                what: "patches inside a transaction".to_owned(),
                reason: "use Store::patch or a Batch".to_owned(),
            }),
            Some(WriteKind::Put { value, .. }) => {
                let meta = Meta {
                    version: seen + 1,
                    create_revision: stored.as_ref().map_or(0, |r| r.create_revision),
                    mod_revision: 0,
                    updated_at: stored.as_ref().map_or(Timestamp::EPOCH, |r| r.updated_at),
                };
                Ok(Some(Versioned::new(
                    value::decode(namespace, key, value)?,
                    meta,
                )))
            }
            None => match stored {
                Some(raw) => {
                    let meta = raw.meta();
                    let value = value::decode(namespace, key, raw.value.as_msgpack())?;
                    Ok(Some(Versioned::new(value, meta)))
                }
                None => Ok(None),
            },
        }
    }

    /// Writes a value (replacing any earlier write of this key in the transaction).
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::Encode`], [`Error::TooLarge`].
    pub fn put<T: Serialize + ?Sized>(
        &mut self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let bytes = value::encode_through(namespace, key, value, &mut self.scratch)?;
        self.put_bytes(namespace, key, bytes, false)
    }

    /// Writes a value unless it is identical to the stored one, in which case the
    /// record keeps its version and, if nothing else is written, the transaction
    /// takes no revision.
    ///
    /// # Errors
    /// As [`put`](Tx::put).
    pub fn put_if_changed<T: Serialize + ?Sized>(
        &mut self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let bytes = value::encode_through(namespace, key, value, &mut self.scratch)?;
        self.put_bytes(namespace, key, bytes, true)
    }

    /// Writes a value given as MessagePack.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::TooLarge`].
    pub fn put_raw(&mut self, namespace: &str, key: &str, value: RawValue) -> Result<()> {
        let bytes = value.into_msgpack();
        value::check_len(namespace, key, bytes.len())?;
        self.put_bytes(namespace, key, bytes, false)
    }

    fn put_bytes(
        &mut self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        skip_unchanged: bool,
    ) -> Result<()> {
        let address = key::encode(namespace, key)?;
        self.writes.insert(
            address,
            WriteKind::Put {
                value,
                skip_unchanged,
            },
        );
        Ok(())
    }

    /// Removes a record (nothing happens if it does not exist at commit).
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn delete(&mut self, namespace: &str, key: &str) -> Result<()> {
        let address = key::encode(namespace, key)?;
        self.writes.insert(address, WriteKind::Delete);
        Ok(())
    }

    /// Requires the record to have `version` (0: not to exist) when the
    /// transaction commits. Fails at once if the snapshot already disagrees.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the snapshot shows another version;
    /// [`Error::InvalidKey`].
    pub fn expect_version(&mut self, namespace: &str, key: &str, version: u64) -> Result<()> {
        let address = key::encode(namespace, key)?;
        let actual = self.snapshot.version_of(&address)?;
        if actual != version {
            return Err(Error::Conflict {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                expected: version,
                actual,
                attempts: 1,
            });
        }
        self.expects.insert(address, version);
        Ok(())
    }

    /// Requires lock `lock` to be held with `token` when the transaction
    /// commits: a holder that lost the lock (its lease ended) cannot commit
    /// (see [`Error::Fenced`], which the transaction returns without running
    /// again). A transaction that writes nothing commits nothing, so nothing
    /// is checked.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a lock name that is not valid.
    pub fn fence(&mut self, lock: &str, token: u64) -> Result<()> {
        crate::coord::check_lock_name(lock)?;
        self.fences.push(Fence {
            lock: lock.to_owned(),
            token,
        });
        Ok(())
    }

    /// The snapshot the transaction reads from. Reads through it are not
    /// re-checked at commit.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// True if the transaction has written nothing.
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty()
    }

    pub(crate) fn into_request(self) -> Request {
        let mut checks: Vec<Check> = self
            .reads
            .into_iter()
            .map(|(address, (expected, modified))| Check {
                address,
                expected,
                modified,
            })
            .collect();
        checks.extend(self.expects.into_iter().map(|(address, expected)| Check {
            address,
            expected,
            modified: None,
        }));
        Request {
            checks,
            writes: self.writes.into_writes(),
            coord: CoordRequest {
                fences: self.fences,
                ..CoordRequest::default()
            },
        }
    }
}

/// A transaction's writes by address, handed to the commit in address order.
/// Most transactions that write many keys write them in ascending order (a
/// load, an import): those are appended to a `Vec` without a search, and the
/// first write out of order moves them into a map.
#[derive(Debug)]
enum Writes {
    /// Every write so far came after the one before it.
    Ascending(Vec<(Vec<u8>, WriteKind)>),
    /// Any order.
    Map(BTreeMap<Vec<u8>, WriteKind>),
}

impl Writes {
    fn get(&self, address: &[u8]) -> Option<&WriteKind> {
        match self {
            Writes::Ascending(writes) => writes
                .binary_search_by(|(a, _)| a.as_slice().cmp(address))
                .ok()
                .map(|i| &writes[i].1),
            Writes::Map(writes) => writes.get(address),
        }
    }

    /// Writes `kind` to `address`, replacing an earlier write of it.
    fn insert(&mut self, address: Vec<u8>, kind: WriteKind) {
        match self {
            Writes::Ascending(writes) => {
                if writes.last().is_none_or(|(last, _)| *last < address) {
                    writes.push((address, kind));
                } else if let Ok(i) = writes.binary_search_by(|(a, _)| a.cmp(&address)) {
                    writes[i].1 = kind;
                } else {
                    let mut map: BTreeMap<_, _> = std::mem::take(writes).into_iter().collect();
                    map.insert(address, kind);
                    *self = Writes::Map(map);
                }
            }
            Writes::Map(writes) => {
                writes.insert(address, kind);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Writes::Ascending(writes) => writes.is_empty(),
            Writes::Map(writes) => writes.is_empty(),
        }
    }

    /// The writes in address order.
    fn into_writes(self) -> Vec<Write> {
        let write = |(address, kind)| Write { address, kind };
        match self {
            Writes::Ascending(writes) => writes.into_iter().map(write).collect(),
            Writes::Map(writes) => writes.into_iter().map(write).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(byte: u8) -> WriteKind {
        WriteKind::Put {
            value: vec![byte],
            skip_unchanged: false,
        }
    }

    /// Addresses written in an order with runs up and down, rewrites and
    /// deletes: the writes come out as a map of them would give them.
    #[test]
    fn writes_in_any_order_come_out_in_address_order_with_the_last_write_of_each() {
        let orders: [&[u8]; 5] = [
            &[1, 2, 3, 4],
            &[1, 2, 2, 3, 1],
            &[4, 3, 2, 1],
            &[1, 3, 5, 2, 4, 3, 6, 1],
            &[],
        ];
        for (round, order) in orders.iter().enumerate() {
            let mut writes = Writes::Ascending(Vec::new());
            let mut map = BTreeMap::new();
            for (i, byte) in order.iter().enumerate() {
                let kind = if i % 3 == 2 {
                    WriteKind::Delete
                } else {
                    put(i as u8)
                };
                writes.insert(vec![*byte], kind.clone());
                map.insert(vec![*byte], kind);
                for probe in 0..8u8 {
                    assert_eq!(writes.get(&[probe]), map.get(&[probe][..]), "round {round}");
                }
                assert!(!writes.is_empty());
            }
            assert_eq!(writes.is_empty(), map.is_empty());
            let expected: Vec<Write> = map
                .into_iter()
                .map(|(address, kind)| Write { address, kind })
                .collect();
            assert_eq!(writes.into_writes(), expected, "round {round}");
        }
    }
}
