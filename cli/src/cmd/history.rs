//! `statelog history NS KEY`: every version of a record the store still
//! holds, oldest first: revision, time and value (or "deleted").
//!
//! `--json`: one document, `{"namespace", "key", "versions": [{"revision",
//! "time", "deleted", "version", "create_revision", "value"}]}` (`version`,
//! `create_revision` and `value` only for writes). A record the history
//! never saw exits 4.

use serde::Serialize;
use serde_json::value::RawValue as JsonText;

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::output;
use statelog::Shown;

pub const EXAMPLES: &str = r#"Examples:
  statelog history jobs job42
  statelog history jobs job42 --json | jq '.versions[].value.status'"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
}

#[derive(Serialize)]
struct VersionDoc {
    revision: u64,
    time: String,
    deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Box<JsonText>>,
}

#[derive(Serialize)]
struct HistoryDoc<'a> {
    namespace: &'a str,
    key: &'a str,
    versions: Vec<VersionDoc>,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let versions = ctx.with_store(Access::Records, |store| Ok(store.history(ns, key)?))?;
    if versions.is_empty() {
        return Err(fail(
            Code::NotFound,
            format!(
                "{}/{} has no history in the store",
                Shown::new(ns),
                Shown::new(key)
            ),
        ));
    }
    if ctx.json {
        let mut docs = Vec::with_capacity(versions.len());
        for v in &versions {
            docs.push(VersionDoc {
                revision: v.revision,
                time: v.time.to_string(),
                deleted: v.value.is_none(),
                version: v.value.as_ref().map(|r| r.version),
                create_revision: v.value.as_ref().map(|r| r.create_revision),
                value: match &v.value {
                    Some(r) => Some(output::json_text(&r.value)?),
                    None => None,
                },
            });
        }
        ctx.print_json(&HistoryDoc {
            namespace: ns,
            key,
            versions: docs,
        })?;
        return Ok(Code::Ok);
    }
    let mut text = String::new();
    for v in &versions {
        let what = match &v.value {
            Some(r) => format!("v{} {}", r.version, output::json_text(&r.value)?.get()),
            None => "deleted".to_owned(),
        };
        text.push_str(&format!("{:>8}  {}  {what}\n", v.revision, v.time));
    }
    text.pop();
    ctx.print(text)?;
    Ok(Code::Ok)
}
