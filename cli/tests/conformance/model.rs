//! The store against a simple model: random sequences of operations, checked
//! after every step against a `BTreeMap` for values, versions and revisions,
//! through every way of reaching a store.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use statelog::{Error, Options, Store};

use crate::ways::Way;

const NAMESPACES: [&str; 2] = ["a", "b"];
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];

#[derive(Debug, Clone)]
enum Step {
    Put(usize, usize, i64),
    PutIfChanged(usize, usize, i64),
    Delete(usize, usize),
    /// Compare-and-swap expecting the current version (`true`) or a wrong one.
    Cas(usize, usize, bool, i64),
    /// A transaction of several writes; it fails when `fail` holds, after its
    /// writes were buffered.
    Txn(Vec<(usize, usize, Option<i64>)>, bool),
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let ns = 0..NAMESPACES.len();
    let key = 0..KEYS.len();
    let value = -3i64..3;
    prop_oneof![
        4 => (ns.clone(), key.clone(), value.clone()).prop_map(|(n, k, v)| Step::Put(n, k, v)),
        2 => (ns.clone(), key.clone(), value.clone()).prop_map(|(n, k, v)| Step::PutIfChanged(n, k, v)),
        2 => (ns.clone(), key.clone()).prop_map(|(n, k)| Step::Delete(n, k)),
        2 => (ns.clone(), key.clone(), any::<bool>(), value.clone())
            .prop_map(|(n, k, ok, v)| Step::Cas(n, k, ok, v)),
        2 => (proptest::collection::vec((ns, key, proptest::option::of(value)), 1..5), any::<bool>())
            .prop_map(|(w, fail)| Step::Txn(w, fail)),
        1 => Just(Step::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRecord {
    value: i64,
    version: u64,
    create_revision: u64,
    mod_revision: u64,
}

#[derive(Debug, Default)]
struct Model {
    records: BTreeMap<(String, String), ModelRecord>,
    revision: u64,
    /// The revision before the store's first commit (see `Reached::rev`).
    base: u64,
}

impl Model {
    fn version(&self, ns: &str, key: &str) -> u64 {
        self.records
            .get(&(ns.to_owned(), key.to_owned()))
            .map_or(0, |r| r.version)
    }

    /// Applies one transaction's writes at the next revision (if any changed).
    fn commit(&mut self, writes: &[(String, String, Option<i64>, bool)]) -> Option<u64> {
        let revision = self.revision.max(self.base) + 1;
        let mut changed = false;
        for (ns, key, value, skip_unchanged) in writes {
            let address = (ns.clone(), key.clone());
            match value {
                Some(v) => {
                    let current = self.records.get(&address).cloned();
                    if *skip_unchanged && current.as_ref().is_some_and(|c| c.value == *v) {
                        continue;
                    }
                    changed = true;
                    self.records.insert(
                        address,
                        ModelRecord {
                            value: *v,
                            version: current.as_ref().map_or(0, |c| c.version) + 1,
                            create_revision: current.map_or(revision, |c| c.create_revision),
                            mod_revision: revision,
                        },
                    );
                }
                None => {
                    if self.records.remove(&address).is_some() {
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.revision = revision;
            Some(revision)
        } else {
            None
        }
    }
}

fn check(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.revision(), model.revision);
    let mut actual = BTreeMap::new();
    store
        .read(|snap| {
            for ns in snap.namespaces()? {
                for item in snap.list::<i64>(&ns, ..)? {
                    let (key, r) = item?;
                    actual.insert(
                        (ns.clone(), key),
                        ModelRecord {
                            value: r.value,
                            version: r.version,
                            create_revision: r.create_revision,
                            mod_revision: r.mod_revision,
                        },
                    );
                }
            }
            prop_assert_eq_ok(snap.revision()?, model.revision)
        })
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&actual, &model.records);
    Ok(())
}

fn prop_assert_eq_ok(a: u64, b: u64) -> statelog::Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::Poisoned {
            cause: format!("snapshot revision {a} != model revision {b}"),
        })
    }
}

fn run(way: &dyn Way, steps: Vec<Step>, options: Options) -> Result<(), TestCaseError> {
    let dir = crate::common::store_dir();
    let mut reached = way.open(&dir.path().join("store"), options);
    let mut model = Model {
        base: reached.rev(0),
        ..Model::default()
    };
    for step in steps {
        let store = reached.store().clone();
        match step {
            Step::Put(n, k, v) => {
                let c = store.put(NAMESPACES[n], KEYS[k], &v).expect("put");
                let rev = model.commit(&[(NAMESPACES[n].into(), KEYS[k].into(), Some(v), false)]);
                prop_assert_eq!(Some(c.revision), rev);
                prop_assert_eq!(c.version, model.version(NAMESPACES[n], KEYS[k]));
            }
            Step::PutIfChanged(n, k, v) => {
                let c = store
                    .put_if_changed(NAMESPACES[n], KEYS[k], &v)
                    .expect("put");
                let rev = model.commit(&[(NAMESPACES[n].into(), KEYS[k].into(), Some(v), true)]);
                prop_assert_eq!(c.changed, rev.is_some());
                prop_assert_eq!(c.version, model.version(NAMESPACES[n], KEYS[k]));
            }
            Step::Delete(n, k) => {
                let existed = model.version(NAMESPACES[n], KEYS[k]);
                let d = store.delete(NAMESPACES[n], KEYS[k]).expect("delete");
                let rev = model.commit(&[(NAMESPACES[n].into(), KEYS[k].into(), None, false)]);
                prop_assert_eq!(
                    d.map(|d| (d.revision, d.version)),
                    rev.map(|r| (r, existed))
                );
            }
            Step::Cas(n, k, right, v) => {
                let current = model.version(NAMESPACES[n], KEYS[k]);
                let expected = if right { current } else { current + 1 };
                match store.compare_and_swap(NAMESPACES[n], KEYS[k], expected, &v) {
                    Ok(c) => {
                        prop_assert!(right);
                        let rev =
                            model.commit(&[(NAMESPACES[n].into(), KEYS[k].into(), Some(v), false)]);
                        prop_assert_eq!(Some(c.revision), rev);
                    }
                    Err(Error::Conflict {
                        expected: e,
                        actual,
                        ..
                    }) => {
                        prop_assert!(!right);
                        prop_assert_eq!((e, actual), (expected, current));
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            Step::Txn(writes, fail) => {
                let result = store.transaction(|tx| {
                    for (n, k, v) in &writes {
                        match v {
                            Some(v) => tx.put(NAMESPACES[*n], KEYS[*k], v)?,
                            None => tx.delete(NAMESPACES[*n], KEYS[*k])?,
                        }
                    }
                    if fail {
                        // A precondition that cannot hold: nothing may apply.
                        tx.expect_version(NAMESPACES[0], KEYS[0], u64::MAX)?;
                    }
                    Ok::<_, Error>(())
                });
                if fail {
                    let conflicted = matches!(result, Err(Error::Conflict { .. }));
                    prop_assert!(conflicted, "a failing transaction must conflict");
                } else {
                    let out = result.expect("transaction");
                    // Later writes to the same key replace earlier ones.
                    let mut last: BTreeMap<(usize, usize), Option<i64>> = BTreeMap::new();
                    for (n, k, v) in &writes {
                        last.insert((*n, *k), *v);
                    }
                    let writes: Vec<_> = last
                        .into_iter()
                        .map(|((n, k), v)| (NAMESPACES[n].to_owned(), KEYS[k].to_owned(), v, false))
                        .collect();
                    prop_assert_eq!(out.revision, model.commit(&writes));
                }
            }
            Step::Reopen => {
                drop(store);
                reached.reopen();
            }
        }
        check(reached.store(), &model)?;
    }
    Ok(())
}

/// Runs `cases` random sequences of operations against the model, each on a
/// new store reached through `way`.
pub fn the_store_behaves_like_the_model(way: &dyn Way, options: Options, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(step(), 1..40), |steps| {
        run(way, steps, options.clone())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
