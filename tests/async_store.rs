//! The async handle (feature `tokio`): no update lost from many tasks on a
//! multi-threaded runtime, and no call ever blocking the runtime's threads.

#![cfg(feature = "tokio")]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use statelog::{AsyncStore, Error, Options, Store};

const TASKS: usize = 16;
const UPDATES: u64 = 100;

#[test]
fn sixteen_tasks_updating_one_record_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let (record, stats) = runtime.block_on(async {
        let store = AsyncStore::open(&path, Options::default()).await.unwrap();
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..UPDATES {
                    store
                        .update(
                            "counters",
                            "shared",
                            move |old: Option<BTreeMap<String, u64>>| {
                                let mut counts = old.unwrap_or_default();
                                *counts.entry(format!("task{task:02}")).or_default() += 1;
                                *counts.entry("total".to_owned()).or_default() += 1;
                                Ok::<_, Error>(counts)
                            },
                        )
                        .await
                        .unwrap();
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let record = store
            .get::<BTreeMap<String, u64>>("counters", "shared")
            .await
            .unwrap()
            .unwrap();
        let stats = store.stats().await.unwrap();
        store.close().await.unwrap();
        (record, stats)
    });
    let total = TASKS as u64 * UPDATES;
    assert_eq!(record.value["total"], total);
    for task in 0..TASKS {
        assert_eq!(
            record.value[&format!("task{task:02}")],
            UPDATES,
            "task {task}"
        );
    }
    assert_eq!(record.version, total);
    assert_eq!(stats.commits, total);
    // And it is all on disk.
    let store = Store::open(&path, Options::default()).unwrap();
    let reopened = store
        .get::<BTreeMap<String, u64>>("counters", "shared")
        .unwrap();
    assert_eq!(reopened.unwrap().value["total"], total);
}

/// A one-thread runtime; each test below needs another task on it to run
/// while a store call waits. Were the call run on the runtime's thread, that
/// task could not run and the call would fail.
fn one_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn an_open_waiting_for_the_lock_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let holder = Store::open(&path, Options::default()).unwrap();
    holder.put("tasks", "t", &1).unwrap();
    let opened = one_thread().block_on(async {
        let options = Options::default().lock_timeout(Duration::from_secs(5));
        let opening = tokio::spawn(AsyncStore::open(path.clone(), options));
        // Only this task releases the lock: if the open held the thread, it
        // would wait its 5 s and fail with Busy before this line could run.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        holder.close().unwrap();
        opening.await.unwrap()
    });
    let store = opened.expect("the open ran off the runtime and got the lock once released");
    assert_eq!(
        store
            .store()
            .get::<i32>("tasks", "t")
            .unwrap()
            .unwrap()
            .value,
        1
    );
}

#[test]
fn an_update_closure_waiting_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), Options::default()).unwrap();
    let store = AsyncStore::from(store);
    let (send, receive) = mpsc::channel::<u64>();
    let record = one_thread().block_on(async {
        let updating = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .update("counters", "n", move |old: Option<u64>| {
                        // Sent by a task on the runtime: if this closure ran on
                        // the runtime's thread, nothing would ever be sent.
                        let by = receive
                            .recv_timeout(Duration::from_secs(5))
                            .map_err(|_| "the runtime never ran while the update waited")?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(old.unwrap_or(0) + by)
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        send.send(5).unwrap();
        updating.await.unwrap()
    });
    let record = record.unwrap();
    assert_eq!((record.value, record.version), (5, 1));
}

#[test]
fn the_async_methods_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    one_thread().block_on(async {
        let store = AsyncStore::open(&path, Options::default()).await.unwrap();
        assert_eq!(store.create("t", "a", 1).await.unwrap().version, 1);
        assert!(store.create("t", "a", 2).await.unwrap_err().is_conflict());
        assert_eq!(
            store
                .compare_and_swap("t", "a", 1, 3)
                .await
                .unwrap()
                .version,
            2
        );
        assert!(!store.put_if_changed("t", "a", 3).await.unwrap().changed);
        store.put("t", "b", "x").await.unwrap();
        let listed = store.list::<serde_json::Value>("t", ..).await.unwrap();
        assert_eq!(listed.len(), 2);
        let moved = store
            .transaction(|tx| {
                let a: i64 = tx.get("t", "a")?.map_or(0, |r| r.value);
                tx.put("t", "c", &a)?;
                tx.delete("t", "b")?;
                Ok::<_, Error>(a)
            })
            .await
            .unwrap();
        assert_eq!(moved.value, 3);
        assert!(store.delete("t", "b").await.unwrap().is_none());
        assert_eq!(
            store.compare_and_delete("t", "c", 1).await.unwrap().version,
            1
        );
        assert_eq!(store.namespaces().await.unwrap(), vec!["t".to_owned()]);
        let count = store.read(|snap| snap.count("t")).await.unwrap();
        assert_eq!(count, 1);
        let report = store.backup(dir.path().join("backup")).await.unwrap();
        assert!(report.full);
        store.checkpoint().await.unwrap();
        assert_eq!(store.revision(), store.stats().await.unwrap().revision);
        let raw = store.get_raw("t", "a").await.unwrap().unwrap();
        store.put_raw("t", "copy", raw.value).await.unwrap();
        assert_eq!(
            store.get::<i64>("t", "copy").await.unwrap().unwrap().value,
            3
        );
        store.close().await.unwrap();
    });
}

#[test]
fn a_watcher_waiting_for_a_commit_does_not_block_the_runtime() {
    use statelog::{Watch, WatchEvent};
    let dir = tempfile::tempdir().unwrap();
    let revision = one_thread().block_on(async {
        let store = AsyncStore::open(dir.path().join("store"), Options::default())
            .await
            .unwrap();
        // Progress after 2 s: a wait that held the thread would end with it.
        let watch = Watch::key("jobs", "build").progress(Duration::from_secs(2));
        let mut watcher = store.watch(watch).await.unwrap();
        let waiting = tokio::spawn(async move {
            match watcher.next().await {
                Some(Ok(WatchEvent::Change(change))) => change.revision,
                other => panic!("expected a change, got {other:?}"),
            }
        });
        // Only this task commits: were the watcher's wait on the runtime's
        // thread, this would run only after it, and the watcher would see
        // progress instead of the change.
        tokio::task::yield_now().await;
        store.put("jobs", "build", &"done").await.unwrap();
        waiting.await.unwrap()
    });
    assert_eq!(revision, 1);
}

/// The next item of any stream (the crate's tests have no `StreamExt`).
async fn next_of<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[test]
fn a_watch_stream_delivers_every_commit_in_scope_once_under_a_multi_threaded_runtime() {
    use statelog::{Watch, WatchEvent};
    const PUTS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let (seen, revisions) = runtime.block_on(async {
        let store = AsyncStore::open(dir.path().join("store"), Options::default())
            .await
            .unwrap();
        // No progress asked for: the watch's internal ticks must not show.
        let mut watcher = store.watch(Watch::namespace("tasks")).await.unwrap();
        let mut writers = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..PUTS {
                    store
                        .put("tasks", format!("t{task:02}-{i:02}"), i)
                        .await
                        .unwrap();
                    // Out of scope: never delivered.
                    store.put("other", format!("t{task:02}"), i).await.unwrap();
                }
            }));
        }
        let mut seen = BTreeMap::new();
        let mut revisions = Vec::new();
        while seen.len() < TASKS * PUTS {
            match next_of(&mut watcher).await {
                Some(Ok(WatchEvent::Change(change))) => {
                    revisions.push(change.revision);
                    for event in change.events {
                        assert_eq!(event.namespace, "tasks");
                        *seen.entry(event.key).or_insert(0) += 1;
                    }
                }
                other => panic!("expected a change, got {other:?}"),
            }
        }
        for writer in writers {
            writer.await.unwrap();
        }
        (seen, revisions)
    });
    assert_eq!(seen.len(), TASKS * PUTS);
    assert!(seen.values().all(|&n| n == 1), "a change seen twice");
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions out of order"
    );
}

#[test]
fn dropping_a_watch_stream_ends_its_wait_on_the_blocking_pool() {
    use futures_core::Stream as _;
    use statelog::Watch;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (done, finished) = mpsc::channel();
    // One blocking thread: while a dropped watch still waited on it, no other
    // call could run, and the put below would never finish.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let revision = runtime.block_on(async {
            let store = AsyncStore::open(&path, Options::default()).await.unwrap();
            let mut watcher = store.watch(Watch::key("jobs", "idle")).await.unwrap();
            // Polled once: its wait starts on the blocking pool, and nothing
            // will ever be committed in its scope.
            std::future::poll_fn(|cx| {
                let polled = std::pin::Pin::new(&mut watcher).poll_next(cx);
                assert!(polled.is_pending());
                std::task::Poll::Ready(())
            })
            .await;
            drop(watcher);
            store.put("jobs", "build", &"done").await.unwrap().revision
        });
        done.send(revision).unwrap();
    });
    let revision = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the dropped watch kept the only blocking thread");
    assert_eq!(revision, 1);
}
