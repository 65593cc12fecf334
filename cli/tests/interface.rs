//! The command line as a tool among others: help with the global flags under
//! their own heading and examples in every command's help, only the flags a
//! command uses, completions and a manual page made from the definition,
//! environment variables, the library's events with `-v` and `RUST_LOG`, a
//! version that names the formats, and `export --out` into a directory that
//! does not exist yet.

#[path = "cli/mod.rs"]
mod cli;

use std::process::{Command, Stdio};

use cli::{BIN, Scratch, without_shape};
use statelog::{Options, Store};

/// Every command, as `statelog help` lists them.
const COMMANDS: &[&str] = &[
    "watch",
    "wait",
    "history",
    "init",
    "get",
    "set",
    "patch",
    "incr",
    "del",
    "lock",
    "locks",
    "list",
    "stats",
    "export",
    "import",
    "backup",
    "restore",
    "check",
    "repair",
    "compact",
    "serve",
    "completions",
    "man",
];

/// The global flags.
const GLOBALS: &[&str] = &[
    "--store",
    "--wait",
    "--no-wait",
    "--json",
    "--quiet",
    "--verbose",
];

/// Whether a help text lists `flag` (as a word: `--json` is not
/// `--json-field`).
fn lists(help: &str, flag: &str) -> bool {
    help.split_whitespace()
        .any(|word| word.trim_end_matches([',', '.']) == flag)
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("STATELOG_STORE")
        .env_remove("STATELOG_WAIT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run statelog")
}

fn stdout_of(args: &[&str]) -> String {
    let out = bin(args);
    assert!(out.status.success(), "statelog {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The section of a help text under `heading`, up to the next heading (a
/// line that is not indented and ends with a colon).
fn section<'a>(help: &'a str, heading: &str) -> Option<&'a str> {
    let start = help.find(&format!("\n{heading}:\n"))? + heading.len() + 3;
    let rest = &help[start..];
    let mut end = 0;
    for line in rest.split_inclusive('\n') {
        let bare = line.trim_end();
        if !bare.is_empty() && !bare.starts_with(' ') && bare.ends_with(':') {
            break;
        }
        end += line.len();
    }
    Some(&rest[..end])
}

#[test]
fn the_list_of_commands_is_complete() {
    let help = stdout_of(&["--help"]);
    let listed = section(&help, "Commands").expect("a Commands section");
    for line in listed.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.is_empty() || name == "help" || !line.starts_with("  ") || line.starts_with("   ") {
            continue;
        }
        assert!(COMMANDS.contains(&name), "{name} is not in COMMANDS");
    }
    for name in COMMANDS {
        assert!(
            listed.contains(&format!("  {name} ")),
            "{name} missing: {listed}"
        );
    }
}

#[test]
fn every_help_has_its_global_flags_under_their_heading_and_examples() {
    let top = stdout_of(&["--help"]);
    let globals = section(&top, "Global options").expect("global options at the top");
    for flag in GLOBALS {
        assert!(lists(globals, flag), "top: {flag} not under Global options");
    }
    assert!(top.contains("\nExamples:\n"), "{top}");
    for name in COMMANDS {
        let help = stdout_of(&[name, "--help"]);
        assert!(help.contains("\nExamples:\n  statelog "), "{name}: {help}");
        let own = section(&help, "Options").unwrap_or("");
        for flag in GLOBALS {
            assert!(
                !lists(own, flag),
                "{name}: {flag} among the command's own options"
            );
        }
        // Exactly the global flags the command uses.
        let expected: &[&str] = match *name {
            "restore" => &GLOBALS[1..],
            "completions" | "man" => &[],
            _ => GLOBALS,
        };
        let shown = section(&help, "Global options").unwrap_or("");
        for flag in GLOBALS {
            assert_eq!(
                lists(shown, flag),
                expected.contains(flag),
                "{name}: {flag} in its help: {help}"
            );
        }
        // `statelog help NAME` says the same.
        assert_eq!(stdout_of(&["help", name]), help, "{name}");
    }
}

#[test]
fn a_flag_a_command_would_ignore_is_refused() {
    for args in [
        &["--store", "s", "restore", "b", "t"][..],
        &["restore", "--store", "s", "b", "t"],
        &["--json", "completions", "bash"],
        &["--store", "s", "man"],
    ] {
        let out = bin(args);
        assert_eq!(out.status.code(), Some(2), "statelog {args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let flag = args.iter().find(|a| a.starts_with("--")).unwrap();
        assert!(stderr.contains(flag), "statelog {args:?}: {stderr}");
    }
}

#[test]
fn version_names_the_formats() {
    let version = stdout_of(&["--version"]);
    for (what, n) in [
        ("store layout", statelog::STORE_FORMAT_VERSION),
        ("log format", u64::from(statelog::LOG_FORMAT_VERSION)),
        ("state schema", statelog::SCHEMA_VERSION),
        ("snapshot format", statelog::snapshot::FORMAT_VERSION),
        (
            "backup format",
            u64::from(statelog::backup::BACKUP_FORMAT_VERSION),
        ),
        ("wire protocol", u64::from(statelog::PROTOCOL_VERSION)),
    ] {
        assert!(
            version.contains(&format!("{what} {n}")),
            "{what} {n}: {version}"
        );
    }
    assert!(version.starts_with(&format!("statelog {} (", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn completions_cover_every_command_and_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        for name in COMMANDS {
            assert!(script.contains(name), "{shell}: {name} missing");
        }
        for flag in ["store", "wait", "no-wait", "if-version", "to-revision"] {
            assert!(script.contains(flag), "{shell}: --{flag} missing");
        }
    }
    // bash is on every machine this runs on: the script must parse and
    // register a completion for statelog.
    let script = stdout_of(&["completions", "bash"]);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{script}\ncomplete -p statelog"))
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("statelog"));
    assert_eq!(bin(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn the_man_pages_come_from_the_definition() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH statelog 1"), "{page}");
    for name in COMMANDS {
        assert!(page.contains(name), "{name} missing from statelog(1)");
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    stdout_of(&["man", "--dir", out_dir.to_str().unwrap()]);
    assert!(out_dir.join("statelog.1").is_file());
    for name in COMMANDS {
        let sub = std::fs::read_to_string(out_dir.join(format!("statelog-{name}.1")))
            .unwrap_or_else(|e| panic!("statelog-{name}.1: {e}"));
        assert!(
            sub.contains("Examples:"),
            "statelog-{name}.1 has no examples"
        );
    }
    let restore = std::fs::read_to_string(out_dir.join("statelog-restore.1")).unwrap();
    assert!(!restore.contains("\\-\\-store"), "{restore}");
}

#[test]
fn the_store_and_the_wait_come_from_the_environment() {
    let s = Scratch::new();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(s.dir.path())
            .env_remove("STATELOG_STORE")
            .env_remove("STATELOG_WAIT")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run statelog")
    };
    let store = s.store.to_str().unwrap();
    assert!(
        run(&["init"], &[("STATELOG_STORE", store)])
            .status
            .success()
    );
    assert!(s.store.join("STATELOG").is_file());
    assert!(
        run(&["set", "a", "b", "1"], &[("STATELOG_STORE", store)])
            .status
            .success()
    );
    // --store beats the environment.
    let other = s.dir.path().join("other");
    let out = run(
        &["--store", other.to_str().unwrap(), "get", "a", "b"],
        &[("STATELOG_STORE", store)],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let holder = Store::open(&s.store, Options::default().serve(false)).unwrap();
    let waited = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(5), "{out:?}");
        let doc = without_shape(String::from_utf8_lossy(&out.stderr).trim_end());
        doc["error"]["fields"]["waited"].as_u64().unwrap()
    };
    let from_env = waited(run(
        &["--json", "get", "a", "b"],
        &[("STATELOG_STORE", store), ("STATELOG_WAIT", "0.2")],
    ));
    assert!((200..30_000).contains(&from_env), "{from_env}");
    // --wait beats the environment.
    let from_flag = waited(run(
        &["--json", "get", "a", "b", "--wait", "0.6"],
        &[("STATELOG_STORE", store), ("STATELOG_WAIT", "100")],
    ));
    assert!((600..30_000).contains(&from_flag), "{from_flag}");
    let out = run(
        &["get", "a", "b"],
        &[("STATELOG_STORE", store), ("STATELOG_WAIT", "soon")],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    holder.close().unwrap();
}

#[test]
fn verbose_and_rust_log_show_the_librarys_events() {
    let s = Scratch::with_store();
    s.ok(&["set", "a", "b", "1"]);
    // The library warns after a second of waiting for a holder.
    let holder = Store::open(&s.store, Options::default().serve(false)).unwrap();
    let stderr = |extra: &[&str], rust_log: Option<&str>| {
        let mut args = vec!["get", "a", "b", "--wait", "1.5"];
        args.extend_from_slice(extra);
        let mut cmd = s.command(&args);
        cmd.env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        let out = cmd.output().expect("run statelog");
        assert_eq!(out.status.code(), Some(5), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The event: its target, then its message (the command's own error says
    // "waiting for the store" too).
    let event = "statelog::access: waiting for the store";
    let quiet = stderr(&[], None);
    assert!(!quiet.contains("statelog::access"), "{quiet}");
    let verbose = stderr(&["-v"], None);
    assert!(verbose.contains(event), "{verbose}");
    let logged = stderr(&[], Some("statelog=warn"));
    assert!(logged.contains(event), "{logged}");
    let off = stderr(&["-vv"], Some("off"));
    assert!(!off.contains("statelog::access"), "{off}");
    // With --json, the events are JSON lines too, and the error the last.
    let json = stderr(&["-v", "--json"], None);
    let lines: Vec<&str> = json.lines().collect();
    assert!(lines.len() >= 2, "{json}");
    for line in &lines {
        let doc: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(doc.is_object(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""target":"statelog::access""#)),
        "{json}"
    );
    assert_eq!(
        without_shape(lines[lines.len() - 1])["error"]["kind"],
        "busy"
    );
    holder.close().unwrap();
}

#[test]
fn export_creates_a_missing_directory_or_names_it() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", r#"{"status": "done"}"#]);
    let out = s.ok(&["export", "--format", "md", "--out", "dashboard/STATUS.md"]);
    assert!(
        out.contains("created the directory dashboard for dashboard/STATUS.md"),
        "{out}"
    );
    let md = std::fs::read_to_string(s.dir.path().join("dashboard/STATUS.md")).unwrap();
    assert!(md.contains("j1"), "{md}");
    let doc = s.json(&["export", "--out", "deeper/still/state.json"]);
    assert_eq!(doc["created_dir"], "deeper/still");
    let doc = s.json(&["export", "--out", "deeper/still/state.json"]);
    assert_eq!(doc["created_dir"], serde_json::Value::Null);

    // A directory that cannot be made (a file is in the way) is named, and
    // no temporary file is.
    std::fs::write(s.dir.path().join("blocker"), b"a file").unwrap();
    let err = s.fails(
        &["export", "--out", "blocker/sub/state.json"],
        1,
        &["cannot create the directory blocker/sub for --out blocker/sub/state.json"],
    );
    assert!(!err.contains(".tmp-"), "{err}");
    // A file that cannot be written (here: its name leaves no room for the
    // temporary file's): the error names the file asked for.
    let long = format!("{}.json", "x".repeat(245));
    let err = s.fails(&["export", "--out", &long], 1, &["cannot write xxxx"]);
    assert!(!err.contains(".tmp-"), "{err}");
}
