//! What a store does, whatever way it is reached: each function takes a
//! [`Way`] and checks one behaviour on a fresh store.

use std::path::Path;

use serde::{Deserialize, Serialize};
use statelog::backup::{RestoreOptions, restore};
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::{Error, KeyRange, Meta, Options, RawValue, RestoreRecord, Store, Timestamp};

use crate::ways::{Embedded, Reached, Way};

fn open(way: &dyn Way, dir: &tempfile::TempDir) -> Reached {
    way.open(&dir.path().join("store"), Options::default())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
struct Task {
    status: String,
    progress: u32,
}

pub fn compare_and_swap(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let r = |n| reached.rev(n);
    let first = store.create("tasks", "t1", &Task::default()).unwrap();
    assert_eq!(
        (first.revision, first.version, first.changed),
        (r(1), 1, true)
    );
    match store.create("tasks", "t1", &Task::default()).unwrap_err() {
        Error::Conflict {
            namespace,
            key,
            expected,
            actual,
            attempts,
        } => {
            assert_eq!((namespace.as_str(), key.as_str()), ("tasks", "t1"));
            assert_eq!((expected, actual, attempts), (0, 1, 1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let running = Task {
        status: "running".into(),
        progress: 10,
    };
    let second = store.compare_and_swap("tasks", "t1", 1, &running).unwrap();
    assert_eq!((second.revision, second.version), (r(2), 2));
    let err = store
        .compare_and_swap("tasks", "t1", 1, &running)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let unchanged = store.put_if_changed("tasks", "t1", &running).unwrap();
    assert_eq!(
        (unchanged.revision, unchanged.version, unchanged.changed),
        (r(2), 2, false)
    );
    let err = store.compare_and_delete("tasks", "t1", 5).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 5,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let deleted = store.compare_and_delete("tasks", "t1", 2).unwrap();
    assert_eq!((deleted.revision, deleted.version), (r(3), 2));
    assert_eq!(store.delete("tasks", "t1").unwrap(), None);
    let err = store.compare_and_delete("tasks", "t1", 1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 1,
                actual: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // A re-created record starts again at version 1.
    let again = store.create("tasks", "t1", &running).unwrap();
    assert_eq!((again.revision, again.version), (r(4), 1));
    let read = store.get::<Task>("tasks", "t1").unwrap().unwrap();
    assert_eq!(read.value, running);
    assert_eq!(
        (read.version, read.create_revision, read.mod_revision),
        (1, r(4), r(4))
    );
    assert_eq!(store.revision(), r(4));
}

pub fn update(way: &dyn Way) {
    const THREADS: usize = 8;
    const EACH: u32 = 40;
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let store = store.clone();
            scope.spawn(move || {
                for _ in 0..EACH {
                    store
                        .update(
                            "tasks",
                            "counter",
                            |old: Option<Task>| -> statelog::Result<Task> {
                                let mut task = old.unwrap_or_default();
                                task.progress += 1;
                                Ok(task)
                            },
                        )
                        .unwrap();
                }
            });
        }
    });
    let total = THREADS as u32 * EACH;
    let counter = store.get::<Task>("tasks", "counter").unwrap().unwrap();
    assert_eq!(counter.value.progress, total);
    assert_eq!(counter.version, u64::from(total));
    assert_eq!(store.revision(), reached.rev(u64::from(total)));
    let stats = store.stats();
    assert_eq!(stats.revision, reached.rev(u64::from(total)));
    assert_eq!(stats.conflicts, stats.retries, "{stats:?}");
    // An error from the closure ends the update at once and writes nothing.
    #[derive(Debug)]
    struct Refused;
    impl From<Error> for Refused {
        fn from(_: Error) -> Refused {
            Refused
        }
    }
    let result = store.update("tasks", "counter", |_: Option<Task>| Err(Refused));
    assert!(result.is_err());
    assert_eq!(store.revision(), reached.rev(u64::from(total)));
    // A stored value of another type names the record.
    let err = store
        .update(
            "tasks",
            "counter",
            |old: Option<String>| -> statelog::Result<String> { Ok(old.unwrap_or_default()) },
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { namespace, key, .. } if namespace == "tasks" && key == "counter"),
        "{err:?}"
    );
}

pub fn transactions(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    store.put("accounts", "a", &10).unwrap();
    let moved = store
        .transaction(|tx| {
            let a: i64 = tx.get("accounts", "a")?.map_or(0, |r| r.value);
            let b: i64 = tx.get("accounts", "b")?.map_or(0, |r| r.value);
            tx.put("accounts", "a", &(a - 3))?;
            tx.put("accounts", "b", &(b + 3))?;
            // The transaction reads its own writes, with the version to come.
            let own = tx.get::<i64>("accounts", "b")?.unwrap();
            assert_eq!((own.value, own.version, own.mod_revision), (3, 1, 0));
            Ok::<_, Error>(a)
        })
        .unwrap();
    let r = |n| reached.rev(n);
    assert_eq!((moved.value, moved.revision), (10, Some(r(2))));
    let read_only = store
        .transaction(|tx| Ok::<_, Error>(tx.get::<i64>("accounts", "a")?.unwrap().value))
        .unwrap();
    assert_eq!((read_only.value, read_only.revision), (7, None));

    // A failing precondition writes nothing.
    let err = store
        .transaction(|tx| {
            tx.put("accounts", "c", &1)?;
            tx.expect_version("accounts", "a", 9)?;
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 9,
                actual: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.get::<i64>("accounts", "c").unwrap(), None);

    // A record changed after the transaction read it makes it run again.
    let mut runs = 0;
    let out = store
        .transaction(|tx| {
            runs += 1;
            let a: i64 = tx.get("accounts", "a")?.unwrap().value;
            if runs == 1 {
                store.put("accounts", "a", &100).unwrap();
            }
            tx.put("accounts", "copy", &a)?;
            Ok::<_, Error>(a)
        })
        .unwrap();
    assert_eq!((runs, out.value), (2, 100));
    assert_eq!(
        store.get::<i64>("accounts", "copy").unwrap().unwrap().value,
        100
    );
    assert_eq!(store.stats().retries, 1);

    // Deletes, and put_if_changed that leaves the revision alone.
    let out = store
        .transaction(|tx| {
            tx.delete("accounts", "copy")?;
            tx.delete("accounts", "never")?;
            tx.put_if_changed("accounts", "a", &100)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let revision = out.revision.unwrap();
    assert_eq!((revision, store.revision()), (r(5), r(5)));
    assert_eq!(
        store
            .get::<i64>("accounts", "a")
            .unwrap()
            .unwrap()
            .mod_revision,
        r(3)
    );
    let nothing = store
        .transaction(|tx| {
            tx.put_if_changed("accounts", "a", &100)?;
            tx.delete("accounts", "never")?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(nothing.revision, None);
    assert_eq!(store.revision(), revision);

    // A large transaction (values beyond one frame of the wire) is atomic.
    let big = "x".repeat(6 << 20);
    let out = store
        .transaction(|tx| {
            for i in 0..4 {
                tx.put("big", &format!("k{i}"), &big)?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(out.revision, Some(revision + 1));
    let back = store.get::<String>("big", "k3").unwrap().unwrap();
    assert_eq!(back.value.len(), big.len());
}

pub fn list(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    store
        .transaction(|tx| {
            for i in 0..2500 {
                tx.put("jobs", &format!("job-{i:05}"), &i)?;
            }
            tx.put("a", "1", &"first")?;
            tx.put("jobs2", "x", &"after")?;
            tx.put("jobs", "job", &-1)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let all: Vec<(String, i64)> = store
        .list::<i64>("jobs", ..)
        .unwrap()
        .map(|item| item.map(|(k, r)| (k, r.value)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 2501);
    assert_eq!(all[0], ("job".to_owned(), -1));
    assert_eq!(all[1], ("job-00000".to_owned(), 0));
    assert_eq!(all[2500], ("job-02499".to_owned(), 2499));
    let keys = |range: KeyRange| -> Vec<String> {
        store
            .list_raw("jobs", range)
            .unwrap()
            .map(|item| item.unwrap().0)
            .collect()
    };
    assert_eq!(keys(KeyRange::prefix("job-0001")).len(), 10);
    assert_eq!(keys(KeyRange::prefix("job-0001"))[0], "job-00010");
    assert_eq!(keys(KeyRange::prefix("zzz")), Vec::<String>::new());
    assert_eq!(
        keys(("job-00100".."job-00103").into()),
        ["job-00100", "job-00101", "job-00102"]
    );
    assert_eq!(keys(("job-02498"..).into()), ["job-02498", "job-02499"]);
    assert_eq!(keys((..="job").into()), ["job"]);
    assert_eq!(keys(("b".."a").into()), Vec::<String>::new());
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.namespaces().unwrap(), ["a", "jobs", "jobs2"]);
    assert_eq!(snap.count("jobs").unwrap(), 2501);
    assert_eq!(snap.count("none").unwrap(), 0);
    assert_eq!(store.namespaces().unwrap(), ["a", "jobs", "jobs2"]);
    // A value of the wrong type fails its item, naming the record.
    let err = store
        .list::<String>("jobs", KeyRange::prefix("job-00000"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { key, .. } if key == "job-00000"),
        "{err:?}"
    );
}

pub fn snapshots(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    store.put("s", "a", &1).unwrap();
    let snap = store.snapshot().unwrap();
    let before = snap.time().unwrap();
    store.put("s", "a", &2).unwrap();
    store.put("s", "b", &3).unwrap();
    assert_eq!(snap.revision().unwrap(), reached.rev(1));
    assert_eq!(snap.get::<i32>("s", "a").unwrap().unwrap().value, 1);
    assert_eq!(snap.get::<i32>("s", "b").unwrap(), None);
    assert_eq!(snap.list_raw("s", ..).unwrap().count(), 1);
    let now = store.snapshot().unwrap();
    assert_eq!(now.revision().unwrap(), reached.rev(3));
    assert!(now.time().unwrap() >= before);
    assert_eq!(now.get::<i32>("s", "a").unwrap().unwrap().value, 2);
    let empty_dir = crate::common::store_dir();
    let empty = open(way, &empty_dir);
    let snap = empty.store().snapshot().unwrap();
    assert_eq!(
        (snap.revision().unwrap(), snap.time().unwrap()),
        (0, Timestamp::EPOCH)
    );
}

pub fn export_import(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    store
        .put(
            "tasks",
            "t1",
            &serde_json::json!({"status": "running", "n": 1}),
        )
        .unwrap();
    store
        .put("tasks", "t2", &serde_json::json!([1, 2.5, null]))
        .unwrap();
    store.put("meta", "big", &u64::MAX).unwrap();
    store
        .put("tasks", "t1", &serde_json::json!({"status": "done"}))
        .unwrap();
    for format in [Format::Json, Format::JsonLines, Format::Markdown] {
        let mut first = Vec::new();
        let summary = snapshot::export(store, &mut first, &ExportOptions::new(format)).unwrap();
        assert_eq!(
            (summary.header.revision, summary.records),
            (reached.rev(4), 3)
        );
        // Restored into a new store reached the same way: the same bytes.
        let copy_dir = crate::common::store_dir();
        let copy = open(way, &copy_dir);
        if reached.is_etcd() {
            // etcd assigns versions and revisions itself: a restore cannot
            // keep them, and says so, writing nothing.
            let err = snapshot::import(
                copy.store(),
                first.as_slice(),
                &ImportOptions::new(format, ImportMode::Restore),
            )
            .unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
            assert!(err.to_string().contains("--mode merge"), "{err}");
            assert_eq!(copy.store().revision(), 0);
            continue;
        }
        let report = snapshot::import(
            copy.store(),
            first.as_slice(),
            &ImportOptions::new(format, ImportMode::Restore),
        )
        .unwrap();
        assert_eq!((report.revision, report.written), (Some(4), 3));
        let mut second = Vec::new();
        snapshot::export(copy.store(), &mut second, &ExportOptions::new(format)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&second)
        );
        // Restoring into a store with commits is refused.
        let err = snapshot::import(
            copy.store(),
            first.as_slice(),
            &ImportOptions::new(format, ImportMode::Restore),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotEmpty { revision: 4 }), "{err:?}");
    }
    // A merge of a stale file reports the conflicts and writes nothing.
    let mut file = Vec::new();
    snapshot::export(store, &mut file, &ExportOptions::new(Format::JsonLines)).unwrap();
    store.put("tasks", "t2", &"changed").unwrap();
    let merge = ImportMode::Merge {
        check_versions: true,
        skip_conflicts: false,
    };
    let report = snapshot::import(
        store,
        file.as_slice(),
        &ImportOptions::new(Format::JsonLines, merge),
    )
    .unwrap();
    assert!(!report.applied);
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(
        (report.conflicts[0].expected, report.conflicts[0].actual),
        (1, 2)
    );
    assert_eq!(store.revision(), reached.rev(5));
}

pub fn restore_records(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let meta = |version, created, modified| Meta {
        version,
        create_revision: created,
        mod_revision: modified,
        updated_at: Timestamp::from_micros(1_767_322_245_000_000),
    };
    let record = |key: &str, m: Meta| RestoreRecord {
        namespace: "r".into(),
        key: key.into(),
        meta: m,
        value: RawValue::from_value(&key.len()).unwrap(),
    };
    if reached.is_etcd() {
        // etcd cannot keep records' versions and revisions: restoring them
        // does not apply, whatever the records.
        let err = store
            .restore_records(
                9,
                Timestamp::from_micros(7),
                vec![record("b", meta(3, 2, 9)), record("a", meta(1, 1, 1))],
            )
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("--mode merge"), "{err}");
        assert_eq!(store.revision(), 0);
        assert_eq!(store.get_raw("r", "b").unwrap(), None);
        return;
    }
    let err = store
        .restore_records(
            9,
            Timestamp::from_micros(5),
            vec![record("a", meta(1, 1, 1)), record("a", meta(2, 1, 3))],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                name: "records",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .restore_records(
            2,
            Timestamp::from_micros(5),
            vec![record("a", meta(1, 1, 3))],
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
    let revision = store
        .restore_records(
            9,
            Timestamp::from_micros(7),
            vec![record("b", meta(3, 2, 9)), record("a", meta(1, 1, 1))],
        )
        .unwrap();
    assert_eq!(revision, 9);
    assert_eq!(store.revision(), 9);
    let b = store.get_raw("r", "b").unwrap().unwrap();
    assert_eq!(b.meta(), meta(3, 2, 9));
    let next = store.put("r", "c", &1).unwrap();
    assert_eq!(next.revision, 10);
    let err = store
        .restore_records(11, Timestamp::from_micros(7), vec![])
        .unwrap_err();
    assert!(matches!(err, Error::NotEmpty { revision: 10 }), "{err:?}");
}

pub fn backup_and_stats(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    for i in 0..20 {
        store.put("jobs", &format!("j{i}"), &i).unwrap();
    }
    let dest = dir.path().join("backup");
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::clone(&progress);
    let first = store
        .backup_with(
            &dest,
            &statelog::backup::BackupOptions::new().progress(move |_| {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
            }),
        )
        .unwrap();
    assert!(first.full);
    assert_eq!(first.revision, reached.rev(20));
    if reached.is_etcd() {
        // One export at the revision, as the backup's base; no log.
        assert_eq!(first.base_revision, first.revision);
        assert_eq!((first.base_records, first.log_bytes_copied), (20, 0));
    } else {
        // The whole log is there from revision 1: no base needed.
        assert_eq!(first.base_revision, 0);
        assert!(first.log_bytes_copied > 0);
    }
    assert_eq!(first.destination, dest);
    store.put("jobs", "j0", &100).unwrap();
    let next = store.backup(&dest).unwrap();
    // On etcd every run is a whole export.
    assert_eq!(next.full, reached.is_etcd());
    assert_eq!(next.revision, reached.rev(21));
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let err = store.backup(&other).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TargetNotEmpty { .. } | Error::InvalidBackup { .. }
        ),
        "{err:?}"
    );
    let restored = dir.path().join("restored");
    restore(&dest, &restored, &RestoreOptions::new()).unwrap();
    let copy = Store::open(&restored, Options::default().serve(false)).unwrap();
    assert_eq!(copy.get::<i32>("jobs", "j0").unwrap().unwrap().value, 100);
    assert_eq!(copy.revision(), reached.rev(21));
    copy.close().unwrap();

    if reached.is_etcd() {
        // No files of statelog's to checkpoint, no engine counters.
        let err = store.checkpoint().unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("etcdctl compact"), "{err}");
        let stats = store.stats();
        assert_eq!((stats.revision, stats.commits), (reached.rev(21), 21));
        assert_eq!((stats.checkpoint_revision, stats.log_bytes), (0, 0));
        return;
    }
    store.checkpoint().unwrap();
    let stats = store.stats();
    assert_eq!(stats.revision, 21);
    assert_eq!(stats.checkpoint_revision, 21);
    assert_eq!(stats.commits, 21);
    assert!(stats.batches >= 1 && stats.batches <= 21, "{stats:?}");
    assert!(stats.log_bytes > 0);
    if reached.is_remote() {
        assert!(stats.clients >= 1, "{stats:?}");
    }
}

/// Every error a caller can provoke, as text with the store's path made
/// neutral, in order.
fn provoke_errors(store: &Store, root: &Path) -> Vec<String> {
    let store_path = store.path().display().to_string();
    let mut out = Vec::new();
    let mut note = |r: statelog::Result<String>| {
        let text = match r {
            Ok(v) => format!("ok {v}"),
            Err(e) => {
                let mut text = format!("{e} | {e:?}");
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(&format!(" <- {s}"));
                    source = s.source();
                }
                text
            }
        };
        out.push(
            text.replace(&store_path, "<store>")
                .replace(&root.display().to_string(), "<root>"),
        );
    };
    note(store.put("", "k", &1).map(|c| format!("{c:?}")));
    note(store.put("ns", "a\nb", &1).map(|c| format!("{c:?}")));
    note(store.get::<i32>("ns\u{7f}", "k").map(|c| format!("{c:?}")));
    note(store.put("ns", "k", &"text").map(|c| format!("{c:?}")));
    note(store.get::<i32>("ns", "k").map(|c| format!("{c:?}")));
    note(
        store
            .compare_and_swap("ns", "k", 7, &1)
            .map(|c| format!("{c:?}")),
    );
    note(store.create("ns", "k", &1).map(|c| format!("{c:?}")));
    note(
        store
            .compare_and_delete("ns", "missing", 1)
            .map(|c| format!("{c:?}")),
    );
    note(
        store
            .put_raw(
                "ns",
                "big",
                RawValue::from_value(&"x".repeat(17 << 20)).unwrap(),
            )
            .map(|c| format!("{c:?}")),
    );
    note(
        store
            .restore_records(3, Timestamp::from_micros(1), vec![])
            .map(|r| format!("{r}")),
    );
    note(
        store
            .transaction(|tx| {
                tx.put("ns", "t", &1)?;
                tx.expect_version("ns", "k", 3)?;
                Ok::<_, Error>(())
            })
            .map(|o| format!("{o:?}")),
    );
    note(
        store
            .update("ns", "k", |_: Option<i32>| -> statelog::Result<i32> {
                Ok(1)
            })
            .map(|o| format!("{o:?}")),
    );
    note(store.list::<i32>("", ..).map(|_| "a list".to_owned()));
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    note(store.backup(&other).map(|r| format!("{}", r.revision)));
    let clone = store.clone();
    clone.close().unwrap();
    note(store.get::<i32>("ns", "k").map(|c| format!("{c:?}")));
    note(store.put("ns", "k", &1).map(|c| format!("{c:?}")));
    out
}

pub fn errors(way: &dyn Way) {
    let expected_dir = crate::common::store_dir();
    let expected = {
        let reached = open(&Embedded, &expected_dir);
        provoke_errors(reached.store(), expected_dir.path())
    };
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let mut got = provoke_errors(reached.store(), dir.path());
    if reached.is_etcd() {
        // etcd's revisions count the store's creation.
        let committed = expected
            .iter()
            .position(|e| e.starts_with("ok Committed { revision: 1,"))
            .expect("the first commit");
        let first = format!("ok Committed {{ revision: {},", reached.rev(1));
        assert!(got[committed].starts_with(&first), "{}", got[committed]);
        got[committed] = got[committed].replacen(&first, "ok Committed { revision: 1,", 1);
        // Restoring records does not apply (their versions and revisions
        // cannot be kept), whether the store is empty or not.
        let restore = expected
            .iter()
            .position(|e| e.contains("| NotEmpty"))
            .expect("the restore's error");
        assert!(
            got[restore].contains("| Unsupported {") && got[restore].contains("--mode merge"),
            "{}",
            got[restore]
        );
        got[restore].clone_from(&expected[restore]);
    }
    let differences: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|(e, g)| e != g)
        .map(|(e, g)| format!("embedded: {e}\n     got: {g}"))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert_eq!(expected.len(), got.len());
    for variant in [
        "InvalidKey",
        "Decode",
        "Conflict",
        "TooLarge",
        "NotEmpty",
        "TargetNotEmpty",
        "Closed",
    ] {
        assert!(
            expected.iter().any(|e| e.contains(&format!("| {variant}"))),
            "no {variant} among {expected:#?}"
        );
    }
}

/// Watching and the past: events whole and in order (caught up from the log,
/// then live), previous values, scopes; histories; snapshots at a revision
/// and a time; what is refused.
pub fn watch_and_history(way: &dyn Way) {
    use statelog::{Watch, WatchEvent};
    use std::time::Duration;
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let mut exports = Vec::new();
    let export_now = |snapshot: &statelog::Snapshot| {
        let mut out = Vec::new();
        snapshot::export_snapshot(snapshot, &mut out, &ExportOptions::new(Format::Json)).unwrap();
        String::from_utf8(out).unwrap()
    };
    for (i, status) in ["queued", "running", "done"].iter().enumerate() {
        store
            .put(
                "jobs",
                "build",
                &Task {
                    status: (*status).into(),
                    progress: i as u32,
                },
            )
            .unwrap();
        exports.push(export_now(&store.snapshot().unwrap()));
    }
    store.put("jobs", "test", &Task::default()).unwrap();
    store.delete("jobs", "test").unwrap();
    exports.push(export_now(&store.snapshot().unwrap()));
    let r = |n| reached.rev(n);
    let mut watcher = store
        .watch(
            Watch::namespace("jobs")
                .from(r(2))
                .prev(true)
                .progress(Duration::from_millis(20)),
        )
        .unwrap();
    // A commit made after the watch began arrives after the caught-up ones.
    store
        .put(
            "jobs",
            "build",
            &Task {
                status: "again".into(),
                progress: 9,
            },
        )
        .unwrap();
    store.put("other", "x", &1).unwrap();
    let mut seen = Vec::new();
    for event in watcher.by_ref() {
        match event.unwrap() {
            WatchEvent::Change(change) => {
                assert_eq!(change.events.len(), 1);
                let e = &change.events[0];
                let prev = e
                    .prev
                    .as_ref()
                    .map(|p| p.value.decode::<Task>().unwrap().status);
                seen.push((change.revision, e.key.clone(), e.is_delete(), prev));
            }
            WatchEvent::Progress { revision } => {
                if revision >= r(7) {
                    break;
                }
            }
        }
    }
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(
        seen,
        vec![
            (r(2), "build".to_owned(), false, s("queued")),
            (r(3), "build".to_owned(), false, s("running")),
            (r(4), "test".to_owned(), false, None),
            (r(5), "test".to_owned(), true, s("")),
            (r(6), "build".to_owned(), false, s("done")),
        ]
    );
    drop(watcher);
    let history: Vec<(u64, Option<String>)> = store
        .history("jobs", "build")
        .unwrap()
        .into_iter()
        .map(|v| {
            (
                v.revision,
                v.value.map(|v| v.value.decode::<Task>().unwrap().status),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            (r(1), s("queued")),
            (r(2), s("running")),
            (r(3), s("done")),
            (r(6), s("again"))
        ]
    );
    let deleted = store.history("jobs", "test").unwrap();
    assert_eq!(deleted.len(), 2);
    assert!(deleted[1].value.is_none());
    assert_eq!(deleted[1].revision, r(5));
    for (n, expected) in [
        (1u64, &exports[0]),
        (2, &exports[1]),
        (3, &exports[2]),
        (5, &exports[3]),
    ] {
        assert_eq!(
            &export_now(&store.snapshot_at_revision(r(n)).unwrap()),
            expected,
            "at {n}"
        );
    }
    let third = store.snapshot_at_revision(r(3)).unwrap();
    let time = third
        .get::<Task>("jobs", "build")
        .unwrap()
        .unwrap()
        .updated_at;
    let before_third = store.snapshot_at_time(time).unwrap();
    assert_eq!(before_third.revision().unwrap(), r(2));
    assert_eq!(store.stats().first_revision, r(1));
    // What is refused, the same way.
    let err = store.snapshot_at_revision(r(99)).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("after the store's current revision {}", r(7))),
        "{err}"
    );
    let err = store.watch(Watch::key("jobs", "bad\nkey")).unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
}

/// A watch through `statelog serve` whose holder is killed (SIGKILL) or
/// closes (SIGTERM): the watcher ends with `WatchCancelled` naming the next
/// revision it lacks, and a watch from there (the handle takes the store
/// over, or reaches the new holder) misses nothing and repeats nothing.
pub fn a_watch_outlives_its_holder(kill: bool) {
    use statelog::{Watch, WatchEvent};
    let dir = crate::common::store_dir();
    let path = dir.path().join("store");
    Store::open(&path, Options::default().serve(false))
        .unwrap()
        .close()
        .unwrap();
    let mut serve = crate::ways::start_serve(&path);
    let store = Store::open(&path, Options::default()).unwrap();
    assert!(!store.is_holder());
    let mut watcher = store.watch(Watch::all().from(1)).unwrap();
    for i in 0..5 {
        store.put("jobs", &format!("j{i}"), &i).unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        if let WatchEvent::Change(c) = watcher.next().unwrap().unwrap() {
            seen.push(c.revision);
        }
    }
    // A watch of what comes next, that nothing reaches before its holder goes.
    let mut idle = store.watch(Watch::all()).unwrap();
    if kill {
        serve.kill().unwrap();
        serve.wait().unwrap();
    } else {
        crate::ways::stop_serve(&mut serve);
    }
    let err = loop {
        match watcher.next() {
            Some(Ok(WatchEvent::Change(c))) => seen.push(c.revision),
            Some(Ok(WatchEvent::Progress { .. })) => {}
            Some(Err(e)) => break e,
            None => panic!("the watch ended without saying where to resume"),
        }
    };
    let Error::WatchCancelled { resume_from, .. } = &err else {
        panic!("expected WatchCancelled, got {err:?}");
    };
    assert_eq!(*resume_from, 6, "{err}");
    match idle.next() {
        Some(Err(Error::WatchCancelled { resume_from, .. })) => assert_eq!(resume_from, 6),
        other => panic!("expected WatchCancelled for the idle watch, got {other:?}"),
    }
    assert!(
        err.to_string().contains("watch again from revision 6"),
        "{err}"
    );
    // The handle reaches the store again (here it takes it over).
    for i in 5..8 {
        store.put("jobs", &format!("j{i}"), &i).unwrap();
    }
    let watcher = store
        .watch(
            Watch::all()
                .from(*resume_from)
                .progress(std::time::Duration::from_millis(20)),
        )
        .unwrap();
    for event in watcher {
        match event.unwrap() {
            WatchEvent::Change(c) => seen.push(c.revision),
            WatchEvent::Progress { .. } => break,
        }
    }
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
}
