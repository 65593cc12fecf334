//! `statelog del NS KEY [--if-version N]`: delete a record.
//!
//! Deleting a record that does not exist succeeds and writes nothing (exit 0;
//! the goal, no such record, holds). With `--if-version N` the delete is a
//! compare-and-delete: exit 4 if the record does not exist, exit 3 if it is at
//! another version. `--json` prints `{"namespace", "key", "deleted", "version",
//! "revision"}` (`version` is the version it had; the last two only when
//! something was deleted).

use serde::Serialize;

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::writes::{self, WriteArgs};
use statelog::{Batch, Shown, WriteResult};

pub const EXAMPLES: &str = r#"Examples:
  statelog del jobs job42
  statelog del jobs job42 --if-version 3"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
    /// Delete only if the record is at version N; exit 3 if it is not, 4 if it
    /// does not exist
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Serialize)]
struct DelDoc<'a> {
    namespace: &'a str,
    key: &'a str,
    deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    let mut batch = Batch::new().delete(ns, key);
    if let Some(expected) = args.if_version {
        batch = batch.if_version(ns, key, expected);
    }
    let batch = args.write.add_to(batch, ns, key);
    ctx.with_store(Access::Records, |store| {
        let outcome = match writes::apply(store, &batch) {
            Ok(outcome) => outcome,
            Err(e)
                if args.if_version.is_some()
                    && matches!(
                        e.downcast_ref::<statelog::Error>(),
                        Some(statelog::Error::Conflict { actual: 0, .. })
                    ) =>
            {
                return Err(fail(
                    Code::NotFound,
                    format!("{shown} does not exist; nothing was deleted"),
                ));
            }
            Err(e) => return Err(e.context(format!("did not delete {shown}"))),
        };
        writes::note_replay(&outcome, ctx);
        let deleted = match (outcome.revision, outcome.writes.first()) {
            (Some(revision), Some(WriteResult::Deleted { version })) => Some(Deleted {
                revision,
                version: *version,
            }),
            _ => None,
        };
        if ctx.json {
            ctx.print_json(&DelDoc {
                namespace: ns,
                key,
                deleted: deleted.is_some(),
                version: deleted.map(|d| d.version),
                revision: deleted.map(|d| d.revision),
                replayed: outcome.replayed,
            })?;
        } else if let Some(d) = deleted {
            ctx.say(format!(
                "deleted {ns}/{key} (it was at version {}; revision {})",
                d.version, d.revision
            ))?;
        } else {
            ctx.say(format!("{ns}/{key} does not exist; nothing to delete"))?;
        }
        Ok(Code::Ok)
    })
}

#[derive(Clone, Copy)]
struct Deleted {
    revision: u64,
    version: u64,
}
