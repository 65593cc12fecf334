//! The change feed and the past: `Store::watch` (every revision exactly once
//! and in order, across resumptions, through a holder too; `Compacted` once
//! retention removed the log asked for; slow watchers cancelled with where to
//! resume), `Store::history` and `snapshot_at_revision` against exports taken
//! at the time.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::reach;
use statelog::snapshot::{ExportOptions, Format};
use statelog::{CheckpointPolicy, Error, Options, RetentionPolicy, Store, Watch, WatchEvent};

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("statelog-watch-")
        .tempdir()
        .unwrap()
}

fn four_writers_and_a_resuming_watcher(through_holder: bool) {
    const TRANSACTIONS: u64 = 10_000;
    let dir = temp_dir();
    let (store, _holder) = reach(dir.path(), through_holder);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let store = store.clone();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(14);
            let mut seen: Vec<u64> = Vec::new();
            let mut resumed = 0;
            let mut next = 0;
            loop {
                let mut watcher = store
                    .watch(Watch::all().from(next).progress(Duration::from_millis(20)))
                    .unwrap();
                // Disconnect after a random number of revisions, 100 times.
                let mut budget = if resumed < 100 {
                    rng.u64(1..150)
                } else {
                    u64::MAX
                };
                while budget > 0 {
                    match watcher.next().unwrap().unwrap() {
                        WatchEvent::Change(change) => {
                            assert_eq!(change.events.len(), 1, "each revision whole");
                            seen.push(change.revision);
                            next = change.revision + 1;
                            budget -= 1;
                        }
                        WatchEvent::Progress { revision } => {
                            assert!(revision + 1 >= next, "progress went back");
                            if done.load(Ordering::Acquire) && revision >= TRANSACTIONS {
                                return (seen, resumed);
                            }
                        }
                    }
                    if next > TRANSACTIONS {
                        return (seen, resumed);
                    }
                }
                resumed += 1;
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..TRANSACTIONS / 4 {
                    store.put("jobs", &format!("w{w}-{}", i % 50), &i).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let (seen, resumed) = watcher.join().unwrap();
    assert!(resumed >= 100, "resumed only {resumed} times");
    let expected: Vec<u64> = (1..=TRANSACTIONS).collect();
    assert_eq!(seen.len(), expected.len(), "a revision missed or repeated");
    assert_eq!(seen, expected);
}

#[test]
fn a_watcher_sees_every_revision_of_four_writers_once_in_order_across_resumptions() {
    four_writers_and_a_resuming_watcher(false);
}

#[test]
fn a_watcher_through_a_holder_sees_every_revision_once_in_order_across_resumptions() {
    four_writers_and_a_resuming_watcher(true);
}

#[test]
fn events_carry_metadata_values_and_previous_values_and_filter_by_scope() {
    for through_holder in [false, true] {
        let dir = temp_dir();
        let (store, _holder) = reach(dir.path(), through_holder);
        store.put("jobs", "a1", &"queued").unwrap();
        store.put("jobs", "b1", &"queued").unwrap();
        store.put("other", "a1", &"x").unwrap();
        store.put("jobs", "a1", &"running").unwrap();
        store.delete("jobs", "a1").unwrap();
        let changes = |watch: Watch| -> Vec<(u64, String, Option<String>, Option<String>)> {
            let mut out = Vec::new();
            for event in store
                .watch(watch.from(1).progress(Duration::from_millis(10)))
                .unwrap()
            {
                match event.unwrap() {
                    WatchEvent::Change(c) => {
                        for e in c.events {
                            out.push((
                                c.revision,
                                format!("{}/{}", e.namespace, e.key),
                                e.value.map(|v| v.value.decode::<String>().unwrap()),
                                e.prev.map(|v| v.value.decode::<String>().unwrap()),
                            ));
                        }
                    }
                    WatchEvent::Progress { revision } => {
                        assert_eq!(revision, 5);
                        break;
                    }
                }
            }
            out
        };
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            changes(Watch::key("jobs", "a1").prev(true)),
            vec![
                (1, "jobs/a1".into(), s("queued"), None),
                (4, "jobs/a1".into(), s("running"), s("queued")),
                (5, "jobs/a1".into(), None, s("running")),
            ]
        );
        assert_eq!(
            changes(Watch::namespace("jobs"))
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>(),
            vec![1, 2, 4, 5]
        );
        assert_eq!(
            changes(Watch::prefix("jobs", "b"))
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(changes(Watch::all()).len(), 5);
    }
}

#[test]
fn watching_from_before_what_retention_kept_is_compacted_naming_the_first_revision() {
    let dir = temp_dir();
    let options = Options::default()
        .segment_size(4 << 10)
        .preallocate(0)
        .retention(RetentionPolicy::default().max_bytes(Some(16 << 10)))
        .checkpoint(CheckpointPolicy::manual());
    let store = Store::open(dir.path(), options).unwrap();
    for i in 0..1000u64 {
        store.put("r", &format!("k{}", i % 20), &i).unwrap();
    }
    store.checkpoint().unwrap();
    let first = store.stats().first_revision;
    assert!(first > 1, "retention removed nothing");
    for from in [1, first - 1] {
        match store.watch(Watch::all().from(from)) {
            Err(Error::Compacted {
                requested,
                compacted,
            }) => {
                assert_eq!(requested, from);
                assert_eq!(compacted, Some(first));
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
    }
    // Through a holder, the same error.
    let client = Store::open(dir.path(), Options::default()).unwrap();
    assert!(!client.is_holder());
    match client.watch(Watch::all().from(1)) {
        Err(Error::Compacted { compacted, .. }) => assert_eq!(compacted, Some(first)),
        other => panic!("expected Compacted through the holder, got {other:?}"),
    }
    assert_eq!(client.stats().first_revision, first);
    drop(client);
    // From the first available revision on, everything is there.
    let mut revisions = Vec::new();
    for event in store
        .watch(Watch::all().from(first).progress(Duration::from_millis(10)))
        .unwrap()
    {
        match event.unwrap() {
            WatchEvent::Change(c) => revisions.push(c.revision),
            WatchEvent::Progress { .. } => break,
        }
    }
    assert_eq!(revisions, (first..=1000).collect::<Vec<_>>());
    // Reading the past is refused the same way, and works from there on.
    assert!(matches!(
        store.snapshot_at_revision(first - 1),
        Err(Error::Compacted { compacted: Some(f), .. }) if f == first
    ));
    assert_eq!(
        store
            .snapshot_at_revision(first)
            .unwrap()
            .revision()
            .unwrap(),
        first
    );
}

#[test]
fn a_slow_watcher_is_cancelled_with_where_to_resume_and_commits_go_on() {
    let dir = temp_dir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut watcher = store.watch(Watch::all().buffer(4)).unwrap();
    for i in 0..20u64 {
        store.put("r", "k", &i).unwrap();
    }
    let mut got = Vec::new();
    let error = loop {
        match watcher.next().unwrap() {
            Ok(WatchEvent::Change(c)) => got.push(c.revision),
            Ok(WatchEvent::Progress { .. }) => panic!("no progress was asked for"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, vec![1, 2, 3, 4]);
    match &error {
        Error::WatchCancelled { resume_from, .. } => assert_eq!(*resume_from, 5),
        other => panic!("expected WatchCancelled, got {other:?}"),
    }
    assert!(error.to_string().contains("from revision 5"), "{error}");
    assert!(watcher.next().is_none());
    // Resuming there misses nothing.
    let mut resumed = store
        .watch(Watch::all().from(5).progress(Duration::from_millis(10)))
        .unwrap();
    let mut rest = Vec::new();
    while let Some(Ok(WatchEvent::Change(c))) = resumed.next() {
        rest.push(c.revision);
    }
    assert_eq!(rest, (5..=20).collect::<Vec<_>>());
}

fn export(snapshot: &statelog::Snapshot) -> String {
    let mut out = Vec::new();
    statelog::snapshot::export_snapshot(snapshot, &mut out, &ExportOptions::new(Format::Json))
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_past_reads_back_as_exports_taken_then_and_histories_list_every_version() {
    for through_holder in [false, true] {
        let dir = temp_dir();
        let mut exports: BTreeMap<u64, String> = BTreeMap::new();
        let mut versions: BTreeMap<String, Vec<(u64, Option<u64>)>> = BTreeMap::new();
        let mut rng = fastrand::Rng::with_seed(7);
        {
            let (store, _holder) = reach(dir.path(), through_holder);
            for i in 0..400u64 {
                let ns = ["jobs", "runs", "z"][rng.usize(0..3)];
                let key = format!("k{}", rng.u64(0..25));
                let name = format!("{ns}/{key}");
                let revision = if rng.u8(0..5) == 0 {
                    match store.delete(ns, &key).unwrap() {
                        Some(_) => {
                            let r = store.revision();
                            versions.entry(name).or_default().push((r, None));
                            r
                        }
                        None => continue,
                    }
                } else {
                    let c = store.put(ns, &key, &i).unwrap();
                    versions
                        .entry(name)
                        .or_default()
                        .push((c.revision, Some(i)));
                    c.revision
                };
                exports.insert(revision, export(&store.snapshot().unwrap()));
            }
            let check = |store: &Store| {
                let head = store.revision();
                let mut rng = fastrand::Rng::with_seed(50);
                for _ in 0..50 {
                    let r = rng.u64(1..=head);
                    assert_eq!(
                        export(&store.snapshot_at_revision(r).unwrap()),
                        exports[&r],
                        "the export at revision {r}"
                    );
                }
                for (name, expected) in &versions {
                    let (ns, key) = name.split_once('/').unwrap();
                    let got = history_of(store, ns, key);
                    assert_eq!(&got, expected, "the history of {name}");
                }
            };
            check(&store);
            drop(_holder);
            store.close().unwrap();
            // After a restart (and a replay of what was not checkpointed).
            let (store, _holder) = reach(dir.path(), through_holder);
            check(&store);
        }
    }
}

/// Every version of a record holding an integer: (revision, value), `None`
/// for a deletion.
fn history_of(store: &Store, namespace: &str, key: &str) -> Vec<(u64, Option<u64>)> {
    store
        .history(namespace, key)
        .unwrap()
        .into_iter()
        .map(|v| (v.revision, v.value.map(|v| v.value.decode().unwrap())))
        .collect()
}

/// Options for a store on a simulated disk, checkpointed only when asked (so
/// that a power loss leaves a tail to replay).
fn on_sim(fs: statelog::testkit::sim::SimFs) -> Options {
    Options::default()
        .file_system(Arc::new(fs))
        .serve(false)
        .remote(false)
        .checkpoint(CheckpointPolicy::manual())
}

#[test]
fn a_store_replayed_after_a_crash_rebuilds_the_history_of_the_replayed_commits() {
    use statelog::testkit::sim::{Loss, SimFs};
    let sim = SimFs::new();
    let store = Store::open("/store", on_sim(sim.clone())).unwrap();
    store.put("a", "k", &1).unwrap();
    store.checkpoint().unwrap();
    let before = export(&store.snapshot().unwrap());
    store.put("a", "k", &2).unwrap();
    store.put("a", "k", &3).unwrap();
    store.delete("a", "k").unwrap();
    // A power loss: the state database goes back to its checkpoint, the
    // log (synced at every commit) keeps everything; the reopen replays it.
    sim.power_off();
    drop(store);
    let store = Store::open("/store", on_sim(sim.restart(Loss::Everything))).unwrap();
    assert_eq!(store.stats().replayed_on_open, 3);
    let got = history_of(&store, "a", "k");
    assert_eq!(
        got,
        vec![(1, Some(1)), (2, Some(2)), (3, Some(3)), (4, None)]
    );
    assert_eq!(export(&store.snapshot_at_revision(1).unwrap()), before);
}

#[test]
fn the_first_backup_carries_the_history_the_log_holds_and_restores_to_any_revision_of_it() {
    use statelog::backup::{RestoreOptions, Until, restore};
    let dir = temp_dir();
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir, Options::default()).unwrap();
    let mut exports = BTreeMap::new();
    for i in 0..120u64 {
        store
            .put(
                "jobs",
                &format!("j{}", i % 7),
                &serde_json::json!({"step": i}),
            )
            .unwrap();
        exports.insert(store.revision(), export(&store.snapshot().unwrap()));
    }
    let report = store.backup(dir.path().join("backup")).unwrap();
    assert_eq!(report.revision, 120);
    for r in [1, 60, 119, 120] {
        let target = dir.path().join(format!("at-{r}"));
        let restored = restore(
            dir.path().join("backup"),
            &target,
            &RestoreOptions::new().until(Until::Revision(r)),
        )
        .unwrap();
        assert_eq!(restored.revision, r);
        let at = Store::open(&target, Options::default()).unwrap();
        assert_eq!(
            export(&at.snapshot().unwrap()),
            exports[&r],
            "restored to {r}"
        );
    }
    // The backup checks out, and later runs stay incremental.
    let checked = statelog::maintenance::check_backup(
        dir.path().join("backup"),
        &statelog::maintenance::CheckOptions::default(),
    )
    .unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    store.put("jobs", "late", &1).unwrap();
    let second = store.backup(dir.path().join("backup")).unwrap();
    assert!(!second.full);
    assert_eq!(second.revision, 121);
}

#[test]
fn after_retention_the_first_backup_starts_where_the_log_does() {
    use statelog::backup::{RestoreOptions, Until, restore};
    let dir = temp_dir();
    let store_dir = dir.path().join("store");
    let options = Options::default()
        .segment_size(4 << 10)
        .preallocate(0)
        .retention(RetentionPolicy::default().max_bytes(Some(16 << 10)))
        .checkpoint(CheckpointPolicy::manual());
    let store = Store::open(&store_dir, options).unwrap();
    let mut exports = BTreeMap::new();
    for i in 0..600u64 {
        store.put("r", &format!("k{}", i % 20), &i).unwrap();
        exports.insert(store.revision(), export(&store.snapshot().unwrap()));
    }
    store.checkpoint().unwrap();
    let first = store.stats().first_revision;
    assert!(first > 1);
    // The history index let go of what the log no longer holds: of a record
    // written every 20 commits, the version in force just before `first`
    // is the oldest left.
    let versions = store.history("r", "k0").unwrap();
    assert!(versions[0].revision < first, "{:?}", versions[0].revision);
    assert!(
        versions[0].revision + 20 >= first,
        "older versions were kept"
    );
    assert!(versions[1].revision >= first);
    assert_eq!(
        export(&store.snapshot_at_revision(first).unwrap()),
        exports[&first]
    );
    let report = store.backup(dir.path().join("backup")).unwrap();
    assert_eq!(report.base_revision, first - 1);
    // What the log no longer held, the backup cannot have either.
    let err = restore(
        dir.path().join("backup"),
        dir.path().join("too-early"),
        &RestoreOptions::new().until(Until::Revision(first - 2)),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("before the backup's base"),
        "{err}"
    );
    for r in [first - 1, first, 600] {
        let target = dir.path().join(format!("at-{r}"));
        restore(
            dir.path().join("backup"),
            &target,
            &RestoreOptions::new().until(Until::Revision(r)),
        )
        .unwrap();
        let at = Store::open(&target, Options::default()).unwrap();
        assert_eq!(
            export(&at.snapshot().unwrap()),
            exports[&r],
            "restored to {r}"
        );
        // A restored store keeps the history it was restored with (its log
        // starts with the base), and its first backup carries it on.
        if r == 600 {
            assert_eq!(at.stats().first_revision, first - 1);
            at.put("r", "more", &1).unwrap();
            let again = at.backup(dir.path().join("backup-of-restored")).unwrap();
            assert_eq!(again.base_revision, first - 1);
            let target = dir.path().join("again");
            restore(
                dir.path().join("backup-of-restored"),
                &target,
                &RestoreOptions::new().until(Until::Revision(first + 5)),
            )
            .unwrap();
            let again = Store::open(&target, Options::default()).unwrap();
            assert_eq!(export(&again.snapshot().unwrap()), exports[&(first + 5)]);
        }
    }
}

#[test]
fn a_replayed_tail_with_many_versions_of_many_keys_reads_back_every_version() {
    use statelog::testkit::sim::{Loss, SimFs};
    let sim = SimFs::new();
    let store = Store::open("/store", on_sim(sim.clone())).unwrap();
    let mut exports: BTreeMap<u64, String> = BTreeMap::new();
    let mut versions: BTreeMap<String, Vec<(u64, Option<u64>)>> = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(20);
    let mut step = |store: &Store, i: u64| {
        let key = format!("k{:02}", rng.u64(0..24));
        let name = format!("r/{key}");
        let live = versions
            .get(&name)
            .and_then(|v| v.last())
            .is_some_and(|(_, v)| v.is_some());
        let revision = if live && rng.u8(0..5) == 0 {
            store.delete("r", &key).unwrap();
            let revision = store.revision();
            versions.entry(name).or_default().push((revision, None));
            revision
        } else {
            let revision = store.put("r", &key, &i).unwrap().revision;
            versions.entry(name).or_default().push((revision, Some(i)));
            revision
        };
        exports.insert(revision, export(&store.snapshot().unwrap()));
    };
    // Some versions checkpointed (the replay supersedes stored records),
    // then a tail that supersedes its own versions several times per key.
    for i in 0..60 {
        step(&store, i);
    }
    store.checkpoint().unwrap();
    for i in 60..400 {
        step(&store, i);
    }
    sim.power_off();
    drop(store);
    let store = Store::open("/store", on_sim(sim.restart(Loss::Everything))).unwrap();
    assert_eq!(store.stats().replayed_on_open, 340);
    for (name, expected) in &versions {
        let (ns, key) = name.split_once('/').unwrap();
        let got = history_of(&store, ns, key);
        assert_eq!(&got, expected, "the history of {name}");
    }
    for (revision, expected) in &exports {
        assert_eq!(
            &export(&store.snapshot_at_revision(*revision).unwrap()),
            expected,
            "the export at revision {revision}"
        );
    }
}
