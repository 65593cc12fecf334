//! The bodies of the snapshot importer fuzz targets (`json_import`,
//! `markdown_import`). For any bytes:
//!
//! - reading never panics; what reads is a valid snapshot, and writing it
//!   again and reading that back gives the same header and records, and the
//!   same bytes when written once more;
//! - importing into a store that already holds records is all or nothing: it
//!   succeeds exactly when reading does, and then every record is in the store
//!   as read; otherwise the store is unchanged, byte for byte.
//!
//! The store lives in a temporary directory per thread, removed when the
//! thread ends, and is replaced when it has grown.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use crate::{Durability, Options, Store};

/// Imports arbitrary bytes as a JSON snapshot (either layout).
pub fn json_import(data: &[u8]) {
    check_import(data, Format::Json);
}

/// Imports arbitrary bytes as a Markdown snapshot.
pub fn markdown_import(data: &[u8]) {
    check_import(data, Format::Markdown);
}

fn check_import(data: &[u8], format: Format) {
    let read = snapshot::read(data, format);
    if let Ok((header, records)) = &read {
        let options = ExportOptions::new(format);
        let mut first = Vec::new();
        snapshot::write(*header, records.clone(), &mut first, &options)
            .expect("what was read can be written");
        let (header2, records2) =
            snapshot::read(first.as_slice(), format).expect("what was written reads back");
        assert_eq!(*header, header2, "header changed in a round trip");
        let sorted = |mut r: Vec<snapshot::SnapshotRecord>| {
            r.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
            r
        };
        assert_eq!(
            sorted(records.clone()),
            sorted(records2.clone()),
            "records changed"
        );
        let mut second = Vec::new();
        snapshot::write(header2, records2, &mut second, &options).expect("write again");
        assert_eq!(first, second, "writing the same records twice differs");
    }
    with_store(|store| {
        let before = dump(store);
        let revision = store.revision();
        let merge = ImportMode::Merge {
            check_versions: false,
            skip_conflicts: false,
        };
        match snapshot::import(store, data, &ImportOptions::new(format, merge)) {
            Ok(report) => {
                let (_, records) = read.as_ref().expect("import succeeded where read failed");
                assert_eq!(report.records as usize, records.len());
                for r in records {
                    let stored = store
                        .get_raw(&r.namespace, &r.key)
                        .expect("read back")
                        .expect("an imported record is in the store");
                    assert_eq!(stored.value, r.value, "{}/{} differs", r.namespace, r.key);
                }
            }
            Err(e) => {
                assert!(read.is_err(), "import failed where read succeeded: {e}");
                assert_eq!(store.revision(), revision, "a failed import committed");
                assert_eq!(dump(store), before, "a failed import changed the store");
            }
        }
    });
}

fn dump(store: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    snapshot::export(store, &mut out, &ExportOptions::new(Format::JsonLines))
        .expect("export the fuzz store");
    out
}

/// A store with a few records, in a directory removed on drop.
struct FuzzStore {
    dir: PathBuf,
    store: Option<Store>,
}

impl FuzzStore {
    fn new() -> FuzzStore {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "statelog-fuzz-snapshot-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let options = Options::default().durability(Durability::Relaxed {
            max_delay: Duration::from_secs(1),
        });
        let store = Store::open(&dir, options).expect("open the fuzz store");
        store
            .put("ns", "k", &"before")
            .expect("seed the fuzz store");
        store.put("ns", "n", &1).expect("seed the fuzz store");
        FuzzStore {
            dir,
            store: Some(store),
        }
    }
}

impl Drop for FuzzStore {
    fn drop(&mut self) {
        drop(self.store.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

thread_local! {
    static STORE: RefCell<Option<FuzzStore>> = const { RefCell::new(None) };
}

fn with_store(f: impl FnOnce(&Store)) {
    STORE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let grown = slot
            .as_ref()
            .and_then(|s| s.store.as_ref())
            .is_none_or(|s| s.revision() > 200);
        if grown {
            *slot = None;
            *slot = Some(FuzzStore::new());
        }
        if let Some(store) = slot.as_ref().and_then(|s| s.store.as_ref()) {
            f(store);
        }
    });
}
