//! The state database's write held open across batches, whose writes readers
//! see as each view's tail (`src/db/tail.rs`, `src/engine/held.rs`): every
//! read agrees with a model (a map per revision) while the tail grows, is
//! folded into the database, and is folded early by reads of the past,
//! checkpoints, batches that write in place and a reopen; and the replay a
//! reopen keeps in memory as the first tail, read and written on threads as
//! it lands.

mod common;

use std::collections::BTreeMap;

use std::time::Duration;

use statelog::{Durability, KeyRange, Options, Store};

const NAMESPACES: [&str; 3] = ["a", "b", "c"];

/// The state: (namespace, key) -> value.
type Model = BTreeMap<(String, String), u64>;

fn check(store: &Store, model: &Model, when: &str) {
    let snapshot = store.snapshot().unwrap();
    let mut present: Vec<String> = model.keys().map(|(ns, _)| ns.clone()).collect();
    present.dedup();
    assert_eq!(
        snapshot.namespaces().unwrap(),
        present,
        "{when}: namespaces"
    );
    for ns in NAMESPACES {
        let listed: Vec<(String, u64)> = snapshot
            .list::<u64>(ns, KeyRange::all())
            .unwrap()
            .map(|item| item.map(|(key, v)| (key, v.value)))
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<(String, u64)> = model
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|((_, key), value)| (key.clone(), *value))
            .collect();
        assert_eq!(listed, expected, "{when}: list of {ns}");
        assert_eq!(
            snapshot.count(ns).unwrap(),
            expected.len() as u64,
            "{when}: count of {ns}"
        );
        // A range that starts and ends inside the namespace.
        let inside: Vec<String> = snapshot
            .list::<u64>(ns, KeyRange::range("k0100".."k0300"))
            .unwrap()
            .map(|item| item.map(|(key, _)| key))
            .collect::<Result<_, _>>()
            .unwrap();
        let expected_inside: Vec<String> = expected
            .iter()
            .map(|(key, _)| key.clone())
            .filter(|key| key.as_str() >= "k0100" && key.as_str() < "k0300")
            .collect();
        assert_eq!(inside, expected_inside, "{when}: range of {ns}");
    }
}

fn key(i: u32) -> String {
    format!("k{i:04}")
}

#[test]
fn reads_agree_with_a_model_while_held_writes_grow_and_fold() {
    reads_agree_with_a_model(Options::default());
}

#[test]
fn reads_agree_with_a_model_in_relaxed_mode() {
    reads_agree_with_a_model(Options::default().durability(Durability::Relaxed {
        max_delay: Duration::from_millis(5),
    }));
}

fn reads_agree_with_a_model(options: Options) {
    let dir = common::store_dir();
    let mut store = common::open_with(dir.path(), options.clone());
    let mut rng = fastrand::Rng::with_seed(20);
    let mut model = Model::new();
    // The model at some revisions, for reads of the past.
    let mut past: Vec<(u64, Model)> = Vec::new();
    for step in 0..4_000u32 {
        let ns = NAMESPACES[rng.usize(..NAMESPACES.len())];
        let k = key(rng.u32(..1_500));
        match rng.u32(..100) {
            0..=59 => {
                let value = u64::from(step);
                store.put(ns, &k, &value).unwrap();
                model.insert((ns.to_owned(), k), value);
            }
            60..=84 => {
                store.delete(ns, &k).unwrap();
                model.remove(&(ns.to_owned(), k));
            }
            85..=96 => {
                // A few writes in one commit.
                let keys: Vec<String> = (0..3).map(|_| key(rng.u32(..1_500))).collect();
                store
                    .transaction(|tx| {
                        for (i, k) in keys.iter().enumerate() {
                            if i == 1 {
                                tx.delete(ns, k)?;
                            } else {
                                tx.put(ns, k, &u64::from(step))?;
                            }
                        }
                        Ok::<_, statelog::Error>(())
                    })
                    .unwrap();
                for (i, k) in keys.into_iter().enumerate() {
                    if i == 1 {
                        model.remove(&(ns.to_owned(), k));
                    } else {
                        model.insert((ns.to_owned(), k), u64::from(step));
                    }
                }
            }
            97 => {
                // More writes than a batch stages: written in place, after the
                // held writes are folded.
                store
                    .transaction(|tx| {
                        for i in 0..300 {
                            tx.put("c", &key(1_000 + i), &u64::from(step))?;
                        }
                        Ok::<_, statelog::Error>(())
                    })
                    .unwrap();
                for i in 0..300 {
                    model.insert(("c".to_owned(), key(1_000 + i)), u64::from(step));
                }
            }
            98 => {
                // Empty a namespace.
                let keys: Vec<(String, String)> =
                    model.keys().filter(|(n, _)| n == "b").cloned().collect();
                for (n, k) in keys {
                    store.delete(&n, &k).unwrap();
                    model.remove(&(n, k));
                }
            }
            _ => store.checkpoint().unwrap(),
        }
        if step % 97 == 0 {
            check(&store, &model, &format!("step {step}"));
            past.push((store.revision(), model.clone()));
        }
        if step % 331 == 0 {
            // A read of the past folds the held writes first.
            let (revision, then) = &past[rng.usize(..past.len())];
            let snapshot = store.snapshot_at_revision(*revision).unwrap();
            for ((n, k), value) in then.iter().take(50) {
                let got = snapshot.get::<u64>(n, k).unwrap().map(|v| v.value);
                assert_eq!(got, Some(*value), "step {step}: {n}/{k} at {revision}");
            }
            check(
                &store,
                &model,
                &format!("step {step}, after a read of the past"),
            );
        }
        if step == 2_500 {
            // A reopen: the close folds and checkpoints.
            store.close().unwrap();
            store = common::open_with(dir.path(), options.clone());
            check(&store, &model, "after a reopen");
        }
    }
    check(&store, &model, "at the end");
    let revision = store.revision();
    // Dropped without a close: the held writes are not in the state database,
    // and the reopen replays them from the log.
    drop(store);
    let store = common::open_with(dir.path(), options);
    assert_eq!(store.revision(), revision);
    check(&store, &model, "after a drop and a reopen");
}

#[test]
fn a_record_rewritten_while_held_keeps_its_history() {
    let dir = common::store_dir();
    let store = common::open(dir.path());
    for i in 0..10u64 {
        store.put("ns", "k", &i).unwrap();
    }
    let versions: Vec<u64> = store
        .history("ns", "k")
        .unwrap()
        .into_iter()
        .map(|v| v.value.map_or(0, |v| v.version))
        .collect();
    let mut expected: Vec<u64> = (1..=10).collect();
    if versions.first() == Some(&10) {
        expected.reverse();
    }
    assert_eq!(versions, expected);
    let snapshot = store.snapshot_at_revision(4).unwrap();
    assert_eq!(snapshot.get::<u64>("ns", "k").unwrap().unwrap().value, 3);
}

/// Every record of namespace `a` in `snapshot`: key -> value.
fn values_in_a(snapshot: &statelog::Snapshot) -> BTreeMap<String, u64> {
    snapshot
        .list::<u64>("a", KeyRange::all())
        .unwrap()
        .map(|item| item.map(|(key, v)| (key, v.value)))
        .collect::<Result<_, _>>()
        .unwrap()
}

/// After a power loss, the reopen keeps the replay in memory and writes it in
/// the background: readers on two threads see the replayed state (or later)
/// from the first read on and never anything older, while a third thread's
/// updates (read, add one, compare and swap) wait for the replay to land and
/// then build on it; a later reopen has nothing to replay and reads the past
/// back from the history the replay wrote.
#[test]
fn readers_and_a_writer_meet_a_replay_kept_in_memory_as_it_lands() {
    use statelog::CheckpointPolicy;
    use statelog::testkit::sim::{Loss, SimFs};
    use std::sync::Arc;
    let options = |fs: SimFs| {
        Options::default()
            .file_system(Arc::new(fs))
            .serve(false)
            .remote(false)
            .checkpoint(CheckpointPolicy::manual())
    };
    const KEYS: u64 = 2_000;
    let key = |i: u64| format!("k{i:04}");
    let sim = SimFs::new();
    let store = Store::open("/store", options(sim.clone())).unwrap();
    store
        .transaction(|tx| (0..KEYS).try_for_each(|i| tx.put("a", &key(i), &0u64)))
        .unwrap();
    store.checkpoint().unwrap();
    for round in 1..=4u64 {
        store
            .transaction(|tx| (0..KEYS).try_for_each(|i| tx.put("a", &key(i), &(round * 10))))
            .unwrap();
    }
    for i in 0..KEYS * 3 / 2 {
        store.put("a", &key(i % KEYS), &(50 + i / KEYS)).unwrap();
    }
    let replayed_at = store.revision();
    let model = values_in_a(&store.snapshot().unwrap());
    sim.power_off();
    drop(store);

    let sim = sim.restart(Loss::Everything);
    let store = Store::open("/store", options(sim.clone())).unwrap();
    assert_eq!(store.recovery().replayed, replayed_at - 1);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut seen = model.clone();
                for _ in 0..40 {
                    let snapshot = store.snapshot().unwrap();
                    assert!(snapshot.revision().unwrap() >= replayed_at);
                    let now = values_in_a(&snapshot);
                    assert_eq!(now.len(), model.len());
                    for (key, value) in &now {
                        assert!(
                            *value == model[key] || *value == model[key] + 1,
                            "{key}: {value}, replayed {}",
                            model[key]
                        );
                        assert!(*value >= seen[key], "{key} went back");
                    }
                    seen = now;
                }
            });
        }
        scope.spawn(|| {
            for i in 0..KEYS {
                let updated = store
                    .update::<u64, statelog::Error, _>("a", &key(i), |v| Ok(v.unwrap() + 1))
                    .unwrap();
                assert_eq!(updated.value, model[&key(i)] + 1);
            }
        });
    });
    store.close().unwrap();
    let store = Store::open("/store", options(sim)).unwrap();
    assert_eq!(store.recovery().replayed, 0);
    let then = store.snapshot_at_revision(replayed_at).unwrap();
    for (key, value) in &model {
        assert_eq!(then.get::<u64>("a", key).unwrap().unwrap().value, *value);
        let now = store.get::<u64>("a", key).unwrap().unwrap().value;
        assert_eq!(now, value + 1);
    }
    store.close().unwrap();
}
