//! `statelog stats`: what the store holds and where it stands.
//!
//! `--json` prints `{"store", "id", "revision", "checkpoint_revision",
//! "records", "namespaces": [{"namespace", "records"}, ...], "disk_bytes",
//! "replayed_on_open", "first_revision"}`. `first_revision` is the first
//! revision the store can still read back (`watch --rev`, `--at-revision`). `disk_bytes` is the size of every file in the store
//! directory (log segments are preallocated in steps, so it grows in steps);
//! `replayed_on_open` is what this open had to replay after an unclean
//! shutdown.

use std::path::Path;

use serde::Serialize;

use crate::context::{Access, Ctx};
use crate::exit::Code;
use crate::output::{bytes, plural};

pub const EXAMPLES: &str = r#"Examples:
  statelog stats
  statelog stats --json | jq .revision"#;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct NamespaceDoc {
    namespace: String,
    records: u64,
}

#[derive(Serialize)]
struct StatsDoc {
    store: String,
    id: String,
    revision: u64,
    checkpoint_revision: u64,
    records: u64,
    namespaces: Vec<NamespaceDoc>,
    disk_bytes: u64,
    replayed_on_open: u64,
    first_revision: u64,
}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    ctx.with_store(Access::Records, |store| {
        let snapshot = store.snapshot()?;
        let mut namespaces = Vec::new();
        for namespace in snapshot.namespaces()? {
            let records = snapshot.count(&namespace)?;
            namespaces.push(NamespaceDoc { namespace, records });
        }
        let stats = store.stats();
        let doc = StatsDoc {
            store: ctx.store.display().to_string(),
            id: store.id(),
            revision: snapshot.revision()?,
            checkpoint_revision: stats.checkpoint_revision,
            records: namespaces.iter().map(|n| n.records).sum(),
            namespaces,
            disk_bytes: dir_size(store.path()),
            replayed_on_open: stats.replayed_on_open,
            first_revision: stats.first_revision,
        };
        if ctx.json {
            ctx.print_json(&doc)?;
            return Ok(Code::Ok);
        }
        let mut text = format!(
            "store      {}\nid         {}\nrevision   {} (checkpoint at {})\nrecords    {} in {}\n",
            doc.store,
            doc.id,
            doc.revision,
            doc.checkpoint_revision,
            doc.records,
            plural(doc.namespaces.len() as u64, "namespace", "namespaces"),
        );
        let width = doc
            .namespaces
            .iter()
            .map(|n| n.namespace.chars().count())
            .max()
            .unwrap_or(0);
        for n in &doc.namespaces {
            text.push_str(&format!(
                "  {:width$}  {}\n",
                n.namespace,
                plural(n.records, "record", "records")
            ));
        }
        text.push_str(&format!(
            "history    from revision {} (watch, --at-revision)\n",
            doc.first_revision
        ));
        text.push_str(&format!("disk       {}", bytes(doc.disk_bytes)));
        if doc.replayed_on_open > 0 {
            text.push_str(&format!(
                "\nrecovery   replayed {} after an unclean shutdown",
                plural(doc.replayed_on_open, "commit", "commits")
            ));
        }
        ctx.print(text)?;
        Ok(Code::Ok)
    })
}

/// Bytes of every file under `dir` (what cannot be read counts as 0).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
