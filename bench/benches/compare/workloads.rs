//! The workloads W1-W5 and how each engine takes part in them.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, Summary, summarize};
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
            update_keys: 10_000,
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
        Kind::FsyncLimit | Kind::StatelogNoPrealloc => &["W1"],
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

/// Open engines, each in its own directory, loaded with `keys`.
struct Opened {
    kind: Kind,
    engine: Box<dyn Engine>,
    _dir: tempfile::TempDir,
}

fn open_loaded(config: &Config, kinds: &[Kind], keys: &[String]) -> Vec<Opened> {
    kinds
        .iter()
        .map(|&kind| {
            let dir = common::temp_dir("compare-");
            let engine = kind.open(dir.path());
            engine.load(keys, config.batch);
            Opened {
                kind,
                engine,
                _dir: dir,
            }
        })
        .collect()
}

/// Runs each repetition of a timed workload across all engines in turn (rather
/// than all repetitions of one engine, then the next), so that a change in the
/// machine's load during the run hits every engine alike.
fn interleaved(
    config: &Config,
    engines: &[&Opened],
    threads: usize,
    op: &(dyn Fn(&mut dyn engines::Worker, &mut fastrand::Rng) + Sync),
) -> Vec<(Summary, String)> {
    let before: Vec<Counters> = engines
        .iter()
        .map(|o| counters(o.engine.as_ref()))
        .collect();
    let mut samples = vec![Vec::new(); engines.len()];
    // The process's CPU time and the operations of the timed runs, per engine:
    // CPU per operation moves less with the machine's load than the rates do.
    // It is the whole process's (the other open engines' background threads
    // too), so it compares builds of one engine, not engines.
    let mut cpu = vec![(0.0, 0u64); engines.len()];
    for o in engines {
        timed(o.engine.as_ref(), threads, config.secs * 0.2, op); // warm-up
    }
    for _ in 0..config.reps {
        for ((o, s), cpu) in engines.iter().zip(&mut samples).zip(&mut cpu) {
            let start = common::process_cpu_secs();
            let (rate, ops) = timed(o.engine.as_ref(), threads, config.secs, op);
            cpu.0 += common::process_cpu_secs() - start;
            cpu.1 += ops;
            s.push(rate);
        }
    }
    engines
        .iter()
        .zip(samples)
        .zip(before)
        .zip(cpu)
        .map(|(((o, s), before), (cpu_secs, ops))| {
            let mut note = batch_note(before, counters(o.engine.as_ref()));
            if ops > 0 {
                let per_op = format!("CPU {:.0} us/op", cpu_secs * 1e6 / ops as f64);
                note = if note.is_empty() {
                    per_op
                } else {
                    format!("{note}, {per_op}")
                };
            }
            (summarize(&s), note)
        })
        .collect()
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
    let mut kinds: Vec<Kind> = w1.to_vec();
    kinds.extend(w2.iter().filter(|k| !w1.contains(k)));
    let keys = common::keys(config.update_keys);
    let opened = open_loaded(config, &kinds, &keys);
    let update = |w: &mut dyn engines::Worker, rng: &mut fastrand::Rng| {
        let i = rng.usize(..keys.len());
        w.update(&keys[i], rng.u64(..));
    };
    let mut rows = Vec::new();
    let runs = [
        (Workload::W1, 1, w1),
        (Workload::W2x4, 4, w2),
        (Workload::W2x16, 16, w2),
    ];
    for (workload, threads, members) in runs {
        let engines: Vec<&Opened> = opened
            .iter()
            .filter(|o| members.contains(&o.kind))
            .collect();
        if engines.is_empty() {
            continue;
        }
        let results = interleaved(config, &engines, threads, &update);
        for (o, (summary, note)) in engines.iter().zip(results) {
            eprintln!(
                "{:>26} {:<14} {:>10.0} ops/s {note}",
                o.kind.name(),
                workload.label(),
                summary.median
            );
            rows.push(Row::new(workload, o.kind, summary, note));
        }
    }
    rows
}

fn reads(config: &Config, kinds: &[Kind]) -> Vec<Row> {
    if kinds.is_empty() {
        return Vec::new();
    }
    let keys = common::keys(config.read_keys);
    let opened = open_loaded(config, kinds, &keys);
    let get = |w: &mut dyn engines::Worker, rng: &mut fastrand::Rng| {
        let key = &keys[rng.usize(..keys.len())];
        std::hint::black_box(w.get(key));
    };
    let engines: Vec<&Opened> = opened.iter().collect();
    let results = interleaved(config, &engines, 1, &get);
    engines
        .iter()
        .zip(results)
        .map(|(o, (summary, _))| {
            eprintln!(
                "{:>26} {:<14} {:>10.0} gets/s",
                o.kind.name(),
                "W3",
                summary.median
            );
            Row::new(
                Workload::W3,
                o.kind,
                summary,
                format!("{} keys", config.read_keys),
            )
        })
        .collect()
}

/// W4: bulk load in batches (a fresh store per repetition), then stream the last
/// one out as JSON Lines in a child process, which reports its peak RSS.
fn bulk(config: &Config, kind: Kind) -> Vec<Row> {
    let keys = common::keys(config.bulk);
    let mut loads = Vec::new();
    let mut cpu = Vec::new();
    let mut kept = None;
    for rep in 0..config.reps {
        let dir = common::temp_dir("compare-bulk-");
        let engine = kind.open(dir.path());
        let start = Instant::now();
        let cpu_start = common::process_cpu_secs();
        engine.load(&keys, config.batch);
        loads.push(keys.len() as f64 / start.elapsed().as_secs_f64());
        cpu.push(common::process_cpu_secs() - cpu_start);
        drop(engine);
        if rep + 1 == config.reps {
            kept = Some(dir);
        }
    }
    let dir = kept.expect("at least one repetition");
    let size = common::dir_bytes(dir.path());
    let mut mbps = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..config.reps {
        let result = common::run_child(&[
            "stream",
            kind.name(),
            dir.path().to_str().expect("a UTF-8 path"),
        ]);
        assert_eq!(
            common::field(&result, "records") as u64,
            config.bulk,
            "{} streamed a wrong number of records",
            kind.name()
        );
        mbps.push(common::field(&result, "bytes") / 1e6 / common::field(&result, "secs"));
        rss.push(common::mib(common::field(&result, "hwm_kib") as u64));
    }
    let compacted = compacted_size(kind, dir.path());
    let load = summarize(&loads);
    let stream = summarize(&mbps);
    let rss = summarize(&rss);
    let cpu = summarize(&cpu);
    eprintln!(
        "{:>26} W4 load {:.0} rec/s ({:.2} s of CPU), stream {:.0} MB/s, peak RSS {:.0} MiB",
        kind.name(),
        load.median,
        cpu.median,
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
        ),
        Row::new(Workload::W4Stream, kind, stream, String::new()),
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

/// The child side of W4: open, stream everything to a file, report.
pub fn child(args: &[String]) {
    match args {
        [what, kind, dir] if what == "stream" => {
            let kind = Kind::from_name(kind).expect("a known engine");
            let dir = Path::new(dir);
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
                "RESULT records={records} bytes={bytes} secs={secs} hwm_kib={}",
                common::proc_status_kib("VmHWM")
            );
        }
        _ => panic!("unknown child command {args:?}"),
    }
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

/// W5: 4 threads x 500 read-modify-write increments of one record; the engine
/// must end at exactly 2,000 if it claims to lose no update. The note gives
/// the slowest single increment of each repetition (retries included).
fn lost_update_check(config: &Config, kind: Kind) -> Row {
    const THREADS: u64 = 4;
    let mut rates = Vec::new();
    let mut finals = Vec::new();
    let mut conflicts = 0;
    let mut slowest = Vec::new();
    for _ in 0..config.reps {
        let max_nanos = AtomicU64::new(0);
        let dir = common::temp_dir("compare-w5-");
        let engine = kind.open(dir.path());
        let counter = "counter".to_owned();
        engine.load(std::slice::from_ref(&counter), 1);
        let before = counters(engine.as_ref());
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..THREADS {
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
        rates.push((THREADS * config.increments) as f64 / start.elapsed().as_secs_f64());
        slowest.push(max_nanos.load(Ordering::Relaxed) as f64 / 1e6);
        conflicts += counters(engine.as_ref()).conflicts - before.conflicts;
        let last = engine.worker().get(&counter).version;
        finals.push(last);
    }
    let expected = THREADS * config.increments;
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
        note.push_str(&format!(", {conflicts} conflicts retried"));
    }
    let slowest: Vec<String> = slowest.iter().map(|ms| format!("{ms:.1}")).collect();
    note.push_str(&format!(", slowest increment {} ms", slowest.join("/")));
    eprintln!("{:>26} W5 {note}", kind.name());
    Row::new(Workload::W5, kind, summarize(&rates), note)
}
