//! Internals for the test suite and the fuzz targets: the file-system boundary,
//! the raw decoders, and the bodies of the fuzz targets. Compiled only with the
//! `testkit` feature; not covered by semver.

pub mod faults;
pub mod fuzz;
pub mod fuzz_log;
pub mod fuzz_snapshot;
pub mod fuzz_wire;
pub mod log_reader;
pub mod sim;

pub use crate::fs::{FileHandle, Fs, LockError, LockGuard, OpenMode, RealFs};
pub use crate::log::{Position, frame, record, segment};
/// The protocol between a store's holder and other processes (frames and
/// messages), for tests that play a misbehaving peer.
pub use crate::wire::{frame as wire_frame, message as wire_message};

/// The etcd client and the mapping of a store onto etcd (feature `etcd`), for
/// the etcd tests and benchmark until stores open on etcd through the public
/// API.
#[cfg(feature = "etcd")]
pub mod etcd {
    pub use crate::etcd::*;
}
