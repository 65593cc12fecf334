//! Internals for the test suite and the fuzz targets: the file-system boundary,
//! the raw decoders, and the bodies of the fuzz targets. Compiled only with the
//! `testkit` feature; not covered by semver.

pub mod fuzz;

pub use crate::fs::{FileHandle, Fs, LockError, LockGuard, OpenMode, RealFs};
pub use crate::log::{frame, record, segment};
