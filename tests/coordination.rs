//! Leases, locks and idempotency keys across restarts: what the log gives
//! back when a store is opened again.

mod common;

use std::time::{Duration, Instant};

use statelog::{Batch, Error, Options, Patch, Store};

/// 1,000 lock grants over ten restarts, with other commits in between:
/// every token is above the one before.
#[test]
fn a_thousand_grants_across_restarts_have_increasing_tokens() {
    let dir = common::store_dir();
    let mut last = 0;
    for restart in 0..10 {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let lease = store.grant_lease(Duration::from_secs(60)).unwrap();
        for i in 0..100 {
            let name = if i % 2 == 0 { "a" } else { "b" };
            let grant = lease.lock(name, None).unwrap();
            assert!(
                grant.token > last,
                "restart {restart}, grant {i}: {} after {last}",
                grant.token
            );
            last = grant.token;
            if i % 7 == 0 {
                store.put("other", "k", &i).unwrap();
            }
            lease.unlock(&grant).unwrap();
        }
        lease.revoke().unwrap();
        store.close().unwrap();
    }
}

/// A lease read back from the log gets its whole TTL from the restart: its
/// lock is still held right after, and ends one TTL later with the records
/// bound to it.
#[test]
fn a_lease_gets_its_whole_ttl_after_a_restart() {
    let dir = common::store_dir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let lease = store.grant_lease(Duration::from_millis(1500)).unwrap();
    let grant = lease.lock("job", None).unwrap();
    store
        .apply(&Batch::new().put("jobs", "j1", &"running").lease(&lease))
        .unwrap();
    // The lease is a handle of the store too: the process lets go of the
    // store when both are gone.
    drop(lease);
    store.close().unwrap();
    std::thread::sleep(Duration::from_millis(1600));

    // The lease's TTL starts again while the store opens: measured from
    // before the open, the wait below is at least the TTL however long the
    // open takes.
    let reopened = Instant::now();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let locks = store.locks().unwrap();
    assert_eq!(
        locks.len(),
        1,
        "the lease ended before its TTL from the restart"
    );
    assert_eq!(locks[0].token, grant.token);
    let other = store.grant_lease(Duration::from_secs(30)).unwrap();
    assert!(matches!(
        other.lock("job", None),
        Err(Error::LockHeld { .. })
    ));
    let grant2 = other.lock("job", Some(Duration::from_secs(30))).unwrap();
    assert!(reopened.elapsed() >= Duration::from_millis(1500));
    assert!(grant2.token > grant.token);
    assert!(store.get::<String>("jobs", "j1").unwrap().is_none());
    store.close().unwrap();
}

/// Idempotency keys survive a restart; they are pruned once expired.
#[test]
fn idempotency_keys_survive_restarts_and_are_pruned() {
    let dir = common::store_dir();
    let batch = Batch::new()
        .patch("stats", "runs", &Patch::new().add(&["n"], 1))
        .idempotency_key("step-1");
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let first = store.apply(&batch).unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let again = store.apply(&batch).unwrap();
    assert!(again.replayed);
    assert_eq!(again.revision, first.revision);
    assert_eq!(store.idempotency_keys().unwrap(), 1);
    let short = Batch::new()
        .put("stats", "other", &1)
        .idempotency_key("step-2")
        .keep_key_for(Duration::from_millis(100));
    store.apply(&short).unwrap();
    assert_eq!(store.idempotency_keys().unwrap(), 2);
    store.close().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Opening prunes what expired (and the holder does every minute).
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.idempotency_keys().unwrap(), 1);
    assert!(store.apply(&batch).unwrap().replayed);
    store.close().unwrap();
}
