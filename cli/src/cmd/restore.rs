//! `statelog restore BACKUP TARGET [--to-revision N | --to-time T]
//! [--overwrite]`: a new store in TARGET from a backup, by loading its base and
//! replaying its log up to the end, a revision (inclusive), or a time (the
//! commits before it).
//!
//! The whole backup is checked before TARGET is touched; a damaged backup is
//! refused (exit 1, naming the file). TARGET must be new or empty (exit 3
//! otherwise); with `--overwrite` a store there is moved aside to
//! `TARGET.replaced-<time>`, never deleted. It takes no `--store`: its store
//! is TARGET. A progress bar (commits replayed, MB/s, time left) is drawn on
//! a terminal. `--json` prints `{"target", "store_id", "backup_store_id",
//! "base_revision", "base_records", "revision", "time", "commits_replayed",
//! "replaced", "duration"}` (duration in ms).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;
use statelog::backup::{RestoreOptions, Until, restore};
use statelog::{Options, Timestamp};

use super::backup::refused;
use crate::context::Ctx;
use crate::exit::Code;
use crate::output::{millis, plural};
use crate::progress::{self, Output};

pub const EXAMPLES: &str = r#"Examples:
  statelog restore /backups/state /srv/state-new
  statelog restore /backups/state /tmp/at-10 --to-time 2026-03-01T10:00:00Z
  statelog restore /backups/state /srv/state --to-revision 1200 --overwrite"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup directory (written by `statelog backup`)
    pub backup: PathBuf,
    /// Where to create the restored store: a new or empty directory
    pub target: PathBuf,
    /// Stop at this revision (inclusive)
    #[arg(long, value_name = "N", conflicts_with = "to_time")]
    pub to_revision: Option<u64>,
    /// Restore the commits made before this time (RFC 3339 in UTC, e.g.
    /// 2026-03-01T10:00:00Z)
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to_time: Option<Timestamp>,
    /// Replace a store in TARGET; it is moved aside to TARGET.replaced-TIME,
    /// not deleted
    #[arg(long)]
    pub overwrite: bool,
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse()
        .map_err(|e: statelog::ParseTimestampError| e.to_string())
}

#[derive(Serialize)]
struct RestoreDoc {
    target: String,
    store_id: String,
    backup_store_id: String,
    base_revision: u64,
    base_records: u64,
    revision: u64,
    time: String,
    commits_replayed: u64,
    replaced: Option<String>,
    duration: u64,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let until = match (args.to_revision, args.to_time) {
        (Some(n), _) => Until::Revision(n),
        (None, Some(t)) => Until::Time(t),
        (None, None) => Until::End,
    };
    let bar = progress::bar(
        ctx,
        Output::Elsewhere,
        None,
        "restoring: {pos}/{len} commits {wide_bar} {msg} ({eta} left)",
    );
    let progress = bar.clone();
    let started = Instant::now();
    let options = RestoreOptions::new()
        .until(until)
        .overwrite(args.overwrite)
        .store_options(Options::default().lock_timeout(ctx.wait))
        .progress(move |p| {
            progress.set_length(p.commits_total);
            progress.set_position(p.commits);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!("{:.1} MB/s", p.bytes as f64 / 1e6 / secs));
        });
    let result = ctx.waiting(|| restore(&args.backup, &args.target, &options));
    bar.finish_and_clear();
    let report = result.map_err(refused).with_context(|| {
        format!(
            "cannot restore {} into {}",
            args.backup.display(),
            args.target.display()
        )
    })?;
    let doc = RestoreDoc {
        target: report.target.display().to_string(),
        store_id: report.store_id.clone(),
        backup_store_id: report.backup_store_id.clone(),
        base_revision: report.base_revision,
        base_records: report.base_records,
        revision: report.revision,
        time: report.time.to_string(),
        commits_replayed: report.commits_replayed,
        replaced: report.replaced.as_ref().map(|p| p.display().to_string()),
        duration: millis(report.duration),
    };
    if ctx.json {
        ctx.print_json(&doc)?;
        return Ok(Code::Ok);
    }
    ctx.say(format!(
        "restored revision {} (committed {}) into {}: the base at revision {} and {} \
         replayed in {:.1} s",
        report.revision,
        doc.time,
        doc.target,
        report.base_revision,
        plural(report.commits_replayed, "commit", "commits"),
        report.duration.as_secs_f64()
    ))?;
    if let Some(replaced) = &doc.replaced {
        ctx.say(format!("the store that was there is now in {replaced}"))?;
    }
    Ok(Code::Ok)
}
