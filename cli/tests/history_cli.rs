//! `watch`, `wait`, `history` and `--at-revision`/`--at-time` of the
//! `statelog` binary: what a CI step waiting for a job, a dashboard
//! following changes and an operator reading the past see.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod invoke;
use invoke::{BIN, Run};

/// `statelog --store DIR/state ARGS` in `dir`.
fn run(dir: &Path, args: &[&str]) -> Run {
    let store = dir.join("state");
    let store = store.to_str().expect("a UTF-8 path");
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    invoke::run(dir, &all)
}

fn ok(dir: &Path, args: &[&str]) -> Run {
    let r = run(dir, args);
    assert_eq!(r.code, 0, "statelog {args:?}: {}\n{}", r.stdout, r.stderr);
    r
}

fn json(r: &Run) -> Vec<Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn store_with_a_job() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    ok(tmp.path(), &["init"]);
    for status in ["queued", "running", "done"] {
        ok(
            tmp.path(),
            &["patch", "jobs", "build", &format!("status={status}")],
        );
    }
    ok(
        tmp.path(),
        &["set", "jobs", "test", r#"{"status":"queued"}"#],
    );
    ok(tmp.path(), &["del", "jobs", "test"]);
    tmp
}

#[test]
fn history_lists_every_version_with_revision_time_and_value() {
    let tmp = store_with_a_job();
    let dir = tmp.path();
    let docs = json(&ok(dir, &["--json", "history", "jobs", "build"]));
    assert_eq!(docs.len(), 1);
    let versions = docs[0]["versions"].as_array().unwrap();
    let seen: Vec<(u64, &str)> = versions
        .iter()
        .map(|v| {
            (
                v["revision"].as_u64().unwrap(),
                v["value"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, vec![(1, "queued"), (2, "running"), (3, "done")]);
    let deleted = json(&ok(dir, &["--json", "history", "jobs", "test"]));
    let versions = deleted[0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["deleted"], true);
    assert_eq!(versions[1]["revision"], 5);
    let plain = ok(dir, &["history", "jobs", "build"]).stdout;
    assert_eq!(plain.lines().count(), 3, "{plain}");
    assert!(
        plain.lines().nth(1).unwrap().contains(r#""running""#),
        "{plain}"
    );
    assert_eq!(run(dir, &["history", "jobs", "never"]).code, 4);
}

#[test]
fn get_list_and_export_read_the_past_by_revision_and_by_time() {
    let tmp = store_with_a_job();
    let dir = tmp.path();
    let r = ok(
        dir,
        &[
            "get",
            "jobs",
            "build",
            "--field",
            "status",
            "--at-revision",
            "2",
        ],
    );
    assert_eq!(r.stdout.trim(), "running");
    // At revision 4 the test job existed; now it does not.
    let r = ok(dir, &["list", "jobs", "--keys", "--at-revision", "4"]);
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), vec!["build", "test"]);
    assert_eq!(ok(dir, &["list", "jobs", "--keys"]).stdout.trim(), "build");
    assert_eq!(
        run(dir, &["get", "jobs", "test", "--at-revision", "1"]).code,
        4
    );
    // An export at a revision is the export that was taken then.
    let tmp2 = tempfile::tempdir().unwrap();
    ok(tmp2.path(), &["init"]);
    ok(tmp2.path(), &["patch", "jobs", "build", "status=queued"]);
    ok(tmp2.path(), &["patch", "jobs", "build", "status=running"]);
    let then = ok(tmp2.path(), &["export"]).stdout;
    ok(tmp2.path(), &["patch", "jobs", "build", "status=done"]);
    assert_eq!(
        ok(tmp2.path(), &["export", "--at-revision", "2"]).stdout,
        then
    );
    // By time: the commits before the third one's time.
    let history = json(&ok(dir, &["--json", "history", "jobs", "build"]));
    let third = history[0]["versions"][2]["time"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = ok(
        dir,
        &[
            "get",
            "jobs",
            "build",
            "--field",
            "status",
            "--at-time",
            &third,
        ],
    );
    assert_eq!(r.stdout.trim(), "running");
    // After the present, and with both flags: refused.
    let r = run(dir, &["get", "jobs", "build", "--at-revision", "99"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("after the store's current revision"),
        "{}",
        r.stderr
    );
    assert_eq!(
        run(
            dir,
            &[
                "get",
                "jobs",
                "build",
                "--at-revision",
                "1",
                "--at-time",
                &third
            ]
        )
        .code,
        2
    );
    let stats = json(&ok(dir, &["--json", "stats"]));
    assert_eq!(stats[0]["first_revision"], 1);
}

#[test]
fn watch_prints_json_lines_and_runs_a_command_per_event() {
    let tmp = store_with_a_job();
    let dir = tmp.path();
    let docs = json(&ok(
        dir,
        &[
            "--json", "watch", "jobs", "--rev", "2", "--count", "4", "--prev",
        ],
    ));
    let seen: Vec<(u64, &str, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["revision"].as_u64().unwrap(),
                d["key"].as_str().unwrap(),
                d["event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (2, "build", "put"),
            (3, "build", "put"),
            (4, "test", "put"),
            (5, "test", "delete")
        ]
    );
    assert_eq!(docs[0]["shape"], 1);
    assert_eq!(docs[0]["prev"]["status"], "queued");
    assert_eq!(docs[2]["prev"], Value::Null);
    assert_eq!(docs[3]["prev"]["status"], "queued");
    // One key, a prefix.
    let r = ok(
        dir,
        &["watch", "jobs", "test", "--rev", "1", "--count", "2"],
    );
    assert_eq!(r.stdout.lines().count(), 2);
    assert!(r.stdout.starts_with("4 "), "{}", r.stdout);
    let r = ok(
        dir,
        &[
            "watch", "jobs", "--prefix", "bu", "--rev", "1", "--count", "3",
        ],
    );
    assert!(
        r.stdout.lines().all(|l| l.contains("jobs/build")),
        "{}",
        r.stdout
    );
    // A command per event, with the event in its environment.
    let r = ok(
        dir,
        &[
            "watch",
            "jobs",
            "build",
            "--rev",
            "1",
            "--count",
            "3",
            "--",
            "sh",
            "-c",
            r#"echo "$STATELOG_REVISION $STATELOG_EVENT $STATELOG_KEY $STATELOG_VALUE""#,
        ],
    );
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        vec![
            r#"1 put build {"status":"queued"}"#,
            r#"2 put build {"status":"running"}"#,
            r#"3 put build {"status":"done"}"#
        ]
    );
    // A failing command stops the watch, naming where to resume.
    let r = run(
        dir,
        &[
            "watch",
            "jobs",
            "--rev",
            "2",
            "--",
            "sh",
            "-c",
            r#"test "$STATELOG_REVISION" != 3"#,
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--rev 3"), "{}", r.stderr);
}

#[test]
fn watch_from_revision_0_starts_with_the_first_commit() {
    let tmp = store_with_a_job();
    let docs = json(&ok(
        tmp.path(),
        &["--json", "watch", "--rev", "0", "--count", "1"],
    ));
    assert_eq!(docs[0]["revision"], 1);
    assert_eq!(docs[0]["value"]["status"], "queued");
}

#[test]
fn wait_returns_when_the_condition_holds_and_exits_7_on_timeout() {
    let tmp = store_with_a_job();
    let dir = tmp.path().to_owned();
    // Already true: at once.
    let r = ok(
        &dir,
        &["--json", "wait", "jobs", "build", "--until", "status=done"],
    );
    assert_eq!(json(&r)[0]["value"]["status"], "done");
    // Never true: exit 7 after the timeout.
    let r = run(
        &dir,
        &[
            "wait",
            "jobs",
            "build",
            "--until",
            "status=failed",
            "--timeout",
            "300ms",
        ],
    );
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("did not hold"), "{}", r.stderr);
    let r = run(
        &dir,
        &[
            "--json",
            "wait",
            "jobs",
            "x",
            "--until",
            "a=1",
            "--timeout",
            "50ms",
        ],
    );
    assert_eq!(r.code, 7);
    assert!(r.stderr.contains("timed_out"), "{}", r.stderr);
    // Becomes true later, written by other invocations (through the waiting
    // process, which holds the store meanwhile).
    let waiter = Command::new(BIN)
        .arg("--store")
        .arg(dir.join("state"))
        .args([
            "wait",
            "jobs",
            "deploy",
            "--until",
            "ready=true",
            "--timeout",
            "60s",
        ])
        .env_remove("STATELOG_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ok(&dir, &["patch", "jobs", "deploy", "ready=false"]);
    ok(&dir, &["patch", "jobs", "deploy", "ready=true", "step=2"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""step":2"#), "{text}");
}
