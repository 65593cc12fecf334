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
use statelog::Shown;

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
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    ctx.with_store(Access::Records, |store| {
        let deleted = match args.if_version {
            None => store.delete(ns, key)?,
            Some(expected) => match store.compare_and_delete(ns, key, expected) {
                Ok(deleted) => Some(deleted),
                Err(statelog::Error::Conflict { actual: 0, .. }) => {
                    return Err(fail(
                        Code::NotFound,
                        format!("{shown} does not exist; nothing was deleted"),
                    ));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("did not delete {shown}")));
                }
            },
        };
        if ctx.json {
            ctx.print_json(&DelDoc {
                namespace: ns,
                key,
                deleted: deleted.is_some(),
                version: deleted.map(|d| d.version),
                revision: deleted.map(|d| d.revision),
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
