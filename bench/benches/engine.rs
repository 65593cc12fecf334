//! Single-operation costs of the engine: durable put, point get, optimistic
//! update, each in both durability modes where it matters.
//!
//! Run: `cargo bench -p statelog-bench --bench engine`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use statelog::{Durability, Options, Store};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u64,
    at: i64,
    payload: String,
}

fn record(i: u64) -> Record {
    Record {
        version: i,
        at: 1_767_322_245_000_000,
        payload: "p".repeat(200),
    }
}

const KEYS: u64 = 10_000;

fn open(dir: &std::path::Path, durability: Durability) -> Store {
    Store::open(dir, Options::default().durability(durability)).expect("open")
}

fn modes() -> [(&'static str, Durability); 2] {
    [
        ("sync", Durability::Sync),
        (
            "relaxed-5ms",
            Durability::Relaxed {
                max_delay: Duration::from_millis(5),
            },
        ),
    ]
}

fn put(c: &mut Criterion) {
    let mut group = c.benchmark_group("put");
    group.throughput(Throughput::Elements(1));
    for (name, durability) in modes() {
        let dir = tempfile::tempdir_in(".").expect("tempdir");
        let store = open(dir.path(), durability);
        let mut i = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i += 1;
                store
                    .put("bench", &format!("k{}", i % KEYS), &record(i))
                    .expect("put")
            })
        });
    }
    group.finish();
}

fn get(c: &mut Criterion) {
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let store = open(
        dir.path(),
        Durability::Relaxed {
            max_delay: Duration::from_millis(5),
        },
    );
    store
        .transaction(|tx| {
            for i in 0..KEYS {
                tx.put("bench", &format!("k{i}"), &record(i))?;
            }
            Ok::<_, statelog::Error>(())
        })
        .expect("load");
    let mut i = 0u64;
    group.bench_function("typed", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store
                .get::<Record>("bench", &format!("k{i}"))
                .expect("get")
                .expect("present")
        })
    });
    group.bench_function("raw", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store
                .get_raw("bench", &format!("k{i}"))
                .expect("get")
                .expect("present")
        })
    });
    group.finish();
}

fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("update");
    group.throughput(Throughput::Elements(1));
    for (name, durability) in modes() {
        let dir = tempfile::tempdir_in(".").expect("tempdir");
        let store = open(dir.path(), durability);
        let mut i = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i += 1;
                store
                    .update(
                        "bench",
                        &format!("k{}", i % KEYS),
                        |old: Option<Record>| -> statelog::Result<Record> {
                            Ok(record(old.map_or(0, |r| r.version + 1)))
                        },
                    )
                    .expect("update")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = put, get, update
}
criterion_main!(benches);
