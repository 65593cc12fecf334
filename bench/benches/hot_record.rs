//! One hot record, many threads: how many increments a second with a patch
//! (`Store::patch`, evaluated at commit), with `Store::update` (read, add,
//! commit if unchanged; same-key updates of a process take turns), and with
//! SQLite's `UPDATE t SET n = n + 1 WHERE id = 1` (WAL, `synchronous=FULL`,
//! one connection per thread, a busy timeout), in the same run on the same
//! disk. Each figure is checked: the counter ends at exactly the number of
//! increments.
//!
//! `cargo bench -p statelog-bench --bench hot_record` (`HOT_SECS` seconds per
//! cell, default 3; `HOT_THREADS`, default `1,8,64`). Data goes under the
//! target directory's `tmp/` (or `STATELOG_BENCH_DIR`), deleted at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use statelog::{Options, Patch, Store};

fn threads() -> Vec<usize> {
    std::env::var("HOT_THREADS")
        .unwrap_or_else(|_| "1,8,64".to_owned())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("HOT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    )
}

/// Runs `op` on `threads` threads for a warm-up of a fifth of `time`, then
/// for `time`; returns operations a second (of the timed part) and the
/// operations done in all.
fn run(threads: usize, time: Duration, op: impl Fn(usize) + Sync) -> (f64, u64) {
    let timed = |time: Duration| {
        let stop = AtomicBool::new(false);
        let done = AtomicU64::new(0);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (stop, done, op) = (&stop, &done, &op);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        op(t);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            std::thread::sleep(time);
            stop.store(true, Ordering::Relaxed);
        });
        let n = done.load(Ordering::Relaxed);
        (n as f64 / start.elapsed().as_secs_f64(), n)
    };
    let (_, warm) = timed(time / 5);
    let (rate, n) = timed(time);
    (rate, warm + n)
}

fn scratch() -> tempfile::TempDir {
    let root = std::env::var("STATELOG_BENCH_DIR")
        .unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_owned());
    std::fs::create_dir_all(&root).expect("the bench directory");
    tempfile::tempdir_in(root).expect("tempdir")
}

fn statelog_patch(threads: usize, time: Duration) -> f64 {
    let dir = scratch();
    let store = Store::open(dir.path(), Options::default()).expect("open");
    let patch = Patch::new().add(&["n"], 1);
    let (rate, n) = run(threads, time, |_| {
        store.patch("bench", "hot", &patch).expect("patch");
    });
    let value: serde_json::Value = store.get("bench", "hot").expect("get").expect("some").value;
    assert_eq!(value["n"], n, "a patch was lost");
    store.close().expect("close");
    rate
}

fn statelog_update(threads: usize, time: Duration) -> f64 {
    let dir = scratch();
    let store = Store::open(dir.path(), Options::default()).expect("open");
    let (rate, n) = run(threads, time, |_| {
        store
            .update("bench", "hot", |v: Option<u64>| -> statelog::Result<u64> {
                Ok(v.unwrap_or(0) + 1)
            })
            .expect("update");
    });
    let value: u64 = store.get("bench", "hot").expect("get").expect("some").value;
    assert_eq!(value, n, "an update was lost");
    store.close().expect("close");
    rate
}

fn connect(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).expect("open sqlite");
    conn.busy_timeout(Duration::from_secs(60))
        .expect("busy timeout");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("WAL");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("FULL");
    conn
}

fn sqlite(threads: usize, time: Duration) -> f64 {
    let dir = scratch();
    let path = dir.path().join("hot.sqlite");
    connect(&path)
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
             INSERT INTO t VALUES (1, 0);",
        )
        .expect("create");
    let connections: Vec<std::sync::Mutex<Connection>> = (0..threads)
        .map(|_| std::sync::Mutex::new(connect(&path)))
        .collect();
    let (rate, n) = run(threads, time, |t| {
        let conn = connections[t].lock().expect("connection");
        conn.prepare_cached("UPDATE t SET n = n + 1 WHERE id = 1")
            .expect("prepare")
            .execute([])
            .expect("update");
    });
    let total: i64 = connect(&path)
        .query_row("SELECT n FROM t WHERE id = 1", [], |r| r.get(0))
        .expect("read");
    assert_eq!(u64::try_from(total).ok(), Some(n), "an update was lost");
    rate
}

fn main() {
    let time = secs();
    println!("| threads | statelog patch | statelog update | SQLite UPDATE n = n + 1 |");
    println!("| ---: | ---: | ---: | ---: |");
    for threads in threads() {
        let patch = statelog_patch(threads, time);
        let update = statelog_update(threads, time);
        let sqlite = sqlite(threads, time);
        println!("| {threads} | {patch:.0}/s | {update:.0}/s | {sqlite:.0}/s |");
    }
}
