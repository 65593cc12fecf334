//! Consistent reads: a [`Snapshot`] is one read of the store at one revision,
//! through whatever way the store is reached ([`ReadView`]): in the holder, a
//! published MVCC view of the state database; elsewhere, a view pinned for
//! this snapshot by the holder. Readers never wait for the writer, and see
//! only commits that are already durable (in `Sync` mode).

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::access::{Entries, ReadView};
use crate::error::{KeyPart, Result};
use crate::key;
use crate::time::Timestamp;
use crate::value::Stored;
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
///
/// Through a store's holder (another process holds the store), a snapshot
/// pins its revision in the holder until it is dropped; if the holder goes
/// away meanwhile, its reads fail with
/// [`Error::Disconnected`](crate::Error::Disconnected).
pub struct Snapshot {
    view: Arc<dyn ReadView>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot {
    pub(crate) fn new(view: Arc<dyn ReadView>) -> Snapshot {
        Snapshot { view }
    }

    /// True once the view behind the snapshot is gone (its holder went away).
    pub(crate) fn is_lost(&self) -> bool {
        self.view.is_lost()
    }

    /// The revision this snapshot shows: the last commit it includes.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for views that must be read.
    pub fn revision(&self) -> Result<u64> {
        Ok(self.view.revision())
    }

    /// The commit time of [`revision`](Self::revision) (the epoch for a store
    /// without commits).
    ///
    /// # Errors
    /// None today; the `Result` leaves room for views that must be read.
    pub fn time(&self) -> Result<Timestamp> {
        Ok(self.view.time())
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
        self.view
            .get(&address)?
            .map(|stored| decode_stored(namespace, key, stored))
            .transpose()
    }

    /// Reads one record without decoding its value.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad address.
    pub fn get_raw(&self, namespace: &str, key: &str) -> Result<Option<Versioned<RawValue>>> {
        let address = key::encode(namespace, key)?;
        Ok(self.view.get(&address)?.map(raw_stored))
    }

    /// The version of a record, 0 if absent.
    pub(crate) fn version_of(&self, address: &[u8]) -> Result<u64> {
        self.view.version(address)
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
            value::decode(ns, key, &bytes)
        })
    }

    /// Streams the records of a namespace in key order without decoding them.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad namespace.
    pub fn list_raw(&self, namespace: &str, range: impl Into<KeyRange>) -> Result<List<RawValue>> {
        self.list_with(namespace, range.into(), |_, _, bytes| {
            Ok(RawValue::from_trusted(bytes))
        })
    }

    fn list_with<T>(
        &self,
        namespace: &str,
        range: KeyRange,
        decode: Decoder<T>,
    ) -> Result<List<T>> {
        let (start, end) = bounds(namespace, range)?;
        let entries = if is_empty_range(&start, &end) {
            None
        } else {
            Some(Arc::clone(&self.view).range(start, end)?)
        };
        Ok(List {
            entries,
            decode,
            _type: PhantomData,
        })
    }

    /// The namespaces that hold at least one record, in order (statelog's
    /// own, which hold leases, locks and idempotency keys, are not listed).
    ///
    /// # Errors
    /// [`Error::Database`](crate::Error::Database) if the state database fails.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let mut namespaces = self.view.namespaces()?;
        namespaces.retain(|n| !key::is_reserved(n));
        Ok(namespaces)
    }

    /// Number of records in a namespace.
    ///
    /// # Errors
    /// As [`list_raw`](Self::list_raw).
    pub fn count(&self, namespace: &str) -> Result<u64> {
        let (start, end) = bounds(namespace, KeyRange::all())?;
        Arc::clone(&self.view).count(start, end)
    }
}

/// A stored record as `Versioned<T>`.
pub(crate) fn decode_stored<T: DeserializeOwned>(
    namespace: &str,
    key: &str,
    stored: Stored,
) -> Result<Versioned<T>> {
    Ok(Versioned::new(
        value::decode(namespace, key, &stored.value)?,
        stored.meta,
    ))
}

/// A stored record as `Versioned<RawValue>`.
pub(crate) fn raw_stored(stored: Stored) -> Versioned<RawValue> {
    Versioned::new(RawValue::from_trusted(stored.value), stored.meta)
}

/// A range of encoded addresses: its start and end.
type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The encoded bounds of the keys of `namespace` in `range`. A prefix becomes
/// a tight range: the keys starting with `p` are exactly those from `p` up to
/// `p` with its last byte raised by one (UTF-8 never holds 0xff), so a range
/// read never walks past them.
fn bounds(namespace: &str, range: KeyRange) -> Result<Bounds> {
    key::validate(KeyPart::Namespace, namespace)?;
    let encode = |b: Bound<String>, unbounded: Bound<Vec<u8>>| match b {
        Bound::Included(k) => Bound::Included(key::encode_unchecked(namespace, &k)),
        Bound::Excluded(k) => Bound::Excluded(key::encode_unchecked(namespace, &k)),
        Bound::Unbounded => unbounded,
    };
    Ok(match range.prefix {
        Some(p) => {
            let start = key::namespace_start(namespace, &p);
            let end = match p.as_bytes().last() {
                None => key::namespace_end(namespace),
                Some(_) => {
                    let mut end = start.clone();
                    if let Some(last) = end.last_mut() {
                        *last = last.saturating_add(1);
                    }
                    end
                }
            };
            (Bound::Included(start), Bound::Excluded(end))
        }
        None => (
            encode(
                range.start,
                Bound::Included(key::namespace_start(namespace, "")),
            ),
            encode(range.end, Bound::Excluded(key::namespace_end(namespace))),
        ),
    })
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

type Decoder<T> = fn(&str, &str, Vec<u8>) -> Result<T>;

/// A streaming iterator over the records of one namespace, in key order. Items
/// are `(key, record)`. It holds its snapshot open: memory does not grow with
/// the number of records.
pub struct List<T> {
    entries: Option<Entries>,
    decode: Decoder<T>,
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
        let entry = match self.entries.as_mut()?.next()? {
            Ok(entry) => entry,
            Err(e) => {
                self.entries = None;
                return Some(Err(e));
            }
        };
        let Some((namespace, key)) = key::decode(&entry.address) else {
            self.entries = None;
            return None;
        };
        let item = (self.decode)(namespace, key, entry.value)
            .map(|value| (key.to_owned(), Versioned::new(value, entry.meta)));
        Some(item)
    }
}
