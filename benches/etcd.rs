//! statelog's updates on etcd against a plain etcd client doing the same
//! compare-and-swap updates, in the same run, on one local etcd member.
//!
//! Each writer updates a counter of its own: read it, then write the next
//! value only if it is still the write that was read (a `Txn` comparing the
//! modification revision). "plain" sends exactly that with the raw client (a
//! counter as 8 bytes, no metadata); "statelog" is `Store::update` on a store
//! opened at an `etcd://` address (MessagePack value with its update time,
//! the previous key-value for the new metadata, the store's identity
//! compare and `last` key, the conflict branch). Both share one client (one
//! HTTP/2 connection) among their writers: a store handle is one. Each round
//! starts with another side; each figure is the median of the rounds.
//!
//! `cargo bench --features etcd --bench etcd` (needs `etcd` on PATH).
//! `STATELOG_BENCH_SECS` sets the seconds per measurement (default 3).
//! A second table gives the CPU time etcd and the bench process spent per
//! update on each side (summed over the rounds; `/proc`, 10 ms ticks): it
//! varies much less with the machine's load than updates per second.
//! `STATELOG_BENCH_SHAPES=1` adds, in the same rounds, the plain client
//! sending statelog's `Txn` shape piece by piece (the identity compare and
//! the failure branch's reads; `prev_kv` on the put; the `last` key's put;
//! all three), to tell what the server pays for the mapping's `Txn` from
//! what the client pays for the mapping's code.

mod common;
#[path = "../tests/etcd/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use statelog::testkit::etcd::{Client, proto};
use statelog::{EtcdOptions, Options, Store};

const ROUNDS: usize = 4;

fn main() {
    let secs: u64 = std::env::var("STATELOG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let cluster = harness::Cluster::single();
    println!(
        "etcd {}",
        cluster.client().status_of(0).expect("status").version
    );
    let shapes = std::env::var_os("STATELOG_BENCH_SHAPES").is_some_and(|v| v == "1");
    println!(
        "| writers | plain etcd client (updates/s, median and range) | statelog on etcd (updates/s) | ratio of medians |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    let mut shaped_rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for writers in [1usize, 16] {
        // Side 0 is the plain client, 1 statelog, then the shapes.
        let sides = if shapes { 2 + SHAPES.len() } else { 2 };
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); sides];
        let mut cpu = vec![(0u64, 0u64, 0u64); sides];
        for round in 0..ROUNDS {
            let client = cluster.client();
            let address = format!(
                "etcd://{}/bench-statelog-{writers}-{round}",
                cluster.endpoints().join(",")
            );
            let store = Store::open(address, Options::default().etcd(EtcdOptions::new()))
                .expect("open the store on etcd");
            // Not on a store's prefix: a compare on a key of its own stands
            // in for the identity compare.
            let identity = client
                .txn(proto::TxnRequest {
                    success: vec![put(
                        format!("bench-shape/{writers}/{round}/id").into_bytes(),
                        vec![1],
                        false,
                    )],
                    ..Default::default()
                })
                .expect("identity key")
                .header
                .map_or(0, |h| h.revision);
            // Each round starts with another side, so none always meets the
            // fresher (or the busier) server.
            for i in 0..sides {
                let side = (round + i) % sides;
                let used = &mut cpu[side];
                let rate = match side {
                    0 => measure(writers, secs, used, |w, stop, done| {
                        plain_writer(&client, &format!("bench-plain/{round}/{w}"), stop, done)
                    }),
                    1 => measure(writers, secs, used, |w, stop, done| {
                        statelog_writer(&store, &format!("c{w}"), stop, done)
                    }),
                    _ => measure(writers, secs, used, |w, stop, done| {
                        let shape = SHAPES[side - 2];
                        shaped_writer(&client, shape, writers, round, identity, w, stop, done)
                    }),
                };
                rates[side].push(rate);
            }
        }
        let p = median(&mut rates[0]);
        let s = median(&mut rates[1]);
        let (plain, mapped) = (&rates[0], &rates[1]);
        println!(
            "| {writers} | {p:.0} ({:.0}–{:.0}) | {s:.0} ({:.0}–{:.0}) | {:.2} |",
            plain[0],
            plain[ROUNDS - 1],
            mapped[0],
            mapped[ROUNDS - 1],
            s / p
        );
        for (side, (own, server, updates)) in cpu.iter().enumerate() {
            let name = match side {
                0 => "plain",
                1 => "statelog",
                _ => SHAPES[side - 2].name,
            };
            cpu_rows.push(format!(
                "| {writers} | {name} | {:.0} | {:.0} |",
                per_update(*server, *updates),
                per_update(*own, *updates)
            ));
        }
        for (i, shape) in SHAPES.iter().enumerate().take(sides - 2) {
            let m = median(&mut rates[2 + i]);
            let shaped = &rates[2 + i];
            shaped_rows.push(format!(
                "| {writers} | {} | {m:.0} ({:.0}–{:.0}) | {:.2} |",
                shape.name,
                shaped[0],
                shaped[ROUNDS - 1],
                m / p
            ));
        }
    }
    println!();
    println!("| writers | side | etcd CPU per update (µs) | bench process CPU per update (µs) |");
    println!("| ---: | --- | ---: | ---: |");
    for row in cpu_rows {
        println!("{row}");
    }
    if shapes {
        println!();
        println!("| writers | plain client sending | updates/s | against plain |");
        println!("| ---: | --- | ---: | ---: |");
        for row in shaped_rows {
            println!("{row}");
        }
    }
}

/// Which of statelog's additions to its `Txn` a plain writer sends.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    identity: bool,
    prev_kv: bool,
    last: bool,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "+ identity compare, failure reads",
        identity: true,
        prev_kv: false,
        last: false,
    },
    Shape {
        name: "+ prev_kv",
        identity: false,
        prev_kv: true,
        last: false,
    },
    Shape {
        name: "+ `last` put",
        identity: false,
        prev_kv: false,
        last: true,
    },
    Shape {
        name: "all three (statelog's Txn)",
        identity: true,
        prev_kv: true,
        last: true,
    },
];

fn put(key: Vec<u8>, value: Vec<u8>, prev_kv: bool) -> proto::RequestOp {
    proto::RequestOp {
        request: Some(proto::Request::Put(proto::PutRequest {
            key,
            value,
            lease: 0,
            prev_kv,
        })),
    }
}

fn compare_mod(key: &[u8], revision: i64) -> proto::Compare {
    proto::Compare {
        result: proto::CompareResult::Equal as i32,
        target: proto::CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(proto::TargetUnion::ModRevision(revision)),
        range_end: Vec::new(),
    }
}

/// A plain counter (8 little-endian bytes) and its modification revision;
/// (0, 0) when it does not exist yet.
fn read_counter(client: &Client, key: &[u8]) -> (u64, i64) {
    let current = client
        .range(proto::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .expect("read");
    current.kvs.first().map_or((0, 0), |kv| {
        let n = kv
            .value
            .as_slice()
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        (n, kv.mod_revision)
    })
}

fn keys_only(key: &[u8]) -> proto::RequestOp {
    proto::RequestOp {
        request: Some(proto::Request::Range(proto::RangeRequest {
            key: key.to_vec(),
            keys_only: true,
            ..Default::default()
        })),
    }
}

/// The plain writer's loop with some of statelog's additions to the `Txn`
/// (the value stays the plain 8 bytes).
#[allow(clippy::too_many_arguments)]
fn shaped_writer(
    client: &Client,
    shape: Shape,
    writers: usize,
    round: usize,
    identity: i64,
    w: usize,
    stop: &AtomicBool,
    done: &AtomicU64,
) {
    let key = format!("bench-shape/{writers}/{round}/{}/{w}", shape.name).into_bytes();
    let identity_key = format!("bench-shape/{writers}/{round}/id").into_bytes();
    let last_key = format!("bench-shape/{writers}/{round}/last").into_bytes();
    while !stop.load(Ordering::Relaxed) {
        let (n, modified) = read_counter(client, &key);
        let mut compare = vec![compare_mod(&key, modified)];
        let mut failure = Vec::new();
        if shape.identity {
            compare.insert(0, compare_mod(&identity_key, identity));
            failure.push(keys_only(&identity_key));
            failure.push(keys_only(&key));
        }
        let mut success = vec![put(
            key.clone(),
            (n + 1).to_le_bytes().to_vec(),
            shape.prev_kv,
        )];
        if shape.last {
            success.push(put(last_key.clone(), vec![0; 9], false));
        }
        let response = client
            .txn(proto::TxnRequest {
                compare,
                success,
                failure,
            })
            .expect("update");
        if response.succeeded {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Updates per second of `writers` threads running `writer` for `secs`.
/// Adds the CPU time (user + system) the bench process and etcd spent and the
/// updates done to `cpu`: (bench ticks, etcd ticks, updates).
fn measure(
    writers: usize,
    secs: u64,
    cpu: &mut (u64, u64, u64),
    writer: impl Fn(usize, &AtomicBool, &AtomicU64) + Sync,
) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let etcd = etcd_pid();
    let (own, server) = (
        common::cpu_ticks("self"),
        etcd.as_deref().map_or(0, common::cpu_ticks),
    );
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (writer, stop, done) = (&writer, &stop, &done);
            scope.spawn(move || writer(w, stop, done));
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    cpu.0 += common::cpu_ticks("self").saturating_sub(own);
    cpu.1 += etcd
        .as_deref()
        .map_or(0, common::cpu_ticks)
        .saturating_sub(server);
    cpu.2 += done.load(Ordering::Relaxed);
    done.load(Ordering::Relaxed) as f64 / elapsed
}

/// The etcd this bench started (a child named `etcd`).
fn etcd_pid() -> Option<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let parent = rest.split_whitespace().nth(1)?;
            (head.ends_with("(etcd") && parent == me).then_some(pid)
        })
}

/// Microseconds of CPU per update from `measure`'s sums (ticks of 10 ms).
fn per_update(ticks: u64, updates: u64) -> f64 {
    ticks as f64 * 10_000.0 / updates.max(1) as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn plain_writer(client: &Client, key: &str, stop: &AtomicBool, done: &AtomicU64) {
    let key = key.as_bytes().to_vec();
    while !stop.load(Ordering::Relaxed) {
        let (n, modified) = read_counter(client, &key);
        let response = client
            .txn(proto::TxnRequest {
                compare: vec![proto::Compare {
                    result: proto::CompareResult::Equal as i32,
                    target: proto::CompareTarget::Mod as i32,
                    key: key.clone(),
                    target_union: Some(proto::TargetUnion::ModRevision(modified)),
                    range_end: Vec::new(),
                }],
                success: vec![proto::RequestOp {
                    request: Some(proto::Request::Put(proto::PutRequest {
                        key: key.clone(),
                        value: (n + 1).to_le_bytes().to_vec(),
                        lease: 0,
                        prev_kv: false,
                    })),
                }],
                failure: Vec::new(),
            })
            .expect("update");
        if response.succeeded {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn statelog_writer(store: &Store, key: &str, stop: &AtomicBool, done: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        store
            .update("counters", key, |n: Option<u64>| -> statelog::Result<u64> {
                Ok(n.unwrap_or(0) + 1)
            })
            .expect("update");
        done.fetch_add(1, Ordering::Relaxed);
    }
}
