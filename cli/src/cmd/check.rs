//! `statelog check [--backup DIR]`: verify the store (or a backup) without
//! changing it.
//!
//! For the store: redb's integrity check on a copy of the state database,
//! every frame of every log segment, the revisions and segment links, and the
//! state compared with the log replayed (a digest per namespace). For a
//! backup: the manifest's sizes and checksums, every frame, and a trial
//! restore. Every problem is printed with its file and offset (or namespace)
//! and what to do; exit 1 when anything is wrong, 0 when all is well.
//! `--json` prints the report: `{"ok", "path", "kind", "store_id", "problems":
//! [{"file", "offset", "namespace", "what", "action"}], "notes", "log":
//! {...}, "state": {...}, "duration"}` (duration in ms).

use std::path::PathBuf;

use serde::Serialize;
use statelog::maintenance::{CheckOptions, CheckReport, Compared, check, check_backup};

use crate::context::Ctx;
use crate::exit::Code;
use crate::output::plural;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check this backup directory instead of the store
    #[arg(long, value_name = "DIR")]
    pub backup: Option<PathBuf>,
    /// Skip comparing the state with the log replayed (the slow part)
    #[arg(long)]
    pub quick: bool,
    /// Where scratch files go (a copy of the state database and one rebuilt
    /// from the log) [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
}

#[derive(Serialize)]
struct CheckDoc<'a> {
    ok: bool,
    #[serde(flatten)]
    report: &'a CheckReport,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let mut options = CheckOptions::new()
        .lock_timeout(ctx.wait)
        .compare_state(!args.quick);
    if let Some(dir) = &args.scratch {
        options = options.scratch_dir(dir);
    }
    let report = match &args.backup {
        Some(dir) => check_backup(dir, &options)?,
        None => ctx
            .waiting(|| check(&ctx.store, &options))
            .map_err(|e| match e {
                statelog::Error::NotAStore { .. } | statelog::Error::Busy { .. } => {
                    ctx.tool_error(e)
                }
                e => anyhow::Error::new(e),
            })?,
    };
    let code = if report.is_ok() {
        Code::Ok
    } else {
        Code::Error
    };
    if ctx.json {
        ctx.print_json(&CheckDoc {
            ok: report.is_ok(),
            report: &report,
        })?;
        return Ok(code);
    }
    let what = match report.kind {
        statelog::maintenance::CheckedKind::Store => "store",
        statelog::maintenance::CheckedKind::Backup => "backup",
    };
    let mut lines = vec![format!("checked the {what} at {}", report.path.display())];
    let log = &report.log;
    let start = match (report.kind, log.reaches_start) {
        (statelog::maintenance::CheckedKind::Backup, false) => " (from the base)",
        (statelog::maintenance::CheckedKind::Store, false) => {
            " (older revisions were removed by log retention)"
        }
        _ => "",
    };
    // A backup whose manifest could not be read has nothing to summarise.
    if report.store_id.is_some() {
        lines.push(format!(
            "  log: {} ({}), revisions {} to {}{start}",
            plural(log.segments as u64, "segment", "segments"),
            super::backup::mb(log.bytes),
            log.first_revision.unwrap_or(0),
            log.last_revision,
        ));
    }
    if let Some(state) = &report.state {
        let compared = match &state.compared {
            Compared::Full { .. } => "equals the log replayed".to_owned(),
            Compared::Partial {
                from_revision,
                verified,
                ..
            } => {
                format!("{verified} records checked against the log from revision {from_revision}")
            }
            Compared::NotCompared { reason } => format!("not compared with the log: {reason}"),
        };
        lines.push(format!(
            "  state: revision {}, {}, {compared}",
            state.revision,
            plural(state.records, "record", "records")
        ));
        for ns in &state.namespaces {
            lines.push(format!(
                "    {}: {} digest {}{}",
                ns.namespace,
                plural(ns.records, "record", "records"),
                ns.digest,
                if ns.differing > 0 {
                    format!(" ({} differ from the log)", ns.differing)
                } else {
                    String::new()
                }
            ));
        }
    }
    for note in &report.notes {
        lines.push(format!("note: {note}"));
    }
    for problem in &report.problems {
        let mut place = String::new();
        if let Some(file) = &problem.file {
            place.push_str(&file.display().to_string());
            if let Some(offset) = problem.offset {
                place.push_str(&format!(" at byte {offset}"));
            }
            place.push_str(": ");
        }
        if let Some(ns) = &problem.namespace {
            place.push_str(&format!("namespace {ns}: "));
        }
        lines.push(format!("problem: {place}{}", problem.what));
        lines.push(format!("  what to do: {}", problem.action));
    }
    if report.is_ok() {
        lines.push("ok: no problems found".to_owned());
        ctx.say(lines.join("\n"))?;
    } else {
        lines.push(format!(
            "{} found",
            plural(report.problems.len() as u64, "problem", "problems")
        ));
        // Problems are printed even with --quiet: they are what was asked for.
        ctx.print(lines.join("\n"))?;
    }
    Ok(code)
}
