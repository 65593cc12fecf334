//! `--at-revision N` and `--at-time T`, shared by `get`, `list` and
//! `export`: read the store as it was, from the history it still holds.

use statelog::{Snapshot, Store, Timestamp};

/// Where in the past a read looks.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AtArgs {
    /// Read the store as it was right after revision N (from the history it
    /// still holds: `statelog stats` shows the first revision)
    #[arg(long, value_name = "N", conflicts_with = "at_time")]
    pub at_revision: Option<u64>,
    /// Read the store as the commits before time T left it (RFC 3339)
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub at_time: Option<Timestamp>,
}

impl AtArgs {
    /// True when a point in the past was given.
    pub fn is_past(&self) -> bool {
        self.at_revision.is_some() || self.at_time.is_some()
    }

    /// A snapshot at the point asked for, or of now.
    pub fn snapshot(&self, store: &Store) -> statelog::Result<Snapshot> {
        match (self.at_revision, self.at_time) {
            (Some(revision), _) => store.snapshot_at_revision(revision),
            (None, Some(time)) => store.snapshot_at_time(time),
            (None, None) => store.snapshot(),
        }
    }
}

/// Parses an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse()
        .map_err(|e: statelog::ParseTimestampError| e.to_string())
}
