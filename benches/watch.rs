//! The change feed and the past:
//!
//! 1. commits per second of 4 writer threads (`put`; durable, then relaxed)
//!    with 0 and with 4 watchers of the whole store, interleaved repetitions
//!    (0, 4, 0, 4...);
//! 2. commit-to-watcher latency: one writer commits one record at a time;
//!    the time from the `put` call to the watcher receiving its revision
//!    (p50, p99), beside the `put`'s own time;
//! 3. `snapshot_at_revision(R).get(..)` (what `get --at-revision` does)
//!    against the log's size: stores of 10,000 to 400,000 commits over 1,000
//!    keys, at random past revisions.
//!
//! Run: `cargo bench --bench watch`; `STATELOG_BENCH_QUICK=1` for a short
//! run. `STATELOG_BENCH_SECS` per measurement (default 3; quick 1),
//! `STATELOG_BENCH_REPS` (3), `STATELOG_BENCH_DIR` (where the stores go;
//! default: the target's tmp directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use statelog::{Durability, Options, Store, Watch, WatchEvent};

fn fresh(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Commits per second of 4 writers while `watchers` watch everything.
fn throughput(dir: &Path, watchers: usize, secs: Duration, durability: Durability) -> f64 {
    let store = Store::open(dir, Options::default().durability(durability)).expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let watching: Vec<_> = (0..watchers)
        .map(|_| {
            let mut watcher = store
                .watch(Watch::all().progress(Duration::from_millis(50)))
                .expect("watch");
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut seen = 0u64;
                for event in watcher.by_ref() {
                    match event.expect("event") {
                        WatchEvent::Change(_) => seen += 1,
                        WatchEvent::Progress { .. } => {
                            if stop.load(Ordering::Acquire) {
                                break;
                            }
                        }
                    }
                }
                seen
            })
        })
        .collect();
    let started = Instant::now();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < secs {
                    store
                        .put("bench", &format!("w{w}-{}", n % 1000), &n)
                        .expect("put");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let commits: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    for w in watching {
        let seen = w.join().expect("watcher");
        assert_eq!(seen, commits, "a watcher missed commits");
    }
    store.close().expect("close");
    commits as f64 / elapsed.as_secs_f64()
}

/// Latencies (µs) from `put` to the watcher's receipt, and of the `put`.
fn latency(dir: &Path, commits: u64, durability: Durability) -> (Vec<f64>, Vec<f64>) {
    let store = Store::open(dir, Options::default().durability(durability)).expect("open");
    let starts: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; commits as usize + 2]));
    let mut watcher = store.watch(Watch::all()).expect("watch");
    let seen = {
        let starts = Arc::clone(&starts);
        std::thread::spawn(move || {
            let mut out = Vec::with_capacity(commits as usize);
            while out.len() < commits as usize {
                if let Some(Ok(WatchEvent::Change(c))) = watcher.next() {
                    let now = Instant::now();
                    // The writer notes the start before its put: it is there.
                    let start = loop {
                        if let Some(s) = starts.lock()[c.revision as usize] {
                            break s;
                        }
                        std::hint::spin_loop();
                    };
                    out.push((now - start).as_secs_f64() * 1e6);
                }
            }
            out
        })
    };
    let mut puts = Vec::with_capacity(commits as usize);
    for i in 1..=commits {
        let start = Instant::now();
        starts.lock()[i as usize] = Some(start);
        store
            .put("bench", &format!("k{}", i % 100), &i)
            .expect("put");
        puts.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let to_watcher = seen.join().expect("watcher");
    store.close().expect("close");
    (to_watcher, puts)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[at]
}

/// Mean µs of a past read at random revisions of a store of `commits`.
fn past_reads(dir: &Path, commits: u64, reads: u64) -> (f64, u64) {
    let options = Options::default().durability(statelog::Durability::Relaxed {
        max_delay: Duration::from_millis(100),
    });
    let store = Store::open(dir, options).expect("open");
    // Batches of 1,000 writers' worth: quick to build, one commit each.
    let threads = 8;
    let per = commits / threads;
    let writers: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    store
                        .put("bench", &format!("k{:04}", (t * per + i) % 1000), &i)
                        .expect("put");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    store.checkpoint().expect("checkpoint");
    let head = store.revision();
    let log_bytes: u64 = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mut rng = fastrand::Rng::with_seed(1);
    let started = Instant::now();
    for _ in 0..reads {
        let r = rng.u64(1..=head);
        let snapshot = store.snapshot_at_revision(r).expect("past");
        let _ = snapshot
            .get_raw("bench", &format!("k{:04}", rng.u64(0..1000)))
            .expect("get");
    }
    let mean = started.elapsed().as_secs_f64() * 1e6 / reads as f64;
    store.close().expect("close");
    (mean, log_bytes)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var_os("STATELOG_BENCH_QUICK").is_some();
    let secs: f64 = std::env::var("STATELOG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1.0 } else { 3.0 });
    let reps: usize = std::env::var("STATELOG_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let base = std::env::var_os("STATELOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join("statelog-bench-watch");
    std::fs::create_dir_all(&base).expect("bench dir");
    let secs = Duration::from_secs_f64(secs);

    let relaxed = Durability::Relaxed {
        max_delay: Duration::from_millis(10),
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for (name, durability) in [("sync", Durability::Sync), ("relaxed", relaxed)] {
        let mut without = Vec::new();
        let mut with = Vec::new();
        for rep in 0..reps {
            let dir = fresh(&base, &format!("t0-{rep}"));
            without.push(throughput(&dir, 0, secs, durability));
            let dir = fresh(&base, &format!("t4-{rep}"));
            with.push(throughput(&dir, 4, secs, durability));
        }
        println!(
            "{name}: commits/s, 4 writers: 0 watchers {:.0} ({:?}), 4 watchers {:.0} ({:?}): \
             ratio {:.3}",
            mean(&without),
            without.iter().map(|x| x.round()).collect::<Vec<_>>(),
            mean(&with),
            with.iter().map(|x| x.round()).collect::<Vec<_>>(),
            mean(&with) / mean(&without)
        );
        let n = if quick { 1_000 } else { 5_000 };
        let (mut to_watcher, mut puts) = latency(&fresh(&base, "latency"), n, durability);
        println!(
            "{name}: commit-to-watcher latency over {n} commits: p50 {:.0} µs, p99 {:.0} µs \
             (the put itself: p50 {:.0} µs, p99 {:.0} µs)",
            percentile(&mut to_watcher, 0.5),
            percentile(&mut to_watcher, 0.99),
            percentile(&mut puts, 0.5),
            percentile(&mut puts, 0.99)
        );
    }

    let sizes: &[u64] = if quick {
        &[10_000, 40_000]
    } else {
        &[10_000, 100_000, 400_000]
    };
    for &commits in sizes {
        let (us, log_bytes) = past_reads(&fresh(&base, &format!("past-{commits}")), commits, 2_000);
        println!(
            "past read (snapshot_at_revision + get) over {commits} commits ({:.1} MB of log): {us:.1} µs",
            log_bytes as f64 / 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
