//! A seeded random workload of single-key writes, compare-and-swap and
//! multi-key transactions over a few namespaces, with a model of what the store
//! must hold at every revision. Used by the power-loss and fault-injection
//! tests, which crash or break the store in the middle of it and then check
//! that what reopens is the model at an allowed revision.

use std::collections::BTreeMap;

use statelog::{Error, Store};

pub const NAMESPACES: [&str; 3] = ["jobs", "tasks", "meta"];
pub const KEYS: [&str; 4] = ["a", "b", "c", "d"];

/// A record as the model has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub value: i64,
    pub version: u64,
    pub created: u64,
    pub modified: u64,
}

/// The whole state: (namespace, key) -> record.
pub type State = BTreeMap<(String, String), Rec>;

/// One step of the workload.
#[derive(Debug, Clone)]
pub enum Step {
    Put(usize, usize, i64),
    Delete(usize, usize),
    /// Compare-and-swap with the right version, or a wrong one.
    Cas(usize, usize, bool, i64),
    /// Writes (None: delete) committed together; `fail` adds a precondition
    /// that cannot hold.
    Txn(Vec<(usize, usize, Option<i64>)>, bool),
    /// An explicit checkpoint.
    Checkpoint,
    /// Close and open again.
    Reopen,
}

pub fn random_step(rng: &mut fastrand::Rng) -> Step {
    let ns = |rng: &mut fastrand::Rng| rng.usize(0..NAMESPACES.len());
    let key = |rng: &mut fastrand::Rng| rng.usize(0..KEYS.len());
    match rng.u32(0..100) {
        0..30 => Step::Put(ns(rng), key(rng), rng.i64(-1000..1000)),
        30..42 => Step::Delete(ns(rng), key(rng)),
        42..57 => Step::Cas(ns(rng), key(rng), rng.u32(0..4) != 0, rng.i64(-1000..1000)),
        57..90 => {
            let writes = (0..rng.usize(1..6))
                .map(|_| {
                    let value = (rng.u32(0..4) != 0).then(|| rng.i64(-1000..1000));
                    (ns(rng), key(rng), value)
                })
                .collect();
            Step::Txn(writes, rng.u32(0..8) == 0)
        }
        90..96 => Step::Checkpoint,
        _ => Step::Reopen,
    }
}

/// Every state the store went through: `history[r]` is the state at revision r.
#[derive(Debug, Clone)]
pub struct Model {
    pub history: Vec<State>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            history: vec![State::new()],
        }
    }
}

fn address(n: usize, k: usize) -> (String, String) {
    (NAMESPACES[n].to_owned(), KEYS[k].to_owned())
}

impl Model {
    pub fn revision(&self) -> u64 {
        self.history.len() as u64 - 1
    }

    pub fn current(&self) -> &State {
        self.history.last().expect("the model has revision 0")
    }

    pub fn version(&self, n: usize, k: usize) -> u64 {
        self.current().get(&address(n, k)).map_or(0, |r| r.version)
    }

    /// The state a commit of these writes produces, or `None` if it changes
    /// nothing (and so takes no revision).
    pub fn after(&self, writes: &[((String, String), Option<i64>)]) -> Option<State> {
        let revision = self.revision() + 1;
        let mut state = self.current().clone();
        let mut changed = false;
        for (address, value) in writes {
            match value {
                Some(v) => {
                    let old = state.get(address).cloned();
                    state.insert(
                        address.clone(),
                        Rec {
                            value: *v,
                            version: old.as_ref().map_or(0, |r| r.version) + 1,
                            created: old.map_or(revision, |r| r.created),
                            modified: revision,
                        },
                    );
                    changed = true;
                }
                None => changed |= state.remove(address).is_some(),
            }
        }
        changed.then_some(state)
    }

    /// What `step` would commit, if it commits: the writes in the order they
    /// apply (later writes of a key replacing earlier ones) and the resulting
    /// state, or `None` when it fails or writes nothing.
    pub fn predict(&self, step: &Step) -> Option<State> {
        match step {
            Step::Put(n, k, v) => self.after(&[(address(*n, *k), Some(*v))]),
            Step::Delete(n, k) => self.after(&[(address(*n, *k), None)]),
            Step::Cas(n, k, right, v) => {
                if *right {
                    self.after(&[(address(*n, *k), Some(*v))])
                } else {
                    None
                }
            }
            Step::Txn(writes, fail) => {
                if *fail {
                    return None;
                }
                let mut last = BTreeMap::new();
                for (n, k, v) in writes {
                    last.insert(address(*n, *k), *v);
                }
                let writes: Vec<_> = last.into_iter().collect();
                self.after(&writes)
            }
            Step::Checkpoint | Step::Reopen => None,
        }
    }
}

/// Reads the store's whole state and revision, from one snapshot.
pub fn read_state(store: &Store) -> statelog::Result<(u64, State)> {
    store.read(|snap| {
        let mut state = State::new();
        for ns in snap.namespaces()? {
            for item in snap.list::<i64>(&ns, ..)? {
                let (key, r) = item?;
                state.insert(
                    (ns.clone(), key),
                    Rec {
                        value: r.value,
                        version: r.version,
                        created: r.create_revision,
                        modified: r.mod_revision,
                    },
                );
            }
        }
        Ok((snap.revision()?, state))
    })
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It committed the next revision, as the model predicted (the model moved on).
    Committed,
    /// It changed nothing (a conflict, a no-op), as the model predicted.
    Nothing,
    /// A checkpoint or a close: everything up to the current revision is durable.
    Durable,
}

/// Runs one step against the store in `store` (taken out of it while a reopen
/// runs). `Err`: the store failed, and the model did not move; the caller
/// decides whether the failure is allowed. An answer that contradicts the model
/// is `Err(StepError::Wrong)`.
pub fn run_step(
    store: &mut Option<Store>,
    step: &Step,
    model: &mut Model,
    reopen: &mut dyn FnMut() -> statelog::Result<Store>,
) -> Result<Effect, StepError> {
    let predicted = model.predict(step);
    let next = model.revision() + 1;
    let committed = |model: &mut Model, revision: Option<u64>| -> Result<Effect, StepError> {
        match (&predicted, revision) {
            (Some(state), Some(r)) if r == next => {
                model.history.push(state.clone());
                Ok(Effect::Committed)
            }
            (None, None) => Ok(Effect::Nothing),
            _ => Err(StepError::Wrong(format!(
                "{step:?} committed at {revision:?}, the model expected {:?}",
                predicted.as_ref().map(|_| next)
            ))),
        }
    };
    let Some(handle) = store.as_ref() else {
        return Err(StepError::Wrong("no store is open".to_owned()));
    };
    match step {
        Step::Put(n, k, v) => {
            let c = handle.put(NAMESPACES[*n], KEYS[*k], v)?;
            committed(model, Some(c.revision))
        }
        Step::Delete(n, k) => {
            let d = handle.delete(NAMESPACES[*n], KEYS[*k])?;
            committed(model, d.map(|d| d.revision))
        }
        Step::Cas(n, k, right, v) => {
            let current = model.version(*n, *k);
            let expected = if *right { current } else { current + 1 };
            match handle.compare_and_swap(NAMESPACES[*n], KEYS[*k], expected, v) {
                Ok(c) => committed(model, Some(c.revision)),
                Err(Error::Conflict { actual, .. }) if !right && actual == current => {
                    committed(model, None)
                }
                Err(e) => Err(e.into()),
            }
        }
        Step::Txn(writes, fail) => {
            let result = handle.transaction(|tx| {
                for (n, k, v) in writes {
                    match v {
                        Some(v) => tx.put(NAMESPACES[*n], KEYS[*k], v)?,
                        None => tx.delete(NAMESPACES[*n], KEYS[*k])?,
                    }
                }
                if *fail {
                    tx.expect_version(NAMESPACES[0], KEYS[0], u64::MAX)?;
                }
                Ok::<_, Error>(())
            });
            match result {
                Ok(out) => committed(model, out.revision),
                Err(Error::Conflict { .. }) if *fail => committed(model, None),
                Err(e) => Err(e.into()),
            }
        }
        Step::Checkpoint => {
            handle.checkpoint()?;
            Ok(Effect::Durable)
        }
        Step::Reopen => {
            if let Some(old) = store.take() {
                old.close()?;
            }
            *store = Some(reopen()?);
            Ok(Effect::Durable)
        }
    }
}

/// Why a step did not complete.
#[derive(Debug)]
pub enum StepError {
    /// The store returned an error.
    Store(Error),
    /// The store's answer contradicts the model.
    Wrong(String),
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        StepError::Store(e)
    }
}
