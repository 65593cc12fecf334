//! `statelog compact`: a checkpoint, the log retention policy (the default
//! one: old segments behind the checkpoint beyond 128 MiB go, but none the
//! last backup has not copied), and redb's compaction of the state database
//! file. `--json` prints `{"revision", "segments_removed",
//! "log_bytes_removed", "segments_held_for_backup", "log_bytes",
//! "state_bytes_before", "state_bytes_after", "duration"}` (duration in ms).

use serde::Serialize;
use statelog::Options;
use statelog::maintenance::compact;

use crate::context::Ctx;
use crate::exit::Code;
use crate::output::{bytes, millis, plural};

pub const EXAMPLES: &str = r#"Examples:
  statelog compact
  statelog compact --json | jq .state_bytes_after"#;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct CompactDoc {
    revision: u64,
    segments_removed: usize,
    log_bytes_removed: u64,
    segments_held_for_backup: usize,
    log_bytes: u64,
    state_bytes_before: u64,
    state_bytes_after: u64,
    duration: u64,
}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let options = Options::default().create(false).lock_timeout(ctx.wait);
    let report = ctx
        .waiting(|| compact(&ctx.store, &options))
        .map_err(|e| match e {
            statelog::Error::NotAStore { .. } | statelog::Error::Busy { .. } => ctx.tool_error(e),
            e => anyhow::Error::new(e).context("the compaction failed"),
        })?;
    if ctx.json {
        ctx.print_json(&CompactDoc {
            revision: report.revision,
            segments_removed: report.segments_removed,
            log_bytes_removed: report.log_bytes_removed,
            segments_held_for_backup: report.segments_held_for_backup,
            log_bytes: report.log_bytes,
            state_bytes_before: report.state_bytes_before,
            state_bytes_after: report.state_bytes_after,
            duration: millis(report.duration),
        })?;
        return Ok(Code::Ok);
    }
    let mut text = format!(
        "compacted the store at revision {}: state database {} -> {}; removed {} of old log \
         ({}), {} left",
        report.revision,
        bytes(report.state_bytes_before),
        bytes(report.state_bytes_after),
        plural(report.segments_removed as u64, "segment", "segments"),
        bytes(report.log_bytes_removed),
        bytes(report.log_bytes)
    );
    if report.segments_held_for_backup > 0 {
        text.push_str(&format!(
            "; kept {} the last backup has not copied (run `statelog backup`)",
            plural(
                report.segments_held_for_backup as u64,
                "segment",
                "segments"
            )
        ));
    }
    ctx.say(text).map(|()| Code::Ok)
}
