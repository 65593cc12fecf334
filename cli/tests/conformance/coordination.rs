//! Coordination, whatever way the store is reached: patches and same-key
//! updates of one hot record, revision preconditions, skipping unchanged
//! values, leases, locks and fencing, records bound to a lease, idempotency
//! keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use statelog::{Batch, Error, Options, Patch, RawValue, WriteResult};

use crate::ways::{Reached, Way};

fn open(way: &dyn Way, dir: &tempfile::TempDir) -> Reached {
    way.open(&dir.path().join("store"), Options::default())
}

fn value(store: &statelog::Store, ns: &str, key: &str) -> Value {
    store.get::<Value>(ns, key).unwrap().unwrap().value
}

pub fn hot_record_patches(way: &dyn Way) {
    const THREADS: u64 = 64;
    const EACH: u64 = 20;
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..EACH {
                    let patch = Patch::new()
                        .add(&["count"], 1)
                        .set(&["stages", &format!("s{t}")], &i)
                        .append_unique(&["threads"], &t);
                    store.patch("jobs", "hot", &patch).unwrap();
                }
            });
        }
    });
    let got = value(store, "jobs", "hot");
    assert_eq!(got["count"], THREADS * EACH);
    let stages = got["stages"].as_object().unwrap();
    assert_eq!(stages.len() as u64, THREADS);
    assert!(stages.values().all(|v| *v == json!(EACH - 1)), "{stages:?}");
    let mut threads: Vec<u64> = got["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    threads.sort_unstable();
    assert_eq!(threads, (0..THREADS).collect::<Vec<_>>());
    let record = store.get::<Value>("jobs", "hot").unwrap().unwrap();
    assert_eq!(record.version, THREADS * EACH);
    assert_eq!(store.stats().conflicts, 0);
}

pub fn hot_record_updates(way: &dyn Way) {
    const THREADS: u64 = 64;
    const EACH: u64 = 20;
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let runs = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let (store, runs) = (store.clone(), &runs);
            scope.spawn(move || {
                for _ in 0..EACH {
                    store
                        .update("jobs", "hot", |n: Option<u64>| -> statelog::Result<u64> {
                            runs.fetch_add(1, Ordering::Relaxed);
                            Ok(n.unwrap_or(0) + 1)
                        })
                        .unwrap();
                }
            });
        }
    });
    let calls = THREADS * EACH;
    assert_eq!(
        store.get::<u64>("jobs", "hot").unwrap().unwrap().value,
        calls
    );
    let runs = runs.load(Ordering::Relaxed);
    assert!(
        runs < 2 * calls,
        "the closure ran {runs} times for {calls} updates"
    );
}

pub fn preconditions(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let first = store.put("jobs", "j", &json!({"n": 1})).unwrap();
    // A record deleted and created again reaches version 1 again, but never
    // the same revision.
    store.delete("jobs", "j").unwrap();
    store.put("jobs", "j", &json!({"n": 2})).unwrap();
    let err = store
        .apply(
            &Batch::new()
                .put("jobs", "j", &3)
                .if_revision("jobs", "j", first.revision),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::RevisionMismatch { expected, .. } if expected == first.revision),
        "{err:?}"
    );
    let current = store.get::<Value>("jobs", "j").unwrap().unwrap();
    let done = store
        .apply(
            &Batch::new()
                .put("jobs", "j", &3)
                .if_revision("jobs", "j", current.mod_revision),
        )
        .unwrap();
    assert!(done.revision.is_some());
    let err = store
        .apply(
            &Batch::new()
                .put("jobs", "new", &1)
                .if_revision("jobs", "new", 5),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::RevisionMismatch { actual: 0, .. }),
        "{err:?}"
    );
    store
        .apply(
            &Batch::new()
                .put("jobs", "new", &1)
                .if_revision("jobs", "new", 0),
        )
        .unwrap();

    // Unchanged values are skipped: no version, no revision.
    let revision = store.revision();
    let same = store
        .apply(&Batch::new().put("jobs", "new", &1).if_changed())
        .unwrap();
    assert_eq!(same.revision, None);
    assert!(
        matches!(&same.writes[0], WriteResult::Put { changed: false, meta, .. } if meta.version == 1)
    );
    let same = store
        .apply(
            &Batch::new()
                .patch("jobs", "j", &Patch::new().set(&[], &3))
                .if_changed(),
        )
        .unwrap();
    assert_eq!(same.revision, None);
    assert_eq!(store.revision(), revision);

    // A patch that cannot apply writes nothing and says why.
    let err = store
        .patch("jobs", "j", &Patch::new().add(&["n"], 1))
        .unwrap_err();
    assert!(matches!(err, Error::PatchFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("not an object"), "{err}");
    assert_eq!(store.revision(), revision);
    // statelog's own namespaces are not the user's.
    let err = store.put("statelog:locks", "x", &1).unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    assert!(
        store
            .namespaces()
            .unwrap()
            .iter()
            .all(|n| !n.starts_with("statelog:"))
    );
}

pub fn locks_and_fences(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let a = store
        .grant_lease_as(Duration::from_secs(30), "worker a")
        .unwrap();
    let b = store
        .grant_lease_as(Duration::from_secs(30), "worker b")
        .unwrap();
    let held = a.lock("sync", None).unwrap();
    assert_eq!(
        held.token,
        store.revision(),
        "the token is the grant's revision"
    );
    let err = b.lock("sync", None).unwrap_err();
    assert!(
        matches!(&err, Error::LockHeld { token, holder, .. } if *token == held.token && holder == "worker a"),
        "{err:?}"
    );
    let started = Instant::now();
    let err = b
        .lock("sync", Some(Duration::from_millis(300)))
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(matches!(err, Error::LockHeld { .. }), "{err:?}");

    let locks = store.locks().unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(
        (
            locks[0].name.as_str(),
            locks[0].token,
            locks[0].lease,
            locks[0].holder.as_str()
        ),
        ("sync", held.token, a.id(), "worker a")
    );
    let leases = store.leases().unwrap();
    assert_eq!(leases.len(), 2);
    assert!(leases.iter().all(|l| l.remaining.is_some()), "{leases:?}");

    // Fenced writes pass with the current token, and fail atomically with a
    // stale one, naming both.
    store
        .apply(&Batch::new().put("out", "x", &1).fence("sync", held.token))
        .unwrap();
    a.unlock(&held).unwrap();
    let next = b.lock("sync", None).unwrap();
    assert!(next.token > held.token);
    let revision = store.revision();
    let err = store
        .apply(
            &Batch::new()
                .put("out", "x", &2)
                .put("out", "y", &2)
                .fence("sync", held.token),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Fenced { lock, token, current } if lock == "sync" && *token == held.token && *current == Some(next.token)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&held.token.to_string()) && text.contains(&next.token.to_string()),
        "{text}"
    );
    assert_eq!(store.revision(), revision);
    assert_eq!(store.get::<u64>("out", "x").unwrap().unwrap().value, 1);
    // Giving back a lock one no longer holds is refused too.
    assert!(matches!(a.unlock(&held).unwrap_err(), Error::Fenced { .. }));
    b.revoke().unwrap();
    assert!(store.locks().unwrap().is_empty());
    let err = b.lock("sync", None).unwrap_err();
    assert!(matches!(err, Error::LeaseExpired { .. }), "{err:?}");
    a.revoke().unwrap();
    assert!(store.leases().unwrap().is_empty());
}

pub fn leases_end_with_their_records(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let lease = store.grant_lease(Duration::from_millis(400)).unwrap();
    let grant = lease.lock("job", None).unwrap();
    store
        .apply(
            &Batch::new()
                .put("jobs", "running", &"job 1")
                .put("jobs", "kept", &"rewritten later")
                .lease(&lease),
        )
        .unwrap();
    store.put("jobs", "kept", &"not bound any more").unwrap();
    // Kept alive, it lives past its TTL.
    let until = Instant::now() + Duration::from_millis(900);
    while Instant::now() < until {
        lease.keep_alive().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(store.locks().unwrap().len(), 1);
    assert!(store.get::<String>("jobs", "running").unwrap().is_some());
    // Left alone, it ends: its lock and bound record go, in one commit.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.locks().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the lease never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.get::<String>("jobs", "running").unwrap().is_none());
    assert_eq!(
        store.get::<String>("jobs", "kept").unwrap().unwrap().value,
        "not bound any more"
    );
    assert!(matches!(
        lease.keep_alive().unwrap_err(),
        Error::LeaseExpired { .. }
    ));
    let err = store
        .apply(&Batch::new().put("out", "x", &1).fence("job", grant.token))
        .unwrap_err();
    assert!(
        matches!(err, Error::Fenced { current: None, .. }),
        "{err:?}"
    );
}

pub fn idempotency_keys(way: &dyn Way) {
    let dir = crate::common::store_dir();
    let reached = open(way, &dir);
    let store = reached.store();
    let batch = Batch::new()
        .patch("stats", "runs", &Patch::new().add(&["n"], 1))
        .idempotency_key("run-17");
    let first = store.apply(&batch).unwrap();
    assert!(!first.replayed);
    for _ in 0..4 {
        let again = store.apply(&batch).unwrap();
        assert!(again.replayed);
        assert_eq!(again.revision, first.revision);
        assert_eq!(again.writes, first.writes);
    }
    assert_eq!(value(store, "stats", "runs"), json!({"n": 1}));
    let revision = store.revision();
    let other = Batch::new()
        .patch("stats", "runs", &Patch::new().add(&["n"], 2))
        .idempotency_key("run-17");
    let err = store.apply(&other).unwrap_err();
    assert!(
        matches!(&err, Error::IdempotencyKeyReused { key, first: f } if key == "run-17" && *f == first.revision),
        "{err:?}"
    );
    assert_eq!(store.revision(), revision);
    // An expired key counts again.
    let short = Batch::new()
        .patch("stats", "runs", &Patch::new().add(&["n"], 1))
        .idempotency_key("run-18")
        .keep_key_for(Duration::from_millis(200));
    assert!(!store.apply(&short).unwrap().replayed);
    assert!(store.apply(&short).unwrap().replayed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!store.apply(&short).unwrap().replayed);
    assert_eq!(value(store, "stats", "runs"), json!({"n": 3}));
    // Keys are checked: at most 255 bytes.
    let err = store
        .apply(
            &Batch::new()
                .put("a", "b", &1)
                .idempotency_key(&"k".repeat(256)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("255"), "{err}");
    let _ = RawValue::from_json("1").unwrap();
}
