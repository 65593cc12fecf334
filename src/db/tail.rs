//! The tail: writes the engine has made in its held write of the state
//! database (`write::Batch`), which redb has not committed yet, as readers
//! see them on top of the last commit.
//!
//! redb's commit costs about as much as a batch's inserts several times
//! over (each table's changed pages are checksummed and their roots
//! rewritten). The engine therefore keeps one write open across batches and
//! commits it once its tail has grown past a bound (a *fold*), or before
//! anything reads the database other than through a view (reads of the
//! past, checkpoints, backups). Meanwhile each published view is the last
//! commit's read transaction plus the tail as it was then.
//!
//! A persistent map: publishing a view clones it in constant time, and the
//! engine's next write copies only the path it changes.

use std::ops::Bound;
use std::sync::Arc;

/// Stored records (as `schema::encode_record` lays them out) by address;
/// `None`: removed.
#[derive(Clone, Default)]
pub(crate) struct Tail {
    writes: imbl::OrdMap<Arc<[u8]>, Option<Arc<[u8]>>>,
    /// Bytes of addresses and records written into it since it was empty.
    bytes: usize,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("addresses", &self.writes.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// One write of the tail: the address and the stored record (`None`:
/// removed).
pub(crate) type TailWrite = (Arc<[u8]>, Option<Arc<[u8]>>);

/// What the tail says of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen<'a> {
    /// Nothing: the state database's record stands.
    Untouched,
    /// Written: the stored record.
    Stored(&'a [u8]),
    /// Removed.
    Removed,
}

impl Tail {
    /// Records a put (`Some(stored)`) or a removal (`None`) of `address`.
    pub(crate) fn write(&mut self, address: &[u8], stored: Option<&[u8]>) {
        self.bytes += address.len() + stored.map_or(0, <[u8]>::len);
        self.writes
            .insert(Arc::from(address), stored.map(Arc::from));
    }

    /// What the tail holds for `address`.
    pub(crate) fn get(&self, address: &[u8]) -> Seen<'_> {
        match self.writes.get(address) {
            None => Seen::Untouched,
            Some(Some(stored)) => Seen::Stored(stored),
            Some(None) => Seen::Removed,
        }
    }

    /// How many addresses it holds.
    pub(crate) fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether it holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Bytes written into it since it was empty (overwritten ones included).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The first address at or after `from` it holds a write of (a removal
    /// included).
    pub(crate) fn first_from(&self, from: &[u8]) -> Option<&[u8]> {
        self.writes
            .range::<_, [u8]>((Bound::Included(from), Bound::Unbounded))
            .next()
            .map(|(address, _)| &**address)
    }

    /// Its writes between `start` and `end`, in address order.
    pub(crate) fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<TailWrite> {
        if self.writes.is_empty() || !nonempty(start, end) {
            return Vec::new();
        }
        self.writes
            .range::<_, [u8]>((start, end))
            .map(|(address, stored)| (Arc::clone(address), stored.clone()))
            .collect()
    }
}

/// Whether `start..end` can hold anything (a map's range panics on bounds
/// that cross).
fn nonempty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s <= e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s < e,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_write_of_an_address_wins() {
        let mut tail = Tail::default();
        assert_eq!(tail.get(b"a"), Seen::Untouched);
        tail.write(b"a", Some(b"1"));
        tail.write(b"b", Some(b"2"));
        tail.write(b"a", None);
        assert_eq!(tail.get(b"a"), Seen::Removed);
        assert_eq!(tail.get(b"b"), Seen::Stored(b"2"));
        assert_eq!(tail.len(), 2);
        assert_eq!(tail.bytes(), 5);
    }

    #[test]
    fn a_clone_does_not_see_later_writes() {
        let mut tail = Tail::default();
        tail.write(b"a", Some(b"1"));
        let before = tail.clone();
        tail.write(b"a", Some(b"2"));
        tail.write(b"c", Some(b"3"));
        assert_eq!(before.get(b"a"), Seen::Stored(b"1"));
        assert_eq!(before.get(b"c"), Seen::Untouched);
        assert_eq!(tail.get(b"a"), Seen::Stored(b"2"));
    }

    #[test]
    fn ranges_keep_to_their_bounds_and_crossed_bounds_are_empty() {
        let mut tail = Tail::default();
        for k in [b"a", b"b", b"c", b"d"] {
            tail.write(k, Some(k));
        }
        let keys = |start, end| -> Vec<Vec<u8>> {
            tail.range(start, end)
                .into_iter()
                .map(|(a, _)| a.to_vec())
                .collect()
        };
        let b: &[u8] = b"b";
        let d: &[u8] = b"d";
        assert_eq!(
            keys(Bound::Included(b), Bound::Excluded(d)),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            keys(Bound::Excluded(b), Bound::Unbounded),
            vec![b"c".to_vec(), b"d".to_vec()]
        );
        assert!(keys(Bound::Included(d), Bound::Excluded(b)).is_empty());
        assert!(keys(Bound::Excluded(b), Bound::Excluded(b)).is_empty());
        assert!(keys(Bound::Excluded(b), Bound::Included(b)).is_empty());
    }
}
