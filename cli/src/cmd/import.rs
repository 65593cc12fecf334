//! `statelog import FILE|- ...`: read a snapshot (or, with `--legacy`, a plain
//! JSON object of objects such as a `sync_state.json`) into the store through
//! the library's snapshot adapters. Atomic: everything commits in one commit,
//! or nothing does.
//!
//! - `--mode merge` (the default): every record an ordinary write, and a
//!   record whose version in the store is no longer the file's (changed,
//!   deleted or created since the snapshot) is stale: any stale record means
//!   nothing is written (exit 3, the conflicts listed). `--skip-conflicts`
//!   imports the others anyway (exit 0, conflicts listed); `--overwrite`
//!   writes every record whatever the store holds now.
//! - `--mode restore`: into an empty store, versions and revisions kept
//!   (exit 3 if the store has commits).
//! - `--legacy --ns NS [--normalize ...] [--merge-collisions]`: keys that
//!   collide after normalising stop the import (exit 3) unless merged.
//!
//! `--json` prints the report: `{"file", "format", "mode", "records",
//! "written", "unchanged", "revision", "applied", "replayed", "conflicts":
//! [{"namespace", "key", "expected", "actual"}]}`, or for `--legacy` `{"file",
//! "namespace", "members", "records", "written", "unchanged", "renamed":
//! [{"from", "to"}], "collisions": [{"key", "sources", "clashing_fields"}],
//! "revision", "applied", "replayed"}`.
//!
//! `--idempotency-key KEY` (or `STATELOG_IDEMPOTENCY_KEY`): the same file
//! imported again with KEY prints the first report (`replayed`) and writes
//! nothing; another file with KEY exits 8. `--fence NAME=TOKEN`: the import
//! commits only while the lock is held with TOKEN (exit 3 otherwise).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::ProgressBar;
use serde::Serialize;
use statelog::Shown;
use statelog::snapshot::{
    self, Collision, Format, ImportConflict, ImportMode, ImportOptions, ImportReport,
    KeyNormalizer, LegacyOptions, LegacyReport,
};

use super::export::{FormatArg, format_of};
use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::output::plural;
use crate::progress;
use crate::writes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Ordinary writes in one transaction; never deletes
    Merge,
    /// Into an empty store, keeping versions and revisions exactly
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NormalizeArg {
    /// Lower-case keys
    Lower,
    /// Remove a leading "www."
    StripWww,
    /// Replace every "." with "-"
    DotsToHyphens,
}

pub const EXAMPLES: &str = r#"Examples:
  statelog import state.json                            # merge: ordinary writes, one commit
  statelog import STATUS.md                             # a hand edit back; refused if the store moved on
  statelog import state.json --overwrite                # write every record, whatever the store holds now
  statelog import state.json --idempotency-key "$GITHUB_RUN_ID-import"   # imports once per run
  statelog --store new init && statelog --store new import state.json --mode restore
  statelog import sync_state.json --legacy --ns sync --normalize lower,strip-www"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to read, or - for stdin
    pub file: PathBuf,
    /// The file's format [default: from its extension, else json; the JSON
    /// formats read alike]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// merge: ordinary writes; restore: into an empty store, keeping versions
    #[arg(long, value_enum, default_value = "merge")]
    pub mode: ModeArg,
    /// The default of a merge, kept for scripts that pass it: merge only
    /// records whose store version is still the file's
    #[arg(long, hide = true, conflicts_with = "overwrite")]
    pub check_versions: bool,
    /// Merge: import the records without conflicts anyway (exit 0, the
    /// conflicts listed)
    #[arg(long, conflicts_with = "overwrite")]
    pub skip_conflicts: bool,
    /// Merge: write every record of the file, even one the store changed,
    /// deleted or created since the snapshot (that change is overwritten)
    #[arg(long)]
    pub overwrite: bool,
    /// The file is a plain JSON object of objects (a hand-rolled state file);
    /// its members become the records of --ns
    #[arg(long, requires = "ns", conflicts_with_all = ["format", "check_versions", "skip_conflicts", "overwrite"])]
    pub legacy: bool,
    /// With --legacy: the namespace to import into
    #[arg(long, value_name = "NS", requires = "legacy")]
    pub ns: Option<String>,
    /// With --legacy: how to normalise keys, steps in order, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', requires = "legacy")]
    pub normalize: Vec<NormalizeArg>,
    /// With --legacy: merge objects whose keys collide after normalising (the
    /// later member in the file wins on clashing fields) instead of stopping
    #[arg(long, requires = "legacy")]
    pub merge_collisions: bool,
    /// Import only while lock NAME is still held with TOKEN (what `statelog
    /// lock` passes its command as $STATELOG_LOCK_NAME and
    /// $STATELOG_LOCK_TOKEN); exit 3 and write nothing otherwise. Repeatable
    #[arg(long, value_name = "NAME=TOKEN", value_parser = writes::parse_fence, help_heading = writes::HEADING)]
    pub fence: Vec<(String, u64)>,
    /// Make this import idempotent under KEY (at most 255 bytes): run again
    /// with the same KEY and the same file, it prints the first report and
    /// writes nothing; with another file it exits 8. Not with --mode restore
    #[arg(long, value_name = "KEY", env = writes::IDEMPOTENCY_KEY_ENV, hide_env_values = true, help_heading = writes::HEADING)]
    pub idempotency_key: Option<String>,
}

#[derive(Serialize)]
struct ConflictDoc<'a> {
    namespace: &'a str,
    key: &'a str,
    expected: u64,
    actual: u64,
}

#[derive(Serialize)]
struct ImportDoc<'a> {
    file: &'a str,
    format: &'static str,
    mode: &'static str,
    records: u64,
    written: u64,
    unchanged: u64,
    revision: Option<u64>,
    applied: bool,
    replayed: bool,
    conflicts: Vec<ConflictDoc<'a>>,
}

#[derive(Serialize)]
struct RenameDoc<'a> {
    from: &'a str,
    to: &'a str,
}

#[derive(Serialize)]
struct CollisionDoc<'a> {
    key: &'a str,
    sources: &'a [String],
    clashing_fields: &'a [String],
}

#[derive(Serialize)]
struct LegacyDoc<'a> {
    file: &'a str,
    namespace: &'a str,
    members: u64,
    records: u64,
    written: u64,
    unchanged: u64,
    renamed: Vec<RenameDoc<'a>>,
    collisions: Vec<CollisionDoc<'a>>,
    revision: Option<u64>,
    applied: bool,
    replayed: bool,
}

/// The input and its size, when known (for the progress bar).
fn open_input(args: &Args) -> anyhow::Result<(Box<dyn Read>, Option<u64>)> {
    if args.file.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin().lock()), None));
    }
    let file = File::open(&args.file)
        .with_context(|| format!("cannot open {} to import it", Shown::path(&args.file)))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), len))
}

/// Reads and checks the whole input first, then opens the store for the
/// commit: the store's lock is never held while waiting for input (a pipe
/// from `statelog export` of the same store, a slow producer), and bad input
/// fails without touching the store.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (input, len) = open_input(&args)?;
    let shown = if args.file.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        Shown::path(&args.file).to_string()
    };
    let bar = progress::import(ctx, len);
    let input = bar.wrap_read(input);
    let code = if args.legacy {
        legacy(ctx, &args, input, &bar, &shown)
    } else {
        plain(ctx, &args, input, &bar, &shown)
    };
    bar.finish_and_clear();
    code
}

fn counter(bar: &ProgressBar) -> impl Fn(u64) + Send + Sync + 'static {
    let bar = bar.clone();
    move |n| bar.set_message(progress::records(n))
}

fn plain(
    ctx: &Ctx,
    args: &Args,
    input: impl Read,
    bar: &ProgressBar,
    shown: &str,
) -> anyhow::Result<Code> {
    let format = match (args.format, args.file.as_os_str() == "-") {
        (Some(f), _) => f.format(),
        (None, false) => format_of(&args.file).unwrap_or(Format::Json),
        (None, true) => Format::Json,
    };
    let mode = match args.mode {
        ModeArg::Restore => ImportMode::Restore,
        ModeArg::Merge => ImportMode::Merge {
            check_versions: !args.overwrite,
            skip_conflicts: args.skip_conflicts,
        },
    };
    let mut options = ImportOptions::new(format, mode).progress(counter(bar));
    if let Some(key) = idempotency_key(args)? {
        options = options.idempotency_key(key);
    }
    for (lock, token) in &args.fence {
        options = options.fence(lock.as_str(), *token);
    }
    let refused = |e: statelog::Error| {
        let hint = match &e {
            statelog::Error::NotEmpty { .. } => {
                "; import with --mode merge, or restore into a new store (statelog --store NEW init)"
            }
            _ => "",
        };
        anyhow::Error::new(e).context(format!("did not import {shown}{hint}"))
    };
    let checked = snapshot::check_import(input, &options).map_err(refused)?;
    bar.finish_and_clear();
    let report = ctx.with_store(Access::Records, |store| {
        snapshot::import_checked(store, checked).map_err(refused)
    })?;
    note_replayed(ctx, report.replayed);
    let mode_name = match args.mode {
        ModeArg::Merge => "merge",
        ModeArg::Restore => "restore",
    };
    if ctx.json {
        ctx.print_json(&ImportDoc {
            file: shown,
            format: FormatArg::name(format),
            mode: mode_name,
            records: report.records,
            written: report.written,
            unchanged: report.unchanged,
            revision: report.revision,
            applied: report.applied,
            replayed: report.replayed,
            conflicts: report.conflicts.iter().map(conflict_doc).collect(),
        })?;
    } else {
        ctx.say(describe(&report, shown))?;
    }
    if !report.applied {
        return Err(fail(
            Code::Conflict,
            format!(
                "nothing was imported: {} changed in the store since the snapshot was taken \
                 (see the report); export again and redo the change, pass --skip-conflicts to \
                 import the others, or --overwrite to write them all (into a new store: --mode \
                 restore)",
                plural(report.conflicts.len() as u64, "record", "records")
            ),
        ));
    }
    Ok(Code::Ok)
}

/// The idempotency key, if given (an empty one is none, as for the other
/// writing commands); a restore takes none, nor a fence.
fn idempotency_key(args: &Args) -> anyhow::Result<Option<&str>> {
    if args.mode == ModeArg::Restore {
        if args
            .idempotency_key
            .as_deref()
            .is_some_and(|k| !k.is_empty())
        {
            return Err(fail(
                Code::Usage,
                "--idempotency-key does not go with --mode restore: a restore is refused by a \
                 store that has commits, so it never applies twice",
            ));
        }
        if !args.fence.is_empty() {
            return Err(fail(
                Code::Usage,
                "--fence does not go with --mode restore: a restore writes into a store \
                 without commits, where no lock is held",
            ));
        }
    }
    Ok(args.idempotency_key.as_deref().filter(|k| !k.is_empty()))
}

fn note_replayed(ctx: &Ctx, replayed: bool) {
    if replayed && !ctx.quiet && !ctx.json {
        crate::exit::print_stderr(
            "statelog: this idempotency key was used before for the same import: its first \
             report follows; nothing was written now\n",
        );
    }
}

fn conflict_doc(c: &ImportConflict) -> ConflictDoc<'_> {
    ConflictDoc {
        namespace: &c.namespace,
        key: &c.key,
        expected: c.expected,
        actual: c.actual,
    }
}

fn describe(report: &ImportReport, shown: &str) -> String {
    let mut text = format!(
        "read {} from {shown} (a snapshot at revision {})",
        plural(report.records, "record", "records"),
        report.header.revision
    );
    for c in &report.conflicts {
        let now = if c.actual == 0 {
            "it no longer exists".to_owned()
        } else {
            format!("the store has version {}", c.actual)
        };
        text.push_str(&format!(
            "\nconflict: {}/{}: the file has version {}, {now}",
            c.namespace, c.key, c.expected
        ));
    }
    if report.applied {
        push_wrote(&mut text, report.written, report.unchanged, report.revision);
        if !report.conflicts.is_empty() {
            text.push_str(&format!(
                "; skipped {}",
                plural(report.conflicts.len() as u64, "conflict", "conflicts")
            ));
        }
    }
    text
}

fn legacy(
    ctx: &Ctx,
    args: &Args,
    input: impl Read,
    bar: &ProgressBar,
    shown: &str,
) -> anyhow::Result<Code> {
    let ns = args.ns.as_deref().unwrap_or_default();
    let mut normalizer = KeyNormalizer::new();
    for step in &args.normalize {
        normalizer = match step {
            NormalizeArg::Lower => normalizer.lowercase(),
            NormalizeArg::StripWww => normalizer.strip_www(),
            NormalizeArg::DotsToHyphens => normalizer.dots_to_hyphens(),
        };
    }
    let mut options = LegacyOptions::new(ns)
        .normalizer(normalizer)
        .merge_collisions(args.merge_collisions)
        .progress(counter(bar));
    if let Some(key) = idempotency_key(args)? {
        options = options.idempotency_key(key);
    }
    for (lock, token) in &args.fence {
        options = options.fence(lock.as_str(), *token);
    }
    let refused =
        |e: statelog::Error| anyhow::Error::new(e).context(format!("did not import {shown}"));
    let checked = snapshot::check_legacy(input, &options).map_err(refused)?;
    bar.finish_and_clear();
    let report = ctx.with_store(Access::Records, |store| {
        snapshot::import_legacy_checked(store, checked).map_err(refused)
    })?;
    note_replayed(ctx, report.replayed);
    if ctx.json {
        ctx.print_json(&LegacyDoc {
            file: shown,
            namespace: ns,
            members: report.members,
            records: report.records,
            written: report.written,
            unchanged: report.unchanged,
            renamed: report
                .renamed
                .iter()
                .map(|(from, to)| RenameDoc { from, to })
                .collect(),
            collisions: report.collisions.iter().map(collision_doc).collect(),
            revision: report.revision,
            applied: report.applied,
            replayed: report.replayed,
        })?;
    } else {
        ctx.say(describe_legacy(&report, ns, shown))?;
    }
    if !report.applied {
        return Err(fail(
            Code::Conflict,
            format!(
                "nothing was imported: {} after normalising (see the report); pass \
                 --merge-collisions to merge them, or fix the file",
                plural(
                    report.collisions.len() as u64,
                    "key collides",
                    "keys collide"
                )
            ),
        ));
    }
    Ok(Code::Ok)
}

fn collision_doc(c: &Collision) -> CollisionDoc<'_> {
    CollisionDoc {
        key: &c.key,
        sources: &c.sources,
        clashing_fields: &c.clashing_fields,
    }
}

/// Renames shown in full up to this many.
const RENAMES_SHOWN: usize = 20;

fn describe_legacy(report: &LegacyReport, ns: &str, shown: &str) -> String {
    let mut text = format!(
        "read {} from {shown} as {} of namespace {ns}",
        plural(report.members, "member", "members"),
        plural(report.records, "record", "records")
    );
    for (from, to) in report.renamed.iter().take(RENAMES_SHOWN) {
        text.push_str(&format!("\nrenamed: {from} -> {to}"));
    }
    if report.renamed.len() > RENAMES_SHOWN {
        text.push_str(&format!(
            "\nrenamed: ... and {} more (--json lists them all)",
            report.renamed.len() - RENAMES_SHOWN
        ));
    }
    for c in &report.collisions {
        text.push_str(&format!(
            "\ncollision: {} <- {}",
            c.key,
            c.sources.join(", ")
        ));
        if !c.clashing_fields.is_empty() {
            text.push_str(&format!(
                " (both set: {}{})",
                c.clashing_fields.join(", "),
                if report.applied {
                    "; the later in the file won"
                } else {
                    ""
                }
            ));
        }
    }
    if report.applied {
        push_wrote(&mut text, report.written, report.unchanged, report.revision);
    }
    text
}

/// The "wrote N records, M unchanged, at revision R" line of a report.
fn push_wrote(text: &mut String, written: u64, unchanged: u64, revision: Option<u64>) {
    text.push_str(&format!(
        "\nwrote {}, {unchanged} unchanged",
        plural(written, "record", "records")
    ));
    match revision {
        Some(revision) => text.push_str(&format!(", at revision {revision}")),
        None => text.push_str("; nothing needed writing"),
    }
}
