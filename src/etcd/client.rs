//! A blocking etcd v3 client: one small tokio runtime per handle, one lazily
//! connected gRPC channel per endpoint, failover between them, and the
//! user/password token kept fresh.
//!
//! Every call runs on the handle's runtime through `block_on`, so callers stay
//! synchronous. Watches and lease keep-alives run as tasks on that runtime and
//! hold only the connection state ([`Conn`]), never the runtime itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::errors::{self, Class};
use super::proto::{self, path};
use crate::error::{Error, Result};

/// How to reach an etcd cluster.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// `host:port` of each member to try, in order.
    pub endpoints: Vec<String>,
    /// User name and password, when the cluster has authentication on.
    pub credentials: Option<Credentials>,
    /// TLS settings; `None` connects in plain text.
    pub tls: Option<TlsOptions>,
    /// How long to wait for a connection to one member (default 2 s).
    pub connect_timeout: Option<Duration>,
    /// How long one request to one member may take (default 10 s).
    pub request_timeout: Option<Duration>,
    /// How long a call may keep trying other members before giving up with
    /// [`Error::Unreachable`] (default 30 s).
    pub failover_timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("endpoints", &self.endpoints)
            .field("user", &self.credentials.as_ref().map(|c| &c.user))
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A user name and password for etcd's authentication.
#[derive(Clone)]
pub struct Credentials {
    /// The etcd user.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// TLS settings: the CA that signed the members' certificates, and the
/// client's own certificate and key when the cluster asks for one. All PEM.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// The certificate authority to trust.
    pub ca_pem: Vec<u8>,
    /// The client certificate and its private key.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to expect in the members' certificates (default: the host of
    /// each endpoint).
    pub domain: Option<String>,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a call may be sent again after its outcome became unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads (and calls that change nothing): try the next member.
    Safe,
    /// Writes: only when the request provably never reached a member.
    Write,
}

/// One member's address and channel.
pub(crate) struct Member {
    pub address: String,
    pub channel: Channel,
}

/// The connection state shared by the handle and its background tasks.
pub(crate) struct Conn {
    pub members: Vec<Member>,
    current: AtomicUsize,
    credentials: Option<Credentials>,
    /// The current token and its generation (bumped on every authentication).
    token: tokio::sync::Mutex<(Option<String>, u64)>,
    generation: AtomicU64,
    pub request_timeout: Duration,
    pub failover_timeout: Duration,
    /// What errors name as the store: its `etcd://` address.
    pub label: PathBuf,
}

/// A blocking etcd client. Cheap to clone; the runtime stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    conn: Arc<Conn>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Prepares a client for the members in `options`. Nothing is connected
    /// yet: the first call connects (and authenticates, with credentials).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for no endpoint, an endpoint that is not
    /// `host:port`, or TLS material that cannot be used; [`Error::Io`] if the
    /// runtime's thread cannot be started.
    pub fn new(options: &ClientOptions) -> Result<Client> {
        let label = format!("etcd://{}", options.endpoints.join(","));
        Client::labelled(options, Path::new(&label))
    }

    /// As [`new`](Self::new), naming the store `label` (its `etcd://`
    /// address) in errors.
    pub(crate) fn labelled(options: &ClientOptions, label: &Path) -> Result<Client> {
        if options.endpoints.is_empty() {
            return Err(Error::InvalidOption {
                name: "endpoints",
                reason: "no etcd endpoint was given; name at least one HOST:PORT".into(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("statelog-etcd")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("start the etcd client's runtime thread", "", e))?;
        let members = {
            // Channels register with the runtime's reactor when they connect;
            // building them inside it keeps them tied to this runtime.
            let _entered = runtime.enter();
            options
                .endpoints
                .iter()
                .map(|address| {
                    Ok(Member {
                        address: address.clone(),
                        channel: endpoint(address, options)?.connect_lazy(),
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let conn = Conn {
            members,
            current: AtomicUsize::new(0),
            credentials: options.credentials.clone(),
            token: tokio::sync::Mutex::new((None, 0)),
            generation: AtomicU64::new(0),
            request_timeout: options.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            failover_timeout: options.failover_timeout.unwrap_or(DEFAULT_FAILOVER_TIMEOUT),
            label: label.to_owned(),
        };
        Ok(Client {
            shared: Arc::new(Shared {
                conn: Arc::new(conn),
                runtime,
            }),
        })
    }

    /// The endpoints, comma-separated (for messages).
    pub fn endpoints(&self) -> String {
        self.shared.conn.endpoints()
    }

    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.shared.conn
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.shared.runtime
    }

    /// Runs one unary call with failover; see [`Conn::call`].
    pub(crate) fn call<Req, Resp>(
        &self,
        op: &'static str,
        path: &'static str,
        request: Req,
        retry: Retry,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let conn = self.shared.conn.clone();
        self.shared
            .runtime
            .block_on(async move { conn.call(op, path, request, retry).await })
    }

    /// Reads keys: one key (`range_end` empty), or `[key, range_end)`.
    ///
    /// # Errors
    /// [`Error::Compacted`] for a compacted `revision`; the connection errors.
    pub fn range(&self, request: proto::RangeRequest) -> Result<proto::RangeResponse> {
        let requested = request.revision;
        self.call("read", path::RANGE, request, Retry::Safe)
            .map_err(|e| errors::with_requested_revision(e, requested))
    }

    /// Writes one key.
    ///
    /// # Errors
    /// The connection errors; [`Error::OutcomeUnknown`].
    pub fn put(&self, request: proto::PutRequest) -> Result<proto::PutResponse> {
        self.call("write", path::PUT, request, Retry::Write)
    }

    /// Deletes one key or a range.
    ///
    /// # Errors
    /// The connection errors; [`Error::OutcomeUnknown`].
    pub fn delete_range(
        &self,
        request: proto::DeleteRangeRequest,
    ) -> Result<proto::DeleteRangeResponse> {
        self.call("delete", path::DELETE_RANGE, request, Retry::Write)
    }

    /// Runs a transaction: compares, then the success or the failure ops.
    ///
    /// # Errors
    /// The connection errors; [`Error::OutcomeUnknown`] for a transaction that
    /// writes; [`Error::LimitExceeded`] when etcd refuses its size or count.
    pub fn txn(&self, request: proto::TxnRequest) -> Result<proto::TxnResponse> {
        let writes = request
            .success
            .iter()
            .chain(&request.failure)
            .any(|op| !matches!(op.request, Some(proto::Request::Range(_))));
        let retry = if writes { Retry::Write } else { Retry::Safe };
        self.call("commit a transaction", path::TXN, request, retry)
    }

    /// Discards the history before `revision` (all keys, the whole cluster).
    ///
    /// # Errors
    /// [`Error::Compacted`] if it already was; the connection errors.
    pub fn compact(&self, revision: u64) -> Result<()> {
        let request = proto::CompactionRequest {
            revision: to_i64(revision),
            physical: true,
        };
        let _: proto::CompactionResponse = self
            .call("compact the history", path::COMPACT, request, Retry::Safe)
            .map_err(|e| errors::with_requested_revision(e, to_i64(revision)))?;
        Ok(())
    }

    /// The status of the member at `endpoint` (index into the endpoints), asked
    /// of that member alone.
    ///
    /// # Errors
    /// [`Error::Unreachable`] if that member does not answer.
    pub fn status_of(&self, endpoint: usize) -> Result<proto::StatusResponse> {
        let conn = self.shared.conn.clone();
        self.shared.runtime.block_on(async move {
            conn.call_member(
                endpoint,
                "ask for the member's status",
                path::STATUS,
                proto::StatusRequest {},
            )
            .await
        })
    }

    /// Grants a lease of `ttl` seconds; returns its id and granted TTL.
    ///
    /// # Errors
    /// The connection errors; [`Error::OutcomeUnknown`].
    pub fn lease_grant(&self, ttl: i64) -> Result<(i64, i64)> {
        let response: proto::LeaseGrantResponse = self.call(
            "grant a lease",
            path::LEASE_GRANT,
            proto::LeaseGrantRequest { ttl, id: 0 },
            Retry::Write,
        )?;
        Ok((response.id, response.ttl))
    }

    /// Revokes a lease, deleting the keys attached to it; returns the
    /// cluster's revision after it.
    ///
    /// # Errors
    /// The connection errors; [`Error::Remote`] for an unknown lease.
    pub fn lease_revoke(&self, id: i64) -> Result<u64> {
        let response: proto::LeaseRevokeResponse = self.call(
            "revoke a lease",
            path::LEASE_REVOKE,
            proto::LeaseRevokeRequest { id },
            // Revoking twice has the effect of revoking once.
            Retry::Safe,
        )?;
        Ok(super::ops::header_revision(response.header.as_ref()))
    }

    /// The seconds a lease has left; `None` once it expired or was revoked.
    ///
    /// # Errors
    /// The connection errors.
    pub fn lease_time_to_live(&self, id: i64) -> Result<Option<i64>> {
        let response: proto::LeaseTimeToLiveResponse = self.call(
            "read a lease",
            path::LEASE_TIME_TO_LIVE,
            proto::LeaseTimeToLiveRequest { id, keys: false },
            Retry::Safe,
        )?;
        Ok((response.ttl > 0).then_some(response.ttl))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Background tasks (watches, keep-alives) end with the runtime; none of
        // them waits on anything but the network, so nothing needs joining.
        tracing::trace!("stopping the etcd client runtime");
    }
}

fn endpoint(address: &str, options: &ClientOptions) -> Result<Endpoint> {
    let invalid = |reason: String| Error::InvalidOption {
        name: "endpoints",
        reason,
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(format!("{address:?} is not HOST:PORT")))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid(format!("{address:?} is not HOST:PORT")));
    }
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| invalid(format!("{address:?} is not a usable address: {e}")))?
        .connect_timeout(options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if let Some(tls) = &options.tls {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .domain_name(
                tls.domain
                    .clone()
                    .unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned()),
            );
        if let Some((cert, key)) = &tls.identity_pem {
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| Error::InvalidOption {
                name: "tls",
                reason: format!("the TLS settings cannot be used: {e}"),
            })?;
    }
    Ok(endpoint)
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Conn {
    pub(crate) fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The error for etcd's answer `status` from `endpoint`.
    pub(crate) fn answer(&self, status: tonic::Status, endpoint: &str, op: &'static str) -> Error {
        let user = self.credentials.as_ref().map(|c| c.user.as_str());
        errors::to_error(status, endpoint, op, &self.label, user)
    }

    /// The member to use now.
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.members.len()
    }

    /// Moves on from member `from` (unless another caller already did).
    pub(crate) fn fail_over(&self, from: usize) {
        let next = (from + 1) % self.members.len();
        let _ = self
            .current
            .compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The token to send, authenticating first when there are credentials and
    /// no token of generation newer than `stale` (0: any token will do).
    pub(crate) async fn token(&self, member: usize, stale: u64) -> Result<Option<(String, u64)>> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let mut slot = self.token.lock().await;
        if let (Some(token), generation) = &*slot
            && *generation > stale
        {
            return Ok(Some((token.clone(), *generation)));
        }
        let request = proto::AuthenticateRequest {
            name: credentials.user.clone(),
            password: credentials.password.clone(),
        };
        let response: proto::AuthenticateResponse = self
            .call_member(member, "authenticate", path::AUTHENTICATE, request)
            .await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = (Some(response.token.clone()), generation);
        Ok(Some((response.token, generation)))
    }

    /// One unary call, trying members in turn until `failover_timeout`:
    /// reads move to the next member on any transport or availability
    /// failure; writes only when the request provably never reached one
    /// (otherwise [`Error::OutcomeUnknown`]). An expired token is renewed once.
    pub(crate) async fn call<Req, Resp>(
        &self,
        op: &'static str,
        path: &'static str,
        request: Req,
        retry: Retry,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let deadline = Instant::now() + self.failover_timeout;
        let mut stale_token = 0;
        let mut renewed = false;
        let mut tries = 0u32;
        loop {
            let member = self.current();
            let address = &self.members[member].address;
            let failure = match self.token(member, stale_token).await {
                Err(Error::Unreachable { reason, .. }) => reason,
                Err(e) => return Err(e),
                Ok(token) => {
                    let generation = token.as_ref().map_or(0, |t| t.1);
                    let sent = self
                        .send(member, path, request.clone(), token.map(|t| t.0))
                        .await;
                    match sent {
                        Ok(response) => return Ok(response),
                        Err(status) => match errors::classify(&status) {
                            Class::BadToken if !renewed => {
                                renewed = true;
                                stale_token = generation;
                                continue;
                            }
                            Class::NotSent => errors::describe(&status),
                            Class::Transient if retry == Retry::Safe => errors::describe(&status),
                            Class::Transient => {
                                // Whatever happens next, this member is suspect.
                                self.fail_over(member);
                                return Err(Error::OutcomeUnknown {
                                    path: self.label.clone(),
                                    pid: None,
                                    reason: format!(
                                        "etcd member {address} failed while asked to {op} ({}): \
                                         the cluster may or may not have applied it",
                                        errors::describe(&status)
                                    ),
                                });
                            }
                            Class::BadToken | Class::Final => {
                                return Err(self.answer(status, address, op));
                            }
                        },
                    }
                }
            };
            self.fail_over(member);
            tries += 1;
            if Instant::now() >= deadline {
                return Err(Error::Unreachable {
                    endpoints: self.endpoints(),
                    op,
                    reason: failure,
                });
            }
            // Every member had a go: pause before the next round.
            if tries.is_multiple_of(self.members.len() as u32) {
                let round = (tries / self.members.len() as u32).min(5);
                tokio::time::sleep(Duration::from_millis(50 << round)).await;
            }
        }
    }

    /// One unary call to one member, without failover (but with the token).
    pub(crate) async fn call_member<Req, Resp>(
        &self,
        member: usize,
        op: &'static str,
        path: &'static str,
        request: Req,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let address = &self.members[member].address;
        let token = if path == path::AUTHENTICATE {
            None
        } else {
            Box::pin(self.token(member, 0)).await?.map(|t| t.0)
        };
        self.send(member, path, request, token)
            .await
            .map_err(|status| match errors::classify(&status) {
                Class::NotSent | Class::Transient => Error::Unreachable {
                    endpoints: address.clone(),
                    op,
                    reason: errors::describe(&status),
                },
                Class::BadToken | Class::Final => self.answer(status, address, op),
            })
    }

    async fn send<Req, Resp>(
        &self,
        member: usize,
        path: &'static str,
        request: Req,
        token: Option<String>,
    ) -> std::result::Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = grpc(self.members[member].channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
        let mut request = tonic::Request::new(request);
        request.set_timeout(self.request_timeout);
        add_token(&mut request, token.as_deref());
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let call = grpc.unary(request, PathAndQuery::from_static(path), codec);
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {:?}",
                self.request_timeout
            ))),
        }
    }
}

/// A gRPC client on `channel` that accepts messages of any size: etcd bounds
/// what it sends (and a page of a range is bounded by its limit), and
/// requests are checked against etcd's own limit before they are sent.
pub(crate) fn grpc(channel: Channel) -> tonic::client::Grpc<Channel> {
    tonic::client::Grpc::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

pub(crate) fn add_token<T>(request: &mut tonic::Request<T>, token: Option<&str>) {
    if let Some(token) = token
        && let Ok(value) = MetadataValue::try_from(token)
    {
        request.metadata_mut().insert("token", value);
    }
}
