//! The workloads W1-W5 and how each engine takes part in them.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, summarize};
use crate::engines::{self, Counters, Engine, Kind};
use crate::report::{Row, Workload};

#[derive(Debug, Clone)]
pub struct Config {
    pub secs: f64,
    pub reps: usize,
    pub update_keys: u64,
    pub read_keys: u64,
    pub bulk: u64,
    pub batch: usize,
    pub increments: u64,
    pub engines: Vec<Kind>,
    pub workloads: Vec<String>,
}

impl Config {
    pub fn from_env() -> Config {
        let quick = common::quick();
        let engines = match std::env::var("STATELOG_BENCH_ENGINES") {
            Ok(list) => list
                .split(',')
                .map(|n| Kind::from_name(n.trim()).unwrap_or_else(|| panic!("no engine {n}")))
                .collect(),
            Err(_) => engines::ALL.to_vec(),
        };
        let workloads = std::env::var("STATELOG_BENCH_WORKLOADS")
            .unwrap_or_else(|_| "W1,W2,W3,W4,W5".to_owned())
            .split(',')
            .map(|w| w.trim().to_uppercase())
            .collect();
        Config {
            secs: common::env_f64("STATELOG_BENCH_SECS", if quick { 0.3 } else { 3.0 }),
            reps: common::env_u64("STATELOG_BENCH_REPS", 3) as usize,
            update_keys: common::env_u64("STATELOG_BENCH_UPDATE_KEYS", 10_000),
            read_keys: common::env_u64(
                "STATELOG_BENCH_READ_KEYS",
                if quick { 20_000 } else { 100_000 },
            ),
            bulk: common::env_u64(
                "STATELOG_BENCH_BULK",
                if quick { 50_000 } else { 1_000_000 },
            ),
            batch: common::env_u64("STATELOG_BENCH_BATCH", 10_000) as usize,
            increments: 500,
            engines,
            workloads,
        }
    }

    fn wants(&self, workload: &str) -> bool {
        self.workloads.iter().any(|w| w == workload)
    }
}

/// Which workloads each engine takes part in.
fn plan(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::FsyncLimit => &["W1", "W2"],
        Kind::StatelogNoPrealloc => &["W1"],
        Kind::StatelogRelaxed => &["W1", "W2", "W5"],
        Kind::RedbNonDurable => &["W1", "W2"],
        Kind::JsonFileNoLock => &["W5"],
        Kind::StatelogSync | Kind::Redb | Kind::Sqlite | Kind::JsonFile => {
            &["W1", "W2", "W3", "W4", "W5"]
        }
    }
}

pub fn run_all(config: &Config) -> Vec<Row> {
    let takes = |kind: Kind, w: &str| plan(kind).contains(&w) && config.wants(w);
    let with = |w: &str| -> Vec<Kind> {
        config
            .engines
            .iter()
            .copied()
            .filter(|&k| takes(k, w))
            .collect()
    };
    let mut rows = Vec::new();
    rows.extend(update_workloads(config, &with("W1"), &with("W2")));
    rows.extend(reads(config, &with("W3")));
    for kind in with("W4") {
        rows.extend(bulk(config, kind));
    }
    for kind in with("W5") {
        rows.push(lost_update_check(config, kind));
    }
    rows
}

/// One engine's run of one workload in a child process of its own: the
/// child's answer to each repetition, its last answer (memory, counters) and
/// the directory its data is in.
struct ChildRun {
    kind: Kind,
    reps: Vec<Vec<(String, String)>>,
    end: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl ChildRun {
    /// Each repetition's `name`.
    fn each(&self, name: &str) -> Vec<f64> {
        self.reps.iter().map(|r| common::field(r, name)).collect()
    }

    fn total(&self, name: &str) -> f64 {
        self.each(name).iter().sum()
    }

    /// How the progress lines give the child's memory: its peak RSS and, when
    /// counted, the live heap at the end, both above the start.
    fn memory(&self) -> String {
        let heap = self
            .end
            .iter()
            .find(|(k, _)| k == "heap_kib")
            .and_then(|(_, kib)| kib.parse::<f64>().ok())
            .map(|kib| format!(", live heap {:.1} MiB at the end", kib / 1024.0))
            .unwrap_or_default();
        format!("peak RSS {:.1} MiB{heap}", self.peak_rss())
    }

    /// The child's peak RSS above its RSS before it opened the engine (MiB).
    fn peak_rss(&self) -> f64 {
        common::mib(
            (common::field(&self.end, "hwm_kib") - common::field(&self.end, "start_kib")) as u64,
        )
    }
}

/// Runs `workload` for each of `kinds`, each engine in a child process of its
/// own (so that its peak RSS is its own, not what the engines before it left
/// in the process). The children set up one after another (open, load,
/// warm-up); then each repetition runs across all engines in turn (rather
/// than all repetitions of one engine, then the next), so that a change in
/// the machine's load during the run hits every engine alike.
fn in_children(config: &Config, workload: Workload, kinds: &[Kind]) -> Vec<ChildRun> {
    let mut children: Vec<_> = kinds
        .iter()
        .map(|&kind| {
            let dir = common::temp_dir("compare-");
            let path = dir.path().to_str().expect("a UTF-8 path");
            let mut child =
                common::Conversation::start(&["run", workload.name(), kind.name(), path]);
            child.answer();
            (kind, child, dir, Vec::new())
        })
        .collect();
    for _ in 0..config.reps {
        for (_, child, _, reps) in &mut children {
            reps.push(child.ask("rep"));
        }
    }
    children
        .into_iter()
        .map(|(kind, child, dir, reps)| ChildRun {
            kind,
            reps,
            end: child.finish("end"),
            dir,
        })
        .collect()
}

/// W1-W3's note: batches and conflicts of the timed runs, and CPU per
/// operation. The CPU is the child's whole process (the engine's background
/// threads too), and moves less with the machine's load than the rates do.
fn timed_note(run: &ChildRun) -> String {
    let counter = |name: &str| common::field(&run.end, name) as u64;
    let mut note = batch_note(
        Counters::default(),
        Counters {
            commits: counter("commits"),
            batches: counter("batches"),
            conflicts: counter("conflicts"),
        },
    );
    let ops = run.total("ops");
    if ops > 0.0 {
        let per_op = format!("CPU {:.0} us/op", run.total("cpu") * 1e6 / ops);
        note = if note.is_empty() {
            per_op
        } else {
            format!("{note}, {per_op}")
        };
    }
    note
}

/// Runs `op` on `threads` threads, each with its own worker, for `secs`; returns
/// operations per second and the operations done.
fn timed(
    engine: &dyn Engine,
    threads: usize,
    secs: f64,
    op: &(dyn Fn(&mut dyn engines::Worker, &mut fastrand::Rng) + Sync),
) -> (f64, u64) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, done) = (&stop, &done);
            s.spawn(move || {
                let mut worker = engine.worker();
                let mut rng = fastrand::Rng::with_seed(t as u64 * 7919 + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(worker.as_mut(), &mut rng);
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let ops = done.load(Ordering::Relaxed);
    (ops as f64 / start.elapsed().as_secs_f64(), ops)
}

fn engine_has_counters(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::StatelogSync | Kind::StatelogRelaxed | Kind::StatelogNoPrealloc
    )
}

fn counters(engine: &dyn Engine) -> Counters {
    engine.counters().unwrap_or_default()
}

/// Average batch size and conflicts between two counter readings.
fn batch_note(before: Counters, after: Counters) -> String {
    let commits = after.commits - before.commits;
    let batches = after.batches - before.batches;
    if batches == 0 {
        return String::new();
    }
    format!(
        "avg batch {:.1}, conflicts {}",
        commits as f64 / batches as f64,
        after.conflicts - before.conflicts
    )
}

fn update_workloads(config: &Config, w1: &[Kind], w2: &[Kind]) -> Vec<Row> {
    let runs = [
        (Workload::W1, w1),
        (Workload::W2x4, w2),
        (Workload::W2x16, w2),
    ];
    let mut rows = Vec::new();
    for (workload, kinds) in runs {
        for run in in_children(config, workload, kinds) {
            let summary = summarize(&run.each("rate"));
            let note = timed_note(&run);
            eprintln!(
                "{:>26} {:<14} {:>10.0} ops/s, {}, {note}",
                run.kind.name(),
                workload.label(),
                summary.median,
                run.memory()
            );
            rows.push(Row::new(workload, run.kind, summary, note).with_peak_rss(run.peak_rss()));
        }
    }
    rows
}

fn reads(config: &Config, kinds: &[Kind]) -> Vec<Row> {
    in_children(config, Workload::W3, kinds)
        .into_iter()
        .map(|run| {
            let summary = summarize(&run.each("rate"));
            eprintln!(
                "{:>26} {:<14} {:>10.0} gets/s, {}",
                run.kind.name(),
                "W3",
                summary.median,
                run.memory()
            );
            Row::new(
                Workload::W3,
                run.kind,
                summary,
                format!("{} keys", config.read_keys),
            )
            .with_peak_rss(run.peak_rss())
        })
        .collect()
}

/// W4: bulk load in batches (a fresh store per repetition, in the engine's
/// child), then stream the last one out as JSON Lines in a child process of
/// its own, which reports its peak RSS.
fn bulk(config: &Config, kind: Kind) -> Vec<Row> {
    let run = in_children(config, Workload::W4Load, &[kind])
        .pop()
        .expect("the engine's run");
    let data = run.dir.path().join("data");
    let size = common::dir_bytes(&data);
    let mut mbps = Vec::new();
    let mut rss = Vec::new();
    let mut above = Vec::new();
    for _ in 0..config.reps {
        let result =
            common::run_child(&["stream", kind.name(), data.to_str().expect("a UTF-8 path")]);
        assert_eq!(
            common::field(&result, "records") as u64,
            config.bulk,
            "{} streamed a wrong number of records",
            kind.name()
        );
        mbps.push(common::field(&result, "bytes") / 1e6 / common::field(&result, "secs"));
        let hwm = common::field(&result, "hwm_kib");
        rss.push(common::mib(hwm as u64));
        above.push(common::mib(
            (hwm - common::field(&result, "start_kib")) as u64,
        ));
    }
    let compacted = compacted_size(kind, &data);
    let load = summarize(&run.each("rate"));
    let stream = summarize(&mbps);
    let rss = summarize(&rss);
    let above = summarize(&above);
    let cpu = summarize(&run.each("cpu"));
    eprintln!(
        "{:>26} W4 load {:.0} rec/s ({:.2} s of CPU, {}), stream {:.0} MB/s, peak RSS {:.0} MiB",
        kind.name(),
        load.median,
        cpu.median,
        run.memory(),
        stream.median,
        rss.median
    );
    vec![
        Row::new(
            Workload::W4Load,
            kind,
            load,
            format!(
                "batch {}, load {:.2} s of CPU, {:.0} MiB on disk{compacted}",
                config.batch,
                cpu.median,
                size as f64 / (1 << 20) as f64
            ),
        )
        .with_peak_rss(run.peak_rss()),
        Row::new(Workload::W4Stream, kind, stream, String::new()).with_peak_rss(above.median),
        Row::new(Workload::W4Rss, kind, rss, String::new()),
    ]
}

/// statelog after the load: `compact` (checkpoint, log retention, redb's
/// compaction) with default options, or with `STATELOG_BENCH_RETENTION_MIB`
/// of log kept (experiments only), and what the store's size is made of then.
fn compacted_size(kind: Kind, dir: &Path) -> String {
    if !kind.name().starts_with("statelog") {
        return String::new();
    }
    let store = dir.join("store");
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let mut options = statelog::Options::default();
    if let Some(keep) = std::env::var("STATELOG_BENCH_RETENTION_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        options =
            options.retention(statelog::RetentionPolicy::default().max_bytes(Some(keep << 20)));
    }
    let report =
        statelog::maintenance::compact(&store, &options).expect("compact the loaded store");
    let total = common::dir_bytes(&store);
    let log = common::dir_bytes(&store.join("log"));
    format!(
        "; after compact {:.0} MiB (state {:.0}, log {:.0}, other {:.0})",
        mib(total),
        mib(report.state_bytes_after),
        mib(log),
        mib(total.saturating_sub(report.state_bytes_after + log))
    )
}

/// The child side: an engine's run of a workload (`run`), or W4's stream.
pub fn child(args: &[String]) {
    match args {
        [what, workload, kind, dir] if what == "run" => {
            let workload = Workload::from_name(workload).expect("a known workload");
            let kind = Kind::from_name(kind).expect("a known engine");
            run_child(&Config::from_env(), workload, kind, Path::new(dir));
        }
        [what, kind, dir] if what == "stream" => {
            let kind = Kind::from_name(kind).expect("a known engine");
            let dir = Path::new(dir);
            let start_kib = common::proc_status_kib("VmRSS");
            let engine = kind.open(dir);
            let out_path = dir.join("export.jsonl");
            let mut out = CountingWriter::new(BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&out_path).expect("create the export file"),
            ));
            let start = Instant::now();
            let records = engine.stream(&mut out);
            out.flush().expect("flush the export");
            let secs = start.elapsed().as_secs_f64();
            let bytes = out.bytes;
            drop(out);
            drop(engine);
            std::fs::remove_file(&out_path).expect("remove the export");
            println!(
                "RESULT records={records} bytes={bytes} secs={secs} start_kib={start_kib} \
                 hwm_kib={}",
                common::proc_status_kib("VmHWM")
            );
        }
        _ => panic!("unknown child command {args:?}"),
    }
}

/// One engine's run of one workload, driven by the parent: set up and say
/// so, then one repetition per `rep` request, then on `end` the process's
/// peak RSS (and the engine's counters, for the timed workloads).
fn run_child(config: &Config, workload: Workload, kind: Kind, dir: &Path) {
    let keys = common::keys(match workload {
        Workload::W3 => config.read_keys,
        Workload::W4Load => config.bulk,
        Workload::W5 => 0,
        _ => config.update_keys,
    });
    // The keys are the harness's, not the engine's: counted before the start.
    let start_kib = common::proc_status_kib("VmRSS");
    let heap_start = crate::heap::live_kib();
    let threads = match workload {
        Workload::W2x4 => 4,
        Workload::W2x16 => 16,
        _ => 1,
    };
    let update = |w: &mut dyn engines::Worker, rng: &mut fastrand::Rng| {
        let i = rng.usize(..keys.len());
        w.update(&keys[i], rng.u64(..));
    };
    let get = |w: &mut dyn engines::Worker, rng: &mut fastrand::Rng| {
        let key = &keys[rng.usize(..keys.len())];
        std::hint::black_box(w.get(key));
    };
    let op: &(dyn Fn(&mut dyn engines::Worker, &mut fastrand::Rng) + Sync) =
        if workload == Workload::W3 {
            &get
        } else {
            &update
        };
    // W1-W3 time operations on one store, loaded here; W4 and W5 make a
    // fresh store per repetition.
    let timed_engine = matches!(
        workload,
        Workload::W1 | Workload::W2x4 | Workload::W2x16 | Workload::W3
    )
    .then(|| {
        let engine = kind.open(dir);
        engine.load(&keys, config.batch);
        let before = counters(engine.as_ref());
        timed(engine.as_ref(), threads, config.secs * 0.2, op); // warm-up
        (engine, before)
    });
    println!("RESULT ready=1");
    for request in common::requests() {
        let answer = match (request.as_str(), &timed_engine) {
            ("rep", Some((engine, _))) => {
                let cpu = common::process_cpu_secs();
                let (rate, ops) = timed(engine.as_ref(), threads, config.secs, op);
                format!(
                    "rate={rate} ops={ops} cpu={}",
                    common::process_cpu_secs() - cpu
                )
            }
            ("rep", None) if workload == Workload::W4Load => bulk_load(config, kind, &keys, dir),
            ("rep", None) => increments(config, kind, dir),
            ("end", _) => {
                let after = timed_engine
                    .as_ref()
                    .map(|(engine, before)| {
                        let after = counters(engine.as_ref());
                        format!(
                            " commits={} batches={} conflicts={}",
                            after.commits - before.commits,
                            after.batches - before.batches,
                            after.conflicts - before.conflicts
                        )
                    })
                    .unwrap_or_default();
                // With the engine still open (W1-W3): what it holds.
                let heap = heap_start
                    .zip(crate::heap::live_kib())
                    .filter(|_| timed_engine.is_some())
                    .map(|(start, now)| format!(" heap_kib={}", now - start))
                    .unwrap_or_default();
                println!(
                    "RESULT start_kib={start_kib} hwm_kib={}{after}{heap}",
                    common::proc_status_kib("VmHWM")
                );
                return;
            }
            _ => panic!("unknown request {request:?}"),
        };
        println!("RESULT {answer}");
    }
}

/// One repetition of W4's load, into a fresh `data` directory (the last one
/// stays for the stream).
fn bulk_load(config: &Config, kind: Kind, keys: &[String], dir: &Path) -> String {
    let data = dir.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).expect("remove the previous load");
    }
    std::fs::create_dir(&data).expect("create the load's directory");
    let engine = kind.open(&data);
    let start = Instant::now();
    let cpu = common::process_cpu_secs();
    engine.load(keys, config.batch);
    let rate = keys.len() as f64 / start.elapsed().as_secs_f64();
    let cpu = common::process_cpu_secs() - cpu;
    drop(engine);
    format!("rate={rate} cpu={cpu}")
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> CountingWriter<W> {
    fn new(inner: W) -> Self {
        CountingWriter { inner, bytes: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

const INCREMENT_THREADS: u64 = 4;

/// One repetition of W5 on a fresh store: 4 threads x 500 read-modify-write
/// increments of one record; the rate, the final count, the conflicts
/// retried and the slowest single increment (retries included).
fn increments(config: &Config, kind: Kind, dir: &Path) -> String {
    let max_nanos = AtomicU64::new(0);
    let dir = tempfile::Builder::new()
        .prefix("w5-")
        .tempdir_in(dir)
        .expect("create the repetition's directory");
    let engine = kind.open(dir.path());
    let counter = "counter".to_owned();
    engine.load(std::slice::from_ref(&counter), 1);
    let before = counters(engine.as_ref());
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..INCREMENT_THREADS {
            let (engine, counter, max_nanos) = (&engine, &counter, &max_nanos);
            s.spawn(move || {
                let mut worker = engine.worker();
                for i in 0..config.increments {
                    let started = Instant::now();
                    worker.update(counter, t * 1_000_000 + i);
                    let took = started.elapsed().as_nanos() as u64;
                    max_nanos.fetch_max(took, Ordering::Relaxed);
                }
            });
        }
    });
    let rate = (INCREMENT_THREADS * config.increments) as f64 / start.elapsed().as_secs_f64();
    let slowest_ms = max_nanos.load(Ordering::Relaxed) as f64 / 1e6;
    let conflicts = counters(engine.as_ref()).conflicts - before.conflicts;
    let last = engine.worker().get(&counter).version;
    format!("rate={rate} final={last} conflicts={conflicts} slowest_ms={slowest_ms}")
}

/// W5: the engine must end at exactly 2,000 if it claims to lose no update.
/// The note gives the slowest single increment of each repetition.
fn lost_update_check(config: &Config, kind: Kind) -> Row {
    let run = in_children(config, Workload::W5, &[kind])
        .pop()
        .expect("the engine's run");
    let finals: Vec<u64> = run.each("final").iter().map(|&f| f as u64).collect();
    let expected = INCREMENT_THREADS * config.increments;
    let lost: Vec<u64> = finals.iter().map(|f| expected - f).collect();
    if kind.claims_safety() {
        assert!(
            lost.iter().all(|&l| l == 0),
            "{} lost updates: final counts {finals:?}, expected {expected}",
            kind.name()
        );
    }
    let mut note = if lost.iter().all(|&l| l == 0) {
        format!("final {expected} every time")
    } else {
        format!("LOSES UPDATES: finals {finals:?} of {expected}")
    };
    if engine_has_counters(kind) {
        note.push_str(&format!(
            ", {} conflicts retried",
            run.total("conflicts") as u64
        ));
    }
    let slowest: Vec<String> = run
        .each("slowest_ms")
        .iter()
        .map(|ms| format!("{ms:.1}"))
        .collect();
    note.push_str(&format!(", slowest increment {} ms", slowest.join("/")));
    eprintln!("{:>26} W5 {note}, {}", kind.name(), run.memory());
    Row::new(Workload::W5, kind, summarize(&run.each("rate")), note).with_peak_rss(run.peak_rss())
}
