//! The `statelog` command line with other processes around: many invocations
//! at once, a store held by someone else, a store left behind by a crashed
//! process (intact or damaged), a reader that goes away, and a terminal.

#[path = "cli/mod.rs"]
mod cli;
// The helpers of the library's tests, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli::{BIN, Scratch, check_failure, durable_files};
use statelog::{Options, Store};

/// 16 shell loops of 200 `statelog incr` each, all at once: every invocation
/// succeeds (each waits its turn for the store) and none of the 3,200
/// increments is lost. The store is on a memory file system where there is
/// one: the syncs cost nothing there, and what is tested is the locking.
#[test]
fn concurrent_incr_loops_lose_nothing() {
    const LOOPS: usize = 16;
    const EACH: usize = 200;
    let dir = common::memory_store_dir();
    let store = dir.path().join("store");
    let init = Command::new(BIN)
        .args(["--store", store.to_str().unwrap(), "init", "-q"])
        .status()
        .unwrap();
    assert!(init.success());
    let script = r#"i=0
while [ "$i" -lt "$3" ]; do
  "$1" --store "$2" incr jobs counter n >/dev/null || { echo "invocation $i failed with $?" >&2; exit 1; }
  i=$((i + 1))
done"#;
    let start = Instant::now();
    let children: Vec<_> = (0..LOOPS)
        .map(|_| {
            Command::new("sh")
                .args([
                    "-c",
                    script,
                    "loop",
                    BIN,
                    store.to_str().unwrap(),
                    &EACH.to_string(),
                ])
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a shell loop")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a loop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let elapsed = start.elapsed();
    let out = Command::new(BIN)
        .args([
            "--store",
            store.to_str().unwrap(),
            "--json",
            "get",
            "jobs",
            "counter",
        ])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["value"]["n"], (LOOPS * EACH) as u64, "{doc}");
    assert_eq!(doc["version"], (LOOPS * EACH) as u64, "{doc}");
    eprintln!(
        "{} invocations in {elapsed:.1?}: {:.0}/s (debug build)",
        LOOPS * EACH,
        (LOOPS * EACH) as f64 / elapsed.as_secs_f64()
    );
}

/// A store another process holds and does not serve: `--no-wait` fails at
/// once with 5, `--wait` waits that long and then fails with 5, and a long
/// enough wait succeeds once the holder closes.
#[test]
fn a_busy_store_waits_or_fails_with_5() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", "1"]);
    let holder = Store::open(&s.store, Options::default().create(false).serve(false)).unwrap();
    let start = Instant::now();
    let run = s.run(&["--no-wait", "set", "jobs", "j1", "2"]);
    check_failure(
        &run,
        &["--no-wait"],
        5,
        &["another process has it open", "--wait"],
    );
    assert!(start.elapsed() < Duration::from_secs(5), "--no-wait waited");
    let start = Instant::now();
    let run = s.run(&["--wait", "0.5", "get", "jobs", "j1"]);
    check_failure(&run, &["--wait"], 5, &["after 0.5 s"]);
    assert!(start.elapsed() >= Duration::from_millis(500));
    // On a terminal, a wait longer than a second says so.
    let (code, screen) = on_a_terminal_with_code(&s, &["--wait", "1.5", "get", "jobs", "j1"]);
    assert_eq!(code, Some(5), "{screen}");
    assert!(
        screen.contains("statelog: waiting up to 2 s for the store: another process has it open"),
        "{screen}"
    );
    assert!(
        screen.contains("statelog: error: gave up waiting"),
        "{screen}"
    );
    // Released while a patient invocation waits: it gets the store.
    let waiting = s
        .command(&["--wait", "20", "set", "jobs", "j1", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(holder.get::<i64>("jobs", "j1").unwrap().unwrap().value, 1);
    holder.close().unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ok(&["get", "jobs", "j1"]), "3\n");
}

/// A store on etcd whose members do not answer: `--wait` bounds how long a
/// request keeps trying them (etcd's own default is 30 s), and the error
/// names the endpoint.
#[test]
fn an_unreachable_etcd_fails_within_the_wait() {
    // A loopback port nobody listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("etcd://127.0.0.1:{port}/wait-test");
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["--store", &address, "--wait", "1", "get", "jobs", "j1"])
        .env_remove("STATELOG_WAIT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach etcd at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}: the wait did not bound the retries",
        start.elapsed()
    );
}

/// The child role of the tests below: commits through the library, then
/// exits without closing (the log holds commits the state database does not).
fn child_commits_and_crashes(store: &str) -> ! {
    let store = Store::open(store, Options::default()).unwrap();
    for i in 0..5 {
        store
            .put("jobs", &format!("j{i}"), &serde_json::json!({"i": i}))
            .unwrap();
    }
    common::exit_without_closing()
}

fn crashed_store(test: &str) -> Scratch {
    let s = Scratch::new();
    common::run_child(test, "commit-and-crash", s.store.to_str().unwrap());
    s
}

#[test]
fn a_store_left_by_a_crash_is_recovered_by_the_next_command() {
    if let Some((_, arg)) = common::child_role() {
        child_commits_and_crashes(&arg);
    }
    let s = crashed_store("a_store_left_by_a_crash_is_recovered_by_the_next_command");
    let doc = s.json(&["stats"]);
    assert_eq!(doc["revision"], 5);
    assert_eq!(doc["replayed_on_open"], 5, "{doc}");
    assert_eq!(s.ok(&["get", "jobs", "j4", "--field", "i"]), "4\n");
}

#[test]
fn a_torn_last_write_is_cut_with_a_warning() {
    if let Some((_, arg)) = common::child_role() {
        child_commits_and_crashes(&arg);
    }
    let s = crashed_store("a_torn_last_write_is_cut_with_a_warning");
    let segment = s.store.join("log").join(format!("{:020}.log", 1));
    let mut bytes = std::fs::read(&segment).unwrap();
    // The segment is preallocated with zeros: the last non-zero byte ends the
    // last commit. Zeroing its end is a write torn by the crash.
    let end = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[end - 3..=end].fill(0);
    std::fs::write(&segment, &bytes).unwrap();
    let run = s.run(&["get", "jobs", "j3", "--field", "i"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "3\n");
    assert!(
        run.stderr
            .starts_with("statelog: warning: the last write to the log was torn"),
        "{run:?}"
    );
    assert!(run.stderr.contains(".torn-"), "{run:?}");
    // The torn commit is gone; the next command has nothing more to say.
    s.fails(&["get", "jobs", "j4"], 4, &["does not exist"]);
    assert_eq!(s.ok(&["get", "jobs", "j3", "--field", "i"]), "3\n");
}

#[test]
fn a_damaged_log_is_reported_and_left_alone() {
    if let Some((_, arg)) = common::child_role() {
        child_commits_and_crashes(&arg);
    }
    let s = crashed_store("a_damaged_log_is_reported_and_left_alone");
    let segment = s.store.join("log").join(format!("{:020}.log", 1));
    let mut bytes = std::fs::read(&segment).unwrap();
    // A payload byte of the first commit (after the 64-byte segment header
    // and the 12-byte frame header): synced, with later commits after it.
    bytes[64 + 12 + 4] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let before = durable_files(&s.store);
    for args in [
        vec!["get", "jobs", "j1"],
        vec!["incr", "jobs", "j1", "i"],
        vec!["export"],
    ] {
        let run = s.run(&args);
        check_failure(
            &run,
            &args,
            1,
            &[
                "cannot open the store",
                "corrupt",
                "00000000000000000001.log",
            ],
        );
        assert!(run.stdout.is_empty());
    }
    assert!(
        durable_files(&s.store) == before,
        "a failed open changed the log"
    );
}

#[test]
fn a_damaged_identity_file_is_reported_and_left_alone() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", "1"]);
    let id = s.store.join("STATELOG");
    std::fs::write(&id, b"{\"format\": \"statelog\", \"vers").unwrap();
    let before = durable_files(&s.store);
    let run = s.run(&["get", "jobs", "j1"]);
    check_failure(&run, &["get"], 1, &["cannot open the store", "STATELOG"]);
    let run = s.run(&["set", "jobs", "j1", "2"]);
    check_failure(&run, &["set"], 1, &["cannot open the store"]);
    assert!(durable_files(&s.store) == before);
}

/// `statelog ... | head -1`: the reader goes away; the command ends quietly
/// with 0, as Unix filters do.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let s = Scratch::with_store();
    std::fs::write(s.dir.path().join("big.json"), cli::legacy_file(5_000)).unwrap();
    s.ok(&["import", "big.json", "--legacy", "--ns", "big"]);
    for args in [
        vec!["list", "big", "--keys"],
        vec!["list", "big"],
        vec!["export", "--format", "jsonl"],
    ] {
        let mut child = s
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        // The reader is dropped here, closing the pipe.
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The store was closed properly: nothing to replay.
    assert_eq!(s.json(&["stats"])["replayed_on_open"], 0);
}

/// `statelog list ... | while read k; do statelog get ...; done`: the list
/// has closed the store before it writes, so the next stage never waits for
/// a lock held by a list blocked on a full pipe (here 90 KB of keys, more
/// than a pipe holds; the second stage starts late, so the list surely has
/// the store first).
#[test]
fn a_pipeline_of_invocations_does_not_wait_on_itself() {
    let s = Scratch::with_store();
    std::fs::write(s.dir.path().join("big.json"), cli::legacy_file(8_000)).unwrap();
    s.ok(&["import", "big.json", "--legacy", "--ns", "big"]);
    let store = s.store.to_str().unwrap();
    let line = format!(
        "'{BIN}' --store '{store}' list big --keys | \
         {{ sleep 0.5; '{BIN}' --store '{store}' --wait 5 get big key-000001 --field i; \
         cat >/dev/null; }}"
    );
    let start = Instant::now();
    let out = Command::new("sh").args(["-c", &line]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Runs `args` under `script`, which gives it a terminal; returns its exit
/// code and everything it wrote to the terminal.
fn on_a_terminal_with_code(s: &Scratch, args: &[&str]) -> (Option<i32>, String) {
    let mut line = format!("'{BIN}' --store '{}'", s.store.display());
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(s.dir.path())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// As [`on_a_terminal_with_code`], for a run that must succeed.
fn on_a_terminal(s: &Scratch, args: &[&str]) -> String {
    let (code, screen) = on_a_terminal_with_code(s, args);
    assert_eq!(code, Some(0), "{screen}");
    screen
}

#[test]
fn progress_bars_show_on_a_terminal_and_never_in_pipes() {
    let s = Scratch::with_store();
    std::fs::write(s.dir.path().join("big.json"), cli::legacy_file(20_000)).unwrap();
    // Piped: nothing on stderr.
    let run = s.run(&["import", "big.json", "--legacy", "--ns", "big"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    let run = s.run(&["export", "--format", "jsonl", "-o", "out.jsonl"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");

    // On a terminal: the bar, then the summary.
    let screen = on_a_terminal(&s, &["export", "--format", "md", "-o", "out.md"]);
    assert!(screen.contains("exporting:"), "{screen:?}");
    assert!(screen.contains("records"), "{screen:?}");
    assert!(screen.contains("exported 20000 records"), "{screen:?}");
    let fresh = Scratch::with_store();
    std::fs::copy(
        s.dir.path().join("out.jsonl"),
        fresh.dir.path().join("out.jsonl"),
    )
    .unwrap();
    let screen = on_a_terminal(&fresh, &["import", "out.jsonl", "--mode", "restore"]);
    assert!(screen.contains("importing"), "{screen:?}");
    assert!(screen.contains("wrote 20000 records"), "{screen:?}");
    // --quiet: no bar even on a terminal.
    let screen = on_a_terminal(&s, &["-q", "export", "--format", "md", "-o", "out2.md"]);
    assert!(!screen.contains("exporting"), "{screen:?}");
    // Exporting to the terminal itself: no bar over the output.
    let screen = on_a_terminal(
        &s,
        &["export", "--format", "jsonl", "--prefix", "key-00000"],
    );
    assert!(!screen.contains("exporting"), "{screen:?}");
    assert!(screen.contains("\"key-000009\""), "{screen:?}");
}
