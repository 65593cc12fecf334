//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use statelog::{Options, Store};

/// A fresh temporary directory for a store.
pub fn store_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("statelog-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A fresh temporary directory in memory (`/dev/shm`) where there is one, else
/// on disk: for tests of locking and concurrency, where syncing to a real disk
/// only costs time.
pub fn memory_store_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("statelog-test-")
            .tempdir_in(shm)
    {
        return dir;
    }
    store_dir()
}

/// Opens a store with the default options.
pub fn open(path: &Path) -> Store {
    open_with(path, Options::default())
}

/// Opens a store with the given options.
pub fn open_with(path: &Path, options: Options) -> Store {
    match Store::open(path, options) {
        Ok(store) => store,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

/// Every file under `dir` with its size and CRC, to check that nothing changed
/// (short enough to show in an assertion message). The lock file and the state
/// database are left out: redb rewrites its own header whenever it is opened,
/// while the log and the identity file are only ever written by commits.
pub fn snapshot_files(dir: &Path) -> BTreeMap<PathBuf, (usize, u32)> {
    file_contents(dir)
        .into_iter()
        .filter(|(path, _)| path.file_name().is_some_and(|n| n != "state.redb"))
        .map(|(path, bytes)| (path, (bytes.len(), crc32fast::hash(&bytes))))
        .collect()
}

/// Every file under `dir` (but the lock file) with its bytes.
pub fn file_contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "LOCK") && !is_socket(&path) {
                out.insert(path.clone(), std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// True for the socket a store's holder serves on (no data; a crashed holder
/// leaves it behind).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// The environment variable that tells a re-executed test binary which child
/// role to play, and the one that carries its argument.
pub const CHILD_ROLE: &str = "STATELOG_TEST_CHILD";
pub const CHILD_ARG: &str = "STATELOG_TEST_ARG";

/// In a child process started by [`run_child`]: the role and argument.
pub fn child_role() -> Option<(String, String)> {
    let role = std::env::var(CHILD_ROLE).ok()?;
    let arg = std::env::var(CHILD_ARG).unwrap_or_default();
    Some((role, arg))
}

/// A command that re-runs this test binary as a child playing `role`: it runs
/// only the test `test_name`, which must check [`child_role`] first.
pub fn child_command(test_name: &str, role: &str, arg: &str) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .env(CHILD_ARG, arg)
        .stdin(Stdio::null());
    cmd
}

/// Runs a child to completion and panics with its output if it failed.
pub fn run_child(test_name: &str, role: &str, arg: &str) {
    let out = child_command(test_name, role, arg)
        .output()
        .expect("spawn the child");
    assert!(
        out.status.success(),
        "child {role} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Ends the current (child) process at once, as a crash would: no destructor
/// runs, so the store is neither checkpointed nor closed. Everything written
/// stays in the page cache, as after a killed process.
pub fn exit_without_closing() -> ! {
    std::process::exit(0)
}

/// The store in `dir` reached directly, or through a holder in this process
/// (returned too, to keep it holding).
pub fn reach(dir: &Path, through_holder: bool) -> (Store, Option<Store>) {
    let holder = Store::open(dir, Options::default()).unwrap();
    if !through_holder {
        return (holder, None);
    }
    let client = Store::open(dir, Options::default()).unwrap();
    assert!(!client.is_holder());
    (client, Some(holder))
}
