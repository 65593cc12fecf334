//! Stores on an etcd v3 cluster (feature `etcd`): the client and the mapping
//! of a statelog store onto etcd's keys, revisions and transactions.
//!
//! - `client.rs`: [`Client`], a blocking facade over etcd's gRPC API (KV,
//!   Lease, Maintenance, Auth) on a small tokio runtime of its own, with
//!   failover between endpoints, authentication and TLS; `watch.rs` and
//!   `lease.rs` add watches and lease keep-alives; `errors.rs` decides what a
//!   failure means (retry, unknown outcome, or an answer).
//! - `proto.rs`: the wire messages, written out for prost (no build script,
//!   no `protoc`).
//! - `keys.rs`: [`Layout`], where a store's records and metadata live under
//!   its prefix. `record.rs`: the bytes of a record's value and etcd's
//!   [`Limits`].
//! - `ops.rs`: [`EtcdStore`], statelog's reads and commits as etcd ranges and
//!   transactions.
//! - `coord.rs`: patches, preconditions, fences, idempotency keys, leases
//!   and locks, as compare-and-swap loops of `Txn`s and etcd leases.
//! - `feed.rs`: statelog's watch as an etcd watch, a record's history, and
//!   where the store stood at a past revision or time.
//! - `view.rs`: snapshots (reads at one etcd revision); `identity.rs`: the
//!   store's identity key; `options.rs`: [`EtcdOptions`] and the `etcd://`
//!   address; `restore.rs`: loading a restored backup's records.
//!
//! The store as a `Backend` is `store/etcd.rs`, and its backups are
//! `backup/etcd_run.rs` and `backup/etcd.rs`: this module depends on neither.
//! See "Stores on etcd" in DESIGN.md. **Boundary:** nothing outside this
//! module sees a tonic, prost or tokio type.

mod admin;
mod client;
mod coord;
mod errors;
mod feed;
mod identity;
mod keys;
mod lease;
mod ops;
mod options;
pub mod proto;
pub(crate) mod record;
pub(crate) mod restore;
pub(crate) mod view;
mod watch;

pub use client::{Client, ClientOptions, Credentials, TlsOptions};
pub(crate) use coord::ttl_seconds;
pub use keys::{Layout, MAX_PREFIX_LEN, prefix_end};
pub use lease::KeepAlive;
pub use ops::{
    Commit, CommitOutcome, EtcdRecord, EtcdStore, RecordChange, RecordEvent, RecordWatch,
    WriteResult,
};
pub use options::{
    ENV_CA, ENV_CERT, ENV_KEY, ENV_MAX_REQUEST_BYTES, ENV_MAX_TXN_OPS, ENV_PASSWORD, ENV_USER,
    EtcdOptions,
};
pub use record::Limits;

use self::client::Client as EtcdClient;
use self::options::Address;
use crate::error::Result;
use crate::time::Clock;
pub use watch::{Watch, WatchBatch};

/// Opens the store at `address` (`etcd://...`): reads its identity, creating
/// the store when `options` allow. Returns the store and its id.
pub(crate) fn open_store(
    address: &str,
    etcd: Option<&EtcdOptions>,
    create: bool,
    clock: Clock,
) -> Result<(EtcdStore, String)> {
    let etcd = match etcd {
        Some(etcd) => etcd.clone(),
        None => EtcdOptions::from_env()?,
    };
    let parsed = Address::parse(address)?;
    let label = parsed.to_path();
    let client = EtcdClient::labelled(&etcd.client_options(parsed.endpoints.clone())?, &label)?;
    let identity = identity::open(&client, &parsed.layout, &label, create)?;
    let store =
        EtcdStore::new(client, parsed.layout, etcd.limits()).opened(identity.revision, clock);
    Ok((store, identity.store_id))
}
