//! `statelog set NS KEY JSON|- [--if-version N | --create-only]
//! [--if-revision N] [--if-changed]`: replace a record's value.
//!
//! The JSON is read as an import reads values (`$` escapes included). With a
//! precondition the write is a compare-and-swap: exit 3 if the record is not
//! at that version (or exists, for `--create-only`), or was not last written
//! at that revision. `--if-changed` leaves an identical value alone (no new
//! version, no log record). `--json` prints `{"namespace", "key", "version",
//! "revision"}` (and `"changed": false` when skipped, `"replayed": true` for
//! an idempotency key's first result).

use std::io::Read;

use anyhow::Context as _;
use statelog::{Batch, RawValue, Shown, WriteResult};

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::output::WriteDoc;
use crate::writes::{self, WriteArgs};

pub const EXAMPLES: &str = r#"Examples:
  statelog set config pipeline '{"window": 7}'
  statelog set config pipeline '{"window": 8}' --if-version 1 || echo "someone changed it"
  statelog set runs nightly '{"owner": "ci-7"}' --create-only
  statelog set files site.md '{"hash": "ab12"}' --if-changed   # skip unchanged files
  jq .config settings.json | statelog set config pipeline -"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
    /// The value as JSON, or - to read it from stdin
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Write only if the record is at version N now (0: does not exist); exit 3
    /// otherwise
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
    /// Write only if the record does not exist; exit 3 otherwise
    #[arg(long, conflicts_with = "if_version")]
    pub create_only: bool,
    /// Leave the record alone when it holds this very value (no new version,
    /// no log record)
    #[arg(long)]
    pub if_changed: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// Reads a value given as JSON text, or `-` for stdin, with a message that
/// says how to fix it.
pub fn read_value(text: &str, what: &str) -> anyhow::Result<RawValue> {
    let text = if text == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("cannot read the value from stdin")?;
        buf
    } else {
        text.to_owned()
    };
    RawValue::from_json(&text).map_err(|e| {
        // Problems with the text have their place; a value that reads but
        // cannot be stored (too large, too deep) is not a JSON problem.
        if !matches!(e, statelog::Error::Value { line: Some(_), .. }) {
            return fail(Code::Error, format!("{what} cannot be stored: {e}"));
        }
        let trimmed = text.trim_start();
        let looks_like_json = trimmed
            .chars()
            .next()
            .is_none_or(|c| matches!(c, '{' | '[' | '"' | '-' | '0'..='9'));
        let hint = if looks_like_json {
            String::new()
        } else {
            format!(
                "; text needs double quotes in JSON ('\"{}\"'), or set one field with \
                 `statelog patch`",
                crate::output::shorten(trimmed, 30)
            )
        };
        fail(Code::Error, format!("{what} is not valid JSON: {e}{hint}"))
    })
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    let value = read_value(&args.value, &format!("the value for {shown}"))?;
    let expected = if args.create_only {
        Some(0)
    } else {
        args.if_version
    };
    let mut batch = Batch::new().put_raw(ns, key, value);
    if let Some(expected) = expected {
        batch = batch.if_version(ns, key, expected);
    }
    if args.if_changed {
        batch = batch.if_changed();
    }
    let batch = args.write.add_to(batch, ns, key);
    ctx.with_store(Access::Records, |store| {
        let outcome =
            writes::apply(store, &batch).with_context(|| format!("did not set {shown}"))?;
        writes::note_replay(&outcome, ctx);
        let Some(WriteResult::Put { meta, changed, .. }) = outcome.writes.first() else {
            anyhow::bail!("the store answered a put with no put outcome");
        };
        let (version, revision) = (meta.version, meta.mod_revision);
        if ctx.json {
            ctx.print_json(&WriteDoc {
                namespace: ns,
                key,
                version,
                revision,
                field: None,
                value: None,
                replayed: outcome.replayed,
                changed: *changed,
            })?;
        } else if *changed {
            ctx.say(format!(
                "set {ns}/{key}: version {version} (revision {revision})"
            ))?;
        } else {
            ctx.say(format!(
                "{ns}/{key} holds this value already: left at version {version} (revision \
                 {revision})"
            ))?;
        }
        Ok(Code::Ok)
    })
}
