//! The quick-start demonstration: a pipeline whose parallel stages update shared
//! task state, the job every hand-rolled `state.json` + lock script does.
//!
//! 8 worker threads process 4 tasks of 6 stages each. Every stage completion is
//! an optimistic `update` of the task record (read, change, compare-and-swap,
//! retry on conflict), and every worker also bumps a shared progress counter in
//! a multi-key transaction. At the end the store is closed, reopened, printed and
//! checked: every stage's artifact is present, every version adds up, no update
//! was lost.
//!
//! Run: `cargo run --release --example pipeline [STORE_DIR]` (a temporary
//! directory by default).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use statelog::{Error, Options, Store};

const TASKS: usize = 4;
const STAGES: [&str; 6] = [
    "download",
    "transcode",
    "audio",
    "subtitles",
    "thumbnail",
    "publish",
];
const WORKERS: usize = 8;

#[derive(Debug, Default, Serialize, Deserialize)]
struct TaskState {
    status: String,
    /// Stage name -> artifact path.
    artifacts: BTreeMap<String, String>,
    /// Percentage of stages done.
    progress: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    stages_done: u64,
    by_worker: BTreeMap<String, u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pipeline: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> statelog::Result<bool> {
    let temp;
    let dir = match std::env::args().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            temp = tempfile::tempdir().map_err(|e| Error::Io {
                op: "create a temporary directory",
                path: std::env::temp_dir(),
                source: e,
            })?;
            temp.path().join("pipeline-state")
        }
    };
    let store = Store::open(&dir, Options::default())?;
    let start_revision = store.revision();
    println!("store {} (revision {start_revision})", dir.display());

    // Create the tasks (create-only, so a rerun on the same store keeps them).
    for t in 0..TASKS {
        let key = format!("video_{t}");
        match store.create(
            "tasks",
            &key,
            &TaskState {
                status: "queued".into(),
                ..Default::default()
            },
        ) {
            Ok(_) | Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }

    // What the store held before this run, to check the run's effect exactly.
    let totals_before = store
        .get::<Totals>("stats", "totals")?
        .map_or(0, |r| r.value.stages_done);
    let mut versions_before = BTreeMap::new();
    for item in store.list::<TaskState>("tasks", ..)? {
        let (key, record) = item?;
        versions_before.insert(key, record.version);
    }

    // Every (task, stage) pair is one unit of work; workers take them round-robin.
    let work: Vec<(usize, &str)> = (0..TASKS)
        .flat_map(|t| STAGES.iter().map(move |s| (t, *s)))
        .collect();
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(WORKERS));
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let store = store.clone();
            let work = Arc::clone(&work);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> statelog::Result<()> {
                barrier.wait();
                for (task, stage) in work.iter().skip(w).step_by(WORKERS) {
                    let key = format!("video_{task}");
                    // Complete one stage of one task: no other stage's artifact is lost.
                    store.update(
                        "tasks",
                        &key,
                        |old: Option<TaskState>| -> statelog::Result<_> {
                            let mut state = old.unwrap_or_default();
                            state.artifacts.insert(
                                (*stage).to_owned(),
                                format!("/artifacts/{key}/{stage}.bin"),
                            );
                            state.progress = (state.artifacts.len() * 100 / STAGES.len()) as u32;
                            state.status = if state.artifacts.len() == STAGES.len() {
                                "done".into()
                            } else {
                                "running".into()
                            };
                            Ok(state)
                        },
                    )?;
                    // And count it, with the worker's own tally, in one transaction.
                    store.transaction(|tx| {
                        let mut totals: Totals = tx
                            .get("stats", "totals")?
                            .map(|r| r.value)
                            .unwrap_or_default();
                        totals.stages_done += 1;
                        *totals.by_worker.entry(format!("worker_{w}")).or_default() += 1;
                        tx.put("stats", "totals", &totals)?;
                        Ok::<_, Error>(())
                    })?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker panicked")?;
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    store.close()?;

    // Reopen and check what is on disk.
    let store = Store::open(&dir, Options::default())?;
    let mut ok = true;
    println!();
    println!(
        "{:<10} {:<8} {:>8} {:>8}  artifacts",
        "task", "status", "progress", "version"
    );
    for item in store.list::<TaskState>("tasks", ..)? {
        let (key, record) = item?;
        let task = &record.value;
        println!(
            "{key:<10} {:<8} {:>7}% {:>8}  {}",
            task.status,
            task.progress,
            record.version,
            task.artifacts.keys().cloned().collect::<Vec<_>>().join(",")
        );
        if task.artifacts.len() != STAGES.len() || task.status != "done" || task.progress != 100 {
            println!("  MISSING: not every stage of {key} is recorded");
            ok = false;
        }
        let before = versions_before.get(&key).copied().unwrap_or(0);
        if record.version != before + STAGES.len() as u64 {
            println!(
                "  LOST UPDATE: {key} went from version {before} to {}, not +{}",
                record.version,
                STAGES.len()
            );
            ok = false;
        }
    }
    let totals = store
        .get::<Totals>("stats", "totals")?
        .map(|r| r.value)
        .unwrap_or_default();
    let expected = totals_before + (TASKS * STAGES.len()) as u64;
    println!();
    println!(
        "stages done: {} (expected {expected}); per worker: {:?}",
        totals.stages_done, totals.by_worker
    );
    if totals.stages_done != expected {
        println!("  LOST UPDATES: the stage counter is off");
        ok = false;
    }
    println!(
        "{} commits in {:.0} ms ({} group commits, {} conflicts retried); store at revision {}",
        stats.commits,
        elapsed.as_secs_f64() * 1e3,
        stats.batches,
        stats.retries,
        store.revision()
    );
    println!(
        "{}",
        if ok {
            "OK: no update was lost"
        } else {
            "FAILED"
        }
    );
    Ok(ok)
}
