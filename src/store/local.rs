//! The embedded engine as a [`Backend`]: this process holds the store (its
//! lock, its files), commits through the group-commit queue, runs the
//! background thread, and, unless told not to, serves other processes
//! (`serve/`), whose requests run through this same backend.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::Recovery;
use super::background;
use super::commit::{Committer, Leader};
use crate::access::request::{BaseLoad, Outcome, Request};
use crate::access::{Backend, BackupOptions, BackupReport, ReadRecord, ReadView, Reply, Stats};
use crate::backup::run::{self, Source};
use crate::coord;
use crate::db::view::Visible;
use crate::engine::open::Opened;
use crate::engine::read::LocalView;
use crate::engine::{BackupPoint, Engine};
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard};
use crate::log::catalog;
use crate::log::segment::StoreId;
use crate::options::{Durability, Options};
use crate::serve::{Served, Server, Serving};
use crate::value::Stored;

/// Counters of the holder itself.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub checkpoints: AtomicU64,
}

/// The state of a store this process holds: what the engine, the committer,
/// the background thread and the backend share.
pub(super) struct Shared {
    pub path: PathBuf,
    pub options: Options,
    pub store_id: StoreId,
    /// What readers see (declared before `engine`, which holds the state
    /// database: dropped before it).
    pub visible: Arc<Visible>,
    pub engine: Mutex<Engine>,
    pub committer: Committer,
    pub counters: Counters,
    pub background: background::Signal,
    /// The last revision known to be synced (Relaxed mode).
    pub synced_revision: AtomicU64,
    pub recovery: Recovery,
    pub closed: AtomicBool,
    /// Held by a running backup: backups of one store take turns.
    pub backup_lock: Mutex<()>,
    /// Connections and pinned snapshots of the processes served.
    pub serving: Arc<Serving>,
    /// The clocks of the store's leases (`coord::leases`).
    pub leases: coord::leases::Leases,
    // Dropped last: the lock is released only after everything above is closed.
    _lock: Box<dyn LockGuard>,
}

impl Shared {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Commits through the group-commit queue; a lease whose time is up is
    /// refused (for new locks and bindings) before its end is committed.
    fn commit(&self, request: Arc<Request>) -> Result<Outcome> {
        self.check_open()?;
        if let Some(lease) = request.coord.lease_in_use() {
            self.leases.check_alive(lease)?;
        }
        let releases = matches!(request.coord.lock, Some(coord::LockOp::Release { .. }))
            || matches!(request.coord.lease_op, Some(coord::LeaseOp::End { .. }));
        let outcome = self.committer.commit(self, request)?;
        if releases {
            // Lock waiters try again now (`coord::leases::lock_wait`).
            self.leases.released();
        }
        Ok(outcome)
    }

    /// A new lease of `ttl`, taken by `holder` (a description for `locks`).
    fn lease_grant(&self, ttl: Duration, holder: &str) -> Result<u64> {
        coord::leases::check_ttl(ttl)?;
        let id = loop {
            let id = fastrand::u64(1..);
            if !self.leases.remaining().contains_key(&id) {
                break id;
            }
        };
        self.commit(Arc::new(coord::leases::grant_request(id, ttl, holder)))?;
        self.leases.start(id, ttl);
        Ok(id)
    }

    /// Ends a lease now; the revision of its end (`None`: it had ended).
    fn lease_revoke(&self, id: u64) -> Result<Option<u64>> {
        self.check_open()?;
        self.leases.forget(id);
        match self.commit(Arc::new(coord::leases::end_request(id))) {
            Ok(outcome) => Ok(outcome.revision),
            Err(Error::LeaseExpired { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Loads a base into the empty store.
    fn restore(&self, load: &BaseLoad) -> Result<u64> {
        self.check_open()?;
        let mut engine = self.engine.lock();
        let revision = engine.restore_base(load)?;
        self.synced_revision.store(revision, Ordering::Release);
        Ok(revision)
    }

    /// A checkpoint now.
    fn checkpoint(&self) -> Result<()> {
        self.check_open()?;
        let mut engine = self.engine.lock();
        engine.check_writable()?;
        if engine.checkpoint()? {
            self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The engine's counters (those of a handle are zero here).
    fn stats(&self) -> Stats {
        let (engine, first_revision) = {
            let engine = self.engine.lock();
            (engine.counts(), engine.first_revision().unwrap_or(0))
        };
        Stats {
            revision: engine.revision,
            checkpoint_revision: engine.checkpoint_revision,
            commits: engine.commits,
            conflicts: 0,
            retries: 0,
            batches: self.committer.counters.batches.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
            replayed_on_open: self.recovery.replayed,
            log_bytes: engine.log_bytes,
            clients: self.serving.clients.load(Ordering::Relaxed),
            pinned: self.serving.pinned.load(Ordering::Relaxed),
            first_revision,
        }
    }

    /// One record as it was right after `revision`.
    fn record_as_of(&self, address: &[u8], revision: u64) -> Result<Option<Stored>> {
        let tables = self.engine.lock().past_tables()?;
        tables.get(address, revision)
    }

    /// A view of the store as it was at `at`.
    fn view_at(&self, at: crate::access::past::At) -> Result<Arc<dyn ReadView>> {
        self.check_open()?;
        let (first, tables) = {
            let mut engine = self.engine.lock();
            (engine.first_revision()?, engine.past_tables()?)
        };
        // Published before the tables were opened: they hold at least this.
        let visible = self.visible.get().applied();
        crate::engine::past::view_at(tables, visible, at, first, first)
    }

    /// A view at `revision` for a backup's base: older than the first
    /// revision the log holds, as long as the history index answers for it.
    fn view_for_base(&self, revision: u64) -> Result<Arc<dyn ReadView>> {
        let (floor, first, tables) = {
            let mut engine = self.engine.lock();
            (
                engine.history_from(),
                engine.first_revision()?,
                engine.past_tables()?,
            )
        };
        let visible = self.visible.get().applied();
        let at = crate::access::past::At::Revision(revision);
        crate::engine::past::view_at(tables, visible, at, floor.max(1), first)
    }

    /// A backup run into `dest` (see [`Store::backup`](crate::Store::backup)).
    fn backup(&self, dest: &Path, options: &BackupOptions) -> Result<BackupReport> {
        self.check_open()?;
        let _one_at_a_time = self.backup_lock.lock();
        run::run(self, dest, options)
    }
}

impl Shared {
    /// What the background thread does each time it wakes: in `Relaxed`
    /// mode, syncs the log; then a checkpoint if one is due.
    fn background_work(&self) {
        let options = &self.options;
        if matches!(options.durability, Durability::Relaxed { .. }) {
            self.flush();
        }
        let mut engine = self.engine.lock();
        if engine.catching_up() {
            // The open's replay, kept in memory: written and made durable
            // as the open would have (not counted as a checkpoint).
            if let Err(e) = engine.checkpoint() {
                tracing::error!(error = %e, "writing the replayed log to the state database failed");
            }
            return;
        }
        if engine.checkpoint_due(&options.checkpoint) {
            match engine.checkpoint() {
                Ok(true) => {
                    self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "checkpoint failed"),
            }
        }
    }

    /// Syncs what was written to the log, without holding the engine during
    /// the sync.
    fn flush(&self) {
        let Some(sync) = self.engine.lock().unsynced() else {
            return;
        };
        if sync.revision <= self.synced_revision.load(Ordering::Acquire) {
            return;
        }
        let synced = sync.run();
        if synced.is_ok() {
            self.synced_revision
                .fetch_max(sync.revision, Ordering::AcqRel);
        }
        self.engine.lock().flushed(synced);
    }
}

impl coord::leases::Holder for Shared {
    fn commit(&self, request: Request) -> Result<Outcome> {
        Shared::commit(self, Arc::new(request))
    }

    fn view(&self) -> Result<Arc<dyn ReadView>> {
        self.check_open()?;
        Ok(Arc::new(LocalView::new(self.visible.get())))
    }

    fn leases(&self) -> &coord::leases::Leases {
        &self.leases
    }

    fn now(&self) -> crate::time::Timestamp {
        self.options.clock.now()
    }
}

impl Leader for Shared {
    fn run_batch(&self, requests: &[&Request]) -> Vec<Result<Outcome>> {
        let (results, checkpoint_due) = {
            let mut engine = self.engine.lock();
            let results = engine.commit_batch(requests);
            (results, engine.checkpoint_due(&self.options.checkpoint))
        };
        if checkpoint_due {
            self.background.want_checkpoint();
        }
        results
    }

    fn syncs(&self) -> bool {
        self.options.durability == Durability::Sync
    }
}

impl Source for Shared {
    fn dir(&self) -> &Path {
        &self.path
    }

    fn store_id(&self) -> &StoreId {
        &self.store_id
    }

    fn fs(&self) -> &dyn Fs {
        self.options.fs.as_ref()
    }

    fn lock_timeout(&self) -> Duration {
        self.options.lock_timeout
    }

    fn consistent_point(
        &self,
        snapshot: bool,
        pin: &mut dyn FnMut(&BackupPoint) -> Result<Option<u64>>,
    ) -> Result<BackupPoint> {
        let mut engine = self.engine.lock();
        let point = engine.backup_point(snapshot)?;
        self.synced_revision
            .fetch_max(point.applied.revision, Ordering::AcqRel);
        let first = pin(&point)?;
        engine.pin_backup(first);
        Ok(point)
    }

    fn unpin(&self) {
        self.engine.lock().unpin_backup();
    }

    fn backed_up(&self, revision: u64) -> Result<()> {
        self.engine.lock().record_backup(revision)
    }

    fn history_from(&self) -> Option<u64> {
        Some(self.engine.lock().history_from())
    }

    fn view_for_base(&self, revision: u64) -> Result<Arc<dyn ReadView>> {
        Shared::view_for_base(self, revision)
    }
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
        let revision = opened.engine.revision();
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            options: options.clone(),
            store_id: opened.store_id,
            visible: opened.engine.visible(),
            engine: Mutex::new(opened.engine),
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
            serving: Arc::default(),
            leases: coord::leases::Leases::default(),
            _lock: opened.lock,
        });
        // The first read of the lease table may meet damage the replay did
        // not read (redb panics on some pages it was not asked to verify):
        // an error naming repair, not a panic in the caller's process.
        crate::db::contain_panic(|| coord::leases::load(shared.as_ref()))
            .map_err(|panicked| {
                crate::db::file::damaged(&path.join(crate::layout::DB_FILE), panicked)
            })
            .and_then(|loaded| loaded)?;
        if shared.engine.lock().read_only().is_none() {
            coord::leases::prune(shared.as_ref());
        }
        let lease_thread = {
            let for_thread = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("statelog-leases".to_owned())
                .spawn(move || coord::leases::run(for_thread.as_ref()))
                .map_err(|e| Error::io("start the lease thread for", &shared.path, e))?
        };
        let thread = {
            let for_thread = Arc::clone(&shared);
            let tick = match options.durability {
                Durability::Relaxed { max_delay } => max_delay,
                _ => options.checkpoint.interval.min(Duration::from_secs(1)),
            };
            std::thread::Builder::new()
                .name("statelog-background".to_owned())
                .spawn(move || {
                    background::run(&for_thread.background, tick, || {
                        for_thread.background_work()
                    })
                })
                .map_err(|e| Error::io("start the background thread for", &shared.path, e))?
        };
        if shared.engine.lock().catching_up() {
            shared.background.want_checkpoint();
        }
        let local = Arc::new(Local {
            shared: Arc::clone(&shared),
            lease_thread: Mutex::new(Some(lease_thread)),
            background: Mutex::new(Some(thread)),
            server: Mutex::new(None),
            closing: AtomicBool::new(false),
        });
        if options.serve {
            let backend: Arc<dyn Backend> = local.clone();
            let served = Served {
                backend: Arc::downgrade(&backend),
                path: path.to_owned(),
                store_id: catalog::hex(&shared.store_id),
                wait: options.response_wait(),
                serving: Arc::clone(&shared.serving),
            };
            match Server::start(served) {
                Ok(server) => *local.server.lock() = Some(server),
                // A store open read-only (its file system takes no writes)
                // may have no room for a socket either: it is still read here.
                Err(e) if local.read_only().is_some() => {
                    tracing::warn!(error = %e, "a read-only store is not served to other processes");
                }
                Err(e) => {
                    let _ = Backend::close(local.as_ref());
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
        Ok(self.shared.visible.get().applied().revision)
    }

    fn get(&self, address: &[u8], read: ReadRecord<'_>) -> Reply<bool> {
        self.shared.check_open()?;
        Ok(self.shared.visible.get().get_with(address, read)?)
    }

    fn snapshot(&self) -> Reply<Arc<dyn ReadView>> {
        self.shared.check_open()?;
        Ok(Arc::new(LocalView::new(self.shared.visible.get())))
    }

    fn commit(&self, request: &Arc<Request>) -> Reply<Outcome> {
        Ok(self.shared.commit(Arc::clone(request))?)
    }

    fn lease_grant(&self, ttl: Duration, holder: &str) -> Reply<u64> {
        Ok(self.shared.lease_grant(ttl, holder)?)
    }

    fn lease_keep_alive(&self, id: u64) -> Reply<Duration> {
        self.shared.check_open()?;
        Ok(self.shared.leases.keep_alive(id)?)
    }

    fn lease_revoke(&self, id: u64) -> Reply<Option<u64>> {
        Ok(self.shared.lease_revoke(id)?)
    }

    fn lease_remaining(&self) -> Reply<Vec<(u64, Duration)>> {
        Ok(self.shared.leases.remaining().into_iter().collect())
    }

    fn lock_wait(
        &self,
        name: &str,
        lease: u64,
        wait: Duration,
        still_wanted: &dyn Fn() -> bool,
    ) -> Reply<u64> {
        self.shared.check_open()?;
        let shared: &Shared = &self.shared;
        Ok(coord::leases::lock_wait(
            shared,
            name,
            lease,
            wait,
            still_wanted,
        )?)
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

    fn watch(&self, watch: &crate::watch::Watch) -> Reply<crate::watch::Events> {
        self.shared.check_open()?;
        let start = self.shared.engine.lock().watch_start(watch.buffer)?;
        let shared = Arc::clone(&self.shared);
        let as_of: crate::engine::watch::AsOf =
            Box::new(move |address, revision| shared.record_as_of(address, revision));
        Ok(Box::new(crate::engine::watch::LocalWatch::new(
            start, watch, as_of,
        )?))
    }

    fn snapshot_at(&self, at: crate::access::past::At) -> Reply<Arc<dyn ReadView>> {
        Ok(self.shared.view_at(at)?)
    }

    fn history(&self, address: &[u8]) -> Reply<Vec<crate::access::past::RecordVersion>> {
        self.shared.check_open()?;
        let tables = self.shared.engine.lock().past_tables()?;
        Ok(crate::engine::past::record_versions(
            tables.versions(address)?,
        ))
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
        // Watches wait for commits, not for their connections: end them
        // before the server joins its connections' threads.
        shared
            .engine
            .lock()
            .end_watches("the holder closed the store");
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
        shared.engine.lock().close()
    }

    fn is_holder(&self) -> bool {
        true
    }

    fn read_only(&self) -> Option<String> {
        self.shared.engine.lock().read_only()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Err(e) = Backend::close(self) {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}
