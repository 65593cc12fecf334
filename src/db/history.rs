//! The history index: every version a record had, so that the store can be
//! read as it was at any revision it still holds, without reading the log.
//!
//! Tables of the state database, written in the same transaction as the
//! writes they describe (by a batch, a replay, a restore), so they are
//! exactly as durable as the records themselves and rebuilt with them from
//! the log:
//!
//! - `history`: key `address 0x00 start` (start = the superseded version's
//!   modify revision, u64 big-endian, so a record's versions are adjacent and
//!   in revision order), value `end` (u64 LE: the revision that replaced or
//!   deleted it), `end_time` (i64 LE µs), then, in the *inline* layout, the
//!   stored record as it was (`schema::encode_record`). The current version
//!   stays in `records`.
//! - `history_by_end`: key `end` (big-endian) then the history key, value the
//!   stored record, for the versions whose `history` value is only `end` and
//!   `end_time` (the *split* layout, 16 bytes).
//! - `history_ends`: the same keys, no value, for the inline layout's
//!   versions. With `history_by_end`, the versions by the revision that ended
//!   them, so retention prunes without a scan.
//! - `revisions`: revision (u64) → commit time (i64 µs) and a flag byte (1: a
//!   base commit), for the time of a past revision and `--at-time`.
//!
//! Why two layouts: a batch supersedes versions of addresses anywhere in the
//! store, so its `history` inserts land at random places; kept to 16 bytes
//! they touch a table a fraction of the size (a tenth, for records of a few
//! hundred bytes), and the versions' bytes are appended
//! at the end of `history_by_end` (a batch's revision is the newest). A
//! replay supersedes a chunk's versions in address order, so it writes the
//! inline layout, in order, and its ends sorted ([`Writer::open_sorted`]).
//! Schema 2 wrote the inline layout only; readers take both.
//!
//! The record as of revision R: the current one if its modify revision is at
//! most R; otherwise the history entry with the largest start at most R, if
//! its end is after R; otherwise none. Addresses contain no 0x00 but the one
//! between namespace and key, so `address 0x00` ends an address and keeps
//! address order.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::schema;
use super::{Db, db_error};
use crate::error::Result;
use crate::time::Timestamp;
use crate::value::Meta;

/// Superseded versions (see the module's documentation).
pub(crate) const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
/// The inline layout's history keys by the revision that ended each version
/// (`end` big-endian, then the history key), so that retention prunes the
/// oldest without a scan.
pub(crate) const ENDS: TableDefinition<&[u8], ()> = TableDefinition::new("history_ends");
/// The split layout's versions, by the same keys as [`ENDS`].
pub(crate) const BY_END: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history_by_end");
/// The length of a split layout's `history` value: `end` and `end_time`.
const SPLIT_LEN: usize = 16;
/// Commit times by revision.
pub(crate) const REVISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revisions");
/// Meta key: the first revision the history index can answer for.
pub(crate) const META_HISTORY_FROM: &str = "history_from";

/// The history key of `address`'s version written at `start`.
pub(crate) fn key(address: &[u8], start: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(address);
    out.push(0);
    out.extend_from_slice(&start.to_be_bytes());
}

/// Splits a history key into address and start.
pub(crate) fn split_key(bytes: &[u8]) -> Option<(&[u8], u64)> {
    let at = bytes.len().checked_sub(9)?;
    if bytes[at] != 0 {
        return None;
    }
    let start = u64::from_be_bytes(bytes[at + 1..].try_into().ok()?);
    Some((&bytes[..at], start))
}

/// The `history_ends` and `history_by_end` key of the version under history
/// key `key` that `end` ended.
pub(crate) fn end_key(end: u64, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(key);
}

/// A history value: until when the version lasted, and the stored record
/// when the value holds it (the inline layout).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended<'a> {
    pub end: u64,
    pub end_time: Timestamp,
    /// The stored record (inline layout); `None`: it is in `history_by_end`.
    pub inline: Option<&'a [u8]>,
}

/// Decodes a history value; `None` if malformed.
pub(crate) fn decode(bytes: &[u8]) -> Option<Ended<'_>> {
    let end = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let end_time = i64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let inline = match bytes.len() {
        SPLIT_LEN => None,
        _ => Some(&bytes[SPLIT_LEN..]),
    };
    Some(Ended {
        end,
        end_time: Timestamp::from_micros(end_time),
        inline,
    })
}

/// Encodes a revision's entry.
fn revision_value(time: Timestamp, base: bool) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[..8].copy_from_slice(&time.as_micros().to_le_bytes());
    out[8] = u8::from(base);
    out
}

/// Decodes a revision's entry: time and base flag.
pub(crate) fn decode_revision(bytes: &[u8]) -> Option<(Timestamp, bool)> {
    let time = i64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    Some((Timestamp::from_micros(time), bytes.get(8) == Some(&1)))
}

/// Writes history inside an open write transaction.
pub(crate) struct Writer<'t> {
    history: Table<'t, &'static [u8], &'static [u8]>,
    ends: Table<'t, &'static [u8], ()>,
    by_end: Table<'t, &'static [u8], &'static [u8]>,
    revisions: Table<'t, u64, &'static [u8]>,
    path: std::path::PathBuf,
    key: Vec<u8>,
    value: Vec<u8>,
    /// `history_ends` keys held back to be written in order by
    /// [`finish`](Self::finish) (a replay's), rather than one by one.
    ends_held: Option<Vec<Vec<u8>>>,
}

impl<'t> Writer<'t> {
    /// Opens the history tables of `txn` (creating them).
    pub(crate) fn open(txn: &'t WriteTransaction, path: &std::path::Path) -> Result<Writer<'t>> {
        Ok(Writer {
            history: txn
                .open_table(HISTORY)
                .map_err(db_error(path, "open the history table"))?,
            ends: txn
                .open_table(ENDS)
                .map_err(db_error(path, "open the history table"))?,
            by_end: txn
                .open_table(BY_END)
                .map_err(db_error(path, "open the history table"))?,
            revisions: txn
                .open_table(REVISIONS)
                .map_err(db_error(path, "open the revisions table"))?,
            path: path.to_owned(),
            key: Vec::new(),
            value: Vec::new(),
            ends_held: None,
        })
    }

    /// Like [`open`](Self::open), for a writer that supersedes versions in
    /// address order (a replay's chunk): it writes the inline layout (its
    /// `history` inserts come in order), and as their ends come at random
    /// revisions, they are held and written sorted by
    /// [`finish`](Self::finish), which touches each page of `history_ends`
    /// once.
    pub(crate) fn open_sorted(
        txn: &'t WriteTransaction,
        path: &std::path::Path,
    ) -> Result<Writer<'t>> {
        let mut writer = Writer::open(txn, path)?;
        writer.ends_held = Some(Vec::new());
        Ok(writer)
    }

    /// Writes what [`open_sorted`](Self::open_sorted) held back. Without it
    /// the transaction would lack those entries: call it before the commit.
    pub(crate) fn finish(mut self) -> Result<()> {
        if let Some(mut held) = self.ends_held.take() {
            held.sort_unstable();
            for key in &held {
                self.ends
                    .insert(key.as_slice(), ())
                    .map_err(db_error(&self.path, "write the history"))?;
            }
        }
        Ok(())
    }

    /// Records that the stored record `old` (as the records table held it)
    /// of `address` was replaced or deleted at `end`. A version written at
    /// `end` itself (twice in one commit) was never visible: not recorded.
    pub(crate) fn superseded(
        &mut self,
        address: &[u8],
        old: &[u8],
        end: u64,
        end_time: Timestamp,
    ) -> Result<()> {
        let Some((meta, _)) = schema::decode_record(old) else {
            return Ok(());
        };
        if meta.mod_revision >= end {
            return Ok(());
        }
        key(address, meta.mod_revision, &mut self.key);
        self.value.clear();
        self.value.extend_from_slice(&end.to_le_bytes());
        self.value
            .extend_from_slice(&end_time.as_micros().to_le_bytes());
        if let Some(held) = &mut self.ends_held {
            // Inline: the record in `history`, the key in `history_ends`.
            self.value.extend_from_slice(old);
            self.history
                .insert(self.key.as_slice(), self.value.as_slice())
                .map_err(db_error(&self.path, "write the history"))?;
            end_key(end, &self.key, &mut self.value);
            held.push(self.value.clone());
            return Ok(());
        }
        // Split: `end` and `end_time` in `history`, the record appended to
        // `history_by_end`.
        self.history
            .insert(self.key.as_slice(), self.value.as_slice())
            .map_err(db_error(&self.path, "write the history"))?;
        end_key(end, &self.key, &mut self.value);
        self.by_end
            .insert(self.value.as_slice(), old)
            .map_err(db_error(&self.path, "write the history"))?;
        Ok(())
    }

    /// Removes what reading at `floor` or later never needs: versions that
    /// ended at or before it, and commit times before it; at most `limit`
    /// versions (the rest go next time). Returns whether all went.
    pub(crate) fn prune(&mut self, floor: u64, limit: usize) -> Result<bool> {
        let mut high = floor.to_be_bytes().to_vec();
        high.push(0xff);
        let ends = ended_by(&self.ends, &high, floor, limit, &self.path)?;
        let by_end = ended_by(&self.by_end, &high, floor, limit - ends.len(), &self.path)?;
        let all = ends.len() + by_end.len() < limit;
        remove_versions(&mut self.history, &mut self.ends, &ends, &self.path)?;
        remove_versions(&mut self.history, &mut self.by_end, &by_end, &self.path)?;
        let old: Vec<u64> = self
            .revisions
            .range(..floor)
            .map_err(db_error(&self.path, "read the revisions table"))?
            .take(limit)
            .map(|item| item.map(|(k, _)| k.value()))
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error(&self.path, "read the revisions table"))?;
        let all = all && old.len() < limit;
        for revision in old {
            self.revisions
                .remove(revision)
                .map_err(db_error(&self.path, "prune the revisions table"))?;
        }
        Ok(all)
    }

    /// Like [`superseded`](Self::superseded), for a version known by its
    /// parts.
    pub(crate) fn superseded_parts(
        &mut self,
        address: &[u8],
        meta: &Meta,
        value: &[u8],
        end: u64,
        end_time: Timestamp,
    ) -> Result<()> {
        let mut old = Vec::with_capacity(schema::RECORD_HEADER_LEN + value.len());
        schema::encode_record(meta, value, &mut old);
        self.superseded(address, &old, end, end_time)
    }

    /// Records a commit's time.
    pub(crate) fn revision(&mut self, revision: u64, time: Timestamp, base: bool) -> Result<()> {
        self.revisions
            .insert(revision, revision_value(time, base).as_slice())
            .map_err(db_error(&self.path, "write the revisions table"))?;
        Ok(())
    }

    /// The first revision the index covers, from what it holds: the first
    /// revision recorded (a base's own, or the one before an ordinary
    /// commit's), else `current`.
    pub(crate) fn floor(&self, current: u64) -> Result<u64> {
        let first = self
            .revisions
            .first()
            .map_err(db_error(&self.path, "read the revisions table"))?;
        Ok(match first {
            None => current,
            Some((revision, value)) => {
                let base = decode_revision(value.value()).is_some_and(|(_, base)| base);
                if base {
                    revision.value()
                } else {
                    revision.value() - 1
                }
            }
        })
    }
}

/// The first `limit` keys of `table` (`history_ends` or `history_by_end`)
/// whose version ended at or before `floor` (`high`: `floor` big-endian, then
/// 0xff).
fn ended_by<V: redb::Value + 'static>(
    table: &Table<'_, &'static [u8], V>,
    high: &[u8],
    floor: u64,
    limit: usize,
    path: &std::path::Path,
) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    if limit == 0 {
        return Ok(keys);
    }
    for item in table
        .range::<&[u8]>(..high)
        .map_err(db_error(path, "read the history"))?
    {
        let (key, _) = item.map_err(db_error(path, "read the history"))?;
        let key = key.value();
        if key.len() < 8 || u64::from_be_bytes(key[..8].try_into().unwrap_or([0xff; 8])) > floor {
            break;
        }
        keys.push(key.to_vec());
        if keys.len() >= limit {
            break;
        }
    }
    Ok(keys)
}

/// Removes the versions under `keys` (keys of `ends`, which is
/// `history_ends` or `history_by_end`) from `history` and from `ends`.
fn remove_versions<V: redb::Value + 'static>(
    history: &mut Table<'_, &'static [u8], &'static [u8]>,
    ends: &mut Table<'_, &'static [u8], V>,
    keys: &[Vec<u8>],
    path: &std::path::Path,
) -> Result<()> {
    for key in keys {
        history
            .remove(&key[8..])
            .map_err(db_error(path, "prune the history"))?;
        ends.remove(key.as_slice())
            .map_err(db_error(path, "prune the history"))?;
    }
    Ok(())
}

/// The first revision the history index of `db` answers for, recorded in
/// its metadata. A state database without it (one an older statelog wrote,
/// or a new one) gets it now, with the schema version that keeps older
/// statelogs out, from what the index holds: the first revision
/// the index recorded (the one before, for an ordinary commit), else the
/// current revision `current`. A state database of an older schema gets
/// this one's version (its readers could not read the split layout).
/// Written without a sync when `write`: the next checkpoint makes it
/// durable, and until then it is worked out again the same way.
pub(crate) fn floor(db: &Db, current: u64, write: bool) -> Result<u64> {
    let db_path = db.path();
    let meta = db.read_table(schema::META, "open the meta table")?;
    let read = |name: &str| -> Result<Option<u64>> {
        Ok(meta
            .get(name)
            .map_err(db_error(db_path, "read the meta table"))?
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map(u64::from_le_bytes))
    };
    let recorded = read(META_HISTORY_FROM)?;
    let schema_now = read(schema::META_SCHEMA)? == Some(schema::SCHEMA_VERSION);
    drop(meta);
    if let Some(floor) = recorded
        && (schema_now || !write)
    {
        return Ok(floor);
    }
    let txn = db.begin_nondurable("begin a write")?;
    let floor = {
        let floor = match recorded {
            Some(floor) => floor,
            None => Writer::open(&txn, db_path)?.floor(current)?,
        };
        let mut meta = txn
            .open_table(schema::META)
            .map_err(db_error(db_path, "open the meta table"))?;
        meta.insert(META_HISTORY_FROM, floor.to_le_bytes().as_slice())
            .map_err(db_error(db_path, "record where the history starts"))?;
        // A statelog that does not keep the history index, or does not read
        // its split layout, must not open this state database any more.
        meta.insert(
            schema::META_SCHEMA,
            schema::SCHEMA_VERSION.to_le_bytes().as_slice(),
        )
        .map_err(db_error(db_path, "record the schema version"))?;
        floor
    };
    if write {
        txn.commit()
            .map_err(db_error(db_path, "record where the history starts"))?;
    } else {
        txn.abort()
            .map_err(db_error(db_path, "record where the history starts"))?;
    }
    Ok(floor)
}

impl Db {
    /// Lets the history index go of what reads at `floor` or later never
    /// need (see [`Writer::prune`]) and records `floor` as where it starts,
    /// without a sync.
    pub(crate) fn prune_history(&self, floor: u64) -> Result<()> {
        let path = self.path();
        let txn = self.begin_nondurable("begin pruning the history")?;
        {
            let mut history = Writer::open(&txn, path)?;
            history.prune(floor, 100_000)?;
            let mut meta = txn
                .open_table(schema::META)
                .map_err(db_error(path, "open the meta table"))?;
            meta.insert(META_HISTORY_FROM, floor.to_le_bytes().as_slice())
                .map_err(db_error(path, "record where the history starts"))?;
        }
        txn.commit().map_err(db_error(path, "prune the history"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase, ReadableTableMetadata, backends::InMemoryBackend};

    fn meta(version: u64, revision: u64) -> Meta {
        Meta {
            version,
            create_revision: 1,
            mod_revision: revision,
            updated_at: Timestamp::EPOCH,
        }
    }

    /// A state database in memory, and the path its errors name.
    fn in_memory() -> (Database, &'static std::path::Path) {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .unwrap();
        (db, std::path::Path::new("state.redb"))
    }

    #[test]
    fn held_ends_are_written_by_finish_and_pruned_like_the_others() {
        let (db, path) = in_memory();
        // Versions superseded in address order, their ends out of order (as
        // a replay's chunk gives them).
        let versions: [(&[u8], u64, u64); 4] = [
            (b"a\0k1", 3, 9),
            (b"a\0k2", 2, 5),
            (b"a\0k3", 4, 12),
            (b"a\0k4", 1, 7),
        ];
        let txn = db.begin_write().unwrap();
        {
            let mut writer = Writer::open_sorted(&txn, path).unwrap();
            for (address, start, end) in versions {
                writer
                    .superseded_parts(address, &meta(1, start), b"v", end, Timestamp::EPOCH)
                    .unwrap();
            }
            writer.finish().unwrap();
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        assert_eq!(read.open_table(HISTORY).unwrap().len().unwrap(), 4);
        let ends: Vec<u64> = read
            .open_table(ENDS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|item| u64::from_be_bytes(item.unwrap().0.value()[..8].try_into().unwrap()))
            .collect();
        assert_eq!(ends, vec![5, 7, 9, 12]);
        drop(read);
        // Pruning at 7 finds, through the ends, exactly the versions that
        // ended at or before it.
        let txn = db.begin_write().unwrap();
        {
            let mut writer = Writer::open(&txn, path).unwrap();
            assert!(writer.prune(7, 100).unwrap());
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let left: Vec<Vec<u8>> = read
            .open_table(HISTORY)
            .unwrap()
            .iter()
            .unwrap()
            .map(|item| item.unwrap().0.value().to_vec())
            .collect();
        let mut expected = Vec::new();
        for (address, start) in [(&b"a\0k1"[..], 3), (b"a\0k3", 4)] {
            let mut k = Vec::new();
            key(address, start, &mut k);
            expected.push(k);
        }
        assert_eq!(left, expected);
        assert_eq!(read.open_table(ENDS).unwrap().len().unwrap(), 2);
    }

    /// The keys of `table`, in order.
    fn keys_of<V: redb::Value + 'static>(
        db: &Database,
        table: TableDefinition<&'static [u8], V>,
    ) -> Vec<Vec<u8>> {
        let read = db.begin_read().unwrap();
        read.open_table(table)
            .unwrap()
            .iter()
            .unwrap()
            .map(|item| item.unwrap().0.value().to_vec())
            .collect()
    }

    #[test]
    fn a_batch_writes_the_split_layout_a_replay_the_inline_one_and_pruning_takes_both() {
        let (db, path) = in_memory();
        // A replay's chunk: inline.
        let txn = db.begin_write().unwrap();
        {
            let mut writer = Writer::open_sorted(&txn, path).unwrap();
            writer
                .superseded_parts(b"a\0k1", &meta(1, 1), b"one", 4, Timestamp::EPOCH)
                .unwrap();
            writer
                .superseded_parts(b"a\0k2", &meta(1, 2), b"two", 3, Timestamp::EPOCH)
                .unwrap();
            writer.finish().unwrap();
        }
        txn.commit().unwrap();
        // Batches: split.
        let txn = db.begin_write().unwrap();
        {
            let mut writer = Writer::open(&txn, path).unwrap();
            for (address, start, end) in [(&b"a\0k1"[..], 4, 6), (b"a\0k2", 3, 5), (b"a\0k1", 6, 8)]
            {
                writer
                    .superseded_parts(address, &meta(2, start), b"later", end, Timestamp::EPOCH)
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let history = read.open_table(HISTORY).unwrap();
        let by_end = read.open_table(BY_END).unwrap();
        let mut k = Vec::new();
        let mut at = Vec::new();
        for (address, start, end, inline) in [
            (&b"a\0k1"[..], 1, 4, true),
            (b"a\0k2", 2, 3, true),
            (b"a\0k1", 4, 6, false),
            (b"a\0k2", 3, 5, false),
            (b"a\0k1", 6, 8, false),
        ] {
            key(address, start, &mut k);
            let value = history.get(k.as_slice()).unwrap().unwrap();
            let ended = decode(value.value()).unwrap();
            assert_eq!(ended.end, end);
            end_key(end, &k, &mut at);
            let elsewhere = by_end.get(at.as_slice()).unwrap();
            let record = match ended.inline {
                Some(record) => {
                    assert!(inline && elsewhere.is_none());
                    record.to_vec()
                }
                None => {
                    assert!(!inline);
                    assert_eq!(value.value().len(), SPLIT_LEN);
                    elsewhere.unwrap().value().to_vec()
                }
            };
            let (meta, _) = schema::decode_record(&record).unwrap();
            assert_eq!(meta.mod_revision, start);
        }
        drop((history, by_end, read));
        assert_eq!(keys_of(&db, ENDS).len(), 2);
        assert_eq!(keys_of(&db, BY_END).len(), 3);
        // Pruning at 5, two at a time: the inline versions ended at 3 and 4
        // first, then the split one ended at 5; the one ended at 6 stays.
        let prune = |limit| {
            let txn = db.begin_write().unwrap();
            let all = Writer::open(&txn, path).unwrap().prune(5, limit).unwrap();
            txn.commit().unwrap();
            all
        };
        assert!(!prune(2));
        assert_eq!(keys_of(&db, ENDS).len(), 0);
        assert_eq!(keys_of(&db, BY_END).len(), 3);
        assert!(prune(2));
        let ends: Vec<u64> = keys_of(&db, BY_END)
            .iter()
            .map(|k| u64::from_be_bytes(k[..8].try_into().unwrap()))
            .collect();
        assert_eq!(ends, vec![6, 8]);
        let mut left = Vec::new();
        for (address, start) in [(&b"a\0k1"[..], 4), (b"a\0k1", 6)] {
            key(address, start, &mut k);
            left.push(k.clone());
        }
        assert_eq!(keys_of(&db, HISTORY), left);
    }
}
