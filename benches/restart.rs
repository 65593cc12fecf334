//! Fast restart, replay speed, checkpoint cost and memory (issue 3).
//!
//! 1. A child process loads `STATELOG_BENCH_RECORDS` records (default 1,000,000),
//!    checkpoints, commits `STATELOG_BENCH_TAIL` more (default 100,000, one
//!    record each) with checkpoints held off, and is killed with SIGKILL. The
//!    bench then times `Store::open` on copies of that directory: the restart,
//!    and the replay speed in records (commits) per second; and the time until
//!    the first commit after it is acknowledged (a replay the open kept in
//!    memory is written to the state database first).
//! 2. redb on its own, on a file of the same shape: the cost of a durable
//!    (checkpoint) commit after non-durable ones, and the reopen after a kill,
//!    with and without quick-repair.
//! 3. The RSS of an idle store with those records, opened for reads, with the
//!    default cache and a small one.
//!
//! Run: `cargo bench --bench restart`; `STATELOG_BENCH_QUICK=1` for a smoke run;
//! `STATELOG_BENCH_COLD=1` drops the page cache before each reopen (root only),
//! as after a reboot rather than a killed process.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, TableDefinition};
use statelog::{CheckpointPolicy, Durability, KeyRange, Options, Store};

use common::{Record, Summary, summarize};

const NS: &str = "bench";
const BATCH: usize = 10_000;
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

struct Config {
    records: u64,
    tail: u64,
    reps: usize,
    cold: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__child") {
        child(&args[1..]);
        return;
    }
    let quick = common::quick();
    let config = Config {
        records: common::env_u64(
            "STATELOG_BENCH_RECORDS",
            if quick { 100_000 } else { 1_000_000 },
        ),
        tail: common::env_u64("STATELOG_BENCH_TAIL", if quick { 10_000 } else { 100_000 }),
        reps: common::env_u64("STATELOG_BENCH_REPS", 3) as usize,
        cold: std::env::var("STATELOG_BENCH_COLD").is_ok_and(|v| v == "1"),
    };
    println!("{}", common::machine(&common::base_dir()));
    println!("load average at start: {}", common::load_average());
    println!(
        "{} records, {} commits of log past the checkpoint, {} repetitions, {} cache",
        config.records,
        config.tail,
        config.reps,
        if config.cold { "cold" } else { "warm" }
    );
    let dir = common::temp_dir("restart-");
    restart(&config, dir.path());
    memory(dir.path());
    drop(dir);
    let dir = common::temp_dir("restart-redb-");
    redb_quick_repair(&config, dir.path());
    println!("load average at end: {}", common::load_average());
}

fn drop_caches() {
    // SAFETY of the data: only asks the kernel to drop clean pages.
    std::process::Command::new("sync")
        .status()
        .expect("run sync");
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (root only)");
}

/// Writes the copy just made to disk: otherwise the reopen's first syncs of
/// the state database write back the whole copied file, timing the copy
/// rather than the restart (1.6-2x the reopen's time under load).
fn write_back() {
    std::process::Command::new("sync")
        .status()
        .expect("run sync");
}

fn line(name: &str, s: Summary, unit: &str) {
    println!(
        "| {name} | {:.3} | {:.3} | {:.3} | {unit} |",
        s.median, s.min, s.max
    );
}

/// Starts a child, waits for its line starting with `READY`, kills it (SIGKILL),
/// and returns that line.
fn run_and_kill(args: &[&str]) -> String {
    let exe = std::env::current_exe().expect("find the bench binary");
    let mut child = Command::new(exe)
        .arg("__child")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut ready = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child's output");
        if line.starts_with("READY") {
            ready = Some(line);
            break;
        }
    }
    child.kill().expect("kill the writer");
    let status = child.wait().expect("reap the writer");
    let ready = ready.unwrap_or_else(|| panic!("the child {args:?} ended ({status}) before READY"));
    println!("child killed ({status}) after: {ready}");
    ready
}

fn restart(config: &Config, dir: &Path) {
    let crashed = dir.join("crashed");
    let start = Instant::now();
    run_and_kill(&[
        "write",
        crashed.to_str().expect("UTF-8 path"),
        &config.records.to_string(),
        &config.tail.to_string(),
    ]);
    println!(
        "built in {:.1} s: {:.0} MiB (log {:.0} MiB)",
        start.elapsed().as_secs_f64(),
        common::dir_bytes(&crashed) as f64 / (1 << 20) as f64,
        common::dir_bytes(&crashed.join("log")) as f64 / (1 << 20) as f64
    );
    let work = dir.join("work");
    let mut opens = Vec::new();
    let mut rates = Vec::new();
    let mut writable = Vec::new();
    let mut clean = Vec::new();
    let mut peaks = Vec::new();
    for _ in 0..config.reps {
        let _ = std::fs::remove_dir_all(&work);
        common::copy_dir(&crashed, &work);
        if config.cold {
            drop_caches();
        } else {
            write_back();
        }
        let start = Instant::now();
        let (store, before, peak) = common::with_peak_rss(|| {
            Store::open(&work, Options::default()).expect("reopen after the kill")
        });
        let secs = start.elapsed().as_secs_f64();
        peaks.push(common::mib(peak.saturating_sub(before)));
        let replayed = store.recovery().replayed;
        assert_eq!(replayed, config.tail, "replayed a wrong number of commits");
        opens.push(secs);
        rates.push(replayed as f64 / secs);
        store
            .put(NS, "after-the-reopen", &Record::new(0, 0))
            .expect("a commit after the reopen");
        writable.push(start.elapsed().as_secs_f64());
        store.close().expect("close");
        if config.cold {
            drop_caches();
        }
        let start = Instant::now();
        let store = Store::open(&work, Options::default()).expect("reopen after a clean close");
        clean.push(start.elapsed().as_secs_f64());
        assert_eq!(store.recovery().replayed, 0);
        store.close().expect("close");
    }
    println!();
    println!(
        "| restart ({} records) | median | min | max | unit |",
        config.records
    );
    println!("| --- | ---: | ---: | ---: | --- |");
    line(
        &format!("reopen after SIGKILL, {} commits to replay", config.tail),
        summarize(&opens),
        "s",
    );
    line(
        "replay speed (commits replayed / reopen time)",
        summarize(&rates),
        "commits/s",
    );
    line(
        "reopen after SIGKILL until its first commit is acknowledged",
        summarize(&writable),
        "s",
    );
    line(
        "reopen after a clean close (nothing to replay)",
        summarize(&clean),
        "s",
    );
    line(
        "peak RSS of the reopen after SIGKILL, above the RSS before it",
        summarize(&peaks),
        "MiB",
    );
    println!();
}

fn memory(dir: &Path) {
    let store = dir.join("work");
    println!(
        "| idle store, opened for reads | cache setting | RSS before open | after open | \
         after 200k gets | after a full scan | peak | peak minus cache setting |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for cache in [128u64 << 20, 16 << 20] {
        let r = common::run_child(&[
            "idle",
            store.to_str().expect("UTF-8 path"),
            &cache.to_string(),
        ]);
        let kib = |name| common::mib(common::field(&r, name) as u64);
        println!(
            "| statelog | {} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            cache >> 20,
            kib("rss_start_kib"),
            kib("rss_open_kib"),
            kib("rss_gets_kib"),
            kib("rss_scan_kib"),
            kib("hwm_kib"),
            kib("hwm_kib") - (cache >> 20) as f64
        );
    }
    println!();
}

fn redb_quick_repair(config: &Config, dir: &Path) {
    println!(
        "| redb alone ({} records) | median | min | max | unit |",
        config.records
    );
    println!("| --- | ---: | ---: | ---: | --- |");
    for quick_repair in [false, true] {
        let crashed = dir.join(format!("crashed-{quick_repair}.redb"));
        let ready = run_and_kill(&[
            "redb-crash",
            crashed.to_str().expect("UTF-8 path"),
            if quick_repair { "1" } else { "0" },
            &config.records.to_string(),
        ]);
        let ckpt_ms: f64 = ready
            .split_whitespace()
            .find_map(|p| p.strip_prefix("ckpt_ms="))
            .and_then(|v| v.parse().ok())
            .expect("ckpt_ms in READY");
        let work = dir.join("work.redb");
        let mut opens = Vec::new();
        let mut walked = Vec::new();
        for _ in 0..config.reps {
            std::fs::copy(&crashed, &work).expect("copy the crashed file");
            if config.cold {
                drop_caches();
            }
            let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = Arc::clone(&repaired);
            let start = Instant::now();
            let db = Database::builder()
                .set_cache_size(128 << 20)
                .set_repair_callback(move |_| {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed)
                })
                .open(&work)
                .expect("reopen redb after the kill");
            opens.push(start.elapsed().as_secs_f64());
            // Without quick-repair redb must walk the file (and reports progress);
            // with it, the saved allocator state makes that unnecessary.
            if !quick_repair {
                assert!(
                    repaired.load(std::sync::atomic::Ordering::Relaxed),
                    "redb did not repair after the kill"
                );
            }
            walked.push(repaired.load(std::sync::atomic::Ordering::Relaxed));
            drop(db);
            std::fs::remove_file(&work).expect("remove the copy");
        }
        let mode = if quick_repair {
            "with quick-repair"
        } else {
            "without quick-repair"
        };
        println!("| durable commit after 500 non-durable ones, {mode} | {ckpt_ms:.3} | | | ms |");
        let walked = if walked.iter().any(|&w| w) {
            "full repair walk"
        } else {
            "no repair walk"
        };
        line(
            &format!("reopen after SIGKILL, {mode} ({walked})"),
            summarize(&opens),
            "s",
        );
    }
    println!();
}

fn child(args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["write", dir, records, tail] => write_then_wait(
            Path::new(dir),
            records.parse().expect("records"),
            tail.parse().expect("tail"),
        ),
        // For profiling a reopen by hand: `perf record <bench> __child open DIR`.
        ["open", dir] => {
            let start = Instant::now();
            let store = Store::open(dir, Options::default()).expect("open");
            println!(
                "RESULT secs={} replayed={}",
                start.elapsed().as_secs_f64(),
                store.recovery().replayed
            );
        }
        ["idle", dir, cache] => idle(Path::new(dir), cache.parse().expect("cache")),
        ["redb-crash", file, quick, records] => redb_crash(
            Path::new(file),
            *quick == "1",
            records.parse().expect("records"),
        ),
        _ => panic!("unknown child command {args:?}"),
    }
}

fn wait_to_be_killed() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The writer: load, checkpoint, then a tail of single-record commits from four
/// threads (relaxed durability, only to build it faster: a killed process loses
/// nothing in either mode), and wait to be killed.
fn write_then_wait(dir: &Path, records: u64, tail: u64) {
    let never = CheckpointPolicy::manual();
    let options = Options::default()
        .checkpoint(never)
        .durability(Durability::Relaxed {
            max_delay: Duration::from_millis(5),
        });
    let store = Store::open(dir, options).expect("open the store");
    let keys = common::keys(records);
    for chunk in keys.chunks(BATCH) {
        store
            .transaction(|tx| {
                for (i, key) in chunk.iter().enumerate() {
                    tx.put(NS, key, &Record::new(0, i as u64))?;
                }
                Ok::<_, statelog::Error>(())
            })
            .expect("load a batch");
    }
    store.checkpoint().expect("checkpoint");
    const THREADS: u64 = 4;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, keys) = (&store, &keys);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                for i in (t..tail).step_by(THREADS as usize) {
                    let key = &keys[rng.usize(..keys.len())];
                    store
                        .put(NS, key, &Record::new(i, i))
                        .expect("commit to the tail");
                }
            });
        }
    });
    let stats = store.stats();
    assert_eq!(stats.revision - stats.checkpoint_revision, tail);
    println!(
        "READY revision={} checkpoint_revision={} log_bytes={}",
        stats.revision, stats.checkpoint_revision, stats.log_bytes
    );
    wait_to_be_killed();
}

fn idle(dir: &Path, cache: usize) {
    let rss_start = common::proc_status_kib("VmRSS");
    let store = Store::open(dir, Options::default().cache_size(cache)).expect("open");
    let rss_open = common::proc_status_kib("VmRSS");
    let count = store.read(|s| s.count(NS)).expect("count");
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..200_000 {
        let key = common::key(rng.u64(..count));
        std::hint::black_box(store.get::<Record>(NS, &key).expect("get"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_gets = common::proc_status_kib("VmRSS");
    let mut scanned = 0usize;
    for item in store.list_raw(NS, KeyRange::all()).expect("list") {
        std::hint::black_box(item.expect("a record"));
        scanned += 1;
    }
    assert_eq!(scanned as u64, count);
    std::thread::sleep(Duration::from_millis(300));
    let rss_scan = common::proc_status_kib("VmRSS");
    println!(
        "RESULT rss_start_kib={rss_start} rss_open_kib={rss_open} rss_gets_kib={rss_gets} \
         rss_scan_kib={rss_scan} hwm_kib={}",
        common::proc_status_kib("VmHWM")
    );
    drop(store);
}

fn encode(record: &Record) -> Vec<u8> {
    rmp_serde::to_vec_named(record).expect("encode")
}

/// redb on its own, used as statelog uses it: load in durable batches, then
/// cycles of non-durable commits closed by a durable one (a checkpoint), timing
/// the durable ones; then more non-durable commits, and wait to be killed.
fn redb_crash(file: &Path, quick_repair: bool, records: u64) {
    let db = Database::builder()
        .set_cache_size(128 << 20)
        .create(file)
        .expect("create redb");
    let durable = |quick: bool| {
        let mut txn = db.begin_write().expect("begin");
        txn.set_quick_repair(quick);
        txn
    };
    let keys = common::keys(records);
    for chunk in keys.chunks(BATCH) {
        let txn = durable(quick_repair);
        {
            let mut table = txn.open_table(RECORDS).expect("table");
            for (i, key) in chunk.iter().enumerate() {
                table
                    .insert(key.as_str(), encode(&Record::new(0, i as u64)).as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let mut non_durable = |n: usize| {
        for _ in 0..n {
            let mut txn = db.begin_write().expect("begin");
            txn.set_durability(redb::Durability::None)
                .expect("durability");
            {
                let mut table = txn.open_table(RECORDS).expect("table");
                let key = keys[rng.usize(..keys.len())].as_str();
                let old: Record =
                    rmp_serde::from_slice(table.get(key).expect("get").expect("present").value())
                        .expect("decode");
                table
                    .insert(key, encode(&old.bumped(1)).as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
    };
    let mut checkpoints = Vec::new();
    for round in 0..20 {
        non_durable(500);
        let txn = durable(quick_repair);
        // Like a statelog checkpoint: record how far the state goes.
        txn.open_table(META)
            .expect("meta")
            .insert("applied", round)
            .expect("insert");
        let start = Instant::now();
        txn.commit().expect("durable commit");
        checkpoints.push(start.elapsed().as_secs_f64() * 1e3);
    }
    non_durable(1_000);
    println!(
        "READY ckpt_ms={:.3} ckpt_min_ms={:.3} ckpt_max_ms={:.3}",
        summarize(&checkpoints).median,
        summarize(&checkpoints).min,
        summarize(&checkpoints).max
    );
    wait_to_be_killed();
}
