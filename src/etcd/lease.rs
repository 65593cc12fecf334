//! Keeping a lease alive: a task that renews it at a third of its TTL over
//! etcd's keep-alive stream, moving to another member when the stream breaks,
//! until the handle is dropped or the lease is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::uri::PathAndQuery;

use super::client::{Client, Conn, add_token, grpc};
use super::errors;
use super::proto::{self, path};
use crate::error::{Error, Result};

/// Keeps a lease alive while it exists; dropping it stops the renewals (the
/// lease then expires after its TTL unless revoked).
#[derive(Debug)]
pub struct KeepAlive {
    ttl: Arc<AtomicI64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _client: Client,
}

impl KeepAlive {
    /// The TTL etcd granted at the last renewal, in seconds; 0 once the lease
    /// is gone (expired or revoked) and renewals stopped.
    pub fn last_ttl(&self) -> i64 {
        self.ttl.load(Ordering::Relaxed)
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Client {
    /// Renews lease `id` once; returns the TTL granted, or `None` if the lease
    /// no longer exists.
    ///
    /// # Errors
    /// The connection errors.
    pub fn lease_keep_alive_once(&self, id: i64) -> Result<Option<i64>> {
        let conn = self.conn().clone();
        self.runtime().block_on(async move {
            let member = conn.current();
            let token = conn.token(member, 0).await?.map(|t| t.0);
            let address = conn.members[member].address.clone();
            let renewed = renew_once(&conn, member, id, token).await;
            match renewed {
                Ok(ttl) => Ok((ttl > 0).then_some(ttl)),
                Err(status) => Err(match errors::classify(&status) {
                    errors::Class::Final | errors::Class::BadToken => {
                        conn.answer(status, &address, "renew a lease")
                    }
                    _ => Error::Unreachable {
                        endpoints: address,
                        op: "renew a lease",
                        reason: errors::describe(&status),
                    },
                }),
            }
        })
    }

    /// Starts renewing lease `id`, granted with `ttl` seconds, in the
    /// background.
    pub fn keep_alive(&self, id: i64, ttl: i64) -> KeepAlive {
        let shared_ttl = Arc::new(AtomicI64::new(ttl));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let conn = self.conn().clone();
        let task_ttl = shared_ttl.clone();
        self.runtime().spawn(async move {
            tokio::select! {
                _ = stopped => {}
                _ = keep_renewing(conn, id, ttl, task_ttl) => {}
            }
        });
        KeepAlive {
            ttl: shared_ttl,
            stop: Some(stop),
            _client: self.clone(),
        }
    }
}

async fn keep_renewing(conn: Arc<Conn>, id: i64, ttl: i64, last_ttl: Arc<AtomicI64>) {
    let period = Duration::from_millis((ttl.max(1) as u64 * 1000) / 3);
    loop {
        let member = conn.current();
        let token = conn.token(member, 0).await.ok().flatten().map(|t| t.0);
        match renew_once(&conn, member, id, token).await {
            Ok(granted) if granted > 0 => {
                last_ttl.store(granted, Ordering::Relaxed);
                tokio::time::sleep(period).await;
            }
            Ok(_) => {
                // The lease is gone: nothing left to renew.
                last_ttl.store(0, Ordering::Relaxed);
                return;
            }
            Err(status) => {
                tracing::debug!(
                    lease = id,
                    error = %errors::describe(&status),
                    "renewing an etcd lease failed; trying the next member"
                );
                conn.fail_over(member);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One renewal over a fresh keep-alive stream; the TTL etcd answers with.
async fn renew_once(
    conn: &Conn,
    member: usize,
    id: i64,
    token: Option<String>,
) -> std::result::Result<i64, tonic::Status> {
    let mut grpc = grpc(conn.members[member].channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
    let mut request = tonic::Request::new(tokio_stream::once(proto::LeaseKeepAliveRequest { id }));
    add_token(&mut request, token.as_deref());
    let codec = tonic_prost::ProstCodec::<
        proto::LeaseKeepAliveRequest,
        proto::LeaseKeepAliveResponse,
    >::default();
    let call = async {
        let mut stream = grpc
            .streaming(
                request,
                PathAndQuery::from_static(path::LEASE_KEEP_ALIVE),
                codec,
            )
            .await?
            .into_inner();
        match stream.message().await? {
            Some(response) => Ok(response.ttl),
            None => Err(tonic::Status::unavailable("the keep-alive stream closed")),
        }
    };
    match tokio::time::timeout(conn.request_timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "no answer to a lease renewal",
        )),
    }
}
