//! A store reached through the process that holds it: requests go over the
//! store's socket (`serve/`), one at a time per connection, from a small pool
//! of connections (one per thread using it at once; a snapshot keeps its
//! own until dropped).
//!
//! Failures, and what may be retried (by the facade, after reaching the store
//! again):
//! - the request could not be sent (no connection, `EPIPE`, a reset before
//!   its last byte left), or the holder answered "not executed": it never ran,
//!   so it is sent again to whoever holds the store next;
//! - a read (or anything but a commit) whose answer never came: sent again;
//! - a commit whose answer never came (the holder went away after receiving
//!   it): [`Error::OutcomeUnknown`], never retried;
//! - no answer within the wait, counted from the last thing the holder sent:
//!   [`Error::Busy`] for a read, [`Error::OutcomeUnknown`] for a commit, both
//!   naming the holder.

use std::collections::VecDeque;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::access::request::{BaseLoad, Outcome, Request};
use crate::access::{
    Backend, BackupOptions, BackupReport, Entries, Fault, ReadRecord, ReadView, Reply, Stats,
};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::layout::{LOCK_FILE, identity};
use crate::options::Options;
use crate::serve::channel::{Channel, RecvError, SendError, Wait};
use crate::serve::socket;
use crate::time::Timestamp;
use crate::value::{Entry, Stored};
use crate::wire::message::{self as m, Response};
use crate::wire::{convert, error as wire_error};

/// Idle connections a handle keeps for later requests.
const MAX_IDLE: usize = 64;
/// Entries asked for per page of a range.
const PAGE: u32 = 512;

/// The connections of one handle to the holder, and what it knows about it.
struct Link {
    /// The store's path as this process names it.
    path: PathBuf,
    store_id: String,
    /// The holder's pid (0 until known).
    holder: AtomicU32,
    /// Why the holder has the store read-only, as it said at the last
    /// handshake.
    read_only: Mutex<Option<String>>,
    /// How long to wait for the holder (silence).
    wait: Duration,
    idle: Mutex<Vec<Channel>>,
    closed: AtomicBool,
}

/// Why a connection could not be made.
enum Dial {
    /// Nobody serves the store (now): no socket, refused, or closed during
    /// the handshake.
    Nobody,
    /// A definite failure: a refusal, another store, an unanswered handshake.
    Failed(Error),
}

impl Link {
    fn holder(&self) -> Option<u32> {
        match self.holder.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Connects and shakes hands, waiting at most `limit` for the holder's
    /// answer.
    fn dial(&self, limit: Duration) -> std::result::Result<Channel, Dial> {
        let started = Instant::now();
        let stream = match socket::connect(&self.path) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(Dial::Nobody);
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(Dial::Failed(Error::Refused {
                    path: self.path.clone(),
                    pid: lock_holder(&self.path),
                    reason: format!(
                        "this user may not connect to its socket {} ({e}); only the store \
                         directory's owner (and the directory's group, when it grants read and \
                         write) may use the store",
                        socket::socket_path(&self.path).display()
                    ),
                }));
            }
            Err(e) => {
                return Err(Dial::Failed(Error::io(
                    "connect to the store's holder through",
                    socket::socket_path(&self.path),
                    e,
                )));
            }
        };
        let configured = stream
            .set_read_timeout(Some(limit))
            .and_then(|()| stream.set_write_timeout(Some(self.wait)));
        if let Err(e) = configured {
            return Err(Dial::Failed(Error::io(
                "set up the connection to the holder through",
                socket::socket_path(&self.path),
                e,
            )));
        }
        let mut channel = Channel::new(stream, None);
        // A holder that refuses may answer and close before the hello is
        // written: read its answer even when the hello did not go out.
        let _ = channel.send(&m::ClientHello {
            magic: m::MAGIC.to_owned(),
            version: m::PROTOCOL_VERSION,
            store_id: self.store_id.clone(),
            pid: std::process::id(),
            purpose: m::Purpose::Requests,
        });
        match channel.receive::<m::ServerHello>() {
            Ok(m::ServerHello::Welcome {
                store_id,
                pid,
                read_only,
                ..
            }) => {
                if store_id != self.store_id {
                    return Err(Dial::Failed(Error::Refused {
                        path: self.path.clone(),
                        pid: Some(pid),
                        reason: format!(
                            "it holds the store {store_id}, not {}: the directory's store was \
                             replaced; open it again",
                            self.store_id
                        ),
                    }));
                }
                self.holder.store(pid, Ordering::Relaxed);
                *self.read_only.lock() = read_only;
                if let Err(e) = channel.stream().set_read_timeout(Some(self.wait)) {
                    return Err(Dial::Failed(Error::io(
                        "set up the connection to the holder through",
                        socket::socket_path(&self.path),
                        e,
                    )));
                }
                Ok(channel)
            }
            Ok(m::ServerHello::Refused { pid, reason, .. }) => Err(Dial::Failed(Error::Refused {
                path: self.path.clone(),
                pid: Some(pid),
                reason,
            })),
            Err(RecvError::Timeout) => Err(Dial::Failed(Error::Busy {
                path: self.path.clone(),
                pid: self.holder().or_else(|| lock_holder(&self.path)),
                waited: started.elapsed(),
            })),
            Err(RecvError::Malformed(why)) => Err(Dial::Failed(Error::Refused {
                path: self.path.clone(),
                pid: lock_holder(&self.path),
                reason: format!("its socket does not answer in statelog's protocol ({why})"),
            })),
            Err(_) => Err(Dial::Nobody),
        }
    }

    /// An idle connection, or a new one.
    fn take(&self) -> Reply<Channel> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Fault::Failed(Error::Closed));
        }
        if let Some(channel) = self.idle.lock().pop() {
            return Ok(channel);
        }
        match self.dial(self.wait) {
            Ok(channel) => Ok(channel),
            Err(Dial::Nobody) => Err(Fault::Resend(
                "the store's holder no longer serves it".to_owned(),
            )),
            Err(Dial::Failed(e)) => Err(Fault::Failed(e)),
        }
    }

    fn give_back(&self, channel: Channel) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(channel);
        }
    }

    /// Sends `request` and reads its final answer (progress goes to
    /// `progress`). `commit`: whether the request changes the store, which
    /// decides what a missing answer means.
    fn exchange(
        &self,
        request: &m::Request,
        commit: bool,
        progress: Option<&dyn Fn(m::Progress)>,
    ) -> Reply<m::Reply> {
        let mut channel = self.take()?;
        if let Err(e) = channel.send(request) {
            return Err(self.unsent(e, channel));
        }
        let wait = if commit { Wait::Commit } else { Wait::Answer };
        match receive_final(&mut channel, progress, wait) {
            Ok(Final::Reply(reply)) => {
                if commit {
                    channel.commit_answered(convert::alone(&reply));
                }
                self.give_back(channel);
                Ok(reply)
            }
            Ok(Final::Failed(e)) => {
                self.give_back(channel);
                Err(Fault::Failed(wire_error::from_wire(e, &self.path)))
            }
            Ok(Final::NotExecuted(reason)) => Err(Fault::Resend(reason)),
            Err(e) => Err(self.unanswered(e, commit)),
        }
    }

    /// What a request that could not be sent means: too large, an error (the
    /// connection is fine, and kept); else it did not arrive whole, so it was
    /// not executed and can go again.
    fn unsent(&self, e: SendError, channel: Channel) -> Fault {
        match e {
            SendError::TooLarge(why) => {
                self.give_back(channel);
                let size = match why {
                    crate::wire::frame::FrameError::MessageTooLarge(size) => size,
                    _ => 0,
                };
                Fault::Failed(Error::TooLarge {
                    what: "a request to the store's holder".to_owned(),
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    limit: crate::wire::frame::MAX_MESSAGE,
                })
            }
            SendError::Io(e) => Fault::Resend(format!("the request could not be sent ({e})")),
        }
    }

    /// What a request whose answer did not come means.
    fn unanswered(&self, e: RecvError, commit: bool) -> Fault {
        let pid = self.holder();
        match (e, commit) {
            (RecvError::Timeout, false) => Fault::Failed(Error::Busy {
                path: self.path.clone(),
                pid,
                waited: self.wait,
            }),
            (RecvError::Timeout, true) => Fault::Failed(Error::OutcomeUnknown {
                path: self.path.clone(),
                pid,
                reason: unanswered_by(
                    pid,
                    &format!("did not answer within {:.1} s", self.wait.as_secs_f64()),
                ),
            }),
            (RecvError::Malformed(why), false) => Fault::Failed(Error::Disconnected {
                path: self.path.clone(),
                pid,
                reason: format!("its answer cannot be read ({why})"),
            }),
            (RecvError::Malformed(why), true) => Fault::Failed(Error::OutcomeUnknown {
                path: self.path.clone(),
                pid,
                reason: unanswered_by(pid, &format!("sent an answer that cannot be read ({why})")),
            }),
            (e, false) => Fault::Resend(format!("the holder went away ({e})")),
            (e, true) => Fault::Failed(Error::OutcomeUnknown {
                path: self.path.clone(),
                pid,
                reason: unanswered_by(pid, &format!("went away ({e})")),
            }),
        }
    }
}

/// The reason of an [`Error::OutcomeUnknown`]: who holds the store and what
/// it did instead of answering.
fn unanswered_by(pid: Option<u32>, what: &str) -> String {
    format!(
        "{} holds the store and {what} before answering",
        crate::error::describe_holder(pid)
    )
}

/// The final answer to a request.
enum Final {
    Reply(m::Reply),
    Failed(crate::wire::WireError),
    NotExecuted(String),
}

fn receive_final(
    channel: &mut Channel,
    progress: Option<&dyn Fn(m::Progress)>,
    wait: Wait,
) -> std::result::Result<Final, RecvError> {
    loop {
        match channel.receive_for::<Response>(wait)? {
            Response::Progress(p) => {
                if let Some(f) = progress {
                    f(p);
                }
            }
            Response::Reply(reply) => return Ok(Final::Reply(reply)),
            Response::Failed(e) => return Ok(Final::Failed(e)),
            Response::NotExecuted { reason } => return Ok(Final::NotExecuted(reason)),
            // Only a watch's connection carries these, after its answer.
            Response::Watch(_) => {
                return Err(RecvError::Malformed(
                    "a watch's event where an answer was due".to_owned(),
                ));
            }
        }
    }
}

/// The pid in the store's lock file, if it can be read.
fn lock_holder(store: &Path) -> Option<u32> {
    std::fs::read_to_string(store.join(LOCK_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// A store reached through its holder.
pub(crate) struct Remote {
    link: Arc<Link>,
}

/// Connects to the process holding the store at `dir`; `None` when nobody
/// serves it (yet): the caller waits and tries again. `started` is when the
/// open began: the holder's answer is awaited at most until
/// [`Options::lock_timeout`] (never less than a second).
pub(crate) fn connect(
    fs: &dyn Fs,
    dir: &Path,
    options: &Options,
    started: Instant,
) -> Result<Option<Remote>> {
    let store_id = match identity::read(fs, dir) {
        Ok(id) => crate::log::catalog::hex(&id),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Error::Refused {
                path: dir.to_owned(),
                pid: lock_holder(dir),
                reason: format!(
                    "this user cannot read the store's identity file ({source}); only the \
                     store directory's owner may use the store"
                ),
            });
        }
        // Not a complete store yet (its holder is creating it).
        Err(_) => return Ok(None),
    };
    let link = Link {
        path: dir.to_owned(),
        store_id,
        holder: AtomicU32::new(0),
        read_only: Mutex::new(None),
        wait: options.response_wait(),
        idle: Mutex::new(Vec::new()),
        closed: AtomicBool::new(false),
    };
    let left = options.lock_timeout.saturating_sub(started.elapsed());
    match link.dial(left.max(Duration::from_secs(1))) {
        Ok(channel) => {
            link.idle.lock().push(channel);
            Ok(Some(Remote {
                link: Arc::new(link),
            }))
        }
        Err(Dial::Nobody) => Ok(None),
        Err(Dial::Failed(e)) => Err(e),
    }
}

impl Remote {
    /// The store's id.
    pub(crate) fn store_id(&self) -> &str {
        &self.link.store_id
    }

    fn unexpected(&self, what: &str, reply: &m::Reply) -> Fault {
        Fault::Failed(Error::Disconnected {
            path: self.link.path.clone(),
            pid: self.link.holder(),
            reason: format!("the holder answered {what} with {reply:?}"),
        })
    }
}

impl Backend for Remote {
    fn revision(&self) -> Reply<u64> {
        match self.link.exchange(&m::Request::Revision, false, None)? {
            m::Reply::Revision(revision) => Ok(revision),
            other => Err(self.unexpected("a revision request", &other)),
        }
    }

    fn get(&self, address: &[u8], read: ReadRecord<'_>) -> Reply<bool> {
        let request = m::Request::Get {
            address: serde_bytes::ByteBuf::from(address.to_vec()),
        };
        match self.link.exchange(&request, false, None)? {
            m::Reply::Record(Some(record)) => {
                let stored = convert::stored_from_wire(record);
                read(stored.meta, &stored.value)?;
                Ok(true)
            }
            m::Reply::Record(None) => Ok(false),
            other => Err(self.unexpected("a read", &other)),
        }
    }

    fn snapshot(&self) -> Reply<Arc<dyn ReadView>> {
        self.pin(&m::Request::Pin)
    }

    fn snapshot_at(&self, at: crate::access::past::At) -> Reply<Arc<dyn ReadView>> {
        let request = match at {
            crate::access::past::At::Revision(revision) => m::Request::PinAt {
                revision: Some(revision),
                time: None,
            },
            crate::access::past::At::Time(time) => m::Request::PinAt {
                revision: None,
                time: Some(time.as_micros()),
            },
        };
        self.pin(&request)
    }

    fn history(&self, address: &[u8]) -> Reply<Vec<crate::access::past::RecordVersion>> {
        let request = m::Request::History {
            address: serde_bytes::ByteBuf::from(address.to_vec()),
        };
        match self.link.exchange(&request, false, None)? {
            m::Reply::History(versions) => convert::versions_from_wire(versions).map_err(|why| {
                Fault::Failed(Error::Disconnected {
                    path: self.link.path.clone(),
                    pid: self.link.holder(),
                    reason: format!("the holder sent a history that cannot be read ({why})"),
                })
            }),
            other => Err(self.unexpected("a history request", &other)),
        }
    }

    fn watch(&self, watch: &crate::watch::Watch) -> Reply<crate::watch::Events> {
        let link = &self.link;
        // A connection of its own: the holder pushes the events on it.
        if link.closed.load(Ordering::Acquire) {
            return Err(Fault::Failed(Error::Closed));
        }
        let mut channel = match link.dial(link.wait) {
            Ok(channel) => channel,
            Err(Dial::Nobody) => {
                return Err(Fault::Resend(
                    "the store's holder no longer serves it".to_owned(),
                ));
            }
            Err(Dial::Failed(e)) => return Err(Fault::Failed(e)),
        };
        let request = m::Request::Watch {
            scope: convert::scope_to_wire(&watch.scope),
            from: watch.from,
            prev: watch.prev,
            buffer: watch.buffer as u64,
        };
        if let Err(e) = channel.send(&request) {
            return Err(link.unsent(e, channel));
        }
        match receive_final(&mut channel, None, Wait::Answer) {
            Ok(Final::Reply(m::Reply::Watching)) => {}
            Ok(Final::Reply(other)) => return Err(self.unexpected("a watch request", &other)),
            Ok(Final::Failed(e)) => {
                return Err(Fault::Failed(wire_error::from_wire(e, &link.path)));
            }
            Ok(Final::NotExecuted(reason)) => return Err(Fault::Resend(reason)),
            Err(e) => return Err(link.unanswered(e, false)),
        }
        let mut remote = RemoteWatch {
            link: Arc::clone(link),
            channel: Some(channel),
            // Until the holder's first message says where the watch starts.
            next: watch.from.map_or(0, |f| f.max(1)),
            progress: watch.progress,
            last_yield: Instant::now(),
            pending: None,
        };
        if watch.from.is_none() {
            // A watch of what comes next learns where that is before it is
            // handed out (the holder's first message), so that a holder gone
            // at any later point still leaves it knowing where to resume.
            // Without that message the watch never started: like any
            // unanswered request, it goes again (to whoever holds the store).
            let first = match remote.channel.as_mut().map(|c| c.receive::<Response>()) {
                Some(Ok(Response::Watch(frame))) => frame,
                Some(Ok(Response::Failed(e))) => {
                    return Err(Fault::Failed(wire_error::from_wire(e, &link.path)));
                }
                Some(Ok(other)) => {
                    return Err(Fault::Failed(Error::Disconnected {
                        path: link.path.clone(),
                        pid: link.holder(),
                        reason: format!("the holder started a watch with {other:?}"),
                    }));
                }
                Some(Err(e)) => return Err(link.unanswered(e, false)),
                None => return Err(Fault::Resend("the watch's connection closed".to_owned())),
            };
            remote.pending = Some(first);
        }
        Ok(Box::new(remote))
    }

    fn commit(&self, request: &Arc<Request>) -> Reply<Outcome> {
        let message = if crate::coord::needs_expansion(request) {
            convert::commit_with_to_wire(request)
        } else {
            convert::commit_to_wire(request)
        };
        match self.link.exchange(&message, true, None)? {
            m::Reply::Committed {
                revision, writes, ..
            } => Ok(convert::outcome_from_wire(revision, writes)),
            m::Reply::CommittedWith {
                revision,
                writes,
                patched,
                replayed,
                ..
            } => Ok(convert::outcome_with_from_wire(
                revision, writes, patched, replayed,
            )),
            other => Err(self.unexpected("a commit", &other)),
        }
    }

    fn lease_grant(&self, ttl: Duration, holder: &str) -> Reply<u64> {
        let request = m::Request::LeaseGrant {
            ttl_micros: u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX),
            holder: holder.to_owned(),
        };
        match self.link.exchange(&request, true, None)? {
            m::Reply::Lease(id) => Ok(id),
            other => Err(self.unexpected("a lease request", &other)),
        }
    }

    fn lease_keep_alive(&self, id: u64) -> Reply<Duration> {
        // Keeping alive changes nothing durable: safe to send again.
        match self
            .link
            .exchange(&m::Request::LeaseKeepAlive { lease: id }, false, None)?
        {
            m::Reply::Alive(micros) => Ok(Duration::from_micros(micros)),
            other => Err(self.unexpected("a keep-alive", &other)),
        }
    }

    fn lease_revoke(&self, id: u64) -> Reply<Option<u64>> {
        match self
            .link
            .exchange(&m::Request::LeaseRevoke { lease: id }, true, None)?
        {
            m::Reply::LeaseEnded(revision) => Ok(revision),
            other => Err(self.unexpected("ending a lease", &other)),
        }
    }

    fn lease_remaining(&self) -> Reply<Vec<(u64, Duration)>> {
        match self
            .link
            .exchange(&m::Request::LeaseRemaining, false, None)?
        {
            m::Reply::Remaining(list) => Ok(list
                .into_iter()
                .map(|r| (r.lease, Duration::from_micros(r.micros)))
                .collect()),
            other => Err(self.unexpected("a lease listing", &other)),
        }
    }

    fn lock_wait(
        &self,
        name: &str,
        lease: u64,
        wait: Duration,
        _still_wanted: &dyn Fn() -> bool,
    ) -> Reply<u64> {
        let request = m::Request::LockWait {
            name: name.to_owned(),
            lease,
            wait_micros: u64::try_from(wait.as_micros()).unwrap_or(u64::MAX),
        };
        // The holder's progress messages while it waits keep the answer's
        // timeout from running out.
        match self.link.exchange(&request, true, Some(&|_| {}))? {
            m::Reply::Locked(token) => Ok(token),
            other => Err(self.unexpected("a lock request", &other)),
        }
    }

    fn restore(&self, load: &BaseLoad) -> Reply<u64> {
        match self
            .link
            .exchange(&convert::restore_to_wire(load), true, None)?
        {
            m::Reply::Restored(revision) => Ok(revision),
            other => Err(self.unexpected("a restore", &other)),
        }
    }

    fn checkpoint(&self) -> Reply<()> {
        match self.link.exchange(&m::Request::Checkpoint, false, None)? {
            m::Reply::Done => Ok(()),
            other => Err(self.unexpected("a checkpoint", &other)),
        }
    }

    fn stats(&self) -> Reply<Stats> {
        match self.link.exchange(&m::Request::Stats, false, None)? {
            m::Reply::Stats(stats) => Ok(convert::stats_from_wire(stats)),
            other => Err(self.unexpected("a stats request", &other)),
        }
    }

    fn backup(&self, dest: &Path, options: &BackupOptions) -> Reply<BackupReport> {
        // The holder writes the backup: it gets the path as this process means it.
        let absolute = std::path::absolute(dest)
            .map_err(|e| Error::io("resolve the backup directory", dest, e))?;
        let progress = |p: m::Progress| {
            if let Some(callback) = &options.progress
                && let Some(p) = convert::progress_from_wire(p)
            {
                callback(&p);
            }
        };
        match self
            .link
            .exchange(&convert::backup_to_wire(&absolute), false, Some(&progress))?
        {
            m::Reply::Backup(report) => {
                let mut report = convert::backup_report_from_wire(report);
                report.destination = dest.to_owned();
                Ok(report)
            }
            other => Err(self.unexpected("a backup", &other)),
        }
    }

    fn close(&self) -> Result<()> {
        self.link.closed.store(true, Ordering::Release);
        self.link.idle.lock().clear();
        Ok(())
    }

    fn is_holder(&self) -> bool {
        false
    }

    fn read_only(&self) -> Option<String> {
        self.link.read_only.lock().clone()
    }
}

/// A watch running in the holder, its events read from a connection of its
/// own.
struct RemoteWatch {
    link: Arc<Link>,
    channel: Option<Channel>,
    /// The next revision expected (0 until the first event says).
    next: u64,
    /// How often the caller wants progress.
    progress: Option<Duration>,
    last_yield: Instant,
    /// The first message, read before the watch was handed out.
    pending: Option<m::WatchFrame>,
}

impl RemoteWatch {
    fn ended(&mut self, why: String) -> Option<Result<crate::watch::WatchEvent>> {
        self.channel = None;
        Some(Err(Error::WatchCancelled {
            resume_from: self.next.max(1),
            reason: format!(
                "{} {why}",
                crate::error::describe_holder(self.link.holder())
            ),
        }))
    }
}

impl Iterator for RemoteWatch {
    type Item = Result<crate::watch::WatchEvent>;

    fn next(&mut self) -> Option<Result<crate::watch::WatchEvent>> {
        use crate::watch::WatchEvent;
        loop {
            let channel = self.channel.as_mut()?;
            let received = match self.pending.take() {
                Some(frame) => Ok(Response::Watch(frame)),
                None => channel.receive::<Response>(),
            };
            let frame = match received {
                Ok(Response::Watch(frame)) => frame,
                Ok(Response::Failed(e)) => {
                    self.channel = None;
                    return Some(Err(wire_error::from_wire(e, &self.link.path)));
                }
                Ok(other) => {
                    return self.ended(format!("sent {other:?} on a watch"));
                }
                Err(RecvError::Timeout) => {
                    return self.ended(format!(
                        "sent nothing for {:.1} s",
                        self.link.wait.as_secs_f64()
                    ));
                }
                Err(e) => return self.ended(format!("went away ({e})")),
            };
            let event = match convert::watch_event_from_wire(frame) {
                Ok(event) => event,
                Err(why) => {
                    return self.ended(format!("sent an event that cannot be read ({why})"));
                }
            };
            match &event {
                WatchEvent::Change(change) => {
                    self.next = change.revision + 1;
                }
                WatchEvent::Progress { revision } => {
                    self.next = self.next.max(revision + 1);
                    // The holder's progress keeps the connection alive; the
                    // caller gets it only as often as asked.
                    match self.progress {
                        Some(every) if self.last_yield.elapsed() >= every => {}
                        _ => continue,
                    }
                }
            }
            self.last_yield = Instant::now();
            return Some(Ok(event));
        }
    }
}

impl Remote {
    /// Pins a snapshot (now, or of the past) on a connection of its own.
    fn pin(&self, request: &m::Request) -> Reply<Arc<dyn ReadView>> {
        let link = &self.link;
        let mut channel = link.take()?;
        if let Err(e) = channel.send(request) {
            return Err(link.unsent(e, channel));
        }
        match receive_final(&mut channel, None, Wait::Answer) {
            Ok(Final::Reply(m::Reply::Pinned { revision, time })) => Ok(Arc::new(RemoteView {
                link: Arc::clone(link),
                channel: Mutex::new(Some(channel)),
                revision,
                time: Timestamp::from_micros(time),
                lost: AtomicBool::new(false),
                last: Mutex::new(None),
            })),
            Ok(Final::Reply(other)) => Err(self.unexpected("a snapshot request", &other)),
            Ok(Final::Failed(e)) => {
                link.give_back(channel);
                Err(Fault::Failed(wire_error::from_wire(e, &link.path)))
            }
            Ok(Final::NotExecuted(reason)) => Err(Fault::Resend(reason)),
            Err(e) => Err(link.unanswered(e, false)),
        }
    }
}

/// A snapshot pinned in the holder for this handle, on a connection of its
/// own; released (and the connection given back) when dropped.
struct RemoteView {
    link: Arc<Link>,
    channel: Mutex<Option<Channel>>,
    revision: u64,
    time: Timestamp,
    lost: AtomicBool,
    /// The last record read and what it held: a snapshot never changes, and
    /// a transaction often reads a record twice (its value, then its version
    /// for a precondition), so the second read needs no round trip.
    last: Mutex<Option<(Vec<u8>, Option<Stored>)>>,
}

impl RemoteView {
    fn ask(&self, request: &m::Request) -> Result<m::Reply> {
        let mut guard = self.channel.lock();
        let Some(channel) = guard.as_mut() else {
            return Err(self.gone("an earlier request on it failed"));
        };
        if let Err(e) = channel.send(request) {
            *guard = None;
            self.lost.store(true, Ordering::Release);
            return Err(self.gone(&format!("the holder went away ({e})")));
        }
        match receive_final(channel, None, Wait::Answer) {
            Ok(Final::Reply(reply)) => Ok(reply),
            Ok(Final::Failed(e)) => Err(wire_error::from_wire(e, &self.link.path)),
            Ok(Final::NotExecuted(reason)) => {
                *guard = None;
                self.lost.store(true, Ordering::Release);
                Err(self.gone(&reason))
            }
            Err(e) => {
                *guard = None;
                match self.link.unanswered(e, false) {
                    Fault::Failed(e) => Err(e),
                    Fault::Resend(why) => {
                        self.lost.store(true, Ordering::Release);
                        Err(self.gone(&why))
                    }
                }
            }
        }
    }

    fn gone(&self, why: &str) -> Error {
        Error::Disconnected {
            path: self.link.path.clone(),
            pid: self.link.holder(),
            reason: format!("{why}; the snapshot it kept for this process is gone: take a new one"),
        }
    }

    fn unexpected(&self, reply: &m::Reply) -> Error {
        Error::Disconnected {
            path: self.link.path.clone(),
            pid: self.link.holder(),
            reason: format!("the holder answered a snapshot read with {reply:?}"),
        }
    }
}

impl ReadView for RemoteView {
    fn revision(&self) -> u64 {
        self.revision
    }

    fn time(&self) -> Timestamp {
        self.time
    }

    fn get(&self, address: &[u8]) -> Result<Option<Stored>> {
        if let Some((last, stored)) = &*self.last.lock()
            && last.as_slice() == address
        {
            return Ok(stored.clone());
        }
        let request = m::Request::ViewGet {
            address: serde_bytes::ByteBuf::from(address.to_vec()),
        };
        let stored = match self.ask(&request)? {
            m::Reply::Record(record) => record.map(convert::stored_from_wire),
            other => return Err(self.unexpected(&other)),
        };
        *self.last.lock() = Some((address.to_vec(), stored.clone()));
        Ok(stored)
    }

    fn range(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<Entries> {
        Ok(Box::new(Pages {
            view: self,
            next: Some(start),
            end,
            buffer: VecDeque::new(),
        }))
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        match self.ask(&m::Request::ViewNamespaces)? {
            m::Reply::Namespaces(names) => Ok(names),
            other => Err(self.unexpected(&other)),
        }
    }

    fn count(self: Arc<Self>, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Result<u64> {
        let request = m::Request::ViewCount {
            start: convert::bound_to_wire(&start),
            end: convert::bound_to_wire(&end),
        };
        match self.ask(&request)? {
            m::Reply::Count(n) => Ok(n),
            other => Err(self.unexpected(&other)),
        }
    }

    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl Drop for RemoteView {
    fn drop(&mut self) {
        if let Some(mut channel) = self.channel.get_mut().take()
            && channel.send(&m::Request::Unpin).is_ok()
        {
            self.link.give_back(channel);
        }
    }
}

/// A range of a pinned snapshot, fetched a page at a time.
struct Pages {
    view: Arc<RemoteView>,
    /// Where the next page starts; `None` once the range is done.
    next: Option<Bound<Vec<u8>>>,
    end: Bound<Vec<u8>>,
    buffer: VecDeque<Entry>,
}

impl Iterator for Pages {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if let Some(entry) = self.buffer.pop_front() {
            return Some(Ok(entry));
        }
        let start = self.next.take()?;
        let request = m::Request::ViewRange {
            start: convert::bound_to_wire(&start),
            end: convert::bound_to_wire(&self.end),
            limit: PAGE,
        };
        match self.view.ask(&request) {
            Ok(m::Reply::Page { entries, more }) => {
                self.buffer
                    .extend(entries.into_iter().map(convert::entry_from_wire));
                if more && let Some(last) = self.buffer.back() {
                    self.next = Some(Bound::Excluded(last.address.clone()));
                }
                self.buffer.pop_front().map(Ok)
            }
            Ok(other) => Some(Err(self.view.unexpected(&other))),
            Err(e) => Some(Err(e)),
        }
    }
}
