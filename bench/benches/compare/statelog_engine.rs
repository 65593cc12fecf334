//! statelog, used through its public API the way the README shows.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use statelog::snapshot::{ExportOptions, Format};
use statelog::{CheckpointPolicy, Durability, Options, Store};

use crate::common::Record;
use crate::engines::{Counters, Engine, Worker};

pub const NS: &str = "bench";

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Sync,
    Relaxed,
    NoPrealloc,
}

pub fn options(mode: Mode) -> Options {
    let options = match mode {
        Mode::Sync => Options::default(),
        Mode::Relaxed => Options::default().durability(Durability::Relaxed {
            max_delay: Duration::from_millis(5),
        }),
        Mode::NoPrealloc => Options::default().preallocate(0),
    };
    // For experiments only: statelog's defaults unless these are set.
    let options = match std::env::var("STATELOG_BENCH_CHECKPOINT_COMMITS") {
        Ok(n) => options.checkpoint(
            CheckpointPolicy::default().commits(
                n.parse()
                    .expect("STATELOG_BENCH_CHECKPOINT_COMMITS: a number"),
            ),
        ),
        Err(_) => options,
    };
    match std::env::var("STATELOG_BENCH_CACHE_MIB") {
        Ok(n) => options.cache_size(
            n.parse::<usize>()
                .expect("STATELOG_BENCH_CACHE_MIB: a number")
                << 20,
        ),
        Err(_) => options,
    }
}

pub fn open(dir: &Path, mode: Mode) -> Store {
    Store::open(dir.join("store"), options(mode)).expect("open statelog")
}

/// Streams every record out as JSON Lines with the snapshot exporter (the
/// path `statelog export --format jsonl` takes); returns the record count.
pub fn stream(store: &Store, out: &mut dyn Write) -> u64 {
    let options = ExportOptions::new(Format::JsonLines);
    statelog::snapshot::export(store, out, &options)
        .expect("export")
        .records
}

impl Engine for Store {
    fn load(&self, keys: &[String], batch: usize) {
        for chunk in keys.chunks(batch) {
            self.transaction(|tx| {
                for (i, key) in chunk.iter().enumerate() {
                    tx.put(NS, key, &Record::new(0, i as u64))?;
                }
                Ok::<_, statelog::Error>(())
            })
            .expect("load a batch");
        }
    }

    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(self.clone())
    }

    fn stream(&self, out: &mut dyn Write) -> u64 {
        stream(self, out)
    }

    fn counters(&self) -> Option<Counters> {
        let stats = self.stats();
        Some(Counters {
            commits: stats.commits,
            batches: stats.batches,
            conflicts: stats.conflicts,
        })
    }
}

impl Worker for Store {
    fn update(&mut self, key: &str, seed: u64) {
        Store::update(
            self,
            NS,
            key,
            |old: Option<Record>| -> statelog::Result<Record> {
                Ok(old.map_or_else(|| Record::new(1, seed), |r| r.bumped(seed)))
            },
        )
        .expect("statelog update");
    }

    fn get(&mut self, key: &str) -> Record {
        Store::get::<Record>(self, NS, key)
            .expect("statelog get")
            .expect("the record exists")
            .value
    }
}
