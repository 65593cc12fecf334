//! redb used directly, as its users would: one table of MessagePack records (the
//! encoding statelog uses too), one write transaction per update that reads the
//! record, checks and bumps its version and writes it back. Default builder
//! settings; durable commits (redb's default, `Immediate`) or, as the
//! non-durable variant, `Durability::None`.

use std::io::Write;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use crate::common::Record;
use crate::engines::{Engine, Worker};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

pub struct RedbPeer {
    db: Database,
    durable: bool,
}

#[derive(Serialize)]
pub struct Line<'a> {
    pub key: &'a str,
    #[serde(flatten)]
    pub record: &'a Record,
}

pub fn encode(record: &Record) -> Vec<u8> {
    rmp_serde::to_vec_named(record).expect("encode a record")
}

pub fn decode(bytes: &[u8]) -> Record {
    rmp_serde::from_slice(bytes).expect("decode a record")
}

impl RedbPeer {
    pub fn open(dir: &Path, durable: bool) -> RedbPeer {
        let db = Database::create(dir.join("peer.redb")).expect("open redb");
        RedbPeer { db, durable }
    }

    fn begin_write(&self) -> redb::WriteTransaction {
        let mut txn = self.db.begin_write().expect("begin a write");
        if !self.durable {
            txn.set_durability(redb::Durability::None)
                .expect("set durability");
        }
        txn
    }
}

impl Engine for RedbPeer {
    fn load(&self, keys: &[String], batch: usize) {
        for chunk in keys.chunks(batch) {
            let txn = self.begin_write();
            {
                let mut table = txn.open_table(RECORDS).expect("open the table");
                for (i, key) in chunk.iter().enumerate() {
                    table
                        .insert(key.as_str(), encode(&Record::new(0, i as u64)).as_slice())
                        .expect("insert");
                }
            }
            txn.commit().expect("commit a batch");
        }
    }

    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(RedbWorker { peer: self })
    }

    fn stream(&self, out: &mut dyn Write) -> u64 {
        let txn = self.db.begin_read().expect("begin a read");
        let table = txn.open_table(RECORDS).expect("open the table");
        let mut n = 0;
        for entry in table.iter().expect("iterate") {
            let (key, value) = entry.expect("read an entry");
            let record = decode(value.value());
            let line = Line {
                key: key.value(),
                record: &record,
            };
            serde_json::to_writer(&mut *out, &line).expect("write a line");
            out.write_all(b"\n").expect("write a line");
            n += 1;
        }
        n
    }
}

struct RedbWorker<'a> {
    peer: &'a RedbPeer,
}

impl Worker for RedbWorker<'_> {
    fn update(&mut self, key: &str, seed: u64) {
        let txn = self.peer.begin_write();
        {
            let mut table = txn.open_table(RECORDS).expect("open the table");
            let old = table.get(key).expect("get").map(|v| decode(v.value()));
            let next = old.map_or_else(|| Record::new(1, seed), |r| r.bumped(seed));
            table.insert(key, encode(&next).as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }

    fn get(&mut self, key: &str) -> Record {
        let txn = self.peer.db.begin_read().expect("begin a read");
        let table = txn.open_table(RECORDS).expect("open the table");
        let value = table.get(key).expect("get").expect("the record exists");
        decode(value.value())
    }
}
