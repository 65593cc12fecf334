//! Where the web view's live events and record histories come from: a small
//! interface ([`Feed`]) between the HTTP layer and the store, so that the
//! server-sent events and the record page do not depend on how the store
//! reports its commits.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::store::Store;
use crate::time::Timestamp;
use crate::value::{RawValue, Versioned};
use crate::watch::{Watch, WatchEvent};

/// What a stream of events covers: a watch's scope.
pub(crate) use crate::watch::Scope;

/// One item of a stream of events.
#[derive(Debug, Clone)]
pub(crate) enum FeedEvent {
    /// One commit's records in scope.
    Change {
        /// The commit's revision.
        revision: u64,
        /// Its commit time.
        time: Timestamp,
        /// The records it wrote or deleted.
        records: Vec<Changed>,
    },
    /// Nothing in scope changed up to and including `revision`.
    Progress {
        /// The revision seen up to.
        revision: u64,
    },
}

/// One record a commit wrote (`value` set) or deleted.
#[derive(Debug, Clone)]
pub(crate) struct Changed {
    pub namespace: String,
    pub key: String,
    pub value: Option<Versioned<RawValue>>,
}

/// One version in a record's history: a commit that wrote it (`value` set)
/// or deleted it.
#[derive(Debug, Clone)]
pub(crate) struct PastVersion {
    pub revision: u64,
    pub time: Timestamp,
    pub value: Option<Versioned<RawValue>>,
}

/// A blocking stream of events. It yields at least every `tick` (a progress
/// event when nothing changed), so that a thread reading it can notice that
/// its reader went away; it ends after an error.
pub(crate) type Events = Box<dyn Iterator<Item = Result<FeedEvent>> + Send>;

/// The source of events and histories.
pub(crate) trait Feed: Send + Sync + 'static {
    /// Events in `scope` from revision `from` (included; `None`: from the
    /// next commit on).
    ///
    /// # Errors
    /// When the stream cannot start: `from` is older than the store still
    /// holds ([`Error::Compacted`](crate::Error::Compacted)), the store is
    /// closed or unreachable.
    fn events(&self, scope: &Scope, from: Option<u64>, tick: Duration) -> Result<Events>;

    /// Every version of a record the store still holds, oldest first.
    ///
    /// # Errors
    /// As reading the store.
    fn history(&self, namespace: &str, key: &str) -> Result<Vec<PastVersion>>;
}

/// The store's own change feed.
pub(crate) struct StoreFeed(pub Arc<Store>);

impl Feed for StoreFeed {
    fn events(&self, scope: &Scope, from: Option<u64>, tick: Duration) -> Result<Events> {
        let mut watch = Watch::new(scope.clone()).progress(tick);
        if let Some(from) = from {
            watch = watch.from(from);
        }
        let watcher = self.0.watch(watch)?;
        Ok(Box::new(watcher.map(|item| {
            item.map(|event| match event {
                WatchEvent::Change(change) => FeedEvent::Change {
                    revision: change.revision,
                    time: change.time,
                    records: change
                        .events
                        .into_iter()
                        .map(|e| Changed {
                            namespace: e.namespace,
                            key: e.key,
                            value: e.value,
                        })
                        .collect(),
                },
                WatchEvent::Progress { revision } => FeedEvent::Progress { revision },
            })
        })))
    }

    fn history(&self, namespace: &str, key: &str) -> Result<Vec<PastVersion>> {
        Ok(self
            .0
            .history(namespace, key)?
            .into_iter()
            .map(|v| PastVersion {
                revision: v.revision,
                time: v.time,
                value: v.value,
            })
            .collect())
    }
}
