//! A store on etcd (feature `etcd`) as a [`Backend`], beside `local.rs`: what
//! the [`Store`](crate::Store) facade asks, mapped onto `etcd/`'s client and
//! operations. No process holds such a store: every
//! handle talks to the cluster, and the cluster orders the commits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::access::request::{BaseLoad, Outcome, Request, WriteKind};
use crate::access::{Backend, Fault, ReadRecord, ReadView, Reply, Stats};
use crate::backup::{BackupOptions, BackupReport};
use crate::coord::keylocks::KeyLocks;
use crate::error::{Error, Result};
use crate::etcd::view::EtcdView;
use crate::etcd::{EtcdStore, open_store};
use crate::options::Options;

/// The store at `address` (`etcd://...`) as the way [`Store::open`](crate::Store::open) reaches it:
/// the backend and the store id.
pub(crate) fn reach(address: &str, options: &Options) -> Result<(Arc<dyn Backend>, String)> {
    let (store, store_id) = open_store(
        address,
        options.etcd.as_ref(),
        options.create,
        options.clock.clone(),
    )?;
    let backend = Arc::new(EtcdBackend {
        store,
        store_id: store_id.clone(),
        fs: Arc::clone(&options.fs),
        lock_timeout: options.lock_timeout,
        commits: AtomicU64::new(0),
        turns: KeyLocks::default(),
    });
    Ok((backend, store_id))
}

/// How long a patch waits for its record's turn among this handle's patches
/// (then it goes ahead, guarded by its compares).
const TURN_WAIT: Duration = Duration::from_secs(10);

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The [`Backend`] of a store on etcd.
pub(crate) struct EtcdBackend {
    store: EtcdStore,
    store_id: String,
    /// Where backups are written.
    fs: Arc<dyn crate::fs::Fs>,
    /// How long a backup waits for another run into the same directory.
    lock_timeout: std::time::Duration,
    /// Commits through this handle.
    commits: AtomicU64,
    /// Patches of one record through this handle take turns, rather than
    /// make each other's compare-and-swap fail.
    turns: KeyLocks,
}

/// The error for what a store on etcd does not do.
pub(crate) fn not_on_etcd(what: &str, reason: &str) -> Error {
    Error::Unsupported {
        what: format!("{what} of a store on etcd"),
        reason: reason.to_owned(),
    }
}

impl EtcdBackend {
    fn label(&self) -> PathBuf {
        self.store.label()
    }
}

impl Backend for EtcdBackend {
    fn revision(&self) -> Reply<u64> {
        Ok(self.store.revision()?)
    }

    fn get(&self, address: &[u8], read: ReadRecord<'_>) -> Reply<bool> {
        match self.store.get_address(address, 0)? {
            Some((meta, value)) => {
                read(meta, &value)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn snapshot(&self) -> Reply<Arc<dyn ReadView>> {
        let head = self.store.head()?;
        Ok(Arc::new(EtcdView::new(self.store.clone(), head)))
    }

    fn commit(&self, request: &Arc<Request>) -> Reply<Outcome> {
        let outcome = if crate::coord::needs_expansion(request) {
            let patched = request
                .writes
                .iter()
                .filter(|w| matches!(w.kind, WriteKind::Patch { .. }))
                .map(|w| w.address.as_slice())
                .min();
            let _turn = patched.map(|address| self.turns.turn(address, TURN_WAIT));
            self.store.commit_coordinated(request)?
        } else {
            self.store.commit_request(request)?
        };
        if outcome.revision.is_some() {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    fn restore(&self, _load: &BaseLoad) -> Reply<u64> {
        Err(Fault::Failed(not_on_etcd(
            "restoring records with their versions and revisions",
            "etcd assigns every key's version and revisions itself, so a snapshot's cannot be \
             kept; import it with merge mode into the empty store instead (`statelog import \
             --mode merge`): each record gets version 1 at the import's revision",
        )))
    }

    fn checkpoint(&self) -> Reply<()> {
        Err(Fault::Failed(not_on_etcd(
            "a checkpoint",
            "etcd makes every acknowledged commit durable in its own log, and keeps no \
             statelog files to checkpoint (etcd's own upkeep is `etcdctl compact` and \
             `etcdctl defrag`)",
        )))
    }

    fn stats(&self) -> Reply<Stats> {
        Ok(Stats {
            revision: self.store.revision()?,
            first_revision: self.store.first_revision()?,
            commits: self.commits.load(Ordering::Relaxed),
            ..Stats::default()
        })
    }

    fn backup(&self, dest: &Path, options: &BackupOptions) -> Reply<BackupReport> {
        Ok(crate::backup::etcd_run::run(
            &self.store,
            &self.store_id,
            self.fs.as_ref(),
            self.lock_timeout,
            dest,
            options,
        )?)
    }

    fn watch(&self, watch: &crate::watch::Watch) -> Reply<crate::watch::Events> {
        Ok(Box::new(self.store.feed(watch)?))
    }

    fn snapshot_at(&self, at: crate::access::past::At) -> Reply<Arc<dyn ReadView>> {
        let head = self.store.head_at(at)?;
        Ok(Arc::new(EtcdView::new(self.store.clone(), head)))
    }

    fn history(&self, address: &[u8]) -> Reply<Vec<crate::access::past::RecordVersion>> {
        Ok(self.store.history(address)?)
    }

    fn lease_grant(&self, ttl: Duration, holder: &str) -> Reply<u64> {
        let client = self.store.client();
        let (id, _) = client.lease_grant(crate::etcd::ttl_seconds(ttl))?;
        let id = u64::try_from(id).map_err(|_| Error::Poisoned {
            cause: format!("etcd granted a lease with a negative id ({id})"),
        })?;
        let grant = crate::coord::leases::grant_request(id, ttl, holder);
        match self.store.commit_coordinated(&grant) {
            Ok(_) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
            Err(e) => {
                let _ = client.lease_revoke(to_i64(id));
                Err(Fault::Failed(e))
            }
        }
    }

    fn lease_keep_alive(&self, id: u64) -> Reply<Duration> {
        match self.store.client().lease_keep_alive_once(to_i64(id))? {
            Some(ttl) => Ok(Duration::from_secs(u64::try_from(ttl).unwrap_or(0))),
            None => Err(Fault::Failed(Error::LeaseExpired { lease: id })),
        }
    }

    fn lease_revoke(&self, id: u64) -> Reply<Option<u64>> {
        let client = self.store.client();
        if client.lease_time_to_live(to_i64(id))?.is_none() {
            return Ok(None);
        }
        // etcd deletes the lease's record, its locks and its bound records
        // at one revision.
        Ok(Some(client.lease_revoke(to_i64(id))?))
    }

    fn lease_remaining(&self) -> Reply<Vec<(u64, Duration)>> {
        Ok(self.store.lease_clocks()?)
    }

    /// Tries the lock's `Txn` until it is granted or `wait` is up. etcd tells
    /// this client nothing when another one releases, so a waiter tries again
    /// after jittered pauses (2 ms doubling to 100 ms), keeping its lease
    /// alive every third of its TTL.
    fn lock_wait(
        &self,
        name: &str,
        lease: u64,
        wait: Duration,
        still_wanted: &dyn Fn() -> bool,
    ) -> Reply<u64> {
        let start = Instant::now();
        let mut every = Duration::from_millis(500);
        if !wait.is_zero() {
            every = every.min(self.lease_keep_alive(lease)? / 3);
        }
        let mut kept = Instant::now();
        let mut pause = Duration::from_millis(2);
        let request = crate::coord::leases::acquire_request(name, lease);
        loop {
            match self.store.commit_coordinated(&request) {
                Ok(outcome) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    return Ok(crate::coord::leases::granted_token(&outcome)?);
                }
                Err(Error::LockHeld {
                    lock,
                    token,
                    holder,
                    ..
                }) => {
                    let waited = start.elapsed();
                    if waited >= wait {
                        return Err(Fault::Failed(Error::LockHeld {
                            lock,
                            token,
                            holder,
                            waited,
                        }));
                    }
                    if kept.elapsed() >= every {
                        if !still_wanted() {
                            return Err(Fault::Failed(Error::LeaseExpired { lease }));
                        }
                        self.lease_keep_alive(lease)?;
                        kept = Instant::now();
                    }
                    let jitter = Duration::from_micros(fastrand::u64(0..=pause.as_micros() as u64));
                    std::thread::sleep((pause / 2 + jitter).min(wait - waited));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(Fault::Failed(e)),
            }
        }
    }

    fn close(&self) -> Result<()> {
        Ok(())
    }

    fn is_holder(&self) -> bool {
        false
    }

    fn read_only(&self) -> Option<String> {
        None
    }
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("store", &self.label())
            .finish_non_exhaustive()
    }
}
