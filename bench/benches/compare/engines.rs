//! The engines under comparison, behind one small interface.

use std::io::Write;
use std::path::Path;

use crate::common::Record;
use crate::{fsync_limit, json_file, redb_peer, sqlite_peer, statelog_engine};

/// A store of `Record`s, opened in a directory.
pub trait Engine: Send + Sync {
    /// Writes records `keys[range]` with version 0, `batch` per durable commit.
    fn load(&self, keys: &[String], batch: usize);
    /// A handle for one thread.
    fn worker(&self) -> Box<dyn Worker + '_>;
    /// Writes every record as one JSON line; returns the number of records.
    fn stream(&self, out: &mut dyn Write) -> u64;
    /// Group-commit counters, for engines that have them.
    fn counters(&self) -> Option<Counters> {
        None
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub commits: u64,
    pub batches: u64,
    pub conflicts: u64,
}

/// What one thread does.
pub trait Worker {
    /// One durable read-check-bump-write of the record's version, retried on a
    /// lost race if the engine can detect one.
    fn update(&mut self, key: &str, seed: u64);
    /// One point read.
    fn get(&mut self, key: &str) -> Record;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FsyncLimit,
    StatelogSync,
    StatelogRelaxed,
    StatelogNoPrealloc,
    Redb,
    RedbNonDurable,
    Sqlite,
    JsonFile,
    JsonFileNoLock,
}

pub const ALL: [Kind; 9] = [
    Kind::FsyncLimit,
    Kind::StatelogSync,
    Kind::StatelogRelaxed,
    Kind::StatelogNoPrealloc,
    Kind::Redb,
    Kind::RedbNonDurable,
    Kind::Sqlite,
    Kind::JsonFile,
    Kind::JsonFileNoLock,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::FsyncLimit => "fsync-limit",
            Kind::StatelogSync => "statelog-sync",
            Kind::StatelogRelaxed => "statelog-relaxed-5ms",
            Kind::StatelogNoPrealloc => "statelog-sync-noprealloc",
            Kind::Redb => "redb",
            Kind::RedbNonDurable => "redb-nondurable",
            Kind::Sqlite => "sqlite-wal-full",
            Kind::JsonFile => "json-file",
            Kind::JsonFileNoLock => "json-file-nolock",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the engine claims that concurrent read-modify-writes lose nothing.
    pub fn claims_safety(self) -> bool {
        !matches!(self, Kind::JsonFileNoLock | Kind::FsyncLimit)
    }

    pub fn open(self, dir: &Path) -> Box<dyn Engine> {
        match self {
            Kind::FsyncLimit => Box::new(fsync_limit::FsyncLimit::open(dir)),
            Kind::StatelogSync => Box::new(statelog_engine::open(dir, statelog_engine::Mode::Sync)),
            Kind::StatelogRelaxed => {
                Box::new(statelog_engine::open(dir, statelog_engine::Mode::Relaxed))
            }
            Kind::StatelogNoPrealloc => Box::new(statelog_engine::open(
                dir,
                statelog_engine::Mode::NoPrealloc,
            )),
            Kind::Redb => Box::new(redb_peer::RedbPeer::open(dir, true)),
            Kind::RedbNonDurable => Box::new(redb_peer::RedbPeer::open(dir, false)),
            Kind::Sqlite => Box::new(sqlite_peer::SqlitePeer::open(dir)),
            Kind::JsonFile => Box::new(json_file::JsonFile::open(dir, true)),
            Kind::JsonFileNoLock => Box::new(json_file::JsonFile::open(dir, false)),
        }
    }
}
