//! Consistent reads: a [`Snapshot`] is one MVCC read of the state database at
//! one revision (a published [`View`]). Readers never wait for the writer, and
//! see only commits that are already durable (in `Sync` mode).

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::db_error;
use super::engine::malformed_record;
use super::schema;
use super::view::View;
use crate::error::{KeyPart, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::{self, RawValue, Versioned};

/// Which keys of a namespace to list: all, a range, or those with a prefix.
///
/// Built from Rust ranges of `&str` (`..`, `"a".."m"`, `"k"..`, `..="z"`) or with
/// [`KeyRange::prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    start: Bound<String>,
    end: Bound<String>,
    prefix: Option<String>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> KeyRange {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            prefix: None,
        }
    }

    /// Keys that start with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> KeyRange {
        KeyRange {
            prefix: Some(prefix.into()),
            ..KeyRange::all()
        }
    }

    /// Keys within `range` (in byte order of their UTF-8).
    pub fn range<S: AsRef<str>>(range: impl RangeBounds<S>) -> KeyRange {
        let own = |b: Bound<&S>| match b {
            Bound::Included(s) => Bound::Included(s.as_ref().to_owned()),
            Bound::Excluded(s) => Bound::Excluded(s.as_ref().to_owned()),
            Bound::Unbounded => Bound::Unbounded,
        };
        KeyRange {
            start: own(range.start_bound()),
            end: own(range.end_bound()),
            prefix: None,
        }
    }
}

macro_rules! key_range_from {
    ($($t:ty),*) => {$(
        impl From<$t> for KeyRange {
            fn from(range: $t) -> KeyRange {
                KeyRange::range(range)
            }
        }
    )*};
}

key_range_from!(
    std::ops::Range<&str>,
    std::ops::RangeFrom<&str>,
    std::ops::RangeTo<&str>,
    std::ops::RangeInclusive<&str>,
    std::ops::RangeToInclusive<&str>
);

impl From<std::ops::RangeFull> for KeyRange {
    fn from(_: std::ops::RangeFull) -> KeyRange {
        KeyRange::all()
    }
}

/// One consistent view of the store at one revision.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = statelog::Store::open(dir.path(), Default::default()).unwrap();
/// store.put("tasks", "a", &1).unwrap();
/// store.put("tasks", "b", &2).unwrap();
/// let sum = store.read(|snap| {
///     let mut sum = 0;
///     for item in snap.list::<i32>("tasks", ..)? {
///         sum += item?.1.value;
///     }
///     Ok(sum)
/// }).unwrap();
/// assert_eq!(sum, 3);
/// ```
pub struct Snapshot {
    view: Arc<View>,
    db_path: Arc<PathBuf>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot {
    pub(crate) fn new(view: Arc<View>, db_path: Arc<PathBuf>) -> Snapshot {
        Snapshot { view, db_path }
    }

    /// The revision this snapshot shows: the last commit it includes.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for views that must be read.
    pub fn revision(&self) -> Result<u64> {
        Ok(self.view.applied().revision)
    }

    /// The commit time of [`revision`](Self::revision) (the epoch for a store
    /// without commits).
    ///
    /// # Errors
    /// None today; the `Result` leaves room for views that must be read.
    pub fn time(&self) -> Result<Timestamp> {
        let applied = self.view.applied();
        Ok(if applied.revision > 0 {
            applied.time
        } else {
            Timestamp::EPOCH
        })
    }

    /// Reads one record as `T`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad address,
    /// [`Error::Decode`](crate::Error::Decode) if the value is not a `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<Versioned<T>>> {
        let address = key::encode(namespace, key)?;
        self.get_with(&address, namespace, key, |bytes| {
            value::decode(namespace, key, bytes)
        })
    }

    /// Reads one record without decoding its value.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad address.
    pub fn get_raw(&self, namespace: &str, key: &str) -> Result<Option<Versioned<RawValue>>> {
        let address = key::encode(namespace, key)?;
        self.get_with(&address, namespace, key, |bytes| {
            Ok(RawValue::from_trusted(bytes.to_vec()))
        })
    }

    /// The version of a record, 0 if absent.
    pub(crate) fn version_of(&self, address: &[u8]) -> Result<u64> {
        Ok(self
            .view
            .records()
            .get(address)
            .map_err(db_error(&self.db_path, "read a record"))?
            .map_or(0, |v| schema::record_version(v.value())))
    }

    fn get_with<T>(
        &self,
        address: &[u8],
        namespace: &str,
        key: &str,
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Option<Versioned<T>>> {
        let Some(guard) = self
            .view
            .records()
            .get(address)
            .map_err(db_error(&self.db_path, "read a record"))?
        else {
            return Ok(None);
        };
        let (meta, bytes) = schema::decode_record(guard.value())
            .ok_or_else(|| malformed_record(&self.db_path, namespace, key))?;
        Ok(Some(Versioned::new(decode(bytes)?, meta)))
    }

    /// Streams the records of a namespace in key order, decoding each as `T`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad namespace; each item
    /// is an error if its value is not a `T`.
    pub fn list<T: DeserializeOwned>(
        &self,
        namespace: &str,
        range: impl Into<KeyRange>,
    ) -> Result<List<T>> {
        self.list_with(namespace, range.into(), |ns, key, bytes| {
            value::decode(ns, key, bytes)
        })
    }

    /// Streams the records of a namespace in key order without decoding them.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad namespace.
    pub fn list_raw(&self, namespace: &str, range: impl Into<KeyRange>) -> Result<List<RawValue>> {
        self.list_with(namespace, range.into(), |_, _, bytes| {
            Ok(RawValue::from_trusted(bytes.to_vec()))
        })
    }

    fn list_with<T>(
        &self,
        namespace: &str,
        range: KeyRange,
        decode: Decoder<T>,
    ) -> Result<List<T>> {
        key::validate(KeyPart::Namespace, namespace)?;
        let encode = |b: Bound<String>, unbounded: Bound<Vec<u8>>| match b {
            Bound::Included(k) => Bound::Included(key::encode_unchecked(namespace, &k)),
            Bound::Excluded(k) => Bound::Excluded(key::encode_unchecked(namespace, &k)),
            Bound::Unbounded => unbounded,
        };
        let (start, end, prefix) = match range.prefix {
            Some(p) => (
                Bound::Included(key::namespace_start(namespace, &p)),
                Bound::Excluded(key::namespace_end(namespace)),
                Some(key::namespace_start(namespace, &p)),
            ),
            None => (
                encode(
                    range.start,
                    Bound::Included(key::namespace_start(namespace, "")),
                ),
                encode(range.end, Bound::Excluded(key::namespace_end(namespace))),
                Some(key::namespace_start(namespace, "")),
            ),
        };
        let empty = is_empty_range(&start, &end);
        let range = if empty {
            None
        } else {
            let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_slice(&start), as_slice(&end));
            Some(
                self.view
                    .records()
                    .range::<&[u8]>(bounds)
                    .map_err(db_error(&self.db_path, "list records"))?,
            )
        };
        Ok(List {
            range,
            prefix: prefix.unwrap_or_default(),
            decode,
            db_path: Arc::clone(&self.db_path),
            _type: PhantomData,
        })
    }

    /// The namespaces that hold at least one record, in order.
    ///
    /// # Errors
    /// [`Error::Database`](crate::Error::Database) if the state database fails.
    pub fn namespaces(&self) -> Result<Vec<String>> {
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

    /// Number of records in a namespace.
    ///
    /// # Errors
    /// As [`list_raw`](Self::list_raw).
    pub fn count(&self, namespace: &str) -> Result<u64> {
        let mut n = 0;
        let list = self.list_with(namespace, KeyRange::all(), |_, _, _| Ok(()))?;
        for item in list {
            item?;
            n += 1;
        }
        Ok(n)
    }
}

fn is_empty_range(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
            s >= e
        }
        _ => false,
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

type Decoder<T> = fn(&str, &str, &[u8]) -> Result<T>;

/// A streaming iterator over the records of one namespace, in key order. Items
/// are `(key, record)`. It holds its snapshot open: memory does not grow with
/// the number of records.
pub struct List<T> {
    range: Option<redb::Range<'static, &'static [u8], &'static [u8]>>,
    prefix: Vec<u8>,
    decode: Decoder<T>,
    db_path: Arc<PathBuf>,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for List<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("List").finish_non_exhaustive()
    }
}

impl<T> Iterator for List<T> {
    type Item = Result<(String, Versioned<T>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let range = self.range.as_mut()?;
        let entry = range.next()?;
        let (address, stored) = match entry {
            Ok(pair) => pair,
            Err(e) => return Some(Err(db_error(&self.db_path, "list records")(e))),
        };
        let address = address.value();
        if !address.starts_with(&self.prefix) {
            self.range = None;
            return None;
        }
        let (namespace, key) = key::decode(address)?;
        let item = schema::decode_record(stored.value())
            .ok_or_else(|| malformed_record(&self.db_path, namespace, key))
            .and_then(|(meta, bytes)| {
                let value = (self.decode)(namespace, key, bytes)?;
                Ok((key.to_owned(), Versioned::new(value, meta)))
            });
        Some(item)
    }
}
