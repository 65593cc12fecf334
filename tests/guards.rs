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
    let store = Store::open(dir, Options::default()).expect("open the store to hold");
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
        let mut all = vec!["--store", store.to_str().unwrap(), "--no-wait"];
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
