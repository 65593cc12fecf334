//! The public API, one behaviour at a time.

mod common;

use std::path::Path;

use common::{open, open_with, store_dir};
use serde::{Deserialize, Serialize};
use statelog::{Error, KeyPart, KeyRange, Options, Store, Timestamp};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
struct Task {
    status: String,
    progress: u32,
}

fn task(status: &str, progress: u32) -> Task {
    Task {
        status: status.to_owned(),
        progress,
    }
}

#[test]
fn put_get_versions_and_revisions() {
    let dir = store_dir();
    let store = open(dir.path());
    assert_eq!(store.revision(), 0);
    let c1 = store.put("tasks", "t1", &task("queued", 0)).unwrap();
    assert_eq!((c1.revision, c1.version, c1.changed), (1, 1, true));
    let c2 = store.put("tasks", "t2", &task("queued", 0)).unwrap();
    assert_eq!((c2.revision, c2.version), (2, 1));
    let c3 = store.put("tasks", "t1", &task("running", 5)).unwrap();
    assert_eq!((c3.revision, c3.version), (3, 2));
    let t1 = store.get::<Task>("tasks", "t1").unwrap().unwrap();
    assert_eq!(t1.value, task("running", 5));
    assert_eq!(t1.version, 2);
    assert_eq!(t1.create_revision, 1);
    assert_eq!(t1.mod_revision, 3);
    assert!(t1.updated_at > Timestamp::EPOCH);
    assert_eq!(store.revision(), 3);
    assert!(store.get::<Task>("tasks", "missing").unwrap().is_none());
    assert!(store.get::<Task>("other", "t1").unwrap().is_none());
}

#[test]
fn compare_and_swap_and_create_only() {
    let dir = store_dir();
    let store = open(dir.path());
    store.create("tasks", "t", &task("a", 0)).unwrap();
    let err = store.create("tasks", "t", &task("b", 0)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    let c = store
        .compare_and_swap("tasks", "t", 1, &task("c", 1))
        .unwrap();
    assert_eq!(c.version, 2);
    let err = store
        .compare_and_swap("tasks", "t", 1, &task("d", 2))
        .unwrap_err();
    match err {
        Error::Conflict {
            namespace,
            key,
            expected,
            actual,
            ..
        } => {
            assert_eq!((namespace.as_str(), key.as_str()), ("tasks", "t"));
            assert_eq!((expected, actual), (1, 2));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    // The failed CAS wrote nothing and took no revision.
    assert_eq!(store.revision(), 2);
    assert_eq!(
        store.get::<Task>("tasks", "t").unwrap().unwrap().value,
        task("c", 1)
    );
    assert!(store.stats().conflicts >= 2);
}

#[test]
fn delete_and_recreate_starts_at_version_one() {
    let dir = store_dir();
    let store = open(dir.path());
    store.put("jobs", "j", &1).unwrap();
    store.put("jobs", "j", &2).unwrap();
    let deleted = store.delete("jobs", "j").unwrap().unwrap();
    assert_eq!((deleted.revision, deleted.version), (3, 2));
    assert!(store.get::<i32>("jobs", "j").unwrap().is_none());
    // Deleting what is not there writes nothing.
    assert!(store.delete("jobs", "j").unwrap().is_none());
    assert_eq!(store.revision(), 3);
    let again = store.put("jobs", "j", &3).unwrap();
    assert_eq!((again.revision, again.version), (4, 1));
    assert_eq!(
        store
            .get::<i32>("jobs", "j")
            .unwrap()
            .unwrap()
            .create_revision,
        4
    );
    let err = store.compare_and_delete("jobs", "j", 7).unwrap_err();
    assert!(err.is_conflict());
    let d = store.compare_and_delete("jobs", "j", 1).unwrap();
    assert_eq!(d.version, 1);
}

#[test]
fn put_if_changed_skips_identical_values() {
    let dir = store_dir();
    let store = open(dir.path());
    let first = store
        .put_if_changed("sync", "a.txt", &task("hash1", 1))
        .unwrap();
    assert!(first.changed);
    let same = store
        .put_if_changed("sync", "a.txt", &task("hash1", 1))
        .unwrap();
    assert!(!same.changed);
    assert_eq!((same.version, same.revision), (1, 1));
    assert_eq!(store.revision(), 1, "no revision for an unchanged write");
    let other = store
        .put_if_changed("sync", "a.txt", &task("hash2", 1))
        .unwrap();
    assert!(other.changed);
    assert_eq!((other.version, other.revision), (2, 2));
}

#[test]
fn update_passes_the_old_value_and_returns_the_new() {
    let dir = store_dir();
    let store = open(dir.path());
    let v = store
        .update(
            "counters",
            "c",
            |old: Option<u64>| -> statelog::Result<u64> {
                assert!(old.is_none());
                Ok(1)
            },
        )
        .unwrap();
    assert_eq!((v.value, v.version), (1, 1));
    let v = store
        .update(
            "counters",
            "c",
            |old: Option<u64>| -> statelog::Result<u64> { Ok(old.unwrap() + 41) },
        )
        .unwrap();
    assert_eq!((v.value, v.version), (42, 2));
    // An error from the closure ends the update and writes nothing.
    #[derive(Debug)]
    enum MyError {
        Store(Error),
        Refused,
    }
    impl From<Error> for MyError {
        fn from(e: Error) -> Self {
            MyError::Store(e)
        }
    }
    let err = store
        .update("counters", "c", |_: Option<u64>| -> Result<u64, MyError> {
            Err(MyError::Refused)
        })
        .unwrap_err();
    assert!(matches!(err, MyError::Refused));
    let err = store
        .update(
            "counters",
            "c",
            |_: Option<String>| -> Result<String, MyError> { Ok(String::new()) },
        )
        .unwrap_err();
    assert!(matches!(err, MyError::Store(Error::Decode { .. })));
    assert_eq!(
        store.get::<u64>("counters", "c").unwrap().unwrap().version,
        2
    );
}

#[test]
fn transactions_are_all_or_nothing() {
    let dir = store_dir();
    let store = open(dir.path());
    store.put("acct", "a", &100i64).unwrap();
    let out = store
        .transaction(|tx| {
            let a: i64 = tx.get("acct", "a")?.map_or(0, |r| r.value);
            tx.put("acct", "a", &(a - 30))?;
            tx.put("acct", "b", &30i64)?;
            tx.delete("acct", "nothing")?;
            Ok::<_, Error>("moved")
        })
        .unwrap();
    assert_eq!(out.value, "moved");
    assert_eq!(out.revision, Some(2));
    assert_eq!(store.get::<i64>("acct", "a").unwrap().unwrap().value, 70);
    assert_eq!(
        store.get::<i64>("acct", "b").unwrap().unwrap().mod_revision,
        2
    );

    // A failing precondition aborts everything.
    let err = store
        .transaction(|tx| {
            tx.put("acct", "c", &1i64)?;
            tx.expect_version("acct", "a", 1)?;
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(err.is_conflict());
    assert!(store.get::<i64>("acct", "c").unwrap().is_none());
    assert_eq!(store.revision(), 2);

    // A read-only transaction takes no revision.
    let out = store
        .transaction(|tx| Ok::<_, Error>(tx.get::<i64>("acct", "a")?.unwrap().value))
        .unwrap();
    assert_eq!((out.value, out.revision), (70, None));

    // Reads see the transaction's own writes.
    store
        .transaction(|tx| {
            tx.put("acct", "d", &5i64)?;
            let d = tx.get::<i64>("acct", "d")?.unwrap();
            assert_eq!((d.value, d.version), (5, 1));
            tx.delete("acct", "d")?;
            assert!(tx.get::<i64>("acct", "d")?.is_none());
            tx.put("acct", "e", &1i64)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert!(store.get::<i64>("acct", "d").unwrap().is_none());
}

#[test]
fn transaction_retries_when_a_read_changed() {
    let dir = store_dir();
    let store = open(dir.path());
    store.put("n", "x", &0i64).unwrap();
    let mut runs = 0;
    let out = store
        .transaction(|tx| {
            runs += 1;
            let x: i64 = tx.get("n", "x")?.unwrap().value;
            if runs == 1 {
                // Someone else writes between our read and our commit.
                store.put("n", "x", &100i64)?;
            }
            tx.put("n", "x", &(x + 1))?;
            Ok::<_, Error>(x)
        })
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(out.value, 100);
    assert_eq!(store.get::<i64>("n", "x").unwrap().unwrap().value, 101);
    assert_eq!(store.stats().retries, 1);
}

#[test]
fn list_streams_in_key_order_by_range_and_prefix() {
    let dir = store_dir();
    let store = open(dir.path());
    for key in ["b", "a", "task_2", "task_10", "task_1", "z", "é"] {
        store.put("ns", key, &key.len()).unwrap();
    }
    store.put("ns2", "a", &0usize).unwrap();
    store.put("n", "a", &0usize).unwrap();
    let keys = |range: KeyRange| -> Vec<String> {
        store
            .list::<usize>("ns", range)
            .unwrap()
            .map(|item| item.unwrap().0)
            .collect()
    };
    assert_eq!(
        keys(KeyRange::all()),
        ["a", "b", "task_1", "task_10", "task_2", "z", "é"]
    );
    assert_eq!(keys(KeyRange::prefix("task_1")), ["task_1", "task_10"]);
    assert_eq!(keys(("b".."task_2").into()), ["b", "task_1", "task_10"]);
    assert_eq!(keys(("task_2"..).into()), ["task_2", "z", "é"]);
    assert_eq!(keys((..="b").into()), ["a", "b"]);
    assert_eq!(keys(("z".."a").into()), Vec::<String>::new());
    assert_eq!(keys(KeyRange::prefix("nothing")), Vec::<String>::new());
    let ns: Vec<String> = store.namespaces().unwrap();
    assert_eq!(ns, ["n", "ns", "ns2"]);
    assert_eq!(store.snapshot().unwrap().count("ns").unwrap(), 7);
}

#[test]
fn snapshots_are_consistent_and_do_not_see_later_commits() {
    let dir = store_dir();
    let store = open(dir.path());
    store.put("s", "a", &1).unwrap();
    let snap = store.snapshot().unwrap();
    store.put("s", "a", &2).unwrap();
    store.put("s", "b", &2).unwrap();
    assert_eq!(snap.revision().unwrap(), 1);
    assert_eq!(snap.get::<i32>("s", "a").unwrap().unwrap().value, 1);
    assert!(snap.get::<i32>("s", "b").unwrap().is_none());
    assert_eq!(store.read(|s| s.revision()).unwrap(), 3);
}

#[test]
fn invalid_keys_say_which_part_and_why() {
    let dir = store_dir();
    let store = open(dir.path());
    let cases: [(&str, &str, KeyPart, &str); 5] = [
        ("", "k", KeyPart::Namespace, "empty"),
        ("ns", "", KeyPart::Key, "empty"),
        ("ns", "a\tb", KeyPart::Key, "control character"),
        ("n\u{7f}", "k", KeyPart::Namespace, "control character"),
        ("ns", &"k".repeat(2000), KeyPart::Key, "limit"),
    ];
    for (ns, key, part, why) in cases {
        let err = store.put(ns, key, &1).unwrap_err();
        match &err {
            Error::InvalidKey {
                part: p, reason, ..
            } => {
                assert_eq!(*p, part);
                assert!(reason.contains(why), "{err}");
            }
            other => panic!("expected InvalidKey, got {other}"),
        }
        assert!(store.get::<i32>(ns, key).is_err());
    }
    assert_eq!(store.revision(), 0);
}

#[test]
fn decoding_as_the_wrong_type_names_the_record() {
    let dir = store_dir();
    let store = open(dir.path());
    store.put("tasks", "t", &task("x", 1)).unwrap();
    let err = store.get::<Vec<u64>>("tasks", "t").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Decode { .. }));
    assert!(text.contains("tasks/t"), "{text}");
    // Named fields: a compatible struct reads it.
    #[derive(Deserialize)]
    struct StatusOnly {
        status: String,
    }
    assert_eq!(
        store
            .get::<StatusOnly>("tasks", "t")
            .unwrap()
            .unwrap()
            .value
            .status,
        "x"
    );
}

#[test]
fn raw_values_round_trip() {
    let dir = store_dir();
    let store = open(dir.path());
    let raw = statelog::RawValue::from_value(&task("raw", 9)).unwrap();
    store.put_raw("r", "k", raw.clone()).unwrap();
    let back = store.get_raw("r", "k").unwrap().unwrap();
    assert_eq!(back.value, raw);
    assert_eq!(back.value.decode::<Task>().unwrap(), task("raw", 9));
}

#[test]
fn state_survives_close_and_reopen() {
    let dir = store_dir();
    {
        let store = open(dir.path());
        store.put("a", "1", &"one").unwrap();
        store.put("a", "2", &"two").unwrap();
        store.delete("a", "1").unwrap();
        store.close().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.revision(), 3);
    assert!(store.get::<String>("a", "1").unwrap().is_none());
    assert_eq!(store.get::<String>("a", "2").unwrap().unwrap().value, "two");
    assert_eq!(store.recovery().replayed, 0);
    let c = store.put("a", "3", &"three").unwrap();
    assert_eq!(c.revision, 4);
}

#[test]
fn close_refuses_further_use_of_clones() {
    let dir = store_dir();
    let store = open(dir.path());
    let clone = store.clone();
    store.close().unwrap();
    assert!(matches!(clone.put("a", "b", &1), Err(Error::Closed)));
    assert!(matches!(clone.get::<i32>("a", "b"), Err(Error::Closed)));
}

#[test]
fn a_directory_that_is_not_a_store_is_refused() {
    let dir = store_dir();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    // Nothing was created in it.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);

    let missing = dir.path().join("missing");
    let err = Store::open(&missing, Options::default().create(false)).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(!missing.exists());
}

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_alone() {
    let dir = store_dir();
    {
        let store = open(dir.path());
        store.put("a", "b", &1).unwrap();
    }
    let id_path = dir.path().join("STATELOG");
    let text = std::fs::read_to_string(&id_path).unwrap();
    let newer = text.replace("\"version\": 1", "\"version\": 99");
    assert_ne!(text, newer);
    std::fs::write(&id_path, &newer).unwrap();
    let before = common::snapshot_files(dir.path());
    let err = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormat { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer statelog"), "{err}");
    assert_eq!(common::snapshot_files(dir.path()), before);
}

#[test]
fn segments_rotate_and_the_log_replays_across_them() {
    let dir = store_dir();
    let options = || Options::default().segment_size(4096).preallocate(0);
    {
        let store = open_with(dir.path(), options());
        for i in 0..200u32 {
            store.put("r", &format!("k{i:03}"), &vec![i; 10]).unwrap();
        }
    }
    let segments = std::fs::read_dir(dir.path().join("log")).unwrap().count();
    assert!(segments > 3, "only {segments} segments");
    let store = open_with(dir.path(), options());
    assert_eq!(store.revision(), 200);
    assert_eq!(
        store.get::<Vec<u32>>("r", "k123").unwrap().unwrap().value,
        vec![123; 10]
    );
}

#[test]
fn large_transactions_are_split_into_parts_and_stay_atomic() {
    const NAME: &str = "large_transactions_are_split_into_parts_and_stay_atomic";
    if let Some((_, dir)) = common::child_role() {
        let store = open(Path::new(&dir));
        let big = "x".repeat(100_000);
        store
            .transaction(|tx| {
                for i in 0..100 {
                    tx.put("big", &format!("{i:03}"), &big)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(store.revision(), 1);
        // End without a checkpoint, so reopening must replay the parts.
        common::exit_without_closing();
    }
    let dir = store_dir();
    common::run_child(NAME, "write", dir.path().to_str().unwrap());
    let store = open(dir.path());
    assert_eq!(store.recovery().replayed, 1);
    assert_eq!(store.revision(), 1);
    assert_eq!(store.snapshot().unwrap().count("big").unwrap(), 100);
}

#[test]
fn restore_records_keeps_metadata_and_needs_an_empty_store() {
    let dir = store_dir();
    let store = open(dir.path());
    let t = Timestamp::from_micros(1_700_000_000_000_000);
    let record = |key: &str, version, created, modified| statelog::RestoreRecord {
        namespace: "jobs".into(),
        key: key.into(),
        meta: statelog::Meta {
            version,
            create_revision: created,
            mod_revision: modified,
            updated_at: t,
        },
        value: statelog::RawValue::from_value(&key).unwrap(),
    };
    let err = store
        .restore_records(10, t, [record("a", 1, 3, 12)])
        .unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
    let rev = store
        .restore_records(10, t, [record("a", 4, 3, 9), record("b", 1, 10, 10)])
        .unwrap();
    assert_eq!(rev, 10);
    let a = store.get::<String>("jobs", "a").unwrap().unwrap();
    assert_eq!((a.version, a.create_revision, a.mod_revision), (4, 3, 9));
    assert_eq!(a.updated_at, t);
    let next = store.put("jobs", "a", &"next").unwrap();
    assert_eq!((next.revision, next.version), (11, 5));
    let err = store.restore_records(20, t, []).unwrap_err();
    assert!(matches!(err, Error::NotEmpty { .. }));
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.revision(), 11);
    assert_eq!(
        store
            .get::<String>("jobs", "b")
            .unwrap()
            .unwrap()
            .create_revision,
        10
    );
}
