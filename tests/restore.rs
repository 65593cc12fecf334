//! Point-in-time restore, and backups that are damaged or lie: `check` names
//! the problem, `restore` refuses, and nothing is overwritten.

mod backup_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_common::{Dump, copy_dir, dump, dump_path, files, temp_dir};
use statelog::backup::{Manifest, RestoreOptions, Until, restore};
use statelog::maintenance::{CheckOptions, check};
use statelog::testkit::{RealFs, log_reader};
use statelog::{Error, Options, Store, Timestamp};

const NAMESPACES: [&str; 3] = ["jobs", "tasks", "meta"];

/// One random commit (a put, a delete of an existing record, or a transaction
/// of several writes): exactly one new revision.
fn random_commit(store: &Store, rng: &mut fastrand::Rng) {
    let before = store.revision();
    loop {
        let ns = NAMESPACES[rng.usize(0..3)];
        let key = format!("k{}", rng.u32(0..20));
        match rng.u32(0..10) {
            0 => {
                if store.delete(ns, &key).unwrap().is_some() {
                    break;
                }
            }
            1 => {
                store
                    .transaction(|tx| {
                        tx.put(ns, &key, &rng.u64(..))?;
                        tx.put(
                            NAMESPACES[(rng.usize(0..3) + 1) % 3],
                            "shared",
                            &rng.u64(..),
                        )
                    })
                    .unwrap();
                break;
            }
            _ => {
                store
                    .put(ns, &key, &format!("value {} of {key}", rng.u64(..)))
                    .unwrap();
                break;
            }
        }
    }
    assert_eq!(store.revision(), before + 1);
}

#[test]
fn point_in_time_restore_gives_the_state_recorded_at_every_hundredth_revision() {
    let dir = temp_dir();
    let store_dir = dir.path().join("store");
    let backup_dir = dir.path().join("backup");
    let store = Store::open(&store_dir, Options::default().segment_size(64 << 10)).unwrap();
    // The first run has no base to write (no commit yet): the backup's log
    // starts at revision 1 and every revision can be restored.
    let first = store.backup(&backup_dir).unwrap();
    assert_eq!((first.base_revision, first.revision), (0, 0));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut recorded: BTreeMap<u64, Dump> = BTreeMap::new();
    recorded.insert(0, Dump::new());
    while store.revision() < 5000 {
        random_commit(&store, &mut rng);
        let revision = store.revision();
        if revision.is_multiple_of(100) {
            recorded.insert(revision, dump(&store));
        }
        if revision == 2500 {
            store.backup(&backup_dir).unwrap();
        }
    }
    let last = store.backup(&backup_dir).unwrap();
    assert_eq!(last.revision, 5000);
    store.close().unwrap();
    assert_eq!(recorded.len(), 51);

    let target = dir.path().join("restored");
    for (&revision, expected) in &recorded {
        let report = restore(
            &backup_dir,
            &target,
            &RestoreOptions::new().until(Until::Revision(revision)),
        )
        .unwrap();
        assert_eq!(report.revision, revision);
        assert_eq!(report.commits_replayed, revision);
        let (opened_at, state) = dump_path(&target);
        assert_eq!(opened_at, revision);
        assert!(
            state == *expected,
            "the state restored at revision {revision} differs"
        );
        std::fs::remove_dir_all(&target).unwrap();
    }

    // By time: every commit before the time, none at or after it.
    let times: BTreeMap<u64, i64> = log_reader::read_log(&RealFs, &store_dir)
        .unwrap()
        .commits
        .iter()
        .map(|c| (c.revision, c.time))
        .collect();
    let mut checked = 0;
    for &revision in recorded.keys().filter(|r| **r > 0 && **r < 5000).step_by(7) {
        let next = times[&(revision + 1)];
        if next == times[&revision] {
            continue; // Two commits in the same microsecond: no time between them.
        }
        let until = Until::Time(Timestamp::from_micros(next));
        let report = restore(&backup_dir, &target, &RestoreOptions::new().until(until)).unwrap();
        assert_eq!(report.revision, revision);
        assert_eq!(report.time.as_micros(), times[&revision]);
        assert!(dump_path(&target).1 == recorded[&revision]);
        std::fs::remove_dir_all(&target).unwrap();
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} restores by time");
    let err = restore(
        &backup_dir,
        &target,
        &RestoreOptions::new().until(Until::Time(Timestamp::from_micros(times[&1]))),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no commit before"), "{err}");
    assert!(!target.exists());
}

#[test]
fn a_restore_never_overwrites_a_store_unless_asked_and_then_keeps_the_old_one() {
    let dir = temp_dir();
    let store = Store::open(dir.path().join("store"), Options::default()).unwrap();
    store.put("jobs", "a", &1).unwrap();
    store.backup(dir.path().join("backup")).unwrap();
    let expected = dump(&store);
    store.close().unwrap();
    let target = dir.path().join("target");
    let other = Store::open(&target, Options::default()).unwrap();
    other.put("jobs", "mine", &2).unwrap();
    let other_state = dump(&other);

    // Open: busy, even with overwrite.
    let options = RestoreOptions::new()
        .overwrite(true)
        .store_options(Options::default().lock_timeout(std::time::Duration::ZERO));
    let err = restore(dir.path().join("backup"), &target, &options).unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    other.close().unwrap();
    let before = files(&target);

    let err = restore(dir.path().join("backup"), &target, &RestoreOptions::new()).unwrap_err();
    assert!(matches!(err, Error::TargetNotEmpty { .. }), "{err}");
    assert_eq!(
        files(&target),
        before,
        "a refused restore changed the target"
    );

    let report = restore(dir.path().join("backup"), &target, &options).unwrap();
    let moved = report.replaced.expect("the old store was moved aside");
    assert_eq!(dump_path(&target).1, expected);
    assert_eq!(dump_path(&moved).1, other_state, "the old store is intact");

    // A directory holding something else is never overwritten.
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), "keep").unwrap();
    let err = restore(dir.path().join("backup"), &junk, &options).unwrap_err();
    assert!(matches!(err, Error::TargetNotEmpty { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(junk.join("notes.txt")).unwrap(),
        "keep"
    );
}

// ---------------------------------------------------------------------------
// Damaged backups.

/// A backup with a base (after 50 commits, the last large ones) and three
/// runs of log after it, in small segments; and the store's final state.
fn backup_with_history(dir: &Path) -> (PathBuf, Dump) {
    // Retention trims the log's start before the first run, so that the
    // backup needs a base (a first run carries all the log the store has).
    let options = Options::default()
        .segment_size(4 << 10)
        .preallocate(0)
        .retention(statelog::RetentionPolicy::default().max_segments(Some(1)));
    let store = Store::open(dir.join("store"), options).unwrap();
    let backup = dir.join("backup");
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..47 {
        random_commit(&store, &mut rng);
    }
    // Large enough to seal the segments before them.
    for i in 0..3 {
        store.put("filler", "big", &"x".repeat(5000 + i)).unwrap();
    }
    store.checkpoint().unwrap();
    let first = store.backup(&backup).unwrap();
    assert!(first.base_revision > 0, "retention left the whole log");
    for _ in 0..3 {
        for _ in 0..150 {
            random_commit(&store, &mut rng);
        }
        store.backup(&backup).unwrap();
    }
    let state = dump(&store);
    store.close().unwrap();
    (backup, state)
}

fn manifest_of(backup: &Path) -> Manifest {
    Manifest::read(backup).unwrap()
}

fn write_manifest(backup: &Path, manifest: &Manifest) {
    std::fs::write(
        backup.join("MANIFEST"),
        serde_json::to_string_pretty(manifest).unwrap(),
    )
    .unwrap();
}

struct Case {
    name: &'static str,
    /// Damages the backup; returns the file the problem must name.
    damage: fn(&Path) -> PathBuf,
    /// What the problem must say.
    says: &'static str,
}

fn middle_segment(backup: &Path) -> PathBuf {
    let m = manifest_of(backup);
    backup.join(&m.segments[m.segments.len() / 2].file)
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_or_lying_backup_is_named_by_check_and_refused_by_restore() {
    let dir = temp_dir();
    let (backup, state) = backup_with_history(dir.path());
    let m = manifest_of(&backup);
    assert!(m.segments.len() >= 4, "{} segments", m.segments.len());
    assert!(m.base_revision() > 0);

    // A sound backup checks out and restores.
    let report = check(&backup, &CheckOptions::new()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.log.last_revision, 500);
    let restored_state = report.state.expect("a trial restore");
    assert_eq!(restored_state.revision, 500);
    assert_eq!(restored_state.records, state.len() as u64);

    let cases = [
        Case {
            name: "a flipped byte",
            damage: |b| {
                let seg = middle_segment(b);
                flip(&seg, 200);
                seg
            },
            says: "CRC-32",
        },
        Case {
            name: "a flipped byte, with the manifest's checksum made to match",
            damage: |b| {
                let seg = middle_segment(b);
                flip(&seg, 200);
                let mut m = manifest_of(b);
                let bytes = std::fs::read(&seg).unwrap();
                for s in &mut m.segments {
                    if b.join(&s.file) == seg {
                        s.crc32 = crc32fast::hash(&bytes);
                    }
                }
                write_manifest(b, &m);
                seg
            },
            says: "checksum",
        },
        Case {
            name: "a missing segment",
            damage: |b| {
                let seg = middle_segment(b);
                std::fs::remove_file(&seg).unwrap();
                seg
            },
            says: "missing",
        },
        Case {
            name: "a segment left out of the manifest (and the backup)",
            damage: |b| {
                let mut m = manifest_of(b);
                let gone = m.segments.remove(m.segments.len() / 2);
                std::fs::remove_file(b.join(&gone.file)).unwrap();
                write_manifest(b, &m);
                b.join(&m.segments[m.segments.len() / 2].file)
            },
            says: "a segment is missing",
        },
        Case {
            name: "a truncated base",
            damage: |b| {
                let base = b.join(&manifest_of(b).base.unwrap().file);
                let bytes = std::fs::read(&base).unwrap();
                std::fs::write(&base, &bytes[..bytes.len() - 10]).unwrap();
                base
            },
            says: "truncated",
        },
        Case {
            name: "a truncated base, with the manifest made to match",
            damage: |b| {
                let mut m = manifest_of(b);
                let base = b.join(&m.base.as_ref().unwrap().file);
                let bytes = std::fs::read(&base).unwrap();
                let cut = &bytes[..bytes.len() - 10];
                std::fs::write(&base, cut).unwrap();
                let entry = m.base.as_mut().unwrap();
                entry.bytes = cut.len() as u64;
                entry.crc32 = crc32fast::hash(cut);
                write_manifest(b, &m);
                base
            },
            says: "base",
        },
        Case {
            name: "a manifest claiming more revisions than the backup holds",
            damage: |b| {
                let mut m = manifest_of(b);
                m.last_revision += 10;
                write_manifest(b, &m);
                b.join("MANIFEST")
            },
            says: "reaches revision 510",
        },
        Case {
            name: "a manifest with a wrong checksum",
            damage: |b| {
                let mut m = manifest_of(b);
                m.segments[1].crc32 ^= 1;
                let seg = b.join(&m.segments[1].file);
                write_manifest(b, &m);
                seg
            },
            says: "CRC-32",
        },
        Case {
            name: "a manifest naming another store",
            damage: |b| {
                let mut m = manifest_of(b);
                m.store_id = "0123456789abcdef0123456789abcdef".into();
                write_manifest(b, &m);
                b.join(&m.segments[0].file)
            },
            says: "another store",
        },
        Case {
            name: "a manifest that is not JSON",
            damage: |b| {
                std::fs::write(b.join("MANIFEST"), "{ not json").unwrap();
                b.join("MANIFEST")
            },
            says: "not a valid manifest",
        },
    ];
    for case in cases {
        let copy = dir.path().join("case");
        copy_dir(&backup, &copy);
        let named = (case.damage)(&copy);
        let report = check(&copy, &CheckOptions::new()).unwrap();
        assert!(!report.is_ok(), "{}: check found nothing", case.name);
        let problem = &report.problems[0];
        assert_eq!(
            problem.file.as_deref(),
            Some(named.as_path()),
            "{}: {problem}",
            case.name
        );
        assert!(
            problem.to_string().contains(case.says),
            "{}: {problem}",
            case.name
        );

        // Restore refuses, into a new directory and over a store.
        let fresh = dir.path().join("fresh");
        let err = restore(&copy, &fresh, &RestoreOptions::new()).unwrap_err();
        assert!(
            matches!(err, Error::InvalidBackup { .. }),
            "{}: {err}",
            case.name
        );
        assert!(err.to_string().contains(case.says), "{}: {err}", case.name);
        assert!(
            !fresh.exists(),
            "{}: a refused restore made the target",
            case.name
        );
        let existing = dir.path().join("existing");
        if !existing.exists() {
            Store::open(&existing, Options::default())
                .unwrap()
                .put("keep", "me", &1)
                .unwrap();
        }
        let before = files(&existing);
        let err = restore(&copy, &existing, &RestoreOptions::new().overwrite(true)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidBackup { .. }),
            "{}: {err}",
            case.name
        );
        assert_eq!(
            files(&existing),
            before,
            "{}: the store was touched",
            case.name
        );
        std::fs::remove_dir_all(&copy).unwrap();
    }
}

#[test]
fn an_interrupted_restore_leaves_no_store_and_the_next_one_replaces_it() {
    let dir = temp_dir();
    let (backup, state) = backup_with_history(dir.path());
    let target = dir.path().join("target");
    restore(&backup, &target, &RestoreOptions::new()).unwrap();
    // What a crash before the identity file is written leaves behind: the
    // restore's marker, naming the store it was building, and no identity.
    let id_path = target.join("STATELOG");
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&id_path).unwrap()).unwrap();
    std::fs::remove_file(&id_path).unwrap();
    let without_marker = restore(&backup, &target, &RestoreOptions::new()).unwrap_err();
    assert!(
        matches!(without_marker, Error::TargetNotEmpty { .. })
            && without_marker.to_string().contains("statelog repair"),
        "a store that lost its identity file is never replaced: {without_marker}"
    );
    let marker = serde_json::json!({
        "format": "statelog-creating",
        "store_id": identity["store_id"],
        "started_at": identity["created_at"],
    });
    std::fs::write(target.join("CREATING"), marker.to_string()).unwrap();
    let err = Store::open(&target, Options::default().create(false)).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    restore(&backup, &target, &RestoreOptions::new()).unwrap();
    assert!(!target.join("CREATING").exists());
    assert_eq!(dump_path(&target), (500, state));
}

#[test]
fn a_power_loss_during_a_restore_leaves_no_store_or_the_whole_one() {
    use statelog::testkit::sim::{Loss, SimFs};
    use std::sync::Arc;
    let sim = |fs: &SimFs| {
        Options::default()
            .file_system(Arc::new(fs.clone()))
            .segment_size(4 << 10)
            .cache_size(1 << 20)
            .lock_timeout(std::time::Duration::ZERO)
    };
    let base = SimFs::new();
    let expected = {
        let store = Store::open("/s", sim(&base)).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..40 {
            random_commit(&store, &mut rng);
        }
        store.backup("/b").unwrap();
        for _ in 0..80 {
            random_commit(&store, &mut rng);
        }
        store.backup("/b").unwrap();
        let state = dump(&store);
        store.close().unwrap();
        state
    };
    let values = |d: &Dump| -> Vec<((String, String), Vec<u8>)> {
        d.iter().map(|(k, r)| (k.clone(), r.4.clone())).collect()
    };
    let options = |fs: &SimFs| RestoreOptions::new().store_options(sim(fs));
    // How many operations a whole restore takes; the power goes at 30 points
    // spread over them, and at the last few.
    let total = {
        let fs = base.duplicate();
        let before = fs.ops();
        restore("/b", "/t", &options(&fs)).unwrap();
        fs.ops() - before
    };
    let mut points: Vec<u64> = (1..total).step_by((total / 30).max(1) as usize).collect();
    points.extend(total.saturating_sub(3)..=total + 1);
    let mut whole = 0;
    for k in points {
        let fs = base.duplicate();
        fs.power_off_after(k);
        let finished = restore("/b", "/t", &options(&fs)).is_ok();
        let survivor = fs.restart(Loss::Random(k));
        match Store::open("/t", sim(&survivor).create(false)) {
            Ok(store) => {
                // A store at all is the whole restored store.
                assert_eq!(store.revision(), 120, "{k} ops");
                assert!(dump(&store) == expected, "{k} ops");
                whole += 1;
            }
            Err(e) => {
                assert!(!finished, "{k} ops: a finished restore is gone: {e}");
                assert!(
                    matches!(e, Error::NotAStore { .. } | Error::Io { .. }),
                    "{k} ops: {e}"
                );
                restore("/b", "/t", &options(&survivor)).unwrap();
                let store = Store::open("/t", sim(&survivor).create(false)).unwrap();
                assert_eq!(values(&dump(&store)), values(&expected), "{k} ops");
            }
        }
        assert!(finished || k <= total, "{k} of {total} ops");
    }
    assert!(whole >= 1);
}

#[test]
fn a_restored_store_can_be_backed_up_checked_and_restored_again() {
    let dir = temp_dir();
    let (backup, _) = backup_with_history(dir.path());
    let base = manifest_of(&backup).base_revision();
    let second = dir.path().join("second");
    restore(
        &backup,
        &second,
        &RestoreOptions::new().until(Until::Revision(120)),
    )
    .unwrap();
    // Its log starts with the base record, then commits up to 120.
    let options = Options::default().segment_size(4 << 10).preallocate(0);
    let store = Store::open(&second, options).unwrap();
    let mut rng = fastrand::Rng::with_seed(99);
    for _ in 0..60 {
        random_commit(&store, &mut rng);
    }
    store.backup(dir.path().join("backup2")).unwrap();
    for _ in 0..60 {
        random_commit(&store, &mut rng);
    }
    store.backup(dir.path().join("backup2")).unwrap();
    let state = dump(&store);
    store.close().unwrap();
    let report = check(&second, &CheckOptions::new()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        report.log.first_revision,
        Some(base),
        "the log starts with the base"
    );
    assert!(report.log.reaches_start);
    let third = dir.path().join("third");
    let restored = restore(dir.path().join("backup2"), &third, &RestoreOptions::new()).unwrap();
    // Its first backup carried the history it was restored with.
    assert_eq!(restored.base_revision, base);
    assert_eq!(dump_path(&third), (240, state));
}
