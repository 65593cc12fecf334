//! Commits through the store's holder against commits in the holder itself:
//! `update` loops (read, closure, compare-and-swap) on random keys, durable
//! (`Durability::Sync`), from 16 client processes against 16 threads in the
//! holder, and from 1 client process against 1 thread in the holder. The
//! client processes are this bench re-executed. Repetitions are interleaved
//! (local 16, remote 16, local 1, remote 1, then again), so a change of load
//! hits all four alike; the ratios are taken within the run.
//!
//! `STATELOG_BENCH_MODE=latency` measures instead the time of one `get` and
//! of one durable `put` (random keys), in the holder and from one client
//! process, interleaved the same way.
//!
//! `STATELOG_BENCH_MODE=serve` measures `statelog serve` itself (issue 20's
//! memory target): a store of `STATELOG_BENCH_KEYS` records (default
//! 250,000) held in turn by each command of `STATELOG_BENCH_SERVE`
//! (`;`-separated, each `[NAME=VALUE ...] PATH` of a `statelog` binary, such
//! as `target/release/statelog;MALLOC_ARENA_MAX=2 target/release/statelog`),
//! with 16 client processes updating random keys through it; per command, its
//! commits/s and its peak RSS (`VmHWM`), repetitions interleaved.
//!
//! Run: `cargo bench --bench remote`; `STATELOG_BENCH_QUICK=1` for a short
//! run. Settings: `STATELOG_BENCH_SECS` per measurement (default 3; quick 1),
//! `STATELOG_BENCH_REPS` (3), `STATELOG_BENCH_DIR` (where the store goes;
//! default: the target's tmp directory, on the checkout's disk).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statelog::{Options, Store};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u64,
    at: i64,
    payload: String,
}

const KEYS: u64 = 10_000;

/// Runs `update` on random keys of the first `keys` for `secs`; returns the
/// commits made.
fn update_loop(store: &Store, secs: Duration, seed: u64, keys: u64) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let mut commits = 0;
    while started.elapsed() < secs {
        let key = format!("k{:08}", rng.u64(0..keys));
        store
            .update(
                "bench",
                &key,
                |old: Option<Record>| -> statelog::Result<Record> {
                    Ok(Record {
                        version: old.map_or(0, |r| r.version + 1),
                        at: 1_767_322_245_000_000,
                        payload: "p".repeat(200),
                    })
                },
            )
            .expect("update");
        commits += 1;
    }
    commits
}

/// A client process's arguments (store directory, seconds, seed, and for
/// `__client` the number of keys): the store reached through its holder, the
/// seconds and the seed.
fn client_store(args: &[String]) -> (Store, Duration, u64) {
    let (dir, secs, seed) = (
        PathBuf::from(&args[0]),
        Duration::from_secs_f64(args[1].parse().expect("secs")),
        args[2].parse::<u64>().expect("seed"),
    );
    let store = Store::open(&dir, Options::default().serve(false)).expect("open");
    assert!(
        !store.is_holder(),
        "the client must work through the holder"
    );
    (store, secs, seed)
}

/// The client process: waits for the parent's go (a line on stdin), runs the
/// loop through the holder, prints its commits.
fn client(args: &[String]) {
    let (store, secs, seed) = client_store(args);
    let keys = args[3].parse::<u64>().expect("keys");
    // A first request, so the connection is up before the clock starts.
    store.get::<Record>("bench", "k00000000").expect("get");
    println!("READY");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("go");
    let commits = update_loop(&store, secs, seed, keys);
    println!("{commits}");
}

/// Mean microseconds of a `get`, then of a durable `put`, on random keys,
/// each timed over `secs`.
fn latencies(store: &Store, secs: Duration, seed: u64) -> (f64, f64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let record = Record {
        version: 1,
        at: 1_767_322_245_000_000,
        payload: "p".repeat(200),
    };
    let mut timed = |put: bool| {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < secs {
            let key = format!("k{:08}", rng.u64(0..KEYS));
            if put {
                store.put("bench", &key, &record).expect("put");
            } else {
                store.get::<Record>("bench", &key).expect("get");
            }
            n += 1;
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    (timed(false), timed(true))
}

/// The latency client: like `client`, but prints the two latencies.
fn latency_client(args: &[String]) {
    let (store, secs, seed) = client_store(args);
    let (get, put) = latencies(&store, secs, seed);
    println!("{get} {put}");
}

/// The latency mode: (local get, remote get, local put, remote put) in µs.
fn latency_run(store: &Store, dir: &Path, secs: Duration, rep: u64) -> [f64; 4] {
    let (local_get, local_put) = latencies(store, secs, rep);
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(&exe)
        .arg("__latency")
        .arg(dir)
        .arg(secs.as_secs_f64().to_string())
        .arg(rep.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run a latency client");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<f64>().expect("µs"));
    let (remote_get, remote_put) = (
        fields.next().expect("get µs"),
        fields.next().expect("put µs"),
    );
    [local_get, remote_get, local_put, remote_put]
}

/// Commits/s of `n` client processes on the first `keys` keys.
fn remote(dir: &Path, n: usize, secs: Duration, rep: u64, keys: u64) -> f64 {
    use std::io::{BufRead, BufReader, Write};
    let exe = std::env::current_exe().expect("current_exe");
    let mut children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(&exe)
                .arg("__client")
                .arg(dir)
                .arg(secs.as_secs_f64().to_string())
                .arg((rep * 1000 + i as u64).to_string())
                .arg(keys.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a client")
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("stdout")).lines())
        .collect();
    for lines in &mut outputs {
        let ready = lines.next().expect("a line").expect("read");
        assert_eq!(ready, "READY");
    }
    let started = Instant::now();
    for child in &mut children {
        writeln!(child.stdin.as_mut().expect("stdin")).expect("go");
    }
    let mut total = 0;
    for lines in &mut outputs {
        total += lines
            .next()
            .expect("a count")
            .expect("read")
            .parse::<u64>()
            .expect("a number");
    }
    let elapsed = started.elapsed();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    total as f64 / elapsed.as_secs_f64()
}

/// Commits/s of `n` threads in the holder.
fn local(store: &Store, n: usize, secs: Duration, rep: u64) -> f64 {
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let store = store.clone();
                scope.spawn(move || update_loop(&store, secs, rep * 1000 + i as u64, KEYS))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__client") {
        client(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("__latency") {
        latency_client(&args[1..]);
        return;
    }
    let quick = std::env::var_os("STATELOG_BENCH_QUICK").is_some();
    let secs =
        Duration::from_secs_f64(env_or("STATELOG_BENCH_SECS", if quick { 1.0 } else { 3.0 }));
    let reps: u64 = env_or("STATELOG_BENCH_REPS", 3);
    let base = std::env::var_os("STATELOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).expect("bench directory");
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    println!(
        "{} cores, store under {}, {secs:?} per measurement, {reps} repetitions",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.path().display()
    );
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mode = std::env::var("STATELOG_BENCH_MODE").unwrap_or_default();
    let keys = if mode == "serve" {
        env_or("STATELOG_BENCH_KEYS", 250_000)
    } else {
        KEYS
    };
    let store = Store::open(dir.path(), Options::default()).expect("open the holder");
    for first in (0..keys).step_by(10_000) {
        store
            .transaction(|tx| {
                for i in first..keys.min(first + 10_000) {
                    tx.put(
                        "bench",
                        &format!("k{i:08}"),
                        &Record {
                            version: 0,
                            at: 0,
                            payload: "p".repeat(200),
                        },
                    )?;
                }
                Ok::<_, statelog::Error>(())
            })
            .expect("load");
    }
    if mode == "serve" {
        store.close().expect("close");
        serve_mode(dir.path(), keys, secs, reps);
        return;
    }
    if mode == "latency" {
        let mut rows: [(&str, Vec<f64>); 4] = [
            ("get in the holder", Vec::new()),
            ("get from a client process", Vec::new()),
            ("durable put in the holder", Vec::new()),
            ("durable put from a client process", Vec::new()),
        ];
        for rep in 0..reps {
            for (row, value) in rows
                .iter_mut()
                .zip(latency_run(&store, dir.path(), secs / 2, rep))
            {
                row.1.push(value);
            }
        }
        table("operation", "µs", 1, &mut rows);
        store.close().expect("close");
        return;
    }
    let mut rows: [(&str, Vec<f64>); 4] = [
        ("16 threads in the holder", Vec::new()),
        ("16 client processes", Vec::new()),
        ("1 thread in the holder", Vec::new()),
        ("1 client process", Vec::new()),
    ];
    for rep in 0..reps {
        rows[0].1.push(local(&store, 16, secs, rep));
        rows[1].1.push(remote(dir.path(), 16, secs, rep, KEYS));
        rows[2].1.push(local(&store, 1, secs, rep));
        rows[3].1.push(remote(dir.path(), 1, secs, rep, KEYS));
    }
    let stats = store.stats();
    let medians = table("writers", "commits/s", 0, &mut rows);
    println!();
    println!(
        "16 remote / 16 local: {:.2} (target >= 0.5); 1 remote / 1 local: {:.2} (target >= 0.8)",
        medians[1] / medians[0],
        medians[3] / medians[2]
    );
    println!(
        "holder: {} commits in {} group commits ({:.1} per sync)",
        stats.commits,
        stats.batches,
        stats.commits as f64 / stats.batches.max(1) as f64
    );
    store.close().expect("close");
}

/// The serve mode: each command of `STATELOG_BENCH_SERVE` in turn holds the
/// store (`statelog serve`) while 16 client processes update random keys
/// through it; its commits/s and its peak RSS, in MiB, one row each.
fn serve_mode(dir: &Path, keys: u64, secs: Duration, reps: u64) {
    use std::io::{BufRead, BufReader};
    let spec = std::env::var("STATELOG_BENCH_SERVE").expect(
        "STATELOG_BENCH_SERVE: the statelog commands to compare, such as \
         target/release/statelog;MALLOC_ARENA_MAX=2 target/release/statelog",
    );
    let commands: Vec<&str> = spec.split(';').map(str::trim).collect();
    println!("{keys} keys, 16 client processes");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); commands.len()];
    let mut peaks: Vec<Vec<f64>> = vec![Vec::new(); commands.len()];
    let mut starts: Vec<Vec<f64>> = vec![Vec::new(); commands.len()];
    for rep in 0..reps {
        for (i, spec) in commands.iter().enumerate() {
            let words: Vec<&str> = spec.split_whitespace().collect();
            let (vars, program) = words.split_at(words.len() - 1);
            let mut command = Command::new(program[0]);
            for var in vars {
                let (name, value) = var.split_once('=').expect("NAME=VALUE");
                command.env(name, value);
            }
            let mut serve = command
                .arg("--store")
                .arg(dir)
                .args(["--json", "serve"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start statelog serve");
            let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
            let serving = lines.next().expect("a line").expect("read");
            assert!(serving.contains("\"serving\""), "{serving}");
            starts[i]
                .push(common::proc_status_kib_of(&serve.id().to_string(), "VmRSS") as f64 / 1024.0);
            rates[i].push(remote(dir, 16, secs, rep, keys));
            peaks[i]
                .push(common::proc_status_kib_of(&serve.id().to_string(), "VmHWM") as f64 / 1024.0);
            println!(
                "rep {rep}: {spec}: {:.0} commits/s, peak RSS {:.1} MiB",
                rates[i][rep as usize], peaks[i][rep as usize]
            );
            // SAFETY: kill takes a pid and a signal number.
            unsafe {
                libc::kill(serve.id() as i32, libc::SIGTERM);
            }
            assert!(serve.wait().expect("wait").success());
        }
    }
    let mut rows: Vec<(&str, Vec<f64>)> = commands.iter().copied().zip(rates).collect();
    table("`statelog serve`", "commits/s", 0, &mut rows);
    let mut rows: Vec<(&str, Vec<f64>)> = commands.iter().copied().zip(peaks).collect();
    table("`statelog serve`", "peak RSS, MiB", 1, &mut rows);
    let mut rows: Vec<(&str, Vec<f64>)> = commands.iter().copied().zip(starts).collect();
    table("`statelog serve`", "RSS once serving, MiB", 1, &mut rows);
}

/// Prints the load average at the end and one table row per measurement
/// (median, min, max, with `decimals`); returns the medians.
fn table(first: &str, unit: &str, decimals: usize, rows: &mut [(&str, Vec<f64>)]) -> Vec<f64> {
    println!(
        "load average at end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    println!("| {first} | median | min | max | unit |");
    println!("| --- | ---: | ---: | ---: | --- |");
    let mut medians = Vec::new();
    for (name, values) in rows.iter_mut() {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        let mid = median(values);
        println!("| {name} | {mid:.decimals$} | {min:.decimals$} | {max:.decimals$} | {unit} |");
        medians.push(mid);
    }
    medians
}
