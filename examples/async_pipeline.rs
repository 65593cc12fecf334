//! The quick-start pipeline with async stages (feature `tokio`): each task's
//! stages run as concurrent tokio tasks that record their artifact in the
//! task's record through `AsyncStore::update`, the way an asyncio pipeline's
//! stages would. At the end every stage's artifact is present and each
//! record's version counts exactly its writes. A monitor follows the tasks
//! through a watch (a `Stream`) and sees each one finish.
//!
//! Run: `cargo run --release --features tokio --example async_pipeline`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use statelog::{AsyncStore, Error, Options, Watch, WatchEvent};

const TASKS: usize = 4;
const STAGES: [&str; 6] = [
    "download",
    "transcode",
    "audio",
    "subtitles",
    "thumbnail",
    "publish",
];

#[derive(Debug, Default, Serialize, Deserialize)]
struct TaskState {
    status: String,
    /// Stage name -> artifact path.
    artifacts: BTreeMap<String, String>,
    progress: u32,
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("async_pipeline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("async_pipeline: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> statelog::Result<bool> {
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        op: "create a temporary directory",
        path: std::env::temp_dir(),
        source: e,
    })?;
    let store = AsyncStore::open(dir.path().join("state"), Options::default()).await?;

    // Subscribed before the first write: it sees every change of "tasks".
    let mut watcher = store.watch(Watch::namespace("tasks")).await?;
    let monitor = tokio::spawn(async move {
        let mut finished = BTreeSet::new();
        while finished.len() < TASKS {
            match watcher.next().await {
                Some(Ok(WatchEvent::Change(change))) => {
                    for event in change.events {
                        if let Some(record) = &event.value
                            && record
                                .value
                                .decode::<TaskState>()
                                .is_ok_and(|t| t.status == "done")
                        {
                            finished.insert(event.key);
                        }
                    }
                }
                Some(Ok(WatchEvent::Progress { .. })) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        // Dropping the watcher here ends the watch.
        Ok::<_, Error>(finished.len())
    });

    let mut stages = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let id = format!("task_{task}");
        store.put("tasks", id.clone(), TaskState::default()).await?;
        for stage in STAGES {
            let (store, id) = (store.clone(), id.clone());
            stages.spawn(async move {
                // ... the stage's own work would be awaited here ...
                let artifact = format!("{stage}/{id}.out");
                store
                    .update("tasks", id, move |old: Option<TaskState>| {
                        let mut state = old.unwrap_or_default();
                        state.artifacts.insert(stage.to_owned(), artifact.clone());
                        state.progress = (100 * state.artifacts.len() / STAGES.len()) as u32;
                        state.status = if state.progress == 100 {
                            "done"
                        } else {
                            "running"
                        }
                        .into();
                        Ok::<_, Error>(state)
                    })
                    .await
            });
        }
    }
    while let Some(done) = stages.join_next().await {
        match done {
            Ok(result) => {
                result?;
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    let finished = match monitor.await {
        Ok(result) => result?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    println!("the monitor saw {finished} of {TASKS} tasks finish");
    let mut ok = finished == TASKS;
    for (id, task) in store.list::<TaskState>("tasks", ..).await? {
        let complete = STAGES.iter().all(|s| task.value.artifacts.contains_key(*s));
        // One version for the put, one per stage.
        let exact = task.version == 1 + STAGES.len() as u64;
        println!(
            "{id}: {} ({}%), {} artifacts, version {}",
            task.value.status,
            task.value.progress,
            task.value.artifacts.len(),
            task.version
        );
        ok &= complete && exact && task.value.status == "done";
    }
    let stats = store.stats().await?;
    println!(
        "{} commits in {} group commits; {} conflicts retried",
        stats.commits, stats.batches, stats.retries
    );
    store.close().await?;
    println!(
        "{}",
        if ok {
            "all stages recorded"
        } else {
            "MISSING UPDATES"
        }
    );
    Ok(ok)
}
