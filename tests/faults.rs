//! Fault injection: a disk that fails a write or a sync or fills up, and files
//! damaged on purpose. Every case ends in a clear error or a correct recovery,
//! never in a silently wrong state.
//!
//! Most tests run on the test kit's simulated file system (cheap, and a crash
//! can be simulated exactly); the basic disk faults also run on the real one.
//! `tests/recovery.rs` has the torn tail at every byte of the last record, a
//! zero-filled tail, and a flipped byte anywhere in a middle record, on real
//! files after a killed process.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::workload::{self, Effect, Model, State, StepError};
use statelog::testkit::faults::{Fault, FaultyFs, Op, Rule, Target};
use statelog::testkit::sim::{Loss, SimFs};
use statelog::testkit::{Fs, RealFs, log_reader};
use statelog::{CheckpointPolicy, Durability, Error, Options, Store};

const STORE: &str = "/data/store";

fn quiet(options: Options) -> Options {
    options
        .cache_size(1 << 20)
        .lock_timeout(Duration::ZERO)
        .checkpoint(CheckpointPolicy::manual())
}

fn on(fs: Arc<dyn Fs>) -> Options {
    quiet(Options::default().file_system(fs))
}

fn relaxed(options: Options) -> Options {
    options.durability(Durability::Relaxed {
        max_delay: Duration::from_secs(3600),
    })
}

fn is_poisoned(e: &Error) -> bool {
    matches!(e, Error::Poisoned { .. })
}

fn value(store: &Store, key: &str) -> Option<u64> {
    store.get::<u64>("r", key).unwrap().map(|r| r.value)
}

// ---------------------------------------------------------------------------
// A disk that fails.

/// A store on the real disk, through a file system that fails on request.
fn on_a_faulty_disk() -> (tempfile::TempDir, FaultyFs, Options, Store) {
    let dir = common::store_dir();
    let faulty = FaultyFs::new(Arc::new(RealFs));
    let options = on(Arc::new(faulty.clone()));
    let store = Store::open(dir.path(), options.clone()).unwrap();
    (dir, faulty, options, store)
}

#[test]
fn a_failed_log_sync_refuses_writes_until_reopened_and_loses_nothing_acknowledged() {
    let (dir, faulty, options, store) = on_a_faulty_disk();
    for i in 0..5u64 {
        store.put("r", &format!("k{i}"), &i).unwrap();
    }
    faulty.inject(Rule::new(Target::Log, Op::Sync, Fault::Eio).times(1));
    let err = store.put("r", "k5", &5u64).unwrap_err();
    assert!(matches!(&err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("sync"), "{err}");
    // The disk works again, but the store does not trust it until reopened.
    assert_eq!(faulty.injected(), 1);
    let err = store.put("r", "k6", &6u64).unwrap_err();
    assert!(is_poisoned(&err), "{err}");
    assert!(err.to_string().contains("reopen"), "{err}");
    assert!(is_poisoned(&store.checkpoint().unwrap_err()));
    assert!(store.transaction(|tx| tx.put("r", "x", &1)).is_err());
    // Reads go on, and never show the commit whose sync failed (the state
    // database applied it while the sync ran, but it was never published).
    assert_eq!(value(&store, "k4"), Some(4));
    assert_eq!(value(&store, "k5"), None);
    assert_eq!(store.revision(), 5);
    assert_eq!(store.read(|snap| snap.revision()).unwrap(), 5);
    store.close().unwrap();

    let store = Store::open(dir.path(), options).unwrap();
    for i in 0..5u64 {
        assert_eq!(value(&store, &format!("k{i}")), Some(i));
    }
    // The failed commit's outcome was unknown; the log decides (here the bytes
    // reached the page cache, so it is there).
    assert!(store.revision() == 5 || store.revision() == 6);
    let next = store.put("r", "k7", &7u64).unwrap();
    assert_eq!(next.revision, store.revision());
}

#[test]
fn after_a_failed_log_sync_or_write_drops_the_held_writes_the_past_is_refused_until_reopened() {
    for op in [Op::Sync, Op::Write] {
        a_failure_drops_the_held_writes(op);
    }
}

fn a_failure_drops_the_held_writes(op: Op) {
    let (dir, faulty, options, store) = on_a_faulty_disk();
    // Held in the engine's open write of the state database, not yet in it.
    for i in 0..5u64 {
        store.put("r", "k", &i).unwrap();
    }
    assert_eq!(
        store
            .snapshot_at_revision(2)
            .unwrap()
            .get::<u64>("r", "k")
            .unwrap()
            .unwrap()
            .value,
        1
    );
    for i in 5..8u64 {
        store.put("r", "k", &i).unwrap();
    }
    faulty.inject(Rule::new(Target::Log, op, Fault::Eio).times(1));
    store.put("r", "k", &8u64).unwrap_err();
    // The state database lacks revisions 6 to 8 (the failure dropped the
    // write holding them): the past is refused rather than read wrong...
    let err = store.snapshot_at_revision(7).unwrap_err();
    assert!(is_poisoned(&err), "{op:?}: {err}");
    assert!(err.to_string().contains("reopen"), "{err}");
    // ... while the present still shows every acknowledged commit.
    assert_eq!(value(&store, "k"), Some(7));
    store.close().unwrap();
    let store = Store::open(dir.path(), options).unwrap();
    let then = store.snapshot_at_revision(7).unwrap();
    assert_eq!(then.get::<u64>("r", "k").unwrap().unwrap().value, 6);
}

#[test]
fn a_failed_log_write_leaves_a_partial_frame_that_reopening_cuts() {
    let (dir, faulty, options, store) = on_a_faulty_disk();
    for i in 0..5u64 {
        store.put("r", &format!("k{i}"), &i).unwrap();
    }
    faulty.inject(Rule::new(Target::Log, Op::Write, Fault::Short).times(1));
    let err = store
        .put("r", "k5", &"a value long enough to be torn")
        .unwrap_err();
    assert!(matches!(&err, Error::Io { .. }), "{err}");
    assert!(is_poisoned(&store.put("r", "k6", &6u64).unwrap_err()));
    drop(store);

    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(store.revision(), 5);
    let cut = store
        .recovery()
        .cut
        .clone()
        .expect("the partial frame was cut");
    assert!(cut.bytes > 0, "{cut:?}");
    assert_eq!(value(&store, "k5"), None);
    assert_eq!(store.put("r", "k5", &5u64).unwrap().revision, 6);
}

#[test]
fn a_full_disk_fails_cleanly_and_the_store_works_again_once_space_is_freed() {
    for preallocate in [0, 4096] {
        let faulty = FaultyFs::new(Arc::new(SimFs::new()));
        let options = on(Arc::new(faulty.clone())).preallocate(preallocate);
        let store = Store::open(STORE, options.clone()).unwrap();
        store.put("r", "first", &0u64).unwrap();
        faulty.set_free_space(Some(6000));
        let mut acked = 1;
        let err = loop {
            match store.put("r", &format!("k{acked}"), &acked) {
                Ok(c) => {
                    acked += 1;
                    assert_eq!(c.revision, acked);
                }
                Err(e) => break e,
            }
            assert!(acked < 1000, "the disk never filled");
        };
        let text = format!("{err}: {:?}", std::error::Error::source(&err));
        assert!(text.contains("space") || text.contains("full"), "{text}");
        let again = store.put("r", "more", &1).unwrap_err();
        assert!(is_poisoned(&again), "{text} / {again}");
        drop(store);

        // Still full: opening either works (nothing to write) or fails cleanly.
        match Store::open(STORE, options.clone()) {
            Ok(store) => assert!(store.revision() >= acked),
            Err(e) => assert!(
                matches!(e, Error::Io { .. } | Error::Database { .. }),
                "{e}"
            ),
        }
        faulty.clear();
        let store = Store::open(STORE, options.clone()).unwrap();
        assert!(store.revision() == acked || store.revision() == acked + 1);
        assert_eq!(value(&store, "first"), Some(0));
        for i in 1..acked {
            assert_eq!(
                value(&store, &format!("k{i}")),
                Some(i),
                "preallocate {preallocate}"
            );
        }
        store.put("r", "after", &1).unwrap();
        store.close().unwrap();
    }
}

#[test]
fn a_failed_checkpoint_is_replayed_from_the_log() {
    let faulty = FaultyFs::new(Arc::new(SimFs::new()));
    let options = on(Arc::new(faulty.clone()));
    let store = Store::open(STORE, options.clone()).unwrap();
    for i in 0..10u64 {
        store.put("r", &format!("k{i}"), &i).unwrap();
    }
    faulty.inject(Rule::new(Target::Db, Op::Sync, Fault::Eio).times(1));
    let err = store.checkpoint().unwrap_err();
    assert!(matches!(&err, Error::Database { .. }), "{err}");
    assert!(is_poisoned(&store.put("r", "x", &1).unwrap_err()));
    drop(store);
    let store = Store::open(STORE, options).unwrap();
    assert_eq!(store.revision(), 10);
    assert_eq!(value(&store, "k9"), Some(9));
}

/// The fsync lesson in relaxed mode: after a failed log sync, the state
/// database holds commits whose log records may never reach the disk. Closing
/// the store must not make them durable there, or a power loss would leave
/// the state database ahead of the log.
#[test]
fn a_poisoned_relaxed_store_never_makes_the_state_database_outrun_the_log() {
    for how in ["checkpoint", "close"] {
        let sim = SimFs::new();
        let faulty = FaultyFs::new(Arc::new(sim.clone()));
        let options = relaxed(on(Arc::new(faulty.clone())));
        let store = Store::open(STORE, options.clone()).unwrap();
        for i in 0..5u64 {
            store.put("r", &format!("k{i}"), &i).unwrap();
        }
        store.checkpoint().unwrap();
        for i in 5..12u64 {
            store.put("r", &format!("k{i}"), &i).unwrap();
        }
        faulty.inject(Rule::new(Target::Log, Op::Sync, Fault::Eio));
        if how == "checkpoint" {
            assert!(store.checkpoint().is_err());
            drop(store);
        } else {
            assert!(store.close().is_err());
        }
        // The power goes; nothing unsynced survives.
        let fs = sim.restart(Loss::Everything);
        let store = Store::open(STORE, on(Arc::new(fs))).unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(store.revision(), 5, "{how}");
        assert_eq!(value(&store, "k4"), Some(4));
        assert_eq!(value(&store, "k5"), None);
    }
}

/// Every fault the disk can produce, at every point of a workload: each write,
/// sync, size change, creation, rename and directory sync of the log,
/// the state database and the other files fails once (with EIO, ENOSPC, or a
/// short write), in both durability modes, and is sometimes followed by a power
/// loss. The store answers with an error; a poisoned store refuses commits;
/// after the fault is gone it reopens holding every acknowledged commit (in
/// relaxed mode: a prefix back to the last durable point), and works.
#[test]
fn every_fault_at_every_point_of_a_workload_ends_in_an_error_or_a_correct_store() {
    let kinds = [
        (Target::Log, Op::Write, Fault::Short),
        (Target::Log, Op::Write, Fault::NoSpace),
        (Target::Log, Op::Sync, Fault::Eio),
        (Target::Log, Op::SetLen, Fault::NoSpace),
        (Target::Log, Op::SetLen, Fault::Eio),
        (Target::Log, Op::Create, Fault::Eio),
        (Target::Log, Op::Rename, Fault::Eio),
        (Target::Db, Op::Write, Fault::Eio),
        (Target::Db, Op::Write, Fault::Short),
        (Target::Db, Op::Sync, Fault::Eio),
        (Target::Db, Op::SetLen, Fault::NoSpace),
        (Target::Other, Op::Write, Fault::NoSpace),
        (Target::Other, Op::Sync, Fault::Eio),
        (Target::Other, Op::SyncDir, Fault::Eio),
        (Target::Other, Op::Rename, Fault::Eio),
    ];
    let mut cases = 0;
    let mut injected = 0;
    let mut failures = Vec::new();
    for relaxed_mode in [false, true] {
        for (target, op, fault) in kinds {
            // A dry run counts the matching operations.
            let total = run_with_fault(relaxed_mode, None, 0)
                .map(|faulty| faulty.seen(target, op))
                .unwrap_or_else(|e| panic!("the dry run failed: {e}"));
            let points: Vec<u64> = if total <= 40 {
                (0..total).collect()
            } else {
                (0..40).map(|i| i * total / 40).collect()
            };
            assert!(total > 0, "the workload never does {op:?} on {target:?}");
            for skip in points {
                cases += 1;
                let rule = Rule::new(target, op, fault).skip(skip).times(1);
                match run_with_fault(relaxed_mode, Some(rule), cases) {
                    Ok(faulty) => injected += faulty.injected(),
                    Err(e) => failures.push(format!(
                        "{rule:?} (relaxed: {relaxed_mode}): {e}\n  replay with this rule in \
                         run_with_fault, case {cases}"
                    )),
                }
            }
        }
    }
    println!("{cases} fault points, {injected} faults injected");
    assert_eq!(injected, cases, "every fault point injects its fault");
    assert!(
        failures.is_empty(),
        "{} of {cases} fault points failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs a fixed workload with one fault rule; returns the fault injector of the
/// (first) run for its counts.
fn run_with_fault(relaxed_mode: bool, rule: Option<Rule>, case: u64) -> Result<FaultyFs, String> {
    let sim = SimFs::new();
    let faulty = FaultyFs::new(Arc::new(sim.clone()));
    let mut options = on(Arc::new(faulty.clone()))
        .segment_size(4096)
        .preallocate(4096);
    if relaxed_mode {
        options = relaxed(options);
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let mut model = Model::default();
    let mut floor = 0;
    if let Some(rule) = rule {
        faulty.inject(rule);
    }
    let mut store = match Store::open(STORE, options.clone()) {
        Ok(store) => Some(store),
        Err(e) if faulty.injected() > 0 => {
            // A fault while creating the store: a clean error; once the disk
            // works it opens, empty.
            let _ = e;
            faulty.clear();
            let store = Store::open(STORE, options.clone()).map_err(|e| format!("reopen: {e}"))?;
            return check_state(&store, &model, 0, None).map(|()| faulty);
        }
        Err(e) => return Err(format!("open: {e}")),
    };
    let mut inflight = None;
    let mut failed = None;
    for _ in 0..60 {
        let step = workload::random_step(&mut rng);
        let predicted = model.predict(&step);
        let mut reopen = || Store::open(STORE, options.clone());
        match workload::run_step(&mut store, &step, &mut model, &mut reopen) {
            Ok(Effect::Durable) => floor = model.revision(),
            Ok(_) => {}
            Err(StepError::Wrong(w)) => return Err(w),
            Err(StepError::Store(e)) => {
                if faulty.injected() == 0 {
                    return Err(format!("{step:?} failed with no fault injected: {e}"));
                }
                inflight = predicted;
                failed = Some(e);
                break;
            }
        }
    }
    if let (Some(e), Some(handle)) = (&failed, &store) {
        // A failed commit or checkpoint poisons the handle: it refuses commits
        // until reopened, even though the disk works again. (A disk that was
        // full while the store opened made it read-only: the same.)
        match handle.put("jobs", "probe", &1) {
            Err(probe) if is_poisoned(&probe) || matches!(probe, Error::ReadOnly { .. }) => {}
            other => {
                return Err(format!(
                    "after {e}, a commit was answered with {other:?} instead of Poisoned"
                ));
            }
        }
    }
    drop(store);
    faulty.clear();
    // Sometimes the power goes too.
    let fs: Arc<dyn Fs> = match case % 3 {
        0 => Arc::new(sim.restart(Loss::Random(case))),
        1 => Arc::new(sim.restart(Loss::Everything)),
        _ => Arc::new(faulty.clone()),
    };
    let lost_power = case % 3 != 2;
    let mut reopened = options.clone().file_system(fs);
    if relaxed_mode {
        reopened = relaxed(reopened);
    }
    let store = Store::open(STORE, reopened).map_err(|e| format!("reopen: {e}"))?;
    let floor = if relaxed_mode && lost_power {
        floor
    } else {
        model.revision()
    };
    check_state(&store, &model, floor, inflight)?;
    let next = store
        .put("jobs", "after", &1)
        .map_err(|e| format!("a commit after reopening: {e}"))?;
    if next.revision != store.revision() {
        return Err("the revision did not move".into());
    }
    store.close().map_err(|e| format!("close: {e}"))?;
    Ok(faulty)
}

fn check_state(
    store: &Store,
    model: &Model,
    floor: u64,
    inflight: Option<State>,
) -> Result<(), String> {
    let (revision, state) = workload::read_state(store).map_err(|e| e.to_string())?;
    let acked = model.revision();
    let ok = if revision == acked + 1 {
        inflight.as_ref() == Some(&state)
    } else {
        revision >= floor && revision <= acked && model.history[revision as usize] == state
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "reopened at revision {revision} holding {state:?}; allowed {floor}..={acked}{}",
            if inflight.is_some() {
                " or the one in flight"
            } else {
                ""
            }
        ))
    }
}

/// A commit of a few MiB grows the log by whole steps without writing zeros
/// under itself first (a bulk load wrote every byte twice), and reads back
/// after a reopen; the segment stays a whole number of steps.
#[test]
fn a_large_commit_grows_the_log_without_zeros_under_it() {
    const STEP: u64 = 4 << 20;
    let dir = common::store_dir();
    let faulty = FaultyFs::new(Arc::new(RealFs));
    let options = on(Arc::new(faulty.clone())).preallocate(STEP);
    let store = Store::open(dir.path(), options).unwrap();
    let big = |round: usize, i: usize| format!("{round}-{i}-{}", "x".repeat(64 << 10));
    let load = |round: usize| {
        store
            .transaction(|tx| {
                for i in 0..40 {
                    tx.put("big", &format!("{round}/{i}"), &big(round, i))?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
    };
    // The first 2.5 MiB fit in the segment's first step; the second pass
    // needs a second step.
    load(0);
    let (writes, set_lens) = (
        faulty.seen(Target::Log, Op::Write),
        faulty.seen(Target::Log, Op::SetLen),
    );
    load(1);
    let writes = faulty.seen(Target::Log, Op::Write) - writes;
    let set_lens = faulty.seen(Target::Log, Op::SetLen) - set_lens;
    // Zero-filling the step would have taken 64 writes of 64 KiB.
    assert!(writes < 8, "{writes} writes to the log for one commit");
    assert_eq!(set_lens, 1, "the segment grew by a step");
    drop(store);

    let log = dir.path().join("log");
    for entry in std::fs::read_dir(&log).unwrap() {
        let path = entry.unwrap().path();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len % STEP, 0, "{} is {len} bytes", path.display());
    }
    let store = Store::open(dir.path(), quiet(Options::default())).unwrap();
    for round in 0..2 {
        for i in 0..40 {
            let got = store
                .get::<String>("big", &format!("{round}/{i}"))
                .unwrap()
                .map(|r| r.value);
            assert_eq!(got, Some(big(round, i)), "big/{round}/{i}");
        }
    }
}

// ---------------------------------------------------------------------------
// Damaged files.

/// A store on the simulated disk with `commits` puts of `r/k{i}` (value i),
/// the last checkpoint after `checkpoint_at` of them, left as a crash leaves it
/// (nothing lost). Tiny segments when `small_segments`.
fn crashed_store(commits: u64, checkpoint_at: u64, options: impl Fn(&SimFs) -> Options) -> SimFs {
    let fs = SimFs::new();
    let store = Store::open(STORE, options(&fs)).unwrap();
    for i in 0..commits {
        store.put("r", &format!("k{i:02}"), &i).unwrap();
        if i + 1 == checkpoint_at {
            store.checkpoint().unwrap();
        }
    }
    let crashed = fs.restart(Loss::Nothing);
    drop(store);
    crashed
}

fn sim(fs: &SimFs) -> Options {
    on(Arc::new(fs.clone()))
}

fn segments(fs: &SimFs) -> Vec<PathBuf> {
    fs.files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

/// Everything but the lock file and the state database, to check that a
/// refused open changed nothing.
fn log_files(fs: &SimFs) -> Vec<(PathBuf, Vec<u8>)> {
    fs.files()
        .into_iter()
        .filter(|p| !p.ends_with("LOCK") && !p.ends_with("state.redb"))
        .map(|p| {
            let bytes = fs.read_file(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn expect_corrupt(fs: &SimFs, file: &Path, offset: Option<u64>, says: &str) -> String {
    let before = log_files(fs);
    let err = Store::open(STORE, sim(fs)).unwrap_err();
    match &err {
        Error::Corrupt {
            file: f, offset: o, ..
        } => {
            assert_eq!(f, file, "{err}");
            if let Some(offset) = offset {
                assert_eq!(*o, offset, "{err}");
            }
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(err.to_string().contains(says), "{err}");
    assert_eq!(log_files(fs), before, "a refused open changed the log");
    err.to_string()
}

#[test]
fn a_bit_flip_in_each_field_of_a_middle_frame_is_reported_and_in_the_last_frame_cut() {
    let base = crashed_store(10, 2, sim);
    let segment = segments(&base).pop().unwrap();
    let bytes = base.read_file(&segment).unwrap();
    let frames = log_reader::frame_spans(&bytes);
    assert_eq!(frames.len(), 10);
    // len, crc, hcrc, first payload byte, a middle one, the last one.
    let fields = |(start, end): (usize, usize)| {
        [
            start,
            start + 4,
            start + 8,
            start + 12,
            (start + end) / 2,
            end - 1,
        ]
    };
    for at in fields(frames[5]) {
        for bit in [0, 7] {
            let fs = base.duplicate();
            let mut damaged = bytes.clone();
            damaged[at] ^= 1 << bit;
            fs.write_file(&segment, &damaged).unwrap();
            expect_corrupt(&fs, &segment, Some(frames[5].0 as u64), "not a torn write");
        }
    }
    // Damage in the last write looks exactly like a torn write: it is cut (and
    // saved beside the segment), and the store opens before it.
    for at in fields(frames[9]) {
        let fs = base.duplicate();
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        fs.write_file(&segment, &damaged).unwrap();
        let store = Store::open(STORE, sim(&fs)).unwrap();
        assert_eq!(store.revision(), 9, "flip at {at}");
        let cut = store.recovery().cut.clone().unwrap();
        assert_eq!(cut.offset, frames[9].0 as u64);
        assert_eq!(
            fs.read_file(&cut.saved_to).unwrap(),
            &damaged[frames[9].0..frames[9].1]
        );
    }
}

#[test]
fn damage_among_commits_that_were_never_synced_is_a_torn_tail() {
    // Relaxed mode: commits 3..=10 were acknowledged but not yet synced when
    // the power went; the disk kept some of their blocks and lost others. No
    // record after the damage was written after revision 6 was synced, so
    // the tail from revision 6 is torn, not damaged: the store opens at 5.
    let base = crashed_store(10, 2, |fs| relaxed(sim(fs)));
    let segment = segments(&base).pop().unwrap();
    let bytes = base.read_file(&segment).unwrap();
    let frames = log_reader::frame_spans(&bytes);
    for hole in [
        [frames[5].0, frames[5].0 + 12],
        [frames[5].0 + 20, frames[5].1],
    ] {
        let fs = base.duplicate();
        let mut damaged = bytes.clone();
        damaged[hole[0]..hole[1]].fill(0);
        fs.write_file(&segment, &damaged).unwrap();
        let store = Store::open(STORE, relaxed(sim(&fs))).unwrap();
        assert_eq!(store.revision(), 5);
        assert_eq!(value(&store, "k04"), Some(4));
        assert_eq!(value(&store, "k05"), None);
        let cut = store.recovery().cut.clone().unwrap();
        assert_eq!(cut.offset, frames[5].0 as u64);
        drop(store);
        // The cut is final: the log now ends cleanly at revision 5.
        let log = log_reader::read_log(&fs, Path::new(STORE)).unwrap();
        assert_eq!(log.commits.len(), 5);
        assert_eq!(log.damaged_tail, None);
    }
    // The same damage where every commit was synced on its own is reported.
    let base = crashed_store(10, 2, sim);
    let bytes = base.read_file(&segment).unwrap();
    let frames = log_reader::frame_spans(&bytes);
    let fs = base.duplicate();
    let mut damaged = bytes.clone();
    damaged[frames[5].0 + 20..frames[5].1].fill(0);
    fs.write_file(&segment, &damaged).unwrap();
    expect_corrupt(&fs, &segment, Some(frames[5].0 as u64), "not a torn write");
}

#[test]
fn a_torn_commit_of_several_frames_is_cut_even_when_its_later_frames_are_intact() {
    // A commit larger than a frame part (4 MiB) is written in one write of
    // several frames, all unsynced until the write completes: losing a block
    // of its first frame while the later ones reached the disk is a torn write.
    let fs = SimFs::new();
    let store = Store::open(STORE, sim(&fs)).unwrap();
    store.put("r", "small", &1).unwrap();
    let big = "x".repeat(3 << 20);
    store
        .transaction(|tx| {
            tx.put("r", "big1", &big)?;
            tx.put("r", "big2", &big)
        })
        .unwrap();
    let fs = fs.restart(Loss::Nothing);
    drop(store);
    let segment = segments(&fs).pop().unwrap();
    let bytes = fs.read_file(&segment).unwrap();
    let frames = log_reader::frame_spans(&bytes);
    assert_eq!(frames.len(), 3, "the big commit takes two frames");
    let mut damaged = bytes.clone();
    damaged[frames[1].0 + 4096..frames[1].0 + 8192].fill(0);
    fs.write_file(&segment, &damaged).unwrap();
    let store = Store::open(STORE, sim(&fs)).unwrap();
    assert_eq!(store.revision(), 1);
    assert!(store.get::<String>("r", "big2").unwrap().is_none());
    assert_eq!(
        store.recovery().cut.as_ref().unwrap().offset,
        frames[1].0 as u64
    );
}

#[test]
fn a_flip_anywhere_in_a_segment_header_is_reported() {
    let base = crashed_store(150, 5, |fs| sim(fs).segment_size(4096).preallocate(0));
    let segs = segments(&base);
    assert!(segs.len() >= 3, "{segs:?}");
    for segment in [&segs[0], &segs[1], segs.last().unwrap()] {
        let bytes = base.read_file(segment).unwrap();
        for at in 0..64 {
            let fs = base.duplicate();
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x04;
            fs.write_file(segment, &damaged).unwrap();
            expect_corrupt(&fs, segment, Some(0), "segment");
        }
    }
}

#[test]
fn a_missing_reordered_or_foreign_segment_is_reported() {
    let base = crashed_store(200, 5, |fs| sim(fs).segment_size(4096).preallocate(0));
    let segs = segments(&base);
    assert!(segs.len() >= 4, "{segs:?}");

    // Missing in the middle: the next segment's back-link shows it.
    let fs = base.duplicate();
    fs.remove_file_durably(&segs[1]).unwrap();
    expect_corrupt(&fs, &segs[2], Some(36), "missing or out of place");

    // Two segments swapped (each under the other's name).
    let fs = base.duplicate();
    let (a, b) = (
        base.read_file(&segs[1]).unwrap(),
        base.read_file(&segs[2]).unwrap(),
    );
    fs.write_file(&segs[1], &b).unwrap();
    fs.write_file(&segs[2], &a).unwrap();
    expect_corrupt(&fs, &segs[1], Some(28), "renamed or copied");

    // A segment of another store among ours.
    let other = crashed_store(3, 0, sim);
    let foreign = other.read_file(&segments(&other)[0]).unwrap();
    let fs = base.duplicate();
    let name = segs[1].with_file_name("00000000000000000002.log");
    fs.write_file(&name, &foreign).unwrap();
    expect_corrupt(&fs, &name, Some(12), "another store");
}

#[test]
fn a_state_database_rolled_back_to_an_older_checkpoint_catches_up_from_the_log() {
    let fs = SimFs::new();
    let options = sim(&fs).segment_size(4096).preallocate(0);
    let db = Path::new(STORE).join("state.redb");
    let store = Store::open(STORE, options.clone()).unwrap();
    let empty = fs.read_file(&db).unwrap();
    for i in 0..20u64 {
        store.put("r", &format!("k{i:02}"), &i).unwrap();
    }
    store.checkpoint().unwrap();
    let old = fs.read_file(&db).unwrap();
    for i in 20..60u64 {
        store.put("r", &format!("k{i:02}"), &i).unwrap();
        store.delete("r", &format!("k{:02}", i - 20)).unwrap();
    }
    store.close().unwrap();
    for (what, image) in [("checkpoint at 20", &old), ("new store", &empty)] {
        let fs = fs.duplicate();
        fs.write_file(&db, image).unwrap();
        let store = Store::open(STORE, sim(&fs).segment_size(4096).preallocate(0))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(store.revision(), 100, "{what}");
        assert!(store.recovery().replayed > 0, "{what}");
        for i in 0..60u64 {
            let expected = (i >= 40).then_some(i);
            assert_eq!(value(&store, &format!("k{i:02}")), expected, "{what}");
        }
    }
}

#[test]
fn a_damaged_state_database_is_reported_with_how_to_rebuild_it() {
    let fs = SimFs::new();
    let store = Store::open(STORE, sim(&fs)).unwrap();
    for i in 0..50u64 {
        store.put("r", &format!("k{i:02}"), &i).unwrap();
    }
    store.close().unwrap();
    let db = Path::new(STORE).join("state.redb");
    let bytes = fs.read_file(&db).unwrap();
    // The header and its commit slots.
    for (from, to) in [(0, 512), (0, 64), (64, 512)] {
        let fs = fs.duplicate();
        let mut damaged = bytes.clone();
        for b in &mut damaged[from..to] {
            *b ^= 0x5a;
        }
        fs.write_file(&db, &damaged).unwrap();
        let err = Store::open(STORE, sim(&fs)).unwrap_err();
        assert!(
            err.to_string().contains("statelog repair"),
            "{from}..{to}: {err}"
        );
    }
    // A truncated file.
    let fs = fs.duplicate();
    fs.write_file(&db, &bytes[..bytes.len() / 3]).unwrap();
    let err = Store::open(STORE, sim(&fs)).unwrap_err();
    assert!(err.to_string().contains("statelog repair"), "{err}");
    // No file at all.
    fs.remove_file_durably(&db).unwrap();
    let err = Store::open(STORE, sim(&fs)).unwrap_err();
    assert!(err.to_string().contains("statelog repair"), "{err}");
}

#[test]
fn verify_on_open_catches_damage_inside_the_state_database() {
    let fs = SimFs::new();
    let store = Store::open(STORE, sim(&fs)).unwrap();
    for i in 0..200u64 {
        store.put("r", &format!("k{i:03}"), &vec![i; 8]).unwrap();
    }
    store.close().unwrap();
    let db = Path::new(STORE).join("state.redb");
    let bytes = fs.read_file(&db).unwrap();
    let mut caught = 0;
    // One flipped byte in the middle of every page after the header.
    for page in (4096..bytes.len()).step_by(4096) {
        let fs = fs.duplicate();
        let mut damaged = bytes.clone();
        damaged[page + 2048] ^= 0x01;
        fs.write_file(&db, &damaged).unwrap();
        match Store::open(STORE, sim(&fs).verify_on_open(true)) {
            Err(e) => {
                assert!(
                    e.to_string().contains("statelog repair"),
                    "page {page}: {e}"
                );
                caught += 1;
            }
            // A flip in unused space harms nothing: every record reads back.
            Ok(store) => {
                for i in 0..200u64 {
                    let record = store.get::<Vec<u64>>("r", &format!("k{i:03}")).unwrap();
                    assert_eq!(record.unwrap().value, vec![i; 8], "page {page}");
                }
            }
        }
    }
    assert!(caught > 0, "no damaged page was noticed");
}
