//! Locks, leases, fencing and idempotency keys through the command line, with
//! real processes: many `statelog lock`s at once, one killed, one stopped past
//! its TTL, and a CI step retried with one idempotency key.

#[path = "cli/mod.rs"]
mod cli;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cli::{BIN, Scratch, check_failure};

fn wait_for(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill takes a pid (or a negative process group) and a signal.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// A `statelog lock` child whose CMD is `script` (sh), in its own process
/// group.
fn lock(s: &Scratch, args: &[&str], script: &str) -> Child {
    let mut command = s.command(&["lock"]);
    command
        .args(args)
        .args(["--", "sh", "-c", script])
        .env("BIN", BIN)
        .env("DIR", s.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command.spawn().expect("start statelog lock")
}

/// 16 processes run `statelog lock sync -- CMD` at once, CMD writing a line
/// when it starts and one when it ends: never two inside, every one ran, and
/// the tokens strictly increase in the order they ran.
#[test]
fn sixteen_lock_processes_take_turns() {
    const PROCESSES: usize = 16;
    let s = Scratch::with_store();
    let script = r#"echo "start $STATELOG_LOCK_TOKEN" >> "$DIR/log"
sleep 0.05
echo "end $STATELOG_LOCK_TOKEN" >> "$DIR/log""#;
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| lock(&s, &["sync", "--ttl", "20", "--wait", "5m"], script))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "statelog lock failed: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::read_to_string(s.dir.path().join("log")).unwrap();
    let lines: Vec<(&str, u64)> = log
        .lines()
        .map(|l| {
            let (what, token) = l.split_once(' ').unwrap();
            (what, token.parse().unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 2 * PROCESSES, "{log}");
    let mut last = 0;
    for pair in lines.chunks(2) {
        assert_eq!(pair[0].0, "start", "two inside at once:\n{log}");
        assert_eq!(pair[1], ("end", pair[0].1), "two inside at once:\n{log}");
        assert!(pair[0].1 > last, "tokens not increasing:\n{log}");
        last = pair[0].1;
    }
    assert_eq!(s.ok(&["locks"]), "no locks are held\n");
}

/// The `statelog lock` process SIGKILLed while its command runs: the lock
/// stays held (the next process that opens the store gives the lease a full
/// TTL from then) and frees itself one TTL later, not before.
#[test]
fn a_killed_lock_process_frees_its_lock_after_its_ttl() {
    const TTL: Duration = Duration::from_secs(2);
    let s = Scratch::with_store();
    let mut first = lock(
        &s,
        &["sync", "--ttl", "2"],
        r#"echo $$ > "$DIR/cmd.pid"; exec sleep 60"#,
    );
    wait_for(&s.dir.path().join("cmd.pid"), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(100));
    signal(first.id() as i32, libc::SIGKILL);
    first.wait().unwrap();
    let killed = Instant::now();
    let cmd: i32 = std::fs::read_to_string(s.dir.path().join("cmd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    signal(cmd, libc::SIGKILL);

    let run = s.run(&["lock", "sync", "--no-wait", "--", "true"]);
    check_failure(
        &run,
        &["lock", "sync", "--no-wait"],
        5,
        &["did not get lock sync", "is held by statelog lock"],
    );
    let locks = s.json(&["locks"]);
    assert_eq!(locks["locks"][0]["name"], "sync", "{locks}");
    let run = s.run(&["lock", "sync", "--wait", "60", "--", "true"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        killed.elapsed() >= TTL,
        "the lock freed {:?} after its holder was killed, within its TTL",
        killed.elapsed()
    );
    assert!(s.json(&["locks"])["leases"].as_array().unwrap().is_empty());
}

/// A lock holder (the `statelog lock` process and its command) SIGSTOPped
/// past its TTL, while `statelog serve` holds the store: the lock passes to
/// the next process, whose fenced write succeeds; resumed, the first one's
/// fenced write is refused (exit 3) and changes nothing, and it says it lost
/// the lock.
#[test]
fn a_holder_stopped_past_its_ttl_is_fenced_off() {
    let s = Scratch::with_store();
    let mut serve = s
        .command(&["--json", "serve"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("serving"), "{line}");

    let first = lock(
        &s,
        &["sync", "--ttl", "1", "--on-lost", "ignore"],
        r#"touch "$DIR/first-ready"
while [ ! -e "$DIR/go" ]; do sleep 0.02; done
exec "$BIN" set out x '"first"' --fence "sync=$STATELOG_LOCK_TOKEN""#,
    );
    wait_for(&s.dir.path().join("first-ready"), Duration::from_secs(30));
    let group = first.id() as i32;
    signal(-group, libc::SIGSTOP);
    let second = lock(
        &s,
        &["sync", "--wait", "60"],
        r#"exec "$BIN" set out x '"second"' --fence "sync=$STATELOG_LOCK_TOKEN""#,
    )
    .wait_with_output()
    .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    signal(-group, libc::SIGCONT);
    std::fs::write(s.dir.path().join("go"), "").unwrap();
    let first = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("lost lock sync"), "{stderr}");
    assert!(
        stderr.contains("lock \"sync\" is not held with token"),
        "{stderr}"
    );
    assert_eq!(s.ok(&["get", "out", "x"]), "\"second\"\n");
    signal(serve.id() as i32, libc::SIGTERM);
    assert!(serve.wait().unwrap().success());
}

/// A CI step retried with one idempotency key counts once, across restarts
/// (every invocation opens the store anew); the key with another command is
/// refused with exit 8; a key kept for a second counts again after it.
#[test]
fn incr_with_an_idempotency_key_counts_once() {
    let s = Scratch::with_store();
    for _ in 0..5 {
        let run = s.run(&["incr", "deploys", "web", "n", "--idempotency-key", "run-42"]);
        assert_eq!((run.code, run.stdout.as_str()), (0, "1\n"), "{run:?}");
    }
    let doc = s.json(&["incr", "deploys", "web", "n", "--idempotency-key", "run-42"]);
    assert_eq!(doc["replayed"], true, "{doc}");
    // The key from the environment, as a CI step would set it.
    let run = Scratch::run_with_env(&s, &["incr", "deploys", "web", "n"], "run-42");
    assert_eq!((run.code, run.stdout.as_str()), (0, "1\n"), "{run:?}");
    assert_eq!(s.ok(&["get", "deploys", "web", "--field", "n"]), "1\n");
    s.unchanged(|| {
        s.fails(
            &[
                "incr",
                "deploys",
                "web",
                "n",
                "2",
                "--idempotency-key",
                "run-42",
            ],
            8,
            &["idempotency key \"run-42\" was used for a different request"],
        );
        s.fails(
            &["set", "deploys", "web", "{}", "--idempotency-key", "run-42"],
            8,
            &["different request"],
        );
    });
    let short = [
        "incr",
        "deploys",
        "web",
        "n",
        "--idempotency-key",
        "run-43",
        "--keep-key",
        "1s",
    ];
    assert_eq!(s.ok(&short), "2\n");
    let again = s.run(&short);
    assert_eq!((again.code, again.stdout.as_str()), (0, "2\n"), "{again:?}");
    assert!(
        again.stderr.contains("nothing was written now"),
        "{again:?}"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(s.ok(&short), "3\n");
    assert_eq!(s.ok(&["get", "deploys", "web", "--field", "n"]), "3\n");
}

/// `--if-changed` skips an identical value (no version, no log record),
/// `--if-revision` tells a re-created record from the old one, and `patch`
/// appends and removes.
#[test]
fn set_and_patch_preconditions() {
    let s = Scratch::with_store();
    s.ok(&["set", "files", "a.md", r#"{"hash": "1"}"#]);
    s.unchanged(|| {
        let doc = s.json(&["set", "files", "a.md", r#"{"hash": "1"}"#, "--if-changed"]);
        assert_eq!(doc["changed"], false, "{doc}");
        assert_eq!(doc["version"], 1, "{doc}");
        s.ok(&["patch", "files", "a.md", "hash=\"1\"", "--if-changed"]);
    });
    let first = s.json(&["get", "files", "a.md"]);
    let revision = first["mod_revision"].as_u64().unwrap();
    s.ok(&["del", "files", "a.md"]);
    s.ok(&["set", "files", "a.md", r#"{"hash": "2"}"#]);
    s.unchanged(|| {
        s.fails(
            &[
                "set",
                "files",
                "a.md",
                "{}",
                "--if-revision",
                &revision.to_string(),
            ],
            3,
            &["was to be at revision"],
        );
    });
    s.ok(&[
        "patch",
        "files",
        "a.md",
        "--append",
        "seen=a",
        "--append-unique",
        "seen=a",
        "--append-unique",
        "seen=b",
        "--remove",
        "hash",
    ]);
    assert_eq!(
        s.ok(&["get", "files", "a.md"]),
        "{\n  \"seen\": [\n    \"a\",\n    \"b\"\n  ]\n}\n"
    );
}

impl Scratch {
    fn run_with_env(s: &Scratch, args: &[&str], key: &str) -> cli::Run {
        let out = s
            .command(args)
            .env("STATELOG_IDEMPOTENCY_KEY", key)
            .output()
            .unwrap();
        cli::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `import --idempotency-key`: a retried import writes once (even when the
/// store moved on since, which an `--overwrite` import would write over), and
/// another file with the key is refused with exit 8.
#[test]
fn import_with_an_idempotency_key_imports_once() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", r#""queued""#]);
    s.ok(&["export", "--out", "first.json"]);
    s.ok(&["set", "jobs", "j1", r#""running""#]);
    let import = [
        "import",
        "first.json",
        "--overwrite",
        "--idempotency-key",
        "import-1",
    ];
    let doc = s.json(&import);
    assert_eq!(
        (&doc["written"], &doc["replayed"]),
        (&1.into(), &false.into()),
        "{doc}"
    );
    s.ok(&["set", "jobs", "j1", r#""done""#]);
    s.unchanged(|| {
        let again = s.run(&import);
        assert_eq!(again.code, 0, "{again:?}");
        assert!(
            again.stderr.contains("nothing was written now"),
            "{again:?}"
        );
        assert!(again.stdout.contains("wrote 1 record"), "{again:?}");
        let doc = s.json(&import);
        assert_eq!(doc["replayed"], true, "{doc}");
        s.ok(&["export", "--out", "second.json"]);
    });
    s.unchanged(|| {
        s.fails(
            &[
                "import",
                "second.json",
                "--overwrite",
                "--idempotency-key",
                "import-1",
            ],
            8,
            &["idempotency key \"import-1\" was used for a different request"],
        );
        s.fails(
            &["set", "jobs", "j1", "1", "--idempotency-key", "import-1"],
            8,
            &["different request"],
        );
    });
    assert_eq!(s.ok(&["get", "jobs", "j1"]), "\"done\"\n");
}

/// `import --fence`: an import under the lock it names commits; with a token
/// the lock is no longer held with, it exits 3 and writes nothing.
#[test]
fn import_takes_a_fence() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", r#""queued""#]);
    s.ok(&["export", "--out", "state.json"]);
    s.ok(&["set", "jobs", "j1", r#""running""#]);
    let out = lock(
        &s,
        &["sync"],
        r#"echo "$STATELOG_LOCK_TOKEN" > "$DIR/token"
exec "$BIN" import "$DIR/state.json" --overwrite --fence "sync=$STATELOG_LOCK_TOKEN""#,
    )
    .wait_with_output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ok(&["get", "jobs", "j1"]), "\"queued\"\n");
    let token = std::fs::read_to_string(s.dir.path().join("token")).unwrap();
    s.ok(&["set", "jobs", "j1", r#""running""#]);
    let fence = format!("sync={}", token.trim());
    s.unchanged(|| {
        s.fails(
            &["import", "state.json", "--overwrite", "--fence", &fence],
            3,
            &["lock \"sync\" is not held with token"],
        );
    });
    s.fails(
        &[
            "import",
            "state.json",
            "--mode",
            "restore",
            "--fence",
            &fence,
        ],
        2,
        &["--fence does not go with --mode restore"],
    );
}
