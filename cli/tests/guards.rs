//! What guards a store against being destroyed by the tools meant to keep it:
//! one class of defect per test.
//!
//! - The store's lock must not vanish with one file: with `LOCK` deleted while
//!   another process writes, every path that takes the lock (open, `init`,
//!   `check`, `repair`, `compact`, `restore --overwrite`) is refused, and the
//!   writer loses nothing.
//! - A backup cannot go into its own store, and a restore cannot go into its
//!   own backup.

#[path = "cli/mod.rs"]
mod cli;
// The helpers of the library's tests, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use statelog::backup::{RestoreOptions, restore};
use statelog::maintenance::{CheckOptions, RepairOptions, check, compact, repair};
use statelog::{Error, Options, Store};

/// A child process that holds the store open and commits to it until it is
/// killed, printing the counter value of each acknowledged commit.
fn hold(dir: &str) {
    // Not serving: every other open must then want the store's lock itself,
    // which is what the tests check (working through a holder is no second
    // user).
    let store = Store::open(dir, Options::default().serve(false)).expect("open the store to hold");
    for n in 1u64.. {
        store.put("held", "n", &n).expect("commit");
        println!("@@ack {n}");
    }
}

struct Holder {
    child: Child,
    acks: mpsc::Receiver<u64>,
    last: u64,
}

impl Holder {
    fn start(test: &str, store: &Path) -> Holder {
        let mut child = common::child_command(test, "hold", store.to_str().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the holder");
        let stdout = child.stdout.take().expect("the holder's stdout");
        let (tx, acks) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("@@ack ") {
                    let _ = tx.send(n.parse::<u64>().expect("a counter"));
                }
            }
        });
        let mut holder = Holder {
            child,
            acks,
            last: 0,
        };
        holder.wait_for(20);
        holder
    }

    /// Waits until the holder has acknowledged at least `n` commits.
    fn wait_for(&mut self, n: u64) {
        while self.last < n {
            self.last = self
                .acks
                .recv_timeout(Duration::from_secs(60))
                .expect("the holder stopped committing");
        }
    }

    /// Kills the holder; returns the last counter value it acknowledged.
    fn kill(mut self) -> u64 {
        self.child.kill().expect("kill the holder");
        self.child.wait().expect("reap the holder");
        while let Ok(n) = self.acks.recv_timeout(Duration::from_secs(5)) {
            self.last = n;
        }
        self.last
    }
}

fn assert_busy<T: std::fmt::Debug>(what: &str, result: statelog::Result<T>) {
    match result {
        Err(Error::Busy { .. }) => {}
        other => panic!("{what} on a store in use (its LOCK file deleted): {other:?}"),
    }
}

/// A store another process holds and commits to, with its `LOCK` file
/// deleted: every tool that takes the store's lock is refused as busy (the
/// library and the command line), nothing is moved aside or cut, and every
/// commit the holder acknowledged is in the store afterwards.
#[test]
fn deleting_the_lock_file_does_not_let_a_second_user_in() {
    const TEST: &str = "deleting_the_lock_file_does_not_let_a_second_user_in";
    if let Some((role, arg)) = common::child_role() {
        assert_eq!(role, "hold");
        hold(&arg);
        return;
    }
    let dir = common::store_dir();
    let store = dir.path().join("store");
    let other = dir.path().join("other");
    let backup = dir.path().join("backup");
    {
        let s = Store::open(&other, Options::default()).unwrap();
        s.put("other", "k", &1).unwrap();
        s.backup(&backup).unwrap();
        s.close().unwrap();
    }
    Store::open(&store, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let mut holder = Holder::start(TEST, &store);
    std::fs::remove_file(store.join("LOCK")).unwrap();
    let now = Duration::ZERO;
    let tools = Options::default().create(false).lock_timeout(now);
    assert_busy("open", Store::open(&store, tools.clone()));
    assert_busy(
        "open to create",
        Store::open(&store, tools.clone().create(true)),
    );
    assert_busy(
        "check",
        check(&store, &CheckOptions::new().lock_timeout(now)),
    );
    assert_busy(
        "repair",
        repair(&store, &RepairOptions::new().lock_timeout(now)),
    );
    assert_busy("compact", compact(&store, &tools));
    assert_busy(
        "restore --overwrite",
        restore(
            &backup,
            &store,
            &RestoreOptions::new()
                .overwrite(true)
                .store_options(tools.clone()),
        ),
    );
    holder.wait_for(holder.last + 20);
    let run = |args: &[&str]| {
        // `restore` takes no --store: its store is its TARGET.
        let mut all = if args[0] == "restore" {
            vec!["--no-wait"]
        } else {
            vec!["--store", store.to_str().unwrap(), "--no-wait"]
        };
        all.extend_from_slice(args);
        let out = std::process::Command::new(cli::BIN)
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [
        vec!["init"],
        vec!["get", "held", "n"],
        vec!["check"],
        vec!["repair"],
        vec!["compact"],
        vec![
            "restore",
            backup.to_str().unwrap(),
            store.to_str().unwrap(),
            "--overwrite",
        ],
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(
            code,
            Some(5),
            "statelog {args:?} on a store in use: {stderr}"
        );
    }
    let acknowledged = holder.kill();
    let names: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("repair-")),
        "something was moved aside: {names:?}"
    );
    let siblings = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(siblings, 3, "the store was moved aside");
    let reopened = Store::open(&store, Options::default().create(false)).unwrap();
    let n: u64 = reopened.get("held", "n").unwrap().unwrap().value;
    assert!(
        n >= acknowledged,
        "the holder acknowledged {acknowledged}, the store holds {n}"
    );
    reopened.close().unwrap();
    let report = check(&store, &CheckOptions::new()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A backup into the store's own directory, a directory inside it, or one
/// holding it is refused at once with an error that says so (not after the
/// lock wait, as busy); so is a restore into its own backup.
#[test]
fn a_backup_or_restore_into_itself_is_refused() {
    let dir = common::store_dir();
    let store_path = dir.path().join("store");
    let store = Store::open(
        &store_path,
        Options::default().lock_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    store.put("a", "b", &1).unwrap();
    let before = common::snapshot_files(&store_path);
    for (dest, says) in [
        (store_path.clone(), "is the store's own directory"),
        (store_path.join("log"), "is inside the store's directory"),
        (
            store_path.join("new/backup"),
            "is inside the store's directory",
        ),
        (store_path.join("log/../."), "is the store's own directory"),
        (dir.path().to_owned(), "holds the store's directory"),
    ] {
        let err = store.backup(&dest).unwrap_err();
        assert!(
            matches!(err, Error::InvalidOption { .. }) && err.to_string().contains(says),
            "backup into {}: {err}",
            dest.display()
        );
    }
    assert!(!store_path.join("new").exists());
    store.backup(dir.path().join("backup")).unwrap();
    store.close().unwrap();
    assert_eq!(common::snapshot_files(&store_path), before);
    let backup = dir.path().join("backup");
    for target in [
        backup.clone(),
        backup.join("restored"),
        dir.path().to_owned(),
    ] {
        let err = restore(&backup, &target, &RestoreOptions::new().overwrite(true)).unwrap_err();
        assert!(
            matches!(err, Error::TargetNotEmpty { .. }) && err.to_string().contains("backup's"),
            "restore into {}: {err}",
            target.display()
        );
    }
    assert!(!backup.join("restored").exists());
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if !common::is_socket(&entry.path()) {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn values(store: &Path) -> Vec<(String, u64)> {
    let store = Store::open(store, Options::default().create(false)).unwrap();
    let out = store
        .snapshot()
        .unwrap()
        .list::<u64>("r", ..)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.0, r.1.value)
        })
        .collect();
    store.close().unwrap();
    out
}

/// Every way of creating a store (`Store::open` with `create`, `statelog
/// init`, `restore --overwrite`, library and command line) refuses a
/// directory that holds any of a store's files but no identity file (a state
/// database, log segments, torn tails cut off, a repair directory), says to run
/// `statelog repair`, and changes no byte. `repair` then rebuilds the identity
/// from what is there, and the store opens with every record.
#[test]
fn a_creation_never_empties_a_directory_holding_a_store() {
    let dir = common::store_dir();
    let full = dir.path().join("full");
    let expected: Vec<(String, u64)> = {
        let store = Store::open(&full, Options::default()).unwrap();
        for i in 0..100u64 {
            store.put("r", &format!("k{i:03}"), &i).unwrap();
        }
        store.close().unwrap();
        (0..100u64).map(|i| (format!("k{i:03}"), i)).collect()
    };
    std::fs::write(
        full.join("log/00000000000000000001.log.torn-9999"),
        b"bytes a recovery cut off",
    )
    .unwrap();
    std::fs::create_dir(full.join("repair-20260101T000000Z")).unwrap();
    std::fs::write(
        full.join("repair-20260101T000000Z/state.redb"),
        b"moved aside",
    )
    .unwrap();
    std::fs::remove_file(full.join("STATELOG")).unwrap();
    let backup = dir.path().join("backup");
    {
        let other = Store::open(dir.path().join("other"), Options::default()).unwrap();
        other.put("o", "k", &1).unwrap();
        other.backup(&backup).unwrap();
        other.close().unwrap();
    }
    let segments = |d: &Path| {
        for e in std::fs::read_dir(d.join("log")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                std::fs::remove_file(p).unwrap();
            }
        }
    };
    type Case<'a> = (&'a str, &'a dyn Fn(&Path));
    let cases: [Case; 5] = [
        ("the log", &|d| {
            std::fs::remove_file(d.join("state.redb")).unwrap();
            std::fs::remove_dir_all(d.join("repair-20260101T000000Z")).unwrap();
            std::fs::remove_file(d.join("log/00000000000000000001.log.torn-9999")).unwrap();
        }),
        ("the state database", &|d| {
            segments(d);
            std::fs::remove_file(d.join("log/00000000000000000001.log.torn-9999")).unwrap();
            std::fs::remove_dir_all(d.join("repair-20260101T000000Z")).unwrap();
        }),
        ("a torn tail", &|d| {
            std::fs::remove_file(d.join("state.redb")).unwrap();
            std::fs::remove_dir_all(d.join("repair-20260101T000000Z")).unwrap();
            segments(d);
        }),
        ("everything", &|_| {}),
        ("a repair directory", &|d| {
            std::fs::remove_file(d.join("state.redb")).unwrap();
            std::fs::remove_dir_all(d.join("log")).unwrap();
        }),
    ];
    for (name, keep) in cases {
        let case = dir.path().join(name.replace(' ', "-"));
        copy_tree(&full, &case);
        keep(&case);
        let before = common::file_contents(&case);
        let err = Store::open(&case, Options::default()).unwrap_err();
        assert!(
            matches!(err, Error::NotAStore { .. }) && err.to_string().contains("statelog repair"),
            "{name}: create: {err}"
        );
        let err = restore(&backup, &case, &RestoreOptions::new().overwrite(true)).unwrap_err();
        assert!(
            matches!(err, Error::TargetNotEmpty { .. })
                && err.to_string().contains("statelog repair"),
            "{name}: restore: {err}"
        );
        let cli = |args: &[&str]| {
            let out = std::process::Command::new(cli::BIN)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            (out.status.code(), stderr)
        };
        let (code, stderr) = cli(&["--store", case.to_str().unwrap(), "init"]);
        assert!(
            code == Some(1) && stderr.contains("statelog repair"),
            "{name}: init: {code:?} {stderr}"
        );
        let (code, stderr) = cli(&[
            "restore",
            backup.to_str().unwrap(),
            case.to_str().unwrap(),
            "--overwrite",
        ]);
        assert!(
            code == Some(3) && stderr.contains("statelog repair"),
            "{name}: statelog restore: {code:?} {stderr}"
        );
        assert!(
            common::file_contents(&case) == before,
            "{name}: the directory was changed"
        );
        let repaired = repair(&case, &RepairOptions::new());
        match name {
            "everything" | "the state database" | "the log" => {
                let report = repaired.unwrap();
                assert!(report.is_repaired(), "{name}: {report:?}");
                assert!(
                    report.actions[0].contains("rebuilt the identity file"),
                    "{name}: {report:?}"
                );
                assert_eq!(values(&case), expected, "{name}");
            }
            _ => {
                let err = repaired.unwrap_err();
                assert!(
                    matches!(err, Error::NotAStore { .. }) && err.to_string().contains("no log"),
                    "{name}: repair: {err}"
                );
                assert!(common::file_contents(&case) == before, "{name}: repair");
            }
        }
    }
}

/// `repair` rebuilds an identity file only from files that agree: a log
/// segment of another store beside the store's files is refused, naming both,
/// and changes nothing; a damaged identity file is moved aside, not
/// overwritten.
#[test]
fn repair_rebuilds_an_identity_only_from_files_that_agree() {
    let dir = common::store_dir();
    let make = |name: &str, n: u64| {
        let path = dir.path().join(name);
        let store = Store::open(&path, Options::default().segment_size(4096)).unwrap();
        for i in 0..n {
            store.put("r", &format!("k{i:03}"), &i).unwrap();
        }
        store.close().unwrap();
        path
    };
    let a = make("a", 100);
    let b = make("b", 1);
    std::fs::remove_file(a.join("STATELOG")).unwrap();
    std::fs::copy(
        b.join("log/00000000000000000001.log"),
        a.join("log/00000000000000099999.log"),
    )
    .unwrap();
    let before = common::file_contents(&a);
    let err = repair(&a, &RepairOptions::new()).unwrap_err();
    assert!(
        matches!(err, Error::NotAStore { .. }) && err.to_string().contains("different stores"),
        "{err}"
    );
    let report = check(&a, &CheckOptions::new());
    assert!(matches!(report, Err(Error::NotAStore { .. })), "{report:?}");
    assert!(common::file_contents(&a) == before);
    std::fs::remove_file(a.join("log/00000000000000099999.log")).unwrap();
    std::fs::write(a.join("STATELOG"), b"{\"format\": \"statel").unwrap();
    let report = check(&a, &CheckOptions::new()).unwrap();
    assert!(
        report.problems[0]
            .what
            .contains("identity file is unreadable"),
        "{report:?}"
    );
    let report = repair(&a, &RepairOptions::new()).unwrap();
    assert!(report.is_repaired(), "{report:?}");
    let aside = report
        .aside
        .clone()
        .expect("the damaged identity moved aside");
    assert_eq!(
        std::fs::read(aside.join("STATELOG")).unwrap(),
        b"{\"format\": \"statel"
    );
    assert_eq!(values(&a).len(), 100);
}

/// A power loss at any point of creating a store leaves either no store, which
/// the next creation makes (clearing only what the unfinished one wrote), or
/// the whole new store.
#[test]
fn a_power_loss_while_creating_a_store_leaves_nothing_the_next_creation_refuses() {
    use statelog::testkit::sim::{Loss, SimFs};
    let sim = |fs: &SimFs| {
        Options::default()
            .file_system(std::sync::Arc::new(fs.clone()))
            .cache_size(1 << 20)
            .lock_timeout(Duration::ZERO)
    };
    let total = {
        let fs = SimFs::new();
        Store::open("/s", sim(&fs)).unwrap().close().unwrap();
        fs.ops()
    };
    eprintln!("creating a store takes {total} operations");
    // Every operation of the creation proper (the first open then replays and
    // checkpoints an empty log), then a sample of the rest.
    let points = (1..=total.min(40)).chain((41..=total).step_by(7));
    for k in points {
        for loss in [Loss::Everything, Loss::Random(k)] {
            let fs = SimFs::new();
            fs.power_off_after(k);
            let _ = Store::open("/s", sim(&fs));
            let survivor = fs.restart(loss);
            let store = Store::open("/s", sim(&survivor))
                .unwrap_or_else(|e| panic!("after a power loss at op {k} of {total}: {e}"));
            assert_eq!(store.revision(), 0);
            store.put("a", "b", &1).unwrap();
            store.close().unwrap();
        }
    }
}

/// The whole store as an export, for comparing states.
fn exported(store: &Store) -> String {
    use statelog::snapshot::{ExportOptions, Format, export};
    let mut out = Vec::new();
    export(store, &mut out, &ExportOptions::new(Format::JsonLines)).unwrap();
    String::from_utf8(out).unwrap()
}

/// A store on a disk that takes no more writes can still be read: opening it
/// does not fail but opens it read-only, whatever it was left with (closed
/// cleanly; commits after the last checkpoint to replay; a torn write to cut),
/// on a disk that is full (nothing can grow) or that refuses every write.
/// Every acknowledged commit is read back, an export equals the one taken once
/// the disk works again, every change is refused with `ReadOnly`, and a disk
/// that refuses every write is left byte for byte as it was. Once space is
/// freed the store opens for writing again.
#[test]
fn a_store_on_a_disk_that_takes_no_writes_can_still_be_read() {
    use statelog::testkit::faults::{Fault, FaultyFs, Op, Rule, Target};
    use statelog::testkit::sim::SimFs;
    use std::sync::Arc;
    let on = |fs: &FaultyFs| {
        Options::default()
            .file_system(Arc::new(fs.clone()))
            .create(false)
            .segment_size(16 << 10)
            .preallocate(4096)
            .cache_size(1 << 20)
            .lock_timeout(Duration::ZERO)
    };
    // What the disk holds when it fills up, and the commits acknowledged.
    let left = |how: &str| -> (SimFs, u64) {
        let sim = SimFs::new();
        let faulty = FaultyFs::new(Arc::new(sim.clone()));
        let store = Store::open("/s", on(&faulty).create(true)).unwrap();
        for i in 0..60u64 {
            store.put("r", &format!("k{i:03}"), &i).unwrap();
            if i == 40 {
                store.checkpoint().unwrap();
            }
        }
        match how {
            "closed" => {
                store.close().unwrap();
                (sim, 60)
            }
            // As after a killed process: the page cache, no close.
            "to replay" => (sim.duplicate(), 60),
            "torn" => {
                faulty.inject(Rule::new(Target::Log, Op::Write, Fault::Short).times(1));
                store.put("r", "k999", &"torn in half").unwrap_err();
                (sim.duplicate(), 60)
            }
            _ => unreachable!(),
        }
    };
    for how in ["closed", "to replay", "torn"] {
        for disk in ["full", "refusing every write"] {
            let (sim, acknowledged) = left(how);
            let faulty = FaultyFs::new(Arc::new(sim.clone()));
            let before: Vec<_> = sim
                .files()
                .into_iter()
                .map(|f| (sim.read_file(&f).unwrap(), f))
                .collect();
            if disk == "full" {
                faulty.set_free_space(Some(0));
            } else {
                for op in [Op::Write, Op::SetLen, Op::Create, Op::Rename, Op::Remove] {
                    faulty.inject(Rule::new(Target::Any, op, Fault::NoSpace));
                }
            }
            let store = Store::open("/s", on(&faulty))
                .unwrap_or_else(|e| panic!("{how}, {disk} disk: open: {e}"));
            assert_eq!(store.revision(), acknowledged, "{how}, {disk} disk");
            let read = exported(&store);
            for i in 0..acknowledged {
                let got: u64 = store.get("r", &format!("k{i:03}")).unwrap().unwrap().value;
                assert_eq!(got, i, "{how}, {disk} disk");
            }
            // A full disk may still take what the open writes (and commits)
            // into space the log and the state database hold already; when the
            // open had to write and could not, the store is read-only.
            if disk != "full" {
                assert!(store.read_only().is_some(), "{how}, {disk} disk");
            }
            if store.read_only().is_some() {
                let err = store.put("r", "new", &1u64).unwrap_err();
                assert!(
                    matches!(err, Error::ReadOnly { .. }) && err.to_string().contains("free space"),
                    "{how}, {disk} disk: {err}"
                );
                assert!(matches!(store.checkpoint(), Err(Error::ReadOnly { .. })));
            }
            store.close().unwrap();
            if disk != "full" {
                let after: Vec<_> = sim
                    .files()
                    .into_iter()
                    .map(|f| (sim.read_file(&f).unwrap(), f))
                    .collect();
                assert!(after == before, "{how}: the disk was written");
            }
            faulty.clear();
            let store = Store::open("/s", on(&faulty)).unwrap();
            assert!(store.read_only().is_none(), "{how}, {disk} disk");
            assert_eq!(exported(&store), read, "{how}, {disk} disk");
            store.put("r", "new", &1u64).unwrap();
            store.close().unwrap();
        }
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped (also when the
/// test fails).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("statelog-small-disk-")
            .tempdir()
            .unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs and needs the rights to (it runs as root in CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// The same on a real file system that is full (an 8 MiB tmpfs): the store is
/// filled by its own commits until the disk takes no more, then the rest of the
/// disk too, and its `LOCK` file is deleted; `get`, `list`, `export` and
/// `backup` (to another file system) still work and give every acknowledged
/// record, and once space is freed the store takes commits again and checks
/// out.
#[test]
fn a_store_on_a_full_file_system_can_still_be_read_exported_and_backed_up() {
    let disk = SmallDisk::mount("8m");
    let store = disk.path().join("store");
    let elsewhere = common::store_dir();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(cli::BIN)
            .arg("--store")
            .arg(&store)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(run(&["init"]).0, Some(0));
    // A file takes all the space but 1 MiB, and later the rest.
    let filler = disk.path().join("filler");
    let fill = || {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&filler)
            .unwrap();
        let block = vec![0xffu8; 4096];
        while file.write_all(&block).is_ok() {}
        file
    };
    let file = fill();
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(1 << 20)).unwrap();
    drop(file);
    let value = format!("\"{}\"", "x".repeat(3000));
    let mut acknowledged = Vec::new();
    for i in 0..5000 {
        let key = format!("k{i:04}");
        let (code, _, stderr) = run(&["set", "r", &key, &value]);
        if code == Some(0) {
            acknowledged.push(key);
        }
        if code != Some(0) || !stderr.is_empty() {
            break;
        }
    }
    assert!(
        acknowledged.len() > 50 && acknowledged.len() < 5000,
        "the disk never filled: {} commits",
        acknowledged.len()
    );
    drop(fill());
    std::fs::remove_file(store.join("LOCK")).unwrap();
    let (code, stdout, stderr) = run(&["get", "r", &acknowledged[0]]);
    assert_eq!(code, Some(0), "get: {stderr}");
    assert_eq!(stdout.trim(), value);
    let (code, stdout, stderr) = run(&["list", "r", "--keys"]);
    assert_eq!(code, Some(0), "list: {stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), acknowledged);
    let (code, stdout, stderr) = run(&["export", "--format", "jsonl"]);
    assert_eq!(code, Some(0), "export: {stderr}");
    assert_eq!(stdout.lines().count(), acknowledged.len() + 2);
    let backup = elsewhere.path().join("backup");
    let (code, _, stderr) = run(&["backup", backup.to_str().unwrap()]);
    assert_eq!(code, Some(0), "backup: {stderr}");
    let (code, _, stderr) = run(&["set", "r", "more", "1"]);
    if code != Some(0) {
        assert!(
            stderr.contains("read-only") || stderr.contains("space"),
            "a failed set says why: {stderr}"
        );
    }
    let restored = elsewhere.path().join("restored");
    restore(&backup, &restored, &RestoreOptions::new()).unwrap();
    let keys: Vec<String> = values_raw(&restored);
    assert!(
        acknowledged.iter().all(|k| keys.contains(k)),
        "the backup lacks acknowledged records"
    );
    std::fs::remove_file(&filler).unwrap();
    let (code, _, stderr) = run(&["set", "r", "after", "1"]);
    assert_eq!(code, Some(0), "set after freeing space: {stderr}");
    let (code, _, stderr) = run(&["check"]);
    assert_eq!(code, Some(0), "check: {stderr}");
}

fn values_raw(store: &Path) -> Vec<String> {
    let store = Store::open(store, Options::default().create(false)).unwrap();
    let keys = store
        .snapshot()
        .unwrap()
        .list_raw("r", ..)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    store.close().unwrap();
    keys
}

/// Writes 200 commits (`k000` = 0 ...) in 4 KiB segments, a checkpoint after
/// the 40th, and exits without closing: 160 commits over several segments
/// that only the log holds.
fn write_past_the_checkpoint(dir: &str) -> ! {
    let options = Options::default()
        .segment_size(4096)
        .preallocate(4096)
        .checkpoint(statelog::CheckpointPolicy::manual());
    let store = Store::open(dir, options).unwrap();
    for i in 0..200u64 {
        store.put("r", &format!("k{i:03}"), &i).unwrap();
        if i == 39 {
            store.checkpoint().unwrap();
        }
    }
    common::exit_without_closing();
}

fn segments_of(store: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(store.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

/// A log that lost its newest part tells so: with the newest segment deleted,
/// the two newest deleted, or the tail of the newest one cut (inside a record,
/// at a record's end, or right after its header), all past the last
/// checkpoint, opening refuses with `Corrupt` naming the segment and `statelog
/// repair` and changes nothing; `check` reports it; `repair` accepts the loss,
/// says it (`Lost::Unknown` after the last intact revision), and the store
/// opens with exactly the commits up to there.
#[test]
fn a_log_that_lost_its_newest_part_says_so() {
    const TEST: &str = "a_log_that_lost_its_newest_part_says_so";
    if let Some((_, dir)) = common::child_role() {
        write_past_the_checkpoint(&dir);
    }
    let dir = common::store_dir();
    let original = dir.path().join("original");
    common::run_child(TEST, "write", original.to_str().unwrap());
    let segments = segments_of(&original);
    assert!(segments.len() >= 5, "{segments:?}");
    let first_of = |path: &Path| -> u64 {
        path.file_name().unwrap().to_str().unwrap()[..20]
            .parse()
            .unwrap()
    };
    let newest = segments.last().unwrap().clone();
    let newest_bytes = std::fs::read(&newest).unwrap();
    let frames = statelog::testkit::log_reader::frame_spans(&newest_bytes);
    assert!(frames.len() >= 3, "{frames:?}");
    let newest_first = first_of(&newest);
    let second_first = first_of(&segments[segments.len() - 2]);
    // Each case: its name, what it does to the log, and the revision the
    // store is at after accepting the loss.
    type Damage<'a> = (String, Box<dyn Fn(&Path) + 'a>, u64);
    let name_of = |p: &Path| p.file_name().unwrap().to_owned();
    let cut = |at: usize| -> Box<dyn Fn(&Path)> {
        let name = name_of(&newest);
        Box::new(move |store: &Path| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(store.join("log").join(&name))
                .unwrap();
            file.set_len(at as u64).unwrap();
        })
    };
    let (second_start, second_end) = frames[1];
    let cases: Vec<Damage> = vec![
        (
            "the newest segment deleted".into(),
            Box::new(|store: &Path| {
                std::fs::remove_file(store.join("log").join(name_of(&newest))).unwrap()
            }),
            newest_first - 1,
        ),
        (
            "the two newest segments deleted".into(),
            Box::new(|store: &Path| {
                for p in &segments[segments.len() - 2..] {
                    std::fs::remove_file(store.join("log").join(name_of(p))).unwrap();
                }
            }),
            second_first - 1,
        ),
        (
            "the newest segment cut inside its second record".into(),
            cut(second_start + (second_end - second_start) / 2),
            newest_first,
        ),
        (
            "the newest segment cut after its second record".into(),
            cut(second_end),
            newest_first + 1,
        ),
        (
            "the newest segment cut after its header".into(),
            cut(64),
            newest_first - 1,
        ),
    ];
    for (name, damage, kept) in cases {
        let store = dir.path().join(name.replace(' ', "-"));
        copy_tree(&original, &store);
        damage(&store);
        let before = common::file_contents(&store);
        let err = Store::open(&store, Options::default().create(false)).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. }) && err.to_string().contains("statelog repair"),
            "{name}: open: {err}"
        );
        assert!(
            common::file_contents(&store) == before,
            "{name}: open changed files"
        );
        let report = check(&store, &CheckOptions::new()).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.what.contains("lost its newest part")),
            "{name}: check: {:?}",
            report.problems
        );
        let report = repair(&store, &RepairOptions::new()).unwrap();
        assert!(report.is_repaired(), "{name}: {report:?}");
        assert_eq!(
            report.lost,
            statelog::maintenance::Lost::Unknown { after: kept },
            "{name}: {report:?}"
        );
        assert_eq!(report.revision, kept, "{name}");
        let reopened = Store::open(&store, Options::default().create(false)).unwrap();
        assert_eq!(reopened.revision(), kept, "{name}");
        let records: Vec<(String, u64)> = reopened
            .snapshot()
            .unwrap()
            .list::<u64>("r", ..)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.0, r.1.value)
            })
            .collect();
        let expected: Vec<(String, u64)> = (0..kept).map(|i| (format!("k{i:03}"), i)).collect();
        assert_eq!(records, expected, "{name}");
        reopened.put("r", "after", &1u64).unwrap();
        reopened.close().unwrap();
        let report = check(&store, &CheckOptions::new()).unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
    }
}

/// The other side: a power loss at any point of committing across segment
/// rotations (a new segment created, the old one sealed) never looks like a
/// lost segment or a cut tail. The store reopens with every acknowledged
/// commit (and perhaps the one in flight), finishing an interrupted rotation.
#[test]
fn a_power_loss_during_a_rotation_is_not_taken_for_a_lost_segment() {
    use statelog::testkit::sim::{Loss, SimFs};
    let sim = |fs: &SimFs| {
        Options::default()
            .file_system(std::sync::Arc::new(fs.clone()))
            .segment_size(4096)
            .preallocate(1024)
            .cache_size(1 << 20)
            .lock_timeout(Duration::ZERO)
    };
    let base = SimFs::new();
    Store::open("/s", sim(&base)).unwrap().close().unwrap();
    let commits = 30u64;
    let total = {
        let fs = base.duplicate();
        let before = fs.ops();
        let store = Store::open("/s", sim(&fs)).unwrap();
        for i in 0..commits {
            store
                .put("r", &format!("k{i:03}"), &"x".repeat(300))
                .unwrap();
        }
        drop(store);
        let segments = fs
            .files()
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "log"))
            .count();
        assert!(
            segments >= 3,
            "the commits rotate twice: {segments} segments"
        );
        fs.ops() - before
    };
    eprintln!("{total} operations");
    for k in 1..=total {
        for loss in [Loss::Everything, Loss::Random(k)] {
            let fs = base.duplicate();
            fs.power_off_after(k);
            let mut acknowledged = 0;
            if let Ok(store) = Store::open("/s", sim(&fs)) {
                for i in 0..commits {
                    if store
                        .put("r", &format!("k{i:03}"), &"x".repeat(300))
                        .is_err()
                    {
                        break;
                    }
                    acknowledged = i + 1;
                }
            }
            let survivor = fs.restart(loss);
            let store = Store::open("/s", sim(&survivor))
                .unwrap_or_else(|e| panic!("power lost at op {k} of {total} ({loss:?}): {e}"));
            let revision = store.revision();
            assert!(
                revision == acknowledged || revision == acknowledged + 1,
                "op {k} ({loss:?}): {acknowledged} acknowledged, reopened at {revision}"
            );
            store.put("r", "after", &1u64).unwrap();
            store.close().unwrap();
        }
    }
}
