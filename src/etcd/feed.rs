//! The change feed and the past of a store on etcd: statelog's watch as an
//! etcd watch, a record's history, and the heads of past snapshots.
//!
//! - **Watch**: one etcd watch (with previous key-values) of everything under
//!   the prefix from the first revision asked for. Its events are grouped by
//!   revision into [`Change`]s, filtered by the scope; the store's `last` key,
//!   which every commit writes, gives each commit's time. A revision with
//!   nothing in scope, or `progress` without events, gives a
//!   [`WatchEvent::Progress`] naming the last revision seen (etcd sends a
//!   revision's events together and in order).
//! - **History**: the same watch from the store's creation, read until the
//!   store's current revision arrives: every version of the record etcd still
//!   holds, deletions included.
//! - **Snapshots of the past**: reads at an etcd revision; the `last` key as
//!   it was then names the store's revision and time. A time is found by
//!   bisecting the revisions on `last`'s time (commit times from the writers'
//!   clocks: not monotonic across machines). Past etcd's compaction revision
//!   every read fails with [`Error::Compacted`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ops::{EtcdStore, Head, to_versioned};
use super::watch::Watch as EtcdWatch;
use super::{proto, record};
use crate::access::past::{At, RecordVersion};
use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::watch::{Change, Event, Scope, Watch, WatchEvent};

/// The events of a statelog watch of a store on etcd.
pub(crate) struct Feed {
    watch: EtcdWatch,
    store: EtcdStore,
    scope: Scope,
    prev: bool,
    progress: Option<Duration>,
    /// Every revision up to this one has been delivered.
    seen: u64,
    last_progress: Instant,
    ready: VecDeque<WatchEvent>,
}

impl EtcdStore {
    /// A statelog watch (see the module documentation).
    ///
    /// # Errors
    /// The connection errors (reading where the store stands).
    pub(crate) fn feed(&self, watch: &Watch) -> Result<Feed> {
        let start = match watch.from {
            Some(from) => from.max(1),
            None => self.head()?.read_at + 1,
        };
        let (key, end) = self.layout().everything();
        Ok(Feed {
            watch: self.client().watch_with(key, end, start, true),
            store: self.clone(),
            scope: watch.scope.clone(),
            prev: watch.prev,
            progress: watch.progress,
            seen: start - 1,
            last_progress: Instant::now(),
            ready: VecDeque::new(),
        })
    }

    /// Every version of the record at `address` that etcd still holds,
    /// oldest first.
    ///
    /// # Errors
    /// [`Error::Compacted`] when etcd compacted past the store's creation and
    /// past everything since; the connection errors.
    pub(crate) fn history(&self, address: &[u8]) -> Result<Vec<RecordVersion>> {
        let head = self.head()?;
        if head.revision == 0 {
            return Ok(Vec::new());
        }
        let (namespace, key) = crate::key::decode(address).unwrap_or(("", ""));
        let scope = Scope::Key(namespace.to_owned(), key.to_owned());
        let mut from = self.identity().unwrap_or(1).max(1);
        let mut retried = false;
        loop {
            // Progress tells when the store's current revision went by
            // with nothing for this record.
            let watch = Watch::new(scope.clone())
                .from(from)
                .progress(Duration::from_millis(50));
            let mut feed = self.feed(&watch)?;
            let mut out = Vec::new();
            let result = loop {
                match feed.next() {
                    Some(Ok(WatchEvent::Change(change))) => {
                        let done = change.revision >= head.revision;
                        for event in change.events {
                            out.push(RecordVersion {
                                revision: change.revision,
                                time: change.time,
                                value: event.value,
                            });
                        }
                        if done {
                            break Ok(());
                        }
                    }
                    Some(Ok(WatchEvent::Progress { revision })) => {
                        if revision >= head.revision {
                            break Ok(());
                        }
                    }
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                }
            };
            match result {
                // The history before the compaction is gone: what is left.
                Err(Error::Compacted {
                    compacted: Some(compacted),
                    ..
                }) if !retried && compacted > from => {
                    retried = true;
                    from = compacted;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(out),
            }
        }
    }

    /// Where the store stood at a point in the past.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a revision after the store's current one;
    /// [`Error::Compacted`]; the connection errors.
    pub(crate) fn head_at(&self, at: At) -> Result<Head> {
        let now = self.head()?;
        match at {
            At::Revision(revision) => {
                if revision > now.revision {
                    return Err(Error::InvalidOption {
                        name: "revision",
                        reason: format!(
                            "revision {revision} is after the store's current revision {}",
                            now.revision
                        ),
                    });
                }
                self.head_read_at(revision.max(self.identity().unwrap_or(1)))
            }
            At::Time(time) => {
                // The last revision whose `last` is older than `time`.
                let mut low = self.identity().unwrap_or(1).max(1);
                let mut high = now.read_at;
                while low < high {
                    let middle = low + (high - low).div_ceil(2);
                    let head = self.head_read_at(middle)?;
                    if head.revision == 0 || head.time < time {
                        low = middle;
                    } else {
                        high = middle - 1;
                    }
                }
                self.head_read_at(low)
            }
        }
    }

    /// The store as it was at etcd revision `revision`.
    fn head_read_at(&self, revision: u64) -> Result<Head> {
        let response = self.client().range(proto::RangeRequest {
            key: self.layout().meta("last"),
            revision: super::client::to_i64(revision),
            ..Default::default()
        })?;
        Ok(match response.kvs.first() {
            None => Head {
                revision: 0,
                time: Timestamp::EPOCH,
                read_at: revision,
            },
            Some(kv) => Head {
                revision: u64::try_from(kv.mod_revision).unwrap_or(0),
                time: record::decode(&kv.value).map_or(Timestamp::EPOCH, |(t, _)| t),
                read_at: revision,
            },
        })
    }

    /// The first revision of the store whose state etcd still holds: the one
    /// after its creation, or etcd's compaction revision if that is later.
    ///
    /// # Errors
    /// The connection errors.
    pub(crate) fn first_revision(&self) -> Result<u64> {
        let created = self.identity().unwrap_or(0);
        let readable = |revision: u64| match self.head_read_at(revision) {
            Ok(_) => Ok(true),
            Err(Error::Compacted { .. }) => Ok(false),
            Err(e) => Err(e),
        };
        if readable(created.max(1))? {
            return Ok(created + 1);
        }
        // etcd's answer does not name its compaction revision: find the
        // first readable one (the latest always is).
        let (mut low, mut high) = (created.max(1), self.head()?.read_at);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if readable(middle)? {
                high = middle;
            } else {
                low = middle;
            }
        }
        Ok(high.max(created + 1))
    }
}

impl Feed {
    /// Turns one batch of etcd events into changes (and progress).
    fn absorb(&mut self, events: &[proto::Event]) -> Result<()> {
        let mut at = 0;
        while at < events.len() {
            let revision = mod_revision(&events[at]);
            let mut end = at;
            while end < events.len() && mod_revision(&events[end]) == revision {
                end += 1;
            }
            self.absorb_revision(revision, &events[at..end])?;
            at = end;
        }
        Ok(())
    }

    fn absorb_revision(&mut self, revision: u64, events: &[proto::Event]) -> Result<()> {
        let layout = self.store.layout();
        let last = layout.meta("last");
        let time = events
            .iter()
            .filter_map(|e| e.kv.as_ref())
            .find(|kv| kv.key == last)
            .and_then(|kv| record::decode(&kv.value).map(|(t, _)| t))
            .unwrap_or_else(|| self.store.clock().now());
        let mut changes = Vec::new();
        for event in events {
            let Some(kv) = event.kv.as_ref() else {
                continue;
            };
            let Some((namespace, key)) = layout.decode_record(&kv.key) else {
                continue;
            };
            if !self.scope.covers(namespace, key) {
                continue;
            }
            let previous = match &event.prev_kv {
                Some(prev) if prev.version > 0 => Some(to_versioned(namespace, key, prev)?),
                _ => None,
            };
            let deleted = event.r#type == proto::EventType::Delete as i32;
            changes.push(Event {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                value: if deleted {
                    None
                } else {
                    Some(to_versioned(namespace, key, kv)?)
                },
                deleted_version: if deleted {
                    previous.as_ref().map_or(0, |p| p.version)
                } else {
                    0
                },
                prev: if self.prev { previous } else { None },
            });
        }
        self.seen = self.seen.max(revision);
        if !changes.is_empty() {
            self.ready.push_back(WatchEvent::Change(Change {
                revision,
                time,
                events: changes,
            }));
        } else if self
            .progress
            .is_some_and(|every| self.last_progress.elapsed() >= every)
        {
            self.last_progress = Instant::now();
            self.ready.push_back(WatchEvent::Progress { revision });
        }
        Ok(())
    }
}

fn mod_revision(event: &proto::Event) -> u64 {
    event
        .kv
        .as_ref()
        .map_or(0, |kv| u64::try_from(kv.mod_revision).unwrap_or(0))
}

impl Iterator for Feed {
    type Item = Result<WatchEvent>;

    fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            let batch = match self.progress {
                Some(every) => match self.watch.wait(every) {
                    Ok(Some(batch)) => batch,
                    Ok(None) => {
                        self.last_progress = Instant::now();
                        return Some(Ok(WatchEvent::Progress {
                            revision: self.seen,
                        }));
                    }
                    Err(()) => return None,
                },
                None => self.watch.next()?,
            };
            match batch {
                Ok(batch) => {
                    if let Err(e) = self.absorb(&batch.events) {
                        return Some(Err(e));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
