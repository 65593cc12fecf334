//! `statelog get NS KEY [--meta] [--field PATH]`: print a record.
//!
//! - plain: the value as JSON, indented as a JSON export writes it;
//! - `--meta`: `{"version", "create_revision", "mod_revision", "updated_at",
//!   "value"}`, indented (a JSON snapshot's record);
//! - `--field a.b`: that field raw, for `$(...)`: a string without quotes,
//!   an integer in full decimal, anything else as compact JSON;
//! - `--json`: one line, `{"namespace", "key", "version", "create_revision",
//!   "mod_revision", "updated_at", "value"}`; with `--field`, `{"namespace",
//!   "key", "version", "field", "value"}` with the field's value.
//!
//! A missing record, or a missing field, exits 4.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::value::RawValue as JsonText;

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::fields::{self, FieldPath};
use crate::output::{self, RecordDoc};
use statelog::Shown;

pub const EXAMPLES: &str = r#"Examples:
  statelog get jobs job42                # the value, indented JSON
  statelog get jobs job42 --field status # running (raw: no quotes)
  statelog get jobs job42 --meta         # with version, revisions and time
  statelog get jobs job42 --json | jq .version
  statelog get jobs job42 --at-revision 120  # as it was at revision 120"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
    /// Print the version, revisions and time of the last write with the value
    #[arg(long)]
    pub meta: bool,
    /// Print only this field (a.b.c), strings without quotes; exit 4 if absent
    #[arg(long, value_name = "PATH", value_parser = FieldPath::parse, conflicts_with = "meta")]
    pub field: Option<FieldPath>,
    #[command(flatten)]
    pub at: super::past::AtArgs,
}

#[derive(Serialize)]
struct FieldDoc<'a> {
    namespace: &'a str,
    key: &'a str,
    version: u64,
    field: &'a str,
    value: Box<JsonText>,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    ctx.with_store(Access::Records, |store| {
        let record = if args.at.is_past() {
            args.at.snapshot(store)?.get_raw(ns, key)?
        } else {
            store.get_raw(ns, key)?
        };
        let record =
            record.ok_or_else(|| fail(Code::NotFound, format!("{shown} does not exist")))?;
        if let Some(path) = &args.field {
            let tree = fields::decode(&record.value).map_err(anyhow::Error::msg)?;
            let value = fields::lookup(&tree, path)
                .map_err(|m| fail(Code::NotFound, format!("{shown}: {m}")))?;
            let raw = fields::encode(value).map_err(anyhow::Error::msg)?;
            if ctx.json {
                ctx.print_json(&FieldDoc {
                    namespace: ns,
                    key,
                    version: record.version,
                    field: &path.text,
                    value: output::json_text(&raw)?,
                })?;
            } else {
                ctx.print(fields::raw_text(value).map_err(anyhow::Error::msg)?)?;
            }
        } else if ctx.json {
            ctx.print_json(&RecordDoc::new(Some(ns), key, &record)?)?;
        } else if args.meta {
            let value = output::pretty(&record.value)?.replace('\n', "\n  ");
            let mut text = String::from("{\n");
            for (name, n) in [
                ("version", record.version),
                ("create_revision", record.create_revision),
                ("mod_revision", record.mod_revision),
            ] {
                text.push_str(&format!("  \"{name}\": {n},\n"));
            }
            text.push_str(&format!(
                "  \"updated_at\": \"{}\",\n  \"value\": {value}\n}}",
                record.updated_at
            ));
            ctx.print(text)?;
        } else {
            ctx.print(output::pretty(&record.value).context("cannot show the value")?)?;
        }
        Ok(Code::Ok)
    })
}
