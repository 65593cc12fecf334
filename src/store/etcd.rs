//! A store on etcd (feature `etcd`) as a [`Backend`], beside `local.rs`: what
//! the [`Store`](crate::Store) facade asks, mapped onto `etcd/`'s client and
//! operations. No process holds such a store: every
//! handle talks to the cluster, and the cluster orders the commits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::access::request::{BaseLoad, Outcome, Request};
use crate::access::{Backend, Fault, ReadRecord, ReadView, Reply, Stats};
use crate::backup::{BackupOptions, BackupReport};
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
    });
    Ok((backend, store_id))
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
        if crate::coord::needs_expansion(request) {
            return Err(Fault::Failed(crate::coord::not_on_etcd()));
        }
        let outcome = self.store.commit_request(request)?;
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
