//! Coordination on etcd through the public API, across processes and member
//! failures: patches with idempotency keys under kills, locks whose fencing
//! tokens order their holders, a killed holder's lock ending with its lease,
//! idempotency keys forgotten with their etcd lease, and the past beyond
//! etcd's compaction.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use statelog::testkit::etcd::Client;
use statelog::{Batch, Error, EtcdOptions, Options, Patch, Store, Watch};

use crate::children::Children;
use crate::common;
use crate::harness::{Cluster, Settings};

/// Each child stops by itself after this long, whatever happens.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

fn open(endpoints: &str, prefix: &str) -> Store {
    let options = Options::default().etcd(
        EtcdOptions::new()
            .connect_timeout(Duration::from_millis(300))
            .request_timeout(Duration::from_secs(3))
            .failover_timeout(Duration::from_secs(30)),
    );
    Store::open(format!("etcd://{endpoints}/{prefix}"), options).expect("open the store")
}

const PATCH_TEST: &str =
    "coordination::patches_with_idempotency_keys_count_exactly_while_members_are_killed";

/// Four processes add to one counter with patches, each with an idempotency
/// key of its own, while a follower and then the leader are killed and
/// restarted. A patch whose answer was lost is sent again with the same key
/// until it is answered: the first commit's outcome comes back and nothing is
/// written twice, so the count is exactly the number of increments.
#[test]
fn patches_with_idempotency_keys_count_exactly_while_members_are_killed() {
    if let Some((_, arg)) = common::child_role() {
        patch_child(&arg);
        return;
    }
    let mut cluster = Cluster::start(3, Settings::default());
    let stop = cluster.dir().join("stop");
    let endpoints = cluster.endpoints().join(",");
    open(&endpoints, "patches").close().unwrap();
    let children = Children::spawn(
        PATCH_TEST,
        "patch",
        &format!("{endpoints}|{}", stop.display()),
        4,
    );
    let pause = Duration::from_millis(1500);
    std::thread::sleep(pause);
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    std::thread::sleep(pause);
    cluster.restart(follower);
    std::thread::sleep(pause);
    let leader = cluster.leader();
    cluster.kill(leader);
    std::thread::sleep(pause);
    cluster.restart(leader);
    std::thread::sleep(pause);
    std::fs::write(&stop, b"stop").unwrap();

    let mut done = BTreeSet::new();
    let mut replayed = 0;
    for line in children.wait() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("@@done"), Some(key)) => assert!(done.insert(key.to_owned()), "{key} twice"),
            (Some("@@replayed"), Some(_)) => replayed += 1,
            _ => {}
        }
    }
    let store = open(&endpoints, "patches");
    let counter = store.get::<Value>("counters", "c").unwrap().unwrap();
    let keys = kept_keys(&cluster, "patches");

    println!(
        "{} increments ({replayed} answered by a replay), counter {}, {} keys",
        done.len(),
        counter.value,
        keys.len()
    );
    assert!(done.len() >= 80, "too few increments to tell anything");
    assert_eq!(counter.value, json!({"n": done.len()}));
    assert_eq!(
        counter.version,
        done.len() as u64,
        "one write per increment"
    );
    assert_eq!(keys, done, "one kept key per increment, no other");
    assert_eq!(store.idempotency_keys().unwrap(), done.len() as u64);
}

/// The idempotency keys etcd holds for the store at `prefix`, read with a
/// plain etcd client (records of `statelog:idempotency`).
fn kept_keys(cluster: &Cluster, prefix: &str) -> BTreeSet<String> {
    let client = Client::new(&cluster.options()).unwrap();
    let mut head = prefix.as_bytes().to_vec();
    head.extend_from_slice(b"\0rstatelog:idempotency\0");
    let end = statelog::testkit::etcd::prefix_end(&head);
    let response = client
        .range(statelog::testkit::etcd::proto::RangeRequest {
            key: head.clone(),
            range_end: end,
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key[head.len()..]).into_owned())
        .collect()
}

/// Adds 1 until the stop file appears; each increment is sent until answered,
/// always with the same idempotency key.
fn patch_child(arg: &str) {
    let mut parts = arg.split('|');
    let endpoints = parts.next().unwrap().to_owned();
    let stop = PathBuf::from(parts.next().unwrap());
    let process: usize = parts.next().unwrap().parse().unwrap();
    let store = open(&endpoints, "patches");
    let start = Instant::now();
    let mut i = 0u64;
    while !stop.exists() && start.elapsed() < CHILD_LIMIT {
        let key = format!("p{process}-{i:06}");
        let batch = Batch::new()
            .patch("counters", "c", &Patch::new().add(&["n"], 1))
            .idempotency_key(&key)
            .keep_key_for(Duration::from_secs(600));
        let mut sent_before = false;
        loop {
            match store.apply(&batch) {
                Ok(outcome) => {
                    // Only a resend may be a replay.
                    assert!(!outcome.replayed || sent_before, "{key}: a replay at once");
                    if outcome.replayed {
                        println!("@@replayed {key}");
                    }
                    println!("@@done {key}");
                    break;
                }
                Err(e @ (Error::OutcomeUnknown { .. } | Error::Unreachable { .. })) => {
                    println!("@@retry {key} {e}");
                    sent_before = true;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("{key}: {e}"),
            }
        }
        i += 1;
    }
}

const LOCK_TEST: &str = "coordination::lock_holders_in_four_processes_take_turns_in_token_order";

/// Four processes take one lock in turn, each time appending its token to a
/// record with a write fenced by that token. The record's tokens are strictly
/// increasing (a later grant has a larger token, whichever process took it),
/// one per grant, and no fenced write was lost.
#[test]
fn lock_holders_in_four_processes_take_turns_in_token_order() {
    if let Some((_, arg)) = common::child_role() {
        lock_child(&arg);
        return;
    }
    let cluster = Cluster::single();
    let endpoints = cluster.endpoints().join(",");
    open(&endpoints, "locks").close().unwrap();
    let children = Children::spawn(LOCK_TEST, "lock", &endpoints, 4);
    let mut granted = Vec::new();
    for line in children.wait() {
        if let Some(token) = line.strip_prefix("@@token ") {
            granted.push(token.parse::<u64>().unwrap());
        }
    }
    let store = open(&endpoints, "locks");
    let tokens: Vec<u64> = store
        .get::<Vec<u64>>("out", "tokens")
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(tokens.len(), 4 * 10);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens out of order: {tokens:?}"
    );
    granted.sort_unstable();
    assert_eq!(tokens, granted, "every grant wrote once, under its token");
    assert!(store.locks().unwrap().is_empty());
}

fn lock_child(arg: &str) {
    let (endpoints, process) = arg.rsplit_once('|').unwrap();
    let store = open(endpoints, "locks");
    let lease = store
        .grant_lease_as(Duration::from_secs(10), &format!("process {process}"))
        .unwrap();
    for _ in 0..10 {
        let grant = lease.lock("turn", Some(Duration::from_secs(60))).unwrap();
        // Read, then write under the fence: only the holder may.
        let mut tokens: Vec<u64> = store
            .get::<Vec<u64>>("out", "tokens")
            .unwrap()
            .map_or_else(Vec::new, |r| r.value);
        tokens.push(grant.token);
        store
            .apply(
                &Batch::new()
                    .put("out", "tokens", &tokens)
                    .fence("turn", grant.token),
            )
            .unwrap();
        println!("@@token {}", grant.token);
        lease.unlock(&grant).unwrap();
    }
    lease.revoke().unwrap();
}

const KILLED_TEST: &str =
    "coordination::a_killed_holders_lock_ends_with_its_lease_and_its_token_is_fenced_off";

/// A process takes a lock under a 2 s lease, keeps it alive, and is killed
/// (SIGKILL). Its keep-alives stop, etcd ends the lease, and with it the lock
/// and the record bound to it; the next holder's token is larger, and a write
/// fenced with the dead holder's token is refused, writing nothing.
#[test]
fn a_killed_holders_lock_ends_with_its_lease_and_its_token_is_fenced_off() {
    if let Some((_, arg)) = common::child_role() {
        let store = open(&arg, "killed");
        let lease = store.grant_lease(Duration::from_secs(2)).unwrap();
        let grant = lease.lock("deploy", None).unwrap();
        store
            .apply(&Batch::new().put("jobs", "deploying", &"yes").lease(&lease))
            .unwrap();
        println!("@@token {}", grant.token);
        loop {
            lease.keep_alive().unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let cluster = Cluster::single();
    let endpoints = cluster.endpoints().join(",");
    let store = open(&endpoints, "killed");
    let mut child = common::child_command(KILLED_TEST, "holder", &endpoints)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let stdout = child.stdout.take().expect("piped");
    let token: u64 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let at = line.find("@@token ")?;
            Some(line[at + "@@token ".len()..].trim().parse().unwrap())
        })
        .expect("the holder's token");
    // Held, and kept alive past its TTL.
    std::thread::sleep(Duration::from_secs(3));
    let locks = store.locks().unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].token, token);
    let mine = store.grant_lease(Duration::from_secs(30)).unwrap();
    assert!(matches!(
        mine.lock("deploy", None).unwrap_err(),
        Error::LockHeld { .. }
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    let grant = mine.lock("deploy", Some(Duration::from_secs(30))).unwrap();
    assert!(grant.token > token, "{} after {token}", grant.token);
    assert_eq!(store.get::<String>("jobs", "deploying").unwrap(), None);
    let revision = store.revision();
    let err = store
        .apply(&Batch::new().put("jobs", "late", &1).fence("deploy", token))
        .unwrap_err();
    assert!(
        matches!(err, Error::Fenced { token: t, current: Some(c), .. } if t == token && c == grant.token),
        "{err:?}"
    );
    assert_eq!(store.revision(), revision);
    assert_eq!(store.get::<u64>("jobs", "late").unwrap(), None);
}

/// An idempotency key lives in etcd under a lease of its retention: once
/// that ends, etcd has forgotten it, and the same request applies again.
#[test]
fn an_idempotency_key_is_forgotten_with_its_etcd_lease() {
    let cluster = Cluster::single();
    let endpoints = cluster.endpoints().join(",");
    let store = open(&endpoints, "keys");
    let other = open(&endpoints, "keys");
    let batch = Batch::new()
        .patch("stats", "runs", &Patch::new().add(&["n"], 1))
        .idempotency_key("run-1")
        .keep_key_for(Duration::from_secs(1));
    let first = store.apply(&batch).unwrap();
    // Another handle (another machine) gets the first outcome.
    let again = other.apply(&batch).unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.revision, again.writes),
        (first.revision, first.writes)
    );
    assert_eq!(store.revision(), first.revision.unwrap());
    assert_eq!(store.idempotency_keys().unwrap(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.idempotency_keys().unwrap() > 0 {
        assert!(Instant::now() < deadline, "the key outlived its lease");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!store.apply(&batch).unwrap().replayed);
    let runs = store.get::<Value>("stats", "runs").unwrap().unwrap();
    assert_eq!(runs.value, json!({"n": 2}));
}

/// Watches, histories and snapshots of the past read etcd's history; past
/// its compaction revision each says what was compacted.
#[test]
fn the_past_beyond_etcds_compaction_says_so() {
    let cluster = Cluster::single();
    let endpoints = cluster.endpoints().join(",");
    let store = open(&endpoints, "past");
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(store.put("jobs", "build", &i).unwrap().revision);
    }
    let history = store.history("jobs", "build").unwrap();
    assert_eq!(
        history.iter().map(|v| v.revision).collect::<Vec<_>>(),
        revisions
    );
    // etcd compacts its history up to the fourth write.
    let client = Client::new(&cluster.options()).unwrap();
    client.compact(revisions[3]).unwrap();
    let err = store.snapshot_at_revision(revisions[1]).unwrap_err();
    assert!(
        matches!(err, Error::Compacted { requested, .. } if requested == revisions[1]),
        "{err:?}"
    );
    let still = store.snapshot_at_revision(revisions[3]).unwrap();
    assert_eq!(still.get::<i32>("jobs", "build").unwrap().unwrap().value, 3);
    let err = store
        .watch(Watch::all().from(revisions[0]))
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::Compacted { compacted: Some(c), .. } if c == revisions[3]),
        "{err:?}"
    );
    // What is left of the history, from the compaction on.
    let left = store.history("jobs", "build").unwrap();
    assert_eq!(
        left.iter().map(|v| v.revision).collect::<Vec<_>>(),
        &revisions[3..]
    );
    assert_eq!(store.stats().first_revision, revisions[3]);
}

/// `update` and transactions with an idempotency key, from two handles (two
/// machines): the key is checked before the closure runs, so a retry replays
/// the first result without running it, and a lock waited for through etcd
/// is granted once its holder gives it back.
#[test]
fn keyed_updates_and_transactions_run_once_and_lock_waits_end_with_the_release() {
    let cluster = Cluster::single();
    let endpoints = cluster.endpoints().join(",");
    let store = open(&endpoints, "keyed");
    let other = open(&endpoints, "keyed");
    let runs = std::cell::Cell::new(0);
    let bump = |old: Option<u64>| -> Result<u64, Error> {
        runs.set(runs.get() + 1);
        Ok(old.unwrap_or(0) + 1)
    };
    let first = store.update_with_key("step-1", "jobs", "n", bump).unwrap();
    let again = other.update_with_key("step-1", "jobs", "n", bump).unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(runs.get(), 1, "a replay ran the closure");
    assert_eq!(again.record.value, 1);
    assert_eq!(again.record.version, first.record.version);
    assert_eq!(store.get::<u64>("jobs", "n").unwrap().unwrap().value, 1);
    // The key belongs to that update: another record is a different request.
    assert!(matches!(
        other.update_with_key("step-1", "jobs", "m", bump),
        Err(Error::IdempotencyKeyReused { .. })
    ));

    let tx = |tx: &mut statelog::Tx| -> Result<u64, Error> {
        runs.set(runs.get() + 1);
        tx.put("jobs", "t", &"done")?;
        Ok(7)
    };
    let one = store.transaction_with_key("tx-1", tx).unwrap();
    let two = other.transaction_with_key("tx-1", tx).unwrap();
    assert!(!one.replayed && two.replayed);
    assert_eq!((two.value, two.revision), (7, one.revision));
    assert_eq!(runs.get(), 2);

    let holder = store.grant_lease(Duration::from_secs(10)).unwrap();
    let grant = holder.lock("deploy", None).unwrap();
    let waiter = other.grant_lease(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    let (next, first_token) = std::thread::scope(|scope| {
        let release = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            holder.unlock(&grant).unwrap();
            grant.token
        });
        let next = waiter
            .lock("deploy", Some(Duration::from_secs(20)))
            .unwrap();
        (next, release.join().unwrap())
    });
    assert!(next.token > first_token);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(matches!(
        store
            .grant_lease(Duration::from_secs(10))
            .unwrap()
            .lock("deploy", Some(Duration::from_millis(200))),
        Err(Error::LockHeld { .. })
    ));
}
