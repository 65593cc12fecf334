//! The change feed: [`Store::watch`](crate::Store::watch) delivers every
//! acknowledged commit touching a namespace, a key or a key prefix, whole
//! revision by whole revision, from any revision the log still holds.
//!
//! - `hub.rs`: the holder's side of live delivery. After a batch is
//!   acknowledged the engine hands its log frames to the hub, which queues
//!   them for each subscriber in a bounded buffer and never waits: a full
//!   buffer cancels that subscriber, telling it where to resume.
//! - `engine/watch.rs`: a watch in the process holding the store: it
//!   subscribes first, then reads the log from the requested revision up to
//!   the subscription's start (catch-up), then follows the hub; revisions
//!   are deduplicated, so the switch has neither gap nor repeat.
//! - `engine/decode.rs`: log frames into [`Change`]s, and the scope's
//!   filter.
//!
//! Through a holder the same stream runs in the holder and is pushed over a
//! connection of its own (`serve/watch.rs`, `access/remote.rs`).

pub(crate) mod hub;

use std::time::Duration;

use crate::error::Result;
use crate::time::Timestamp;
use crate::value::{RawValue, Versioned};

/// The events of a watch as a backend delivers them.
pub(crate) type Events = Box<dyn Iterator<Item = Result<WatchEvent>> + Send>;

/// Batches a subscriber may have queued before it is cancelled, by default.
pub const DEFAULT_WATCH_BUFFER: usize = 4096;

/// What a watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every record of the store.
    All,
    /// One namespace.
    Namespace(String),
    /// One record.
    Key(String, String),
    /// The keys of a namespace starting with a prefix.
    Prefix(String, String),
}

impl Scope {
    /// Checks the names as every address is checked.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Scope::All => Ok(()),
            Scope::Namespace(ns) => crate::key::encode(ns, "x").map(|_| ()),
            Scope::Key(ns, key) => crate::key::encode(ns, key).map(|_| ()),
            Scope::Prefix(ns, prefix) if prefix.is_empty() => {
                crate::key::encode(ns, "x").map(|_| ())
            }
            Scope::Prefix(ns, prefix) => crate::key::encode(ns, prefix).map(|_| ()),
        }
    }

    /// Whether the record `namespace`/`key` is in scope.
    pub(crate) fn covers(&self, namespace: &str, key: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespace(ns) => ns == namespace,
            Scope::Key(ns, k) => ns == namespace && k == key,
            Scope::Prefix(ns, p) => ns == namespace && key.starts_with(p.as_str()),
        }
    }
}

/// What to watch, from where, and how: built with [`Watch::all`],
/// [`Watch::namespace`], [`Watch::key`] or [`Watch::prefix`], then passed to
/// [`Store::watch`](crate::Store::watch).
///
/// ```
/// use statelog::{Options, Store, Watch, WatchEvent};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("state"), Options::default())?;
/// store.put("jobs", "build", &"queued")?;
/// store.put("jobs", "build", &"done")?;
/// let mut watcher = store.watch(Watch::key("jobs", "build").from(1).prev(true))?;
/// let Some(Ok(WatchEvent::Change(first))) = watcher.next() else { panic!() };
/// assert_eq!(first.revision, 1);
/// let Some(Ok(WatchEvent::Change(second))) = watcher.next() else { panic!() };
/// let event = &second.events[0];
/// assert_eq!(event.value.as_ref().unwrap().value.decode::<String>().unwrap(), "done");
/// assert_eq!(event.prev.as_ref().unwrap().value.decode::<String>().unwrap(), "queued");
/// # Ok::<(), statelog::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub(crate) scope: Scope,
    pub(crate) from: Option<u64>,
    pub(crate) prev: bool,
    pub(crate) buffer: usize,
    pub(crate) progress: Option<Duration>,
    /// The first event is a progress naming the revision before the start
    /// (for the holder's side of a remote watch).
    pub(crate) announce: bool,
}

impl Watch {
    /// A watch of `scope`, from the next commit.
    pub(crate) fn new(scope: Scope) -> Watch {
        Watch {
            scope,
            from: None,
            prev: false,
            buffer: DEFAULT_WATCH_BUFFER,
            progress: None,
            announce: false,
        }
    }

    /// Every record of the store.
    pub fn all() -> Watch {
        Watch::new(Scope::All)
    }

    /// The records of one namespace.
    pub fn namespace(namespace: &str) -> Watch {
        Watch::new(Scope::Namespace(namespace.to_owned()))
    }

    /// One record.
    pub fn key(namespace: &str, key: &str) -> Watch {
        Watch::new(Scope::Key(namespace.to_owned(), key.to_owned()))
    }

    /// The records of a namespace whose keys start with `prefix`.
    pub fn prefix(namespace: &str, prefix: &str) -> Watch {
        Watch::new(Scope::Prefix(namespace.to_owned(), prefix.to_owned()))
    }

    /// Starts with the commit at `revision` (included; 0 and 1 are the
    /// first commit), read back from the log while the log still holds it.
    /// Without it, the watch starts with the next commit.
    #[must_use]
    pub fn from(mut self, revision: u64) -> Watch {
        self.from = Some(revision);
        self
    }

    /// Adds each record's previous version (as it was just before the
    /// event's revision) to its events.
    #[must_use]
    pub fn prev(mut self, prev: bool) -> Watch {
        self.prev = prev;
        self
    }

    /// How many acknowledged batches may wait for this watcher (at least
    /// 1; [`DEFAULT_WATCH_BUFFER`] by default). A watcher that falls further
    /// behind is cancelled ([`Error::WatchCancelled`](crate::Error::WatchCancelled)
    /// with the revision to resume from): commits never wait for watchers.
    #[must_use]
    pub fn buffer(mut self, batches: usize) -> Watch {
        self.buffer = batches.max(1);
        self
    }

    /// Sends [`WatchEvent::Progress`] whenever nothing in scope was
    /// delivered for `every`.
    #[must_use]
    pub fn progress(mut self, every: Duration) -> Watch {
        self.progress = Some(every.max(Duration::from_millis(1)));
        self
    }
}

/// What a [`Watcher`] delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// One commit's changes in scope, whole.
    Change(Change),
    /// Nothing in scope changed up to and including `revision`.
    Progress {
        /// The revision the watcher has seen everything up to.
        revision: u64,
    },
}

/// One commit's changes to the records in a watch's scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The commit's revision.
    pub revision: u64,
    /// Its commit time.
    pub time: Timestamp,
    /// The records it wrote that are in scope, in the order it wrote them.
    pub events: Vec<Event>,
}

/// One record written by a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The record's namespace.
    pub namespace: String,
    /// Its key.
    pub key: String,
    /// The value written with its metadata; `None` when the commit deleted
    /// the record.
    pub value: Option<Versioned<RawValue>>,
    /// The version a delete removed (0 for a put).
    pub deleted_version: u64,
    /// The record as it was just before, when asked for with
    /// [`Watch::prev`] (`None` when it did not exist).
    pub prev: Option<Versioned<RawValue>>,
}

impl Event {
    /// True when the commit deleted the record.
    pub fn is_delete(&self) -> bool {
        self.value.is_none()
    }
}

/// The events of a watch, in revision order: an iterator that blocks until
/// the next one. It ends after an error (the watch was cancelled, the store
/// closed, the holder went away): each says from which revision to watch
/// again so that nothing is missed. Dropping it ends the watch.
pub struct Watcher {
    inner: Events,
    done: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    pub(crate) fn new(inner: Events) -> Watcher {
        Watcher { inner, done: false }
    }
}

impl Iterator for Watcher {
    type Item = Result<WatchEvent>;

    fn next(&mut self) -> Option<Result<WatchEvent>> {
        if self.done {
            return None;
        }
        let item = self.inner.next();
        if matches!(item, None | Some(Err(_))) {
            self.done = true;
        }
        item
    }
}
