//! Read-only inspection of a state database for `check` and `repair`: redb's
//! own integrity check (on a copy, since it may write), the store id and
//! checkpoint it records, a digest per namespace, and the comparison with a
//! state rebuilt from the log.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableTable, TableDefinition};

use super::schema::{self, Applied, RECORDS};
use super::{Db, contain_panic, db_error, file};
use crate::error::{self, Error, Result};
use crate::fs::{self, Fs, OpenMode};
use crate::key;
use crate::log::catalog::SegmentInfo;
use crate::log::record::LogOp;
use crate::log::segment::{SEGMENT_HEADER_LEN, StoreId};
use crate::log::{Position, archive, reader};
use crate::options::Options;
use crate::time::Timestamp;

/// Keys the retained log wrote: address -> the stored record, or a single zero
/// byte for a delete.
const TOUCHED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("touched");
const TOMBSTONE: &[u8] = &[0];
/// Differences listed per namespace (all are counted).
const SAMPLES: usize = 5;

/// What opening a copy of the state database found.
pub(crate) struct DbCopy {
    /// The copy, open (`None` if it could not be opened).
    pub db: Option<Db>,
    /// Why it could not be opened, or why its metadata is unusable.
    pub open_error: Option<String>,
    /// redb's integrity check: `Ok(true)` passed, `Ok(false)` failed but redb
    /// could repair the copy, `Err` failed.
    pub integrity: Option<std::result::Result<bool, String>>,
    /// The checkpoint it records.
    pub applied: Option<Applied>,
}

/// Copies `db_path` to `copy` and opens the copy, runs redb's integrity check
/// on it and reads its metadata. The original is only read.
pub(crate) fn open_copy(
    fs: &dyn Fs,
    db_path: &Path,
    copy: &Path,
    store_id: &StoreId,
    options: &Options,
) -> Result<DbCopy> {
    copy_file(fs, db_path, copy)?;
    let mut out = DbCopy {
        db: None,
        open_error: None,
        integrity: None,
        applied: None,
    };
    let mut db = match Db::open(fs, copy, options) {
        Ok(db) => db,
        Err(e) => {
            out.open_error = Some(error::chain(&e));
            return Ok(out);
        }
    };
    let checked = contain_panic(|| db.database.check_integrity());
    out.integrity = Some(match checked {
        Ok(Ok(clean)) => Ok(clean),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panicked) => Err(panicked),
    });
    match db.read_meta(store_id) {
        Ok(applied) => out.applied = Some(applied),
        Err(e) => out.open_error = Some(e.to_string()),
    }
    out.db = Some(db);
    Ok(out)
}

/// Copies a whole file.
pub(crate) fn copy_file(fs: &dyn Fs, from: &Path, to: &Path) -> Result<u64> {
    let src = fs
        .open(from, OpenMode::Read)
        .map_err(|e| Error::io("open", from, e))?;
    if fs.exists(to).map_err(|e| Error::io("look for", to, e))? {
        fs.remove_file(to)
            .map_err(|e| Error::io("replace", to, e))?;
    }
    let dst = fs
        .open(to, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", to, e))?;
    let len = src
        .len()
        .map_err(|e| Error::io("read the size of", from, e))?;
    let at = archive::read_chunks(src.as_ref(), from, 0, len, |at, chunk| {
        fs::write_all_at(dst.as_ref(), chunk, at).map_err(|e| Error::io("write", to, e))
    })?;
    dst.sync_data().map_err(|e| Error::io("sync", to, e))?;
    Ok(at)
}

/// The records of one namespace, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceSummary {
    pub namespace: String,
    pub records: u64,
    /// FNV-1a (64 bits) over each record's address, metadata and value, in
    /// key order.
    pub digest: u64,
}

/// One record where the state and the log disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Difference {
    pub namespace: String,
    pub key: String,
    pub what: String,
}

/// The state compared with the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    /// The state database, per namespace.
    pub state: Vec<NamespaceSummary>,
    /// The state rebuilt from the log, per namespace (empty for a partial
    /// comparison).
    pub rebuilt: Vec<NamespaceSummary>,
    /// Differing records per namespace.
    pub differing: BTreeMap<String, u64>,
    /// Up to a few differences per namespace.
    pub samples: Vec<Difference>,
    /// Records of the state that the log could vouch for.
    pub verified: u64,
}

#[derive(Default)]
struct Digests(BTreeMap<String, (u64, u64)>);

impl Digests {
    fn add(&mut self, namespace: &str, address: &[u8], stored: &[u8]) {
        let entry = self
            .0
            .entry(namespace.to_owned())
            .or_insert((0, 0xcbf2_9ce4_8422_2325));
        entry.0 += 1;
        let mut h = entry.1;
        for part in [address, stored] {
            for b in (part.len() as u64).to_le_bytes().iter().chain(part) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        entry.1 = h;
    }

    fn into_summaries(self) -> Vec<NamespaceSummary> {
        self.0
            .into_iter()
            .map(|(namespace, (records, digest))| NamespaceSummary {
                namespace,
                records,
                digest,
            })
            .collect()
    }
}

impl Comparison {
    fn differ(&mut self, address: &[u8], what: impl FnOnce() -> String) {
        let (namespace, key) = key::decode(address).unwrap_or(("?", "?"));
        let count = self.differing.entry(namespace.to_owned()).or_insert(0);
        *count += 1;
        if *count as usize <= SAMPLES {
            self.samples.push(Difference {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                what: what(),
            });
        }
    }
}

fn describe(stored: Option<&[u8]>) -> String {
    match stored.map(schema::decode_record) {
        None => "absent".to_owned(),
        Some(None) => "a malformed record".to_owned(),
        Some(Some((meta, value))) => format!(
            "version {} (created {}, modified {}, {} value bytes)",
            meta.version,
            meta.create_revision,
            meta.mod_revision,
            value.len()
        ),
    }
}

fn next_record<'a>(
    iter: &mut impl Iterator<
        Item = std::result::Result<
            (
                redb::AccessGuard<'a, &'static [u8]>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
    path: &Path,
) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    match iter.next() {
        None => Ok(None),
        Some(item) => {
            let (k, v) = item.map_err(db_error(path, "read a record"))?;
            Ok(Some((k.value().to_vec(), v.value().to_vec())))
        }
    }
}

/// Compares every record of `state` with the state `rebuilt` by replaying the
/// whole log: both walked in key order, a digest per namespace on each side.
pub(crate) fn compare_full(state: &Db, rebuilt: &Db) -> Result<Comparison> {
    let (state_path, rebuilt_path) = (state.path(), rebuilt.path());
    let a_table = state.read_table(RECORDS, "open the records table")?;
    let b_table = rebuilt.read_table(RECORDS, "open the records table")?;
    let mut a_iter = a_table
        .iter()
        .map_err(db_error(state_path, "read the records"))?;
    let mut b_iter = b_table
        .iter()
        .map_err(db_error(rebuilt_path, "read the records"))?;
    let mut out = Comparison::default();
    let (mut a_digest, mut b_digest) = (Digests::default(), Digests::default());
    let mut a = next_record(&mut a_iter, state_path)?;
    let mut b = next_record(&mut b_iter, rebuilt_path)?;
    loop {
        let order = match (&a, &b) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some((k, v)) = a.take() {
                    a_digest.add(namespace_of(&k), &k, &v);
                    out.differ(&k, || {
                        format!(
                            "the state has {} but the log never wrote it (absent)",
                            describe(Some(&v))
                        )
                    });
                }
                a = next_record(&mut a_iter, state_path)?;
            }
            std::cmp::Ordering::Greater => {
                if let Some((k, v)) = b.take() {
                    b_digest.add(namespace_of(&k), &k, &v);
                    out.differ(&k, || {
                        format!("the state lacks it; the log has {}", describe(Some(&v)))
                    });
                }
                b = next_record(&mut b_iter, rebuilt_path)?;
            }
            std::cmp::Ordering::Equal => {
                if let (Some((k, va)), Some((_, vb))) = (a.take(), b.take()) {
                    a_digest.add(namespace_of(&k), &k, &va);
                    b_digest.add(namespace_of(&k), &k, &vb);
                    if va == vb {
                        out.verified += 1;
                    } else {
                        out.differ(&k, || {
                            format!(
                                "the state has {}, the log {}{}",
                                describe(Some(&va)),
                                describe(Some(&vb)),
                                if schema::decode_record(&va).map(|(m, _)| m)
                                    == schema::decode_record(&vb).map(|(m, _)| m)
                                {
                                    " (same metadata, different value)"
                                } else {
                                    ""
                                }
                            )
                        });
                    }
                }
                a = next_record(&mut a_iter, state_path)?;
                b = next_record(&mut b_iter, rebuilt_path)?;
            }
        }
    }
    out.state = a_digest.into_summaries();
    out.rebuilt = b_digest.into_summaries();
    Ok(out)
}

fn namespace_of(address: &[u8]) -> &str {
    key::decode(address).map_or("?", |(n, _)| n)
}

/// Folds the commits of a log that does not reach back to the store's first
/// revision (from its first segment, up to `up_to`) into a scratch table of
/// the keys they wrote, without checking versions (the state before the log is
/// unknown). Returns the scratch database and the position after `up_to`.
pub(crate) fn fold_partial(
    fs: &dyn Fs,
    scratch: &Path,
    store_id: &StoreId,
    options: &Options,
    chain: &[SegmentInfo],
    start_previous: u64,
    up_to: u64,
) -> Result<(Db, Option<Position>)> {
    let start = Applied {
        revision: start_previous,
        position: Position {
            segment: chain.first().map_or(1, |s| s.first_revision),
            offset: SEGMENT_HEADER_LEN as u64,
        },
        time: Timestamp::EPOCH,
    };
    if fs
        .exists(scratch)
        .map_err(|e| Error::io("look for", scratch, e))?
    {
        fs.remove_file(scratch)
            .map_err(|e| Error::io("replace", scratch, e))?;
    }
    file::create(fs, scratch, store_id, start)?;
    let db = Db::open(fs, scratch, options)?;
    let mut pending: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut position = None;
    let flush = |pending: &mut BTreeMap<Vec<u8>, Vec<u8>>| -> Result<()> {
        let txn = db.begin_nondurable("begin a write")?;
        {
            let mut table = txn
                .open_table(TOUCHED)
                .map_err(db_error(scratch, "open the scratch table"))?;
            for (k, v) in std::mem::take(pending) {
                table
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(db_error(scratch, "write the scratch table"))?;
            }
        }
        txn.commit().map_err(db_error(scratch, "commit"))
    };
    if !chain.is_empty() && up_to > start_previous {
        let mut pending_bytes = 0usize;
        reader::read_commits(fs, chain, start.position, start_previous, |parts, end| {
            let Some(head) = parts.first() else {
                return Ok(true);
            };
            for part in parts {
                for op in &part.ops {
                    let (namespace, key_text) = op.address();
                    let address = key::encode_unchecked(namespace, key_text);
                    let stored = match op {
                        LogOp::Put(p) => {
                            let meta = p.meta(head.revision, Timestamp::from_micros(head.time));
                            let mut out = Vec::new();
                            schema::encode_record(&meta, &p.value, &mut out);
                            out
                        }
                        LogOp::Delete(_) => TOMBSTONE.to_vec(),
                    };
                    pending_bytes += address.len() + stored.len();
                    pending.insert(address, stored);
                }
            }
            position = Some(end);
            if pending_bytes >= 64 << 20 {
                flush(&mut pending)?;
                pending_bytes = 0;
            }
            Ok(head.revision < up_to)
        })?;
    }
    flush(&mut pending)?;
    Ok((db, position))
}

/// Compares the state with the keys a partial log wrote: each must hold what
/// the log last wrote (or be absent after a delete), and every record the
/// state says was written at or after `from_revision` must be one of them.
pub(crate) fn compare_partial(state: &Db, touched: &Db, from_revision: u64) -> Result<Comparison> {
    let (state_path, touched_path) = (state.path(), touched.path());
    let mut out = Comparison::default();
    let a_table = state.read_table(RECORDS, "open the records table")?;
    let b_table = touched.read_table(TOUCHED, "open the scratch table")?;
    let mut digests = Digests::default();
    for item in a_table
        .iter()
        .map_err(db_error(state_path, "read the records"))?
    {
        let (k, v) = item.map_err(db_error(state_path, "read a record"))?;
        let (k, v) = (k.value(), v.value());
        digests.add(namespace_of(k), k, v);
        let written = schema::decode_record(v).is_none_or(|(m, _)| m.mod_revision >= from_revision);
        let logged = b_table
            .get(k)
            .map_err(db_error(touched_path, "read the scratch table"))?;
        match logged {
            Some(l) if l.value() == TOMBSTONE => out.differ(k, || {
                format!("the state has {} but the log deleted it", describe(Some(v)))
            }),
            Some(l) if l.value() == v => out.verified += 1,
            Some(l) => {
                let logged = l.value().to_vec();
                out.differ(k, || {
                    format!(
                        "the state has {}, the log {}",
                        describe(Some(v)),
                        describe(Some(&logged))
                    )
                });
            }
            None if written => out.differ(k, || {
                format!(
                    "the state has {}, written at or after revision {from_revision}, but the \
                     log never wrote it",
                    describe(Some(v))
                )
            }),
            None => {}
        }
    }
    for item in b_table
        .iter()
        .map_err(db_error(touched_path, "read the scratch table"))?
    {
        let (k, v) = item.map_err(db_error(touched_path, "read the scratch table"))?;
        let (k, v) = (k.value(), v.value());
        if v != TOMBSTONE
            && a_table
                .get(k)
                .map_err(db_error(state_path, "read a record"))?
                .is_none()
        {
            out.differ(k, || {
                format!("the state lacks it; the log has {}", describe(Some(v)))
            });
        }
    }
    out.state = digests.into_summaries();
    Ok(out)
}
