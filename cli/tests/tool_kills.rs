//! The recovery tools and the restoring import killed with SIGKILL at random
//! moments: `statelog import --mode restore`, `repair`, `compact`, `backup`
//! and `check` run as real processes (the built binary), each killed after a
//! random part of the time an uninterrupted run takes. After every kill:
//!
//! - `check` passes only a store that opens (and a kill of these tools leaves
//!   nothing for it to find: the store opens, and check passes);
//! - a restoring import left the empty store or the whole import, never
//!   anything between;
//! - compact left the state as it was; a backup run left the store alone and
//!   the backup as it was or complete (the next run completes it);
//! - repair, run again, finishes the job;
//! - a killed check left no scratch directory behind once the next check ran.
//!
//! `STATELOG_KILL_SEED=<n>` fixes the kill delays (printed by every run; the
//! timing of the processes still varies).

// The helpers of the library's backup tests, shared rather than copied.
#[path = "../../tests/backup_common/mod.rs"]
mod backup_common;
#[path = "cli/mod.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backup_common::{Dump, copy_dir, dump, dump_path, temp_dir};
use cli::BIN;
use statelog::backup::{RestoreOptions, restore};
use statelog::maintenance::{CheckOptions, RepairOptions, check, check_backup, repair};
use statelog::{CheckpointPolicy, Error, Options, Store};

const KILLS: usize = 8;

fn seed(test: &str) -> u64 {
    let seed = std::env::var("STATELOG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("{test}: STATELOG_KILL_SEED={seed}");
    seed
}

/// A command running the binary on the store `store`.
fn statelog(store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--store")
        .arg(store)
        .arg("--quiet")
        .args(args)
        .env_remove("STATELOG_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs `cmd` to the end; returns how long it took.
fn timed(cmd: Command) -> Duration {
    timed_after(cmd, None).0
}

/// Runs `cmd` to the end; returns how long it took, and how long it ran after
/// `file` appeared (if it did).
fn timed_after(mut cmd: Command, file: Option<&Path>) -> (Duration, Duration) {
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn statelog");
    let mut appeared = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if appeared.is_none() && file.is_some_and(Path::exists) {
            appeared = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    assert!(status.success(), "an uninterrupted run failed: {status}");
    let tail = appeared.map_or(Duration::ZERO, |at| at.elapsed());
    (started.elapsed(), tail)
}

/// Runs `cmd` and kills it with SIGKILL `delay` after it started, or after
/// `after_file` appeared if given; true if it was killed (false if it finished
/// first).
fn kill_after(mut cmd: Command, delay: Duration, after_file: Option<&Path>) -> bool {
    let mut child = cmd.spawn().expect("spawn statelog");
    let mut deadline = after_file.is_none().then(|| Instant::now() + delay);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "statelog failed: {status}");
            return false;
        }
        match deadline {
            Some(at) if Instant::now() >= at => {
                child.kill().expect("kill");
                child.wait().expect("wait");
                return true;
            }
            Some(_) => {}
            None => {
                if after_file.is_some_and(Path::exists) {
                    deadline = Some(Instant::now() + delay);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A random delay up to `full` (a little more, so that some runs finish).
fn delay(rng: &mut fastrand::Rng, full: Duration) -> Duration {
    full.mul_f64(rng.f64() * 1.05)
}

/// `check`, then an open: check must not pass a store that does not open.
/// Returns the check's problems and what the open gave.
fn check_then_open(store: &Path, context: &str) -> (Vec<String>, Result<(u64, Dump), Error>) {
    let report = check(store, &CheckOptions::new())
        .unwrap_or_else(|e| panic!("{context}: check failed: {e}"));
    let opened = Store::open(store, Options::default().create(false)).map(|s| {
        let out = (s.revision(), dump(&s));
        s.close().unwrap();
        out
    });
    if let Err(e) = &opened {
        assert!(
            !report.is_ok(),
            "{context}: check passed a store that does not open: {e}"
        );
    }
    let problems = report.problems.iter().map(|p| p.to_string()).collect();
    (problems, opened)
}

/// A store with `commits` commits of ten records each (about 150 bytes), and
/// its state.
fn filled_store(dir: &Path, commits: u64, options: Options) -> Dump {
    let store = Store::open(dir, options).unwrap();
    for i in 0..commits {
        store
            .transaction(|tx| {
                for j in 0..10 {
                    let n = (i * 10 + j) % 4000;
                    tx.put("r", &format!("k{n:05}"), &format!("{i}-{j:0>140}"))?;
                }
                Ok::<(), Error>(())
            })
            .unwrap();
    }
    let state = dump(&store);
    store.close().unwrap();
    state
}

/// A JSON Lines snapshot of `records` records at revision `revision`.
fn snapshot_lines(path: &Path, records: u64, revision: u64) {
    let mut text = format!(
        "{{\"format\":\"statelog-snapshot-lines\",\"version\":1,\"revision\":{revision},\"time\":\"2026-01-02T03:04:05.000006Z\"}}\n"
    );
    for i in 0..records {
        text.push_str(&format!(
            "{{\"namespace\":\"ns{}\",\"key\":\"k{i:06}\",\"version\":{},\"create_revision\":{},\"mod_revision\":{},\"updated_at\":\"2026-01-02T03:04:05.000006Z\",\"value\":{{\"i\":{i},\"pad\":\"{:0>120}\"}}}}\n",
            i % 3,
            1 + i % 4,
            1 + i,
            1 + i + i % 4,
            i
        ));
    }
    text.push_str(&format!("{{\"records\":{records}}}\n"));
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_restoring_import_killed_at_any_point_leaves_the_empty_store_or_all_of_it() {
    let test = "a_restoring_import_killed_at_any_point_leaves_the_empty_store_or_all_of_it";
    let mut rng = fastrand::Rng::with_seed(seed(test));
    let dir = temp_dir();
    let file = dir.path().join("snapshot.jsonl");
    snapshot_lines(&file, 5000, 20_000);
    let file = file.to_str().unwrap().to_owned();
    let empty = dir.path().join("empty");
    Store::open(&empty, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let reference = dir.path().join("reference");
    copy_dir(&empty, &reference);
    let reference_segment = reference.join("log").join("00000000000000020000.log");
    let (full, tail) = timed_after(
        statelog(&reference, &["import", &file, "--mode", "restore"]),
        Some(&reference_segment),
    );
    let whole = dump_path(&reference);
    assert_eq!((whole.0, whole.1.len()), (20_000, 5000));

    let (mut empties, mut wholes) = (0, 0);
    for kill in 0..KILLS {
        let case = dir.path().join("case");
        copy_dir(&empty, &case);
        // Most kills wait for the log's new segment (the base is in the log,
        // and the state database may not have it yet), and most of those come
        // soon after it.
        let segment = case.join("log").join("00000000000000020000.log");
        let (after, trigger) = if kill % 4 == 0 {
            (delay(&mut rng, full), None)
        } else {
            let soon = rng.f64();
            (
                delay(&mut rng, tail.mul_f64(soon * soon)),
                Some(segment.as_path()),
            )
        };
        let killed = kill_after(
            statelog(&case, &["import", &file, "--mode", "restore"]),
            after,
            trigger,
        );
        let context = format!(
            "{test}, kill {kill} {after:?} after {} (killed: {killed})",
            if trigger.is_some() {
                "the new segment appeared"
            } else {
                "the start"
            }
        );
        let (problems, opened) = check_then_open(&case, &context);
        assert!(problems.is_empty(), "{context}: {problems:?}");
        let opened = opened.unwrap_or_else(|e| panic!("{context}: does not open: {e}"));
        if opened.0 == 0 {
            assert!(opened.1.is_empty(), "{context}: records at revision 0");
            empties += 1;
        } else {
            assert_eq!(opened, whole, "{context}: part of the import");
            wholes += 1;
        }
        std::fs::remove_dir_all(&case).unwrap();
    }
    println!("{test}: {empties} left the empty store, {wholes} the whole import");
}

#[test]
fn repair_killed_at_any_point_is_finished_by_the_next_repair() {
    let test = "repair_killed_at_any_point_is_finished_by_the_next_repair";
    let mut rng = fastrand::Rng::with_seed(seed(test));
    let dir = temp_dir();
    // A store whose state database is gone: repair rebuilds it from the log.
    let template = dir.path().join("template");
    let state = filled_store(&template, 600, Options::default());
    std::fs::remove_file(template.join("state.redb")).unwrap();
    let reference = dir.path().join("reference");
    copy_dir(&template, &reference);
    let full = timed(statelog(&reference, &["repair"]));
    assert_eq!(dump_path(&reference), (600, state.clone()));

    for kill in 0..KILLS {
        let case = dir.path().join("case");
        copy_dir(&template, &case);
        let after = delay(&mut rng, full);
        kill_after(statelog(&case, &["repair"]), after, None);
        let context = format!("{test}, kill {kill} after {after:?}");
        let _ = check_then_open(&case, &context);
        let repaired = repair(&case, &RepairOptions::new())
            .unwrap_or_else(|e| panic!("{context}: the next repair failed: {e}"));
        assert!(
            repaired.is_repaired(),
            "{context}: {:?}",
            repaired.unrepaired
        );
        let (problems, opened) = check_then_open(&case, &context);
        assert!(
            problems.is_empty(),
            "{context}: after the next repair {problems:?}"
        );
        assert_eq!(opened.unwrap(), (600, state.clone()), "{context}");
        std::fs::remove_dir_all(&case).unwrap();
    }
}

/// A store whose state database grew with commits between checkpoints, as
/// compact finds it.
fn grown_store(dir: &Path) -> Dump {
    filled_store(
        dir,
        600,
        Options::default().checkpoint(CheckpointPolicy::manual()),
    )
}

#[test]
fn compact_killed_at_any_point_leaves_the_state_as_it_was() {
    let test = "compact_killed_at_any_point_leaves_the_state_as_it_was";
    let mut rng = fastrand::Rng::with_seed(seed(test));
    let dir = temp_dir();
    let template = dir.path().join("template");
    let state = grown_store(&template);
    let reference = dir.path().join("reference");
    copy_dir(&template, &reference);
    let full = timed(statelog(&reference, &["compact"]));
    assert_eq!(dump_path(&reference), (600, state.clone()));

    for kill in 0..KILLS {
        let case = dir.path().join("case");
        copy_dir(&template, &case);
        let after = delay(&mut rng, full);
        kill_after(statelog(&case, &["compact"]), after, None);
        let context = format!("{test}, kill {kill} after {after:?}");
        let (problems, opened) = check_then_open(&case, &context);
        assert!(problems.is_empty(), "{context}: {problems:?}");
        let opened = opened.unwrap_or_else(|e| panic!("{context}: does not open: {e}"));
        assert_eq!(opened, (600, state.clone()), "{context}");
        std::fs::remove_dir_all(&case).unwrap();
    }
}

#[test]
fn a_backup_killed_at_any_point_leaves_the_store_alone_and_the_next_run_completes_it() {
    let test = "a_backup_killed_at_any_point_leaves_the_store_alone_and_the_next_run_completes_it";
    let mut rng = fastrand::Rng::with_seed(seed(test));
    let dir = temp_dir();
    // A store backed up once, then written to: a first run into an empty
    // directory, and an incremental one into a copy of that backup.
    let template = dir.path().join("template");
    filled_store(&template, 400, Options::default().segment_size(128 << 10));
    let earlier = dir.path().join("earlier-backup");
    {
        let store = Store::open(&template, Options::default().create(false)).unwrap();
        store.backup(&earlier).unwrap();
        for i in 0..500u64 {
            store.put("later", &format!("k{}", i % 50), &i).unwrap();
        }
        store.close().unwrap();
    }
    let state = dump_path(&template);
    let runs: [(&str, Option<&Path>); 2] = [("first", None), ("incremental", Some(&earlier))];
    for (run, from) in runs {
        let reference = dir.path().join("reference");
        let reference_backup = dir.path().join("reference-backup");
        copy_dir(&template, &reference);
        if let Some(from) = from {
            copy_dir(from, &reference_backup);
        }
        let full = timed(statelog(
            &reference,
            &["backup", reference_backup.to_str().unwrap()],
        ));
        std::fs::remove_dir_all(&reference).unwrap();
        std::fs::remove_dir_all(&reference_backup).unwrap();
        for kill in 0..KILLS / 2 {
            let case = dir.path().join("case");
            let backup = dir.path().join("case-backup");
            copy_dir(&template, &case);
            if let Some(from) = from {
                copy_dir(from, &backup);
            }
            let after = delay(&mut rng, full);
            kill_after(
                statelog(&case, &["backup", backup.to_str().unwrap()]),
                after,
                None,
            );
            let context = format!("{test}, {run} run, kill {kill} after {after:?}");
            let (problems, opened) = check_then_open(&case, &context);
            assert!(problems.is_empty(), "{context}: {problems:?}");
            assert_eq!(opened.unwrap(), state, "{context}: the store changed");
            if backup.join("MANIFEST").exists() {
                let report = check_backup(&backup, &CheckOptions::new()).unwrap();
                assert!(report.is_ok(), "{context}: {:?}", report.problems);
            }
            let store = Store::open(&case, Options::default().create(false)).unwrap();
            store
                .backup(&backup)
                .unwrap_or_else(|e| panic!("{context}: the next run failed: {e}"));
            store.close().unwrap();
            let restored = dir.path().join("restored");
            restore(&backup, &restored, &RestoreOptions::new())
                .unwrap_or_else(|e| panic!("{context}: restore: {e}"));
            assert_eq!(dump_path(&restored).1, state.1, "{context}: restored");
            for d in [&case, &backup, &restored] {
                std::fs::remove_dir_all(d).unwrap();
            }
        }
    }
}

/// Everything in `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn a_killed_check_leaves_no_scratch_files_once_the_next_check_ran() {
    let test = "a_killed_check_leaves_no_scratch_files_once_the_next_check_ran";
    let mut rng = fastrand::Rng::with_seed(seed(test));
    let dir = temp_dir();
    let store = dir.path().join("store");
    grown_store(&store);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let scratch_arg = scratch.to_str().unwrap().to_owned();
    let full = timed(statelog(&store, &["check", "--scratch", &scratch_arg]));
    let mut left = 0;
    for kill in 0..KILLS {
        let after = delay(&mut rng, full);
        let killed = kill_after(
            statelog(
                &store,
                &[
                    if kill % 2 == 0 { "check" } else { "repair" },
                    "--scratch",
                    &scratch_arg,
                ],
            ),
            after,
            None,
        );
        let context = format!("{test}, kill {kill} after {after:?}");
        if killed && !entries(&scratch).is_empty() {
            left += 1;
        }
        let report = check(&store, &CheckOptions::new().scratch_dir(&scratch)).unwrap();
        assert!(report.is_ok(), "{context}: {:?}", report.problems);
        assert_eq!(entries(&scratch), Vec::<PathBuf>::new(), "{context}");
    }
    println!("{test}: {left} kills left scratch files, all removed by the next check");
}
