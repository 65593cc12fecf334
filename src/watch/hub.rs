//! Live delivery: the engine hands each acknowledged batch's log frames to
//! the hub, which queues them for every subscriber without ever waiting.
//!
//! **Invariant:** publishing never blocks on a subscriber. A subscriber whose
//! buffer is full is cancelled (told the first revision it did not get) and
//! forgotten; the batches it had already queued are still delivered first.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// One acknowledged batch: complete commits `first..=last`, as log frames.
#[derive(Debug)]
pub(crate) struct Batch {
    pub first: u64,
    pub last: u64,
    pub frames: Box<[u8]>,
}

/// Why a subscriber gets nothing more.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    /// The first revision it did not get (when the hub knows it).
    pub resume_from: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Default)]
struct Queue {
    batches: VecDeque<Arc<Batch>>,
    ended: Option<Ended>,
}

/// A subscriber's queue.
#[derive(Debug)]
pub(crate) struct Subscriber {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

/// What waiting on a subscription gave.
pub(crate) enum Next {
    Batch(Arc<Batch>),
    /// Nothing arrived within the wait.
    Idle,
    Ended(Ended),
}

impl Subscriber {
    /// The next batch, waiting up to `wait` (for ever without one).
    pub(crate) fn next(&self, wait: Option<Duration>) -> Next {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut queue = self.queue.lock();
        loop {
            if let Some(batch) = queue.batches.pop_front() {
                return Next::Batch(batch);
            }
            if let Some(ended) = &queue.ended {
                return Next::Ended(ended.clone());
            }
            match deadline {
                None => self.ready.wait(&mut queue),
                Some(deadline) => {
                    if self.ready.wait_until(&mut queue, deadline).timed_out()
                        && queue.batches.is_empty()
                        && queue.ended.is_none()
                    {
                        return Next::Idle;
                    }
                }
            }
        }
    }
}

/// The subscribers of a store this process holds.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    /// How many there are, read without the lock on every commit.
    count: AtomicUsize,
    /// Set once the store stops: later subscriptions end at once.
    closed: Mutex<Option<String>>,
}

impl Hub {
    /// A new subscriber that gets every batch published from now on, at most
    /// `capacity` queued.
    pub(crate) fn subscribe(&self, capacity: usize) -> Arc<Subscriber> {
        let subscriber = Arc::new(Subscriber {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        });
        if let Some(reason) = self.closed.lock().clone() {
            subscriber.queue.lock().ended = Some(Ended {
                resume_from: None,
                reason,
            });
            return subscriber;
        }
        let mut subscribers = self.subscribers.lock();
        subscribers.push(Arc::clone(&subscriber));
        self.count.store(subscribers.len(), Ordering::Release);
        subscriber
    }

    /// Forgets a subscriber (its watcher was dropped).
    pub(crate) fn unsubscribe(&self, subscriber: &Arc<Subscriber>) {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|s| !Arc::ptr_eq(s, subscriber));
        self.count.store(subscribers.len(), Ordering::Release);
    }

    /// Hands an acknowledged batch to every subscriber; never waits for one.
    /// Called in revision order (under the engine's lock).
    pub(crate) fn publish(&self, first: u64, last: u64, frames: &[u8]) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let batch = Arc::new(Batch {
            first,
            last,
            frames: frames.into(),
        });
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|s| {
            let mut queue = s.queue.lock();
            if queue.batches.len() >= s.capacity {
                queue.ended = Some(Ended {
                    resume_from: Some(first),
                    reason: format!(
                        "it fell {} batches behind the store's commits (its buffer)",
                        s.capacity
                    ),
                });
                s.ready.notify_one();
                return false;
            }
            queue.batches.push_back(Arc::clone(&batch));
            s.ready.notify_one();
            true
        });
        self.count.store(subscribers.len(), Ordering::Release);
    }

    /// Ends every subscription (the store is closing, or stopped taking
    /// commits), and every later one.
    pub(crate) fn close(&self, reason: &str) {
        let mut closed = self.closed.lock();
        if closed.is_some() {
            return;
        }
        *closed = Some(reason.to_owned());
        let mut subscribers = self.subscribers.lock();
        for s in subscribers.drain(..) {
            let mut queue = s.queue.lock();
            queue.ended.get_or_insert(Ended {
                resume_from: None,
                reason: reason.to_owned(),
            });
            s.ready.notify_all();
        }
        self.count.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_cancels_with_the_first_revision_missed() {
        let hub = Hub::default();
        let sub = hub.subscribe(2);
        hub.publish(1, 1, b"a");
        hub.publish(2, 3, b"b");
        hub.publish(4, 4, b"c");
        // Nothing more is queued for it once it is cancelled.
        hub.publish(5, 5, b"d");
        let mut got = Vec::new();
        loop {
            match sub.next(Some(Duration::from_millis(10))) {
                Next::Batch(b) => got.push((b.first, b.last)),
                Next::Ended(e) => {
                    assert_eq!(e.resume_from, Some(4));
                    break;
                }
                Next::Idle => panic!("the cancellation was not delivered"),
            }
        }
        assert_eq!(got, vec![(1, 1), (2, 3)]);
        assert_eq!(hub.count.load(Ordering::Acquire), 0);
    }

    #[test]
    fn closing_ends_every_subscription_and_later_ones() {
        let hub = Hub::default();
        let sub = hub.subscribe(8);
        hub.publish(1, 1, b"a");
        hub.close("closed");
        assert!(matches!(sub.next(None), Next::Batch(_)));
        assert!(matches!(sub.next(None), Next::Ended(e) if e.reason == "closed"));
        let late = hub.subscribe(8);
        assert!(matches!(late.next(None), Next::Ended(_)));
    }

    #[test]
    fn an_idle_subscription_times_out() {
        let hub = Hub::default();
        let sub = hub.subscribe(8);
        assert!(matches!(
            sub.next(Some(Duration::from_millis(5))),
            Next::Idle
        ));
    }
}
