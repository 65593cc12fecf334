//! Markdown for dashboards, readable on GitHub and in a terminal, and read back
//! exactly.
//!
//! ````markdown
//! # Snapshot at revision 42 (2026-01-02 03:04:05Z)
//!
//! - format: statelog-snapshot-markdown
//! - version: 1
//! - revision: 42
//! - time: 2026-01-02T03:04:05.000006Z
//!
//! ## tasks
//!
//! 1 record.
//!
//! | key | version | updated | status | progress |
//! | --- | ---: | --- | --- | --- |
//! | t1 | 3 | 2026-01-02 03:04:05Z | running | 10 |
//!
//! ### t1
//!
//! - version: 3
//! - created: revision 9
//! - modified: revision 17
//! - updated: 2026-01-02T03:04:05.000006Z
//!
//! ```json
//! {
//!   "status": "running",
//!   "progress": 10
//! }
//! ```
//!
//! <!-- end of snapshot -->
//! ````
//!
//! The file ends with the line `<!-- end of snapshot -->` (invisible when
//! rendered), so that a file cut short is refused.
//!
//! Reading uses a CommonMark parser (pulldown-cmark). The header list, each
//! `##` namespace heading, each `###` key heading, its metadata list and its
//! `json` block are what is read; the title and paragraphs are for people.
//! When a namespace has a summary table, its first column must name the same
//! keys as the sections below it, in the same order (a section renamed or
//! deleted without its row is an error, not a silent change). Its other cells
//! are generated, not read back: a cell that disagrees with its section is
//! either stale (the section was edited) or edited by hand, and the import
//! tells which by the store's record (`SummaryCell::check`), refusing a hand
//! edit with its line rather than ignoring it.
//! Headings and cells escape what Markdown would interpret (`\`, `` ` ``, `*`,
//! `_` at word edges, `[`, `]`, `<`, `>`, `|`, `#`, `~`, `&`, `$`, and
//! whitespace at either end as a character reference); unicode is kept.

use std::fmt::Write as _;
use std::io::Read;
use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag};
use rmpv::Value;
use struson::reader::JsonReader;

use super::mapping::{self, Mode, Place};
use super::source::Source;
use super::{
    Adapter, Columns, FORMAT_VERSION, Header, Location, Output, Parsed, SnapshotRecord,
    decode_value, encode_value, read_error, write_json,
};
use crate::bigint;
use crate::counter;
use crate::error::{Error, Result, Shown, quote};
use crate::store::Meta;
use crate::time::Timestamp;

/// The `format` item of the header list.
pub(crate) const FORMAT: &str = "statelog-snapshot-markdown";

/// The last line of a Markdown snapshot (invisible when rendered): a file cut
/// short lacks it and is refused.
pub(crate) const END: &str = "<!-- end of snapshot -->";

/// Longest text shown in a summary cell, in characters.
const CELL_CHARS: usize = 60;

pub(crate) struct Markdown {
    pub columns: Columns,
}

impl Adapter for Markdown {
    fn write(&self, source: &dyn Source, out: &mut Output<'_>) -> Result<()> {
        let header = source.header();
        let mut text = String::new();
        let _ = write!(
            text,
            "# Snapshot at revision {} ({})\n\n\
             - format: {FORMAT}\n\
             - version: {FORMAT_VERSION}\n\
             - revision: {}\n\
             - time: {}\n",
            header.revision,
            short_time(header.time),
            header.revision,
            header.time
        );
        out.write(text.as_bytes())?;
        let mut any = false;
        for namespace in source.namespaces()? {
            let (count, columns) = self.scan(source, &namespace)?;
            if count == 0 {
                continue;
            }
            any = true;
            out.namespace_done();
            write_table(source, &namespace, count, &columns, out)?;
            for record in source.records(&namespace)? {
                write_section(&record?, out)?;
                out.record_done();
            }
        }
        if !any {
            out.write(b"\nNo records.\n")?;
        }
        out.write(format!("\n{END}\n").as_bytes())
    }

    fn read(
        &self,
        input: &mut dyn Read,
        sink: &mut dyn FnMut(Parsed) -> Result<()>,
    ) -> Result<Header> {
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(|source| Error::SnapshotIo { op: "read", source })?;
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                let upto = &bytes[..e.valid_up_to()];
                let line = upto.iter().filter(|b| **b == b'\n').count() as u64 + 1;
                return Err(at_line(line, None, "the input is not valid UTF-8"));
            }
        };
        Doc::new(text).read(sink)
    }
}

// ---------------------------------------------------------------------------
// Writing

/// A column of a summary table (the HTML adapter's tables have the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Column {
    /// The value itself, when it is a scalar.
    Value,
    /// A top-level field of map values.
    Field(String),
}

impl Markdown {
    /// Counts the records of a namespace in scope and chooses its columns.
    pub(super) fn scan(&self, source: &dyn Source, namespace: &str) -> Result<(u64, Vec<Column>)> {
        let mut count = 0;
        let mut scalar_values = false;
        let mut fields: Vec<String> = Vec::new();
        let auto = self.columns == Columns::Auto;
        for record in source.records(namespace)? {
            let record = record?;
            count += 1;
            if !auto {
                continue;
            }
            match decode_value(&record)? {
                Value::Map(entries) => {
                    for (k, v) in &entries {
                        if fields.len() >= Columns::AUTO_LIMIT {
                            break;
                        }
                        if let (Some(name), true) = (k.as_str(), is_scalar(v))
                            && !fields.iter().any(|f| f == name)
                        {
                            fields.push(name.to_owned());
                        }
                    }
                }
                v if is_scalar(&v) => scalar_values = true,
                _ => {}
            }
        }
        let columns = match &self.columns {
            Columns::Auto => scalar_values
                .then_some(Column::Value)
                .into_iter()
                .chain(fields.into_iter().map(Column::Field))
                .collect(),
            Columns::Named(names) => names.iter().cloned().map(Column::Field).collect(),
        };
        Ok((count, columns))
    }
}

pub(super) fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Nil
            | Value::Boolean(_)
            | Value::Integer(_)
            | Value::F32(_)
            | Value::F64(_)
            | Value::String(_)
            | Value::Ext(bigint::EXT_TYPE, _)
    )
}

fn write_table(
    source: &dyn Source,
    namespace: &str,
    count: u64,
    columns: &[Column],
    out: &mut Output<'_>,
) -> Result<()> {
    let mut text = String::new();
    let plural = if count == 1 { "record" } else { "records" };
    let _ = write!(
        text,
        "\n## {}\n\n{count} {plural}.\n\n| key | version | updated |",
        escape(namespace)
    );
    for column in columns {
        match column {
            Column::Value => text.push_str(" (value) |"),
            Column::Field(name) => {
                let _ = write!(text, " {} |", cell_text(name));
            }
        }
    }
    text.push_str("\n| --- | ---: | --- |");
    for _ in columns {
        text.push_str(" --- |");
    }
    text.push('\n');
    out.write(text.as_bytes())?;
    for record in source.records(namespace)? {
        let record = record?;
        let value = decode_value(&record)?;
        text.clear();
        let _ = write!(
            text,
            "| {} | {} | {} |",
            escape(&record.key),
            record.meta.version,
            short_time(record.meta.updated_at)
        );
        for column in columns {
            let shown = match (column, &value) {
                (Column::Value, v) if is_scalar(v) => Some(v),
                (Column::Field(name), Value::Map(entries)) => entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(name.as_str()))
                    .map(|(_, v)| v),
                _ => None,
            };
            let cell = match shown {
                Some(v) => cell_text(&display(&record, v)?),
                None => String::new(),
            };
            let _ = write!(text, " {cell} |");
        }
        text.push('\n');
        out.write(text.as_bytes())?;
    }
    Ok(())
}

/// A value as a summary cell shows it: strings as they are, anything else as
/// compact JSON.
pub(super) fn display(record: &SnapshotRecord, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.as_str().unwrap_or_default().to_owned()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Ext(bigint::EXT_TYPE, payload) if bigint::check(payload).is_ok() => {
            Ok(bigint::to_decimal(payload).unwrap_or_default())
        }
        Value::F64(f) if !f.is_finite() => Ok(f.to_string()),
        Value::F32(f) if !f.is_finite() => Ok(f.to_string()),
        _ => {
            let mut buf = Vec::new();
            write_json(record, v, false, 0, &mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

fn write_section(record: &SnapshotRecord, out: &mut Output<'_>) -> Result<()> {
    let value = decode_value(record)?;
    let mut json = Vec::new();
    write_json(record, &value, true, 0, &mut json)?;
    let json = String::from_utf8_lossy(&json);
    let fence = "`".repeat(longest_run(&json, '`').max(2) + 1);
    let m = &record.meta;
    let mut text = String::new();
    let _ = write!(
        text,
        "\n### {}\n\n\
         - version: {}\n\
         - created: revision {}\n\
         - modified: revision {}\n\
         - updated: {}\n\n\
         {fence}json\n{json}\n{fence}\n",
        escape(&record.key),
        m.version,
        m.create_revision,
        m.mod_revision,
        m.updated_at
    );
    out.write(text.as_bytes())
}

fn longest_run(text: &str, c: char) -> usize {
    let mut best = 0;
    let mut run = 0;
    for x in text.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// `2026-01-02 03:04:05Z`: a time to the second, for titles and tables.
pub(super) fn short_time(t: Timestamp) -> String {
    let full = t.to_string();
    match (full.find('.'), full.strip_suffix('Z')) {
        (Some(dot), Some(_)) => format!("{}Z", &full[..dot]).replacen('T', " ", 1),
        _ => full.replacen('T', " ", 1),
    }
}

/// A summary cell: shortened, line breaks as `<br>`, escaped.
fn cell_text(text: &str) -> String {
    let shown: String = if text.chars().count() > CELL_CHARS {
        let mut s: String = text.chars().take(CELL_CHARS).collect();
        s.push('…');
        s
    } else {
        text.to_owned()
    };
    escape(&shown)
}

/// Escapes text for a heading or a table cell so that a CommonMark parser reads
/// back exactly `text` (which, for namespaces and keys, holds no control
/// characters). Display-only text may hold control characters: a line break
/// becomes `<br>`, others become U+FFFD.
pub(crate) fn escape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let lead = chars.iter().take_while(|c| c.is_whitespace()).count();
    let trail = if lead == chars.len() {
        0
    } else {
        chars.iter().rev().take_while(|c| c.is_whitespace()).count()
    };
    let mut out = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let edge = i < lead || i + trail >= chars.len();
        match c {
            '\n' => out.push_str("<br>"),
            '\r' => {}
            '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c if edge && c.is_whitespace() => {
                let _ = write!(out, "&#x{:X};", u32::from(c));
            }
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '_' => {
                let inside = i > 0
                    && chars[i - 1].is_alphanumeric()
                    && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                if !inside {
                    out.push('\\');
                }
                out.push('_');
            }
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Reading

fn at_line(line: u64, section: Option<&str>, message: impl Into<String>) -> Error {
    Location::new(Place { line, column: None }, section.map(str::to_owned)).error(message)
}

/// A top-level block of the document, as far as reading needs it.
enum Block {
    Heading {
        level: HeadingLevel,
        text: String,
    },
    List {
        items: Vec<(String, u64)>,
    },
    Table {
        keys: Vec<(String, u64)>,
        summary: Summary,
    },
    Code {
        info: Option<String>,
        content: String,
        content_line: u64,
        closed: bool,
    },
    Paragraph,
    Html {
        text: String,
    },
    Other(&'static str),
}

struct Doc<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Doc<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Doc { text, line_starts }
    }

    /// The line (from 1) of a byte offset.
    fn line(&self, offset: usize) -> u64 {
        self.line_starts.partition_point(|&s| s <= offset) as u64
    }

    /// The top-level blocks with their first lines.
    fn blocks(&self) -> Result<Vec<(Block, u64)>> {
        let mut options = Options::empty();
        options.insert(Options::ENABLE_TABLES);
        let events: Vec<(Event<'a>, Range<usize>)> = Parser::new_ext(self.text, options)
            .into_offset_iter()
            .collect();
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < events.len() {
            let line = self.line(events[i].1.start);
            let end = block_end(&events, i);
            let inner = &events[(i + 1).min(end)..end];
            let block = match &events[i].0 {
                Event::Start(Tag::Heading { level, .. }) => Block::Heading {
                    level: *level,
                    text: inline_text(inner, line)?,
                },
                Event::Start(Tag::List(_)) => Block::List {
                    items: self.list_items(inner)?,
                },
                Event::Start(Tag::Table(_)) => Block::Table {
                    keys: self.table_keys(inner)?,
                    summary: self.summary(inner)?,
                },
                Event::Start(Tag::CodeBlock(kind)) => {
                    let info = match kind {
                        CodeBlockKind::Fenced(info) => {
                            Some(info.split_whitespace().next().unwrap_or("").to_owned())
                        }
                        CodeBlockKind::Indented => None,
                    };
                    let mut content = String::new();
                    let mut content_line = line + 1;
                    for (n, (event, range)) in inner.iter().enumerate() {
                        if let Event::Text(t) = event {
                            if n == 0 {
                                content_line = self.line(range.start);
                            }
                            content.push_str(t);
                        }
                    }
                    Block::Code {
                        info,
                        content,
                        content_line,
                        closed: fence_closed(&self.text[events[i].1.clone()]),
                    }
                }
                Event::Start(Tag::Paragraph) => Block::Paragraph,
                Event::Start(Tag::HtmlBlock) | Event::Html(_) => Block::Html {
                    text: self.text[events[i].1.clone()].trim().to_owned(),
                },
                Event::Start(Tag::BlockQuote(_)) => Block::Other("a block quote"),
                Event::Rule => Block::Other("a horizontal rule"),
                _ => Block::Other("an unexpected block"),
            };
            blocks.push((block, line));
            i = end + 1;
        }
        Ok(blocks)
    }

    /// The text of each item of a list, with its line.
    fn list_items(&self, inner: &[(Event<'a>, Range<usize>)]) -> Result<Vec<(String, u64)>> {
        let mut items = Vec::new();
        let mut i = 0;
        while i < inner.len() {
            let end = block_end(inner, i);
            if let Event::Start(Tag::Item) = inner[i].0 {
                let line = self.line(inner[i].1.start);
                let body = &inner[(i + 1).min(end)..end];
                items.push((inline_text(body, line)?, line));
            }
            i = end + 1;
        }
        Ok(items)
    }

    /// The first cell of each body row of a table, with its line.
    fn table_keys(&self, inner: &[(Event<'a>, Range<usize>)]) -> Result<Vec<(String, u64)>> {
        let mut keys = Vec::new();
        let mut i = 0;
        while i < inner.len() {
            let end = block_end(inner, i);
            if let Event::Start(Tag::TableRow) = inner[i].0 {
                let line = self.line(inner[i].1.start);
                let row = &inner[(i + 1).min(end)..end];
                if let Some((Event::Start(Tag::TableCell), _)) = row.first() {
                    let cell_end = block_end(row, 0);
                    keys.push((inline_text(&row[1.min(cell_end)..cell_end], line)?, line));
                }
            }
            i = end + 1;
        }
        Ok(keys)
    }

    /// A summary table's column names and the source text of its body cells.
    fn summary(&self, inner: &[(Event<'a>, Range<usize>)]) -> Result<Summary> {
        let mut summary = Summary::default();
        let mut i = 0;
        while i < inner.len() {
            let end = block_end(inner, i);
            let row = &inner[(i + 1).min(end)..end];
            match inner[i].0 {
                Event::Start(Tag::TableHead) => {
                    for (range, _) in cells(row) {
                        summary.columns.push(self.text[range].trim().to_owned());
                    }
                }
                Event::Start(Tag::TableRow) => summary.rows.push(
                    cells(row)
                        .map(|(range, _)| self.text[range].trim().to_owned())
                        .collect(),
                ),
                _ => {}
            }
            i = end + 1;
        }
        Ok(summary)
    }

    /// The blocks, which must end with the end marker (dropped here) and
    /// hold no unclosed code block.
    fn blocks_to_end(&self) -> Result<Vec<(Block, u64)>> {
        let mut blocks = self.blocks()?;
        if let Some((_, line)) = blocks
            .iter()
            .find(|(b, _)| matches!(b, Block::Code { closed: false, .. }))
        {
            return Err(at_line(
                *line,
                None,
                "this code block is not closed: its closing ``` line is missing",
            ));
        }
        match blocks.last() {
            Some((Block::Html { text }, _)) if text == END => {
                blocks.pop();
            }
            _ => {
                return Err(at_line(
                    self.line(self.text.len()),
                    None,
                    format!(
                        "the snapshot does not end with the line {END}: the file was probably \
                         cut short (if the line was removed by hand, add it back)"
                    ),
                ));
            }
        }
        Ok(blocks)
    }

    fn read(&self, sink: &mut dyn FnMut(Parsed) -> Result<()>) -> Result<Header> {
        let blocks = self.blocks_to_end()?;
        let mut it: Blocks = blocks
            .into_iter()
            .filter(|(b, _)| !matches!(b, Block::Html { .. }))
            .collect::<Vec<_>>()
            .into_iter()
            .peekable();
        let header = read_title(&mut it)?;
        // Paragraphs for people may follow, up to the first namespace.
        while let Some((Block::Paragraph, _)) = it.peek() {
            it.next();
        }
        let mut namespace: Option<Namespace> = None;
        while let Some((block, line)) = it.next() {
            match block {
                Block::Heading {
                    level: HeadingLevel::H2,
                    text,
                } => {
                    if let Some(done) = namespace.take() {
                        done.check_table()?;
                    }
                    namespace = Some(Namespace {
                        name: text,
                        line,
                        table: None,
                        summary: Summary::default(),
                        sections: Vec::new(),
                    });
                }
                Block::Heading {
                    level: HeadingLevel::H3,
                    text: key,
                } => read_section(namespace.as_mut(), key, line, &mut it, sink)?,
                Block::Table { keys, summary } => match namespace.as_mut() {
                    Some(ns) if ns.table.is_none() && ns.sections.is_empty() => {
                        ns.table = Some(keys);
                        ns.summary = summary;
                    }
                    _ => {
                        return Err(at_line(
                            line,
                            None,
                            "a table may only follow a `## namespace` heading, before its \
                             record sections",
                        ));
                    }
                },
                Block::Paragraph if namespace.as_ref().is_some_and(|ns| ns.sections.is_empty()) => {
                }
                other => {
                    return Err(at_line(
                        line,
                        namespace
                            .as_ref()
                            .map(|ns| format!("namespace {}", ns.name))
                            .as_deref(),
                        format!(
                            "found {} here; after the header come `## namespace` sections, each \
                             with an optional summary table and `### key` record sections",
                            describe(&other)
                        ),
                    ));
                }
            }
        }
        if let Some(done) = namespace.take() {
            done.check_table()?;
        }
        Ok(header)
    }
}

/// The blocks of a snapshot after its end marker is checked and its HTML
/// comments dropped.
type Blocks = std::iter::Peekable<std::vec::IntoIter<(Block, u64)>>;

/// The title and the header list under it.
fn read_title(it: &mut Blocks) -> Result<Header> {
    match (it.next(), it.next()) {
        (
            Some((
                Block::Heading {
                    level: HeadingLevel::H1,
                    ..
                },
                _,
            )),
            Some((Block::List { items }, line)),
        ) => read_header(&items, line),
        (
            Some((
                Block::Heading {
                    level: HeadingLevel::H1,
                    ..
                },
                line,
            )),
            _,
        ) => Err(at_line(
            line + 1,
            None,
            "the title must be followed by the header list (- format: ..., - version: \
             ..., - revision: ..., - time: ...)",
        )),
        (first, _) => Err(at_line(
            first.map_or(0, |(_, line)| line),
            None,
            "a Markdown snapshot starts with a `# ` title line and the header list",
        )),
    }
}

/// A record section (`### key`, at `line`): its metadata list and its
/// ```json block, handed to `sink`.
fn read_section(
    namespace: Option<&mut Namespace>,
    key: String,
    line: u64,
    it: &mut Blocks,
    sink: &mut dyn FnMut(Parsed) -> Result<()>,
) -> Result<()> {
    let Some(ns) = namespace else {
        return Err(at_line(
            line,
            None,
            format!(
                "the record section {} is not under a `## namespace` heading",
                quote(&key)
            ),
        ));
    };
    let section = format!("section {} / {key}", ns.name);
    let meta = match it.next() {
        Some((Block::List { items }, list_line)) => read_meta(&items, list_line, &section)?,
        other => {
            return Err(at_line(
                other.map_or(line, |(_, l)| l),
                Some(&section),
                "the section must start with its metadata list (- version: N, \
                     - created: revision N, - modified: revision N, - updated: TIME)",
            ));
        }
    };
    let value = match it.next() {
        Some((
            Block::Code {
                info: Some(info),
                content,
                content_line,
                ..
            },
            _,
        )) if info == "json" => read_block(&content, content_line, &section)?,
        other => {
            return Err(at_line(
                other.map_or(line, |(_, l)| l),
                Some(&section),
                "the section has no ```json block with the value after its \
                     metadata list",
            ));
        }
    };
    if let Some((block, next_line)) = it.peek()
        && !matches!(
            block,
            Block::Heading {
                level: HeadingLevel::H2 | HeadingLevel::H3,
                ..
            }
        )
    {
        return Err(at_line(
            *next_line,
            Some(&section),
            format!(
                "found {} in a record section, which holds only its metadata \
                     list and one ```json block",
                describe(block)
            ),
        ));
    }
    let record = SnapshotRecord {
        namespace: ns.name.clone(),
        key,
        meta,
        value,
    };
    let stale_cells = ns.stale_cells(&record, &section)?;
    ns.sections.push((record.key.clone(), line));
    sink(Parsed {
        record,
        at: Location::new(Place { line, column: None }, Some(section)),
        stale_cells,
    })?;
    Ok(())
}

/// A summary-table cell that does not show what its record's section holds.
#[derive(Debug, Clone)]
pub(crate) struct SummaryCell {
    line: u64,
    section: String,
    /// The cell's column (0 is the key), and its name as written.
    index: usize,
    column: String,
    /// The cell as written in the file.
    written: String,
}

impl SummaryCell {
    /// What an export of `record` writes in this cell; `None` when the
    /// column cannot be told apart from another (two of the record's fields
    /// are written alike once trimmed, such as "" and a tab).
    fn shown_for(&self, record: &SnapshotRecord, value: &Value) -> Result<Option<String>> {
        let shown = match (self.index, self.column.as_str(), value) {
            (1, _, _) => return Ok(Some(record.meta.version.to_string())),
            (2, _, _) => return Ok(Some(short_time(record.meta.updated_at))),
            (_, "(value)", v) if is_scalar(v) => Some(v),
            // Column names are compared as written (escaped), as an export
            // writes them.
            (_, field, Value::Map(entries)) => {
                let mut named = entries.iter().filter(|(k, _)| {
                    k.as_str()
                        .map(|k| cell_text(k).trim().to_owned())
                        .as_deref()
                        == Some(field)
                });
                let first = named.next();
                if named.next().is_some() {
                    return Ok(None);
                }
                first.map(|(_, v)| v)
            }
            _ => None,
        };
        // Cells are read trimmed, so they are compared trimmed.
        match shown {
            Some(v) => Ok(Some(cell_text(&display(record, v)?).trim().to_owned())),
            None => Ok(Some(String::new())),
        }
    }

    /// Accepts a cell that shows `current` (the store's record now: the
    /// section was edited and the table is merely stale); refuses one edited
    /// by hand, or any when there is no record to compare with (`None`).
    pub(crate) fn check(&self, key: &str, current: Option<&SnapshotRecord>) -> Result<()> {
        if let Some(current) = current
            && self
                .shown_for(current, &decode_value(current)?)?
                .is_none_or(|shown| shown == self.written)
        {
            return Ok(());
        }
        let name = if self.column.is_empty() {
            format!("column {}", self.index + 1)
        } else {
            quote(&self.column)
        };
        Err(at_line(
            self.line,
            Some(&self.section),
            format!(
                "the summary table's {name} cell of key {} was edited to {}, which its \
                 section does not say; the table is generated from the sections and is not \
                 read back: make the change in the ```json block (or the metadata list), \
                 or delete the table",
                quote(key),
                quote(&self.written),
            ),
        ))
    }
}

/// A summary table as read: its column names, and each body row's cells as
/// written in the file (escaped, trimmed).
#[derive(Debug, Default)]
struct Summary {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The cells of a table row: each cell's source range and its inline events.
fn cells<'e, 'a>(
    row: &'e [(Event<'a>, Range<usize>)],
) -> impl Iterator<Item = (Range<usize>, &'e [(Event<'a>, Range<usize>)])> + 'e {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < row.len() {
            let end = block_end(row, i);
            let start = i;
            i = end + 1;
            if let Event::Start(Tag::TableCell) = row[start].0 {
                return Some((row[start].1.clone(), &row[(start + 1).min(end)..end]));
            }
        }
        None
    })
}

/// A namespace section being read.
struct Namespace {
    name: String,
    line: u64,
    table: Option<Vec<(String, u64)>>,
    summary: Summary,
    sections: Vec<(String, u64)>,
}

impl Namespace {
    /// The cells of a record's summary-table row that do not show what its
    /// section holds. The table is generated from the sections and is not read
    /// back, so such a cell is either stale (the section was edited: fine) or
    /// edited by hand (which must not be ignored without a word); only the
    /// store can tell, so the import decides ([`SummaryCell::check`]). A row
    /// that names another key is `check_table`'s to report.
    fn stale_cells(&self, record: &SnapshotRecord, section: &str) -> Result<Vec<SummaryCell>> {
        let (Some(table), index) = (&self.table, self.sections.len()) else {
            return Ok(Vec::new());
        };
        let (Some((row_key, row_line)), Some(row)) =
            (table.get(index), self.summary.rows.get(index))
        else {
            return Ok(Vec::new());
        };
        if *row_key != record.key {
            return Ok(Vec::new());
        }
        let value = decode_value(record)?;
        let mut stale = Vec::new();
        for (index, written) in row.iter().enumerate().skip(1) {
            let column = self.summary.columns.get(index).map_or("", String::as_str);
            // A shortened column name may stand for several fields: such a
            // column cannot be told apart, so it is not compared.
            if index > 2 && column.ends_with('…') {
                continue;
            }
            let cell = SummaryCell {
                line: *row_line,
                section: section.to_owned(),
                index,
                column: self.summary.columns.get(index).cloned().unwrap_or_default(),
                written: written.clone(),
            };
            if cell
                .shown_for(record, &value)?
                .is_some_and(|shown| shown != cell.written)
            {
                stale.push(cell);
            }
        }
        Ok(stale)
    }

    /// The summary table, if any, must list the section keys in order.
    fn check_table(&self) -> Result<()> {
        let Some(table) = &self.table else {
            return Ok(());
        };
        let where_ = format!("namespace {}", self.name);
        for (i, (key, line)) in table.iter().enumerate() {
            match self.sections.get(i) {
                Some((section, _)) if section == key => {}
                Some((section, section_line)) => {
                    return Err(at_line(
                        *section_line,
                        Some(&where_),
                        format!(
                            "the summary table lists key {} (line {line}) where the \
                             sections have {}; the table and the ### sections must \
                             name the same keys in the same order (fix the table, or delete it)",
                            quote(key),
                            quote(section)
                        ),
                    ));
                }
                None => {
                    return Err(at_line(
                        *line,
                        Some(&where_),
                        format!(
                            "the summary table lists key {}, which has no ### section; \
                             add the section or remove the row",
                            quote(key)
                        ),
                    ));
                }
            }
        }
        if let Some((key, line)) = self.sections.get(table.len()) {
            return Err(at_line(
                *line,
                Some(&where_),
                format!(
                    "the section for key {} is missing from the summary table of the \
                     namespace (line {}); add a row or delete the table",
                    quote(key),
                    self.line
                ),
            ));
        }
        Ok(())
    }
}

fn describe(block: &Block) -> &'static str {
    match block {
        Block::Heading { level, .. } => match level {
            HeadingLevel::H1 => "a `#` heading",
            HeadingLevel::H2 => "a `##` heading",
            HeadingLevel::H3 => "a `###` heading",
            _ => "a heading deeper than `###`",
        },
        Block::List { .. } => "a list",
        Block::Table { .. } => "a table",
        Block::Code { .. } => "a code block",
        Block::Paragraph => "a paragraph",
        Block::Html { .. } => "HTML",
        Block::Other(what) => what,
    }
}

/// Whether the source of a fenced code block ends with a closing fence (at
/// least as long as the opening one, of the same character).
fn fence_closed(source: &str) -> bool {
    let mut lines = source.trim_end_matches(['\n', '\r']).lines();
    let Some(first) = lines.next().map(str::trim_start) else {
        return false;
    };
    let Some(c) = first.chars().next().filter(|c| *c == '`' || *c == '~') else {
        // An indented code block has no fences.
        return true;
    };
    let open = first.chars().take_while(|x| *x == c).count();
    lines
        .last()
        .map(str::trim)
        .is_some_and(|last| last.chars().all(|x| x == c) && last.chars().count() >= open)
}

/// The index of the event that closes the one at `start` (itself if it opens
/// nothing).
fn block_end(events: &[(Event<'_>, Range<usize>)], start: usize) -> usize {
    if !matches!(events[start].0, Event::Start(_)) {
        return start;
    }
    let mut depth = 0usize;
    for (i, (event, _)) in events.iter().enumerate().skip(start) {
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    events.len() - 1
}

/// The plain text of inline content (escapes and references resolved, markup
/// dropped). Nested blocks are refused.
fn inline_text(events: &[(Event<'_>, Range<usize>)], line: u64) -> Result<String> {
    let mut out = String::new();
    for (event, _) in events {
        match event {
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::Html(t) => {
                out.push_str(t);
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::Start(
                Tag::List(_)
                | Tag::Item
                | Tag::CodeBlock(_)
                | Tag::BlockQuote(_)
                | Tag::Heading { .. }
                | Tag::Table(_)
                | Tag::HtmlBlock,
            ) => {
                return Err(at_line(
                    line,
                    None,
                    "unexpected nested block; headings, list items and cells hold one line of \
                     text",
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Splits list items `name: value`, refusing repeats and unknown names.
fn items<'i>(
    items: &'i [(String, u64)],
    known: &[&str],
    section: Option<&str>,
) -> Result<Vec<Option<(&'i str, u64)>>> {
    let mut found: Vec<Option<(&str, u64)>> = vec![None; known.len()];
    for (text, line) in items {
        let Some((name, value)) = text.split_once(':') else {
            return Err(at_line(
                *line,
                section,
                format!("the list item {} is not `name: value`", quote(text)),
            ));
        };
        let name = name.trim();
        let Some(slot) = known.iter().position(|k| *k == name) else {
            return Err(at_line(
                *line,
                section,
                format!(
                    "unknown item {}; expected {}",
                    quote(name),
                    known.join(", ")
                ),
            ));
        };
        if let Some((_, first)) = found[slot] {
            return Err(at_line(
                *line,
                section,
                format!(
                    "the item {} appears twice (first at line {first})",
                    quote(name)
                ),
            ));
        }
        found[slot] = Some((value.trim(), *line));
    }
    for (slot, name) in known.iter().enumerate() {
        if found[slot].is_none() {
            let line = items.first().map_or(0, |(_, l)| *l);
            return Err(at_line(
                line,
                section,
                format!("the list lacks the item {name:?}"),
            ));
        }
    }
    Ok(found)
}

fn number(value: (&str, u64), what: &str, section: Option<&str>) -> Result<u64> {
    let (text, line) = value;
    text.parse::<u64>().map_err(|_| {
        at_line(
            line,
            section,
            format!(
                "{what} must be a whole number, not \"{}\"",
                Shown::new(text)
            ),
        )
    })
}

/// A revision or version: a whole number no higher than an import accepts.
fn counter(value: (&str, u64), what: &str, section: Option<&str>) -> Result<u64> {
    let n = number(value, what, section)?;
    match counter::check_imported(what, n) {
        Some(why) => Err(at_line(value.1, section, why)),
        None => Ok(n),
    }
}

fn time(value: (&str, u64), section: Option<&str>) -> Result<Timestamp> {
    let (text, line) = value;
    text.parse::<Timestamp>()
        .map_err(|e| at_line(line, section, e.to_string()))
}

fn read_header(list: &[(String, u64)], line: u64) -> Result<Header> {
    let found = items(list, &["format", "version", "revision", "time"], None)?;
    let [Some(format), Some(version), Some(revision), Some(at)] = found[..] else {
        return Err(at_line(line, None, "the header list is incomplete"));
    };
    if format.0 != FORMAT {
        return Err(at_line(
            format.1,
            None,
            format!(
                "this is not a statelog snapshot: its format is {}, not {FORMAT:?}",
                quote(format.0)
            ),
        ));
    }
    let v = number(version, "the version", None)?;
    if v != FORMAT_VERSION {
        let hint = if v > FORMAT_VERSION {
            "; import it with a newer statelog"
        } else {
            ""
        };
        return Err(at_line(
            version.1,
            None,
            format!(
                "the snapshot has format version {v}, but this statelog reads version \
                 {FORMAT_VERSION}{hint}"
            ),
        ));
    }
    Ok(Header {
        revision: counter(revision, "the revision", None)?,
        time: time(at, None)?,
    })
}

fn read_meta(list: &[(String, u64)], line: u64, section: &str) -> Result<Meta> {
    let s = Some(section);
    let found = items(list, &["version", "created", "modified", "updated"], s)?;
    let [Some(version), Some(created), Some(modified), Some(updated)] = found[..] else {
        return Err(at_line(line, s, "the metadata list is incomplete"));
    };
    let revision = |(text, line): (&str, u64), what: &str| {
        counter(
            (text.strip_prefix("revision ").unwrap_or(text), line),
            what,
            s,
        )
    };
    Ok(Meta {
        version: counter(version, "the version", s)?,
        create_revision: revision(created, "the created revision")?,
        mod_revision: revision(modified, "the modified revision")?,
        updated_at: time(updated, s)?,
    })
}

/// Reads the value in a `json` block whose content starts on `first_line`.
fn read_block(content: &str, first_line: u64, section: &str) -> Result<crate::value::RawValue> {
    let offset = first_line.saturating_sub(1);
    let mut r = mapping::reader(content.as_bytes());
    let value = mapping::read_value(&mut r, Mode::Tagged)
        .map_err(|e| read_error(e, offset, Some(section)))?;
    let end = mapping::place(&r);
    let more = r
        .has_next()
        .map_err(|e| read_error(mapping::reader_error(e), offset, Some(section)))?;
    if more {
        let at = mapping::place(&r);
        return Err(Location::new(
            Place {
                line: at.line + offset,
                column: at.column,
            },
            Some(section.to_owned()),
        )
        .error("the ```json block holds more than one JSON value"));
    }
    encode_value(&value).map_err(|m| {
        Location::new(
            Place {
                line: first_line,
                column: None,
            },
            Some(section.to_owned()),
        )
        .error(format!(
            "{m} (the value ends at line {})",
            end.line + offset
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_inline(md: &str) -> String {
        let mut options = Options::empty();
        options.insert(Options::ENABLE_TABLES);
        let events: Vec<_> = Parser::new_ext(md, options).into_offset_iter().collect();
        let end = block_end(&events, 0);
        inline_text(&events[1..end], 1).unwrap()
    }

    #[test]
    fn escaped_text_reads_back_in_headings_and_cells() {
        let samples = [
            "t1",
            "task_123",
            "_private_",
            "a*b*c",
            "`code` and ``more``",
            "pipe | and \\| backslash \\",
            " leading and trailing ",
            "\u{3000}wide\u{a0}",
            "# not a heading #",
            "<b>html</b> &amp; [link](x) ![img](y) ~~s~~ $x$",
            "  ",
            "日本語のキー/é/🎉",
            "1. - + > =",
        ];
        for s in samples {
            let heading = format!("### {}\n", escape(s));
            assert_eq!(parse_inline(&heading), s, "heading {heading:?}");
            let table = format!("| h |\n| --- |\n| {} |\n", escape(s));
            let mut options = Options::empty();
            options.insert(Options::ENABLE_TABLES);
            let events: Vec<_> = Parser::new_ext(&table, options)
                .into_offset_iter()
                .collect();
            let doc = Doc::new(&table);
            let end = block_end(&events, 0);
            let keys = doc.table_keys(&events[1..end]).unwrap();
            assert_eq!(keys[0].0, s, "cell {table:?}");
        }
    }

    #[test]
    fn cells_show_line_breaks_and_shorten() {
        assert_eq!(cell_text("a\nb"), "a<br>b");
        let long = "x".repeat(100);
        assert_eq!(cell_text(&long).chars().count(), CELL_CHARS + 1);
    }

    #[test]
    fn short_times() {
        let t: Timestamp = "2026-01-02T03:04:05.000006Z".parse().unwrap();
        assert_eq!(short_time(t), "2026-01-02 03:04:05Z");
    }
}
