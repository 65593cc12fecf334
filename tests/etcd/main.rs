//! statelog's etcd layer against real etcd servers (feature `etcd`): the
//! client, the mapping of records onto keys, revisions and transactions,
//! authentication and TLS, and a three-member cluster losing members while
//! client processes write.
//!
//! Needs an `etcd` binary on PATH (Debian's etcd-server; `.ci/run` installs
//! it); without one the tests fail, never skip.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod children;
mod cluster;
mod coordination;
mod harness;
mod kv;
mod store;
mod sync_state;
