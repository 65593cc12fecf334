//! The subcommands, one file each: its flags (`Args`) and its `run`.
//!
//! A new subcommand is a new file here, one variant of [`Command`] and one arm
//! of [`Command::run`]. It opens the store through [`Ctx::with_store`] (or
//! [`Ctx::open`]), uses only the library's public API, prints through `Ctx`
//! and returns an exit code, or an error whose exit code `exit::code_of`
//! derives.

mod backup;
mod check;
mod compact;
mod del;
mod export;
mod get;
mod import;
mod incr;
mod init;
mod list;
mod patch;
mod repair;
mod restore;
mod serve;
mod set;
mod stats;

use clap::Subcommand;
use statelog::{RawValue, Shown, Store};

use crate::context::Ctx;
use crate::exit::{Code, fail};
use crate::fields;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store (here ./.statelog, or --store DIR); nothing happens if
    /// it exists
    Init(init::Args),
    /// Print a record's value as JSON (or one field, raw, with --field)
    Get(get::Args),
    /// Replace a record's value with JSON (an argument, or - for stdin)
    Set(set::Args),
    /// Set fields of a record: status=running progress=50 meta.host=node7
    Patch(patch::Args),
    /// Add to a numeric field (1 unless BY is given) and print the new number
    Incr(incr::Args),
    /// Delete a record
    Del(del::Args),
    /// List a namespace's records (or, without NS, the namespaces)
    List(list::Args),
    /// Show the store's revision, namespaces, record counts and size
    Stats(stats::Args),
    /// Write the store as JSON, JSON Lines or Markdown
    Export(export::Args),
    /// Read a snapshot (or a legacy JSON state file) into the store
    Import(import::Args),
    /// Back the store up into DEST, online (later runs copy only the new log)
    Backup(backup::Args),
    /// Create a store from a backup, up to its end, a revision or a time
    Restore(restore::Args),
    /// Verify the store (or --backup DIR) without changing it; exit 1 on
    /// problems
    Check(check::Args),
    /// Repair a damaged store: keep what is intact, move the rest aside
    Repair(repair::Args),
    /// Checkpoint, drop old log segments (retention) and compact the state
    /// database
    Compact(compact::Args),
    /// Hold the store and serve every other process that opens it, until
    /// SIGINT or SIGTERM (then finish what is in flight, checkpoint, exit 0)
    Serve(serve::Args),
}

impl Command {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<Code> {
        match self {
            Command::Init(args) => init::run(args, ctx),
            Command::Get(args) => get::run(args, ctx),
            Command::Set(args) => set::run(args, ctx),
            Command::Patch(args) => patch::run(args, ctx),
            Command::Incr(args) => incr::run(args, ctx),
            Command::Del(args) => del::run(args, ctx),
            Command::List(args) => list::run(args, ctx),
            Command::Stats(args) => stats::run(args, ctx),
            Command::Export(args) => export::run(args, ctx),
            Command::Import(args) => import::run(args, ctx),
            Command::Backup(args) => backup::run(args, ctx),
            Command::Restore(args) => restore::run(args, ctx),
            Command::Check(args) => check::run(args, ctx),
            Command::Repair(args) => repair::run(args, ctx),
            Command::Compact(args) => compact::run(args, ctx),
            Command::Serve(args) => serve::run(args, ctx),
        }
    }
}

/// A record edited by [`edit_record`].
pub struct Edited<R> {
    /// Its new version.
    pub version: u64,
    /// The revision of the edit (the store's revision when nothing changed).
    pub revision: u64,
    /// Its new value.
    pub value: RawValue,
    /// What the edit returned.
    pub result: R,
}

/// Reads a record's value as a tree, lets `edit` change it and writes it
/// back, as one optimistic transaction re-run on a conflict (so concurrent
/// edits of different fields keep each other's changes). A missing record
/// starts as an empty object. When `edit` refuses (its message says why), the
/// command fails with exit 1 and nothing is written.
pub fn edit_record<R>(
    store: &Store,
    ns: &str,
    key: &str,
    mut edit: impl FnMut(&mut rmpv::Value) -> Result<R, String>,
) -> anyhow::Result<Edited<R>> {
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    let refused = |m: String| fail(Code::Error, format!("{shown} was not changed: {m}"));
    let outcome = store.transaction(|tx| -> anyhow::Result<_> {
        let current = tx.snapshot().get_raw(ns, key)?;
        let expected = current.as_ref().map_or(0, |r| r.version);
        tx.expect_version(ns, key, expected)?;
        let mut tree = match &current {
            Some(record) => fields::decode(&record.value).map_err(anyhow::Error::msg)?,
            None => rmpv::Value::Map(Vec::new()),
        };
        let result = edit(&mut tree).map_err(refused)?;
        let raw = fields::encode(&tree).map_err(refused)?;
        tx.put_raw(ns, key, raw.clone())?;
        // A record at the highest version cannot be written; the commit says so.
        Ok((expected.saturating_add(1), raw, result))
    })?;
    let (version, value, result) = outcome.value;
    Ok(Edited {
        version,
        revision: outcome.revision.unwrap_or_else(|| store.revision()),
        value,
        result,
    })
}
