//! statelog: an embedded transactional state store.
//!
//! Records are addressed by namespace and key, hold any serde value (stored as
//! MessagePack with named fields), and carry a version and revisions.
//! Optimistic concurrency (compare-and-swap on the version, and
//! [`Store::update`], which retries) means no update is ever lost. Every commit
//! is appended to a CRC-framed log and synced before it is acknowledged or
//! visible; the state lives in redb and is rebuilt from the log after a crash.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use statelog::{Options, Store};
//!
//! #[derive(Serialize, Deserialize, Default)]
//! struct Task {
//!     status: String,
//!     progress: u8,
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("pipeline-state"), Options::default())?;
//! store.put("tasks", "task_123", &Task { status: "queued".into(), progress: 0 })?;
//!
//! // Many threads may do this at once; none of their changes is lost.
//! let task = store.update("tasks", "task_123", |old: Option<Task>| -> statelog::Result<Task> {
//!     let mut task = old.unwrap_or_default();
//!     task.status = "running".into();
//!     task.progress += 10;
//!     Ok(task)
//! })?;
//! assert_eq!(task.version, 2);
//! assert_eq!(task.value.progress, 10);
//! # Ok::<(), statelog::Error>(())
//! ```
//!
//! Any number of processes may open one store at once: the first holds it and
//! serves the others over a Unix socket in the store directory, and their
//! handles work through it with the same API and results (see [`Store`],
//! [`Options::serve`], [`Options::remote`]).
//!
//! Online backups and point-in-time restore are in [`backup`]
//! ([`Store::backup`], [`backup::restore`]); checking, repairing and compacting
//! a store in [`maintenance`].
//!
//! See `DESIGN.md` for the on-disk formats and what is durable when.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod access;
mod coord;
mod counter;
mod db;
mod engine;
mod error;
// Stores on etcd; the raw client and mapping are public only through the
// test kit (for the etcd tests and benchmark).
#[cfg(feature = "etcd")]
#[cfg_attr(not(feature = "testkit"), allow(dead_code, unused_imports))]
mod etcd;
mod fs;
mod key;
mod layout;
mod log;
mod options;
mod poll_turn;
mod remote;
mod serve;
mod store;
mod time;
mod value;
mod watch;
mod wire;

pub use access::coord::{DEFAULT_IDEMPOTENCY_RETENTION, MAX_IDEMPOTENCY_KEY_LEN};
pub use access::past::RecordVersion;
pub use coord::leases::{MAX_LEASE_TTL, MIN_LEASE_TTL};
pub use coord::patch::Patch;
pub use counter::{MAX_IMPORTED_REVISION, MAX_REVISION, MAX_VERSION};
pub use error::{Error, KeyPart, Result, Shown};
#[cfg(feature = "etcd")]
pub use etcd::EtcdOptions;
pub use key::{MAX_KEY_LEN, MAX_NAMESPACE_LEN};
pub use log::CutTail;
pub use options::{CheckpointPolicy, Durability, Options, RetentionPolicy, RetryPolicy};
pub use store::coordination::{
    Batch, BatchOutcome, KeyedUpdate, Lease, LeaseInfo, LockGrant, LockInfo, WriteResult,
};
pub use store::{
    Committed, Deleted, KeyRange, List, Meta, Recovery, RestoreRecord, STORE_FORMAT_VERSION,
    Snapshot, Stats, Store, Tx, TxOutcome,
};
pub use time::{ParseTimestampError, Timestamp};
pub use value::{MAX_DEPTH, MAX_VALUE_LEN, RawValue, Versioned};
pub use watch::{Change, DEFAULT_WATCH_BUFFER, Event, Watch, WatchEvent, Watcher};

/// The log format (segment header and frames) this build writes; it reads
/// this one and every one before. With [`STORE_FORMAT_VERSION`],
/// [`SCHEMA_VERSION`], [`snapshot::FORMAT_VERSION`],
/// [`backup::BACKUP_FORMAT_VERSION`] and [`PROTOCOL_VERSION`], what a build
/// says it reads and writes (the command line's `--version` shows them).
pub const LOG_FORMAT_VERSION: u32 = log::segment::LOG_FORMAT_VERSION;
/// The schema of the state database (its redb tables and record encoding)
/// this build writes and reads.
pub const SCHEMA_VERSION: u64 = db::schema::SCHEMA_VERSION;
/// The protocol this build speaks on a holder's socket with other processes
/// (see [`Options::serve`]).
pub const PROTOCOL_VERSION: u32 = wire::message::PROTOCOL_VERSION;

pub mod backup;
pub mod bigint;
pub mod maintenance;
pub mod snapshot;

#[cfg(feature = "web")]
pub mod web;

#[cfg(feature = "tokio")]
pub mod async_store;
#[cfg(feature = "tokio")]
pub use async_store::{AsyncStore, AsyncWatcher};

#[cfg(feature = "testkit")]
pub mod testkit;

// The README's Rust examples, compiled and run as doctests (its other blocks
// run in cli/tests/readme.rs and python/tests/test_readme.py).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
