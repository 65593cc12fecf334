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
use statelog::maintenance::{
    CheckOptions, CheckReport, CheckedKind, Compared, IntegrityOutcome, check, check_backup,
};

use crate::context::Ctx;
use crate::exit::Code;
use crate::output::{ProblemDoc, bytes, millis, plural};

pub const EXAMPLES: &str = r#"Examples:
  statelog check                         # exit 1, saying where, on any problem
  statelog check --quick                 # without comparing the state with the log
  statelog check --backup /backups/state"#;

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
struct CheckDoc {
    ok: bool,
    path: String,
    kind: &'static str,
    store_id: Option<String>,
    problems: Vec<ProblemDoc>,
    notes: Vec<String>,
    log: LogDoc,
    state: Option<StateDoc>,
    duration: u64,
}

#[derive(Serialize)]
struct LogDoc {
    segments: usize,
    bytes: u64,
    first_revision: Option<u64>,
    last_revision: u64,
    commits: u64,
    reaches_start: bool,
}

#[derive(Serialize)]
struct StateDoc {
    revision: u64,
    time: String,
    records: u64,
    integrity: IntegrityDoc,
    compared: ComparedDoc,
    namespaces: Vec<NamespaceDoc>,
}

/// redb's integrity check: `result` is `passed`, `repairable`, `failed`
/// (with `detail`) or `not_run`.
#[derive(Serialize)]
struct IntegrityDoc {
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// How the state was compared with the log: `how` is `full`, `partial` or
/// `not_compared`, with that case's members.
#[derive(Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
enum ComparedDoc {
    Full {
        revision: u64,
    },
    Partial {
        from_revision: u64,
        revision: u64,
        verified: u64,
    },
    NotCompared {
        reason: String,
    },
}

#[derive(Serialize)]
struct NamespaceDoc {
    namespace: String,
    records: u64,
    digest: String,
    log_digest: Option<String>,
    differing: u64,
}

fn doc(report: &CheckReport) -> CheckDoc {
    let log = &report.log;
    CheckDoc {
        ok: report.is_ok(),
        path: report.path.display().to_string(),
        kind: match report.kind {
            CheckedKind::Store => "store",
            CheckedKind::Backup => "backup",
        },
        store_id: report.store_id.clone(),
        problems: report.problems.iter().map(ProblemDoc::new).collect(),
        notes: report.notes.clone(),
        log: LogDoc {
            segments: log.segments,
            bytes: log.bytes,
            first_revision: log.first_revision,
            last_revision: log.last_revision,
            commits: log.commits,
            reaches_start: log.reaches_start,
        },
        state: report.state.as_ref().map(|state| StateDoc {
            revision: state.revision,
            time: state.time.clone(),
            records: state.records,
            integrity: match &state.integrity {
                IntegrityOutcome::Passed => IntegrityDoc {
                    result: "passed",
                    detail: None,
                },
                IntegrityOutcome::Repairable => IntegrityDoc {
                    result: "repairable",
                    detail: None,
                },
                IntegrityOutcome::Failed(detail) => IntegrityDoc {
                    result: "failed",
                    detail: Some(detail.clone()),
                },
                IntegrityOutcome::NotRun => IntegrityDoc {
                    result: "not_run",
                    detail: None,
                },
            },
            compared: match &state.compared {
                Compared::Full { revision } => ComparedDoc::Full {
                    revision: *revision,
                },
                Compared::Partial {
                    from_revision,
                    revision,
                    verified,
                } => ComparedDoc::Partial {
                    from_revision: *from_revision,
                    revision: *revision,
                    verified: *verified,
                },
                Compared::NotCompared { reason } => ComparedDoc::NotCompared {
                    reason: reason.clone(),
                },
            },
            namespaces: state
                .namespaces
                .iter()
                .map(|ns| NamespaceDoc {
                    namespace: ns.namespace.clone(),
                    records: ns.records,
                    digest: ns.digest.clone(),
                    log_digest: ns.log_digest.clone(),
                    differing: ns.differing,
                })
                .collect(),
        }),
        duration: millis(report.duration),
    }
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
        ctx.print_json(&doc(&report))?;
        return Ok(code);
    }
    let what = match report.kind {
        CheckedKind::Store => "store",
        CheckedKind::Backup => "backup",
    };
    let mut lines = vec![format!("checked the {what} at {}", report.path.display())];
    let log = &report.log;
    let start = match (report.kind, log.reaches_start) {
        (CheckedKind::Backup, false) => " (from the base)",
        (CheckedKind::Store, false) => " (older revisions were removed by log retention)",
        _ => "",
    };
    // A backup whose manifest could not be read has nothing to summarise.
    if report.store_id.is_some() {
        lines.push(format!(
            "  log: {} ({}), revisions {} to {}{start}",
            plural(log.segments as u64, "segment", "segments"),
            bytes(log.bytes),
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
