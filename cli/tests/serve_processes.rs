//! One store, many processes, with real processes: a Rust program holding a
//! store while shell loops of `statelog` and an exporter work through it; the
//! holder (a program, or `statelog serve`) killed in the middle; a holder
//! frozen with SIGSTOP; a holder that goes away after receiving a commit.

#[path = "cli/mod.rs"]
mod cli;
// The helpers of the library's tests, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cli::BIN;
use statelog::testkit::{Fs, RealFs, wire_frame, wire_message as m};
use statelog::{Error, Options, Store};

const LOOP_SCRIPT: &str = r#"i=0
while [ "$i" -lt "$3" ]; do
  "$1" --store "$2" incr jobs counter n >/dev/null 2>>"$4.err"
  echo $? >>"$4"
  i=$((i + 1))
done"#;

/// Starts `loops` shell loops of `each` `statelog incr jobs counter n`; each
/// writes every invocation's exit code, one per line, to `<dir>/codes-<i>`.
fn start_loops(store: &Path, dir: &Path, loops: usize, each: usize) -> Vec<Child> {
    (0..loops)
        .map(|i| {
            let codes = dir.join(format!("codes-{i}"));
            let mut command = Command::new("sh");
            command
                .args(["-c", LOOP_SCRIPT, "loop", BIN])
                .arg(store)
                .arg(each.to_string())
                .arg(&codes)
                .stdin(Stdio::null());
            die_with_parent(&mut command);
            command.spawn().expect("start a shell loop")
        })
        .collect()
}

/// Every exit code the loops recorded, and what they said on stderr.
fn loop_codes(dir: &Path, loops: usize) -> (Vec<i32>, String) {
    let mut codes = Vec::new();
    let mut stderr = String::new();
    for i in 0..loops {
        let path = dir.join(format!("codes-{i}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        codes.extend(
            text.lines()
                .map(|l| l.trim().parse::<i32>().expect("a code")),
        );
        stderr.push_str(&std::fs::read_to_string(path.with_extension("err")).unwrap_or_default());
    }
    (codes, stderr)
}

fn wait_all(children: Vec<Child>, limit: Duration) {
    let deadline = Instant::now() + limit;
    for mut child in children {
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a child did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes a child get SIGTERM when the thread that started it ends, so a
/// failing test leaves nothing running.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl only sets this (child) process's parent-death signal.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill takes a pid and a signal number.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

fn statelog(store: &Path, args: &[&str]) -> cli::Run {
    let out = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run statelog");
    cli::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn init(store: &Path) {
    let run = statelog(store, &["init", "-q"]);
    assert_eq!(run.code, 0, "{run:?}");
}

// ---------------------------------------------------------------------------
// The holder child: a Rust program that holds the store and commits a
// heartbeat continuously, printing each acknowledged beat, until its stdin
// closes (or 120 s pass); then it prints its commit count and closes.

fn holder_child(store: &str) -> ! {
    let store = Store::open(store, Options::default()).expect("the holder opens the store");
    assert!(store.is_holder());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, Ordering::Release);
        });
    }
    println!("READY");
    let started = Instant::now();
    let mut beat = 0u64;
    while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(120) {
        beat += 1;
        store.put("holder", "beat", &beat).expect("beat");
        println!("ACK {beat}");
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("COMMITS {}", store.stats().commits);
    store.close().expect("close");
    std::process::exit(0)
}

struct Holder {
    child: Child,
    /// What a holder program prints (nothing for `statelog serve`).
    lines: Option<std::sync::mpsc::Receiver<String>>,
}

fn start_holder(test: &str, store: &Path) -> Holder {
    let mut command = common::child_command(test, "holder", store.to_str().unwrap());
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    die_with_parent(&mut command);
    let mut child = command.spawn().expect("start the holder");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The child's stdout also carries the test harness's lines.
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the holder starts");
        if line.contains("READY") {
            break;
        }
    }
    Holder {
        child,
        lines: Some(lines),
    }
}

impl Holder {
    /// Every line so far: the last acknowledged beat and the commit count.
    fn drain(&self) -> (u64, Option<u64>) {
        let mut last = 0;
        let mut commits = None;
        let Some(lines) = &self.lines else {
            return (last, commits);
        };
        while let Ok(line) = lines.try_recv() {
            if let Some(n) = line.strip_prefix("ACK ") {
                last = n.parse().unwrap();
            } else if let Some(n) = line.strip_prefix("COMMITS ") {
                commits = Some(n.parse().unwrap());
            }
        }
        (last, commits)
    }
}

fn read_counter(store: &Path) -> (u64, u64) {
    let run = statelog(store, &["--json", "get", "jobs", "counter"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc = run.json();
    (
        doc["value"]["n"].as_u64().unwrap(),
        doc["version"].as_u64().unwrap(),
    )
}

/// Checks one JSON Lines export: one revision, and every record in it at or
/// before that revision, the newest exactly at it (every commit of this test
/// puts a record that stays). Returns the revision and the counter.
fn check_export(text: &str) -> (u64, u64) {
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let revision = header["revision"].as_u64().unwrap();
    let mut newest = 0;
    let mut counter = 0;
    let mut count = 0;
    for line in lines {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(n) = doc.get("records") {
            assert_eq!(n.as_u64().unwrap(), count, "{text}");
            continue;
        }
        count += 1;
        let modified = doc["mod_revision"].as_u64().unwrap();
        assert!(
            modified <= revision,
            "a record after the export's revision: {text}"
        );
        newest = newest.max(modified);
        if doc["key"] == "counter" {
            counter = doc["value"]["n"].as_u64().unwrap();
            assert_eq!(doc["version"].as_u64().unwrap(), counter, "{text}");
        }
    }
    assert_eq!(newest, revision, "the export is not one revision: {text}");
    (revision, counter)
}

/// A Rust program holds the store and commits continuously; 16 shell loops of
/// 200 `statelog incr` and an exporter (every 100 ms) work through it: the
/// count is exact, no invocation fails, every export is one consistent
/// revision, and every increment went through the holder's engine.
#[test]
fn an_embedded_holder_serves_shell_loops_and_an_exporter() {
    const LOOPS: usize = 16;
    const EACH: usize = 200;
    let test = "an_embedded_holder_serves_shell_loops_and_an_exporter";
    if let Some((_, arg)) = common::child_role() {
        holder_child(&arg);
    }
    let dir = common::memory_store_dir();
    let store = dir.path().join("store");
    init(&store);
    let mut holder = start_holder(test, &store);
    let loops = start_loops(&store, dir.path(), LOOPS, EACH);
    let mut exports = 0;
    let mut last = (0, 0);
    let started = Instant::now();
    loop {
        let done = loop_codes(dir.path(), LOOPS).0.len() == LOOPS * EACH;
        let run = statelog(&store, &["export", "--format", "jsonl"]);
        assert_eq!(run.code, 0, "{run:?}");
        let (revision, counter) = check_export(&run.stdout);
        assert!(revision >= last.0 && counter >= last.1, "exports went back");
        last = (revision, counter);
        exports += 1;
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the loops did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_all(loops, Duration::from_secs(60));
    let (codes, stderr) = loop_codes(dir.path(), LOOPS);
    assert_eq!(codes.len(), LOOPS * EACH);
    assert!(
        codes.iter().all(|c| *c == 0),
        "failed invocations: {stderr}"
    );
    let (n, version) = read_counter(&store);
    assert_eq!((n, version), ((LOOPS * EACH) as u64, (LOOPS * EACH) as u64));
    drop(holder.child.stdin.take());
    let status = holder.child.wait().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(100));
    let (beats, commits) = holder.drain();
    let commits = commits.expect("the holder reports its commits");
    assert!(
        commits >= (LOOPS * EACH) as u64 + beats,
        "the increments did not all go through the holder: {commits} commits, {beats} beats"
    );
    assert!(exports >= 2, "{exports} exports");
    eprintln!("{exports} exports, {beats} heartbeats, {commits} commits in the holder");
}

/// The holder is killed in the middle of 16 shell loops: the loops carry on
/// (the next invocation takes the store over, replaying what the dead holder
/// acknowledged); every acknowledged increment and heartbeat is in the store;
/// an increment whose outcome could not be known says so (exit 6).
fn killed_holder(start: impl FnOnce(&Path) -> Holder, dir: &Path) {
    const LOOPS: usize = 16;
    const EACH: usize = 60;
    let store = dir.join("store");
    init(&store);
    let mut holder = start(&store);
    let loops = start_loops(&store, dir, LOOPS, EACH);
    // Kill it once the loops are well under way.
    let started = Instant::now();
    loop {
        let (codes, _) = loop_codes(dir, LOOPS);
        if codes.len() >= LOOPS * EACH / 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the loops do not progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&holder.child, libc::SIGKILL);
    holder.child.wait().unwrap();
    // Let the reader thread take the last lines the holder wrote.
    std::thread::sleep(Duration::from_millis(200));
    let acked_beat = holder.lines.is_some().then(|| holder.drain().0);
    wait_all(loops, Duration::from_secs(600));
    let (codes, stderr) = loop_codes(dir, LOOPS);
    assert_eq!(codes.len(), LOOPS * EACH, "{stderr}");
    let acknowledged = codes.iter().filter(|c| **c == 0).count() as u64;
    let unknown = codes.iter().filter(|c| **c == 6).count() as u64;
    assert_eq!(
        acknowledged + unknown,
        (LOOPS * EACH) as u64,
        "invocations failed otherwise: {stderr}"
    );
    if unknown > 0 {
        assert!(stderr.contains("outcome of a commit"), "{stderr}");
    }
    let (n, version) = read_counter(&store);
    assert_eq!(n, version);
    assert!(
        acknowledged <= n && n <= acknowledged + unknown,
        "{n} increments in the store, {acknowledged} acknowledged, {unknown} unknown"
    );
    if let Some(beat) = acked_beat {
        let run = statelog(&store, &["get", "holder", "beat"]);
        let stored: u64 = run.stdout.trim().parse().unwrap();
        assert!(
            stored >= beat,
            "acknowledged beat {beat} lost: the store has {stored}"
        );
    }
    eprintln!("{acknowledged} acknowledged, {unknown} unknown, counter {n}");
}

#[test]
fn a_killed_holder_program_is_taken_over() {
    let test = "a_killed_holder_program_is_taken_over";
    if let Some((_, arg)) = common::child_role() {
        holder_child(&arg);
    }
    let dir = common::store_dir();
    killed_holder(|store| start_holder(test, store), dir.path());
}

#[test]
fn a_killed_statelog_serve_is_taken_over() {
    let dir = common::store_dir();
    killed_holder(
        |store| Holder {
            child: start_serve(store),
            lines: None,
        },
        dir.path(),
    );
}

/// Starts `statelog serve` and waits until it serves.
fn start_serve(store: &Path) -> Child {
    start_serve_with(store, &[])
}

/// `start_serve` with `env` changed in its environment (a value set, or
/// with `None` the variable removed).
fn start_serve_with(store: &Path, env: &[(&str, Option<&str>)]) -> Child {
    let mut command = Command::new(BIN);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .arg("--store")
        .arg(store)
        .args(["--json", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    die_with_parent(&mut command);
    let mut child = command.spawn().expect("start statelog serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"serving\""), "{line}");
    child
}

/// glibc's malloc arenas other than the main one in process `pid`: each is a
/// heap of 64 MiB reserved at an address aligned to its size, the part in use
/// readable and writable, the rest inaccessible.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_arena_heaps(pid: u32) -> usize {
    const HEAP: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    // (start, end, permissions) of the anonymous mappings, in address order.
    let anonymous: Vec<(u64, u64, String)> = maps
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 5 {
                return None;
            }
            let (start, end) = fields[0].split_once('-').unwrap();
            Some((
                u64::from_str_radix(start, 16).unwrap(),
                u64::from_str_radix(end, 16).unwrap(),
                fields[1].to_owned(),
            ))
        })
        .collect();
    anonymous
        .iter()
        .enumerate()
        .filter(|(i, (start, end, perms))| {
            let reserved_end = match anonymous.get(i + 1) {
                Some((next, next_end, next_perms)) if next == end && next_perms == "---p" => {
                    *next_end
                }
                _ => *end,
            };
            start % HEAP == 0 && perms == "rw-p" && reserved_end >= start + HEAP
        })
        .count()
}

/// `statelog serve` keeps glibc's malloc to its main arena, however many
/// threads serve clients at once (see cli/src/malloc.rs); `MALLOC_ARENA_MAX`
/// or `glibc.malloc.arena_max` in `GLIBC_TUNABLES` in its environment wins,
/// and then the same clients make arenas, which shows the probe sees them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn statelog_serve_keeps_one_malloc_arena() {
    const CLIENTS: usize = 8;
    let heaps = |env: &[(&str, Option<&str>)]| {
        let dir = common::store_dir();
        let store = dir.path().join("store");
        init(&store);
        let mut serve = start_serve_with(&store, env);
        // Every client connected before any commits, so that the holder has
        // a thread per client at once, each allocating.
        let barrier = std::sync::Barrier::new(CLIENTS);
        std::thread::scope(|scope| {
            for i in 0..CLIENTS {
                let (store, barrier) = (&store, &barrier);
                scope.spawn(move || {
                    let client = Store::open(store, Options::default().serve(false)).unwrap();
                    assert!(!client.is_holder());
                    client.get::<u64>("jobs", "warm").unwrap();
                    barrier.wait();
                    for n in 0..20u64 {
                        client.put("jobs", &format!("c{i}"), &n).unwrap();
                    }
                });
            }
        });
        let heaps = malloc_arena_heaps(serve.id());
        signal(&serve, libc::SIGTERM);
        assert!(serve.wait().unwrap().success());
        heaps
    };
    let capped = heaps(&[("MALLOC_ARENA_MAX", None), ("GLIBC_TUNABLES", None)]);
    let chosen = heaps(&[("MALLOC_ARENA_MAX", Some("8")), ("GLIBC_TUNABLES", None)]);
    let tuned = heaps(&[
        ("MALLOC_ARENA_MAX", None),
        ("GLIBC_TUNABLES", Some("glibc.malloc.arena_max=8")),
    ]);
    assert_eq!(capped, 0, "statelog serve made {capped} more malloc arenas");
    assert!(
        chosen >= 2,
        "with MALLOC_ARENA_MAX=8, {CLIENTS} clients made {chosen} malloc arenas in statelog serve"
    );
    assert!(
        tuned >= 2,
        "with GLIBC_TUNABLES=glibc.malloc.arena_max=8, {CLIENTS} clients made {tuned} malloc \
         arenas in statelog serve"
    );
}

/// A holder frozen with SIGSTOP: clients give up after their wait, naming its
/// process; one connected before the freeze too (a read: busy; a commit:
/// outcome unknown). Once it runs again, everything works.
#[test]
fn a_stopped_holder_makes_clients_give_up_naming_it() {
    let dir = common::store_dir();
    let store = dir.path().join("store");
    init(&store);
    let mut serve = start_serve(&store);
    let pid = serve.id();
    let client = Store::open(
        &store,
        Options::default().lock_timeout(Duration::from_millis(1500)),
    )
    .unwrap();
    client.put("jobs", "j", &1).unwrap();
    // Two connections in the client's pool, for a read and a commit after
    // the freeze.
    {
        let snapshot = client.snapshot().unwrap();
        client.get::<i32>("jobs", "j").unwrap();
        drop(snapshot);
    }
    signal(&serve, libc::SIGSTOP);
    let started = Instant::now();
    let run = statelog(&store, &["--wait", "1.5", "get", "jobs", "j"]);
    let waited = started.elapsed();
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains(&format!("process {pid}")), "{run:?}");
    assert!(waited < Duration::from_secs(20), "it hung for {waited:?}");
    let run = statelog(&store, &["--wait", "1", "incr", "jobs", "k", "n"]);
    assert_eq!(run.code, 5, "{run:?}");
    match client.get::<i32>("jobs", "j").unwrap_err() {
        Error::Busy { pid: Some(p), .. } => assert_eq!(p, pid),
        other => panic!("expected Busy naming {pid}, got {other:?}"),
    }
    match client.put("jobs", "j", &2).unwrap_err() {
        Error::OutcomeUnknown { pid: Some(p), .. } => assert_eq!(p, pid),
        other => panic!("expected OutcomeUnknown naming {pid}, got {other:?}"),
    }
    signal(&serve, libc::SIGCONT);
    // The commit whose outcome was unknown does happen once the holder runs
    // again (it only slept, with the request in its socket), and only once:
    // nothing was sent twice.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A holder just woken may take longer than the client's short wait to
        // answer on a loaded machine: that is Busy again, not a failure.
        let after = match client.get::<i32>("jobs", "j") {
            Ok(after) => after.unwrap(),
            Err(Error::Busy { .. }) if Instant::now() < deadline => continue,
            Err(e) => panic!("reading after the holder resumed: {e:?}"),
        };
        if after.version == 2 {
            assert_eq!(after.value, 2);
            break;
        }
        assert_eq!(after.version, 1);
        assert!(Instant::now() < deadline, "the received commit never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(statelog(&store, &["get", "jobs", "j"]).stdout, "2\n");
    signal(&serve, libc::SIGTERM);
    assert!(serve.wait().unwrap().success());
}

// ---------------------------------------------------------------------------
// A holder played by the test: it takes the lock and the socket, shakes hands,
// reads one request, and then goes away without answering.

struct FakeHolder {
    _lock: Box<dyn statelog::testkit::LockGuard>,
    listener: UnixListener,
    store_id: String,
}

impl FakeHolder {
    fn new(store: &Path) -> FakeHolder {
        let text = std::fs::read_to_string(store.join("STATELOG")).unwrap();
        let id: serde_json::Value = serde_json::from_str(&text).unwrap();
        let lock = RealFs.try_lock(&store.join("LOCK")).expect("take the lock");
        let _ = std::fs::remove_file(store.join("statelog.sock"));
        let listener = UnixListener::bind(store.join("statelog.sock")).unwrap();
        FakeHolder {
            _lock: lock,
            listener,
            store_id: id["store_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Accepts one connection, welcomes it, and returns the first request's
    /// bytes with the connection (dropping it is going away).
    fn accept_one(&self) -> (m::Request, UnixStream) {
        let (mut stream, _) = self.listener.accept().unwrap();
        let _hello = read_message(&mut stream);
        let welcome = m::ServerHello::Welcome {
            version: m::PROTOCOL_VERSION,
            store_id: self.store_id.clone(),
            pid: std::process::id(),
            read_only: None,
        };
        write_message(&mut stream, &welcome);
        let request: m::Request = m::decode(&read_message(&mut stream)).unwrap();
        (request, stream)
    }
}

fn read_message(stream: &mut UnixStream) -> Vec<u8> {
    let mut header = [0u8; wire_frame::HEADER_LEN];
    stream.read_exact(&mut header).unwrap();
    let header = wire_frame::decode_header(&header).unwrap();
    assert!(!header.more);
    let mut body = vec![0; header.len];
    stream.read_exact(&mut body).unwrap();
    body
}

fn write_message<T: serde::Serialize>(stream: &mut UnixStream, msg: &T) {
    let mut body = Vec::new();
    m::encode_into(msg, &mut body).unwrap();
    stream
        .write_all(&wire_frame::encode(&body).unwrap())
        .unwrap();
}

/// A holder that goes away after receiving a commit: the commit's outcome is
/// unknown, said so (exit 6 on the command line), and it is not sent again.
/// A read it received is sent again, to whoever holds the store next.
#[test]
fn a_holder_gone_after_receiving_a_commit_leaves_its_outcome_unknown() {
    let dir = common::store_dir();
    let store = dir.path().join("store");
    init(&store);
    assert_eq!(statelog(&store, &["set", "jobs", "j", "1"]).code, 0);
    let fake = FakeHolder::new(&store);
    std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            // The command line's commit, then the library's.
            for _ in 0..2 {
                let (request, stream) = fake.accept_one();
                assert!(matches!(request, m::Request::Commit { .. }), "{request:?}");
                drop(stream);
            }
        });
        let run = statelog(&store, &["--wait", "5", "set", "jobs", "j", "2"]);
        assert_eq!(run.code, 6, "{run:?}");
        assert!(run.stderr.contains("outcome of a commit"), "{run:?}");
        assert!(
            run.stderr
                .contains(&format!("process {}", std::process::id())),
            "{run:?}"
        );
        let client = Store::open(&store, Options::default()).unwrap();
        assert!(!client.is_holder());
        match client.put("jobs", "j", &3).unwrap_err() {
            Error::OutcomeUnknown { pid, reason, .. } => {
                assert_eq!(pid, Some(std::process::id()));
                assert!(reason.contains("went away"), "{reason}");
            }
            other => panic!("expected OutcomeUnknown, got {other:?}"),
        }
        server.join().unwrap();
        drop(client);
    });
    // A read that the holder received but never answered is sent again: here
    // the holder gives up the store meanwhile, and the reader takes it over.
    let fake = std::sync::Mutex::new(Some(fake));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let guard = fake.lock().unwrap();
            let (request, stream) = guard.as_ref().unwrap().accept_one();
            assert!(matches!(request, m::Request::Get { .. }), "{request:?}");
            drop(guard);
            // Go away: the socket, the lock, the connection.
            let _ = std::fs::remove_file(store.join("statelog.sock"));
            fake.lock().unwrap().take();
            drop(stream);
        });
        let client = Store::open(&store, Options::default().serve(false)).unwrap();
        let read = client.get::<i32>("jobs", "j").unwrap().unwrap();
        assert_eq!(
            read.value, 1,
            "the unacknowledged commits were never applied"
        );
        assert!(client.is_holder(), "the reader took the store over");
    });
}

/// A holder that closes (as `statelog serve` does on SIGTERM) hands the store
/// over cleanly: requests it received are answered, the others are refused
/// unexecuted and sent again to the next holder, so no outcome is ever
/// unknown and no increment is lost or doubled.
#[test]
fn a_closing_holder_hands_over_without_unknown_outcomes() {
    const THREADS: usize = 8;
    const EACH: u64 = 150;
    let dir = common::store_dir();
    let holder = Store::open(dir.path(), Options::default()).unwrap();
    let client = Store::open(dir.path(), Options::default()).unwrap();
    assert!(!client.is_holder());
    let done = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let client = client.clone();
            let done = &done;
            scope.spawn(move || {
                for _ in 0..EACH {
                    client
                        .update(
                            "jobs",
                            "counter",
                            |n: Option<u64>| -> statelog::Result<u64> { Ok(n.unwrap_or(0) + 1) },
                        )
                        .expect("no outcome is unknown when the holder closes");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Close the holder in the middle of it all.
        while done.load(Ordering::Relaxed) < THREADS as u64 * EACH / 3 {
            std::thread::sleep(Duration::from_millis(2));
        }
        holder.close().unwrap();
    });
    assert!(client.is_holder(), "the client took the store over");
    let counter = client.get::<u64>("jobs", "counter").unwrap().unwrap();
    assert_eq!(counter.value, THREADS as u64 * EACH);
    assert_eq!(counter.version, THREADS as u64 * EACH);
}

/// `check`, `repair` and `compact` need the store closed: while a process
/// holds it, they wait for it and then exit 5 naming it, and say so.
#[test]
fn the_tools_wait_for_a_holder_and_name_it() {
    let dir = common::store_dir();
    let store = dir.path().join("store");
    init(&store);
    let mut serve = start_serve(&store);
    for tool in ["check", "repair", "compact"] {
        let run = statelog(&store, &["--wait", "0.3", tool]);
        assert_eq!(run.code, 5, "{tool}: {run:?}");
        assert!(
            run.stderr.contains("need the store closed"),
            "{tool}: {run:?}"
        );
        assert!(
            run.stderr.contains(&format!("process {}", serve.id())),
            "{tool}: {run:?}"
        );
    }
    signal(&serve, libc::SIGTERM);
    assert!(serve.wait().unwrap().success());
    assert_eq!(statelog(&store, &["check"]).code, 0);
}
