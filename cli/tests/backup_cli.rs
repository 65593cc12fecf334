//! The recovery commands of the `statelog` binary: `backup`, `restore`,
//! `check`, `repair` and `compact`, their exit codes and `--json` reports,
//! and the README's "recover the jobs namespace as it was at 10:00".

use std::time::Duration;

use statelog::Timestamp;

mod invoke;
use invoke::{ok, run};

#[test]
fn recover_a_namespace_as_it_was_at_a_point_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["--store", "state", "init"]);
    ok(
        dir,
        &[
            "--store",
            "state",
            "set",
            "jobs",
            "build",
            r#"{"status": "queued"}"#,
        ],
    );
    ok(
        dir,
        &["--store", "state", "set", "tasks", "t1", r#"{"n": 1}"#],
    );
    let first = ok(dir, &["--store", "state", "--json", "backup", "backup"]).json();
    assert_eq!(first["full"], true);
    assert_eq!(first["revision"], 2);
    std::thread::sleep(Duration::from_millis(20));
    let ten_o_clock = Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(20));
    // The bad deploy.
    ok(
        dir,
        &[
            "--store",
            "state",
            "patch",
            "jobs",
            "build",
            "status=garbage",
        ],
    );
    ok(
        dir,
        &[
            "--store",
            "state",
            "set",
            "jobs",
            "deploy",
            r#"{"status": "garbage"}"#,
        ],
    );
    ok(
        dir,
        &["--store", "state", "set", "tasks", "t1", r#"{"n": 2}"#],
    );
    let second = ok(dir, &["--store", "state", "--json", "backup", "backup"]).json();
    assert_eq!(
        (second["full"].clone(), second["revision"].clone()),
        (false.into(), 5.into())
    );
    assert!(second["log_bytes_copied"].as_u64().unwrap() > 0);

    // The README's recipe.
    let restored = ok(
        dir,
        &[
            "--json",
            "restore",
            "backup",
            "scratch",
            "--to-time",
            &ten_o_clock,
        ],
    )
    .json();
    assert_eq!(restored["revision"], 2);
    // The first backup carried the store's whole log: no base, two commits.
    assert_eq!(restored["commits_replayed"], 2);
    ok(
        dir,
        &[
            "--store",
            "scratch",
            "export",
            "--ns",
            "jobs",
            "--out",
            "jobs.json",
        ],
    );
    ok(
        dir,
        &["--store", "state", "import", "jobs.json", "--overwrite"],
    );
    let build = ok(
        dir,
        &[
            "--store", "state", "get", "jobs", "build", "--field", "status",
        ],
    );
    assert_eq!(build.stdout.trim(), "queued");
    // Merge never deletes, and other namespaces are left as they are.
    let t1 = ok(
        dir,
        &["--store", "state", "get", "tasks", "t1", "--field", "n"],
    );
    assert_eq!(t1.stdout.trim(), "2");

    // A second restore into the same place is refused (exit 3) unless asked.
    let again = run(dir, &["restore", "backup", "scratch"]);
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert!(again.stderr.contains("overwrite"), "{}", again.stderr);
    let replaced = ok(
        dir,
        &[
            "--json",
            "restore",
            "backup",
            "scratch",
            "--to-revision",
            "4",
            "--overwrite",
        ],
    )
    .json();
    assert_eq!(replaced["revision"], 4);
    // Paths are as given on the command line (relative to its directory).
    assert!(dir.join(replaced["replaced"].as_str().unwrap()).is_dir());
}

#[test]
fn check_repair_and_compact_report_and_exit_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["--store", "state", "init"]);
    for i in 0..20 {
        ok(
            dir,
            &[
                "--store",
                "state",
                "incr",
                "jobs",
                &format!("j{}", i % 4),
                "runs",
            ],
        );
    }
    let report = ok(dir, &["--store", "state", "--json", "check"]).json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["kind"], "store");
    assert_eq!(report["state"]["revision"], 20);
    assert_eq!(report["state"]["compared"]["how"], "full");
    let human = ok(dir, &["--store", "state", "check"]);
    assert!(
        human.stdout.contains("ok: no problems found"),
        "{}",
        human.stdout
    );
    ok(dir, &["--store", "state", "backup", "backup"]);
    let backup = ok(dir, &["--json", "check", "--backup", "backup"]).json();
    assert_eq!(
        (backup["ok"].clone(), backup["kind"].clone()),
        (true.into(), "backup".into())
    );

    // A flipped byte in the middle of the log.
    let segment = std::fs::read_dir(dir.join("state/log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[end / 2] ^= 0x10;
    std::fs::write(&segment, bytes).unwrap();
    let failed = run(dir, &["--store", "state", "--json", "check"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let report = failed.json();
    assert_eq!(report["ok"], false);
    let problem = &report["problems"][0];
    assert_eq!(
        dir.join(problem["file"].as_str().unwrap()),
        segment,
        "{problem}"
    );
    assert!(problem["offset"].as_u64().is_some());
    assert!(
        problem["action"]
            .as_str()
            .unwrap()
            .contains("statelog repair")
    );
    let human = run(dir, &["--store", "state", "check"]);
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains("problem: "), "{}", human.stdout);

    // The state database's checkpoint (revision 20) is past the damage: the
    // log is re-based on it and nothing is lost.
    let repaired = ok(dir, &["--store", "state", "--json", "repair"]).json();
    assert_eq!(repaired["lost"]["kind"], "nothing");
    assert_eq!(repaired["revision"], 20);
    assert!(dir.join(repaired["aside"].as_str().unwrap()).is_dir());
    ok(dir, &["--store", "state", "check"]);
    let runs = ok(
        dir,
        &["--store", "state", "get", "jobs", "j3", "--field", "runs"],
    );
    assert_eq!(runs.stdout.trim(), "5");

    let compacted = ok(dir, &["--store", "state", "--json", "compact"]).json();
    assert_eq!(compacted["revision"], 20);
    assert!(compacted["state_bytes_after"].as_u64().unwrap() > 0);

    // No store there: exit 1 with the usual advice.
    let missing = run(dir, &["--store", "nowhere", "check"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("statelog init"),
        "{}",
        missing.stderr
    );
}
