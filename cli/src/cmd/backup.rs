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
//! "segments_copied", "backup_bytes", "duration"}` (duration in ms).

use std::path::PathBuf;

use serde::Serialize;
use statelog::backup::BackupOptions;

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::output::{bytes, millis, plural};
use crate::progress::{self, Output};

pub const EXAMPLES: &str = r#"Examples:
  statelog backup /backups/state         # the first run: a base; later runs: the new log
  statelog check --backup /backups/state"#;

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
    duration: u64,
}

/// Library errors that mean "not here": exit 3, like other failed
/// preconditions.
pub fn refused(e: statelog::Error) -> anyhow::Error {
    match e {
        statelog::Error::TargetNotEmpty { .. } => fail(Code::Conflict, e.to_string()),
        e => anyhow::Error::new(e),
    }
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let bar = progress::bar(
        ctx,
        Output::Elsewhere,
        None,
        "{spinner} backing up: {msg} ({elapsed})",
    );
    let progress = bar.clone();
    let options = BackupOptions::new().progress(move |p| {
        progress.set_message(if p.bytes_to_copy > 0 {
            format!(
                "{} of {} of log copied",
                bytes(p.bytes_copied),
                bytes(p.bytes_to_copy)
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
            duration: millis(report.duration),
        };
        if ctx.json {
            ctx.print_json(&doc)?;
        } else if report.full {
            ctx.say(format!(
                "backed up revision {} to {}: a base of {} ({})",
                report.revision,
                doc.destination,
                plural(report.base_records, "record", "records"),
                bytes(report.base_bytes)
            ))?;
        } else {
            ctx.say(format!(
                "backed up revisions up to {} to {}: copied {} of new log ({}); the backup \
                 holds revisions {} to {} in {}",
                report.revision,
                doc.destination,
                bytes(report.log_bytes_copied),
                plural(report.segments_copied as u64, "segment", "segments"),
                report.base_revision,
                report.revision,
                bytes(report.backup_bytes)
            ))?;
        }
        Ok(Code::Ok)
    })
}
