//! `statelog backup DEST`: an online backup of the store into DEST.
//!
//! The first run into a directory writes a base (one consistent snapshot of the
//! state) and a `MANIFEST`; later runs into the same directory copy only the
//! log written since, so every revision from the base on can be restored
//! (`statelog restore`). Writers go on meanwhile. When another process holds
//! the store (`statelog serve`), that process writes the backup: it must run
//! as the same user (else exit 1, saying so). Exit 3 when DEST holds
//! other files, 1 when it is a backup of another store or has diverged.
//! `--json` prints `{"destination", "store_id", "full", "base_revision",
//! "revision", "time", "base_records", "bytes_copied", "log_bytes_copied",
//! "segments_copied", "backup_bytes", "seconds"}`.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use statelog::backup::BackupOptions;

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::output::plural;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup directory: new or empty for a full backup, or an earlier
    /// backup of this store (then only the new log is copied)
    pub dest: PathBuf,
}

#[derive(Serialize)]
struct BackupDoc {
    destination: String,
    store_id: String,
    full: bool,
    base_revision: u64,
    revision: u64,
    time: String,
    base_records: u64,
    bytes_copied: u64,
    log_bytes_copied: u64,
    segments_copied: usize,
    backup_bytes: u64,
    seconds: f64,
}

/// A progress bar on stderr when it is a terminal (and not `--quiet`).
pub fn bar(ctx: &Ctx, total: Option<u64>, template: &str) -> ProgressBar {
    if ctx.quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Library errors that mean "not here": exit 3, like other failed
/// preconditions.
pub fn refused(e: statelog::Error) -> anyhow::Error {
    match e {
        statelog::Error::TargetNotEmpty { .. } => fail(Code::Conflict, e.to_string()),
        e => anyhow::Error::new(e),
    }
}

/// A size, for people.
pub fn mb(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let bar = bar(ctx, None, "{spinner} backing up: {msg} ({elapsed})");
    let progress = bar.clone();
    let options = BackupOptions::new().progress(move |p| {
        progress.set_message(if p.bytes_to_copy > 0 {
            format!(
                "{} of {} of log copied",
                mb(p.bytes_copied),
                mb(p.bytes_to_copy)
            )
        } else {
            format!("{} records in the base", indicatif::HumanCount(p.records))
        });
    });
    ctx.with_store(Access::Scan, |store| {
        let result = store.backup_with(&args.dest, &options);
        bar.finish_and_clear();
        let report = result.map_err(refused)?;
        let doc = BackupDoc {
            destination: report.destination.display().to_string(),
            store_id: report.store_id.clone(),
            full: report.full,
            base_revision: report.base_revision,
            revision: report.revision,
            time: report.time.to_string(),
            base_records: report.base_records,
            bytes_copied: report.bytes_copied,
            log_bytes_copied: report.log_bytes_copied,
            segments_copied: report.segments_copied,
            backup_bytes: report.backup_bytes,
            seconds: report.duration.as_secs_f64(),
        };
        if ctx.json {
            ctx.print_json(&doc)?;
        } else if report.full {
            ctx.say(format!(
                "backed up revision {} to {}: a base of {} ({})",
                report.revision,
                doc.destination,
                plural(report.base_records, "record", "records"),
                mb(report.base_bytes)
            ))?;
        } else {
            ctx.say(format!(
                "backed up revisions up to {} to {}: copied {} of new log ({}); the backup \
                 holds revisions {} to {} in {}",
                report.revision,
                doc.destination,
                mb(report.log_bytes_copied),
                plural(report.segments_copied as u64, "segment", "segments"),
                report.base_revision,
                report.revision,
                mb(report.backup_bytes)
            ))?;
        }
        Ok(Code::Ok)
    })
}
