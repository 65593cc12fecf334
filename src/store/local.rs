//! The embedded engine as a [`Backend`]: this process holds the store (its
//! lock, its files), commits through the group-commit queue, and, unless told
//! not to, serves other processes (`serve/`), whose requests run through the
//! same methods of [`Shared`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::commit::Committer;
use super::open::{DB_FILE, Opened};
use super::read::{self, LocalView};
use super::request::{BaseLoad, Outcome, Request};
use super::{Counters, Recovery, Shared, Stats, background};
use crate::access::{Backend, ReadRecord, ReadView, Reply, Stored};
use crate::backup::{BackupOptions, BackupReport};
use crate::coord;
use crate::error::{Error, Result};
use crate::log::retention;
use crate::options::Options;
use crate::serve::Server;

impl Shared {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The revision readers see now.
    pub(crate) fn revision(&self) -> u64 {
        self.visible.get().applied().revision
    }

    /// One record as readers see it now.
    pub(crate) fn get(&self, address: &[u8]) -> Result<Option<Stored>> {
        self.check_open()?;
        read::get(&self.visible.get(), &self.db_path, address)
    }

    /// One record as readers see it now, lent to `read`.
    pub(crate) fn get_with(&self, address: &[u8], read: ReadRecord<'_>) -> Result<bool> {
        self.check_open()?;
        read::get_with(&self.visible.get(), &self.db_path, address, read)
    }

    /// A view of the newest published revision, kept for as long as it is held.
    pub(crate) fn view(&self) -> Result<Arc<dyn ReadView>> {
        self.check_open()?;
        Ok(Arc::new(LocalView::new(
            self.visible.get(),
            Arc::clone(&self.db_path),
        )))
    }

    /// Commits through the group-commit queue.
    pub(crate) fn commit(&self, request: Arc<Request>) -> Result<Outcome> {
        self.check_open()?;
        if let Some(lease) = request.coord.lease_in_use() {
            // A lease whose time is up is refused before its end is committed.
            self.leases.check_alive(lease)?;
        }
        self.committer.commit(self, request)
    }

    /// A new lease of `ttl`, taken by `holder` (a description for `locks`).
    pub(crate) fn lease_grant(&self, ttl: Duration, holder: &str) -> Result<u64> {
        coord::leases::check_ttl(ttl)?;
        let id = loop {
            let id = fastrand::u64(1..);
            if !self.leases.remaining().contains_key(&id) {
                break id;
            }
        };
        let request = Request {
            coord: coord::CoordRequest {
                lease_op: Some(coord::LeaseOp::Grant {
                    id,
                    ttl,
                    holder: holder.to_owned(),
                }),
                ..coord::CoordRequest::default()
            },
            ..Request::default()
        };
        self.commit(Arc::new(request))?;
        self.leases.start(id, ttl);
        Ok(id)
    }

    /// Keeps a lease alive for its TTL from now.
    pub(crate) fn lease_keep_alive(&self, id: u64) -> Result<Duration> {
        self.check_open()?;
        self.leases.keep_alive(id)
    }

    /// Ends a lease now; the revision of its end (`None`: it had ended).
    pub(crate) fn lease_revoke(&self, id: u64) -> Result<Option<u64>> {
        self.check_open()?;
        self.leases.forget(id);
        match self.commit(Arc::new(coord::leases::end_request(id))) {
            Ok(outcome) => Ok(outcome.revision),
            Err(Error::LeaseExpired { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What is left of each lease's time.
    pub(crate) fn lease_remaining(&self) -> std::collections::HashMap<u64, Duration> {
        self.leases.remaining()
    }

    /// Loads a base into the empty store.
    pub(crate) fn restore(&self, load: &BaseLoad) -> Result<u64> {
        self.check_open()?;
        let mut engine = self.engine.lock();
        let revision = engine.restore_base(load)?;
        self.synced_revision.store(revision, Ordering::Release);
        Ok(revision)
    }

    /// A checkpoint now.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        self.check_open()?;
        let mut engine = self.engine.lock();
        engine.check_writable()?;
        if engine.checkpoint()? {
            self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The engine's counters (those of a handle are zero here).
    pub(crate) fn stats(&self) -> Stats {
        let engine = self.engine.lock();
        Stats {
            revision: engine.applied.revision,
            checkpoint_revision: engine.checkpointed.revision,
            commits: engine.commits,
            conflicts: 0,
            retries: 0,
            batches: self.committer.counters.batches.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
            replayed_on_open: self.recovery.replayed,
            log_bytes: engine.log_bytes,
            clients: self.serving.clients.load(Ordering::Relaxed),
            pinned: self.serving.pinned.load(Ordering::Relaxed),
        }
    }

    /// Why the store is open read-only, if it is.
    pub(crate) fn read_only(&self) -> Option<String> {
        self.engine.lock().read_only.clone()
    }

    /// Log retention now.
    pub(crate) fn retain(&self) -> Result<retention::Outcome> {
        self.check_open()?;
        self.engine.lock().retain()
    }
}

/// What the server reports about the processes it serves.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    /// Open connections.
    pub clients: AtomicU64,
    /// Snapshots they pinned.
    pub pinned: AtomicU64,
}

/// The store held by this process.
pub(crate) struct Local {
    shared: Arc<Shared>,
    lease_thread: Mutex<Option<JoinHandle<()>>>,
    background: Mutex<Option<JoinHandle<()>>>,
    server: Mutex<Option<Server>>,
    closing: AtomicBool,
}

impl Local {
    /// Starts holding an opened store: the background thread and, when
    /// [`Options::serve`] allows, the server.
    pub(crate) fn start(path: &Path, options: &Options, opened: Opened) -> Result<Arc<Local>> {
        let revision = opened.engine.applied.revision;
        let shared = Arc::new(Shared {
            db_path: Arc::new(path.join(DB_FILE)),
            path: path.to_owned(),
            options: options.clone(),
            store_id: opened.store_id,
            visible: Arc::clone(&opened.engine.visible),
            db: opened.db,
            engine: parking_lot::Mutex::new(opened.engine),
            committer: Committer::default(),
            counters: Counters::default(),
            background: background::Signal::default(),
            synced_revision: AtomicU64::new(revision),
            recovery: Recovery {
                replayed: opened.replayed,
                cut: opened.cut,
            },
            closed: AtomicBool::new(false),
            backup_lock: Mutex::new(()),
            serving: Serving::default(),
            leases: coord::leases::Leases::default(),
            _lock: opened.lock,
        });
        coord::leases::load(&shared)?;
        if shared.read_only().is_none() {
            coord::leases::prune(&shared);
        }
        let thread = {
            let for_thread = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("statelog-background".to_owned())
                .spawn(move || background::run(for_thread))
                .map_err(|e| Error::io("start the background thread for", &shared.path, e))?
        };
        let lease_thread = {
            let for_thread = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("statelog-leases".to_owned())
                .spawn(move || coord::leases::run(for_thread))
                .map_err(|e| Error::io("start the lease thread for", &shared.path, e))?
        };
        let local = Arc::new(Local {
            shared: Arc::clone(&shared),
            lease_thread: Mutex::new(Some(lease_thread)),
            background: Mutex::new(Some(thread)),
            server: Mutex::new(None),
            closing: AtomicBool::new(false),
        });
        if options.serve {
            match Server::start(Arc::clone(&shared)) {
                Ok(server) => *local.server.lock() = Some(server),
                // A store open read-only (its file system takes no writes)
                // may have no room for a socket either: it is still read here.
                Err(e) if shared.read_only().is_some() => {
                    tracing::warn!(error = %e, "a read-only store is not served to other processes");
                }
                Err(e) => {
                    let _ = local.close();
                    return Err(e);
                }
            }
        } else if options.remote {
            // A holder that died left its socket; nobody serves now (this
            // process holds the lock), so clients would only be refused by it.
            // (Stores on the test kit's simulated file system are never
            // reached remotely, and have no socket to remove.)
            crate::serve::socket::remove(path);
        }
        Ok(local)
    }
}

impl Backend for Local {
    fn revision(&self) -> Reply<u64> {
        self.shared.check_open()?;
        Ok(self.shared.revision())
    }

    fn get(&self, address: &[u8], read: ReadRecord<'_>) -> Reply<bool> {
        Ok(self.shared.get_with(address, read)?)
    }

    fn snapshot(&self) -> Reply<Arc<dyn ReadView>> {
        Ok(self.shared.view()?)
    }

    fn commit(&self, request: &Arc<Request>) -> Reply<Outcome> {
        Ok(self.shared.commit(Arc::clone(request))?)
    }

    fn restore(&self, load: &BaseLoad) -> Reply<u64> {
        Ok(self.shared.restore(load)?)
    }

    fn checkpoint(&self) -> Reply<()> {
        Ok(self.shared.checkpoint()?)
    }

    fn stats(&self) -> Reply<Stats> {
        Ok(self.shared.stats())
    }

    fn backup(&self, dest: &Path, options: &BackupOptions) -> Reply<BackupReport> {
        Ok(self.shared.backup(dest, options)?)
    }

    fn retain(&self) -> Reply<retention::Outcome> {
        Ok(self.shared.retain()?)
    }

    fn lease_grant(&self, ttl: Duration, holder: &str) -> Reply<u64> {
        Ok(self.shared.lease_grant(ttl, holder)?)
    }

    fn lease_keep_alive(&self, id: u64) -> Reply<Duration> {
        Ok(self.shared.lease_keep_alive(id)?)
    }

    fn lease_revoke(&self, id: u64) -> Reply<Option<u64>> {
        Ok(self.shared.lease_revoke(id)?)
    }

    fn lease_remaining(&self) -> Reply<Vec<(u64, Duration)>> {
        Ok(self.shared.lease_remaining().into_iter().collect())
    }

    /// Stops serving (no new connections; requests in flight finish, the rest
    /// are refused unexecuted), then the background thread, then a final
    /// checkpoint. The lock goes when the last reference to the store's state
    /// does.
    fn close(&self) -> Result<()> {
        let shared = &self.shared;
        if self.closing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(server) = self.server.lock().take() {
            server.stop();
        }
        shared.leases.stop();
        if let Some(thread) = self.lease_thread.lock().take() {
            let _ = thread.join();
        }
        shared.closed.store(true, Ordering::Release);
        shared.background.stop();
        if let Some(thread) = self.background.lock().take() {
            let _ = thread.join();
        }
        let mut engine = shared.engine.lock();
        let result = if engine.poisoned.is_some() {
            Ok(false)
        } else {
            engine.checkpoint()
        };
        engine.close();
        result.map(|_| ())
    }

    fn is_holder(&self) -> bool {
        true
    }

    fn read_only(&self) -> Option<String> {
        self.shared.read_only()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Err(e) = Backend::close(self) {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}
