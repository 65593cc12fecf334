//! A watch in the process holding the store: subscribe, catch up from the
//! log, then follow the hub.
//!
//! **Invariant:** no revision is delivered twice or skipped. The subscription
//! is made under the engine's lock, at revision H: every batch after H comes
//! through it. The revisions from the requested one up to H are read from
//! the log's segments, a chunk at a time; then live batches follow, and any
//! revision already delivered is dropped.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::decode;
use crate::engine::WatchStart;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::key;
use crate::log::Position;
use crate::log::catalog;
use crate::log::reader;
use crate::log::segment::SEGMENT_HEADER_LEN;
use crate::log::segment::StoreId;
use crate::value::{RawValue, Stored, Versioned};
use crate::watch::hub::{Hub, Next, Subscriber};
use crate::watch::{Change, Scope, Watch, WatchEvent};

/// Commits read from the log per chunk of a catch-up, at most.
const CATCH_UP_CHUNK: usize = 512;

/// Where a catch-up goes on.
struct CatchUp {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    store_id: StoreId,
    /// The revision the subscription started after: the catch-up ends there.
    until: u64,
}

/// Looks up a record (by address) as it was right after a revision.
pub(crate) type AsOf = Box<dyn Fn(&[u8], u64) -> Result<Option<Stored>> + Send>;

/// A watch of a store this process holds.
pub(crate) struct LocalWatch {
    hub: Arc<Hub>,
    subscriber: Arc<Subscriber>,
    scope: Scope,
    /// Where previous values come from, when asked for.
    prev: Option<AsOf>,
    progress: Option<Duration>,
    /// The next revision to deliver.
    next: u64,
    catch_up: Option<CatchUp>,
    ready: VecDeque<Change>,
    /// A progress event to send first (see `Watch::announce`).
    announce: Option<u64>,
    ended: bool,
}

impl LocalWatch {
    /// Starts a watch from its subscription (made under the engine's lock).
    pub(crate) fn new(start: WatchStart, watch: &Watch, as_of: AsOf) -> Result<LocalWatch> {
        let next = match watch.from {
            None => start.head + 1,
            Some(from) => from.max(1),
        };
        if next < start.first && next <= start.head {
            start.hub.unsubscribe(&start.subscriber);
            return Err(Error::Compacted {
                requested: next,
                compacted: Some(start.first),
            });
        }
        Ok(LocalWatch {
            hub: start.hub,
            subscriber: start.subscriber,
            scope: watch.scope.clone(),
            prev: watch.prev.then_some(as_of),
            progress: watch.progress,
            next,
            catch_up: (next <= start.head).then_some(CatchUp {
                fs: start.fs,
                dir: start.dir,
                store_id: start.store_id,
                until: start.head,
            }),
            ready: VecDeque::new(),
            announce: watch.announce.then_some(next - 1),
            ended: false,
        })
    }
}

impl LocalWatch {
    /// Reads the next chunk of the catch-up from the log.
    fn read_log(&mut self) -> Result<()> {
        let Some(catch_up) = &self.catch_up else {
            return Ok(());
        };
        let segments = catalog::list(catch_up.fs.as_ref(), &catch_up.dir, &catch_up.store_id)?;
        let next = self.next;
        // The segment holding `next`: the last one starting at or before it.
        let Some(segment) = segments.iter().rev().find(|s| s.first_revision <= next) else {
            let first = segments.first().map_or(next, |s| s.first_revision);
            return Err(Error::Compacted {
                requested: next,
                compacted: Some(first),
            });
        };
        let start = Position {
            segment: segment.first_revision,
            offset: SEGMENT_HEADER_LEN as u64,
        };
        let until = catch_up.until;
        let scope = &self.scope;
        let mut read = Vec::new();
        let mut last = next - 1;
        reader::read_commits(
            catch_up.fs.as_ref(),
            &segments,
            start,
            segment.first_revision - 1,
            |parts, _end| {
                let Some(first) = parts.first() else {
                    return Ok(true);
                };
                if first.revision < next {
                    return Ok(true);
                }
                if first.revision > until {
                    return Ok(false);
                }
                last = first.revision;
                if let Some(change) = decode::change(parts, scope) {
                    read.push(change);
                }
                Ok(first.revision < until && read.len() < CATCH_UP_CHUNK)
            },
        )?;
        if last < next.min(until) {
            // The log ends before the subscription's start: it cannot have
            // (the subscription began at an acknowledged revision).
            return Err(Error::Compacted {
                requested: next,
                compacted: None,
            });
        }
        self.next = last + 1;
        if last >= until {
            self.catch_up = None;
        }
        for change in read {
            self.push(change)?;
        }
        Ok(())
    }

    /// Queues a change for delivery: in scope, with previous values if asked.
    fn push(&mut self, mut change: Change) -> Result<()> {
        if change.events.is_empty() {
            return Ok(());
        }
        if let Some(as_of) = &self.prev {
            for event in &mut change.events {
                let address = key::encode_unchecked(&event.namespace, &event.key);
                event.prev = as_of(&address, change.revision - 1)?
                    .map(|s| Versioned::new(RawValue::from_trusted(s.value), s.meta));
            }
        }
        self.ready.push_back(change);
        Ok(())
    }

    fn step(&mut self) -> Result<Option<WatchEvent>> {
        if let Some(revision) = self.announce.take() {
            return Ok(Some(WatchEvent::Progress { revision }));
        }
        loop {
            if let Some(change) = self.ready.pop_front() {
                return Ok(Some(WatchEvent::Change(change)));
            }
            if self.catch_up.is_some() {
                self.read_log()?;
                continue;
            }
            match self.subscriber.next(self.progress) {
                Next::Idle => {
                    return Ok(Some(WatchEvent::Progress {
                        revision: self.next - 1,
                    }));
                }
                Next::Ended(ended) => {
                    return Err(Error::WatchCancelled {
                        resume_from: ended.resume_from.unwrap_or(self.next).min(self.next),
                        reason: ended.reason,
                    });
                }
                Next::Batch(batch) => {
                    if batch.last < self.next {
                        continue;
                    }
                    if batch.first > self.next {
                        // The subscription began at `next - 1` or later and
                        // batches come in order: a gap cannot happen.
                        return Err(Error::WatchCancelled {
                            resume_from: self.next,
                            reason: format!(
                                "revisions {} to {} were not delivered",
                                self.next,
                                batch.first - 1
                            ),
                        });
                    }
                    let mut changes = Vec::new();
                    for parts in decode::commits(&batch.frames)? {
                        let Some(first) = parts.first() else { continue };
                        if first.revision < self.next {
                            continue;
                        }
                        if let Some(change) = decode::change(&parts, &self.scope) {
                            changes.push(change);
                        }
                    }
                    self.next = batch.last + 1;
                    for change in changes {
                        self.push(change)?;
                    }
                }
            }
        }
    }
}

impl Iterator for LocalWatch {
    type Item = Result<WatchEvent>;

    fn next(&mut self) -> Option<Result<WatchEvent>> {
        if self.ended {
            return None;
        }
        match self.step() {
            Ok(event) => event.map(Ok),
            Err(e) => {
                self.ended = true;
                Some(Err(e))
            }
        }
    }
}

impl Drop for LocalWatch {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.subscriber);
    }
}
