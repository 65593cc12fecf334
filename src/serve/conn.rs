//! One connection of another process: the handshake, then its requests, one
//! at a time, each run through the holder's backend and answered.
//!
//! Input is untrusted: a message that is not a valid frame, is too large, is
//! cut off, or does not decode closes this connection (after an error message
//! when one can still be sent), and nothing else. A request's addresses and
//! values are checked before the engine sees them.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::channel::{Channel, RecvError, SendError, Wait};
use super::socket;
use super::{Serving, State};
use crate::access::{Backend, BackupOptions, Fault, ReadView, Reply};
use crate::error::Error;
use crate::value::Stored;
use crate::wire::message::{self as m, Request, Response};
use crate::wire::{self, convert};

/// Entries of one page of a range, at most.
const PAGE_ENTRIES: usize = 1024;
/// Bytes of values in one page, about (a page holds at least one entry).
const PAGE_BYTES: usize = 4 << 20;
/// The largest hello accepted (they are a few dozen bytes).
const MAX_HELLO: usize = 4096;
/// How often a long request reports progress, at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Refuses a connection without reading anything (too many connections):
/// the refusal is written at once; a client reads it after its hello.
pub(super) fn refuse_at_once(stream: UnixStream, reason: String) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let mut channel = Channel::new(stream, None);
    let _ = channel.send(&m::ServerHello::Refused {
        version: m::PROTOCOL_VERSION,
        pid: std::process::id(),
        reason,
    });
}

/// Serves one connection until it ends; `refusal` when the peer may not use
/// the store.
pub(super) fn run(state: &Arc<State>, stream: UnixStream, refusal: Option<String>) {
    let _ = stream.set_write_timeout(Some(state.served.wait));
    // The hello must come within the wait, like the rest of any message.
    let _ = stream.set_read_timeout(Some(state.served.wait));
    let mut conn = Conn {
        state,
        channel: Channel::new(stream, Some(state.served.wait)),
        pinned: None,
        company: Company::default(),
    };
    if conn.handshake(refusal) {
        let _ = conn.channel.stream().set_read_timeout(None);
        conn.serve();
    }
    conn.unpin();
}

struct Conn<'s> {
    state: &'s Arc<State>,
    channel: Channel,
    /// The snapshot this connection pinned.
    pinned: Option<Arc<dyn ReadView>>,
    /// What it saw of the other connections' requests.
    company: Company,
}

impl Conn<'_> {
    fn store(&self) -> &Path {
        &self.state.served.path
    }

    /// The holder's backend (gone only once the store is closed, after every
    /// connection ended).
    fn backend(&self) -> Result<Arc<dyn Backend>, Error> {
        self.state.served.backend.upgrade().ok_or(Error::Closed)
    }

    /// Reads the client's hello and answers it; true when requests follow.
    fn handshake(&mut self, refusal: Option<String>) -> bool {
        let hello: m::ClientHello = match self.channel.receive_within(MAX_HELLO) {
            Ok(hello) => hello,
            Err(e) => {
                tracing::debug!(error = %e, "a connection ended before its hello");
                return false;
            }
        };
        if hello.magic != m::MAGIC {
            return false;
        }
        if self.state.closing.load(Ordering::Acquire) {
            // Closing without an answer: the client waits for the next holder.
            return false;
        }
        let ours = self.state.served.store_id.clone();
        let refusal = refusal.or_else(|| {
            if hello.version != m::PROTOCOL_VERSION {
                Some(format!(
                    "it speaks protocol version {} and this process version {}; use the same \
                     statelog release on both sides",
                    m::PROTOCOL_VERSION,
                    hello.version
                ))
            } else if hello.store_id != ours {
                Some(format!(
                    "it holds the store {ours}, not {}: the directory's store was replaced; \
                     open it again",
                    hello.store_id
                ))
            } else {
                None
            }
        });
        let answer = match &refusal {
            Some(reason) => m::ServerHello::Refused {
                version: m::PROTOCOL_VERSION,
                pid: std::process::id(),
                reason: reason.clone(),
            },
            None => m::ServerHello::Welcome {
                version: m::PROTOCOL_VERSION,
                store_id: ours,
                pid: std::process::id(),
                read_only: self.backend().ok().and_then(|b| b.read_only()),
            },
        };
        if let Some(reason) = &refusal {
            tracing::info!(client = hello.pid, reason = %reason, "refused a connection");
        }
        self.channel.send(&answer).is_ok() && refusal.is_none()
    }

    fn serve(&mut self) {
        loop {
            let request: Request = match self.channel.receive_for(Wait::Request) {
                Ok(request) => request,
                Err(RecvError::Closed) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "closing a connection that sent a bad message");
                    let refusal = Error::Disconnected {
                        path: self.store().to_owned(),
                        pid: Some(std::process::id()),
                        reason: format!("the holder received {e} and closed the connection"),
                    };
                    let _ = self.answer(Err(refusal));
                    return;
                }
            };
            if request == Request::Unpin {
                self.unpin();
                continue;
            }
            if let Request::Watch {
                scope,
                from,
                prev,
                buffer,
            } = request
            {
                // The connection is the watch's until it ends.
                self.watch(scope, from, prev, buffer);
                return;
            }
            let waits = matches!(request, Request::LockWait { .. });
            // A lock wait waits rather than works: it leaves others alone.
            let serving = &self.state.served.serving;
            let run = (!waits).then(|| self.company.begin(serving));
            let response = if self.state.closing.load(Ordering::Acquire) {
                Response::NotExecuted {
                    reason: "the holder is closing the store".to_owned(),
                }
            } else {
                match self.execute(request) {
                    Ok(mut reply) => {
                        if let (Some(_), Some(alone)) = (&run, convert::alone_mut(&mut reply)) {
                            *alone = self.company.commit_answered(serving);
                        }
                        Response::Reply(reply)
                    }
                    // A lock wait cut short by the holder closing took
                    // nothing: the client sends it again to the next holder.
                    Err(_) if waits && self.state.closing.load(Ordering::Acquire) => {
                        Response::NotExecuted {
                            reason: "the holder is closing the store".to_owned(),
                        }
                    }
                    Err(e) => Response::Failed(wire::error::to_wire(&e, self.store())),
                }
            };
            drop(run);
            if let Err(e) = self.channel.send(&response) {
                tracing::debug!(error = %e, "a client went away before its answer");
                return;
            }
        }
    }

    fn answer(&mut self, result: Result<m::Reply, Error>) -> Result<(), SendError> {
        let response = match result {
            Ok(reply) => Response::Reply(reply),
            Err(e) => Response::Failed(wire::error::to_wire(&e, self.store())),
        };
        self.channel.send(&response)
    }

    fn unpin(&mut self) {
        if self.pinned.take().is_some() {
            self.state
                .served
                .serving
                .pinned
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn view(&self) -> Result<&Arc<dyn ReadView>, Error> {
        self.pinned.as_ref().ok_or_else(|| Error::Disconnected {
            path: self.store().to_owned(),
            pid: Some(std::process::id()),
            reason: "no snapshot is pinned on this connection".to_owned(),
        })
    }

    fn execute(&mut self, request: Request) -> Result<m::Reply, Error> {
        let backend = self.backend()?;
        Ok(match request {
            Request::Revision => m::Reply::Revision(answer(backend.revision())?),
            Request::Get { address } => {
                let mut found = None;
                answer(backend.get(&address, &mut |meta, value| {
                    found = Some(Stored {
                        meta,
                        value: value.to_vec(),
                    });
                    Ok(())
                }))?;
                m::Reply::Record(found.map(convert::stored_to_wire))
            }
            Request::Pin => {
                let view = answer(backend.snapshot())?;
                let reply = m::Reply::Pinned {
                    revision: view.revision(),
                    time: view.time().as_micros(),
                };
                if self.pinned.replace(view).is_none() {
                    let serving = &self.state.served.serving;
                    serving.pinned.fetch_add(1, Ordering::Relaxed);
                }
                reply
            }
            Request::Unpin => m::Reply::Done,
            Request::ViewGet { address } => {
                m::Reply::Record(self.view()?.get(&address)?.map(convert::stored_to_wire))
            }
            Request::ViewRange { start, end, limit } => {
                let view = Arc::clone(self.view()?);
                let limit = (limit as usize).clamp(1, PAGE_ENTRIES);
                let mut entries = view.range(
                    convert::bound_from_wire(start),
                    convert::bound_from_wire(end),
                )?;
                let mut page = Vec::new();
                let mut bytes = 0;
                while page.len() < limit && bytes < PAGE_BYTES {
                    let Some(entry) = entries.next() else { break };
                    let entry = entry?;
                    bytes += entry.value.len() + entry.address.len();
                    page.push(convert::entry_to_wire(entry));
                }
                let more = page.len() == limit || bytes >= PAGE_BYTES;
                let more = more && entries.next().transpose()?.is_some();
                m::Reply::Page {
                    entries: page,
                    more,
                }
            }
            Request::ViewNamespaces => m::Reply::Namespaces(self.view()?.namespaces()?),
            Request::ViewCount { start, end } => m::Reply::Count(Arc::clone(self.view()?).count(
                convert::bound_from_wire(start),
                convert::bound_from_wire(end),
            )?),
            Request::Commit { checks, writes } => {
                let request = convert::commit_from_wire(checks, writes);
                request.check_untrusted()?;
                convert::outcome_to_wire(answer(backend.commit(&Arc::new(request)))?)
            }
            Request::Restore {
                revision,
                time,
                records,
            } => {
                let mut load = convert::restore_from_wire(revision, time, records);
                load.sort_and_check(true)?;
                m::Reply::Restored(answer(backend.restore(&load))?)
            }
            Request::Checkpoint => {
                answer(backend.checkpoint())?;
                m::Reply::Done
            }
            Request::Stats => m::Reply::Stats(convert::stats_to_wire(&answer(backend.stats())?)),
            Request::Backup { dest } => self.backup(&backend, convert::path_from_wire(dest))?,
            Request::PinAt { revision, time } => {
                let at = match (revision, time) {
                    (Some(revision), _) => crate::access::past::At::Revision(revision),
                    (None, Some(time)) => {
                        crate::access::past::At::Time(crate::time::Timestamp::from_micros(time))
                    }
                    (None, None) => {
                        return Err(Error::InvalidOption {
                            name: "revision",
                            reason: "a past snapshot needs a revision or a time".to_owned(),
                        });
                    }
                };
                let view = answer(backend.snapshot_at(at))?;
                let reply = m::Reply::Pinned {
                    revision: view.revision(),
                    time: view.time().as_micros(),
                };
                if self.pinned.replace(view).is_none() {
                    let serving = &self.state.served.serving;
                    serving.pinned.fetch_add(1, Ordering::Relaxed);
                }
                reply
            }
            Request::History { address } => {
                let (namespace, key) =
                    crate::key::decode(&address).ok_or_else(|| Error::InvalidKey {
                        part: crate::KeyPart::Key,
                        value: String::from_utf8_lossy(&address).into_owned(),
                        reason: "not a valid address".to_owned(),
                    })?;
                crate::key::encode(namespace, key)?;
                m::Reply::History(convert::versions_to_wire(answer(
                    backend.history(&address),
                )?))
            }
            // Handled by `serve` before it gets here.
            Request::Watch { .. } => m::Reply::Done,
            Request::CommitWith {
                checks,
                writes,
                coord,
            } => {
                let request =
                    convert::commit_with_from_wire(checks, writes, coord).map_err(|reason| {
                        Error::InvalidOption {
                            name: "patch",
                            reason,
                        }
                    })?;
                request.check_untrusted()?;
                convert::outcome_with_to_wire(answer(backend.commit(&Arc::new(request)))?)
            }
            Request::LeaseGrant { ttl_micros, holder } => m::Reply::Lease(answer(
                backend.lease_grant(Duration::from_micros(ttl_micros), &holder),
            )?),
            Request::LeaseKeepAlive { lease } => m::Reply::Alive(
                u64::try_from(answer(backend.lease_keep_alive(lease))?.as_micros())
                    .unwrap_or(u64::MAX),
            ),
            Request::LeaseRevoke { lease } => {
                m::Reply::LeaseEnded(answer(backend.lease_revoke(lease))?)
            }
            Request::LockWait {
                name,
                lease,
                wait_micros,
            } => {
                crate::coord::check_lock_name(&name)?;
                // While it waits, a progress message now and then: the
                // client's wait measures silence, and a client that went
                // away (the send fails) stops the wait, as does the holder
                // closing the store (the client then waits on elsewhere).
                let stream = self
                    .channel
                    .stream()
                    .try_clone()
                    .map_err(|e| Error::io("clone the connection to", self.store(), e))?;
                let stream = parking_lot::Mutex::new((stream, Vec::new()));
                let closing = &self.state.closing;
                let still_wanted = || {
                    if closing.load(Ordering::Acquire) {
                        return false;
                    }
                    let mut guard = stream.lock();
                    let (stream, buf) = &mut *guard;
                    super::channel::encode(&Response::Progress(m::Progress::Waiting), buf).is_ok()
                        && socket::send_all(stream, buf).is_ok()
                };
                m::Reply::Locked(answer(backend.lock_wait(
                    &name,
                    lease,
                    Duration::from_micros(wait_micros),
                    &still_wanted,
                ))?)
            }
            Request::LeaseRemaining => m::Reply::Remaining(
                answer(backend.lease_remaining())?
                    .into_iter()
                    .map(|(lease, left)| m::Remaining {
                        lease,
                        micros: u64::try_from(left.as_micros()).unwrap_or(u64::MAX),
                    })
                    .collect(),
            ),
        })
    }

    /// Runs a watch on this connection until it ends or the client goes
    /// away: the holder's own watch, each event sent as it comes, and a
    /// progress message whenever the watch is idle for a while, so that the
    /// client knows the holder is there (its wait measures silence).
    fn watch(&mut self, scope: m::WatchScope, from: Option<u64>, prev: bool, buffer: u64) {
        let mut watch = crate::watch::Watch {
            scope: convert::scope_from_wire(scope),
            from,
            prev,
            announce: false,
            buffer: usize::try_from(buffer)
                .unwrap_or(usize::MAX)
                .clamp(1, 1 << 20),
            progress: Some(
                (self.state.served.wait / 4)
                    .clamp(Duration::from_millis(50), Duration::from_secs(1)),
            ),
        };
        if let Err(e) = watch.scope.check() {
            let _ = self.answer(Err(e));
            return;
        }
        if self.state.closing.load(Ordering::Acquire) {
            let _ = self.channel.send(&Response::NotExecuted {
                reason: "the holder is closing the store".to_owned(),
            });
            return;
        }
        let backend = match self.backend() {
            Ok(backend) => backend,
            Err(e) => {
                let _ = self.answer(Err(e));
                return;
            }
        };
        // The watch's first event says where it starts, so that a client
        // whose holder goes away before anything else knows where to resume.
        watch.announce = true;
        let events = match answer(backend.watch(&watch)) {
            Ok(events) => events,
            Err(e) => {
                let _ = self.answer(Err(e));
                return;
            }
        };
        drop(backend);
        if self.answer(Ok(m::Reply::Watching)).is_err() {
            return;
        }
        for event in events {
            let response = match event {
                Ok(event) => Response::Watch(convert::watch_event_to_wire(event)),
                Err(e) => Response::Failed(wire::error::to_wire(&e, self.store())),
            };
            let last = matches!(response, Response::Failed(_));
            if self.channel.send(&response).is_err() || last {
                return;
            }
        }
    }

    /// A backup run for the client, written by this process: only for a client
    /// of the holder's own user, which could write the files itself.
    fn backup(
        &mut self,
        backend: &Arc<dyn Backend>,
        dest: std::path::PathBuf,
    ) -> Result<m::Reply, Error> {
        let holder = socket::effective_uid();
        let peer = socket::peer(self.channel.stream()).ok();
        if peer.as_ref().map(|p| p.uid) != Some(holder) {
            return Err(Error::Refused {
                path: self.store().to_owned(),
                pid: Some(std::process::id()),
                reason: format!(
                    "backups through the holder are written by it, as user {holder}; run the \
                     backup as that user (or when no process holds the store)"
                ),
            });
        }
        if dest.is_relative() {
            return Err(Error::InvalidOption {
                name: "dest",
                reason: format!("{} is not an absolute path", dest.display()),
            });
        }
        // Progress goes out on the same connection while the run goes on, so
        // the client's wait measures silence, not the length of the run.
        let progress = self
            .channel
            .stream()
            .try_clone()
            .map_err(|e| Error::io("clone the connection to", self.store(), e))?;
        let last = parking_lot::Mutex::new((progress, Instant::now(), Vec::new()));
        let options = BackupOptions::new().progress(move |p| {
            let mut guard = last.lock();
            let (stream, at, buf) = &mut *guard;
            if at.elapsed() < PROGRESS_EVERY {
                return;
            }
            *at = Instant::now();
            let message = Response::Progress(convert::progress_to_wire(p));
            if super::channel::encode(&message, buf).is_ok() {
                let _ = socket::send_all(stream, buf);
            }
        });
        let report = answer(backend.backup(&dest, &options))?;
        Ok(m::Reply::Backup(convert::backup_report_to_wire(&report)))
    }
}

/// What a connection saw of the others' requests, so that a commit's answer
/// can say whether it ran alone: no other connection began a request since
/// this connection's previous commit was answered, and none runs now. A
/// client told so may poll for its next commit's answer (one writer, a core
/// to spare); of many writers none is ever alone (each sees the others'
/// requests between two of its commits), so they sleep and leave the cores
/// to the group commit. The holder's own threads are not counted: they
/// commit without a connection (and a client stops polling when a yield
/// gives its core away).
#[derive(Debug, Default)]
struct Company {
    /// Requests begun in all, as counted when this connection's previous
    /// commit was answered.
    mark: Option<u64>,
    /// Requests this connection began since.
    own: u64,
}

/// One request begun, in [`Serving::running`]; below it, requests running.
const BEGUN: u64 = 1 << 20;

impl Company {
    /// Counts a request of this connection, running until the guard drops.
    fn begin<'s>(&mut self, serving: &'s Serving) -> Running<'s> {
        serving.running.fetch_add(BEGUN + 1, Ordering::AcqRel);
        self.own += 1;
        Running(serving)
    }

    /// Whether the commit just run (still counted as running) ran alone;
    /// the next commit is judged from here.
    fn commit_answered(&mut self, serving: &Serving) -> bool {
        let now = serving.running.load(Ordering::Acquire);
        let begun = now / BEGUN;
        let alone =
            now % BEGUN == 1 && self.mark.is_some_and(|m| begun.wrapping_sub(m) == self.own);
        self.mark = Some(begun);
        self.own = 0;
        alone
    }
}

/// A request running (see [`Company`]).
struct Running<'s>(&'s Serving);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The holder's answer: its backend never asks for a request to be sent
/// again (that is for clients of a holder).
fn answer<T>(reply: Reply<T>) -> Result<T, Error> {
    reply.map_err(|fault| match fault {
        Fault::Failed(e) => e,
        Fault::Resend(why) => Error::Poisoned {
            cause: format!("internal error: the engine asked to resend: {why}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_alone_only_when_no_other_connection_began_a_request_since_the_last() {
        let serving = Serving::default();
        let (mut lone, mut other) = (Company::default(), Company::default());
        // The first commit of a connection has nothing to be judged from.
        let commit = lone.begin(&serving);
        assert!(!lone.commit_answered(&serving));
        drop(commit);
        // A read and a commit of its own since: alone.
        drop(lone.begin(&serving));
        let commit = lone.begin(&serving);
        assert!(lone.commit_answered(&serving));
        drop(commit);
        // Another connection's read began and ended in between: not alone.
        drop(lone.begin(&serving));
        drop(other.begin(&serving));
        let commit = lone.begin(&serving);
        assert!(!lone.commit_answered(&serving));
        drop(commit);
        // Another's request running beside the commit: not alone either,
        // even though it began before the last commit was answered.
        let long = other.begin(&serving);
        let commit = lone.begin(&serving);
        assert!(!lone.commit_answered(&serving));
        drop(commit);
        let commit = lone.begin(&serving);
        assert!(!lone.commit_answered(&serving));
        drop(commit);
        drop(long);
        // Quiet again: alone.
        let commit = lone.begin(&serving);
        assert!(lone.commit_answered(&serving));
        drop(commit);
    }
}
