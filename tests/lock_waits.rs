//! Waiting for a lock, embedded and through a holder, with real threads: the
//! waiter is woken by the release or by the end of its holder's lease (not
//! before), its own lease stays alive however long it waits, and a wait that
//! runs out is `LockHeld` after the whole wait. Through a holder the wait may
//! be longer than the client's response timeout: the holder's progress
//! messages keep the connection waiting.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use statelog::{Error, Options, Store};

/// The store in `dir`, and when `through_holder`, a second handle that works
/// through the first (returned to keep it holding), answering within a second.
fn reach(dir: &Path, through_holder: bool) -> (Store, Store) {
    let holder = Store::open(dir, Options::default()).unwrap();
    if !through_holder {
        return (holder.clone(), holder);
    }
    let options = Options::default().lock_timeout(Duration::from_secs(1));
    let client = Store::open(dir, options).unwrap();
    assert!(!client.is_holder());
    (client, holder)
}

#[test]
fn a_waiter_gets_the_lock_when_it_is_released_and_keeps_its_lease_meanwhile() {
    for through_holder in [false, true] {
        let dir = common::memory_store_dir();
        let (client, holder) = reach(dir.path(), through_holder);
        let first = holder.grant_lease(Duration::from_secs(30)).unwrap();
        let held = first.lock("sync", None).unwrap();
        let (started, waiting) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // A TTL far shorter than the wait: only keep-alives while it
            // waits keep this lease, and so the wait, going.
            let lease = client.grant_lease(Duration::from_millis(300)).unwrap();
            started.send(()).unwrap();
            let grant = lease.lock("sync", Some(Duration::from_secs(60)));
            (grant, lease)
        });
        waiting.recv().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        first.unlock(&held).unwrap();
        let (grant, lease) = waiter.join().unwrap();
        let grant = grant.unwrap_or_else(|e| panic!("through a holder {through_holder}: {e}"));
        assert!(grant.token > held.token);
        assert_eq!(holder.locks().unwrap()[0].token, grant.token);
        lease.revoke().unwrap();
    }
}

#[test]
fn a_waiter_gets_the_lock_when_its_holders_lease_ends_not_before() {
    for through_holder in [false, true] {
        let dir = common::memory_store_dir();
        let (client, holder) = reach(dir.path(), through_holder);
        let ttl = Duration::from_millis(800);
        let first = holder.grant_lease(ttl).unwrap();
        let granted = Instant::now();
        let held = first.lock("sync", None).unwrap();
        let waiter = std::thread::spawn(move || {
            let lease = client.grant_lease(Duration::from_secs(30)).unwrap();
            let grant = lease.lock("sync", Some(Duration::from_secs(60)));
            (grant, Instant::now())
        });
        let (grant, at) = waiter.join().unwrap();
        let grant = grant.unwrap();
        assert!(grant.token > held.token);
        assert!(
            at.duration_since(granted) >= ttl,
            "the lock was taken {:?} after it was granted under a lease of {ttl:?}",
            at.duration_since(granted)
        );
        assert!(matches!(
            first.keep_alive(),
            Err(Error::LeaseExpired { .. })
        ));
    }
}

/// A wait that runs out is `LockHeld` after the whole wait (through a
/// holder: longer than the client's one-second response timeout).
#[test]
fn a_wait_that_runs_out_is_lock_held_after_the_whole_wait() {
    for through_holder in [false, true] {
        let dir = common::memory_store_dir();
        let (client, holder) = reach(dir.path(), through_holder);
        let first = holder.grant_lease(Duration::from_secs(30)).unwrap();
        let held = first.lock("sync", None).unwrap();
        let lease = client.grant_lease(Duration::from_secs(30)).unwrap();
        let wait = Duration::from_millis(2500);
        let start = Instant::now();
        match lease.lock("sync", Some(wait)) {
            Err(Error::LockHeld {
                lock,
                token,
                waited,
                ..
            }) => {
                assert_eq!((lock.as_str(), token), ("sync", held.token));
                assert!(waited >= wait, "{waited:?}");
                assert!(start.elapsed() >= wait);
            }
            other => panic!("through a holder {through_holder}: {other:?}"),
        }
        // Not waiting at all: refused at once, the lock still the first's.
        assert!(matches!(
            lease.lock("sync", None),
            Err(Error::LockHeld { .. })
        ));
        assert_eq!(holder.locks().unwrap()[0].token, held.token);
    }
}
