//! `statelog set NS KEY JSON|- [--if-version N | --create-only]`: replace a
//! record's value.
//!
//! The JSON is read as an import reads values (`$` escapes included). With a
//! precondition the write is a compare-and-swap: exit 3 if the record is not
//! at that version (or exists, for `--create-only`). `--json` prints
//! `{"namespace", "key", "version", "revision"}`.

use std::io::Read;

use anyhow::Context as _;
use statelog::{RawValue, Shown, Store};

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::output::WriteDoc;

pub const EXAMPLES: &str = r#"Examples:
  statelog set config pipeline '{"window": 7}'
  statelog set config pipeline '{"window": 8}' --if-version 1 || echo "someone changed it"
  statelog set runs nightly '{"owner": "ci-7"}' --create-only
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
        // Problems with the text start with their place; a value that reads
        // but cannot be stored (too large, too deep) is not a JSON problem.
        if !(e.starts_with("line ") || e.starts_with("at the end of the input")) {
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
    ctx.with_store(Access::Records, |store| {
        let (version, revision) = write(store, ns, key, value, expected)
            .with_context(|| format!("did not set {shown}"))?;
        if ctx.json {
            ctx.print_json(&WriteDoc {
                namespace: ns,
                key,
                version,
                revision,
                field: None,
                value: None,
            })?;
        } else {
            ctx.say(format!(
                "set {ns}/{key}: version {version} (revision {revision})"
            ))?;
        }
        Ok(Code::Ok)
    })
}

/// Writes, with a version precondition if `expected`; returns the version and
/// the revision.
fn write(
    store: &Store,
    ns: &str,
    key: &str,
    value: RawValue,
    expected: Option<u64>,
) -> statelog::Result<(u64, u64)> {
    let Some(expected) = expected else {
        let committed = store.put_raw(ns, key, value)?;
        return Ok((committed.version, committed.revision));
    };
    // A compare-and-swap of a raw value: the precondition and the write in one
    // transaction (re-checked at commit).
    let outcome = store.transaction(|tx| {
        tx.expect_version(ns, key, expected)?;
        tx.put_raw(ns, key, value.clone())
    })?;
    let revision = outcome.revision.unwrap_or_else(|| store.revision());
    // The commit gave the record the version after `expected`, so there is one.
    let version = expected.checked_add(1).ok_or(statelog::Error::Exhausted {
        record: Some((ns.to_owned(), key.to_owned())),
        value: expected,
    })?;
    Ok((version, revision))
}
