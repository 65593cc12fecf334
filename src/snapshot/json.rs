//! JSON and JSON Lines.
//!
//! A document (pretty or compact) is one object:
//!
//! ```json
//! {
//!   "format": "statelog-snapshot",
//!   "version": 1,
//!   "revision": 42,
//!   "time": "2026-01-02T03:04:05.000006Z",
//!   "namespaces": {
//!     "tasks": {
//!       "t1": {
//!         "version": 3,
//!         "create_revision": 9,
//!         "mod_revision": 17,
//!         "updated_at": "2026-01-02T03:04:05.000006Z",
//!         "value": {"status": "running"}
//!       }
//!     }
//!   }
//! }
//! ```
//!
//! JSON Lines has the header on its first line (`"format":
//! "statelog-snapshot-lines"`, no `namespaces`), then one object per record with
//! `namespace` and `key` added, and ends with the line `{"records": N}`, so
//! that a file cut at a line boundary is refused, not imported short. `format` and `version` come first, so a reader
//! knows the layout and version before anything else.

use std::collections::HashMap;
use std::io::Read;

use struson::reader::{JsonReader, JsonStreamReader, ValueType};

use super::mapping::{self, Mode, Place, ReadError};
use super::source::Source;
use super::{
    Adapter, FORMAT_VERSION, Header, Location, Output, Parsed, SnapshotRecord, decode_value,
    encode_value, plain_json, read_error, write_json,
};
use crate::counter;
use crate::error::{Error, Result, Shown, quote};
use crate::store::Meta;
use crate::time::Timestamp;

/// The `format` of a JSON document.
pub(crate) const DOCUMENT: &str = "statelog-snapshot";
/// The `format` of the header line of JSON Lines.
pub(crate) const LINES: &str = "statelog-snapshot-lines";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Pretty,
    Compact,
    Lines,
}

pub(crate) struct Json {
    pub layout: Layout,
}

impl Adapter for Json {
    fn write(&self, source: &dyn Source, out: &mut Output<'_>) -> Result<()> {
        match self.layout {
            Layout::Pretty => write_document(source, out, true),
            Layout::Compact => write_document(source, out, false),
            Layout::Lines => write_lines(source, out),
        }
    }

    fn read(
        &self,
        input: &mut dyn Read,
        sink: &mut dyn FnMut(Parsed) -> Result<()>,
    ) -> Result<Header> {
        read_any(input, sink)
    }
}

// ---------------------------------------------------------------------------
// Writing

struct Writer {
    pretty: bool,
    buf: Vec<u8>,
}

impl Writer {
    fn newline(&mut self, indent: usize) {
        if self.pretty {
            self.buf.push(b'\n');
            self.buf.resize(self.buf.len() + 2 * indent, b' ');
        }
    }

    /// `"name": ` (or `"name":` compact).
    fn name(&mut self, name: &str) {
        mapping::write_str(name, &mut self.buf);
        self.buf
            .extend_from_slice(if self.pretty { b": " } else { b":" });
    }

    /// A member on its own line: `,`? newline `"name": value`.
    fn member(&mut self, first: bool, indent: usize, name: &str, value: &str, quoted: bool) {
        if !first {
            self.buf.push(b',');
        }
        self.newline(indent);
        self.name(name);
        if quoted {
            mapping::write_str(value, &mut self.buf);
        } else {
            self.buf.extend_from_slice(value.as_bytes());
        }
    }

    fn header(&mut self, format: &str, header: Header, indent: usize) {
        self.member(true, indent, "format", format, true);
        self.member(false, indent, "version", &FORMAT_VERSION.to_string(), false);
        self.member(
            false,
            indent,
            "revision",
            &header.revision.to_string(),
            false,
        );
        self.member(false, indent, "time", &header.time.to_string(), true);
    }

    /// The metadata members and the value of a record, at `indent`.
    fn record_body(&mut self, record: &SnapshotRecord, first: bool, indent: usize) -> Result<()> {
        let m = &record.meta;
        self.member(first, indent, "version", &m.version.to_string(), false);
        let created = m.create_revision.to_string();
        self.member(false, indent, "create_revision", &created, false);
        self.member(
            false,
            indent,
            "mod_revision",
            &m.mod_revision.to_string(),
            false,
        );
        self.member(false, indent, "updated_at", &m.updated_at.to_string(), true);
        self.buf.push(b',');
        self.newline(indent);
        self.name("value");
        if !self.pretty {
            // Most values go straight from MessagePack to JSON.
            let at = self.buf.len();
            if plain_json::write(record.value.as_msgpack(), &mut self.buf) {
                return Ok(());
            }
            self.buf.truncate(at);
        }
        let value = decode_value(record)?;
        write_json(record, &value, self.pretty, indent, &mut self.buf)
    }

    fn flush(&mut self, out: &mut Output<'_>) -> Result<()> {
        out.write(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

fn write_document(source: &dyn Source, out: &mut Output<'_>, pretty: bool) -> Result<()> {
    let mut w = Writer {
        pretty,
        buf: Vec::with_capacity(4096),
    };
    w.buf.push(b'{');
    w.header(DOCUMENT, source.header(), 1);
    w.buf.push(b',');
    w.newline(1);
    w.name("namespaces");
    let mut any_namespace = false;
    for namespace in source.namespaces()? {
        let mut any_record = false;
        for record in source.records(&namespace)? {
            let record = record?;
            if any_record {
                w.buf.push(b',');
            } else {
                // The namespace opens with its first record, so that one
                // without records in scope is not written at all.
                w.buf
                    .extend_from_slice(if any_namespace { b"," } else { b"{" });
                w.newline(2);
                w.name(&namespace);
                w.buf.push(b'{');
                any_namespace = true;
                any_record = true;
                out.namespace_done();
            }
            w.newline(3);
            w.name(&record.key);
            w.buf.push(b'{');
            w.record_body(&record, true, 4)?;
            w.newline(3);
            w.buf.push(b'}');
            w.flush(out)?;
            out.record_done();
        }
        if any_record {
            w.newline(2);
            w.buf.push(b'}');
        }
    }
    if any_namespace {
        w.newline(1);
        w.buf.push(b'}');
    } else {
        w.buf.extend_from_slice(b"{}");
    }
    w.newline(0);
    w.buf.extend_from_slice(b"}\n");
    w.flush(out)
}

fn write_lines(source: &dyn Source, out: &mut Output<'_>) -> Result<()> {
    let mut w = Writer {
        pretty: false,
        buf: Vec::with_capacity(4096),
    };
    w.buf.push(b'{');
    w.header(LINES, source.header(), 0);
    w.buf.extend_from_slice(b"}\n");
    w.flush(out)?;
    let mut written: u64 = 0;
    for namespace in source.namespaces()? {
        let mut any_record = false;
        for record in source.records(&namespace)? {
            let record = record?;
            if !any_record {
                any_record = true;
                out.namespace_done();
            }
            w.buf.push(b'{');
            w.member(true, 0, "namespace", &record.namespace, true);
            w.member(false, 0, "key", &record.key, true);
            w.record_body(&record, false, 0)?;
            w.buf.extend_from_slice(b"}\n");
            w.flush(out)?;
            out.record_done();
            written += 1;
        }
    }
    // The last line tells a complete file from one cut at a line boundary.
    w.buf.push(b'{');
    w.member(true, 0, "records", &written.to_string(), false);
    w.buf.extend_from_slice(b"}\n");
    w.flush(out)
}

// ---------------------------------------------------------------------------
// Reading

type Reader<'a> = JsonStreamReader<&'a mut dyn Read>;

fn bad(place: Place, message: impl Into<String>) -> Error {
    Location::new(place, None).error(message)
}

fn re(e: struson::reader::ReaderError) -> Error {
    read_error(mapping::reader_error(e), 0, None)
}

/// Peeks at the next value and checks its type; returns where it starts.
fn expect(r: &mut Reader<'_>, want: ValueType, what: &str) -> Result<Place> {
    let found = r.peek().map_err(re)?;
    let at = mapping::place(r);
    if found != want {
        return Err(bad(
            at,
            format!(
                "{what} must be {}, not {}",
                mapping::type_name(want),
                mapping::type_name(found)
            ),
        ));
    }
    Ok(at)
}

fn read_u64(r: &mut Reader<'_>, what: &str) -> Result<u64> {
    read_u64_at(r, what).map(|(value, _)| value)
}

/// A whole number, and where it is.
fn read_u64_at(r: &mut Reader<'_>, what: &str) -> Result<(u64, Place)> {
    let at = expect(r, ValueType::Number, what)?;
    let text = r.next_number_as_string().map_err(re)?;
    let value = text.parse::<u64>().map_err(|_| {
        bad(
            at,
            format!(
                "{what} must be a whole number from 0 to 2^64 - 1, not {}",
                Shown::new(&text)
            ),
        )
    })?;
    Ok((value, at))
}

/// Reads a revision or version: a whole number no higher than an import
/// accepts (so that the store can count on from it).
fn read_counter(r: &mut Reader<'_>, what: &str) -> Result<u64> {
    let (value, at) = read_u64_at(r, what)?;
    match counter::check_imported(what, value) {
        Some(why) => Err(bad(at, why)),
        None => Ok(value),
    }
}

fn read_time(r: &mut Reader<'_>, what: &str) -> Result<Timestamp> {
    let at = expect(r, ValueType::String, what)?;
    let text = r.next_string().map_err(re)?;
    text.parse::<Timestamp>()
        .map_err(|e| bad(at, format!("{what}: {e}")))
}

fn read_string(r: &mut Reader<'_>, what: &str) -> Result<(String, Place)> {
    let at = expect(r, ValueType::String, what)?;
    Ok((r.next_string().map_err(re)?, at))
}

/// The next member name of the open object, or `None` at its end (consumed).
fn next_name(r: &mut Reader<'_>) -> Result<Option<(String, Place)>> {
    if !r.has_next().map_err(re)? {
        r.end_object().map_err(re)?;
        return Ok(None);
    }
    let at = mapping::place(r);
    Ok(Some((r.next_name_owned().map_err(re)?, at)))
}

/// Remembers member names of one object to refuse repeats.
#[derive(Default)]
struct Names(HashMap<String, u64>);

impl Names {
    fn add(&mut self, name: &str, at: Place) -> Result<()> {
        if let Some(first) = self.0.insert(name.to_owned(), at.line) {
            return Err(bad(
                at,
                format!(
                    "the member {} appears twice (first at line {first})",
                    quote(name)
                ),
            ));
        }
        Ok(())
    }
}

fn read_any(input: &mut dyn Read, sink: &mut dyn FnMut(Parsed) -> Result<()>) -> Result<Header> {
    let mut r = mapping::reader(input);
    let found = r.peek().map_err(re)?;
    let at = mapping::place(&r);
    if found != ValueType::Object {
        return Err(bad(
            at,
            format!(
                "a statelog snapshot is a JSON object that starts with \"format\", not {}",
                mapping::type_name(found)
            ),
        ));
    }
    r.begin_object().map_err(re)?;
    let lines = read_format(&mut r, at)?;
    let mut names = Names::default();
    let (mut revision, mut time) = (None, None);
    while let Some((name, at)) = next_name(&mut r)? {
        names.add(&name, at)?;
        match name.as_str() {
            "revision" => revision = Some(read_counter(&mut r, "\"revision\"")?),
            "time" => time = Some(read_time(&mut r, "\"time\"")?),
            "namespaces" if !lines => read_namespaces(&mut r, sink)?,
            _ => {
                return Err(bad(
                    at,
                    format!("unknown member {} in the snapshot header", quote(&name)),
                ));
            }
        }
    }
    let end = mapping::place(&r);
    let missing = |what: &str| bad(end, format!("the snapshot header lacks {what:?}"));
    let header = Header {
        revision: revision.ok_or_else(|| missing("revision"))?,
        time: time.ok_or_else(|| missing("time"))?,
    };
    if lines {
        let mut count: u64 = 0;
        loop {
            if !r.has_next().map_err(re)? {
                return Err(bad(
                    mapping::place(&r),
                    "the JSON Lines snapshot ends without its last line {\"records\": N}; the \
                     file was probably cut short",
                ));
            }
            let at = mapping::place(&r);
            match read_line(&mut r, sink)? {
                None => count += 1,
                Some(total) if total == count => break,
                Some(total) => {
                    return Err(bad(
                        at,
                        format!(
                            "the last line says the snapshot has {total} records, but {count} \
                             were read; lines were lost or added"
                        ),
                    ));
                }
            }
        }
        if r.has_next().map_err(re)? {
            return Err(bad(
                mapping::place(&r),
                "nothing may follow the last line {\"records\": N}",
            ));
        }
    } else {
        if !names.0.contains_key("namespaces") {
            return Err(missing("namespaces"));
        }
        r.consume_trailing_whitespace().map_err(re)?;
    }
    Ok(header)
}

/// Reads `"format": ..., "version": ...`; true for JSON Lines.
fn read_format(r: &mut Reader<'_>, object: Place) -> Result<bool> {
    if next_name(r)?.is_none_or(|(name, _)| name != "format") {
        return Err(bad(
            object,
            "a statelog snapshot starts with the member \"format\" (\"statelog-snapshot\" or \
             \"statelog-snapshot-lines\")",
        ));
    }
    let (format, at) = read_string(r, "\"format\"")?;
    let lines = match format.as_str() {
        DOCUMENT => false,
        LINES => true,
        _ => {
            return Err(bad(
                at,
                format!(
                    "this is not a statelog snapshot: its format is {}, not \
                     {DOCUMENT:?} or {LINES:?}",
                    quote(&format)
                ),
            ));
        }
    };
    match next_name(r)? {
        Some((name, _)) if name == "version" => {}
        _ => {
            return Err(bad(
                at,
                "\"format\" must be followed by the member \"version\"",
            ));
        }
    }
    let at = expect(r, ValueType::Number, "\"version\"")?;
    let text = r.next_number_as_string().map_err(re)?;
    match text.parse::<u64>() {
        Ok(FORMAT_VERSION) => Ok(lines),
        Ok(v) if v > FORMAT_VERSION => Err(bad(
            at,
            format!(
                "the snapshot has format version {v}, but this statelog reads version \
                 {FORMAT_VERSION}; import it with a newer statelog"
            ),
        )),
        _ => Err(bad(
            at,
            format!("unknown format version {text}; this statelog reads version {FORMAT_VERSION}"),
        )),
    }
}

fn read_namespaces(r: &mut Reader<'_>, sink: &mut dyn FnMut(Parsed) -> Result<()>) -> Result<()> {
    expect(r, ValueType::Object, "\"namespaces\"")?;
    r.begin_object().map_err(re)?;
    let mut namespaces = Names::default();
    while let Some((namespace, at)) = next_name(r)? {
        namespaces.add(&namespace, at)?;
        expect(
            r,
            ValueType::Object,
            &format!("namespace {}", quote(&namespace)),
        )?;
        r.begin_object().map_err(re)?;
        while let Some((key, at)) = next_name(r)? {
            let section = format!("record {namespace}/{key}");
            let object = expect(r, ValueType::Object, &section)?;
            r.begin_object().map_err(re)?;
            let fields = read_fields(r, &section, false)?;
            let record = fields.into_record(namespace.clone(), key, object, &section)?;
            sink(Parsed {
                record,
                at: Location::new(at, Some(section)),
                stale_cells: Vec::new(),
            })?;
        }
    }
    Ok(())
}

/// Reads a record line, or the last line `{"records": N}` (returns N).
fn read_line(
    r: &mut Reader<'_>,
    sink: &mut dyn FnMut(Parsed) -> Result<()>,
) -> Result<Option<u64>> {
    let at = expect(r, ValueType::Object, "a record line")?;
    r.begin_object().map_err(re)?;
    let fields = read_fields(r, "the record", true)?;
    if let Some(total) = fields.records {
        if fields.namespace.is_some() || fields.key.is_some() || fields.value.is_some() {
            return Err(bad(
                at,
                "the last line {\"records\": N} has no other members",
            ));
        }
        return Ok(Some(total));
    }
    let (namespace, key) = match (&fields.namespace, &fields.key) {
        (Some(ns), Some(key)) => (ns.clone(), key.clone()),
        _ => {
            return Err(bad(at, "a record line needs \"namespace\" and \"key\""));
        }
    };
    let section = format!("record {namespace}/{key}");
    let record = fields.into_record(namespace, key, at, &section)?;
    sink(Parsed {
        record,
        at: Location::new(at, Some(section)),
        stale_cells: Vec::new(),
    })?;
    Ok(None)
}

#[derive(Default)]
struct Fields {
    namespace: Option<String>,
    key: Option<String>,
    version: Option<u64>,
    create_revision: Option<u64>,
    mod_revision: Option<u64>,
    updated_at: Option<Timestamp>,
    value: Option<rmpv::Value>,
    value_at: Place,
    records: Option<u64>,
}

/// Reads the members of a record object (already begun) up to its end.
fn read_fields(r: &mut Reader<'_>, section: &str, address: bool) -> Result<Fields> {
    let mut f = Fields::default();
    let mut names = Names::default();
    while let Some((name, at)) = next_name(r)? {
        names.add(&name, at)?;
        match name.as_str() {
            "namespace" if address => f.namespace = Some(read_string(r, "\"namespace\"")?.0),
            "key" if address => f.key = Some(read_string(r, "\"key\"")?.0),
            "records" if address => f.records = Some(read_u64(r, "\"records\"")?),
            "version" => f.version = Some(read_counter(r, "\"version\"")?),
            "create_revision" => {
                f.create_revision = Some(read_counter(r, "\"create_revision\"")?);
            }
            "mod_revision" => f.mod_revision = Some(read_counter(r, "\"mod_revision\"")?),
            "updated_at" => f.updated_at = Some(read_time(r, "\"updated_at\"")?),
            "value" => {
                r.peek().map_err(re)?;
                f.value_at = mapping::place(r);
                let value =
                    mapping::read_value(r, Mode::Tagged).map_err(|e| with_section(e, section))?;
                f.value = Some(value);
            }
            _ => {
                return Err(Location::new(at, Some(section.to_owned())).error(format!(
                    "unknown member {} in a record; a record has \"version\", \
                     \"create_revision\", \"mod_revision\", \"updated_at\" and \"value\"",
                    quote(&name)
                )));
            }
        }
    }
    Ok(f)
}

fn with_section(e: ReadError, section: &str) -> Error {
    read_error(e, 0, Some(section))
}

impl Fields {
    fn into_record(
        self,
        namespace: String,
        key: String,
        at: Place,
        section: &str,
    ) -> Result<SnapshotRecord> {
        let here = Location::new(at, Some(section.to_owned()));
        let missing = |what: &str| here.error(format!("the record lacks {what:?}"));
        let meta = Meta {
            version: self.version.ok_or_else(|| missing("version"))?,
            create_revision: self
                .create_revision
                .ok_or_else(|| missing("create_revision"))?,
            mod_revision: self.mod_revision.ok_or_else(|| missing("mod_revision"))?,
            updated_at: self.updated_at.ok_or_else(|| missing("updated_at"))?,
        };
        let value = self.value.ok_or_else(|| missing("value"))?;
        let value = encode_value(&value)
            .map_err(|m| Location::new(self.value_at, Some(section.to_owned())).error(m))?;
        Ok(SnapshotRecord {
            namespace,
            key,
            meta,
            value,
        })
    }
}
