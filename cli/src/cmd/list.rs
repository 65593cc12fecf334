//! `statelog list [NS] [--prefix P] [--keys]`: a namespace's records in key
//! order, from one snapshot; without NS, the namespaces and their record
//! counts.
//!
//! - plain: a table (key, version, updated, value as compact JSON; values are
//!   shortened to fit when stdout is a terminal);
//! - `--keys`: the keys alone, one per line (`for k in $(statelog list jobs
//!   --keys)`);
//! - `--json`: `{"namespace", "revision", "records": [{"key", "version",
//!   "create_revision", "mod_revision", "updated_at", "value"}, ...]}`, with
//!   `--keys` `{"namespace", "revision", "keys": [...]}`; without NS
//!   `{"revision", "namespaces": [{"namespace", "records"}, ...]}`.

use std::io::Write;

use anyhow::Context as _;
use serde::Serialize;
use statelog::{KeyRange, Snapshot};

use crate::context::{Access, Ctx, with_shape};
use crate::exit::Code;
use crate::output::{self, RecordDoc};

/// Width a terminal table is fitted into.
const TABLE_WIDTH: usize = 120;

pub const EXAMPLES: &str = r#"Examples:
  statelog list                          # the namespaces and their record counts
  statelog list jobs --prefix 2026-03-
  statelog list jobs --keys | while read -r job; do echo "$job"; done"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace (omit to list the namespaces)
    pub namespace: Option<String>,
    /// Only keys that start with P
    #[arg(long, value_name = "P", requires = "namespace")]
    pub prefix: Option<String>,
    /// Print only the keys, one per line
    #[arg(long, requires = "namespace")]
    pub keys: bool,
    #[command(flatten)]
    pub at: super::past::AtArgs,
}

#[derive(Serialize)]
struct NamespaceDoc {
    namespace: String,
    records: u64,
}

#[derive(Serialize)]
struct NamespacesDoc {
    revision: u64,
    namespaces: Vec<NamespaceDoc>,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    // The output is made with the store open and printed after it is closed:
    // a pipeline whose next stage runs statelog (`statelog list jobs --keys |
    // while read k; do statelog get jobs "$k"; done`) must not wait for a lock
    // held by a list blocked on a full pipe.
    let output = ctx.with_store(Access::Records, |store| {
        let snapshot = args.at.snapshot(store)?;
        match &args.namespace {
            None => namespaces(ctx, &snapshot),
            Some(ns) => records(ctx, &snapshot, ns, &args),
        }
    })?;
    let mut out = std::io::stdout().lock();
    out.write_all(&output)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    Ok(Code::Ok)
}

fn namespaces(ctx: &Ctx, snapshot: &Snapshot) -> anyhow::Result<Vec<u8>> {
    let mut docs = Vec::new();
    for namespace in snapshot.namespaces()? {
        let records = snapshot.count(&namespace)?;
        docs.push(NamespaceDoc { namespace, records });
    }
    if ctx.json {
        let doc = serde_json::to_string(&NamespacesDoc {
            revision: snapshot.revision()?,
            namespaces: docs,
        })?;
        return Ok(format!("{}\n", with_shape(&doc)).into_bytes());
    }
    if docs.is_empty() {
        return Ok(quiet_or(ctx, "the store holds no records\n"));
    }
    let width = docs
        .iter()
        .map(|d| d.namespace.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for d in &docs {
        text.push_str(&format!(
            "{:width$}  {}\n",
            d.namespace,
            output::plural(d.records, "record", "records")
        ));
    }
    Ok(text.into_bytes())
}

/// `text` unless `--quiet` (a remark, not data).
fn quiet_or(ctx: &Ctx, text: &str) -> Vec<u8> {
    if ctx.quiet {
        Vec::new()
    } else {
        text.as_bytes().to_vec()
    }
}

fn records(ctx: &Ctx, snapshot: &Snapshot, ns: &str, args: &Args) -> anyhow::Result<Vec<u8>> {
    let range = match &args.prefix {
        Some(prefix) => KeyRange::prefix(prefix.clone()),
        None => KeyRange::all(),
    };
    let list = snapshot.list_raw(ns, range)?;
    let mut out = Vec::new();
    if ctx.json {
        let head = serde_json::json!({"namespace": ns, "revision": snapshot.revision()?});
        let head = with_shape(&serde_json::to_string(&head)?);
        // `{"shape":..,"namespace":..,"revision":..` then the records.
        write!(
            out,
            "{},\"{}\":[",
            head.trim_end_matches('}'),
            if args.keys { "keys" } else { "records" }
        )?;
        for (i, item) in list.enumerate() {
            let (key, record) = item?;
            if i > 0 {
                out.push(b',');
            }
            if args.keys {
                serde_json::to_writer(&mut out, &key)?;
            } else {
                serde_json::to_writer(&mut out, &RecordDoc::new(None, &key, &record)?)?;
            }
        }
        out.extend_from_slice(b"]}\n");
    } else if args.keys {
        for item in list {
            let (key, _) = item?;
            writeln!(out, "{key}")?;
        }
    } else {
        let mut rows = Vec::new();
        for item in list {
            let (key, record) = item?;
            let value = output::json_text(&record.value)?.get().to_owned();
            rows.push((
                key,
                record.version.to_string(),
                record.updated_at.to_string(),
                value,
            ));
        }
        if rows.is_empty() {
            return Ok(quiet_or(ctx, &format!("{ns} holds no records\n")));
        }
        let w = |f: fn(&(String, String, String, String)) -> &String, min: usize| {
            rows.iter()
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let (wk, wv, wu) = (w(|r| &r.0, 3), w(|r| &r.1, 7), w(|r| &r.2, 7));
        let room = TABLE_WIDTH.saturating_sub(wk + wv + wu + 6).max(20);
        let terminal = ctx.stdout_is_terminal();
        writeln!(
            out,
            "{:wk$}  {:wv$}  {:wu$}  VALUE",
            "KEY", "VERSION", "UPDATED"
        )?;
        for (key, version, updated, value) in &rows {
            let value = if terminal {
                output::shorten(value, room)
            } else {
                value.clone()
            };
            writeln!(out, "{key:wk$}  {version:>wv$}  {updated:wu$}  {value}")?;
        }
    }
    Ok(out)
}
