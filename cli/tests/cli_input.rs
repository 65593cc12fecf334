//! What the command line does with what it is given: it reads its input
//! before it takes the store's lock, so a pipe or a slow producer never holds
//! up other writers; its error messages show keys, values and file names
//! escaped and shortened; its value limits are the documented ones, and say
//! which limit was hit; a byte order mark at the start of a file is skipped.

#[path = "cli/mod.rs"]
mod cli;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli::{BIN, Run, Scratch};
use statelog::snapshot::{self, Format, ImportMode, ImportOptions};
use statelog::{MAX_DEPTH, MAX_VALUE_LEN, RawValue, Store};

/// `depth` arrays inside one another, the innermost empty.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn pipe(from: &mut Command, to: &mut Command) -> (Run, Run) {
    let mut producer = from
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the producer");
    let consumer = to
        .stdin(producer.stdout.take().expect("stdout"))
        .output()
        .expect("run the consumer");
    let producer = producer.wait_with_output().expect("wait for the producer");
    (run_of(producer), run_of(consumer))
}

fn run_of(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn input_is_read_before_the_store_is_locked() {
    // An export piped into an import of the same store: the export holds the
    // store until its reader has read everything, which the import must do
    // before it opens the store. The export is larger than a pipe's buffer.
    let s = Scratch::with_store();
    let pad = "x".repeat(1_000);
    for i in 0..200 {
        s.ok(&["set", "jobs", &format!("j{i:03}"), &format!("\"{pad}\"")]);
    }
    for (format, extra) in [("jsonl", vec![]), ("json", vec!["--check-versions"])] {
        let mut import = s.command(&["--wait", "5", "import", "-", "--format", format]);
        import.args(&extra);
        let (export, import) = pipe(
            &mut s.command(&["--wait", "5", "export", "--format", format]),
            &mut import,
        );
        assert_eq!(export.code, 0, "{export:?}");
        assert_eq!(import.code, 0, "{import:?}");
        assert!(import.stdout.contains("read 200 records"), "{import:?}");
    }

    // A slow producer on stdin holds up no other writer: while each command
    // below waits for the rest of its input, another process writes at once.
    let legacy = "{\"site-a\": {\"n\": 1}, \"site-b\": {\"n\": 2}}";
    let snapshot = s.ok(&["export", "--format", "jsonl"]);
    let cases: [(&[&str], &str); 3] = [
        (&["import", "-", "--format", "jsonl"], &snapshot),
        (&["import", "-", "--legacy", "--ns", "sites"], legacy),
        (&["set", "jobs", "from-stdin", "-"], "{\"slow\": true}"),
    ];
    for (i, (args, input)) in cases.into_iter().enumerate() {
        let mut slow = s
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn statelog");
        let mut stdin = slow.stdin.take().expect("stdin");
        let (head, tail) = input.split_at(input.len() / 2);
        stdin.write_all(head.as_bytes()).expect("write stdin");
        stdin.flush().expect("flush stdin");
        // Give the slow command the time to start and (were it to) lock the
        // store; the writer below must succeed however long that takes.
        std::thread::sleep(Duration::from_millis(300));
        let other = s.run(&["--no-wait", "set", "other", &format!("k{i}"), "1"]);
        assert_eq!(other.code, 0, "{args:?} held up another writer: {other:?}");
        stdin.write_all(tail.as_bytes()).expect("write stdin");
        drop(stdin);
        let slow = run_of(slow.wait_with_output().expect("wait for statelog"));
        assert_eq!(slow.code, 0, "{args:?}: {slow:?}");
    }
    assert_eq!(s.ok(&["get", "sites", "site-b"]), "{\n  \"n\": 2\n}\n");
    assert_eq!(s.ok(&["get", "other", "k2"]), "1\n");
}

/// Asserts that stderr shows the text escaped (the newline in it starts no
/// line, the terminal escape is written out), holds no other control
/// character, and is short.
fn check_shown(run: &Run, what: &str) {
    assert_ne!(run.code, 0, "{what}: {run:?}");
    assert!(
        run.stderr.starts_with("statelog: error: "),
        "{what}: {run:?}"
    );
    assert!(
        run.stderr.len() < 2_000,
        "{what}: {} bytes of stderr",
        run.stderr.len()
    );
    for line in run.stderr.lines() {
        // The text after the newline of `a\nb...` would start a line.
        assert!(
            !line.starts_with('b'),
            "{what}: a line of the input: {line:?}"
        );
        assert!(!line.chars().any(char::is_control), "{what}: {line:?}");
    }
    assert!(run.stderr.contains("\\u{1b}[31m"), "{what}: {}", run.stderr);
}

#[test]
fn messages_show_what_the_user_gave_escaped_and_shortened() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "k", "{\"a\": 1}"]);
    let bad = format!("a\nb\u{1b}[31mred{}", "x".repeat(100_000));
    let valid_long = format!("\u{1b}[31m{}", "k".repeat(100_000));
    let cases: Vec<Vec<&str>> = vec![
        vec!["set", "jobs", &bad, "1"],
        vec!["set", &bad, "k", "1"],
        vec!["set", "jobs", "k", &valid_long],
        vec!["set", "jobs", "k", "--if-version", "1", &valid_long],
        vec!["get", "jobs", &bad],
        vec!["get", "jobs", "k", "--field", &valid_long],
        vec!["del", "jobs", &bad],
        vec!["del", "jobs", &bad, "--if-version", "3"],
        vec!["incr", "jobs", &bad, "n"],
        vec!["incr", "jobs", "k", "n", &valid_long],
        vec!["patch", "jobs", &bad, "a=1"],
        vec!["patch", "jobs", "k", &valid_long],
        vec!["list", &bad],
        vec!["export", "--ns", &bad],
        vec!["import", &bad],
        vec!["--wait", &bad, "get", "jobs", "k"],
    ];
    for args in &cases {
        check_shown(&s.run(args), &format!("{:?}", args[0]));
    }
    // A store path and files named so.
    let path = s.dir.path().join(&bad[..200]);
    let mut cmd = Command::new(BIN);
    cmd.arg("--store").arg(&path).args(["get", "jobs", "k"]);
    check_shown(&run_of(cmd.output().unwrap()), "--store");
    // A file where the directory would go: the export fails naming both.
    std::fs::write(s.dir.path().join(&bad[..200]), b"").unwrap();
    let out = s.dir.path().join(&bad[..200]).join("file.json");
    check_shown(
        &s.run(&["export", "--out", out.to_str().unwrap()]),
        "export --out",
    );
    // Input whose names are such text: a member name twice in a value, an
    // unknown member of a record, a record twice.
    let name = format!("\\u001b[31m{}", "z".repeat(100_000));
    let key = format!("\\u001b[31m{}", "y".repeat(900));
    let header = "{\"format\": \"statelog-snapshot-lines\", \"version\": 1, \"revision\": 1, \
                  \"time\": \"2026-01-01T00:00:00Z\"}";
    let record = |key: &str, extra: &str, value: &str| {
        format!(
            "{{\"namespace\": \"jobs\", \"key\": \"{key}\", \"version\": 1, \"create_revision\": \
             1, \"mod_revision\": 1, \"updated_at\": \"2026-01-01T00:00:00Z\"{extra}, \"value\": \
             {value}}}"
        )
    };
    let files = [
        vec![record(
            "k",
            "",
            &format!("{{\"{name}\": 1, \"{name}\": 2}}"),
        )],
        vec![record("k", &format!(", \"{name}\": 1"), "1")],
        vec![record(&key, "", "1"), record(&key, "", "2")],
    ];
    for (i, records) in files.iter().enumerate() {
        let file = s.dir.path().join(format!("bad{i}.jsonl"));
        let text = format!(
            "{header}\n{}\n{{\"records\": {}}}\n",
            records.join("\n"),
            records.len()
        );
        std::fs::write(&file, text).unwrap();
        check_shown(&s.run(&["import", file.to_str().unwrap()]), "import");
    }
}

/// Writes a snapshot holding one record with the value given.
type SnapshotWith = fn(&str) -> String;

/// A snapshot in each format holding one record with `value`.
fn jsonl(value: &str) -> String {
    format!(
        "{{\"format\": \"statelog-snapshot-lines\", \"version\": 1, \"revision\": 1, \
         \"time\": \"2026-01-01T00:00:00Z\"}}\n{{\"namespace\": \"n\", \"key\": \"k\", \
         \"version\": 1, \"create_revision\": 1, \"mod_revision\": 1, \"updated_at\": \
         \"2026-01-01T00:00:00Z\", \"value\": {value}}}\n{{\"records\": 1}}\n"
    )
}

fn json(value: &str) -> String {
    format!(
        "{{\"format\": \"statelog-snapshot\", \"version\": 1, \"revision\": 1, \"time\": \
         \"2026-01-01T00:00:00Z\", \"namespaces\": {{\"n\": {{\"k\": {{\"version\": 1, \
         \"create_revision\": 1, \"mod_revision\": 1, \"updated_at\": \
         \"2026-01-01T00:00:00Z\", \"value\": {value}}}}}}}}}"
    )
}

fn markdown(value: &str) -> String {
    format!(
        "# Snapshot\n\n- format: statelog-snapshot-markdown\n- version: 1\n- revision: 1\n\
         - time: 2026-01-01T00:00:00Z\n\n## n\n\n### k\n\n- version: 1\n- created: revision \
         1\n- modified: revision 1\n- updated: 2026-01-01T00:00:00Z\n\n```json\n{value}\n```\n\
         \n<!-- end of snapshot -->\n"
    )
}

#[test]
fn value_limits_are_the_documented_ones_and_say_which_was_hit() {
    let s = Scratch::with_store();
    // Nesting: MAX_DEPTH arrays and maps pass, one more does not, on every
    // path a value comes in by.
    assert_eq!(MAX_DEPTH, 256);
    let deepest = nested(MAX_DEPTH);
    let too_deep = nested(MAX_DEPTH + 1);
    assert!(RawValue::from_json(&deepest).is_ok());
    let err = RawValue::from_json(&too_deep).unwrap_err();
    assert!(err.to_string().contains("deeper than 256"), "{err}");
    let msgpack = |depth: usize| [vec![0x91; depth - 1], vec![0x90]].concat();
    assert!(RawValue::from_msgpack(msgpack(MAX_DEPTH)).is_ok());
    assert!(RawValue::from_msgpack(msgpack(MAX_DEPTH + 1)).is_err());
    s.ok(&["set", "jobs", "deep", &deepest]);
    s.fails(
        &["set", "jobs", "deep", &too_deep],
        1,
        &["cannot be stored", "deeper than 256"],
    );
    // A field is one level: the record around it makes the other.
    let field = |depth| format!("v={}", nested(depth));
    s.ok(&["patch", "jobs", "p", "--json-field", &field(MAX_DEPTH - 1)]);
    s.fails(
        &["patch", "jobs", "p2", "--json-field", &field(MAX_DEPTH)],
        1,
        &["deeper than 256"],
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Default::default()).unwrap();
    let merge = ImportMode::Merge {
        check_versions: false,
        skip_conflicts: false,
    };
    let formats: [(Format, SnapshotWith); 3] = [
        (Format::JsonLines, jsonl),
        (Format::Json, json),
        (Format::Markdown, markdown),
    ];
    for (format, file) in formats {
        let options = ImportOptions::new(format, merge);
        let report = snapshot::import(&store, file(&deepest).as_bytes(), &options)
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(report.applied);
        let err = snapshot::import(&store, file(&too_deep).as_bytes(), &options).unwrap_err();
        assert!(
            err.to_string().contains("deeper than 256"),
            "{format:?}: {err}"
        );
    }
    let legacy = |value: &str| format!("{{\"k\": {value}}}");
    let options = snapshot::LegacyOptions::new("legacy");
    let report = snapshot::import_legacy(&store, legacy(&deepest).as_bytes(), &options).unwrap();
    assert!(report.applied);
    let err = snapshot::import_legacy(&store, legacy(&too_deep).as_bytes(), &options).unwrap_err();
    assert!(err.to_string().contains("deeper than 256"), "{err}");
    store.close().unwrap();

    // Size: a value over the limit is called too large, with its size and the
    // limit, never "not valid JSON".
    let huge = format!("\"{}\"", "x".repeat(MAX_VALUE_LEN));
    let run = s.run_with_stdin(&["set", "jobs", "huge", "-"], &huge);
    cli::check_failure(
        &run,
        &["set"],
        1,
        &[
            "too large",
            &MAX_VALUE_LEN.to_string(),
            &(MAX_VALUE_LEN + 5).to_string(),
        ],
    );
    assert!(!run.stderr.contains("not valid JSON"), "{run:?}");
    let file = s.dir.path().join("huge.jsonl");
    std::fs::write(&file, jsonl(&huge)).unwrap();
    s.fails(
        &["import", file.to_str().unwrap()],
        1,
        &["too large", &MAX_VALUE_LEN.to_string(), "line 2"],
    );
}

#[test]
fn a_byte_order_mark_before_the_input_is_skipped() {
    let s = Scratch::with_store();
    s.ok(&["set", "jobs", "j1", "{\"n\": 1}"]);
    let bom = "\u{feff}";
    for format in ["json", "jsonl", "md"] {
        let text = s.ok(&["export", "--format", format]);
        let file = s.dir.path().join(format!("with-bom.{format}"));
        std::fs::write(&file, format!("{bom}{text}")).unwrap();
        let out = s.ok(&["import", file.to_str().unwrap(), "--check-versions"]);
        assert!(out.contains("read 1 record"), "{format}: {out}");
    }
    let file = s.dir.path().join("legacy.json");
    std::fs::write(&file, format!("{bom}{{\"a\": {{\"n\": 2}}}}")).unwrap();
    s.ok(&["import", file.to_str().unwrap(), "--legacy", "--ns", "old"]);
    assert_eq!(s.ok(&["get", "old", "a", "--field", "n"]), "2\n");
    let run = s.run_with_stdin(&["set", "jobs", "j2", "-"], &format!("{bom}{{\"n\": 3}}"));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(s.ok(&["get", "jobs", "j2", "--field", "n"]), "3\n");
    // Only at the start: elsewhere it is not JSON.
    s.fails(
        &["set", "jobs", "j3", &format!("[1, {bom}2]")],
        1,
        &["not valid JSON"],
    );
}
