//! Stores written by earlier formats (DESIGN.md, "Format history") open,
//! recover and go on.

mod common;

use std::path::{Path, PathBuf};

use statelog::maintenance::{CheckOptions, check};
use statelog::testkit::segment::SegmentHeader;
use statelog::{Options, Store};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the fixture store `name` (in `tests/fixtures`), in a directory
/// removed when the guard drops; returns the guard and the store's path.
fn fixture_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = common::store_dir();
    let store_path = dir.path().join("store");
    copy_tree(&fixture, &store_path);
    (dir, store_path)
}

fn formats(store: &Path) -> Vec<u32> {
    let mut segments: Vec<_> = std::fs::read_dir(store.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    segments
        .iter()
        .map(|p| {
            SegmentHeader::decode(&std::fs::read(p).unwrap())
                .unwrap()
                .format
        })
        .collect()
}

/// A store of log format 1 (no preallocation step in its headers, sealed
/// segments cut after their last commit), left with 70 commits past its last
/// checkpoint: it opens and replays them, goes on in its active format-1
/// segment, rotates into format-2 segments, and checks out.
#[test]
fn a_store_of_log_format_1_opens_replays_and_goes_on_in_format_2() {
    let (_dir, store_path) = fixture_copy("store-log-format-1");
    assert_eq!(formats(&store_path), [1, 1, 1, 1]);
    let options = || Options::default().create(false).segment_size(4096);
    let store = Store::open(&store_path, options()).unwrap();
    assert_eq!(store.revision(), 100);
    assert_eq!(store.recovery().replayed, 70);
    for i in 0..100u64 {
        let value: String = store.get("r", &format!("k{i:03}")).unwrap().unwrap().value;
        assert_eq!(value, format!("value {i} of the first log format"));
    }
    for i in 100..250u64 {
        store
            .put("r", &format!("k{i:03}"), &format!("value {i}"))
            .unwrap();
    }
    store.close().unwrap();
    let formats = formats(&store_path);
    assert_eq!(formats[..4], [1, 1, 1, 1]);
    assert!(
        formats.len() > 5 && formats[4..].iter().all(|f| *f == 2),
        "{formats:?}"
    );
    let report = check(&store_path, &CheckOptions::new()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let store = Store::open(&store_path, options()).unwrap();
    assert_eq!(store.revision(), 250);
    assert_eq!(store.recovery().replayed, 0);
}

/// What revision `i` of the schema-2 fixture's sequence, and of its
/// continuation here, did: the key, and the value put (`None`: deleted).
fn schema_2_step(i: u64) -> (String, Option<String>) {
    (
        format!("k{}", i % 6),
        (!i.is_multiple_of(9)).then(|| format!("version {i}")),
    )
}

/// Checks every key of namespace `h` as of every revision up to the store's,
/// and every key's history, against the sequence.
fn check_schema_2_sequence(store: &Store) {
    let head = store.revision();
    let mut state: std::collections::BTreeMap<String, String> = Default::default();
    let mut histories: std::collections::BTreeMap<String, Vec<(u64, Option<String>)>> =
        Default::default();
    for i in 1..=head {
        let (key, value) = schema_2_step(i);
        match &value {
            Some(v) => state.insert(key.clone(), v.clone()),
            None => state.remove(&key),
        };
        histories.entry(key).or_default().push((i, value));
        let snapshot = store.snapshot_at_revision(i).unwrap();
        for k in 0..6 {
            let key = format!("k{k}");
            let got: Option<String> = snapshot.get("h", &key).unwrap().map(|v| v.value);
            assert_eq!(got.as_ref(), state.get(&key), "{key} as of revision {i}");
        }
    }
    for (key, expected) in histories {
        let got: Vec<(u64, Option<String>)> = store
            .history("h", &key)
            .unwrap()
            .into_iter()
            .map(|v| (v.revision, v.value.map(|v| v.value.decode().unwrap())))
            .collect();
        assert_eq!(got, expected, "the history of {key}");
    }
}

/// A state database of schema 2 (every superseded version's record inline in
/// `history`), left with 20 commits past its last checkpoint: it opens,
/// replays them, reads every revision of its past, goes on writing the split
/// layout of schema 3, and reads old and new versions alike, after a reopen
/// too; the check finds nothing wrong.
#[test]
fn a_state_database_of_schema_2_reads_its_past_and_goes_on_in_schema_3() {
    let (_dir, store_path) = fixture_copy("store-schema-2");
    let options = || {
        Options::default()
            .create(false)
            .segment_size(4096)
            .preallocate(0)
    };
    let store = Store::open(&store_path, options()).unwrap();
    assert_eq!(store.revision(), 60);
    assert_eq!(store.recovery().replayed, 20);
    check_schema_2_sequence(&store);
    for i in 61..=90u64 {
        let (key, value) = schema_2_step(i);
        match value {
            Some(v) => {
                store.put("h", &key, &v).unwrap();
            }
            None => {
                store.delete("h", &key).unwrap().unwrap();
            }
        }
        assert_eq!(store.revision(), i);
    }
    check_schema_2_sequence(&store);
    store.close().unwrap();
    let report = check(&store_path, &CheckOptions::new()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let store = Store::open(&store_path, options()).unwrap();
    assert_eq!(store.recovery().replayed, 0);
    check_schema_2_sequence(&store);
}
