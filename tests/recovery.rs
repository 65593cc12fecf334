//! Recovery after a crash: acknowledged commits survive a killed process, a torn
//! tail is cut, damage in the middle of the log is reported and never guessed at.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{open, snapshot_files, store_dir};
use statelog::testkit::log_reader;
use statelog::{Error, Options, Store};

const KILL_TEST: &str = "acknowledged_commits_survive_a_killed_process";

#[test]
fn acknowledged_commits_survive_a_killed_process() {
    if let Some((_, dir)) = common::child_role() {
        let store = open(Path::new(&dir));
        for i in 0..300u32 {
            store.put("jobs", &format!("job{i:03}"), &i).unwrap();
            println!("@@ack {i}");
        }
        store
            .transaction(|tx| {
                tx.put("jobs", "last", &"multi")?;
                tx.delete("jobs", "job000")?;
                Ok::<_, Error>(())
            })
            .unwrap();
        println!("@@done");
        // Wait to be killed, holding the store open.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let dir = store_dir();
    let mut child = common::child_command(KILL_TEST, "write", dir.path().to_str().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = 0;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.contains("@@ack ") {
            acked += 1;
        }
        if line.contains("@@done") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acked, 300);
    let store = open(dir.path());
    assert_eq!(store.revision(), 301);
    assert_eq!(store.recovery().replayed, 301);
    assert!(store.get::<u32>("jobs", "job000").unwrap().is_none());
    for i in 1..300u32 {
        let record = store
            .get::<u32>("jobs", &format!("job{i:03}"))
            .unwrap()
            .unwrap();
        assert_eq!((record.value, record.mod_revision), (i, u64::from(i) + 1));
    }
    assert_eq!(
        store.get::<String>("jobs", "last").unwrap().unwrap().value,
        "multi"
    );
    drop(store);
    // Recovery checkpointed: the next open replays nothing.
    assert_eq!(open(dir.path()).recovery().replayed, 0);
}

/// Writes `count` records in a child that exits without closing, so they are
/// in the log but past the last checkpoint. Returns the store's directory.
fn store_with_unapplied_log(test: &str, dir: &Path) {
    common::run_child(test, "write", dir.to_str().unwrap());
}

/// `arg` is the store's directory, with `|0` after it to write it without
/// preallocation.
fn write_unapplied(arg: &str, count: u32) -> ! {
    let (dir, options) = match arg.strip_suffix("|0") {
        Some(dir) => (dir, Options::default().preallocate(0)),
        None => (arg, Options::default()),
    };
    let store = Store::open(dir, options).unwrap();
    for i in 0..count {
        store
            .put("r", &format!("k{i:02}"), &format!("value number {i}"))
            .unwrap();
    }
    common::exit_without_closing();
}

fn the_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(segments.len(), 1);
    segments.pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("log")).unwrap();
    for (path, bytes) in common::file_contents(from) {
        let rel = path.strip_prefix(from).unwrap();
        std::fs::write(to.join(rel), bytes).unwrap();
    }
}

const TORN_TEST: &str =
    "a_tail_torn_at_every_byte_of_the_last_record_opens_with_the_records_before_it";

/// A torn write leaves the file's size as it was in preallocated space (zeros
/// where the rest of the record was), and ends the file inside the record
/// without preallocation. (A preallocated segment that ends inside the record
/// was cut, not torn: `guards.rs` has that.)
#[test]
fn a_tail_torn_at_every_byte_of_the_last_record_opens_with_the_records_before_it() {
    if let Some((_, dir)) = common::child_role() {
        write_unapplied(&dir, 10);
    }
    let preallocated = store_dir();
    store_with_unapplied_log(TORN_TEST, preallocated.path());
    let unallocated = store_dir();
    let arg = format!("{}|0", unallocated.path().display());
    common::run_child(TORN_TEST, "write", &arg);
    let scratch = store_dir();
    for (dir, zero_filled) in [(&preallocated, true), (&unallocated, false)] {
        let segment = the_segment(dir.path());
        let bytes = std::fs::read(&segment).unwrap();
        let frames = log_reader::frame_spans(&bytes);
        assert_eq!(frames.len(), 10);
        let (last_start, last_end) = frames[9];
        for cut in last_start..last_end {
            let copy = scratch.path().join(format!("cut-{cut}-{zero_filled}"));
            copy_dir(dir.path(), &copy);
            let seg = copy.join("log").join(segment.file_name().unwrap());
            let mut torn = bytes[..cut].to_vec();
            if zero_filled {
                // As in preallocated space: zeros where the rest was.
                torn.resize(bytes.len(), 0);
            }
            std::fs::write(&seg, &torn).unwrap();
            let store = Store::open(&copy, Options::default())
                .unwrap_or_else(|e| panic!("cut at {cut} (zeros {zero_filled}): {e}"));
            assert_eq!(store.revision(), 9, "cut at {cut}");
            assert_eq!(
                store.get::<String>("r", "k08").unwrap().unwrap().value,
                "value number 8"
            );
            assert!(store.get::<String>("r", "k09").unwrap().is_none());
            match &store.recovery().cut {
                None => assert_eq!(cut, last_start, "nothing to cut only at the frame boundary"),
                Some(tail) => {
                    assert_eq!(tail.offset, last_start as u64, "cut at {cut}");
                    // The cut bytes (up to the last non-zero one) are kept beside
                    // the segment.
                    let mut torn_part = bytes[last_start..cut].to_vec();
                    while torn_part.last() == Some(&0) {
                        torn_part.pop();
                    }
                    assert_eq!(tail.bytes, torn_part.len() as u64, "cut at {cut}");
                    assert_eq!(std::fs::read(&tail.saved_to).unwrap(), torn_part);
                }
            }
            // The store goes on from there.
            let next = store.put("r", "k09", &"again").unwrap();
            assert_eq!(next.revision, 10);
            drop(store);
            let store = Store::open(&copy, Options::default()).unwrap();
            assert_eq!(
                store.get::<String>("r", "k09").unwrap().unwrap().value,
                "again"
            );
            drop(store);
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
}

const FLIP_TEST: &str = "a_flipped_byte_in_an_earlier_record_is_reported_with_file_and_offset";

#[test]
fn a_flipped_byte_in_an_earlier_record_is_reported_with_file_and_offset() {
    if let Some((_, dir)) = common::child_role() {
        write_unapplied(&dir, 10);
    }
    let dir = store_dir();
    store_with_unapplied_log(FLIP_TEST, dir.path());
    let segment = the_segment(dir.path());
    let bytes = std::fs::read(&segment).unwrap();
    let frames = log_reader::frame_spans(&bytes);
    let (start, end) = frames[4];
    for at in start..end {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        std::fs::write(&segment, &damaged).unwrap();
        let before = snapshot_files(dir.path());
        let err = Store::open(dir.path(), Options::default()).unwrap_err();
        match &err {
            Error::Corrupt { file, offset, .. } => {
                assert_eq!(file, &segment, "flip at {at}");
                assert_eq!(*offset, start as u64, "flip at {at}: {err}");
            }
            other => panic!("flip at {at}: expected Corrupt, got {other}"),
        }
        assert!(err.to_string().contains("not a torn write"), "{err}");
        // A refused open changes nothing.
        assert_eq!(snapshot_files(dir.path()), before, "flip at {at}");
    }
    // Undo the damage: everything is there.
    std::fs::write(&segment, &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(store.revision(), 10);
}

#[test]
fn a_segment_header_from_another_store_is_refused() {
    let a = store_dir();
    let b = store_dir();
    for dir in [&a, &b] {
        let store = open(dir.path());
        store.put("x", "y", &1).unwrap();
    }
    let seg_a = the_segment(a.path());
    let seg_b = the_segment(b.path());
    std::fs::copy(&seg_b, &seg_a).unwrap();
    let err = Store::open(a.path(), Options::default()).unwrap_err();
    assert!(matches!(&err, Error::Corrupt { offset: 12, .. }), "{err}");
    assert!(err.to_string().contains("another store"), "{err}");
}
