//! `update`, transactions and imports with an idempotency key: a call retried
//! after it succeeded returns the first result without running its closure
//! again and writes nothing, embedded, through a holder and across restarts;
//! the key with another call is refused.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::reach;
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::{Batch, Error, Options, Store};

fn close(reached: (Store, Option<Store>)) {
    reached.0.close().unwrap();
    if let Some(holder) = reached.1 {
        holder.close().unwrap();
    }
}

#[test]
fn an_update_retried_with_its_key_runs_once_across_restarts_and_through_a_holder() {
    for through_holder in [false, true] {
        let dir = common::store_dir();
        let runs = AtomicUsize::new(0);
        let add_one = |n: Option<u64>| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(n.unwrap_or(0) + 10)
        };
        let reached = reach(dir.path(), through_holder);
        let store = &reached.0;
        let first = store
            .update_with_key("step-1", "stats", "n", add_one)
            .unwrap();
        assert!(!first.replayed);
        assert_eq!((first.record.value, first.record.version), (10, 1));
        let revision = store.revision();
        let again = store
            .update_with_key("step-1", "stats", "n", add_one)
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.record, first.record);
        close(reached);

        // After a restart, and after the record moved on.
        let reached = reach(dir.path(), through_holder);
        let store = &reached.0;
        store.put("stats", "n", &100u64).unwrap();
        let later = store
            .update_with_key("step-1", "stats", "n", add_one)
            .unwrap();
        assert!(later.replayed, "through a holder: {through_holder}");
        assert_eq!(later.record, first.record);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(store.get::<u64>("stats", "n").unwrap().unwrap().value, 100);
        assert_eq!(store.revision(), revision + 1);
        close(reached);
    }
}

#[test]
fn a_transaction_retried_with_its_key_runs_once_across_restarts_and_through_a_holder() {
    for through_holder in [false, true] {
        let dir = common::store_dir();
        let runs = AtomicUsize::new(0);
        let pay = |tx: &mut statelog::Tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            let a: i64 = tx.get("accounts", "a")?.map_or(50, |r| r.value);
            let b: i64 = tx.get("accounts", "b")?.map_or(0, |r| r.value);
            tx.put("accounts", "a", &(a - 5))?;
            tx.put("accounts", "b", &(b + 5))?;
            Ok::<_, Error>(format!("moved 5, a has {}", a - 5))
        };
        let reached = reach(dir.path(), through_holder);
        let store = &reached.0;
        let first = store.transaction_with_key("pay-1", pay).unwrap();
        assert!(!first.replayed);
        assert_eq!(first.value, "moved 5, a has 45");
        let again = store.transaction_with_key("pay-1", pay).unwrap();
        assert!(again.replayed);
        assert_eq!(
            (again.value.as_str(), again.revision),
            ("moved 5, a has 45", first.revision)
        );
        close(reached);

        let reached = reach(dir.path(), through_holder);
        let store = &reached.0;
        let later = store.transaction_with_key("pay-1", pay).unwrap();
        assert!(later.replayed);
        assert_eq!(later.value, first.value);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(store.get::<i64>("accounts", "b").unwrap().unwrap().value, 5);
        assert_eq!(Some(store.revision()), first.revision);
        close(reached);
    }
}

/// Threads racing with one key: one run writes, every thread gets its result.
#[test]
fn threads_racing_with_one_key_write_once() {
    for through_holder in [false, true] {
        let dir = common::store_dir();
        let reached = reach(dir.path(), through_holder);
        let store = reached.0.clone();
        let runs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, runs) = (store.clone(), Arc::clone(&runs));
                std::thread::spawn(move || {
                    store
                        .update_with_key("once", "stats", "n", |n: Option<u64>| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Error>(n.unwrap_or(0) + 1)
                        })
                        .unwrap()
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1);
        assert!(
            results
                .iter()
                .all(|r| r.record.value == 1 && r.record.version == 1)
        );
        // Same-record updates of one process take turns, so the key is seen
        // before each closure would run.
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(store.get::<u64>("stats", "n").unwrap().unwrap().version, 1);
        drop(store);
        close(reached);
    }
}

#[test]
fn a_key_used_for_one_call_is_refused_for_another() {
    let dir = common::store_dir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let never = |_: Option<u64>| -> Result<u64, Error> { panic!("the closure ran") };
    store
        .update_with_key("k-update", "stats", "a", |_: Option<u64>| Ok::<_, Error>(1))
        .unwrap();
    store
        .apply(
            &Batch::new()
                .put("stats", "c", &1)
                .idempotency_key("k-batch"),
        )
        .unwrap();
    store
        .transaction_with_key("k-tx", |tx| tx.put("stats", "d", &1).map(|()| 7u8))
        .unwrap();
    let revision = store.revision();
    let reused = |e: Error, key: &str| match e {
        Error::IdempotencyKeyReused { key: k, first } => {
            assert_eq!(k, key);
            assert!(first.is_some());
        }
        other => panic!("{key}: {other:?}"),
    };
    // An update of another record, a transaction, a batch.
    reused(
        store
            .update_with_key("k-update", "stats", "b", never)
            .unwrap_err(),
        "k-update",
    );
    reused(
        store
            .transaction_with_key("k-update", |_| -> Result<u8, Error> { panic!("ran") })
            .unwrap_err(),
        "k-update",
    );
    reused(
        store
            .apply(
                &Batch::new()
                    .put("stats", "a", &1)
                    .idempotency_key("k-update"),
            )
            .unwrap_err(),
        "k-update",
    );
    // A batch's key or a transaction's, for an update.
    reused(
        store
            .update_with_key("k-batch", "stats", "c", never)
            .unwrap_err(),
        "k-batch",
    );
    reused(
        store
            .update_with_key("k-tx", "stats", "d", never)
            .unwrap_err(),
        "k-tx",
    );
    assert_eq!(store.revision(), revision);
    store.close().unwrap();
}

#[test]
fn an_import_with_a_key_imports_once() {
    let dir = common::store_dir();
    let store = Store::open(dir.path().join("a"), Options::default()).unwrap();
    store.put("jobs", "j1", &"queued").unwrap();
    store.put("jobs", "j2", &"queued").unwrap();
    let mut file = Vec::new();
    snapshot::export(&store, &mut file, &ExportOptions::new(Format::Json)).unwrap();
    let copy = Store::open(dir.path().join("b"), Options::default()).unwrap();
    let merge = ImportMode::Merge {
        check_versions: false,
        skip_conflicts: false,
    };
    let options = ImportOptions::new(Format::Json, merge).idempotency_key("import-1");
    let first = snapshot::import(&copy, file.as_slice(), &options).unwrap();
    assert_eq!((first.written, first.replayed), (2, false));
    copy.put("jobs", "j1", &"done").unwrap();
    let revision = copy.revision();
    // Without the key this overwrite would write j1 again.
    let again = snapshot::import(&copy, file.as_slice(), &options).unwrap();
    assert!(again.replayed);
    assert_eq!((again.written, again.revision), (2, first.revision));
    assert_eq!(copy.revision(), revision);
    assert_eq!(
        copy.get::<String>("jobs", "j1").unwrap().unwrap().value,
        "done"
    );
    // Another file with the key.
    store.put("jobs", "j3", &"queued").unwrap();
    let mut other = Vec::new();
    snapshot::export(&store, &mut other, &ExportOptions::new(Format::Json)).unwrap();
    let err = snapshot::import(&copy, other.as_slice(), &options).unwrap_err();
    assert!(matches!(err, Error::IdempotencyKeyReused { .. }), "{err:?}");
    assert_eq!(copy.revision(), revision);
    store.close().unwrap();
    copy.close().unwrap();
}
