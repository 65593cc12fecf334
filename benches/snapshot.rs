//! Snapshot export and import: throughput, and peak memory (VmHWM) to show that
//! exporting does not grow with the store.
//!
//! Run: `cargo bench --bench snapshot` (1,000,000 records; set
//! `SNAPSHOT_BENCH_RECORDS` for another count). The formats: JSON Lines,
//! JSON, Markdown, HTML.
//!
//! Each measurement runs in a child process of its own, so its peak resident
//! set size (VmHWM in /proc/self/status) is its own: one child fills the store,
//! then one per format opens it and exports to a file, and one restores a
//! JSON Lines export of one namespace (a quarter of the records) into an empty
//! store (import reads the whole file before its one atomic commit, so its
//! memory grows with the file by design).
//!
//! The exports open the store with a 16 MiB page cache: the state database
//! caches pages it reads up to `Options::cache_size` (128 MiB by default), a
//! bound of its own that any large read reaches. One more JSON Lines export
//! with the default cache shows that part: it adds the cache, not the store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::{Durability, Options, Store};

const CHILD: &str = "--snapshot-bench-child";

#[derive(Serialize)]
struct Task<'a> {
    status: &'a str,
    progress: u32,
    stage: &'a str,
    attempts: u8,
    artifact: String,
}

fn options() -> Options {
    Options::default().durability(Durability::Relaxed {
        max_delay: Duration::from_millis(100),
    })
}

/// The page cache of the exports, MiB.
const EXPORT_CACHE_MIB: usize = 16;

/// Peak resident set size of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn fill(dir: &Path, records: u64) {
    let store = Store::open(dir, options()).expect("open");
    let statuses = ["queued", "running", "done", "failed"];
    let batch = 10_000;
    let mut next = 0;
    while next < records {
        let end = (next + batch).min(records);
        store
            .transaction(|tx| {
                for i in next..end {
                    let task = Task {
                        status: statuses[(i % 4) as usize],
                        progress: (i % 101) as u32,
                        stage: "render",
                        attempts: (i % 3) as u8,
                        artifact: format!("s3://bucket/out/{i:08}.mp4"),
                    };
                    tx.put(&format!("ns{}", i % 4), &format!("task-{i:08}"), &task)?;
                }
                Ok::<_, statelog::Error>(())
            })
            .expect("fill");
        next = end;
    }
    store.close().expect("close");
}

fn export(
    dir: &Path,
    format: Format,
    one_namespace: bool,
    cache_mib: usize,
) -> (u64, u64, Duration) {
    let store = Store::open(dir, options().cache_size(cache_mib << 20)).expect("open");
    let path = dir.with_extension(format!("{:?}.{}", format, format.extension()));
    let file = std::fs::File::create(&path).expect("create the export file");
    let mut options = ExportOptions::new(format);
    if one_namespace {
        // A quarter of the records.
        options = options.namespaces(["ns0"]);
    }
    let started = Instant::now();
    let summary = snapshot::export(&store, file, &options).expect("export");
    (summary.records, summary.bytes, started.elapsed())
}

fn import(source: &Path, target: &Path) -> (u64, Duration) {
    let store = Store::open(target, options()).expect("open");
    let file = std::fs::File::open(source).expect("open the export");
    let started = Instant::now();
    let report = snapshot::import(
        &store,
        std::io::BufReader::new(file),
        &ImportOptions::new(Format::JsonLines, ImportMode::Restore),
    )
    .expect("import");
    (report.records, started.elapsed())
}

fn child(args: &[String]) {
    let dir = PathBuf::from(&args[1]);
    match args[0].as_str() {
        "fill" => {
            let records: u64 = args[2].parse().expect("count");
            let started = Instant::now();
            fill(&dir, records);
            println!(
                "fill: {records} records in {:.1} s, peak RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                peak_rss_mib()
            );
        }
        "export" => {
            let format = match args[2].as_str() {
                "json" => Format::Json,
                "jsonl" => Format::JsonLines,
                "html" => Format::Html,
                _ => Format::Markdown,
            };
            let cache_mib: usize = args[3].parse().expect("cache size");
            let (records, bytes, took) = export(&dir, format, false, cache_mib);
            println!(
                "export {format:?} (cache {cache_mib} MiB): {records} records, {:.0} MiB in \
                 {:.2} s = {:.0} records/s, peak RSS {:.1} MiB",
                bytes as f64 / (1 << 20) as f64,
                took.as_secs_f64(),
                records as f64 / took.as_secs_f64(),
                peak_rss_mib()
            );
        }
        "import" => {
            // A JSON Lines export of one namespace, restored into a new store.
            let (_, bytes, _) = export(&dir, Format::JsonLines, true, EXPORT_CACHE_MIB);
            let source = dir.with_extension(format!(
                "{:?}.{}",
                Format::JsonLines,
                Format::JsonLines.extension()
            ));
            let target = dir.with_extension("imported");
            let (records, took) = import(&source, &target);
            println!(
                "import JsonLines (restore): {records} records, {:.0} MiB in {:.2} s = {:.0} \
                 records/s, peak RSS {:.0} MiB",
                bytes as f64 / (1 << 20) as f64,
                took.as_secs_f64(),
                records as f64 / took.as_secs_f64(),
                peak_rss_mib()
            );
        }
        other => panic!("unknown child {other}"),
    }
    std::io::stdout().flush().expect("flush");
}

fn run_child(args: &[&str]) {
    let exe = std::env::current_exe().expect("current exe");
    let status = Command::new(exe)
        .arg(CHILD)
        .args(args)
        .status()
        .expect("run a child");
    assert!(status.success(), "child {args:?} failed");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD) {
        child(&args[1..]);
        return;
    }
    let records: u64 = std::env::var("SNAPSHOT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = tempfile::Builder::new()
        .prefix("statelog-snapshot-bench-")
        .tempdir()
        .expect("temporary directory");
    let dir = root.path().join("store");
    let dir_text = dir.to_string_lossy().into_owned();
    run_child(&["fill", &dir_text, &records.to_string()]);
    let cache = EXPORT_CACHE_MIB.to_string();
    for format in ["jsonl", "json", "md", "html"] {
        run_child(&["export", &dir_text, format, &cache]);
    }
    let default_cache = (128usize).to_string();
    run_child(&["export", &dir_text, "jsonl", &default_cache]);
    run_child(&["import", &dir_text]);
}
