//! The `--json` contract (README, "JSON output"): every command prints one
//! document on stdout whose first member is `"shape": 1`, with exactly the
//! documented members; durations are integer milliseconds named `duration`;
//! every error is one JSON object on one line of stderr, with its kind, its
//! exit code (the one the process exits with), its message, its causes and
//! its fields, and nothing on stdout.

#[path = "cli/mod.rs"]
mod cli;

use std::collections::BTreeSet;

use cli::{Run, Scratch, without_shape};
use serde_json::{Value, json};
use statelog::{Options, Store};

/// The members of a document, sorted.
fn members(doc: &Value) -> BTreeSet<String> {
    doc.as_object()
        .unwrap_or_else(|| panic!("not an object: {doc}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Runs with `--json`, asserts success and one line, returns the document
/// without its shape member.
fn doc(s: &Scratch, args: &[&str]) -> Value {
    let mut with = vec!["--json"];
    with.extend_from_slice(args);
    let run = s.run(&with);
    assert_eq!(run.code, 0, "statelog {with:?}: {run:?}");
    assert!(run.stderr.is_empty(), "statelog {with:?}: {run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    without_shape(run.stdout.trim_end())
}

fn assert_members(what: &str, doc: &Value, expected: &[&str]) {
    assert_eq!(members(doc), set(expected), "{what}: {doc}");
}

#[test]
fn every_command_prints_its_documented_shape() {
    let s = Scratch::new();
    assert_members(
        "init",
        &doc(&s, &["init"]),
        &["store", "id", "created", "revision"],
    );
    assert_members(
        "set",
        &doc(
            &s,
            &["set", "jobs", "j1", r#"{"status": "queued", "n": 1}"#],
        ),
        &["namespace", "key", "version", "revision"],
    );
    assert_members(
        "patch",
        &doc(&s, &["patch", "jobs", "j1", "status=running"]),
        &["namespace", "key", "version", "revision", "value"],
    );
    assert_members(
        "incr",
        &doc(&s, &["incr", "jobs", "j1", "n"]),
        &["namespace", "key", "version", "revision", "field", "value"],
    );
    assert_members(
        "get",
        &doc(&s, &["get", "jobs", "j1"]),
        &[
            "namespace",
            "key",
            "version",
            "create_revision",
            "mod_revision",
            "updated_at",
            "value",
        ],
    );
    assert_members(
        "get --field",
        &doc(&s, &["get", "jobs", "j1", "--field", "status"]),
        &["namespace", "key", "version", "field", "value"],
    );
    let list = doc(&s, &["list", "jobs"]);
    assert_members("list NS", &list, &["namespace", "revision", "records"]);
    assert_members(
        "list NS: a record",
        &list["records"][0],
        &[
            "key",
            "version",
            "create_revision",
            "mod_revision",
            "updated_at",
            "value",
        ],
    );
    assert_members(
        "list NS --keys",
        &doc(&s, &["list", "jobs", "--keys"]),
        &["namespace", "revision", "keys"],
    );
    assert_members("list", &doc(&s, &["list"]), &["revision", "namespaces"]);
    assert_members(
        "stats",
        &doc(&s, &["stats"]),
        &[
            "store",
            "id",
            "revision",
            "checkpoint_revision",
            "records",
            "namespaces",
            "disk_bytes",
            "replayed_on_open",
            "first_revision",
        ],
    );
    let export = doc(&s, &["export", "--out", "state.json"]);
    assert_members(
        "export --out",
        &export,
        &[
            "format",
            "out",
            "created_dir",
            "revision",
            "namespaces",
            "records",
            "bytes",
        ],
    );
    assert_members(
        "import",
        &doc(&s, &["import", "state.json"]),
        &[
            "file",
            "format",
            "mode",
            "records",
            "written",
            "unchanged",
            "revision",
            "applied",
            "replayed",
            "conflicts",
        ],
    );
    std::fs::write(s.dir.path().join("legacy.json"), r#"{"A.com": {"n": 1}}"#).unwrap();
    assert_members(
        "import --legacy",
        &doc(
            &s,
            &[
                "import",
                "legacy.json",
                "--legacy",
                "--ns",
                "sites",
                "--normalize",
                "lower",
            ],
        ),
        &[
            "file",
            "namespace",
            "members",
            "records",
            "written",
            "unchanged",
            "renamed",
            "collisions",
            "revision",
            "applied",
            "replayed",
        ],
    );
    let backup = doc(&s, &["backup", "bk"]);
    assert_members(
        "backup",
        &backup,
        &[
            "destination",
            "store_id",
            "full",
            "base_revision",
            "revision",
            "time",
            "base_records",
            "bytes_copied",
            "log_bytes_copied",
            "segments_copied",
            "backup_bytes",
            "duration",
        ],
    );
    // `restore` takes no --store (its store is TARGET).
    let run = s.run_without_store(&["--json", "restore", "bk", "restored"]);
    assert_eq!(run.code, 0, "{run:?}");
    let restore = run.doc();
    assert_members(
        "restore",
        &restore,
        &[
            "target",
            "store_id",
            "backup_store_id",
            "base_revision",
            "base_records",
            "revision",
            "time",
            "commits_replayed",
            "replaced",
            "duration",
        ],
    );
    let check = doc(&s, &["check"]);
    assert_members(
        "check",
        &check,
        &[
            "ok", "path", "kind", "store_id", "problems", "notes", "log", "state", "duration",
        ],
    );
    assert_members(
        "check: log",
        &check["log"],
        &[
            "segments",
            "bytes",
            "first_revision",
            "last_revision",
            "commits",
            "reaches_start",
        ],
    );
    assert_members(
        "check: state",
        &check["state"],
        &[
            "revision",
            "time",
            "records",
            "integrity",
            "compared",
            "namespaces",
        ],
    );
    assert_eq!(check["state"]["integrity"], json!({"result": "passed"}));
    assert_eq!(check["state"]["compared"]["how"], "full");
    let check_backup = doc(&s, &["check", "--backup", "bk"]);
    assert_eq!(check_backup["kind"], "backup");
    let repair = doc(&s, &["repair"]);
    assert_members(
        "repair",
        &repair,
        &[
            "path",
            "store_id",
            "found",
            "actions",
            "aside",
            "moved",
            "lost",
            "revision",
            "unrepaired",
            "duration",
        ],
    );
    assert_eq!(repair["lost"], json!({"kind": "nothing"}));
    let compact = doc(&s, &["compact"]);
    assert_members(
        "compact",
        &compact,
        &[
            "revision",
            "segments_removed",
            "log_bytes_removed",
            "segments_held_for_backup",
            "log_bytes",
            "state_bytes_before",
            "state_bytes_after",
            "duration",
        ],
    );
    assert_members(
        "del",
        &doc(&s, &["del", "jobs", "j1"]),
        &["namespace", "key", "deleted", "version", "revision"],
    );
    // One unit for durations: whole milliseconds, always named `duration`.
    for (what, d) in [
        ("backup", &backup),
        ("restore", &restore),
        ("check", &check),
        ("repair", &repair),
        ("compact", &compact),
    ] {
        assert!(d["duration"].is_u64(), "{what}: {d}");
        assert!(d.get("seconds").is_none(), "{what}: {d}");
    }
}

#[test]
fn serve_prints_its_events_with_the_shape() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let s = Scratch::with_store();
    let mut serve = s
        .command(&["--json", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let started = without_shape(&lines.next().unwrap().unwrap());
    assert_eq!(started["http"], Value::Null);
    assert_members(
        "serve: started",
        &started,
        &["event", "store", "id", "pid", "revision", "http"],
    );
    // SAFETY: kill with a valid pid and signal number.
    assert_eq!(unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) }, 0);
    let stopped = without_shape(&lines.next().unwrap().unwrap());
    assert_members(
        "serve: stopped",
        &stopped,
        &["event", "signal", "revision", "commits"],
    );
    assert!(serve.wait().unwrap().success());
}

/// Asserts the run failed with exactly one JSON error object on stderr and
/// nothing on stdout; returns its `error` member.
fn error(run: &Run, kind: &str, code: i32) -> Value {
    assert_eq!(run.code, code, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    let doc = without_shape(run.stderr.trim_end());
    assert_members("error document", &doc, &["error"]);
    let error = &doc["error"];
    assert_members(
        "error",
        error,
        &["kind", "exit_code", "message", "causes", "fields"],
    );
    assert_eq!(error["kind"], kind, "{error}");
    assert_eq!(error["exit_code"], code, "{error}");
    assert!(!error["message"].as_str().unwrap().is_empty(), "{error}");
    assert!(error["causes"].is_array(), "{error}");
    error.clone()
}

#[test]
fn every_error_is_one_json_object_with_its_kind_code_and_fields() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", r#"{"n": 1}"#]);

    let e = error(&s.run(&["--json", "get", "jobs", "nope"]), "not_found", 4);
    assert!(e["message"].as_str().unwrap().contains("jobs/nope"), "{e}");

    let e = error(
        &s.run(&["--json", "set", "jobs", "j1", "2", "--if-version", "7"]),
        "conflict",
        3,
    );
    assert_eq!(
        e["fields"],
        json!({"namespace": "jobs", "key": "j1", "expected": 7, "actual": 1, "attempts": 1})
    );
    assert!(!e["causes"].as_array().unwrap().is_empty(), "{e}");

    let e = error(&s.run(&["--json", "get", "jobs"]), "usage", 2);
    assert!(e["message"].as_str().unwrap().contains("<KEY>"), "{e}");
    assert!(
        e["fields"]["usage"]
            .as_str()
            .unwrap()
            .starts_with("statelog get"),
        "{e}"
    );
    // Also when --json comes after the command, and for a bad key.
    error(&s.run(&["get", "--bogus", "--json"]), "usage", 2);
    let e = error(&s.run(&["--json", "get", "jobs", ""]), "invalid_key", 2);
    assert_eq!(e["fields"]["part"], "key", "{e}");

    std::fs::write(s.dir.path().join("bad.json"), "{\n  \"format\": 7,\n").unwrap();
    let e = error(
        &s.run(&["--json", "import", "bad.json"]),
        "invalid_snapshot",
        1,
    );
    assert!(e["fields"]["line"].is_u64(), "{e}");

    let missing = s.dir.path().join("missing");
    let e = error(
        &s.run(&[
            "--json",
            "--store",
            missing.to_str().unwrap(),
            "get",
            "jobs",
            "j1",
        ]),
        "not_a_store",
        1,
    );
    assert_eq!(e["fields"]["path"], missing.to_str().unwrap(), "{e}");

    // Busy, from a holder in this process that does not serve: the wait is
    // in milliseconds.
    let holder = Store::open(&s.store, Options::default().serve(false)).unwrap();
    let e = error(
        &s.run(&["--json", "get", "jobs", "j1", "--wait", "0.3"]),
        "busy",
        5,
    );
    let waited = e["fields"]["waited"].as_u64().unwrap();
    assert!((300..30_000).contains(&waited), "{e}");
    assert_eq!(e["fields"]["pid"], std::process::id(), "{e}");
    holder.close().unwrap();
}

#[test]
fn a_refused_import_prints_its_report_and_one_error() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", "1"]);
    s.ok(&["export", "--out", "old.json"]);
    s.ok(&["set", "jobs", "j1", "2"]);
    let run = s.run(&["--json", "import", "old.json", "--check-versions"]);
    let report = without_shape(run.stdout.trim_end());
    assert_eq!(report["applied"], false);
    let e = error(
        &Run {
            stdout: String::new(),
            ..run
        },
        "conflict",
        3,
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("nothing was imported"),
        "{e}"
    );
}
