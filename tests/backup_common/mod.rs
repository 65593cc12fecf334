//! Helpers shared by the backup, restore, check and repair tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use statelog::{Options, Store, Timestamp};

/// A record as read back: version, create and modify revisions, update time,
/// value bytes.
pub type Rec = (u64, u64, u64, Timestamp, Vec<u8>);
/// A whole store's contents.
pub type Dump = BTreeMap<(String, String), Rec>;

/// A fresh temporary directory in memory (`/dev/shm`) where there is one:
/// these tests sync a lot, and a real disk only costs time.
pub fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("statelog-recovery-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::Builder::new()
        .prefix("statelog-recovery-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Every record of the store, from one snapshot.
pub fn dump(store: &Store) -> Dump {
    store
        .read(|snap| {
            let mut out = BTreeMap::new();
            for ns in snap.namespaces()? {
                for item in snap.list_raw(&ns, ..)? {
                    let (key, r) = item?;
                    out.insert(
                        (ns.clone(), key),
                        (
                            r.version,
                            r.create_revision,
                            r.mod_revision,
                            r.updated_at,
                            r.value.as_msgpack().to_vec(),
                        ),
                    );
                }
            }
            Ok(out)
        })
        .expect("read the store")
}

/// Opens the store in `path` (which must exist), dumps it and closes it.
pub fn dump_path(path: &Path) -> (u64, Dump) {
    let store = Store::open(path, Options::default().create(false)).expect("open");
    let out = (store.revision(), dump(&store));
    store.close().expect("close");
    out
}

/// The segment files of a store's (or backup's) `log` directory: first
/// revision, path, size.
pub fn segments(dir: &Path) -> Vec<(u64, PathBuf, u64)> {
    let mut out: Vec<(u64, PathBuf, u64)> = std::fs::read_dir(dir.join("log"))
        .expect("read the log directory")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let digits = name.strip_suffix(".log")?;
            if digits.len() != 20 {
                return None;
            }
            let first = digits.parse().ok()?;
            Some((first, e.path(), e.metadata().ok()?.len()))
        })
        .collect();
    out.sort();
    out
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` (but the lock file) with its bytes.
pub fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "LOCK") {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}
