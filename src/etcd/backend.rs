//! A store on etcd as a [`Backend`]: what the [`Store`](crate::Store) facade
//! asks, mapped onto the etcd client. No process holds such a store: every
//! handle talks to the cluster, and the cluster orders the commits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::client::Client;
use super::identity;
use super::ops::EtcdStore;
use super::options::{Address, EtcdOptions};
use super::view::EtcdView;
use crate::access::{Backend, Fault, Reached, ReadRecord, ReadView, Reply};
use crate::backup::{BackupOptions, BackupReport};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::store::request::{BaseLoad, Outcome, Request};
use crate::store::{Recovery, Stats};

/// Opens the store at `address` (`etcd://...`): reads its identity, creating
/// the store when `options` allow. Returns the store and its id.
pub(crate) fn open_store(address: &str, options: &Options) -> Result<(EtcdStore, String)> {
    let etcd = match &options.etcd {
        Some(etcd) => etcd.clone(),
        None => EtcdOptions::from_env()?,
    };
    let parsed = Address::parse(address)?;
    let label = parsed.to_path();
    let client = Client::labelled(&etcd.client_options(parsed.endpoints.clone())?, &label)?;
    let identity = identity::open(&client, &parsed.layout, &label, options.create)?;
    let store = EtcdStore::new(client, parsed.layout, etcd.limits())
        .opened(identity.revision, options.clock.clone());
    Ok((store, identity.store_id))
}

/// [`open_store`] as the way [`Store::open`](crate::Store::open) reaches it.
pub(crate) fn reach(address: &str, options: &Options) -> Result<Reached> {
    let (store, store_id) = open_store(address, options)?;
    Ok(Reached {
        backend: Arc::new(EtcdBackend {
            store,
            store_id: store_id.clone(),
            fs: Arc::clone(&options.fs),
            lock_timeout: options.lock_timeout,
            commits: AtomicU64::new(0),
        }),
        store_id,
        recovery: Recovery::default(),
    })
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
            return Err(Fault::Failed(no_coordination()));
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
        Ok(super::backup::run(
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

/// What a store on etcd answers to patches, fences, revision preconditions,
/// idempotency keys, leases and locks (not mapped yet: etcd has leases and
/// transactions to map them onto).
pub(crate) fn no_coordination() -> crate::Error {
    crate::Error::Unsupported {
        what: "patches, fences, revision preconditions, idempotency keys, leases and locks"
            .to_owned(),
        reason: "stores on etcd do not have them yet; use a store directory".to_owned(),
    }
}
