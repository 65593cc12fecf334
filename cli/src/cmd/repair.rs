//! `statelog repair`: bring a damaged store back to a state that opens,
//! keeping what can be kept and moving the rest aside (never deleting).
//!
//! A damaged log is kept up to its last intact commit and the rest moved
//! aside; a damaged, missing or wrong state database is rebuilt from the log
//! when the log reaches back to the store's first revision; when the state
//! database is ahead of what survives of the log, the log is re-based on it.
//! Prints what it did and exactly which revisions were lost. Exit 0 when the
//! store is repaired (or needed nothing), 1 when something could not be
//! repaired. `--json` prints `{"path", "store_id", "found": [...], "actions",
//! "aside", "moved", "lost": {"kind": "nothing" | "revisions" (with "from",
//! "to") | "unknown" (with "after")}, "revision", "unrepaired": [...],
//! "duration"}` (duration in ms).

use std::path::PathBuf;

use serde::Serialize;
use statelog::maintenance::{Lost, RepairOptions, RepairReport, repair};

use crate::context::Ctx;
use crate::exit::Code;
use crate::output::{ProblemDoc, millis};

pub const EXAMPLES: &str = r#"Examples:
  statelog check || statelog repair"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where scratch files go [default: the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
}

#[derive(Serialize)]
struct RepairDoc {
    path: String,
    store_id: String,
    found: Vec<ProblemDoc>,
    actions: Vec<String>,
    aside: Option<String>,
    moved: Vec<String>,
    lost: LostDoc,
    revision: u64,
    unrepaired: Vec<ProblemDoc>,
    duration: u64,
}

/// Which revisions were lost: `kind` is `nothing`, `revisions` (with `from`
/// and `to`) or `unknown` (with `after`).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LostDoc {
    Nothing,
    Revisions { from: u64, to: u64 },
    Unknown { after: u64 },
}

fn doc(report: &RepairReport) -> RepairDoc {
    RepairDoc {
        path: report.path.display().to_string(),
        store_id: report.store_id.clone(),
        found: report.found.iter().map(ProblemDoc::new).collect(),
        actions: report.actions.clone(),
        aside: report.aside.as_ref().map(|p| p.display().to_string()),
        moved: report
            .moved
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        lost: match report.lost {
            Lost::Nothing => LostDoc::Nothing,
            Lost::Revisions { from, to } => LostDoc::Revisions { from, to },
            Lost::Unknown { after } => LostDoc::Unknown { after },
        },
        revision: report.revision,
        unrepaired: report.unrepaired.iter().map(ProblemDoc::new).collect(),
        duration: millis(report.duration),
    }
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let mut options = RepairOptions::new().lock_timeout(ctx.wait);
    if let Some(dir) = &args.scratch {
        options = options.scratch_dir(dir);
    }
    let report = ctx
        .waiting(|| repair(&ctx.store, &options))
        .map_err(|e| match e {
            statelog::Error::NotAStore { .. } | statelog::Error::Busy { .. } => ctx.tool_error(e),
            e => anyhow::Error::new(e),
        })?;
    let code = if report.is_repaired() {
        Code::Ok
    } else {
        Code::Error
    };
    if ctx.json {
        ctx.print_json(&doc(&report))?;
        return Ok(code);
    }
    let mut lines = Vec::new();
    for problem in &report.found {
        lines.push(format!("found: {problem}"));
    }
    for action in &report.actions {
        lines.push(format!("done: {action}"));
    }
    lines.push(match report.lost {
        Lost::Nothing => "lost: nothing".to_owned(),
        Lost::Revisions { from, to } => {
            format!("lost: revisions {from} to {to} (their records are in the moved-aside files)")
        }
        Lost::Unknown { after } => format!(
            "lost: whatever followed revision {after} (nothing after the damage could be read)"
        ),
    });
    if let Some(aside) = &report.aside {
        lines.push(format!("moved aside (kept): {}", aside.display()));
    }
    for problem in &report.unrepaired {
        lines.push(format!("not repaired: {problem}"));
    }
    if report.is_repaired() {
        lines.push(format!("the store opens at revision {}", report.revision));
        ctx.say(lines.join("\n"))?;
    } else {
        ctx.print(lines.join("\n"))?;
    }
    Ok(code)
}
