//! The append-only log: the source of truth for every commit.
//!
//! - `frame`: one record's framing (length, checksums). Pure codec.
//! - `segment`: segment headers and file names. Pure codec.
//! - `record`: the commit record inside a frame. Pure codec.
//! - `catalog`: finding segments and checking their headers.
//! - `reader`: walking frames and commits, with every integrity check.
//! - `writer`: appending, syncing, preallocating and rotating segments.
//! - `recovery`: opening the log after a clean close or a crash.
//! - `archive`: segment files outside the running log: copies into backups,
//!   base segments, moving segments aside.
//! - `retention`: removing old segments behind the checkpoint.
//! - `survey`: reading a whole, possibly damaged log without changing it.
//! - `sync`: the gate every sync of the log goes through.
//! - `syncer`: the thread that syncs a batch while the engine applies it.
//! - `seal`: seals and the active segment's size, which tell a lost newest
//!   segment or a cut tail.
//!
//! Only this module touches segment files.

pub(crate) mod archive;
pub(crate) mod catalog;
pub mod frame;
pub(crate) mod reader;
pub mod record;
pub(crate) mod recovery;
pub(crate) mod retention;
pub(crate) mod seal;
pub mod segment;
pub(crate) mod survey;
pub(crate) mod sync;
pub(crate) mod syncer;
pub(crate) mod writer;

pub use reader::Position;
pub use recovery::CutTail;
