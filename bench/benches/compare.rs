//! The side-by-side benchmark of issue 3: statelog against what its users would
//! pick instead (redb, SQLite, a JSON file with a lock), on the same disk, the
//! same record shape and the same workloads, in one run, printed as one table.
//!
//! Run: `cargo bench -p statelog-bench --bench compare` (a few minutes), or
//! `STATELOG_BENCH_QUICK=1 cargo bench -p statelog-bench --bench compare` (under a minute).
//! Settings (environment): `STATELOG_BENCH_SECS` per timed repetition,
//! `STATELOG_BENCH_REPS`, `STATELOG_BENCH_UPDATE_KEYS` (W1, W2),
//! `STATELOG_BENCH_READ_KEYS` (W3), `STATELOG_BENCH_BULK`
//! and `STATELOG_BENCH_BATCH` (W4), `STATELOG_BENCH_ENGINES` and
//! `STATELOG_BENCH_WORKLOADS` (comma-separated filters), `STATELOG_BENCH_HEAP=1`
//! (count the live heap, for memory diagnosis only), `STATELOG_BENCH_DIR`
//! (where data goes; default: the target's tmp directory, on the checkout's disk).
//!
//! Each engine's run of each workload is a child process of this binary (the
//! parent asks it for one repetition at a time), which reports its peak RSS.

// The helpers the library's benchmarks use too, shared rather than copied.
#[path = "../../benches/common/mod.rs"]
mod common;
#[path = "compare/engines.rs"]
mod engines;
#[path = "compare/fsync_limit.rs"]
mod fsync_limit;
#[path = "compare/heap.rs"]
mod heap;
#[path = "compare/json_file.rs"]
mod json_file;
#[path = "compare/redb_peer.rs"]
mod redb_peer;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/sqlite_peer.rs"]
mod sqlite_peer;
#[path = "compare/statelog_engine.rs"]
mod statelog_engine;
#[path = "compare/workloads.rs"]
mod workloads;

fn main() {
    heap::enable_from_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__child") {
        workloads::child(&args[1..]);
        return;
    }
    let config = workloads::Config::from_env();
    println!("{}", common::machine(&common::base_dir()));
    println!("load average at start: {}", common::load_average());
    println!("{config:?}");
    let rows = workloads::run_all(&config);
    println!();
    println!("load average at end: {}", common::load_average());
    report::print(&rows);
}
