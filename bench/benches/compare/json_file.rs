//! The status quo: one JSON file holding every record. An update takes an
//! exclusive `flock` on a lock file beside it, reads and parses the whole file,
//! changes one entry, writes a temporary file, fsyncs it and renames it over the
//! original. Reads parse the whole file (no lock: the rename is atomic). The
//! `nolock` variant skips the lock, as many scripts do, and loses updates.
//!
//! Loading writes the whole map once (rewriting it per batch would be quadratic).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::Record;
use crate::engines::{Engine, Worker};
use crate::redb_peer::Line;

type State = BTreeMap<String, Record>;

pub struct JsonFile {
    path: PathBuf,
    lock_path: PathBuf,
    locked: bool,
    workers: AtomicU64,
}

impl JsonFile {
    pub fn open(dir: &Path, locked: bool) -> JsonFile {
        let file = JsonFile {
            path: dir.join("state.json"),
            lock_path: dir.join("state.json.lock"),
            locked,
            workers: AtomicU64::new(0),
        };
        if !file.path.exists() {
            file.write(&State::new(), "init");
        }
        file
    }

    fn read(&self) -> State {
        let bytes = std::fs::read(&self.path).expect("read the JSON file");
        serde_json::from_slice(&bytes).expect("parse the JSON file")
    }

    fn write(&self, state: &State, tag: &str) {
        let tmp = self.path.with_extension(format!("json.tmp-{tag}"));
        let file = File::create(&tmp).expect("create the temporary file");
        let mut out = BufWriter::new(file);
        serde_json::to_writer(&mut out, state).expect("write the JSON file");
        let file = out.into_inner().expect("flush the JSON file");
        file.sync_all().expect("fsync the temporary file");
        std::fs::rename(&tmp, &self.path).expect("rename over the JSON file");
    }
}

impl Engine for JsonFile {
    fn load(&self, keys: &[String], _batch: usize) {
        let mut state = self.read();
        for (i, key) in keys.iter().enumerate() {
            state.insert(key.clone(), Record::new(0, i as u64));
        }
        self.write(&state, "load");
    }

    fn worker(&self) -> Box<dyn Worker + '_> {
        let id = self.workers.fetch_add(1, Ordering::Relaxed);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .expect("open the lock file");
        Box::new(JsonWorker {
            file: self,
            lock,
            tag: format!("w{id}"),
        })
    }

    fn stream(&self, out: &mut dyn Write) -> u64 {
        let state = self.read();
        for (key, record) in &state {
            serde_json::to_writer(&mut *out, &Line { key, record }).expect("write a line");
            out.write_all(b"\n").expect("write a line");
        }
        state.len() as u64
    }
}

struct JsonWorker<'a> {
    file: &'a JsonFile,
    lock: File,
    tag: String,
}

impl Worker for JsonWorker<'_> {
    fn update(&mut self, key: &str, seed: u64) {
        if self.file.locked {
            self.lock.lock().expect("flock");
        }
        let mut state = self.file.read();
        let next = state
            .get(key)
            .map_or_else(|| Record::new(1, seed), |r| r.bumped(seed));
        state.insert(key.to_owned(), next);
        self.file.write(&state, &self.tag);
        if self.file.locked {
            self.lock.unlock().expect("unlock");
        }
    }

    fn get(&mut self, key: &str) -> Record {
        self.file.read().remove(key).expect("the record exists")
    }
}
