//! Watching a key range from a revision, as a blocking iterator.
//!
//! A task on the client's runtime holds the gRPC stream and hands each batch
//! of events to the iterator through a channel. When the stream breaks (a
//! member dies) the task opens it again on the next member from the revision
//! after the last event delivered, so no event is lost or repeated; if no
//! member answers within the failover timeout, the iterator yields
//! [`Error::Unreachable`] and ends. A start revision that etcd has compacted
//! away ends the watch with [`Error::Compacted`] naming the compacted revision.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;

use super::client::{Client, Conn, add_token, grpc, to_i64};
use super::errors::{self, Class};
use super::proto::{self, path};
use crate::error::{Error, Result};

/// A batch of events: everything one revision (or a few) changed, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    /// The events, in revision order.
    pub events: Vec<proto::Event>,
}

/// A running watch; dropping it cancels it.
#[derive(Debug)]
pub struct Watch {
    events: mpsc::Receiver<Result<WatchBatch>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    // Keeps the runtime the watch task runs on alive.
    _client: Client,
}

impl Watch {
    /// Waits up to `timeout` for the next batch; `None` if none came.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<WatchBatch>> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Waits up to `timeout` for the next batch: `Ok(None)` if none came in
    /// that time, `Err(())` once the watch has ended.
    pub(crate) fn wait(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<Result<WatchBatch>>, ()> {
        match self.events.recv_timeout(timeout) {
            Ok(batch) => Ok(Some(batch)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
        }
    }
}

impl Iterator for Watch {
    type Item = Result<WatchBatch>;

    /// Blocks until the next batch; `None` once the watch ended.
    fn next(&mut self) -> Option<Result<WatchBatch>> {
        self.events.recv().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Client {
    /// Watches `[key, range_end)` (one key when `range_end` is empty) from
    /// `start_revision` on (0: from now).
    ///
    /// # Errors
    /// None here; failures arrive through the iterator.
    pub fn watch(&self, key: Vec<u8>, range_end: Vec<u8>, start_revision: u64) -> Watch {
        self.watch_with(key, range_end, start_revision, false)
    }

    /// As [`watch`](Self::watch); with `prev_kv`, each event carries the
    /// key-value it replaced.
    pub(crate) fn watch_with(
        &self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: u64,
        prev_kv: bool,
    ) -> Watch {
        let (sender, events) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = WatchTask {
            conn: self.conn().clone(),
            key,
            range_end,
            next_revision: start_revision,
            prev_kv,
            sender,
        };
        self.runtime().spawn(async move {
            tokio::select! {
                _ = stopped => {}
                _ = task.run() => {}
            }
        });
        Watch {
            events,
            stop: Some(stop),
            _client: self.clone(),
        }
    }
}

struct WatchTask {
    conn: Arc<Conn>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    next_revision: u64,
    prev_kv: bool,
    sender: mpsc::Sender<Result<WatchBatch>>,
}

/// How a stream ended.
enum End {
    /// The receiver is gone or the watch is over: stop.
    Done,
    /// The stream broke: open it again on another member.
    Broken(String),
}

impl WatchTask {
    async fn run(mut self) {
        let mut last_good = Instant::now();
        let mut stale_token = 0;
        loop {
            let member = self.conn.current();
            let end = match self.conn.token(member, stale_token).await {
                Ok(token) => {
                    let generation = token.as_ref().map_or(0, |t| t.1);
                    match self
                        .stream(member, token.map(|t| t.0), &mut last_good)
                        .await
                    {
                        Err(status) if errors::classify(&status) == Class::BadToken => {
                            stale_token = generation;
                            End::Broken(errors::describe(&status))
                        }
                        Err(status) if errors::classify(&status) == Class::Final => {
                            let address = &self.conn.members[member].address;
                            let _ = self
                                .sender
                                .send(Err(self.conn.answer(status, address, "watch")));
                            End::Done
                        }
                        Err(status) => End::Broken(errors::describe(&status)),
                        Ok(end) => end,
                    }
                }
                Err(Error::Unreachable { reason, .. }) => End::Broken(reason),
                Err(e) => {
                    let _ = self.sender.send(Err(e));
                    End::Done
                }
            };
            let reason = match end {
                End::Done => return,
                End::Broken(reason) => reason,
            };
            self.conn.fail_over(member);
            if last_good.elapsed() >= self.conn.failover_timeout {
                let _ = self.sender.send(Err(Error::Unreachable {
                    endpoints: self.conn.endpoints(),
                    op: "watch",
                    reason,
                }));
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens the stream on `member` and forwards its events until it ends.
    async fn stream(
        &mut self,
        member: usize,
        token: Option<String>,
        last_good: &mut Instant,
    ) -> std::result::Result<End, tonic::Status> {
        let mut grpc = grpc(self.conn.members[member].channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
        let (requests, outgoing) = tokio::sync::mpsc::channel(1);
        let create = proto::WatchRequest {
            request_union: Some(proto::WatchRequestUnion::CreateRequest(
                proto::WatchCreateRequest {
                    key: self.key.clone(),
                    range_end: self.range_end.clone(),
                    start_revision: to_i64(self.next_revision),
                    progress_notify: true,
                    prev_kv: self.prev_kv,
                    watch_id: 0,
                },
            )),
        };
        if requests.send(create).await.is_err() {
            return Ok(End::Broken("the request stream closed".into()));
        }
        let mut request =
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing));
        add_token(&mut request, token.as_deref());
        let codec = tonic_prost::ProstCodec::<proto::WatchRequest, proto::WatchResponse>::default();
        let mut stream = grpc
            .streaming(request, PathAndQuery::from_static(path::WATCH), codec)
            .await?
            .into_inner();
        // `requests` stays alive while the stream is read: closing it would
        // end the watch on the server's side.
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Ok(End::Broken("the member closed the watch".into())),
                Err(status) => return Err(status),
            };
            *last_good = Instant::now();
            if response.compact_revision > 0 {
                let _ = self.sender.send(Err(Error::Compacted {
                    requested: self.next_revision,
                    compacted: u64::try_from(response.compact_revision).ok(),
                }));
                return Ok(End::Done);
            }
            if response.canceled {
                let reason = if response.cancel_reason.is_empty() {
                    "etcd cancelled the watch".to_owned()
                } else {
                    response.cancel_reason.clone()
                };
                return Err(tonic::Status::failed_precondition(reason));
            }
            if let Some(last) = response.events.last() {
                let revision = last.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                self.next_revision = u64::try_from(revision).unwrap_or(0) + 1;
                let batch = WatchBatch {
                    events: response.events,
                };
                if self.sender.send(Ok(batch)).is_err() {
                    return Ok(End::Done);
                }
            } else if let Some(header) = &response.header {
                // Creation (for a watch "from now") and progress
                // notifications: every event up to the header's revision has
                // been sent, so a reconnect may start after it.
                let revision = u64::try_from(header.revision).unwrap_or(0);
                let from_now = response.created && self.next_revision == 0;
                if from_now || (!response.created && revision >= self.next_revision) {
                    self.next_revision = revision + 1;
                }
            }
        }
    }
}
