//! Importing a snapshot: read and check everything, then one commit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read;

use super::{
    Columns, Format, Header, Parsed, Progress, SnapshotRecord, adapter, without_byte_order_mark,
};
use crate::error::{Error, KeyPart, Result, Shown};
use crate::key;
use crate::store::{Meta, RestoreRecord, Store};

/// How an import writes what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Into an empty store, keeping every version and revision exactly; the
    /// store's revision becomes the snapshot's. One base commit.
    Restore,
    /// Every record becomes an ordinary write through the commit path, all of
    /// them in one transaction (one new revision). A record whose value equals
    /// the stored one byte for byte is left alone (no new version). Records of
    /// the store that the snapshot lacks are kept: a merge never deletes.
    Merge {
        /// Write a record only if the store's version of it still equals the
        /// snapshot's (0 for a record that no longer exists); the others are
        /// conflicts, and the commit re-checks the versions it relied on.
        check_versions: bool,
        /// With conflicts, still commit the records that are not stale. When
        /// false (the usual choice), any conflict means nothing is written.
        /// Either way, [`ImportReport::conflicts`] lists every stale record.
        skip_conflicts: bool,
    },
}

/// How to import.
///
/// ```
/// use statelog::snapshot::{Format, ImportMode, ImportOptions};
/// let options = ImportOptions::new(
///     Format::Markdown,
///     ImportMode::Merge { check_versions: true, skip_conflicts: false },
/// );
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImportOptions {
    pub(crate) format: Format,
    pub(crate) mode: ImportMode,
    pub(crate) progress: Option<Progress>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) fences: Vec<(String, u64)>,
}

impl ImportOptions {
    /// Reads `format` and writes in `mode`. The three JSON formats read alike.
    pub fn new(format: Format, mode: ImportMode) -> ImportOptions {
        ImportOptions {
            format,
            mode,
            progress: None,
            idempotency_key: None,
            fences: Vec::new(),
        }
    }

    /// Makes a merge commit only while lock `lock` is still held with
    /// `token` (see [`Tx::fence`](crate::Tx::fence)): otherwise
    /// [`Error::Fenced`] and nothing is written. A restore takes no fence (it
    /// writes into a store without commits, where no lock is held).
    pub fn fence(mut self, lock: impl Into<String>, token: u64) -> Self {
        self.fences.push((lock.into(), token));
        self
    }

    /// Makes a merge idempotent under `key` (at most 255 bytes): the same
    /// import (the same records, versions and values, in the same mode)
    /// made again with the key returns the first report, marked
    /// [`replayed`](ImportReport::replayed), and writes nothing; another
    /// import, or any other request, with the key fails with
    /// [`Error::IdempotencyKeyReused`]. An import stopped by conflicts writes
    /// nothing and keeps no key. A restore takes no key (it is refused by
    /// any store that has commits, so it never applies twice).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Calls `progress` with the number of records read so far, every 256
    /// records and once when the input is read, on the importing thread.
    pub fn progress(mut self, progress: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress::new(progress));
        self
    }
}

/// A record whose version in the store is not the snapshot's
/// ([`ImportMode::Merge`] with `check_versions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportConflict {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// The version in the snapshot.
    pub expected: u64,
    /// The version in the store (0: it does not exist).
    pub actual: u64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an import can stop at conflicts without writing; check `applied` and `conflicts`"]
#[non_exhaustive]
pub struct ImportReport {
    /// The snapshot's header.
    pub header: Header,
    /// Records in the snapshot.
    pub records: u64,
    /// Records written.
    pub written: u64,
    /// Records left alone because the store already held the same value.
    pub unchanged: u64,
    /// Stale records, not written (merge with `check_versions` only).
    pub conflicts: Vec<ImportConflict>,
    /// The revision of the commit; `None` when nothing was written.
    pub revision: Option<u64>,
    /// False when conflicts stopped the import and nothing was written.
    pub applied: bool,
    /// True when this is the first report of the same import with the same
    /// idempotency key, returned again: nothing was written now.
    pub replayed: bool,
}

/// A snapshot read and checked: valid addresses, no record twice, metadata
/// that fits the header, storable values.
pub(crate) struct Checked {
    pub header: Header,
    pub records: Vec<Parsed>,
}

/// Reads a snapshot without a store: its header and records, checked as an
/// import checks them.
///
/// # Errors
/// [`Error::InvalidSnapshot`] with the line (and column, or Markdown section) of
/// the first problem; [`Error::SnapshotIo`] if `input` fails.
pub fn read(input: impl Read, format: Format) -> Result<(Header, Vec<SnapshotRecord>)> {
    let checked = read_checked(input, format, None)?;
    Ok((
        checked.header,
        checked.records.into_iter().map(|p| p.record).collect(),
    ))
}

pub(crate) fn read_checked(
    input: impl Read,
    format: Format,
    progress: Option<&Progress>,
) -> Result<Checked> {
    let mut input = without_byte_order_mark(input)?;
    let adapter = adapter(format, &Columns::Auto);
    let mut records: Vec<Parsed> = Vec::new();
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    let header = adapter.read(&mut input, &mut |parsed: Parsed| {
        let r = &parsed.record;
        key::validate(KeyPart::Namespace, &r.namespace)
            .and_then(|()| key::validate(KeyPart::Key, &r.key))
            .map_err(|e| parsed.at.error(e.to_string()))?;
        match seen.entry((r.namespace.clone(), r.key.clone())) {
            Entry::Occupied(first) => {
                return Err(parsed.at.error(format!(
                    "the record {}/{} appears twice (first at line {}); keep one of them",
                    Shown::new(&r.namespace),
                    Shown::new(&r.key),
                    first.get()
                )));
            }
            Entry::Vacant(slot) => {
                slot.insert(parsed.at.place.line);
            }
        }
        records.push(parsed);
        Progress::tick(progress, records.len() as u64);
        Ok(())
    })?;
    for parsed in &records {
        check_meta(&parsed.record.meta, header.revision).map_err(|m| parsed.at.error(m))?;
    }
    Progress::finish(progress, records.len() as u64);
    Ok(Checked { header, records })
}

fn check_meta(meta: &Meta, revision: u64) -> std::result::Result<(), String> {
    if meta.version == 0 {
        return Err("version 0 is not a version: versions start at 1".to_owned());
    }
    if meta.create_revision == 0 || meta.create_revision > meta.mod_revision {
        return Err(format!(
            "created at revision {} but modified at revision {}: revisions start at 1 and a \
             record is modified at or after its creation",
            meta.create_revision, meta.mod_revision
        ));
    }
    if meta.mod_revision > revision {
        return Err(format!(
            "modified at revision {}, after the snapshot's revision {revision}",
            meta.mod_revision
        ));
    }
    Ok(())
}

/// Imports a snapshot into `store`, atomically.
///
/// The whole input is read and checked before anything is written; then all
/// records commit in one commit, or none do. See [`ImportMode`] for what each
/// mode writes. The store stays open (and, across processes, locked) while
/// the input is read: to read slow input (a pipe) before opening the store,
/// use [`check_import`] and then [`import_checked`].
///
/// ```
/// use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = statelog::Store::open(dir.path(), Default::default())?;
/// store.put("jobs", "j1", &"queued")?;
/// let mut file = Vec::new();
/// snapshot::export(&store, &mut file, &ExportOptions::new(Format::JsonLines))?;
///
/// store.put("jobs", "j1", &"running")?; // the file is stale now
/// let merge = ImportMode::Merge { check_versions: true, skip_conflicts: false };
/// let report = snapshot::import(&store, file.as_slice(), &ImportOptions::new(Format::JsonLines, merge))?;
/// assert!(!report.applied);
/// assert_eq!((report.conflicts[0].expected, report.conflicts[0].actual), (1, 2));
/// assert_eq!(store.get::<String>("jobs", "j1")?.unwrap().value, "running");
/// # Ok::<(), statelog::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidSnapshot`] for bad input, with line and column (JSON) or
/// section (Markdown), and the store unchanged; [`Error::NotEmpty`] when
/// restoring into a store that has commits; [`Error::SnapshotIo`] if `input`
/// fails; [`Error::Conflict`] if concurrent writers keep changing the records
/// a version-checked merge relies on; the I/O errors of a commit.
pub fn import(store: &Store, input: impl Read, options: &ImportOptions) -> Result<ImportReport> {
    if options.mode == ImportMode::Restore {
        let revision = store.revision();
        if revision != 0 {
            return Err(Error::NotEmpty { revision });
        }
    }
    import_checked(store, check_import(input, options)?)
}

/// A snapshot read and checked for an import, not yet written: what
/// [`check_import`] returns and [`import_checked`] writes. It holds every
/// record in memory.
pub struct CheckedImport {
    checked: Checked,
    mode: ImportMode,
    idempotency_key: Option<String>,
    fences: Vec<(String, u64)>,
}

impl std::fmt::Debug for CheckedImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedImport")
            .field("header", &self.checked.header)
            .field("records", &self.checked.records.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl CheckedImport {
    /// The snapshot's header.
    pub fn header(&self) -> Header {
        self.checked.header
    }

    /// How many records it holds.
    pub fn records(&self) -> u64 {
        self.checked.records.len() as u64
    }
}

/// Reads and checks a snapshot for an import without a store: everything
/// [`import`] checks before it writes. Reading needs no store, so slow input
/// (a pipe, another process's export) is read before the store is opened and
/// locked; [`import_checked`] then writes it.
///
/// ```
/// use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = statelog::Store::open(dir.path().join("a"), Default::default())?;
/// store.put("jobs", "j1", &"queued")?;
/// let mut file = Vec::new();
/// snapshot::export(&store, &mut file, &ExportOptions::new(Format::Json))?;
///
/// let options = ImportOptions::new(Format::Json, ImportMode::Restore);
/// let checked = snapshot::check_import(file.as_slice(), &options)?; // no store yet
/// assert_eq!(checked.records(), 1);
/// let copy = statelog::Store::open(dir.path().join("b"), Default::default())?;
/// let report = snapshot::import_checked(&copy, checked)?;
/// assert_eq!(report.revision, Some(1));
/// # Ok::<(), statelog::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidSnapshot`] with the line (and column, or Markdown section)
/// of the first problem; [`Error::SnapshotIo`] if `input` fails.
pub fn check_import(input: impl Read, options: &ImportOptions) -> Result<CheckedImport> {
    Ok(CheckedImport {
        checked: read_checked(input, options.format, options.progress.as_ref())?,
        mode: options.mode,
        idempotency_key: options.idempotency_key.clone(),
        fences: options.fences.clone(),
    })
}

/// Writes a snapshot that [`check_import`] read, in the mode it was read for:
/// one commit, or nothing.
///
/// # Errors
/// As [`import`], but for the input's own problems, which [`check_import`]
/// reported.
pub fn import_checked(store: &Store, checked: CheckedImport) -> Result<ImportReport> {
    match checked.mode {
        ImportMode::Restore if !checked.fences.is_empty() => Err(Error::InvalidOption {
            name: "fence",
            reason: "a restore takes none: it writes into a store without commits, where no \
                     lock is held"
                .to_owned(),
        }),
        ImportMode::Restore if checked.idempotency_key.is_some() => Err(Error::InvalidOption {
            name: "idempotency key",
            reason: "a restore takes none: it is refused by a store that has commits, so it \
                     never applies twice"
                .to_owned(),
        }),
        ImportMode::Restore => {
            let revision = store.revision();
            if revision != 0 {
                return Err(Error::NotEmpty { revision });
            }
            restore(store, checked.checked)
        }
        ImportMode::Merge {
            check_versions,
            skip_conflicts,
        } => merge(
            store,
            checked.checked,
            check_versions,
            skip_conflicts,
            checked.idempotency_key.as_deref(),
            &checked.fences,
        ),
    }
}

fn restore(store: &Store, checked: Checked) -> Result<ImportReport> {
    let Checked { header, records } = checked;
    let count = records.len() as u64;
    let mut report = ImportReport {
        header,
        records: count,
        written: 0,
        unchanged: 0,
        conflicts: Vec::new(),
        revision: None,
        applied: true,
        replayed: false,
    };
    // Revision 0 is a store without commits; its snapshot has no records
    // (checked: none can be modified at or before revision 0).
    if header.revision == 0 {
        return Ok(report);
    }
    // An empty store has nothing to tell a stale summary cell from an edited
    // one: any cell that disagrees with its section is refused.
    if let Some((parsed, cell)) = records
        .iter()
        .find_map(|p| p.stale_cells.first().map(|c| (p, c)))
    {
        cell.check(&parsed.record.key, None)?;
    }
    store.restore_records(
        header.revision,
        header.time,
        records.into_iter().map(|p| RestoreRecord {
            namespace: p.record.namespace,
            key: p.record.key,
            meta: p.record.meta,
            value: p.record.value,
        }),
    )?;
    report.written = count;
    report.revision = Some(header.revision);
    Ok(report)
}

/// Why a merge transaction stopped.
enum Stop {
    Failed(Error),
    /// Stale records, and nothing written.
    Conflicts(Vec<ImportConflict>),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// What a merge wrote: records written, unchanged, and the conflicts skipped
/// (namespace, key, expected, actual). Kept with an idempotency key, for its
/// replays.
#[derive(serde::Serialize, serde::Deserialize)]
struct Merged {
    written: u64,
    unchanged: u64,
    conflicts: Vec<(String, String, u64, u64)>,
}

/// What identifies a merge for its idempotency key: its mode and every
/// record (address, the version it was read at, value).
fn merge_call(records: &[Parsed], check_versions: bool, skip_conflicts: bool) -> Vec<u8> {
    let mut h = crate::coord::Fnv::default();
    h.u64(u64::from(check_versions));
    h.u64(u64::from(skip_conflicts));
    h.u64(records.len() as u64);
    for parsed in records {
        let r = &parsed.record;
        h.bytes(r.namespace.as_bytes());
        h.bytes(r.key.as_bytes());
        h.u64(r.meta.version);
        h.bytes(r.value.as_msgpack());
    }
    [b"import\0".as_slice(), &h.finish()].concat()
}

fn merge(
    store: &Store,
    checked: Checked,
    check_versions: bool,
    skip_conflicts: bool,
    idempotency_key: Option<&str>,
    fences: &[(String, u64)],
) -> Result<ImportReport> {
    let Checked { header, records } = checked;
    let run = |tx: &mut crate::Tx| -> std::result::Result<Merged, Stop> {
        for (lock, token) in fences {
            tx.fence(lock, *token)?;
        }
        let mut conflicts = Vec::new();
        let mut written = 0;
        let mut unchanged = 0;
        for parsed in &records {
            let r = &parsed.record;
            let current = tx.snapshot().get_raw(&r.namespace, &r.key)?;
            // A summary cell that disagrees with its section: compared with
            // the store's record when that is still the snapshot's version (the
            // record as exported). A stale record is a conflict anyway; written
            // over without the check, its cells cannot be judged: refused.
            let exported = current
                .as_ref()
                .filter(|c| c.version == r.meta.version)
                .map(|c| SnapshotRecord {
                    namespace: r.namespace.clone(),
                    key: r.key.clone(),
                    meta: c.meta(),
                    value: c.value.clone(),
                });
            if exported.is_some() || !check_versions {
                for cell in &parsed.stale_cells {
                    cell.check(&r.key, exported.as_ref())?;
                }
            }
            if current.as_ref().is_some_and(|c| c.value == r.value) {
                unchanged += 1;
                continue;
            }
            let actual = current.map_or(0, |c| c.version);
            if check_versions {
                if actual != r.meta.version {
                    conflicts.push(ImportConflict {
                        namespace: r.namespace.clone(),
                        key: r.key.clone(),
                        expected: r.meta.version,
                        actual,
                    });
                    continue;
                }
                tx.expect_version(&r.namespace, &r.key, actual)?;
            }
            tx.put_raw(&r.namespace, &r.key, r.value.clone())?;
            written += 1;
        }
        if !conflicts.is_empty() && !skip_conflicts {
            return Err(Stop::Conflicts(conflicts));
        }
        Ok(Merged {
            written,
            unchanged,
            conflicts: conflicts
                .into_iter()
                .map(|c| (c.namespace, c.key, c.expected, c.actual))
                .collect(),
        })
    };
    let outcome = match idempotency_key {
        None => store.transaction(run),
        Some(key) => {
            let call = merge_call(&records, check_versions, skip_conflicts);
            let idempotency = store.keyed_call(key, call, None)?;
            store.keyed_transaction(idempotency, run)
        }
    };
    let mut report = ImportReport {
        header,
        records: records.len() as u64,
        written: 0,
        unchanged: 0,
        conflicts: Vec::new(),
        revision: None,
        applied: true,
        replayed: false,
    };
    match outcome {
        Ok(outcome) => {
            let merged = outcome.value;
            report.written = merged.written;
            report.unchanged = merged.unchanged;
            report.conflicts = merged
                .conflicts
                .into_iter()
                .map(|(namespace, key, expected, actual)| ImportConflict {
                    namespace,
                    key,
                    expected,
                    actual,
                })
                .collect();
            report.revision = outcome.revision;
            report.replayed = outcome.replayed;
        }
        Err(Stop::Conflicts(conflicts)) => {
            report.conflicts = conflicts;
            report.applied = false;
        }
        Err(Stop::Failed(e)) => return Err(e),
    }
    Ok(report)
}
