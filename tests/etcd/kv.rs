//! The mapping on one member: compare-and-swap races, transaction conflicts,
//! snapshots over pages, watches, leases, and etcd's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use statelog::testkit::etcd::{
    Commit, EtcdStore, Layout, Limits, RecordChange, WriteResult, proto,
};
use statelog::{Error, RawValue};

use crate::harness::{Cluster, Settings};

fn store(cluster: &Cluster, prefix: &str) -> EtcdStore {
    EtcdStore::new(
        cluster.client(),
        Layout::new(prefix).unwrap(),
        Limits::default(),
    )
}

fn raw(value: impl serde::Serialize) -> RawValue {
    RawValue::from_value(&value).unwrap()
}

fn put(store: &EtcdStore, ns: &str, key: &str, value: impl serde::Serialize) -> u64 {
    let outcome = store
        .commit(Commit::new().put(ns, key, raw(value), false).unwrap())
        .unwrap();
    outcome.revision.unwrap()
}

/// Increments a counter by compare-and-swap until it lands; returns the
/// attempts it took.
fn increment(store: &EtcdStore, ns: &str, key: &str) -> u64 {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = store.get(ns, key, 0).unwrap();
        let (n, version, modified) = match &current {
            Some(r) => (
                r.value.decode::<u64>().unwrap(),
                r.version,
                Some(r.mod_revision),
            ),
            None => (0, 0, None),
        };
        let commit = Commit::new()
            .expect(ns, key, version, modified)
            .unwrap()
            .put(ns, key, raw(n + 1), false)
            .unwrap();
        match store.commit(commit) {
            Ok(_) => return attempts,
            Err(Error::Conflict { .. }) => continue,
            Err(e) => panic!("increment: {e}"),
        }
    }
}

#[test]
fn versions_and_revisions_come_from_etcd() {
    let cluster = Cluster::single();
    let s = store(&cluster, "meta-test");
    let first = put(&s, "tasks", "t1", "queued");
    let r = s.get("tasks", "t1", 0).unwrap().unwrap();
    assert_eq!(
        (r.version, r.create_revision, r.mod_revision),
        (1, first, first)
    );
    assert_eq!(r.value.decode::<String>().unwrap(), "queued");
    let second = put(&s, "tasks", "t1", "running");
    assert!(second > first);
    let r = s.get("tasks", "t1", 0).unwrap().unwrap();
    assert_eq!(
        (r.version, r.create_revision, r.mod_revision),
        (2, first, second)
    );
    // The read at the first revision still sees the first value.
    let old = s.get("tasks", "t1", first).unwrap().unwrap();
    assert_eq!(old.value.decode::<String>().unwrap(), "queued");
    assert!(s.revision().unwrap() >= second);
    // A delete, then a re-create starts again at version 1.
    let outcome = s
        .commit(Commit::new().delete("tasks", "t1").unwrap())
        .unwrap();
    assert_eq!(outcome.writes, [WriteResult::Deleted { version: 2 }]);
    let outcome = s
        .commit(Commit::new().delete("tasks", "t1").unwrap())
        .unwrap();
    assert_eq!(outcome.writes, [WriteResult::Absent]);
    assert_eq!(outcome.revision, None, "deleting nothing takes no revision");
    let third = put(&s, "tasks", "t1", "again");
    let r = s.get("tasks", "t1", 0).unwrap().unwrap();
    assert_eq!((r.version, r.create_revision), (1, third));
}

#[test]
fn put_if_changed_leaves_an_equal_value_alone() {
    let cluster = Cluster::single();
    let s = store(&cluster, "unchanged");
    let first = put(&s, "ns", "k", 7);
    let outcome = s
        .commit(Commit::new().put("ns", "k", raw(7), true).unwrap())
        .unwrap();
    assert_eq!(outcome.revision, None);
    match outcome.writes[0] {
        WriteResult::Put { meta, changed } => {
            assert!(!changed);
            assert_eq!((meta.version, meta.mod_revision), (1, first));
        }
        other => panic!("{other:?}"),
    }
    let outcome = s
        .commit(Commit::new().put("ns", "k", raw(8), true).unwrap())
        .unwrap();
    assert!(
        matches!(outcome.writes[0], WriteResult::Put { changed: true, meta } if meta.version == 2)
    );
}

#[test]
fn compare_and_swap_races_lose_no_increment() {
    let cluster = Cluster::single();
    let s = store(&cluster, "race");
    const THREADS: u64 = 6;
    const EACH: u64 = 40;
    let retries = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let s = s.clone();
            let retries = retries.clone();
            scope.spawn(move || {
                for _ in 0..EACH {
                    let attempts = increment(&s, "counters", "c");
                    retries.fetch_add(attempts - 1, Ordering::Relaxed);
                }
            });
        }
    });
    let r = s.get("counters", "c", 0).unwrap().unwrap();
    assert_eq!(r.value.decode::<u64>().unwrap(), THREADS * EACH);
    assert_eq!(r.version, THREADS * EACH);
    println!("{} conflicts retried", retries.load(Ordering::Relaxed));
}

#[test]
fn a_transaction_conflict_names_the_key_and_versions_and_writes_nothing() {
    let cluster = Cluster::single();
    let s = store(&cluster, "txn");
    put(&s, "accounts", "a", 10);
    put(&s, "accounts", "b", 0);
    let a = s.get("accounts", "a", 0).unwrap().unwrap();
    let b = s.get("accounts", "b", 0).unwrap().unwrap();
    // Someone else writes b after it was read.
    put(&s, "accounts", "b", 100);
    let before = s.revision().unwrap();
    let commit = Commit::new()
        .expect("accounts", "a", a.version, Some(a.mod_revision))
        .unwrap()
        .expect("accounts", "b", b.version, Some(b.mod_revision))
        .unwrap()
        .expect("accounts", "new", 0, None)
        .unwrap()
        .put("accounts", "a", raw(7), false)
        .unwrap()
        .put("accounts", "b", raw(3), false)
        .unwrap()
        .put("accounts", "new", raw(1), false)
        .unwrap();
    match s.commit(commit) {
        Err(Error::Conflict {
            namespace,
            key,
            expected,
            actual,
            ..
        }) => {
            assert_eq!((namespace.as_str(), key.as_str()), ("accounts", "b"));
            assert_eq!((expected, actual), (1, 2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.revision().unwrap(), before, "nothing was written");
    assert_eq!(
        s.get("accounts", "a", 0)
            .unwrap()
            .unwrap()
            .value
            .decode::<i64>()
            .unwrap(),
        10
    );
    assert!(s.get("accounts", "new", 0).unwrap().is_none());
    // Absence is checked too.
    put(&s, "accounts", "new", 5);
    let commit = Commit::new()
        .expect("accounts", "new", 0, None)
        .unwrap()
        .put("accounts", "new", raw(1), false)
        .unwrap();
    assert!(matches!(
        s.commit(commit),
        Err(Error::Conflict {
            expected: 0,
            actual: 1,
            ..
        })
    ));
}

#[test]
fn a_listing_is_one_snapshot_across_pages() {
    let cluster = Cluster::single();
    let s = store(&cluster, "pages");
    let other = store(&cluster, "pages-other");
    // More than two pages, in batches of 100 per transaction.
    for batch in 0..12 {
        let mut commit = Commit::new();
        for i in 0..100 {
            let n = batch * 100 + i;
            commit = commit
                .put("items", &format!("k{n:05}"), raw(n), false)
                .unwrap();
        }
        s.commit(commit).unwrap();
    }
    put(&s, "itemz", "x", 1);
    put(&s, "item", "x", 1);
    put(&other, "items", "k00000", "another store");
    let at = s.revision().unwrap();
    // Writes after the snapshot's revision are not seen by a listing at it.
    for n in 0..50 {
        put(&s, "items", &format!("k{n:05}"), 9999);
    }
    s.commit(Commit::new().delete("items", "k01199").unwrap())
        .unwrap();
    let mut seen = Vec::new();
    let revision = s
        .list("items", "", at, |r| {
            seen.push((r.key, r.record.value.decode::<u64>().unwrap()));
            Ok(())
        })
        .unwrap();
    assert_eq!(revision, at);
    assert_eq!(seen.len(), 1200);
    for (n, (key, value)) in seen.iter().enumerate() {
        assert_eq!(key, &format!("k{n:05}"));
        assert_eq!(*value, n as u64);
    }
    // The latest listing sees the changes; a key prefix narrows it.
    let mut latest = 0;
    s.list("items", "k000", 0, |r| {
        assert!(r.key.starts_with("k000"));
        latest += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(latest, 100);
    let mut all = 0;
    s.list_all(0, |_| {
        all += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(all, 1199 + 2);
}

#[test]
fn a_watch_delivers_every_change_from_a_revision_and_reports_compaction() {
    let cluster = Cluster::single();
    let s = store(&cluster, "watched");
    let other = store(&cluster, "watched-not");
    let first = put(&s, "jobs", "a", 1);
    put(&s, "jobs", "b", 2);
    put(&other, "jobs", "a", "elsewhere");
    s.commit(Commit::new().delete("jobs", "a").unwrap())
        .unwrap();
    let mut watch = s.watch(first);
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < 3 && Instant::now() < deadline {
        if let Some(batch) = watch.next_timeout(Duration::from_secs(1)) {
            events.extend(batch.unwrap());
        }
    }
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.key.as_str(), matches!(e.change, RecordChange::Deleted)))
        .collect();
    assert_eq!(summary, [("a", false), ("b", false), ("a", true)]);
    assert_eq!(events[0].revision, first);
    // New writes arrive too.
    let later = put(&s, "jobs", "c", 3);
    let batch = watch
        .next_timeout(Duration::from_secs(10))
        .expect("an event")
        .unwrap();
    assert_eq!(batch[0].revision, later);
    match &batch[0].change {
        RecordChange::Put(r) => assert_eq!(r.value.decode::<u64>().unwrap(), 3),
        other => panic!("{other:?}"),
    }
    drop(watch);
    // After a compaction, a watch from before it says what was compacted.
    s.client().compact(later).unwrap();
    let mut watch = s.watch(first);
    match watch.next_timeout(Duration::from_secs(10)) {
        Some(Err(Error::Compacted {
            requested,
            compacted,
        })) => {
            assert_eq!((requested, compacted), (first, Some(later)));
        }
        other => panic!("expected a compaction error, got {other:?}"),
    }
    match s.get("jobs", "b", first) {
        Err(e @ Error::Compacted { .. }) => {
            assert!(e.to_string().contains(&first.to_string()), "{e}")
        }
        other => panic!("expected a compaction error, got {other:?}"),
    }
}

#[test]
fn a_lease_keeps_its_key_while_renewed_and_expiry_removes_it() {
    let cluster = Cluster::single();
    let client = cluster.client();
    let (id, ttl) = client.lease_grant(2).unwrap();
    assert_eq!(ttl, 2);
    client
        .put(proto::PutRequest {
            key: b"lease-test/held".to_vec(),
            value: b"x".to_vec(),
            lease: id,
            prev_kv: false,
        })
        .unwrap();
    let exists = |client: &statelog::testkit::etcd::Client| {
        !client
            .range(proto::RangeRequest {
                key: b"lease-test/held".to_vec(),
                ..Default::default()
            })
            .unwrap()
            .kvs
            .is_empty()
    };
    let keeper = client.keep_alive(id, ttl);
    std::thread::sleep(Duration::from_secs(4));
    assert!(exists(&client), "the renewed lease kept its key");
    assert!(keeper.last_ttl() > 0);
    assert!(client.lease_time_to_live(id).unwrap().is_some());
    drop(keeper);
    // Expiry takes the TTL plus the leader's check interval.
    let deadline = Instant::now() + Duration::from_secs(15);
    while exists(&client) {
        assert!(Instant::now() < deadline, "the key outlived its lease");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(client.lease_time_to_live(id).unwrap(), None);
    assert_eq!(client.lease_keep_alive_once(id).unwrap(), None);
    // Revoking removes the keys at once.
    let (id, _) = client.lease_grant(60).unwrap();
    client
        .put(proto::PutRequest {
            key: b"lease-test/held".to_vec(),
            value: b"y".to_vec(),
            lease: id,
            prev_kv: false,
        })
        .unwrap();
    assert_eq!(client.lease_keep_alive_once(id).unwrap(), Some(60));
    client.lease_revoke(id).unwrap();
    assert!(!exists(&client));
}

#[test]
fn commits_over_etcds_limits_are_refused_whole_and_name_the_limit() {
    let cluster = Cluster::start(
        1,
        Settings {
            extra: vec![
                "--max-txn-ops=16".into(),
                "--max-request-bytes=65536".into(),
                "--quota-backend-bytes=4194304".into(),
            ],
            ..Settings::default()
        },
    );
    let s = store(&cluster, "limits");
    let before = s.revision().unwrap();
    // Refused before sending, by the client's own count.
    let mut commit = Commit::new();
    for i in 0..129 {
        commit = commit.put("many", &format!("k{i}"), raw(i), false).unwrap();
    }
    let e = s.commit(commit).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                limit: "--max-txn-ops",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("129 writes"), "{e}");
    // Refused by the server, whose limit is lower than the client assumes.
    let mut commit = Commit::new();
    for i in 0..17 {
        commit = commit.put("many", &format!("k{i}"), raw(i), false).unwrap();
    }
    let e = s.commit(commit).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                limit: "--max-txn-ops",
                ..
            }
        ),
        "{e}"
    );
    // Too large for the server.
    let big = raw(serde_bytes::ByteBuf::from(vec![7u8; 100_000]));
    let e = s
        .commit(Commit::new().put("big", "v", big.clone(), false).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                limit: "--max-request-bytes",
                ..
            }
        ),
        "{e}"
    );
    // A client told the server's limits refuses before sending.
    let told = EtcdStore::new(
        cluster.client(),
        Layout::new("limits").unwrap(),
        Limits {
            max_txn_ops: 16,
            max_request_bytes: 65536,
        },
    );
    let e = told
        .commit(Commit::new().put("big", "v", big, false).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("--max-request-bytes"), "{e}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    assert_eq!(s.revision().unwrap(), before, "nothing was written");
    // Filling the quota: etcd raises its alarm and refuses writes.
    let chunk = raw(serde_bytes::ByteBuf::from(vec![1u8; 60_000]));
    let mut quota_error = None;
    for i in 0..400 {
        match told.commit(
            Commit::new()
                .put("fill", &format!("k{i}"), chunk.clone(), false)
                .unwrap(),
        ) {
            Ok(_) => {}
            Err(e) => {
                quota_error = Some(e);
                break;
            }
        }
    }
    let e = quota_error.expect("the quota was reached");
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                limit: "--quota-backend-bytes",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("alarm disarm"), "{e}");
}

/// A commit whose check names the write it replaces takes that write's
/// metadata from the handle's last read of it only when the read was that
/// very write: a record deleted and created again up to the same version is
/// another write (another create revision).
#[test]
fn a_put_after_a_re_create_takes_the_new_records_create_revision() {
    let cluster = Cluster::single();
    let s = store(&cluster, "re-create");
    let other = store(&cluster, "re-create");
    let first = put(&s, "ns", "k", 1);
    let read = s.get("ns", "k", 0).unwrap().unwrap();
    assert_eq!((read.version, read.create_revision), (1, first));
    other
        .commit(Commit::new().delete("ns", "k").unwrap())
        .unwrap();
    let second = put(&other, "ns", "k", 2);
    let put_over = |s: &EtcdStore, version: u64, modified: u64, value: u64| {
        let outcome = s
            .commit(
                Commit::new()
                    .expect("ns", "k", version, Some(modified))
                    .unwrap()
                    .put("ns", "k", raw(value), false)
                    .unwrap(),
            )
            .unwrap();
        match outcome.writes[..] {
            [WriteResult::Put { meta, .. }] => meta,
            _ => panic!("{outcome:?}"),
        }
    };
    // `s` last read the first record (version 1 too).
    let meta = put_over(&s, 1, second, 3);
    assert_eq!((meta.version, meta.create_revision), (2, second));
    let read = other.get("ns", "k", 0).unwrap().unwrap();
    assert_eq!(read.meta(), meta);
    // Now `s` reads the write it replaces.
    let read = s.get("ns", "k", 0).unwrap().unwrap();
    let meta = put_over(&s, read.version, read.mod_revision, 4);
    assert_eq!((meta.version, meta.create_revision), (3, second));
    assert_eq!(other.get("ns", "k", 0).unwrap().unwrap().meta(), meta);
}
