//! Online backups: consistency under concurrent writers, incremental runs that
//! copy only what is new, and log retention's interplay with backups.

mod backup_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_common::{dump, dump_path, segments, temp_dir};
use statelog::backup::{Manifest, RestoreOptions, Until, restore};
use statelog::testkit::{RealFs, log_reader};
use statelog::{CheckpointPolicy, Error, Options, RetentionPolicy, Store, Timestamp};

/// One acknowledged single-key commit: revision, namespace, key, value (None:
/// a delete).
type Op = (u64, String, String, Option<u64>);
/// What the model expects of a record: version, create and modify revisions,
/// value.
type Expected = BTreeMap<(String, String), (u64, u64, u64, Option<u64>)>;

#[test]
fn a_backup_taken_while_four_threads_write_restores_exactly_the_store_at_its_revision() {
    let dir = temp_dir();
    let store_dir = dir.path().join("store");
    let backup_dir = dir.path().join("backup");
    let options = Options::default().segment_size(32 << 10);
    let store = Store::open(&store_dir, options.clone()).unwrap();
    let ops: Arc<Mutex<Vec<Op>>> = Arc::default();
    for i in 0..50u64 {
        let c = store.put("jobs", &format!("k{i}"), &i).unwrap();
        ops.lock()
            .unwrap()
            .push((c.revision, "jobs".into(), format!("k{i}"), Some(i)));
    }
    let first = store.backup(&backup_dir).unwrap();
    assert!(first.full);
    // The store's log reaches back to revision 1: the first run copies it
    // all, and needs no base.
    assert_eq!((first.base_revision, first.revision), (0, 50));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reports = std::thread::scope(|scope| {
        for t in 0..4u64 {
            let store = store.clone();
            let ops = Arc::clone(&ops);
            let stop = Arc::clone(&stop);
            scope.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 200 {
                    let ns = ["jobs", "tasks"][rng.usize(0..2)];
                    let key = format!("k{}", rng.u64(0..60));
                    let value = t * 1_000_000 + n;
                    if rng.u32(0..5) == 0 {
                        if let Some(d) = store.delete(ns, &key).unwrap() {
                            ops.lock().unwrap().push((d.revision, ns.into(), key, None));
                        }
                    } else {
                        let c = store.put(ns, &key, &value).unwrap();
                        ops.lock()
                            .unwrap()
                            .push((c.revision, ns.into(), key, Some(value)));
                    }
                    n += 1;
                    if n > 5000 {
                        break;
                    }
                }
            });
        }
        // Backups while they write.
        let mut reports = Vec::new();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(40));
            reports.push(store.backup(&backup_dir).unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reports
    });
    let last = reports.last().unwrap().clone();
    assert!(reports.iter().all(|r| !r.full));
    assert!(
        last.revision > first.revision && last.revision < store.revision(),
        "the backups ran while the threads wrote: {} < {} < {}",
        first.revision,
        last.revision,
        store.revision()
    );
    store.close().unwrap();

    // The state at the backup's revision, from what the threads were told.
    let times: BTreeMap<u64, i64> = log_reader::read_log(&RealFs, &store_dir)
        .unwrap()
        .commits
        .iter()
        .map(|c| (c.revision, c.time))
        .collect();
    let mut ops = ops.lock().unwrap().clone();
    ops.sort();
    let mut expected = Expected::new();
    for (revision, ns, key, value) in ops.iter().filter(|o| o.0 <= last.revision) {
        let k = (ns.clone(), key.clone());
        match value {
            None => {
                expected.remove(&k).expect("a delete removed a record");
            }
            Some(v) => {
                let next = match expected.get(&k) {
                    Some(&(version, created, _, _)) => (version + 1, created, *revision, Some(*v)),
                    None => (1, *revision, *revision, Some(*v)),
                };
                expected.insert(k, next);
            }
        }
    }
    let target = dir.path().join("restored");
    let report = restore(&backup_dir, &target, &RestoreOptions::new()).unwrap();
    assert_eq!(report.revision, last.revision);
    assert_eq!(report.base_revision, 0);
    assert_eq!(report.commits_replayed, last.revision);
    assert_ne!(
        report.store_id, last.store_id,
        "a restored store is a new history"
    );
    let (revision, restored) = dump_path(&target);
    assert_eq!(revision, last.revision);
    let restored: BTreeMap<_, _> = restored
        .into_iter()
        .map(|(k, (version, created, modified, updated, value))| {
            assert_eq!(
                updated.as_micros(),
                times[&modified],
                "{k:?}: updated at its modification's commit time"
            );
            let value: u64 = rmp_serde::from_slice(&value).unwrap();
            (k, (version, created, modified, Some(value)))
        })
        .collect();
    assert_eq!(restored, expected);
}

/// Commit `i` (from 1) puts `r/k{i % 40}` = i.
fn write(store: &Store, from: u64, to: u64) {
    for i in from..=to {
        let c = store.put("r", &format!("k{}", i % 40), &i).unwrap();
        assert_eq!(c.revision, i);
    }
}

/// The state after commits 1..=revision of [`write`].
fn expected_at(revision: u64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for i in 1..=revision {
        out.insert(format!("k{}", i % 40), i);
    }
    out
}

fn values(path: &Path) -> (u64, BTreeMap<String, u64>) {
    let (revision, d) = dump_path(path);
    let values = d
        .into_iter()
        .map(|((_, k), r)| (k, rmp_serde::from_slice(&r.4).unwrap()))
        .collect();
    (revision, values)
}

#[test]
fn incremental_backups_copy_only_the_new_log_and_restore_correctly() {
    let dir = temp_dir();
    let store_dir = dir.path().join("store");
    let backup_dir = dir.path().join("backup");
    let options = Options::default()
        .segment_size(8 << 10)
        .preallocate(0)
        .checkpoint(CheckpointPolicy::manual());
    let store = Store::open(&store_dir, options).unwrap();
    write(&store, 1, 200);
    let at_first = segments(&store_dir);
    let first = store.backup(&backup_dir).unwrap();
    assert!(first.full);
    // The first run carries the whole log (it reaches back to revision 1),
    // so a restore can go back to any revision of it: no base needed.
    assert_eq!((first.base_revision, first.revision), (0, 200));
    let whole: u64 = at_first.iter().map(|s| s.2).sum();
    assert_eq!(first.log_bytes_copied, whole);
    assert_eq!(first.base_records, 0);

    write(&store, 201, 500);
    // Copied: the segment holding revision 201 from its start, and every later one.
    let segs = segments(&store_dir);
    let from = segs.iter().rposition(|s| s.0 <= 201).unwrap();
    let already: u64 = at_first
        .iter()
        .filter(|s| s.0 >= segs[from].0)
        .map(|s| s.2)
        .sum();
    let expected: u64 = segs[from..].iter().map(|s| s.2).sum::<u64>() - already;
    let second = store.backup(&backup_dir).unwrap();
    assert!(!second.full);
    assert_eq!(second.revision, 500);
    assert_eq!(second.segments_copied, segs.len() - from);
    assert_eq!(second.log_bytes_copied, expected);
    assert_eq!(second.bytes_copied, expected);

    write(&store, 501, 800);
    let now = segments(&store_dir);
    let grown: u64 = now
        .iter()
        .filter(|s| s.0 >= segs[from].0)
        .map(|s| s.2 - segs.iter().find(|o| o.0 == s.0).map_or(0, |o| o.2))
        .sum();
    let changed = now
        .iter()
        .filter(|s| {
            s.0 >= segs[from].0 && segs.iter().find(|o| o.0 == s.0).is_none_or(|o| o.2 != s.2)
        })
        .count();
    let third = store.backup(&backup_dir).unwrap();
    assert_eq!(third.revision, 800);
    assert_eq!(third.log_bytes_copied, grown, "only the new bytes");
    assert_eq!(third.segments_copied, changed);
    assert!(changed >= 2, "the last segment grew and new ones came");

    // Nothing new: nothing copied.
    let fourth = store.backup(&backup_dir).unwrap();
    assert_eq!(
        (fourth.revision, fourth.bytes_copied, fourth.segments_copied),
        (800, 0, 0)
    );
    let manifest = Manifest::read(&backup_dir).unwrap();
    assert_eq!(manifest.runs, 4);
    let on_disk: u64 = backup_common::files(&backup_dir)
        .iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n != "MANIFEST"))
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(manifest.bytes(), on_disk);
    assert_eq!(fourth.backup_bytes, on_disk);
    store.close().unwrap();

    for (until, revision) in [
        (Until::End, 800),
        (Until::Revision(200), 200),
        (Until::Revision(201), 201),
        (Until::Revision(650), 650),
    ] {
        let target = dir.path().join(format!("restored-{revision}"));
        let report = restore(&backup_dir, &target, &RestoreOptions::new().until(until)).unwrap();
        assert_eq!(report.revision, revision);
        assert_eq!(values(&target), (revision, expected_at(revision)));
    }
    // Before the first run's revision too: it carried the whole log.
    let target = dir.path().join("before-the-first-run");
    let report = restore(
        &backup_dir,
        &target,
        &RestoreOptions::new().until(Until::Revision(199)),
    )
    .unwrap();
    assert_eq!(report.revision, 199);
    assert_eq!(values(&target), (199, expected_at(199)));
}

#[test]
fn a_backup_refuses_a_directory_of_another_store_or_with_other_files() {
    let dir = temp_dir();
    let a = Store::open(dir.path().join("a"), Options::default()).unwrap();
    let b = Store::open(dir.path().join("b"), Options::default()).unwrap();
    a.put("r", "k", &1).unwrap();
    b.put("r", "k", &2).unwrap();
    a.backup(dir.path().join("backup")).unwrap();
    let err = b.backup(dir.path().join("backup")).unwrap_err();
    assert!(matches!(err, Error::InvalidBackup { .. }), "{err}");
    assert!(err.to_string().contains("another store"), "{err}");
    std::fs::create_dir(dir.path().join("other")).unwrap();
    std::fs::write(dir.path().join("other/notes.txt"), "mine").unwrap();
    let err = a.backup(dir.path().join("other")).unwrap_err();
    assert!(matches!(err, Error::TargetNotEmpty { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("other/notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_backup_in_relaxed_mode_claims_only_what_is_durable() {
    // The backup syncs the log first: every revision it claims is in the log
    // it copied, even though commits are acknowledged before their sync.
    let dir = temp_dir();
    let options = Options::default()
        .segment_size(8 << 10)
        .durability(statelog::Durability::Relaxed {
            max_delay: Duration::from_secs(3600),
        })
        .checkpoint(CheckpointPolicy::manual());
    let store = Store::open(dir.path().join("store"), options).unwrap();
    store.backup(dir.path().join("backup")).unwrap();
    write(&store, 1, 300);
    let report = store.backup(dir.path().join("backup")).unwrap();
    assert_eq!(report.revision, 300);
    let expected = dump(&store);
    drop(store);
    let target = dir.path().join("restored");
    restore(dir.path().join("backup"), &target, &RestoreOptions::new()).unwrap();
    assert_eq!(dump_path(&target), (300, expected));
}

// ---------------------------------------------------------------------------
// Retention.

fn count_segments(store_dir: &Path) -> usize {
    segments(store_dir).len()
}

#[test]
fn the_log_stays_bounded_by_the_retention_policy_and_keeps_the_checkpoint_segment() {
    let dir = temp_dir();
    let store_dir = dir.path().join("store");
    // The default policy's limit is in bytes; scaled down here.
    let retention = RetentionPolicy::default().max_bytes(Some(24 << 10));
    assert!(
        RetentionPolicy::default().max_bytes.is_some(),
        "the default bounds the log"
    );
    let options = Options::default()
        .segment_size(4 << 10)
        .preallocate(0)
        .retention(retention)
        .checkpoint(
            CheckpointPolicy::default()
                .commits(50)
                .log_bytes(u64::MAX)
                .interval(Duration::from_secs(3600)),
        );
    let store = Store::open(&store_dir, options.clone()).unwrap();
    let mut most = 0;
    for i in 1..=2000u64 {
        store.put("r", &format!("k{}", i % 30), &i).unwrap();
        if i % 100 == 0 {
            // The background thread checkpoints; make sure one ran.
            store.checkpoint().unwrap();
            most = most.max(count_segments(&store_dir));
        }
    }
    let segs = segments(&store_dir);
    let behind: u64 = segs[..segs.len() - 1].iter().map(|s| s.2).sum();
    assert!(behind <= 24 << 10, "{behind} bytes behind the checkpoint");
    assert!(most <= 8, "at most {most} segments at a time");
    assert!(segs[0].0 > 1, "old segments went");
    let expected = dump(&store);
    store.close().unwrap();
    // The store reopens from the shortened log, and keeps working.
    let store = Store::open(&store_dir, options).unwrap();
    assert_eq!(store.revision(), 2000);
    assert_eq!(dump(&store), expected);
    store.put("r", "after", &1).unwrap();

    // Without checkpoints nothing is behind one, so nothing goes.
    let dir2 = temp_dir();
    let options = Options::default()
        .segment_size(4 << 10)
        .preallocate(0)
        .retention(retention)
        .checkpoint(CheckpointPolicy::manual());
    let store = Store::open(dir2.path(), options).unwrap();
    write(&store, 1, 600);
    let before = count_segments(dir2.path());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(count_segments(dir2.path()), before);
    assert!(before > 8, "{before}");
    let first = segments(dir2.path())[0].0;
    assert_eq!(first, 1, "nothing was removed before a checkpoint");
    store.checkpoint().unwrap();
    let segs = segments(dir2.path());
    assert!(segs[0].0 > 1, "the checkpoint released old segments");
    // The checkpoint's own segment (the last one) stays.
    assert!(segs.last().unwrap().0 <= 600);
}

#[test]
fn retention_keeps_what_the_next_backup_needs_unless_told_otherwise() {
    for keep in [true, false] {
        let dir = temp_dir();
        let store_dir = dir.path().join("store");
        let backup_dir = dir.path().join("backup");
        let retention = RetentionPolicy::keep_all()
            .max_segments(Some(1))
            .keep_until_backed_up(keep);
        let options = Options::default()
            .segment_size(4 << 10)
            .preallocate(0)
            .retention(retention)
            .checkpoint(CheckpointPolicy::manual());
        let store = Store::open(&store_dir, options).unwrap();
        write(&store, 1, 100);
        store.backup(&backup_dir).unwrap();
        write(&store, 101, 700);
        store.checkpoint().unwrap();
        let segs = segments(&store_dir);
        if keep {
            // Every segment holding a revision after 100 is still there.
            assert!(
                segs[0].0 <= 101,
                "{:?}",
                segs.iter().map(|s| s.0).collect::<Vec<_>>()
            );
            let report = store.backup(&backup_dir).unwrap();
            assert_eq!(report.revision, 700);
            // Now the backup has them: the next checkpoint lets them go.
            write(&store, 701, 710);
            store.checkpoint().unwrap();
            let after = segments(&store_dir);
            assert!(after.len() <= 3, "{} segments", after.len());
            assert!(after[0].0 > 101);
            store.close().unwrap();
            let target = dir.path().join("restored");
            restore(&backup_dir, &target, &RestoreOptions::new()).unwrap();
            assert_eq!(values(&target), (700, expected_at(700)));
        } else {
            assert!(segs[0].0 > 101, "retention ignored the backup");
            let err = store.backup(&backup_dir).unwrap_err();
            assert!(matches!(err, Error::InvalidBackup { .. }), "{err}");
            assert!(err.to_string().contains("log retention removed"), "{err}");
            // A backup into a new directory starts afresh: a base just
            // before the first commit the log still holds, and that log.
            let report = store.backup(dir.path().join("backup2")).unwrap();
            assert!(report.full);
            assert_eq!(report.base_revision, segs[0].0 - 1);
        }
    }
}

#[test]
fn retention_by_age_removes_segments_sealed_long_enough_ago() {
    let dir = temp_dir();
    let retention = RetentionPolicy::keep_all().max_age(Some(Duration::from_millis(300)));
    let options = Options::default()
        .segment_size(4 << 10)
        .preallocate(0)
        .retention(retention)
        .checkpoint(CheckpointPolicy::manual());
    let store = Store::open(dir.path(), options).unwrap();
    write(&store, 1, 300);
    store.checkpoint().unwrap();
    let young = count_segments(dir.path());
    assert!(young > 3);
    assert_eq!(segments(dir.path())[0].0, 1, "nothing is old enough yet");
    std::thread::sleep(Duration::from_millis(400));
    let t = Timestamp::now();
    write(&store, 301, 310);
    store.checkpoint().unwrap();
    let segs = segments(dir.path());
    assert!(
        segs.len() < young,
        "old segments went ({} of {young} left)",
        segs.len()
    );
    assert!(t > Timestamp::EPOCH);
}

// ---------------------------------------------------------------------------
// Power loss during a backup run (simulated disk).

const SIM_STORE: &str = "/data/store";
const SIM_BACKUP: &str = "/data/backup";

fn on_sim(fs: &statelog::testkit::sim::SimFs) -> Options {
    Options::default()
        .file_system(Arc::new(fs.clone()))
        .segment_size(4 << 10)
        .preallocate(0)
        .cache_size(1 << 20)
        .lock_timeout(Duration::ZERO)
        .checkpoint(CheckpointPolicy::manual())
}

/// Restores the simulated backup; returns its revision and values.
fn restore_sim(fs: &statelog::testkit::sim::SimFs) -> Result<(u64, BTreeMap<String, u64>), Error> {
    let target = format!("/data/restored-{}", fastrand::u64(..));
    let report = restore(
        SIM_BACKUP,
        &target,
        &RestoreOptions::new().store_options(on_sim(fs)),
    )?;
    let store = Store::open(&target, on_sim(fs).create(false))?;
    let values = dump(&store)
        .into_iter()
        .map(|((_, k), r)| (k, rmp_serde::from_slice(&r.4).unwrap()))
        .collect();
    assert_eq!(store.revision(), report.revision);
    Ok((report.revision, values))
}

#[test]
fn a_power_loss_during_a_backup_run_leaves_the_backup_as_it_was_or_as_the_run_left_it() {
    use statelog::testkit::sim::{Loss, SimFs};
    let base = SimFs::new();
    {
        let store = Store::open(SIM_STORE, on_sim(&base)).unwrap();
        write(&store, 1, 100);
        store.backup(SIM_BACKUP).unwrap();
        write(&store, 101, 250);
        store.close().unwrap();
    }
    let mut outcomes = BTreeMap::new();
    for k in 1.. {
        let fs = base.duplicate();
        let store = Store::open(SIM_STORE, on_sim(&fs)).unwrap();
        fs.power_off_after(k);
        let finished = store.backup(SIM_BACKUP).is_ok();
        drop(store);
        for loss in [Loss::Nothing, Loss::Everything, Loss::Random(k)] {
            let survivor = fs.restart(loss);
            let (revision, values) = restore_sim(&survivor)
                .unwrap_or_else(|e| panic!("power off after {k} ops, {loss:?}: {e}"));
            assert!(
                revision == 100 || revision == 250,
                "power off after {k} ops, {loss:?}: revision {revision}"
            );
            assert_eq!(values, expected_at(revision), "{k} ops, {loss:?}");
            if finished && !matches!(loss, Loss::Nothing) {
                // A run that returned is durable.
                assert_eq!(revision, 250, "{k} ops, {loss:?}: a finished run was lost");
            }
            *outcomes.entry(revision).or_insert(0) += 1;
            // The next run completes the backup.
            let store = Store::open(SIM_STORE, on_sim(&survivor)).unwrap();
            store.backup(SIM_BACKUP).unwrap();
            drop(store);
            assert_eq!(restore_sim(&survivor).unwrap().0, 250, "{k} ops, {loss:?}");
        }
        if finished {
            break;
        }
        assert!(k < 500, "the backup run never finished");
    }
    assert!(outcomes.len() == 2, "{outcomes:?}");
}

#[test]
fn a_power_loss_during_a_first_backup_leaves_no_backup_and_the_next_run_makes_one() {
    use statelog::testkit::sim::{Loss, SimFs};
    let base = SimFs::new();
    {
        let store = Store::open(SIM_STORE, on_sim(&base)).unwrap();
        write(&store, 1, 120);
        store.close().unwrap();
    }
    for k in 1.. {
        let fs = base.duplicate();
        let store = Store::open(SIM_STORE, on_sim(&fs)).unwrap();
        fs.power_off_after(k);
        let finished = store.backup(SIM_BACKUP).is_ok();
        drop(store);
        let survivor = fs.restart(Loss::Random(k));
        match restore_sim(&survivor) {
            Ok((revision, values)) => {
                assert_eq!(revision, 120, "{k} ops");
                assert_eq!(values, expected_at(120));
            }
            Err(e) => {
                assert!(
                    !finished,
                    "{k} ops: a finished backup does not restore: {e}"
                );
                assert!(matches!(e, Error::InvalidBackup { .. }), "{k} ops: {e}");
                assert!(e.to_string().contains("MANIFEST"), "{k} ops: {e}");
                // What the interrupted run left is no obstacle to the next.
                let store = Store::open(SIM_STORE, on_sim(&survivor)).unwrap();
                let report = store.backup(SIM_BACKUP).unwrap();
                assert!(report.full, "{k} ops");
                drop(store);
                assert_eq!(restore_sim(&survivor).unwrap().0, 120, "{k} ops");
            }
        }
        if finished {
            break;
        }
        assert!(k < 500, "the backup run never finished");
    }
}

#[test]
fn a_backup_waits_for_another_backup_into_the_same_directory() {
    let dir = temp_dir();
    let dest = dir.path().join("backup");
    let store = Store::open(
        dir.path().join("store"),
        Options::default().lock_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    store.put("r", "k", &1u64).unwrap();
    store.backup(&dest).unwrap();
    store.put("r", "k", &2u64).unwrap();

    // Another process's backup run holds the directory's lock.
    use statelog::testkit::Fs;
    let held = RealFs.try_lock(&dest.join("LOCK")).unwrap();
    let err = store.backup(&dest).unwrap_err();
    match &err {
        Error::Busy { path, pid, .. } => {
            assert_eq!(path, &dest);
            assert_eq!(*pid, Some(std::process::id()));
        }
        other => panic!("expected Busy, got {other}"),
    }
    assert!(err.to_string().contains("in use"), "{err}");
    drop(held);

    // Once it is done, the next run continues the backup.
    let report = store.backup(&dest).unwrap();
    assert_eq!(report.revision, 2);
    let restored = dir.path().join("restored");
    restore(&dest, &restored, &RestoreOptions::default()).unwrap();
    let store2 = Store::open(&restored, Options::default()).unwrap();
    assert_eq!(store2.get::<u64>("r", "k").unwrap().unwrap().value, 2);
}

/// Every file under `dir` of the simulated disk, with its size.
fn sim_tree(fs: &statelog::testkit::sim::SimFs, dir: &Path) -> BTreeMap<String, u64> {
    use statelog::testkit::{Fs, OpenMode};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for name in fs.read_dir(&d).unwrap() {
            let path = d.join(&name);
            if fs.read_dir(&path).is_ok() {
                stack.push(path);
            } else {
                let len = fs.open(&path, OpenMode::Read).unwrap().len().unwrap();
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, len);
            }
        }
    }
    out
}

/// What a backup's manifest lists: each file and its bytes.
fn listed(fs: &statelog::testkit::sim::SimFs) -> BTreeMap<String, u64> {
    let Ok(text) = fs.read_file(&Path::new(SIM_BACKUP).join("MANIFEST")) else {
        return BTreeMap::new();
    };
    let manifest: Manifest = serde_json::from_slice(&text).unwrap();
    let mut out: BTreeMap<String, u64> = manifest
        .segments
        .iter()
        .map(|s| (s.file.clone(), s.bytes))
        .collect();
    if let Some(base) = &manifest.base {
        out.insert(base.file.clone(), base.bytes);
    }
    out.insert("MANIFEST".to_owned(), text.len() as u64);
    out
}

/// The class "a failed backup run leaves files behind": the disk fills up
/// after every 256th byte a run may write, in a first run (writing the base)
/// and an incremental one (new segments, and the rest of one copied before).
/// Each failed run leaves the backup directory holding exactly what its
/// manifest lists, at the listed sizes (before the first manifest: nothing but
/// the lock file), so it takes no space the backup does not use; once there is
/// space, the next run completes the backup.
#[test]
fn a_backup_run_that_fails_leaves_exactly_what_its_manifest_lists() {
    use statelog::testkit::faults::FaultyFs;
    use statelog::testkit::sim::SimFs;
    let first = SimFs::new();
    {
        let store = Store::open(SIM_STORE, on_sim(&first)).unwrap();
        write(&store, 1, 150);
        store.close().unwrap();
    }
    let incremental = first.duplicate();
    {
        let store = Store::open(SIM_STORE, on_sim(&incremental)).unwrap();
        store.backup(SIM_BACKUP).unwrap();
        write(&store, 151, 300);
        store.close().unwrap();
    }
    for (run, base) in [("first", &first), ("incremental", &incremental)] {
        let mut failures = 0;
        for budget in (0..).step_by(256) {
            let fs = base.duplicate();
            let faulty = FaultyFs::new(Arc::new(fs.clone()));
            let options = on_sim(&fs).file_system(Arc::new(faulty.clone()));
            let store = Store::open(SIM_STORE, options).unwrap();
            let before = listed(&fs);
            faulty.set_free_space(Some(budget));
            let outcome = store.backup(SIM_BACKUP);
            faulty.clear();
            let Err(e) = outcome else {
                drop(store);
                assert_eq!(restore_sim(&fs).unwrap().0, store_revision(run), "{run}");
                break;
            };
            failures += 1;
            let mut left = sim_tree(&fs, Path::new(SIM_BACKUP));
            left.remove("LOCK");
            assert_eq!(
                left,
                listed(&fs),
                "{run} run, disk full after {budget} bytes ({e}): files the manifest does not \
                 list, or longer than listed"
            );
            assert_eq!(
                listed(&fs),
                before,
                "{run} run, {budget} bytes: the manifest changed"
            );
            store.backup(SIM_BACKUP).unwrap();
            drop(store);
            assert_eq!(restore_sim(&fs).unwrap().0, store_revision(run), "{run}");
            assert!(budget < 1 << 20, "{run}: the run never finished");
        }
        assert!(failures > 3, "{run}: {failures} failed runs");
    }
}

fn store_revision(run: &str) -> u64 {
    if run == "first" { 150 } else { 300 }
}
