//! `statelog export [--format F] [--ns NS]... [--prefix P] [--columns C,..]
//! [--out FILE]`: one consistent snapshot of the store through the library's
//! snapshot adapters.
//!
//! Writes to stdout, or to FILE atomically (a temporary file beside it,
//! synced, then renamed: a dashboard reading FILE never sees half an export).
//! A missing directory of FILE is created first (and the summary says so);
//! errors name FILE, never the temporary file. The format defaults to FILE's
//! extension, else JSON. With `--out`, a summary follows on stdout (`--json`:
//! `{"format", "out", "created_dir", "revision", "namespaces", "records",
//! "bytes"}`). The store is opened with a small page cache, so a large export
//! does not fill memory.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use statelog::snapshot::{self, Columns, ExportOptions, ExportSummary, Format};
use statelog::{Shown, Store};

use crate::context::{Access, Ctx};
use crate::exit::Code;
use crate::output::plural;
use crate::progress::{self, Output};

/// The snapshot formats, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// One JSON document, indented
    Json,
    /// One JSON document on one line
    JsonCompact,
    /// JSON Lines: a header line, then one line per record
    Jsonl,
    /// Markdown: a summary table per namespace, a section per record
    Md,
    /// HTML: one self-contained page, a table per namespace to filter and sort
    /// (export only)
    Html,
}

impl FormatArg {
    pub fn format(self) -> Format {
        match self {
            FormatArg::Json => Format::Json,
            FormatArg::JsonCompact => Format::JsonCompact,
            FormatArg::Jsonl => Format::JsonLines,
            FormatArg::Md => Format::Markdown,
            FormatArg::Html => Format::Html,
        }
    }

    pub fn name(format: Format) -> &'static str {
        match format {
            Format::JsonCompact => "json-compact",
            Format::JsonLines => "jsonl",
            Format::Markdown => "md",
            Format::Html => "html",
            _ => "json",
        }
    }
}

/// The format `path`'s extension names, if any.
pub fn format_of(path: &Path) -> Option<Format> {
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension)
}

pub const EXAMPLES: &str = r#"Examples:
  statelog export --out state.json                      # atomically; format from the extension
  statelog export --format md --ns jobs --out dashboard/STATUS.md
  statelog export --ns jobs --out dashboard/index.html  # a page to filter and sort
  statelog export --format jsonl | gzip > state.jsonl.gz"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The format [default: from --out's extension, else json]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Only this namespace (repeat for several)
    #[arg(long = "ns", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Only keys that start with P
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// The columns of Markdown summary tables and HTML tables: top-level
    /// fields, comma-separated [default: the values' scalar fields]
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Write to FILE (atomically) instead of stdout; its directory is created
    /// if missing
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub at: super::past::AtArgs,
}

#[derive(Serialize)]
struct ExportDoc<'a> {
    format: &'static str,
    out: &'a str,
    /// The directory created for `out`, if it was missing.
    created_dir: Option<String>,
    revision: u64,
    namespaces: u64,
    records: u64,
    bytes: u64,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let out = args.out.clone().filter(|p| p.as_os_str() != "-");
    let format = match (args.format, &out) {
        (Some(f), _) => f.format(),
        (None, Some(path)) => format_of(path).unwrap_or(Format::Json),
        (None, None) => Format::Json,
    };
    let mut options = ExportOptions::new(format);
    if !args.namespaces.is_empty() {
        options = options.namespaces(args.namespaces.iter().cloned());
    }
    if let Some(prefix) = &args.prefix {
        options = options.key_prefix(prefix.clone());
    }
    if !args.columns.is_empty() {
        options = options.columns(Columns::Named(args.columns.clone()));
    }
    let bar = progress::export(
        ctx,
        if out.is_none() {
            Output::Stdout
        } else {
            Output::Elsewhere
        },
    );
    let counter = bar.clone();
    options = options.progress(move |done| counter.set_message(progress::records(done)));

    ctx.with_store(Access::Scan, |store| {
        let result = match &out {
            Some(path) => write_atomically(path, |file| {
                export(store, &args.at, bar.wrap_write(file), &options)
            }),
            None => export(
                store,
                &args.at,
                bar.wrap_write(std::io::stdout().lock()),
                &options,
            )
            .map(|summary| (summary, None)),
        };
        bar.finish_and_clear();
        let (summary, created) = result?;
        let Some(path) = &out else {
            return Ok(Code::Ok);
        };
        if ctx.json {
            ctx.print_json(&ExportDoc {
                format: FormatArg::name(format),
                out: &path.display().to_string(),
                created_dir: created.map(|d| d.display().to_string()),
                revision: summary.header.revision,
                namespaces: summary.namespaces,
                records: summary.records,
                bytes: summary.bytes,
            })?;
        } else {
            let shown = Shown::path(path);
            if let Some(dir) = &created {
                ctx.say(format!(
                    "created the directory {} for {shown}",
                    Shown::path(dir)
                ))?;
            }
            ctx.say(format!(
                "exported {} in {} at revision {} to {shown} ({} bytes)",
                plural(summary.records, "record", "records"),
                plural(summary.namespaces, "namespace", "namespaces"),
                summary.header.revision,
                summary.bytes
            ))?;
        }
        Ok(Code::Ok)
    })
}

fn export(
    store: &Store,
    at: &super::past::AtArgs,
    out: impl Write,
    options: &ExportOptions,
) -> anyhow::Result<ExportSummary> {
    let snap = at.snapshot(store)?;
    snapshot::export_snapshot(&snap, out, options).context("the export failed")
}

/// Runs `write` on a temporary file beside `path`, syncs it, renames it over
/// `path` and syncs the directory; on failure removes it and leaves `path` as
/// it was. A missing directory of `path` is created first; it is returned.
/// Errors name `path` (the temporary file is ours, not the user's).
fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> anyhow::Result<T>,
) -> anyhow::Result<(T, Option<PathBuf>)> {
    let shown = Shown::path(path);
    let name = path
        .file_name()
        .with_context(|| format!("--out {shown} names no file"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let created = if dir.exists() {
        None
    } else {
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "cannot create the directory {} for --out {shown}",
                Shown::path(&dir)
            )
        })?;
        Some(dir.clone())
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = File::create(&tmp)
            .with_context(|| format!("cannot write {shown} (in {})", Shown::path(&dir)))?;
        let value = write(&mut file)?;
        file.sync_all()
            .with_context(|| format!("cannot write {shown}: the sync failed"))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {shown}"))?;
        // The rename is durable once the directory is synced.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|value| (value, created))
}
