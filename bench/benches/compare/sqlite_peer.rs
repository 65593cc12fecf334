//! SQLite through rusqlite (bundled), as its users would: WAL journal,
//! `synchronous=FULL`, a busy timeout, one connection per thread, prepared
//! statements, and an optimistic update: read the version, then
//! `UPDATE ... SET version=version+1 ... WHERE key=? AND version=?` in autocommit,
//! re-read and retry if it changed no row.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, params};

use crate::common::Record;
use crate::engines::{Engine, Worker};
use crate::redb_peer::Line;

pub struct SqlitePeer {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn connect(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open sqlite");
    conn.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("journal_mode=WAL");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous=FULL");
    conn
}

impl SqlitePeer {
    pub fn open(dir: &Path) -> SqlitePeer {
        let path = dir.join("peer.sqlite");
        let conn = connect(&path);
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                 key TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 at INTEGER NOT NULL,
                 payload TEXT NOT NULL)",
        )
        .expect("create the table");
        SqlitePeer {
            path,
            conn: Mutex::new(conn),
        }
    }
}

impl Engine for SqlitePeer {
    fn load(&self, keys: &[String], batch: usize) {
        let mut conn = self.conn.lock().expect("the connection");
        for chunk in keys.chunks(batch) {
            let txn = conn.transaction().expect("begin");
            {
                let mut insert = txn
                    .prepare_cached(
                        "INSERT INTO records (key, version, at, payload) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .expect("prepare");
                for (i, key) in chunk.iter().enumerate() {
                    let r = Record::new(0, i as u64);
                    insert
                        .execute(params![key, r.version as i64, r.at, r.payload])
                        .expect("insert");
                }
            }
            txn.commit().expect("commit a batch");
        }
    }

    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(SqliteWorker {
            conn: connect(&self.path),
        })
    }

    fn stream(&self, out: &mut dyn Write) -> u64 {
        let conn = self.conn.lock().expect("the connection");
        let mut select = conn
            .prepare("SELECT key, version, at, payload FROM records ORDER BY key")
            .expect("prepare");
        let mut rows = select.query([]).expect("query");
        let mut n = 0;
        while let Some(row) = rows.next().expect("read a row") {
            let key: String = row.get(0).expect("key");
            let record = Record {
                version: row.get::<_, i64>(1).expect("version") as u64,
                at: row.get(2).expect("at"),
                payload: row.get(3).expect("payload"),
            };
            let line = Line {
                key: &key,
                record: &record,
            };
            serde_json::to_writer(&mut *out, &line).expect("write a line");
            out.write_all(b"\n").expect("write a line");
            n += 1;
        }
        n
    }
}

struct SqliteWorker {
    conn: Connection,
}

impl Worker for SqliteWorker {
    fn update(&mut self, key: &str, seed: u64) {
        loop {
            let version: i64 = self
                .conn
                .prepare_cached("SELECT version FROM records WHERE key = ?1")
                .expect("prepare")
                .query_row([key], |row| row.get(0))
                .expect("read the version");
            let next = Record::new(version as u64 + 1, seed);
            let changed = self
                .conn
                .prepare_cached(
                    "UPDATE records SET version = version + 1, at = ?1, payload = ?2
                     WHERE key = ?3 AND version = ?4",
                )
                .expect("prepare")
                .execute(params![next.at, next.payload, key, version])
                .expect("update");
            if changed == 1 {
                return;
            }
        }
    }

    fn get(&mut self, key: &str) -> Record {
        self.conn
            .prepare_cached("SELECT version, at, payload FROM records WHERE key = ?1")
            .expect("prepare")
            .query_row([key], |row| {
                Ok(Record {
                    version: row.get::<_, i64>(0)? as u64,
                    at: row.get(1)?,
                    payload: row.get(2)?,
                })
            })
            .expect("get")
    }
}
