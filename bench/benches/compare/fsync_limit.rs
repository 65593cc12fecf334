//! The ceiling for one writer that syncs every commit: 256 bytes appended to a
//! preallocated file with `pwrite` + `fdatasync`. In W2 each thread does the
//! same to the one file at once: what the disk gives concurrent syncs.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::Record;
use crate::engines::{Engine, Worker};

const FILE_LEN: u64 = 64 << 20;
const WRITE_LEN: u64 = 256;

pub struct FsyncLimit {
    file: File,
    offset: AtomicU64,
}

impl FsyncLimit {
    pub fn open(dir: &Path) -> FsyncLimit {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("fsync-limit.dat"))
            .expect("create the fsync-limit file");
        // Preallocate the way the statelog log does: zeros, written and synced.
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..FILE_LEN >> 20 {
            file.write_all(&zeros).expect("preallocate");
        }
        file.sync_all().expect("sync the preallocated file");
        FsyncLimit {
            file,
            offset: AtomicU64::new(0),
        }
    }
}

impl Engine for FsyncLimit {
    fn load(&self, _keys: &[String], _batch: usize) {}

    fn worker(&self) -> Box<dyn Worker + '_> {
        Box::new(FsyncWorker {
            limit: self,
            buf: vec![0xA5; WRITE_LEN as usize],
        })
    }

    fn stream(&self, _out: &mut dyn Write) -> u64 {
        0
    }
}

struct FsyncWorker<'a> {
    limit: &'a FsyncLimit,
    buf: Vec<u8>,
}

impl Worker for FsyncWorker<'_> {
    fn update(&mut self, _key: &str, seed: u64) {
        self.buf[0] = seed as u8;
        let at = self.limit.offset.fetch_add(WRITE_LEN, Ordering::Relaxed) % FILE_LEN;
        self.limit.file.write_all_at(&self.buf, at).expect("pwrite");
        self.limit.file.sync_data().expect("fdatasync");
    }

    fn get(&mut self, _key: &str) -> Record {
        unreachable!("fsync-limit has no reads")
    }
}
