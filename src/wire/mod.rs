//! The protocol between the process that holds a store and the others: frames
//! (`frame.rs`), messages (`message.rs`), errors (`error.rs`) and conversions
//! to and from the engine's types (`convert.rs`).
//!
//! **Invariant:** pure: no I/O, no sockets, no engine. Everything here can be
//! fuzzed in memory (`testkit::fuzz_wire`); reading and writing frames on a
//! socket is `serve::channel`.
//!
//! Version rules: the client hello and the server hello keep their fields for
//! ever, so that any two versions can tell each other apart. Adding an
//! optional field (read as its default when absent) or a new request that an
//! older holder answers with an error needs no new version; anything an older
//! peer could misread does, and a holder refuses a client whose version it
//! does not speak (`PROTOCOL_VERSION`, DESIGN.md "The wire").

pub mod convert;
pub mod error;
pub mod frame;
pub mod message;

pub use self::error::WireError;
