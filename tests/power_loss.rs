//! Power loss, not just a killed process.
//!
//! The store runs on the test kit's simulated file system, which keeps what
//! was written but not synced apart from what was synced. A seeded workload
//! (puts, deletes, compare-and-swap, multi-key transactions, checkpoints,
//! reopens) runs until the power is cut at a random operation: in a commit, a
//! checkpoint, a segment rotation, a preallocation, or a recovery. The disk then
//! keeps a random part of the unsynced writes (dropped, reordered, torn) and the
//! store is opened again, and must hold exactly the model's state at an allowed
//! revision:
//!
//! - `Durability::Sync`: every acknowledged commit, and perhaps the one in
//!   flight when the power went;
//! - `Durability::Relaxed`: a prefix: any revision from the last one known to
//!   be durable (a checkpoint, a close, an open) to the last acknowledged one
//!   (or the one in flight), never a torn or partial state.
//!
//! The log must hold exactly the model's commits, in order. Each seed runs
//! several crash epochs; a failure names its seed, and
//! `STATELOG_SEED=<seed> cargo test --test power_loss` replays just that seed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::workload::{self, Effect, Model, State, StepError};
use statelog::testkit::log_reader;
use statelog::testkit::record::LogOp;
use statelog::testkit::sim::{Loss, SimFs};
use statelog::{CheckpointPolicy, Durability, Options, Store};

const STORE: &str = "/data/store";
const EPOCHS: usize = 4;
const SEEDS_PER_MODE: u64 = 700;

#[derive(Debug, Clone, Copy)]
struct Config {
    relaxed: bool,
    segment_size: u64,
    preallocate: u64,
}

fn options(fs: &SimFs, config: &Config) -> Options {
    // No background checkpoint and no background sync: the workload decides
    // when they happen, so that a seed always replays the same operations.
    let never = Duration::from_secs(3600);
    let durability = if config.relaxed {
        Durability::Relaxed { max_delay: never }
    } else {
        Durability::Sync
    };
    Options::default()
        .file_system(std::sync::Arc::new(fs.clone()))
        .durability(durability)
        .segment_size(config.segment_size)
        .preallocate(config.preallocate)
        .cache_size(1 << 20)
        .lock_timeout(Duration::ZERO)
        .checkpoint(CheckpointPolicy::manual())
}

fn random_loss(rng: &mut fastrand::Rng) -> Loss {
    match rng.u32(0..6) {
        0 => Loss::Nothing,
        1 => Loss::Everything,
        _ => Loss::Random(rng.u64(..)),
    }
}

/// What one seed did, for the totals.
#[derive(Debug, Default)]
struct Counts {
    crashes: u64,
    recovery_crashes: u64,
    commits: u64,
}

/// Checks a freshly opened store against the model and pins the model to what
/// it holds. `inflight` is the state the commit in flight at the crash would
/// have produced.
fn check_reopened(
    store: &Store,
    fs: &SimFs,
    model: &mut Model,
    floor: u64,
    inflight: Option<State>,
) -> Result<(), String> {
    let (revision, state) = workload::read_state(store).map_err(|e| format!("read: {e}"))?;
    if revision != store.revision() {
        return Err(format!(
            "the snapshot is at {revision}, the store says {}",
            store.revision()
        ));
    }
    let acked = model.revision();
    if revision == acked + 1 && inflight.is_some() {
        if inflight.as_ref() != Some(&state) {
            return Err(format!(
                "revision {revision} holds {state:?}, but the commit in flight would have made \
                 {inflight:?}"
            ));
        }
        model.history.push(state);
    } else if revision < floor || revision > acked {
        return Err(format!(
            "reopened at revision {revision}; allowed: {floor}..={acked}{}",
            if inflight.is_some() {
                " or the one in flight"
            } else {
                ""
            }
        ));
    } else {
        let expected = &model.history[revision as usize];
        if *expected != state {
            return Err(format!(
                "revision {revision} holds {state:?}, the model has {expected:?}"
            ));
        }
        model.history.truncate(revision as usize + 1);
    }
    check_log(fs, model)
}

/// The log holds exactly the model's commits, in revision order.
fn check_log(fs: &SimFs, model: &Model) -> Result<(), String> {
    let log = log_reader::read_log(fs, Path::new(STORE)).map_err(|e| format!("read log: {e}"))?;
    if let Some(tail) = &log.damaged_tail {
        return Err(format!(
            "the log of an opened store has a damaged tail: {tail:?}"
        ));
    }
    if log.commits.len() as u64 != model.revision() {
        return Err(format!(
            "the log holds {} commits, the model {}",
            log.commits.len(),
            model.revision()
        ));
    }
    let mut state = State::new();
    for (i, commit) in log.commits.iter().enumerate() {
        let revision = i as u64 + 1;
        if commit.revision != revision {
            return Err(format!("log commit {i} has revision {}", commit.revision));
        }
        for op in &commit.ops {
            match op {
                LogOp::Put(p) => {
                    let value: i64 = rmp_value(&p.value)?;
                    state.insert(
                        (p.ns.to_string(), p.key.to_string()),
                        workload::Rec {
                            value,
                            version: p.version,
                            created: p.created,
                            modified: revision,
                        },
                    );
                }
                LogOp::Delete(d) => {
                    state.remove(&(d.ns.to_string(), d.key.to_string()));
                }
            }
        }
        if state != model.history[revision as usize] {
            return Err(format!(
                "replaying the log to revision {revision} gives {state:?}, the model has {:?}",
                model.history[revision as usize]
            ));
        }
    }
    Ok(())
}

fn rmp_value(bytes: &[u8]) -> Result<i64, String> {
    statelog::RawValue::from_msgpack(bytes.to_vec())
        .and_then(|v| v.decode::<i64>())
        .map_err(|e| format!("a logged value does not decode: {e}"))
}

fn run_seed(seed: u64, relaxed: bool) -> Result<Counts, String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let config = Config {
        relaxed,
        segment_size: [4096, 16 << 10, 64 << 20][rng.usize(0..3)],
        preallocate: [0, 4096, 64 << 10][rng.usize(0..3)],
    };
    let mut counts = Counts::default();
    let mut fs = SimFs::new();
    let mut model = Model::default();
    let mut floor = 0;
    let mut inflight: Option<State> = None;
    for epoch in 0..=EPOCHS {
        // Open, perhaps losing power during the recovery too.
        let store = loop {
            let crash_in_recovery = epoch > 0 && counts.recovery_crashes < 8 && rng.u32(0..3) == 0;
            if crash_in_recovery {
                fs.power_off_after(rng.u64(1..80));
            }
            match Store::open(STORE, options(&fs, &config)) {
                Ok(store) => break store,
                Err(e) if !fs.is_on() => {
                    let _ = e;
                    fs = fs.restart(random_loss(&mut rng));
                    counts.recovery_crashes += 1;
                }
                Err(e) => return Err(format!("epoch {epoch}: open failed: {e}")),
            }
        };
        // A replay the open kept in memory is written to the state database
        // after the open (by the background thread, or by a checkpoint); the
        // power may go then too. A checkpoint waits for it (and right after an
        // open that kept nothing, has nothing to do).
        let landed = store.checkpoint();
        if !fs.is_on() {
            // The power went after the open had finished its work: the store
            // never got to do anything; still, what it holds must be right.
            drop(store);
            fs = fs.restart(random_loss(&mut rng));
            counts.recovery_crashes += 1;
            continue;
        }
        landed.map_err(|e| format!("epoch {epoch}: the checkpoint after the open: {e}"))?;
        check_reopened(&store, &fs, &mut model, floor, inflight.take())
            .map_err(|e| format!("epoch {epoch} ({config:?}): {e}"))?;
        floor = model.revision();
        if epoch == EPOCHS {
            store.close().map_err(|e| format!("final close: {e}"))?;
            break;
        }

        let steps = rng.usize(5..40);
        if rng.u32(0..5) != 0 {
            fs.power_off_after(rng.u64(1..(steps as u64 * 3 + 20)));
        }
        let mut store = Some(store);
        for _ in 0..steps {
            let step = workload::random_step(&mut rng);
            let predicted = model.predict(&step);
            let mut reopen = || Store::open(STORE, options(&fs, &config));
            match workload::run_step(&mut store, &step, &mut model, &mut reopen) {
                Ok(Effect::Committed) => {
                    counts.commits += 1;
                    if !relaxed {
                        // Durable before acknowledged: no log file has anything
                        // unsynced when a commit returns.
                        for file in fs.files() {
                            if file.extension().is_some_and(|e| e == "log") {
                                let unsynced = fs.unsynced_changes(&file).unwrap_or(0);
                                if unsynced != 0 {
                                    return Err(format!(
                                        "{} has {unsynced} unsynced changes after an \
                                         acknowledged commit",
                                        file.display()
                                    ));
                                }
                            }
                        }
                    }
                }
                Ok(Effect::Durable) => floor = model.revision(),
                Ok(Effect::Nothing) => {}
                Err(StepError::Wrong(what)) => return Err(format!("epoch {epoch}: {what}")),
                Err(StepError::Store(e)) => {
                    if fs.is_on() {
                        return Err(format!(
                            "epoch {epoch}: {step:?} failed with the power on: {e}"
                        ));
                    }
                    inflight = predicted;
                    break;
                }
            }
        }
        // The power goes (if it has not yet); the disk keeps what it keeps.
        let survivor = fs.restart(random_loss(&mut rng));
        drop(store);
        fs = survivor;
        counts.crashes += 1;
    }
    Ok(counts)
}

fn run_many(relaxed: bool) {
    let seeds: Vec<u64> = match std::env::var("STATELOG_SEED") {
        Ok(seed) => vec![seed.parse().expect("STATELOG_SEED is a number")],
        Err(_) => {
            let base = if relaxed { 1_000_000 } else { 0 };
            (base..base + SEEDS_PER_MODE).collect()
        }
    };
    let start = std::time::Instant::now();
    let mut total = Counts::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        match run_seed(seed, relaxed) {
            Ok(counts) => {
                total.crashes += counts.crashes;
                total.recovery_crashes += counts.recovery_crashes;
                total.commits += counts.commits;
            }
            Err(e) => failures.push(format!(
                "seed {seed}: {e}\n  replay: STATELOG_SEED={seed} cargo test --test power_loss {}",
                if relaxed { "relaxed" } else { "sync" }
            )),
        }
    }
    println!(
        "{} seeds, {} power losses during workloads and {} during recovery, {} commits, {:?}",
        seeds.len(),
        total.crashes,
        total.recovery_crashes,
        total.commits,
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}

#[test]
fn sync_mode_keeps_every_acknowledged_commit_through_power_loss() {
    run_many(false);
}

#[test]
fn relaxed_mode_comes_back_at_a_prefix_after_power_loss() {
    run_many(true);
}

/// Several threads commit at once, so batches of several commits share one
/// write and one sync (group commit); the power goes at a random operation.
/// Each thread writes its own pair of keys in transactions, counting up, so
/// after reopening: with `Sync`, each pair holds the thread's last
/// acknowledged count or the one in flight; with `Relaxed` (background sync
/// every millisecond), any count up to that, as long as the log is a prefix;
/// always both keys of a pair agree (no transaction partly visible), the
/// revision is the number of commits, and the log replays to the state. Thread
/// timing makes a seed replay only approximately.
fn group_commit_run(seed: u64, relaxed: bool) -> Result<u64, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    const THREADS: usize = 4;
    let mut rng = fastrand::Rng::with_seed(seed);
    let config = Config {
        relaxed,
        segment_size: [4096, 64 << 20][rng.usize(0..2)],
        preallocate: [0, 4096, 64 << 10][rng.usize(0..3)],
    };
    let fs = SimFs::new();
    let mut opts = options(&fs, &config);
    if relaxed {
        opts = opts.durability(Durability::Relaxed {
            max_delay: Duration::from_millis(1),
        });
    }
    let store = Store::open(STORE, opts).map_err(|e| format!("open: {e}"))?;
    fs.power_off_after(rng.u64(10..600));
    let acked: Vec<AtomicU64> = (0..THREADS).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|scope| {
        for (t, acked) in acked.iter().enumerate() {
            let store = store.clone();
            scope.spawn(move || {
                for i in 1..=60u64 {
                    let done = store.transaction(|tx| {
                        tx.put("w", &format!("a{t}"), &i)?;
                        tx.put("w", &format!("b{t}"), &i)
                    });
                    if done.is_err() {
                        break;
                    }
                    acked.store(i, Ordering::Release);
                }
            });
        }
    });
    let survivor = fs.restart(random_loss(&mut rng));
    drop(store);
    let store = Store::open(STORE, options(&survivor, &config))
        .map_err(|e| format!("reopen ({config:?}): {e}"))?;
    let mut total = 0;
    for (t, acked) in acked.iter().enumerate() {
        let acked = acked.load(Ordering::Acquire);
        let get = |key: String| -> Result<(u64, u64), String> {
            Ok(store
                .get::<u64>("w", &key)
                .map_err(|e| e.to_string())?
                .map_or((0, 0), |r| (r.value, r.version)))
        };
        let (a, version) = get(format!("a{t}"))?;
        let (b, _) = get(format!("b{t}"))?;
        if a != b || version != a {
            return Err(format!("thread {t}: a = {a} (version {version}), b = {b}"));
        }
        if a > acked + 1 || (!relaxed && a < acked) {
            return Err(format!("thread {t}: holds {a}, acknowledged {acked}"));
        }
        total += a;
    }
    if store.revision() != total {
        return Err(format!(
            "revision {} but {total} commits are visible",
            store.revision()
        ));
    }
    let log = log_reader::read_log(&survivor, Path::new(STORE)).map_err(|e| e.to_string())?;
    let mut last = [0u64; THREADS];
    for (i, commit) in log.commits.iter().enumerate() {
        if commit.revision != i as u64 + 1 || commit.ops.len() != 2 {
            return Err(format!("log commit {i}: {commit:?}"));
        }
        let LogOp::Put(p) = &commit.ops[0] else {
            return Err(format!("log commit {i}: {commit:?}"));
        };
        let t: usize = p.key[1..].parse().map_err(|_| "a key")?;
        let value: i64 = rmp_value(&p.value)?;
        if value as u64 != last[t] + 1 {
            return Err(format!("thread {t} wrote {value} after {}", last[t]));
        }
        last[t] += 1;
    }
    if log.commits.len() as u64 != total {
        return Err(format!(
            "the log has {} commits, the store {total}",
            log.commits.len()
        ));
    }
    store.close().map_err(|e| e.to_string())?;
    Ok(total)
}

fn group_commit_many(relaxed: bool) {
    let seeds: Vec<u64> = match std::env::var("STATELOG_SEED") {
        Ok(seed) => vec![seed.parse().expect("STATELOG_SEED is a number")],
        Err(_) => (0..120)
            .map(|i| i + if relaxed { 5_000_000 } else { 4_000_000 })
            .collect(),
    };
    let mut failures = Vec::new();
    let mut commits = 0;
    for &seed in &seeds {
        match group_commit_run(seed, relaxed) {
            Ok(n) => commits += n,
            Err(e) => failures.push(format!(
                "seed {seed}: {e}\n  replay (approximately, threads race): \
                 STATELOG_SEED={seed} cargo test --test power_loss group_commit"
            )),
        }
    }
    println!(
        "{} group-commit power losses, {commits} commits kept",
        seeds.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn group_commit_sync_keeps_every_acknowledged_commit_through_power_loss() {
    group_commit_many(false);
}

#[test]
fn group_commit_relaxed_comes_back_at_a_prefix_after_power_loss() {
    group_commit_many(true);
}
