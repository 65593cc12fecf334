//! A three-member cluster on loopback: four client processes increment one
//! counter through the public API (`Store::open("etcd://...")`, a
//! transaction) while one member is killed (SIGKILL) and restarted, and then
//! the leader. The final count must equal the number of increments that
//! applied, and every acknowledged one must be among them.
//!
//! etcd gives no idempotency: a commit whose answer was lost
//! (`Error::OutcomeUnknown`) may or may not have applied. So every increment
//! also writes a marker key of its own in the same transaction; a marker is
//! present exactly when its increment applied, which tells the checker what
//! became of each unknown outcome.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use statelog::{Error, EtcdOptions, Options, Store};

use crate::children::Children;
use crate::common;
use crate::harness::{Cluster, Settings};

const TEST: &str = "cluster::counter_is_exact_while_a_member_then_the_leader_is_killed";
const PROCESSES: usize = 4;
const PREFIX: &str = "cluster-counter";
/// Each child stops by itself after this long, whatever happens.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

fn open(endpoints: &str) -> Store {
    let options = Options::default().etcd(
        EtcdOptions::new()
            .connect_timeout(Duration::from_millis(300))
            .request_timeout(Duration::from_secs(3))
            .failover_timeout(Duration::from_secs(30)),
    );
    Store::open(format!("etcd://{endpoints}/{PREFIX}"), options).expect("open the store")
}

#[test]
fn counter_is_exact_while_a_member_then_the_leader_is_killed() {
    if let Some((_, arg)) = common::child_role() {
        child(&arg);
        return;
    }
    let mut cluster = Cluster::start(3, Settings::default());
    let stop = cluster.dir().join("stop");
    let endpoints = cluster.endpoints().join(",");
    // Created once, before the clients race to create it.
    open(&endpoints).close().unwrap();
    let children = Children::spawn(
        TEST,
        "increment",
        &format!("{endpoints}|{}", stop.display()),
        PROCESSES,
    );

    let pause = Duration::from_millis(1500);
    std::thread::sleep(pause);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    println!("killing member {follower} (a follower)");
    cluster.kill(follower);
    std::thread::sleep(pause);
    cluster.restart(follower);
    std::thread::sleep(pause);
    let leader = cluster.leader();
    println!("killing member {leader} (the leader)");
    cluster.kill(leader);
    std::thread::sleep(pause);
    cluster.restart(leader);
    std::thread::sleep(pause);
    std::fs::write(&stop, b"stop").unwrap();

    let mut acked = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for line in children.wait() {
        let mut parts = line.split_whitespace();
        let (kind, marker) = (parts.next(), parts.next().map(str::to_owned));
        match (kind, marker) {
            (Some("@@ack"), Some(m)) => assert!(acked.insert(m)),
            (Some("@@unknown"), Some(m)) => assert!(unknown.insert(m)),
            _ => {}
        }
    }

    let check = open(&endpoints);
    let counter = check
        .get::<u64>("counters", "c")
        .unwrap()
        .expect("the counter exists");
    let count = counter.value;
    let markers: BTreeSet<String> = check
        .list_raw("markers", ..)
        .unwrap()
        .map(|item| item.unwrap().0)
        .collect();
    let unknown_applied = unknown.intersection(&markers).count();
    println!(
        "{} acknowledged, {} unknown ({unknown_applied} of them applied), counter {count}",
        acked.len(),
        unknown.len()
    );
    assert!(
        acked.len() >= PROCESSES * 20,
        "too few increments to tell anything"
    );
    assert_eq!(
        count,
        markers.len() as u64,
        "the counter equals the increments that applied"
    );
    assert_eq!(counter.version, count, "one version per increment");
    let lost: Vec<_> = acked.difference(&markers).collect();
    assert!(lost.is_empty(), "acknowledged increments lost: {lost:?}");
    let phantom: Vec<_> = markers
        .iter()
        .filter(|m| !acked.contains(*m) && !unknown.contains(*m))
        .collect();
    assert!(phantom.is_empty(), "increments nobody made: {phantom:?}");
    assert_eq!(count as usize, acked.len() + unknown_applied);
}

/// A client process: increments until the stop file appears, printing
/// `@@ack <marker>` or `@@unknown <marker>` for each increment it finished.
fn child(arg: &str) {
    let mut parts = arg.split('|');
    let endpoints = parts.next().unwrap().to_owned();
    let stop = PathBuf::from(parts.next().unwrap());
    let process: usize = parts.next().unwrap().parse().unwrap();
    let store = open(&endpoints);
    let start = Instant::now();
    let mut i = 0u64;
    while !stop.exists() && start.elapsed() < CHILD_LIMIT {
        let marker = format!("p{process}-{i:06}");
        loop {
            let result = store.transaction(|tx| {
                let n: u64 = tx.get("counters", "c")?.map_or(0, |r| r.value);
                tx.put("counters", "c", &(n + 1))?;
                tx.put("markers", &marker, &n)?;
                Ok::<_, Error>(())
            });
            match result {
                Ok(_) => {
                    println!("@@ack {marker}");
                    break;
                }
                Err(Error::OutcomeUnknown { .. }) => {
                    println!("@@unknown {marker}");
                    break;
                }
                // Lost the race more often than the retry policy allows:
                // nothing was written, go again.
                Err(Error::Conflict { .. }) => {}
                Err(e @ Error::Unreachable { .. }) => panic!("no member answered: {e}"),
                Err(e) => panic!("increment: {e}"),
            }
        }
        i += 1;
    }
}
