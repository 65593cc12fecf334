//! The recovery tool's speed (issue 7): backup, incremental backup, restore
//! (replay speed in records per second), check and compact.
//!
//! A store is loaded with `STATELOG_BENCH_RECORDS` records (default 200,000;
//! one transaction per 1,000), then backed up (the base: one MVCC read
//! written as a base segment); then `STATELOG_BENCH_COMMITS` single-record
//! commits (default 100,000) follow and an incremental backup copies their
//! log. The backup is then restored (the base loaded, every commit replayed),
//! to the end and to the middle of the log; the store and the backup are
//! checked; the store is compacted.
//!
//! Run: `cargo bench --bench recovery`; `STATELOG_BENCH_QUICK=1` for a smoke
//! run (20,000 records, 10,000 commits).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use statelog::backup::{RestoreOptions, Until, restore};
use statelog::maintenance::{CheckOptions, check, compact};
use statelog::{CheckpointPolicy, Durability, Options, Store};

use common::Record;

const NS: &str = "bench";

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let quick = common::quick();
    let records = common::env_u64(
        "STATELOG_BENCH_RECORDS",
        if quick { 20_000 } else { 200_000 },
    );
    let commits = common::env_u64(
        "STATELOG_BENCH_COMMITS",
        if quick { 10_000 } else { 100_000 },
    );
    let dir = common::temp_dir("recovery-");
    println!("{}", common::machine(dir.path()));
    println!("load average at start: {}", common::load_average());
    println!("{records} records, then {commits} single-record commits");
    let store_dir = dir.path().join("store");
    let backup_dir = dir.path().join("backup");

    // Load: relaxed durability only to build the store quickly.
    let options = Options::default()
        .durability(Durability::Relaxed {
            max_delay: std::time::Duration::from_millis(50),
        })
        .checkpoint(CheckpointPolicy::manual());
    let store = Store::open(&store_dir, options.clone()).expect("open");
    let keys = common::keys(records);
    for chunk in keys.chunks(1000) {
        store
            .transaction(|tx| {
                for (i, key) in chunk.iter().enumerate() {
                    tx.put(NS, key, &Record::new(1, i as u64))?;
                }
                Ok::<_, statelog::Error>(())
            })
            .expect("load");
    }
    store.checkpoint().expect("checkpoint");

    let start = Instant::now();
    let full = store.backup(&backup_dir).expect("full backup");
    let secs = start.elapsed().as_secs_f64();
    println!();
    println!("| operation | time | amount | rate |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| full backup (base of {} records, {:.1} MB) | {secs:.2} s | {} records | {:.0} records/s, {:.0} MB/s |",
        full.base_records,
        mb(full.base_bytes),
        full.base_records,
        full.base_records as f64 / secs,
        mb(full.base_bytes) / secs
    );

    for i in 0..commits {
        let key = &keys[(i * 7919 % records) as usize];
        store
            .put(NS, key, &Record::new(2, i))
            .expect("a commit after the backup");
    }
    let start = Instant::now();
    let incremental = store.backup(&backup_dir).expect("incremental backup");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "| incremental backup ({commits} new commits) | {secs:.2} s | {:.1} MB in {} segments | {:.0} MB/s |",
        mb(incremental.log_bytes_copied),
        incremental.segments_copied,
        mb(incremental.log_bytes_copied) / secs
    );
    let start = Instant::now();
    let nothing = store
        .backup(&backup_dir)
        .expect("an incremental with nothing new");
    println!(
        "| incremental backup, nothing new | {:.3} s | {} bytes | |",
        start.elapsed().as_secs_f64(),
        nothing.bytes_copied
    );
    store.close().expect("close");

    for (what, until) in [
        ("restore to the end", Until::End),
        (
            "restore to the middle of the log",
            Until::Revision(full.revision + commits / 2),
        ),
    ] {
        let target = dir.path().join("restored");
        let start = Instant::now();
        let report =
            restore(&backup_dir, &target, &RestoreOptions::new().until(until)).expect("restore");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| {what}: base of {} records + {} commits replayed | {secs:.2} s | {} records | {:.0} records/s |",
            report.base_records,
            report.commits_replayed,
            report.base_records + report.commits_replayed,
            (report.base_records + report.commits_replayed) as f64 / secs,
        );
        std::fs::remove_dir_all(&target).expect("remove the restored store");
    }

    let start = Instant::now();
    let report = check(&store_dir, &CheckOptions::new()).expect("check the store");
    assert!(report.is_ok(), "{:?}", report.problems);
    println!(
        "| check the store ({} commits replayed and compared, {:.0} MB of log) | {:.2} s | {} records | |",
        report.log.commits,
        mb(report.log.bytes),
        start.elapsed().as_secs_f64(),
        report.state.map_or(0, |s| s.records)
    );
    let start = Instant::now();
    let report = check(&backup_dir, &CheckOptions::new()).expect("check the backup");
    assert!(report.is_ok(), "{:?}", report.problems);
    println!(
        "| check the backup (a trial restore) | {:.2} s | {:.0} MB | |",
        start.elapsed().as_secs_f64(),
        mb(report.log.bytes)
    );
    let start = Instant::now();
    let compacted = compact(&store_dir, &Options::default()).expect("compact");
    println!(
        "| compact (checkpoint, retention, redb compaction) | {:.2} s | state {:.1} -> {:.1} MB, {} segments removed | |",
        start.elapsed().as_secs_f64(),
        mb(compacted.state_bytes_before),
        mb(compacted.state_bytes_after),
        compacted.segments_removed
    );
    println!("load average at end: {}", common::load_average());
}
