//! `statelog compact`: a checkpoint, the log retention policy (the default
//! one: old segments behind the checkpoint beyond 256 MiB go, but none the
//! last backup has not copied), and redb's compaction of the state database
//! file. `--json` prints `{"revision", "segments_removed",
//! "log_bytes_removed", "segments_held_for_backup", "log_bytes",
//! "state_bytes_before", "state_bytes_after", "duration"}` (duration in ms).

use statelog::Options;
use statelog::maintenance::compact;

use super::backup::mb;
use crate::context::Ctx;
use crate::exit::Code;
use crate::output::plural;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let options = Options::default().create(false).lock_timeout(ctx.wait);
    let report = ctx
        .waiting(|| compact(&ctx.store, &options))
        .map_err(|e| match e {
            statelog::Error::NotAStore { .. } | statelog::Error::Busy { .. } => ctx.tool_error(e),
            e => anyhow::Error::new(e).context("the compaction failed"),
        })?;
    if ctx.json {
        ctx.print_json(&report)?;
        return Ok(Code::Ok);
    }
    let mut text = format!(
        "compacted the store at revision {}: state database {} -> {}; removed {} of old log \
         ({}), {} left",
        report.revision,
        mb(report.state_bytes_before),
        mb(report.state_bytes_after),
        plural(report.segments_removed as u64, "segment", "segments"),
        mb(report.log_bytes_removed),
        mb(report.log_bytes)
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
