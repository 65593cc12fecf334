//! Helpers for the tests that drive the real `statelog` binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_statelog");

/// What an invocation did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    /// stdout parsed as one `--json` document, which must carry the shape
    /// version first; the document without it.
    pub fn doc(&self) -> serde_json::Value {
        without_shape(&self.stdout)
    }
}

/// A scratch directory with a store path in it (not created until `init`).
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

impl Scratch {
    /// A scratch directory; the store will be `<dir>/store`.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("statelog-cli-")
            .tempdir()
            .expect("create a temporary directory");
        let store = dir.path().join("store");
        Scratch { dir, store }
    }

    /// A scratch directory with an initialised store.
    pub fn with_store() -> Scratch {
        let s = Scratch::new();
        s.ok(&["init"]);
        s
    }

    /// A command running the binary on this store, in the scratch directory,
    /// with no `STATELOG_STORE` from the environment and stdin empty.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--store")
            .arg(&self.store)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("STATELOG_STORE")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the binary with `args` alone, in the scratch directory (for
    /// `restore`, which takes no `--store`).
    pub fn run_without_store(&self, args: &[&str]) -> Run {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("STATELOG_STORE")
            .stdin(Stdio::null())
            .output()
            .expect("run statelog");
        Run::from(out)
    }

    /// Runs the binary with `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run statelog"))
    }

    /// Runs the binary with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn statelog");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("wait for statelog"))
    }

    /// Runs and asserts success with nothing on stderr; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 0, "statelog {args:?} failed: {run:?}");
        assert!(
            run.stderr.is_empty(),
            "statelog {args:?} wrote to stderr: {run:?}"
        );
        run.stdout
    }

    /// Runs with `--json` and returns the document (checked to carry the
    /// shape version, which is left out).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with = vec!["--json"];
        with.extend_from_slice(args);
        let run = self.run(&with);
        assert_eq!(run.code, 0, "statelog {with:?} failed: {run:?}");
        run.doc()
    }

    /// Runs, asserts exit code `code` and an error message on stderr that
    /// contains every one of `needles`, and nothing on stdout; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32, needles: &[&str]) -> String {
        let run = self.run(args);
        check_failure(&run, args, code, needles);
        assert!(
            run.stdout.is_empty(),
            "statelog {args:?} wrote to stdout: {run:?}"
        );
        run.stderr
    }

    /// The store's files (log segments, identity) and its state as an export,
    /// to show a failed command changed nothing.
    pub fn fingerprint(&self) -> (BTreeMap<PathBuf, Vec<u8>>, String) {
        (
            durable_files(&self.store),
            self.ok(&["export", "--format", "jsonl"]),
        )
    }

    /// Asserts `f` leaves the store exactly as it was: the same log and
    /// identity bytes, and the same exported state (records, versions,
    /// revisions, times).
    pub fn unchanged(&self, f: impl FnOnce()) {
        let before = self.fingerprint();
        f();
        let after = self.fingerprint();
        assert_eq!(before.1, after.1, "the store's state changed");
        assert!(before.0 == after.0, "the store's log or identity changed");
    }
}

/// The shape version every `--json` document carries.
pub const SHAPE: u64 = 1;

/// One line of `--json` output: its shape version must be the first member
/// and [`SHAPE`]; the document without it.
pub fn without_shape(line: &str) -> serde_json::Value {
    assert!(
        line.starts_with(&format!("{{\"shape\":{SHAPE}")),
        "a --json document without its shape version first: {line}"
    );
    let mut doc: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {line}"));
    doc.as_object_mut().expect("an object").remove("shape");
    doc
}

/// Asserts a failed run: its exit code, and stderr starting with the error
/// line and containing `needles`.
pub fn check_failure(run: &Run, args: &[&str], code: i32, needles: &[&str]) {
    assert_eq!(
        run.code, code,
        "statelog {args:?}: wrong exit code: {run:?}"
    );
    assert!(
        run.stderr.starts_with("statelog: error: "),
        "statelog {args:?}: no error line: {run:?}"
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "statelog {args:?}: stderr lacks {needle:?}: {}",
            run.stderr
        );
    }
}

/// Every file of a store but the lock and the state database (redb rewrites
/// its header when opened; the log and the identity file change only with
/// commits), with its bytes.
pub fn durable_files(store: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![store.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the store directory") {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                stack.push(path);
            } else if name != "LOCK" && name != "state.redb" && !common_is_socket(&path) {
                out.insert(
                    path.clone(),
                    std::fs::read(&path).expect("read a store file"),
                );
            }
        }
    }
    out
}

/// True for the socket a store's holder serves on (it holds no data; a
/// crashed holder leaves it behind).
fn common_is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// A legacy state file (a JSON object of objects) with `n` members.
pub fn legacy_file(n: usize) -> String {
    let members: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "\"key-{i:06}\": {{\"i\": {i}, \"status\": \"done\", \"pad\": \"{}\"}}",
                "x".repeat(40)
            )
        })
        .collect();
    format!("{{{}}}", members.join(",\n"))
}
