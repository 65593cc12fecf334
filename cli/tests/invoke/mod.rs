//! Running the `statelog` binary from a test: one invocation in a directory,
//! with nothing from the caller's environment that would pick a store.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_statelog");

/// What one invocation did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Its output as one JSON document.
    #[allow(dead_code)]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `statelog ARGS` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("STATELOG_STORE")
        .stdin(Stdio::null())
        .output()
        .expect("run statelog");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `statelog ARGS` in `dir` and expects exit 0.
#[allow(dead_code)]
pub fn ok(dir: &Path, args: &[&str]) -> Run {
    let r = run(dir, args);
    assert_eq!(r.code, 0, "statelog {args:?}: {}\n{}", r.stdout, r.stderr);
    r
}
