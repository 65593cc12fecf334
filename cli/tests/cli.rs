//! The `statelog` command line, driven as a user would: every command and
//! flag, the `--json` shapes, the exit codes, and bad input that must leave
//! the store unchanged. Tests with several processes are in
//! `cli_processes.rs`.

#[path = "cli/mod.rs"]
mod cli;

use cli::{BIN, Scratch, check_failure};
use serde_json::json;

// ---------------------------------------------------------------------------
// Store selection and init

#[test]
fn only_init_creates_a_store() {
    let s = Scratch::new();
    let err = s.fails(
        &["get", "jobs", "j1"],
        1,
        &["no statelog store", "statelog init"],
    );
    assert!(err.contains("given by --store"), "{err}");
    assert!(!s.store.exists(), "get created the store directory");
    for args in [
        vec!["set", "jobs", "j1", "1"],
        vec!["patch", "jobs", "j1", "a=1"],
        vec!["incr", "jobs", "j1", "n"],
        vec!["del", "jobs", "j1"],
        vec!["list"],
        vec!["stats"],
        vec!["export"],
    ] {
        s.fails(&args, 1, &["statelog init"]);
        assert!(!s.store.exists(), "{args:?} created the store directory");
    }
    // An empty directory is not a store either, and stays empty.
    std::fs::create_dir(&s.store).unwrap();
    s.fails(&["get", "jobs", "j1"], 1, &["statelog init"]);
    assert_eq!(std::fs::read_dir(&s.store).unwrap().count(), 0);

    assert!(s.ok(&["init"]).contains("created an empty store"));
    assert!(s.ok(&["init"]).contains("already a store"));
    let doc = s.json(&["init"]);
    assert_eq!(doc["created"], false);
    assert_eq!(doc["revision"], 0);
    assert_eq!(doc["id"].as_str().unwrap().len(), 32);
    assert!(s.ok(&["-q", "init"]).is_empty());

    // A directory holding something else is refused, and left alone.
    let other = s.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let run = std::process::Command::new(BIN)
        .args(["--store", other.to_str().unwrap(), "init"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("holds other files"));
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}

#[test]
fn the_store_comes_from_the_flag_the_environment_or_the_default() {
    let s = Scratch::new();
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(args)
            .current_dir(s.dir.path())
            .env_remove("STATELOG_STORE");
        if let Some(env) = env {
            cmd.env("STATELOG_STORE", env);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // The default: ./.statelog in the working directory.
    assert_eq!(run(&["init", "-q"], None).0, Some(0));
    assert!(s.dir.path().join(".statelog/STATELOG").is_file());
    assert_eq!(run(&["set", "ns", "k", "\"default\""], None).0, Some(0));
    // The environment.
    assert_eq!(run(&["init", "-q"], Some("from-env")).0, Some(0));
    assert_eq!(
        run(&["set", "ns", "k", "\"env\""], Some("from-env")).0,
        Some(0)
    );
    // The flag wins over the environment.
    assert_eq!(
        run(
            &["--store", ".statelog", "get", "ns", "k"],
            Some("from-env")
        )
        .1,
        "\"default\"\n"
    );
    assert_eq!(run(&["get", "ns", "k"], Some("from-env")).1, "\"env\"\n");
    assert_eq!(run(&["get", "ns", "k"], None).1, "\"default\"\n");
    // Global flags go before or after the subcommand.
    assert_eq!(
        run(&["get", "ns", "k", "--store", "from-env"], None).1,
        "\"env\"\n"
    );
    let out = std::process::Command::new(BIN)
        .args(["get", "ns", "k"])
        .current_dir(s.dir.path())
        .env("STATELOG_STORE", "missing")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given by $STATELOG_STORE"));
}

// ---------------------------------------------------------------------------
// get and set

#[test]
fn get_prints_the_value_as_export_writes_it() {
    let s = Scratch::with_store();
    let value = r#"{"status": "running", "n": 3, "ratio": 0.5, "big": {"$int": "18446744073709551615"}, "bin": {"$bin": "AAH/"}, "name": "é \"q\"", "tags": ["a", null], "meta": {"host": "node7"}}"#;
    assert_eq!(s.ok(&["-q", "set", "jobs", "j1", value]), "");
    let printed = s.ok(&["get", "jobs", "j1"]);
    // Pretty, in stored order, with escapes for what JSON cannot hold.
    assert!(
        printed.starts_with("{\n  \"status\": \"running\",\n  \"n\": 3,\n"),
        "{printed}"
    );
    assert!(
        printed.contains("\n  \"big\": {\"$int\": \"18446744073709551615\"},\n"),
        "{printed}"
    );
    // The same text as the record's value in a JSON export.
    let export = s.ok(&["export", "--format", "json"]);
    let indented: String = printed.trim_end().replace('\n', "\n        ");
    assert!(
        export.contains(&format!("\"value\": {indented}")),
        "{export}\n{printed}"
    );
    // What get prints, set reads back to the same bytes.
    let before = s.ok(&["export", "--format", "jsonl"]);
    s.ok(&["set", "jobs", "j2", &printed]);
    let j2: serde_json::Value = serde_json::from_str(&s.ok(&["get", "jobs", "j2"])).unwrap();
    let j1: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(j1, j2);
    assert!(before.contains("\"bin\":{\"$bin\":\"AAH/\"}"), "{before}");

    let meta: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "jobs", "j1", "--meta"])).unwrap();
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["create_revision"], 1);
    assert_eq!(meta["mod_revision"], 1);
    assert!(meta["updated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(meta["value"], j1);

    let doc = s.json(&["get", "jobs", "j1"]);
    assert_eq!(doc["namespace"], "jobs");
    assert_eq!(doc["key"], "j1");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["value"], j1);
    assert_eq!(doc["updated_at"], meta["updated_at"]);
    assert_eq!(
        s.run(&["--json", "get", "jobs", "j1"])
            .stdout
            .lines()
            .count(),
        1
    );
}

#[test]
fn get_field_prints_one_field_raw() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", r#"{"status": "running", "n": 50, "ok": true, "none": null, "meta": {"host": "node 7", "a.b": "dotted"}, "list": [1, {"x": "y"}]}"#]);
    let field = |path: &str| s.ok(&["get", "jobs", "j1", "--field", path]);
    assert_eq!(field("status"), "running\n");
    assert_eq!(field("n"), "50\n");
    assert_eq!(field("ok"), "true\n");
    assert_eq!(field("none"), "null\n");
    assert_eq!(field("meta.host"), "node 7\n");
    assert_eq!(field("meta"), "{\"host\":\"node 7\",\"a.b\":\"dotted\"}\n");
    assert_eq!(field(r"meta.a\.b"), "dotted\n");
    assert_eq!(field("list.1.x"), "y\n");
    let doc = s.json(&["get", "jobs", "j1", "--field", "status"]);
    assert_eq!(
        doc,
        json!({"namespace": "jobs", "key": "j1", "version": 1, "field": "status", "value": "running"})
    );

    s.fails(
        &["get", "jobs", "j1", "--field", "meta.port"],
        4,
        &["no field meta.port"],
    );
    s.fails(
        &["get", "jobs", "j1", "--field", "status.x"],
        4,
        &["status is a string"],
    );
    s.fails(&["get", "jobs", "nope"], 4, &["jobs/nope does not exist"]);
    s.fails(
        &["get", "jobs", "nope", "--field", "x"],
        4,
        &["does not exist"],
    );
    let run = s.run(&["get", "jobs", "j1", "--field", "a..b"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("empty field name"), "{run:?}");
    let run = s.run(&["get", "jobs", "j1", "--field", "x", "--meta"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn set_replaces_values_with_preconditions() {
    let s = Scratch::with_store();
    assert_eq!(
        s.ok(&["set", "jobs", "j1", "{\"a\": 1}"]),
        "set jobs/j1: version 1 (revision 1)\n"
    );
    let doc = s.json(&["set", "jobs", "j1", "{\"a\": 2}", "--if-version", "1"]);
    assert_eq!(
        doc,
        json!({"namespace": "jobs", "key": "j1", "version": 2, "revision": 2})
    );
    s.unchanged(|| {
        s.fails(
            &["set", "jobs", "j1", "{\"a\": 3}", "--if-version", "1"],
            3,
            &[
                "did not set jobs/j1",
                "expected version 1, but it is at version 2",
            ],
        );
        s.fails(
            &["set", "jobs", "j1", "{\"a\": 3}", "--create-only"],
            3,
            &["expected it to be absent"],
        );
        s.fails(
            &["set", "jobs", "new", "{\"a\": 3}", "--if-version", "4"],
            3,
            &["does not exist"],
        );
    });
    assert_eq!(
        s.json(&["set", "jobs", "j3", "[1]", "--create-only"])["version"],
        1
    );
    assert_eq!(
        s.json(&["set", "jobs", "j4", "1", "--if-version", "0"])["version"],
        1
    );
    // From stdin.
    let run = s.run_with_stdin(&["set", "jobs", "j5", "-"], "{\"from\": \"stdin\"}\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(s.ok(&["get", "jobs", "j5", "--field", "from"]), "stdin\n");
    // Negative numbers are values, not flags.
    s.ok(&["set", "jobs", "neg", "-5"]);
    assert_eq!(s.ok(&["get", "jobs", "neg"]), "-5\n");
    let run = s.run(&[
        "set",
        "jobs",
        "j1",
        "1",
        "--if-version",
        "1",
        "--create-only",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn set_refuses_invalid_json_and_changes_nothing() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", "{\"a\": 1}"]);
    s.unchanged(|| {
        s.fails(
            &["set", "jobs", "j1", "{\"a\": "],
            1,
            &["not valid JSON", "the JSON ends early"],
        );
        s.fails(
            &["set", "jobs", "j1", "running"],
            1,
            &["not valid JSON", "'\"running\"'"],
        );
        s.fails(
            &["set", "jobs", "j1", "{\"a\": 1} x"],
            1,
            &["line 1, column 10"],
        );
        s.fails(
            &["set", "jobs", "j1", "{\"a\": 1, \"a\": 2}"],
            1,
            &["twice"],
        );
        s.fails(
            &["set", "jobs", "j1", "{\"$nope\": 1}"],
            1,
            &["unknown escape"],
        );
        let beyond = "9".repeat(2467);
        s.fails(
            &["set", "jobs", "j1", &beyond],
            1,
            &["beyond the integers statelog stores"],
        );
        s.fails(&["set", "jobs", "j1", ""], 1, &["not valid JSON"]);
        let run = s.run_with_stdin(&["set", "jobs", "j1", "-"], "{\n  \"a\": [1,,2]\n}");
        check_failure(&run, &["set", "-"], 1, &["line 2, column 11"]);
        // An invalid key is a usage error.
        let run = s.run(&["set", "jobs", "bad\tkey", "1"]);
        check_failure(&run, &["set"], 2, &["invalid key"]);
        let run = s.run(&["get", "", "k"]);
        check_failure(&run, &["get"], 2, &["invalid namespace"]);
    });
}

// ---------------------------------------------------------------------------
// patch and incr

#[test]
fn patch_sets_typed_fields() {
    let s = Scratch::with_store();
    let out = s.ok(&[
        "patch",
        "jobs",
        "job42",
        "status=running",
        "progress=50",
        "meta.host=node7",
    ]);
    assert_eq!(out, "patched jobs/job42: version 1 (revision 1)\n");
    s.ok(&[
        "patch",
        "jobs",
        "job42",
        "progress=75",
        "ok=true",
        "err=null",
        "ratio=0.5",
        "code=\"50\"",
        "zip=007",
        "empty=",
        "meta.port=8080",
        "text=hello world",
        r"a\.b=dotted",
        "eq=x=y",
    ]);
    let doc = s.json(&[
        "patch",
        "jobs",
        "job42",
        "--json-field",
        "cfg={\"retries\": 3, \"tags\": [\"a\"]}",
        "status=done",
    ]);
    let expected = json!({
        "status": "done", "progress": 75, "meta": {"host": "node7", "port": 8080},
        "ok": true, "err": null, "ratio": 0.5, "code": "50", "zip": "007", "empty": "",
        "text": "hello world", "a.b": "dotted", "eq": "x=y", "cfg": {"retries": 3, "tags": ["a"]},
    });
    assert_eq!(doc["value"], expected);
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["revision"], 3);
    // Fields keep their order: existing ones in place, new ones appended.
    let got = s.ok(&["get", "jobs", "job42"]);
    let order: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("  \""))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "status", "progress", "meta", "ok", "err", "ratio", "code", "zip", "empty", "text",
            "a.b", "eq", "cfg"
        ]
    );
    // Types survive: a float stays a float, an integer an integer.
    assert_eq!(s.ok(&["get", "jobs", "job42", "--field", "ratio"]), "0.5\n");
    s.ok(&["patch", "jobs", "job42", "whole=2.0"]);
    assert_eq!(s.ok(&["get", "jobs", "job42", "--field", "whole"]), "2.0\n");
}

#[test]
fn patch_refuses_bad_expressions_and_shapes_and_changes_nothing() {
    let s = Scratch::with_store();
    s.ok(&["patch", "jobs", "j1", "status=running", "list=[1]"]);
    s.ok(&["set", "jobs", "scalar", "\"just text\""]);
    s.unchanged(|| {
        s.fails(
            &["patch", "jobs", "j1", "status"],
            2,
            &["is not FIELD=VALUE"],
        );
        s.fails(&["patch", "jobs", "j1", "=5"], 2, &["empty field name"]);
        s.fails(&["patch", "jobs", "j1", "a..b=5"], 2, &["empty field name"]);
        s.fails(
            &["patch", "jobs", "j1", "ok=1", "--json-field", "cfg"],
            2,
            &["is not FIELD=VALUE"],
        );
        s.fails(
            &["patch", "jobs", "j1", "status.detail=x"],
            1,
            &[
                "jobs/j1 was not changed",
                "field status is a string (\"running\"), not an object",
            ],
        );
        s.fails(
            &["patch", "jobs", "j1", "ok=1", "list.x=1"],
            1,
            &["field list is a string"],
        );
        s.fails(
            &["patch", "jobs", "scalar", "a=1"],
            1,
            &["the record's value is a string", "statelog set"],
        );
        s.fails(
            &["patch", "jobs", "j1", "--json-field", "cfg={\"a\": }"],
            1,
            &["--json-field cfg is not valid"],
        );
        s.fails(
            &["patch", "jobs", "j1", "q=\"unterminated"],
            1,
            &["not one JSON string"],
        );
        let beyond = format!("n={}", "9".repeat(2467));
        s.fails(&["patch", "jobs", "j1", &beyond], 1, &["quote it"]);
        let run = s.run(&["patch", "jobs", "j1"]);
        assert_eq!(run.code, 2, "{run:?}");
        // Not created either.
        s.fails(
            &["patch", "jobs", "new", "a.b=1", "a.b.c=2"],
            1,
            &["field a.b is a number"],
        );
    });
    assert_eq!(s.run(&["get", "jobs", "new"]).code, 4);
}

#[test]
fn incr_adds_to_numeric_fields() {
    let s = Scratch::with_store();
    assert_eq!(s.ok(&["incr", "jobs", "counter", "n"]), "1\n");
    assert_eq!(s.ok(&["incr", "jobs", "counter", "n", "5"]), "6\n");
    assert_eq!(s.ok(&["incr", "jobs", "counter", "n", "-10"]), "-4\n");
    assert_eq!(s.ok(&["incr", "jobs", "counter", "stats.ok"]), "1\n");
    assert_eq!(
        s.ok(&["incr", "jobs", "counter", "ratio", "0.25"]),
        "0.25\n"
    );
    assert_eq!(s.ok(&["incr", "jobs", "counter", "n", "0.5"]), "-3.5\n");
    let doc = s.json(&["incr", "jobs", "counter", "stats.ok", "2"]);
    assert_eq!(
        doc,
        json!({"namespace": "jobs", "key": "counter", "version": 7, "revision": 7, "field": "stats.ok", "value": 3})
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&s.ok(&["get", "jobs", "counter"])).unwrap(),
        json!({"n": -3.5, "stats": {"ok": 3}, "ratio": 0.25})
    );
    // Up to the largest 64-bit integer, and no further.
    s.ok(&["set", "jobs", "big", &format!("{{\"n\": {}}}", i64::MAX)]);
    assert_eq!(
        s.ok(&["incr", "jobs", "big", "n"]),
        format!("{}\n", i64::MAX as u64 + 1)
    );
    s.ok(&[
        "set",
        "jobs",
        "max",
        "{\"n\": {\"$int\": \"18446744073709551615\"}}",
    ]);
    s.ok(&[
        "set",
        "jobs",
        "text",
        "{\"n\": \"5\", \"nothing\": null, \"s\": \"x\"}",
    ]);
    s.ok(&["set", "jobs", "list", "[1, 2]"]);
    s.unchanged(|| {
        s.fails(
            &["incr", "jobs", "max", "n"],
            1,
            &["jobs/max was not changed", "beyond the 64-bit integers"],
        );
        s.fails(
            &["incr", "jobs", "text", "n"],
            1,
            &["n: it is a string (\"5\"), not a number"],
        );
        s.fails(
            &["incr", "jobs", "text", "nothing"],
            1,
            &["it is null, not a number"],
        );
        s.fails(
            &["incr", "jobs", "text", "s.deeper"],
            1,
            &["field s is a string"],
        );
        s.fails(
            &["incr", "jobs", "list", "n"],
            1,
            &["the record's value is an array"],
        );
        s.fails(
            &["incr", "jobs", "counter", "n", "lots"],
            2,
            &["not a number"],
        );
        s.fails(
            &["incr", "jobs", "counter", "n", "99999999999999999999"],
            2,
            &["not a number"],
        );
        s.fails(
            &["incr", "jobs", "counter", "a..b"],
            2,
            &["empty field name"],
        );
    });
}

// ---------------------------------------------------------------------------
// del, list, stats

#[test]
fn del_with_and_without_a_version() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "a", "1"]);
    s.ok(&["set", "jobs", "a", "2"]);
    s.ok(&["set", "jobs", "b", "1"]);
    s.unchanged(|| {
        s.fails(
            &["del", "jobs", "a", "--if-version", "1"],
            3,
            &[
                "did not delete jobs/a",
                "expected version 1, but it is at version 2",
            ],
        );
        s.fails(
            &["del", "jobs", "gone", "--if-version", "1"],
            4,
            &["jobs/gone does not exist"],
        );
        assert_eq!(
            s.ok(&["del", "jobs", "gone"]),
            "jobs/gone does not exist; nothing to delete\n"
        );
        assert_eq!(
            s.json(&["del", "jobs", "gone"]),
            json!({"namespace": "jobs", "key": "gone", "deleted": false})
        );
    });
    assert_eq!(
        s.ok(&["del", "jobs", "a", "--if-version", "2"]),
        "deleted jobs/a (it was at version 2; revision 4)\n"
    );
    assert_eq!(
        s.json(&["del", "jobs", "b"]),
        json!({"namespace": "jobs", "key": "b", "deleted": true, "version": 1, "revision": 5})
    );
    s.fails(&["get", "jobs", "a"], 4, &["does not exist"]);
}

#[test]
fn list_and_stats_show_what_the_store_holds() {
    let s = Scratch::with_store();
    assert_eq!(s.ok(&["list"]), "the store holds no records\n");
    assert_eq!(s.ok(&["list", "jobs"]), "jobs holds no records\n");
    s.ok(&["patch", "jobs", "build-1", "status=done"]);
    s.ok(&["patch", "jobs", "build-2", "status=running"]);
    s.ok(&["patch", "jobs", "test-1", "status=queued"]);
    s.ok(&["set", "hosts", "node7", "\"up\""]);
    let table = s.ok(&["list", "jobs"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("KEY ") && lines[0].ends_with("VALUE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("build-1 ") && lines[1].ends_with(" {\"status\":\"done\"}"),
        "{table}"
    );
    assert_eq!(
        s.ok(&["list", "jobs", "--keys"]),
        "build-1\nbuild-2\ntest-1\n"
    );
    assert_eq!(
        s.ok(&["list", "jobs", "--keys", "--prefix", "build-"]),
        "build-1\nbuild-2\n"
    );
    let doc = s.json(&["list", "jobs", "--prefix", "build-"]);
    assert_eq!(doc["namespace"], "jobs");
    assert_eq!(doc["revision"], 4);
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["key"], "build-2");
    assert_eq!(records[1]["value"], json!({"status": "running"}));
    assert_eq!(records[1]["version"], 1);
    assert_eq!(records[1]["mod_revision"], 2);
    assert_eq!(
        s.json(&["list", "jobs", "--keys"]),
        json!({"namespace": "jobs", "revision": 4, "keys": ["build-1", "build-2", "test-1"]})
    );
    assert_eq!(s.ok(&["list"]), "hosts  1 record\njobs   3 records\n");
    assert_eq!(
        s.json(&["list"]),
        json!({"revision": 4, "namespaces": [
        {"namespace": "hosts", "records": 1}, {"namespace": "jobs", "records": 3}]})
    );
    assert_eq!(s.run(&["list", "--prefix", "b"]).code, 2);

    let stats = s.json(&["stats"]);
    assert_eq!(stats["revision"], 4);
    assert_eq!(stats["checkpoint_revision"], 4);
    assert_eq!(stats["records"], 4);
    assert_eq!(
        stats["namespaces"][1],
        json!({"namespace": "jobs", "records": 3})
    );
    assert!(stats["disk_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["replayed_on_open"], 0);
    assert_eq!(stats["id"], s.json(&["init"])["id"]);
    let text = s.ok(&["stats"]);
    assert!(text.contains("revision   4 (checkpoint at 4)"), "{text}");
    assert!(text.contains("records    4 in 2 namespaces"), "{text}");
}

// ---------------------------------------------------------------------------
// export and import

#[test]
fn export_writes_every_format_to_stdout_or_a_file() {
    let s = Scratch::with_store();
    s.ok(&["patch", "jobs", "build-1", "status=done", "progress=100"]);
    s.ok(&["patch", "jobs", "test-1", "status=queued", "progress=0"]);
    s.ok(&["set", "hosts", "node7", "{\"up\": true}"]);
    let json_doc: serde_json::Value = serde_json::from_str(&s.ok(&["export"])).unwrap();
    assert_eq!(json_doc["format"], "statelog-snapshot");
    assert_eq!(json_doc["revision"], 3);
    assert_eq!(
        json_doc["namespaces"]["jobs"]["build-1"]["value"]["progress"],
        100
    );
    assert_eq!(
        s.ok(&["export", "--format", "json-compact"])
            .lines()
            .count(),
        1
    );
    let lines = s.ok(&["export", "--format", "jsonl", "--ns", "jobs"]);
    assert_eq!(lines.lines().count(), 4, "{lines}");
    assert_eq!(lines.lines().last(), Some("{\"records\":2}"));
    let md = s.ok(&[
        "export",
        "--format",
        "md",
        "--ns",
        "jobs",
        "--prefix",
        "build-",
        "--columns",
        "progress",
    ]);
    assert!(
        md.contains("| key | version | updated | progress |"),
        "{md}"
    );
    assert!(
        md.contains("### build-1") && !md.contains("### test-1") && !md.contains("## hosts"),
        "{md}"
    );
    // Two exports of the same state are the same bytes.
    assert_eq!(
        s.ok(&["export", "--format", "md"]),
        s.ok(&["export", "--format", "md"])
    );

    // To a file: the format from the extension, a summary on stdout.
    let out = s.ok(&["export", "--out", "STATE.md"]);
    assert!(
        out.starts_with("exported 3 records in 2 namespaces at revision 3 to STATE.md ("),
        "{out}"
    );
    let file = std::fs::read_to_string(s.dir.path().join("STATE.md")).unwrap();
    assert_eq!(file, s.ok(&["export", "--format", "md"]));
    let doc = s.json(&["export", "-o", "state.jsonl", "--ns", "hosts"]);
    assert_eq!(doc["format"], "jsonl");
    assert_eq!(doc["records"], 1);
    assert_eq!(doc["namespaces"], 1);
    assert_eq!(doc["revision"], 3);
    assert_eq!(
        doc["bytes"].as_u64().unwrap(),
        std::fs::metadata(s.dir.path().join("state.jsonl"))
            .unwrap()
            .len()
    );
    // Only the file is left: no temporary file beside it.
    let names: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    // A failed export leaves an existing file alone.
    std::fs::write(s.dir.path().join("keep.json"), "old").unwrap();
    s.fails(
        &["export", "-o", "keep.json", "--ns", "bad\nns"],
        2,
        &["invalid namespace"],
    );
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("keep.json")).unwrap(),
        "old"
    );
    assert_eq!(s.run(&["export", "--format", "yaml"]).code, 2);
}

#[test]
fn export_writes_html_pages_that_import_refuses() {
    let s = Scratch::with_store();
    s.ok(&[
        "patch",
        "jobs",
        "<b>build</b>",
        "status=done",
        "progress=100",
    ]);
    s.ok(&["set", "hosts", "node7", "{\"up\": true}"]);
    let page = s.ok(&["export", "--format", "html", "--columns", "progress"]);
    assert!(page.starts_with("<!DOCTYPE html>\n"), "{page}");
    assert!(page.contains("<td>&lt;b&gt;build&lt;/b&gt;</td>"), "{page}");
    assert!(
        page.contains("<th>progress</th><th class=\"v\">value</th>"),
        "{page}"
    );
    assert_eq!(
        page,
        s.ok(&["export", "--format", "html", "--columns", "progress"])
    );
    // The format from the extension, .html or .htm.
    for name in ["dash.html", "DASH.HTM"] {
        let doc = s.json(&["export", "-o", name]);
        assert_eq!(doc["format"], "html");
        assert_eq!(doc["records"], 2);
        let file = std::fs::read_to_string(s.dir.path().join(name)).unwrap();
        assert_eq!(file, s.ok(&["export", "--format", "html"]));
    }
    // Export only: import refuses it by extension or by --format, and
    // writes nothing.
    s.unchanged(|| {
        s.fails(
            &["import", "dash.html"],
            1,
            &["did not import dash.html", "export-only", "JSON"],
        );
        let run = s.run_with_stdin(&["import", "-", "--format", "html"], &page);
        check_failure(
            &run,
            &["import", "-", "--format", "html"],
            1,
            &["export-only"],
        );
    });
}

#[test]
fn import_restores_and_merges_snapshots() {
    let s = Scratch::with_store();
    s.ok(&["patch", "jobs", "j1", "status=running"]);
    s.ok(&["patch", "jobs", "j1", "status=done"]);
    s.ok(&["patch", "jobs", "j2", "status=queued"]);
    for (format, file) in [("json", "s.json"), ("jsonl", "s.jsonl"), ("md", "s.md")] {
        s.ok(&["export", "--format", format, "-o", file]);
        // Restore into a new store: the same state, byte for byte.
        let copy = Scratch::with_store();
        let path = s.dir.path().join(file);
        let out = copy.ok(&["import", path.to_str().unwrap(), "--mode", "restore"]);
        assert!(
            out.contains("read 2 records") && out.contains("wrote 2 records"),
            "{out}"
        );
        assert_eq!(
            copy.ok(&["export", "--format", format]),
            std::fs::read_to_string(&path).unwrap()
        );
        assert_eq!(copy.json(&["get", "jobs", "j1"])["version"], 2);
    }
    // From stdin, with the format named.
    let copy = Scratch::with_store();
    let md = std::fs::read_to_string(s.dir.path().join("s.md")).unwrap();
    let run = copy.run_with_stdin(
        &[
            "--json", "import", "-", "--format", "md", "--mode", "restore",
        ],
        &md,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.doc(),
        json!({"file": "stdin", "format": "md", "mode": "restore", "records": 2,
        "written": 2, "unchanged": 0, "revision": 3, "applied": true, "replayed": false,
        "conflicts": []})
    );

    // Restoring into a store with commits is refused.
    s.unchanged(|| {
        s.fails(
            &["import", "s.json", "--mode", "restore"],
            3,
            &["--mode merge", "not empty"],
        );
    });
    // Merging the same state writes nothing.
    let doc = s.json(&["import", "s.json", "--check-versions"]);
    assert_eq!(
        (
            doc["written"].clone(),
            doc["unchanged"].clone(),
            doc["revision"].clone()
        ),
        (json!(0), json!(2), json!(null))
    );
    // An edited file merges; a stale one conflicts.
    let edited = std::fs::read_to_string(s.dir.path().join("s.json"))
        .unwrap()
        .replace("\"queued\"", "\"cancelled\"");
    std::fs::write(s.dir.path().join("edited.json"), &edited).unwrap();
    s.ok(&["patch", "jobs", "j1", "note=changed meanwhile"]);
    s.unchanged(|| {
        // Stale records are refused by default; --check-versions says so too.
        let run = s.run(&["import", "edited.json"]);
        assert_eq!(run.code, 3, "{run:?}");
        let run = s.run(&["import", "edited.json", "--check-versions"]);
        check_failure(
            &run,
            &["import"],
            3,
            &["nothing was imported", "--skip-conflicts"],
        );
        assert!(
            run.stdout
                .contains("conflict: jobs/j1: the file has version 2, the store has version 3"),
            "{run:?}"
        );
        let run = s.run(&["--json", "import", "edited.json", "--check-versions"]);
        assert_eq!(run.code, 3);
        assert_eq!(
            run.doc()["conflicts"],
            json!([{"namespace": "jobs", "key": "j1", "expected": 2, "actual": 3}])
        );
        assert_eq!(run.doc()["applied"], false);
    });
    let doc = s.json(&[
        "import",
        "edited.json",
        "--check-versions",
        "--skip-conflicts",
    ]);
    assert_eq!(
        (doc["written"].clone(), doc["applied"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(
        s.ok(&["get", "jobs", "j2", "--field", "status"]),
        "cancelled\n"
    );
    assert_eq!(
        s.ok(&["get", "jobs", "j1", "--field", "note"]),
        "changed meanwhile\n"
    );
    // Asked to, a merge overwrites.
    s.ok(&["import", "edited.json", "--overwrite"]);
    assert_eq!(s.run(&["get", "jobs", "j1", "--field", "note"]).code, 4);
}

#[test]
fn import_refuses_bad_input_and_changes_nothing() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", "1"]);
    s.ok(&["export", "-o", "good.json"]);
    let good = std::fs::read_to_string(s.dir.path().join("good.json")).unwrap();
    std::fs::write(s.dir.path().join("cut.json"), &good[..good.len() / 2]).unwrap();
    let broken = good.replace(
        "\"version\": 1,\n        \"create",
        "\"version\": 1\n        \"create",
    );
    assert_ne!(broken, good);
    std::fs::write(s.dir.path().join("broken.json"), broken).unwrap();
    std::fs::write(s.dir.path().join("text.md"), "# notes\n\njust notes\n").unwrap();
    s.unchanged(|| {
        s.fails(
            &["import", "cut.json"],
            1,
            &["did not import cut.json", "ends early"],
        );
        s.fails(
            &["import", "broken.json"],
            1,
            &["line 10, column 9", "a comma is missing"],
        );
        s.fails(
            &["import", "text.md"],
            1,
            &["did not import text.md", "invalid snapshot"],
        );
        s.fails(
            &["import", "missing.json"],
            1,
            &["cannot open missing.json"],
        );
        let run = s.run_with_stdin(&["import", "-"], "[1, 2]");
        check_failure(
            &run,
            &["import", "-"],
            1,
            &["did not import stdin", "starts with \"format\""],
        );
        assert_eq!(
            s.run(&["import", "good.json", "--skip-conflicts", "--overwrite"])
                .code,
            2
        );
        assert_eq!(s.run(&["import", "good.json", "--mode", "replace"]).code, 2);
        assert_eq!(s.run(&["import", "good.json", "--legacy"]).code, 2);
        assert_eq!(
            s.run(&["import", "good.json", "--normalize", "lower"]).code,
            2
        );
    });
}

#[test]
fn import_legacy_state_files() {
    let s = Scratch::with_store();
    let file = r#"{"WWW.Example.com": {"a.md": {"hash": "1"}}, "example.com": {"b.md": {"hash": "2"}, "a.md": {"hash": "3"}}, "other.org": {}}"#;
    std::fs::write(s.dir.path().join("sync_state.json"), file).unwrap();
    let args = [
        "import",
        "sync_state.json",
        "--legacy",
        "--ns",
        "sync",
        "--normalize",
        "lower,strip-www,dots-to-hyphens",
    ];
    s.unchanged(|| {
        let run = s.run(&args);
        check_failure(&run, &args, 3, &["1 key collides", "--merge-collisions"]);
        assert!(
            run.stdout.contains(
                "collision: example-com <- WWW.Example.com, example.com (both set: a.md)"
            ),
            "{run:?}"
        );
        assert!(
            run.stdout.contains("renamed: other.org -> other-org"),
            "{run:?}"
        );
    });
    let mut merge = args.to_vec();
    merge.extend(["--merge-collisions", "--json"]);
    let doc = s.json(&merge);
    assert_eq!(doc["members"], 3);
    assert_eq!(doc["records"], 2);
    assert_eq!(doc["written"], 2);
    assert_eq!(doc["applied"], true);
    assert_eq!(
        doc["renamed"][0],
        json!({"from": "WWW.Example.com", "to": "example-com"})
    );
    assert_eq!(
        doc["collisions"],
        json!([{"key": "example-com", "sources": ["WWW.Example.com", "example.com"], "clashing_fields": ["a.md"]}])
    );
    assert_eq!(
        s.ok(&["get", "sync", "example-com", "--field", r"a\.md.hash"]),
        "3\n"
    );
    assert_eq!(
        s.ok(&["list", "sync", "--keys"]),
        "example-com\nother-org\n"
    );
    s.unchanged(|| {
        std::fs::write(s.dir.path().join("bad.json"), "{\"a\": 1,}").unwrap();
        s.fails(
            &["import", "bad.json", "--legacy", "--ns", "sync"],
            1,
            &["line 1, column 8"],
        );
        let run = s.run(&[
            "import",
            "sync_state.json",
            "--legacy",
            "--ns",
            "bad\u{1}ns",
        ]);
        check_failure(&run, &["import"], 2, &["invalid namespace"]);
    });
}

// ---------------------------------------------------------------------------
// Usage, help, output

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let s = Scratch::with_store();
    for args in [
        vec!["frobnicate"],
        vec!["get", "jobs"],
        vec!["get", "jobs", "k", "--bogus"],
        vec!["--wait", "soon", "get", "jobs", "k"],
        vec!["--wait", "-1", "get", "jobs", "k"],
        vec!["set", "jobs", "k", "1", "--if-version", "x"],
        vec!["incr", "jobs", "k"],
        vec!["import"],
        vec![],
    ] {
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("error") || run.stderr.contains("Usage"),
            "{args:?}: {run:?}"
        );
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    let help = s.ok(&["--help"]);
    for needle in [
        "init",
        "get",
        "set",
        "patch",
        "incr",
        "del",
        "list",
        "stats",
        "export",
        "import",
        "Exit codes",
        "--wait",
        "--no-wait",
        "--json",
        "STATELOG_STORE",
    ] {
        assert!(help.contains(needle), "help lacks {needle}: {help}");
    }
    assert!(s.ok(&["patch", "--help"]).contains("FIELD=VALUE"));
    assert!(s.ok(&["--version"]).starts_with("statelog "));
}

#[test]
fn quiet_silences_confirmations_only() {
    let s = Scratch::with_store();
    assert_eq!(s.ok(&["-q", "set", "jobs", "j1", "{\"n\": 1}"]), "");
    assert_eq!(s.ok(&["-q", "patch", "jobs", "j1", "a=1"]), "");
    assert_eq!(s.ok(&["-q", "del", "jobs", "nope"]), "");
    // What was asked for is still printed.
    assert_eq!(s.ok(&["-q", "incr", "jobs", "j1", "n"]), "2\n");
    assert_eq!(s.ok(&["-q", "get", "jobs", "j1", "--field", "a"]), "1\n");
    assert_eq!(s.json(&["-q", "get", "jobs", "j1"])["version"], 3);
}
