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
//! - `backend.rs`: a store on etcd as the access layer's `Backend` (what
//!   `Store::open("etcd://...")` returns); `view.rs`: its snapshots (reads at
//!   one etcd revision); `identity.rs`: the store's identity key;
//!   `options.rs`: [`EtcdOptions`] and the `etcd://` address; `backup.rs`,
//!   `restore.rs`: backups as a base at one revision, and their restore into
//!   etcd.
//!
//! See "Stores on etcd" in DESIGN.md. **Boundary:** nothing outside this
//! module sees a tonic, prost or tokio type.

mod admin;
pub(crate) mod backend;
mod backup;
mod client;
mod errors;
mod identity;
mod keys;
mod lease;
mod ops;
mod options;
pub mod proto;
mod record;
pub(crate) mod restore;
mod view;
mod watch;

pub use client::{Client, ClientOptions, Credentials, TlsOptions};
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
pub use watch::{Watch, WatchBatch};
