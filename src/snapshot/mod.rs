//! Human-readable snapshots: the store as JSON, JSON Lines or Markdown, and
//! back; and as an HTML page for dashboards (export only).
//!
//! [`export`] streams one consistent snapshot (one MVCC read at one revision) of
//! the whole store, of chosen namespaces or of a key prefix to any
//! [`Write`]; memory does not grow with the store. [`import`] reads such a file
//! back, either restoring it into an empty store with every version and
//! revision as it was ([`ImportMode::Restore`]) or writing its records through
//! the ordinary commit path ([`ImportMode::Merge`]). [`import_legacy`] brings in
//! a plain JSON object of objects written by another tool (such as a
//! `sync_state.json`).
//!
//! Every import is atomic: the whole input is read and checked first, then
//! everything commits in one commit, or nothing does.
//!
//! ```
//! use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = statelog::Store::open(dir.path().join("a"), Default::default())?;
//! store.put("tasks", "t1", &serde_json::json!({"status": "running", "progress": 10}))?;
//!
//! let mut file = Vec::new();
//! snapshot::export(&store, &mut file, &ExportOptions::new(Format::Json))?;
//! assert!(String::from_utf8_lossy(&file).contains("\"status\": \"running\""));
//!
//! let copy = statelog::Store::open(dir.path().join("b"), Default::default())?;
//! let options = ImportOptions::new(Format::Json, ImportMode::Restore);
//! let report = snapshot::import(&copy, file.as_slice(), &options)?;
//! assert_eq!(report.records, 1);
//! assert_eq!(copy.get_raw("tasks", "t1")?, store.get_raw("tasks", "t1")?);
//! # Ok::<(), statelog::Error>(())
//! ```
//!
//! The formats, the JSON schema, the Markdown grammar, the HTML page and the
//! value mapping are described in `DESIGN.md` ("Snapshots: JSON and
//! Markdown").

pub(crate) mod html;
mod import;
mod json;
mod legacy;
pub(crate) mod mapping;
mod markdown;
mod plain_json;
mod raw_json;
mod source;

use std::fmt;
use std::io::{BufWriter, Read, Write};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::{Meta, Snapshot, Store};
use crate::time::Timestamp;
use crate::value::RawValue;

pub use self::import::{
    CheckedImport, ImportConflict, ImportMode, ImportOptions, ImportReport, check_import, import,
    import_checked, read,
};
pub use self::legacy::{
    CheckedLegacy, Collision, KeyNormalizer, LegacyOptions, LegacyReport, check_legacy,
    import_legacy, import_legacy_checked,
};

use self::mapping::Place;
use self::source::{SnapshotSource, Source};

/// The version of the snapshot formats this build writes and reads. A file
/// with a higher version is refused with a message naming both.
pub const FORMAT_VERSION: u64 = 1;

/// One record as a snapshot holds it: its address, its metadata and its value.
/// This is what every format reads and writes; it holds nothing of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// Version, create and mod revisions, and the time of the last write.
    pub meta: Meta,
    /// The value (MessagePack).
    pub value: RawValue,
}

/// What a snapshot says about itself: the revision it shows and that
/// revision's commit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The store revision of the snapshot (0 for a store without commits).
    pub revision: u64,
    /// The commit time of that revision. Taken from the store, not the clock,
    /// so that two exports of the same state are byte-identical.
    pub time: Timestamp,
}

/// A snapshot format.
///
/// On import, the three JSON variants are the same: the file's header says
/// which layout it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// One JSON document, indented by two spaces: for reading and for diffs.
    Json,
    /// One JSON document on one line.
    JsonCompact,
    /// JSON Lines: a header line, then one record per line (for `jq` and for
    /// large stores).
    JsonLines,
    /// Markdown for dashboards: per namespace a summary table, then per key a
    /// section with its metadata and the value in a fenced `json` block.
    Markdown,
    /// One self-contained HTML page for dashboards: per namespace a table with
    /// the Markdown summary's columns and each record's value, filtered and
    /// sorted in the browser without a server. Export only: [`import`] and
    /// [`read`] refuse it.
    Html,
}

impl Format {
    /// The format a file name extension suggests: `json`, `jsonl` or `ndjson`,
    /// `md` or `markdown`, `html` or `htm` (any case).
    ///
    /// ```
    /// use statelog::snapshot::Format;
    /// assert_eq!(Format::from_extension("MD"), Some(Format::Markdown));
    /// assert_eq!(Format::from_extension("txt"), None);
    /// ```
    pub fn from_extension(extension: &str) -> Option<Format> {
        match extension.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            "md" | "markdown" => Some(Format::Markdown),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }

    /// The usual file name extension of the format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json | Format::JsonCompact => "json",
            Format::JsonLines => "jsonl",
            Format::Markdown => "md",
            Format::Html => "html",
        }
    }
}

/// Which top-level fields of the values become columns of a Markdown summary
/// table (and of the HTML tables).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Columns {
    /// Per namespace, the fields that hold a scalar (string, number, boolean,
    /// null) in some record, in order of first appearance, at most
    /// [`Columns::AUTO_LIMIT`]; plus a `(value)` column when some values are
    /// scalars themselves.
    #[default]
    Auto,
    /// These fields, in this order, in every namespace (empty where a record
    /// lacks one).
    Named(Vec<String>),
}

impl Columns {
    /// Most columns [`Columns::Auto`] chooses.
    pub const AUTO_LIMIT: usize = 6;
}

/// A callback told how many records are done, for a progress bar: called
/// every [`Progress::EVERY`] records and once at the end.
#[derive(Clone)]
pub(crate) struct Progress(Arc<dyn Fn(u64) + Send + Sync>);

impl Progress {
    /// How many records pass between two calls.
    pub(crate) const EVERY: u64 = 256;

    pub(crate) fn new(f: impl Fn(u64) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(f))
    }

    pub(crate) fn tick(progress: Option<&Progress>, done: u64) {
        if let Some(p) = progress
            && done.is_multiple_of(Progress::EVERY)
        {
            (p.0)(done);
        }
    }

    pub(crate) fn finish(progress: Option<&Progress>, done: u64) {
        if let Some(p) = progress {
            (p.0)(done);
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// What to export, and how.
///
/// ```
/// use statelog::snapshot::{Columns, ExportOptions, Format};
/// let options = ExportOptions::new(Format::Markdown)
///     .namespaces(["tasks"])
///     .key_prefix("build-")
///     .columns(Columns::Named(vec!["status".into(), "progress".into()]));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExportOptions {
    pub(crate) format: Format,
    pub(crate) namespaces: Option<Vec<String>>,
    pub(crate) key_prefix: Option<String>,
    pub(crate) columns: Columns,
    pub(crate) progress: Option<Progress>,
}

impl ExportOptions {
    /// The whole store in `format`.
    pub fn new(format: Format) -> ExportOptions {
        ExportOptions {
            format,
            namespaces: None,
            key_prefix: None,
            columns: Columns::Auto,
            progress: None,
        }
    }

    /// Only these namespaces (those without records are left out).
    pub fn namespaces<S: Into<String>>(mut self, namespaces: impl IntoIterator<Item = S>) -> Self {
        self.namespaces = Some(namespaces.into_iter().map(Into::into).collect());
        self
    }

    /// Only keys starting with `prefix` (in every exported namespace).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// The columns of the Markdown summary tables and the HTML tables (ignored
    /// by the JSON formats).
    pub fn columns(mut self, columns: Columns) -> Self {
        self.columns = columns;
        self
    }

    /// Calls `progress` with the number of records written so far, every 256
    /// records and once at the end, on the exporting thread (keep it cheap).
    pub fn progress(mut self, progress: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress::new(progress));
        self
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSummary {
    /// The snapshot's header.
    pub header: Header,
    /// Namespaces written (those with at least one record in scope).
    pub namespaces: u64,
    /// Records written.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Exports one consistent snapshot of `store` to `out`.
///
/// The output is a pure function of the state: two exports of the same
/// revision are byte-identical. `out` is buffered here; pass it unbuffered.
///
/// # Errors
/// [`Error::InvalidKey`] for a bad namespace in the options;
/// [`Error::SnapshotIo`] if `out` fails (the output is then incomplete);
/// [`Error::Database`] and [`Error::Closed`] from reading the store.
pub fn export(store: &Store, out: impl Write, options: &ExportOptions) -> Result<ExportSummary> {
    export_snapshot(&store.snapshot()?, out, options)
}

/// Exports a snapshot already taken (for example, inside [`Store::read`]).
///
/// # Errors
/// As [`export`].
pub fn export_snapshot(
    snapshot: &Snapshot,
    mut out: impl Write,
    options: &ExportOptions,
) -> Result<ExportSummary> {
    let source = SnapshotSource::new(snapshot, options)?;
    let adapter = adapter(options.format, &options.columns);
    let mut output = Output::new(&mut out, options.progress.as_ref());
    adapter.write(&source, &mut output)?;
    let (records, namespaces, bytes) = output.finish()?;
    Ok(ExportSummary {
        header: source.header(),
        namespaces,
        records,
        bytes,
    })
}

/// Writes records that are not in a store (for example, read from another
/// snapshot with [`read`]: converting a file from one format to another). The
/// scope of `options` applies; the records are sorted as an export sorts them.
///
/// ```
/// use statelog::snapshot::{self, ExportOptions, Format};
/// let json = r#"{"format": "statelog-snapshot", "version": 1, "revision": 0,
///     "time": "1970-01-01T00:00:00Z", "namespaces": {}}"#;
/// let (header, records) = snapshot::read(json.as_bytes(), Format::Json)?;
/// let mut markdown = Vec::new();
/// snapshot::write(header, records, &mut markdown, &ExportOptions::new(Format::Markdown))?;
/// assert!(String::from_utf8_lossy(&markdown).starts_with("# "));
/// # Ok::<(), statelog::Error>(())
/// ```
///
/// # Errors
/// [`Error::SnapshotIo`] if `out` fails; [`Error::InvalidValue`] for a value
/// that is not MessagePack.
pub fn write(
    header: Header,
    records: Vec<SnapshotRecord>,
    mut out: impl Write,
    options: &ExportOptions,
) -> Result<ExportSummary> {
    let source = source::MemorySource::new(header, records, options);
    let adapter = adapter(options.format, &options.columns);
    let mut output = Output::new(&mut out, options.progress.as_ref());
    adapter.write(&source, &mut output)?;
    let (records, namespaces, bytes) = output.finish()?;
    Ok(ExportSummary {
        header,
        namespaces,
        records,
        bytes,
    })
}

// ---------------------------------------------------------------------------
// The adapter boundary. A new format is one new file implementing `Adapter`,
// and one arm in `adapter`.

/// Reads and writes one format. Adapters see only [`SnapshotRecord`]s.
pub(crate) trait Adapter {
    /// Writes the snapshot `source` holds.
    fn write(&self, source: &dyn Source, out: &mut Output<'_>) -> Result<()>;

    /// Reads a snapshot, handing every record to `sink` as it is read, and
    /// returns the header.
    fn read(
        &self,
        input: &mut dyn Read,
        sink: &mut dyn FnMut(Parsed) -> Result<()>,
    ) -> Result<Header>;
}

/// One record read, with where it was.
pub(crate) struct Parsed {
    pub record: SnapshotRecord,
    pub at: Location,
    /// Summary-table cells (Markdown) that do not show what the record's
    /// section holds: the import decides (see `markdown::SummaryCell`).
    pub stale_cells: Vec<markdown::SummaryCell>,
}

pub(crate) fn adapter(format: Format, columns: &Columns) -> Box<dyn Adapter> {
    match format {
        Format::Json => Box::new(json::Json {
            layout: json::Layout::Pretty,
        }),
        Format::JsonCompact => Box::new(json::Json {
            layout: json::Layout::Compact,
        }),
        Format::JsonLines => Box::new(json::Json {
            layout: json::Layout::Lines,
        }),
        Format::Markdown => Box::new(markdown::Markdown {
            columns: columns.clone(),
        }),
        Format::Html => Box::new(html::Html {
            columns: columns.clone(),
        }),
    }
}

/// Where in the input something is: a place, and the record or Markdown section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Location {
    pub place: Place,
    pub section: Option<String>,
}

impl Location {
    pub(crate) fn new(place: Place, section: Option<String>) -> Location {
        Location { place, section }
    }

    /// An [`Error::InvalidSnapshot`] here.
    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        Error::InvalidSnapshot {
            line: self.place.line,
            column: self.place.column,
            section: self.section.clone(),
            message: message.into(),
        }
    }
}

/// Converts a reading error of the value mapping, shifted by `line_offset`
/// lines (a value inside a Markdown block).
pub(crate) fn read_error(e: mapping::ReadError, line_offset: u64, section: Option<&str>) -> Error {
    match e {
        mapping::ReadError::Bad { place, message } => Error::InvalidSnapshot {
            line: if place.line == 0 {
                0
            } else {
                place.line + line_offset
            },
            column: place.column,
            section: section.map(str::to_owned),
            message,
        },
        mapping::ReadError::Io(source) => Error::SnapshotIo { op: "read", source },
    }
}

/// The output of an export: buffered, counted, reporting progress.
pub(crate) struct Output<'a> {
    inner: BufWriter<&'a mut dyn Write>,
    bytes: u64,
    records: u64,
    namespaces: u64,
    progress: Option<&'a Progress>,
}

impl<'a> Output<'a> {
    fn new(inner: &'a mut dyn Write, progress: Option<&'a Progress>) -> Output<'a> {
        Output {
            inner: BufWriter::with_capacity(64 << 10, inner),
            bytes: 0,
            records: 0,
            namespaces: 0,
            progress,
        }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes += bytes.len() as u64;
        self.inner.write_all(bytes).map_err(write_error)
    }

    /// Counts one record as written.
    pub(crate) fn record_done(&mut self) {
        self.records += 1;
        Progress::tick(self.progress, self.records);
    }

    /// Counts one namespace as written.
    pub(crate) fn namespace_done(&mut self) {
        self.namespaces += 1;
    }

    fn finish(mut self) -> Result<(u64, u64, u64)> {
        self.inner.flush().map_err(write_error)?;
        Progress::finish(self.progress, self.records);
        Ok((self.records, self.namespaces, self.bytes))
    }
}

fn write_error(source: std::io::Error) -> Error {
    Error::SnapshotIo {
        op: "write",
        source,
    }
}

/// Decodes a stored value for writing.
pub(crate) fn decode_value(record: &SnapshotRecord) -> Result<rmpv::Value> {
    mapping::from_msgpack(record.value.as_msgpack()).map_err(|message| Error::InvalidValue {
        namespace: record.namespace.clone(),
        key: record.key.clone(),
        message,
    })
}

/// Appends a record's value as JSON.
pub(crate) fn write_json(
    record: &SnapshotRecord,
    value: &rmpv::Value,
    pretty: bool,
    indent: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    mapping::write_value(value, pretty, indent, out).map_err(|message| Error::InvalidValue {
        namespace: record.namespace.clone(),
        key: record.key.clone(),
        message,
    })
}

/// The UTF-8 byte order mark some editors put at the start of a text file.
/// Every reader skips one at the start of its input: it is not part of the
/// JSON or Markdown text.
pub(crate) const BYTE_ORDER_MARK: &str = "\u{feff}";

/// `input` without a byte order mark at its start.
pub(crate) fn without_byte_order_mark<R: Read>(
    mut input: R,
) -> Result<std::io::Chain<std::io::Cursor<Vec<u8>>, R>> {
    let mark = BYTE_ORDER_MARK.as_bytes();
    let mut head = Vec::with_capacity(mark.len());
    (&mut input)
        .take(mark.len() as u64)
        .read_to_end(&mut head)
        .map_err(|source| Error::SnapshotIo { op: "read", source })?;
    if head == mark {
        head.clear();
    }
    Ok(std::io::Cursor::new(head).chain(input))
}

/// Encodes a value read from a snapshot for storage, with the store's checks
/// (nesting depth, size).
pub(crate) fn encode_value(value: &rmpv::Value) -> std::result::Result<RawValue, String> {
    let bytes = mapping::to_msgpack(value);
    if bytes.len() > crate::value::MAX_VALUE_LEN {
        return Err(format!(
            "the value is too large: {} bytes as MessagePack, over the limit of {} bytes",
            bytes.len(),
            crate::value::MAX_VALUE_LEN
        ));
    }
    crate::value::check_msgpack(&bytes)?;
    Ok(RawValue::from_trusted(bytes))
}
