//! The ways of reaching a store: a [`Backend`] does what a [`Store`] is asked,
//! whatever is behind it, and a [`ReadView`] is one consistent read of it.
//! There are three backends: `store::local::Local`, the embedded engine
//! (this process holds the store), `remote::Remote`, a client of the process
//! that holds it, and (feature `etcd`) `store::etcd::EtcdBackend`, a store
//! kept in an etcd cluster; `store::reach` picks one when a store is opened.
//!
//! This module also holds what backends speak: the requests of the commit
//! path and their outcomes (`request`), the store's counters ([`Stats`]), and
//! a backup run's options and report (`backup`).
//!
//! **Boundary:** nothing here names redb, a log segment or a socket, and this
//! module depends on no way of reaching a store: a backend for another kind
//! of store (etcd) implements the traits with these types and returns
//! [`Error::Unsupported`] for what it cannot do.
//!
//! [`Store`]: crate::Store

mod backup;
pub(crate) mod coord;
pub(crate) mod past;
pub(crate) mod request;
mod stats;

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use self::backup::{BackupOptions, BackupProgress, BackupReport};
use self::request::{BaseLoad, Outcome, Request};
pub use self::stats::Stats;
use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::value::{Entry, Meta, Stored};

/// What a point read hands each record to: its metadata and value bytes
/// (borrowed, so a backend that can lend them does not copy them).
pub(crate) type ReadRecord<'a> = &'a mut dyn FnMut(Meta, &[u8]) -> Result<()>;

/// Records of a range, in address order.
pub(crate) type Entries = Box<dyn Iterator<Item = Result<Entry>> + Send + Sync>;

/// One consistent read of the store at one revision (what a
/// [`Snapshot`](crate::Snapshot) reads from). It stays valid for as long as
/// it is held.
pub(crate) trait ReadView: Send + Sync {
    /// The last commit it includes.
    fn revision(&self) -> u64;
    /// That commit's time (the epoch for a store without commits).
    fn time(&self) -> Timestamp;
    /// One record.
    fn get(&self, address: &[u8]) -> Result<Option<Stored>>;
    /// A record's version, 0 when absent.
    fn version(&self, address: &[u8]) -> Result<u64> {
        Ok(self.get(address)?.map_or(0, |s| s.meta.version))
    }
    /// The records from `start` to `end`, in address order, streamed.
    fn range(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Entries>;
    /// The namespaces holding records, in order.
    fn namespaces(&self) -> Result<Vec<String>>;
    /// How many records lie between `start` and `end`.
    fn count(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<u64> {
        let mut n = 0;
        for entry in self.range(start, end)? {
            entry?;
            n += 1;
        }
        Ok(n)
    }
    /// True once the view can no longer be read (its holder went away): what
    /// was read from it is still consistent, but the rest is gone.
    fn is_lost(&self) -> bool {
        false
    }
}

/// Why a backend did not do what it was asked.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Nothing was done, and doing it again elsewhere is safe: the request
    /// never reached a holder, the holder refused it unexecuted (it is
    /// closing), or it only reads. The caller reaches the store again (a new
    /// holder, or takes it over) and re-sends.
    Resend(String),
    /// The request failed; this is its answer.
    Failed(Error),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        Fault::Failed(e)
    }
}

/// What a backend call returns.
pub(crate) type Reply<T> = std::result::Result<T, Fault>;

/// What every way of reaching a store implements. The facade
/// ([`Store`](crate::Store)) adds what is shared: key and value encoding,
/// `update`'s retries, `transaction`'s re-runs, and reaching the store again
/// after [`Fault::Resend`].
pub(crate) trait Backend: Send + Sync {
    /// The revision readers see now.
    fn revision(&self) -> Reply<u64>;
    /// One record as readers see it now, handed to `read`; false if absent.
    fn get(&self, address: &[u8], read: ReadRecord<'_>) -> Reply<bool>;
    /// A consistent view at the newest revision.
    fn snapshot(&self) -> Reply<Arc<dyn ReadView>>;
    /// Commits a request (checks, then writes) as one atomic unit.
    fn commit(&self, request: &Arc<Request>) -> Reply<Outcome>;
    /// Loads records into an empty store as its first commit.
    fn restore(&self, load: &BaseLoad) -> Reply<u64>;
    /// Makes the state durable now.
    fn checkpoint(&self) -> Reply<()>;
    /// The store's counters (the per-handle ones are the facade's).
    fn stats(&self) -> Reply<Stats>;
    /// An online backup into `dest` (an absolute path).
    fn backup(&self, dest: &Path, options: &BackupOptions) -> Reply<BackupReport>;
    /// A watch (see [`crate::Watch`]).
    fn watch(&self, _watch: &crate::watch::Watch) -> Reply<crate::watch::Events> {
        Err(Fault::Failed(Error::Unsupported {
            what: "watching a store".to_owned(),
            reason: "this kind of store cannot be watched through statelog yet".to_owned(),
        }))
    }
    /// A consistent view of the store as it was at a past revision or time.
    fn snapshot_at(&self, _at: crate::access::past::At) -> Reply<Arc<dyn ReadView>> {
        Err(Fault::Failed(Error::Unsupported {
            what: "reading a store's past".to_owned(),
            reason: "this kind of store keeps no history statelog can read yet".to_owned(),
        }))
    }
    /// Every version of a record the store still holds, oldest first.
    fn history(&self, _address: &[u8]) -> Reply<Vec<crate::access::past::RecordVersion>> {
        Err(Fault::Failed(Error::Unsupported {
            what: "a record's history".to_owned(),
            reason: "this kind of store keeps no history statelog can read yet".to_owned(),
        }))
    }
    /// A new lease of `ttl` taken by `holder` (a description); its id.
    fn lease_grant(&self, ttl: Duration, holder: &str) -> Reply<u64> {
        let _ = (ttl, holder);
        Err(Fault::Failed(unsupported_coordination()))
    }
    /// Keeps a lease alive for its TTL from now; returns the TTL.
    fn lease_keep_alive(&self, id: u64) -> Reply<Duration> {
        let _ = id;
        Err(Fault::Failed(unsupported_coordination()))
    }
    /// Ends a lease now: the revision of its end (`None`: it had ended).
    fn lease_revoke(&self, id: u64) -> Reply<Option<u64>> {
        let _ = id;
        Err(Fault::Failed(unsupported_coordination()))
    }
    /// Takes lock `name` under `lease`, waiting up to `wait` (zero: trying
    /// once) for its holder to release it, keeping `lease` alive meanwhile;
    /// the grant's fencing token. The wait is woken by the release (or the
    /// end of the holder's lease), not by polling. `still_wanted` is asked
    /// now and then while waiting: false ends the wait (the asker went away).
    fn lock_wait(
        &self,
        name: &str,
        lease: u64,
        wait: Duration,
        still_wanted: &dyn Fn() -> bool,
    ) -> Reply<u64> {
        let _ = (name, lease, wait, still_wanted);
        Err(Fault::Failed(unsupported_coordination()))
    }
    /// What is left of each lease's time, as the holder's clock says.
    fn lease_remaining(&self) -> Reply<Vec<(u64, Duration)>> {
        Err(Fault::Failed(unsupported_coordination()))
    }
    /// Releases what this backend holds; later calls fail with
    /// [`Error::Closed`].
    fn close(&self) -> Result<()>;
    /// True when this process holds the store.
    fn is_holder(&self) -> bool;
    /// Why the store is open read-only, if it is (its file system took no
    /// writes when it was opened).
    fn read_only(&self) -> Option<String>;
}

/// The error of a backend without leases and locks.
pub(crate) fn unsupported_coordination() -> Error {
    Error::Unsupported {
        what: "leases and locks".to_owned(),
        reason: "this kind of store does not have them yet".to_owned(),
    }
}

/// How a store's path names a store on etcd: `etcd://HOST:PORT[,...]/PREFIX`.
pub(crate) const ETCD_SCHEME: &str = "etcd://";

/// The address of a store on etcd, when `path` is one.
pub(crate) fn etcd_address(path: &Path) -> Option<&str> {
    path.to_str().filter(|p| p.starts_with(ETCD_SCHEME))
}

/// The error for an `etcd://` address in a build without the feature.
#[cfg(not(feature = "etcd"))]
pub(crate) fn etcd_not_built() -> Error {
    Error::Unsupported {
        what: "a store on etcd".to_owned(),
        reason: "this statelog was built without its `etcd` feature; build it with \
                 `--features etcd` (the command line has it)"
            .to_owned(),
    }
}
