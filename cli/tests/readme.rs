//! Every code block of the README is tested. Rust blocks are the library's
//! doctests (`src/lib.rs` includes the README); Python blocks run in
//! `python/tests/test_readme.py`; here:
//!
//! - every `sh` block runs, in order, with bash (`set -eo pipefail`) against
//!   the `statelog` built for this test, unless the line before it is
//!   `<!-- not run: REASON -->` with a reason;
//! - the `toml` block is a working dependency on the library that brings no
//!   command-line crate;
//! - the `json` block is what the command it follows prints.
//!
//! Nothing in a block is rewritten: the blocks run in a scratch home
//! directory (`HOME`, `TMPDIR`), with `STATELOG_STORE` naming a store there
//! (as the README's jobs name theirs in their environment), `JOB_NAME` set
//! (as a scheduler sets it), and the built binary first on `PATH`.

#[path = "cli/mod.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cli::BIN;

/// One fenced block of the README.
#[derive(Debug)]
struct Block {
    /// Its language (the fence's info string).
    lang: String,
    /// The README line of its opening fence.
    line: usize,
    text: String,
    /// Why it is not run, from the marker before it.
    not_run: Option<String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// The README's fenced blocks (fences may be indented, as in a list).
fn blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let indent = lines[i].len() - trimmed.len();
        if let Some(lang) = trimmed.strip_prefix("```") {
            let not_run = i
                .checked_sub(1)
                .and_then(|p| lines[p].trim().strip_prefix("<!-- not run:"))
                .map(|r| r.trim_end_matches("-->").trim().to_owned());
            let start = i;
            let mut text = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim_start() != "```" {
                text.push_str(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
                text.push('\n');
                i += 1;
            }
            out.push(Block {
                lang: lang.trim().to_owned(),
                line: start + 1,
                text,
                not_run,
            });
        }
        i += 1;
    }
    out
}

#[test]
fn every_block_is_tested_or_says_why_not() {
    let blocks = blocks();
    assert!(blocks.len() > 10, "{blocks:?}");
    for b in &blocks {
        match (b.lang.as_str(), &b.not_run) {
            ("sh", Some(reason)) => assert!(
                reason.len() > 10,
                "README line {}: say why the block is not run",
                b.line
            ),
            // Run here, by the doctests or by the Python tests; a `no_run`
            // Rust block (it needs a cluster) is still compiled by the doctests.
            ("sh" | "rust" | "rust,no_run" | "python" | "toml" | "json", None) => {}
            (lang, _) => panic!(
                "README line {}: a ```{lang} block that no test runs (a marker is only for sh)",
                b.line
            ),
        }
    }
}

#[test]
fn the_shell_blocks_run_against_a_real_store() {
    let home = tempfile::Builder::new()
        .prefix("statelog-readme-")
        .tempdir()
        .expect("a scratch home");
    let home = home.path();
    std::fs::create_dir(home.join("tmp")).unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let store = home.join("state");
    let env = |cmd: &mut Command| {
        cmd.current_dir(home)
            .env("HOME", home)
            .env("TMPDIR", home.join("tmp"))
            .env("STATELOG_STORE", &store)
            .env("JOB_NAME", "nightly-build")
            .env("PATH", &path)
            .env_remove("STATELOG_WAIT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
    };
    let mut init = Command::new(BIN);
    init.arg("init");
    env(&mut init);
    let created = init.output().unwrap();
    assert!(created.status.success(), "{created:?}");

    let mut ran = 0;
    for b in blocks() {
        if b.lang != "sh" || b.not_run.is_some() {
            continue;
        }
        // `wait`: a block that starts a background job ends with it.
        let script = format!("set -eo pipefail\n{}\nwait\n", b.text);
        let mut bash = Command::new("bash");
        bash.arg("-c").arg(&script);
        env(&mut bash);
        let out = bash.output().expect("run bash");
        assert!(
            out.status.success(),
            "README line {}: the block failed ({}):\n{}\nstdout:\n{}\nstderr:\n{}",
            b.line,
            out.status,
            b.text,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 6, "only {ran} blocks ran");
    // What the blocks did is there: the job's record, the dashboard, the
    // backup and the restored store.
    let mut get = Command::new(BIN);
    get.args(["get", "jobs", "nightly-build", "--field", "status"]);
    env(&mut get);
    let status = get.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "completed\n");
    assert!(home.join("dashboard/STATUS.md").is_file());
    assert!(home.join("dashboard/index.html").is_file());
    assert!(home.join("backups/state/MANIFEST").is_file());
    assert!(home.join("state-new/STATELOG").is_file());
    assert!(home.join("statelog.bash").is_file());
}

#[test]
fn the_json_example_is_what_the_command_prints() {
    let example = blocks()
        .into_iter()
        .find(|b| b.lang == "json")
        .expect("a json block");
    let s = cli::Scratch::with_store();
    s.ok(&["set", "config", "pipeline", r#"{"window": 7}"#]);
    let run = s.run(&[
        "--json",
        "set",
        "config",
        "pipeline",
        r#"{"window": 8}"#,
        "--if-version",
        "3",
    ]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr, example.text);
}

#[test]
fn the_dependency_block_brings_the_library_and_no_command_line_crate() {
    let block = blocks()
        .into_iter()
        .find(|b| b.lang == "toml")
        .expect("a toml block");
    // The block depends on a checkout beside the project; here the checkout
    // is this repository.
    let dependency = block
        .text
        .lines()
        .find(|l| l.starts_with("statelog = "))
        .expect("a statelog dependency");
    assert!(
        dependency.contains(r#"path = "../statelog""#),
        "{dependency}"
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[package]\nname = \"uses-statelog\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
         [workspace]\n\n{}",
        block.text.replace(
            "../statelog",
            &repo().display().to_string().replace('\\', "/")
        )
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
    // The lock file pins what this workspace is tested with, so that the
    // tree resolves offline.
    std::fs::copy(repo().join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
        .current_dir(dir.path())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{tree}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.lines().any(|l| l.starts_with("statelog v")), "{tree}");
    for crate_name in ["clap", "anyhow", "indicatif", "tracing-subscriber"] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(&format!("{crate_name} v"))),
            "{crate_name} in the library's tree:\n{tree}"
        );
    }
}
