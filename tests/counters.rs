//! Revision and version counters never wrap around. A number that would
//! exhaust one is refused where it comes in (a snapshot in any format, naming
//! the field and its line; `Store::restore_records`); a store that reaches the
//! ceiling refuses the commit with `Error::Exhausted` and stays as it was
//! (before, `set` printed "version 0", `--if-version 0` then matched an
//! existing record, and `repair` cut acknowledged writes); and a log record or
//! segment header beyond the ceiling is damage, never read as a smaller number.

mod common;

use std::borrow::Cow;
use std::path::Path;

use statelog::maintenance::{self, CheckOptions, RepairOptions};
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::testkit::log_reader::read_log;
use statelog::testkit::record::{LogOp, LogRecord, PutOp};
use statelog::testkit::{RealFs, frame, record, segment};
use statelog::{
    Error, MAX_IMPORTED_REVISION, MAX_REVISION, MAX_VERSION, Meta, Options, RawValue,
    RestoreRecord, Store, Timestamp,
};

const HUGE: u64 = u64::MAX;

/// A store restored at revision 7890 with one record at version 4321,
/// created at 2345 and modified at 6789: numbers that appear once in each
/// export, so a test can replace exactly one field.
fn restored_store(dir: &Path) -> Store {
    let store = common::open(dir);
    store
        .restore_records(
            7890,
            "2026-01-02T03:04:05Z".parse().unwrap(),
            [RestoreRecord {
                namespace: "jobs".into(),
                key: "j1".into(),
                meta: Meta {
                    version: 4321,
                    create_revision: 2345,
                    mod_revision: 6789,
                    updated_at: "2026-01-01T00:00:00Z".parse().unwrap(),
                },
                value: RawValue::from_json(r#"{"n": 1}"#).unwrap(),
            }],
        )
        .unwrap();
    store
}

fn export(store: &Store, format: Format) -> String {
    let mut out = Vec::new();
    snapshot::export(store, &mut out, &ExportOptions::new(format)).unwrap();
    String::from_utf8(out).unwrap()
}

/// `text` with the number `from` on the one line that holds it as a field
/// (not in the Markdown title or summary table, which are for people)
/// replaced by `to`; and that line's number.
fn replace_field(text: &str, from: u64, to: u64) -> (String, u64) {
    let from = from.to_string();
    let mut line_no = 0;
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if line.contains(&from) && !line.starts_with("# ") && !line.starts_with('|') {
                assert_eq!(line_no, 0, "{from} is on two lines");
                line_no = i as u64 + 1;
                line.replace(&from, &to.to_string())
            } else if line.starts_with('|') {
                // A Markdown summary row shows the same numbers (an import
                // refuses a row that disagrees with its section).
                line.replace(&format!("| {from} |"), &format!("| {to} |"))
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_ne!(line_no, 0, "{from} is on no line");
    (lines.join("\n") + "\n", line_no)
}

fn restore(text: &str, format: Format) -> statelog::Result<u64> {
    let dir = common::store_dir();
    let store = common::open(dir.path());
    let report = snapshot::import(
        &store,
        text.as_bytes(),
        &ImportOptions::new(format, ImportMode::Restore),
    );
    let revision = store.revision();
    store.close().unwrap();
    match report {
        Ok(_) => Ok(revision),
        Err(e) => {
            assert_eq!(revision, 0, "a refused import wrote something");
            Err(e)
        }
    }
}

/// Writes a store directory whose log holds one base commit at `revision`
/// with the given records (key, version), and rebuilds its state database
/// from that log: a store counted up near the ceiling, as no test could count.
fn store_at(dir: &Path, revision: u64, records: &[(&str, u64)]) {
    Store::open(dir, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("STATELOG")).unwrap()).unwrap();
    let id = identity["store_id"].as_str().unwrap();
    let mut store_id = [0u8; 16];
    for (i, byte) in store_id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
    }
    for entry in std::fs::read_dir(dir.join("log")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::remove_file(dir.join("state.redb")).unwrap();
    let segment = base_segment(store_id, revision, records);
    std::fs::write(dir.join("log").join(segment::file_name(revision)), segment).unwrap();
    let report = maintenance::repair(dir, &RepairOptions::new()).unwrap();
    assert!(report.is_repaired(), "{report:?}");
    assert_eq!(report.revision, revision);
}

/// A segment starting at `revision` holding one base commit there.
fn base_segment(store_id: [u8; 16], revision: u64, records: &[(&str, u64)]) -> Vec<u8> {
    let value = RawValue::from_json("1").unwrap().into_msgpack();
    let time = Timestamp::from_micros(1_767_322_245_000_006).as_micros();
    let base = LogRecord {
        revision,
        time,
        ops: records
            .iter()
            .map(|(key, version)| {
                LogOp::Put(PutOp {
                    ns: "n".into(),
                    key: Cow::Owned((*key).to_owned()),
                    version: *version,
                    created: revision,
                    value: Cow::Owned(value.clone()),
                    modified: Some(revision),
                    updated: Some(time),
                })
            })
            .collect(),
        more: false,
        base: true,
        synced: Some(0),
    };
    let mut payload = Vec::new();
    record::encode_into(&base, &mut payload).unwrap();
    let mut file = segment::SegmentHeader {
        format: segment::LOG_FORMAT_VERSION,
        store_id,
        first_revision: revision,
        previous: 0,
        step: 0,
    }
    .encode()
    .to_vec();
    file.extend_from_slice(&frame::encode(&payload).unwrap());
    file
}

#[test]
fn no_counter_wraps_and_no_input_can_exhaust_one() {
    // A snapshot field that would exhaust a counter is refused, naming the
    // field and its line, in every format; the same snapshot restores.
    let dir = common::store_dir();
    let store = restored_store(dir.path());
    let fields: [(u64, &str, &str); 4] = [
        (7890, "\"revision\"", "the revision"),
        (4321, "\"version\"", "the version"),
        (2345, "\"create_revision\"", "the created revision"),
        (6789, "\"mod_revision\"", "the modified revision"),
    ];
    for format in [Format::Json, Format::JsonLines, Format::Markdown] {
        let text = export(&store, format);
        assert_eq!(restore(&text, format).unwrap(), 7890, "{format:?}");
        for (number, json_name, markdown_name) in fields {
            for too_high in [MAX_IMPORTED_REVISION + 1, MAX_REVISION, HUGE] {
                let (bad, line) = replace_field(&text, number, too_high);
                let err = restore(&bad, format).unwrap_err();
                let name = if format == Format::Markdown {
                    markdown_name
                } else {
                    json_name
                };
                match &err {
                    Error::InvalidSnapshot {
                        line: at, message, ..
                    } => {
                        assert_eq!(*at, line, "{format:?} {name}: {err}");
                        assert!(message.starts_with(name), "{format:?}: {err}");
                        assert!(message.contains(&too_high.to_string()), "{err}");
                        assert!(message.contains("2^62"), "{err}");
                    }
                    other => panic!("{format:?} {name}: {other}"),
                }
            }
            // The highest a snapshot may hold is accepted (where it fits the
            // other fields: a version, or every revision at once).
            if number == 4321 {
                let (ok, _) = replace_field(&text, number, MAX_IMPORTED_REVISION);
                restore(&ok, format).unwrap();
            }
        }
    }
    store.close().unwrap();

    // restore_records refuses the same, and writes nothing.
    let dir = common::store_dir();
    let store = common::open(dir.path());
    let record = |version| RestoreRecord {
        namespace: "n".into(),
        key: "k".into(),
        meta: Meta {
            version,
            create_revision: 1,
            mod_revision: 1,
            updated_at: Timestamp::EPOCH,
        },
        value: RawValue::from_json("1").unwrap(),
    };
    let err = store
        .restore_records(HUGE, Timestamp::EPOCH, [record(1)])
        .unwrap_err();
    assert!(err.to_string().contains("2^62"), "{err}");
    let err = store
        .restore_records(5, Timestamp::EPOCH, [record(HUGE)])
        .unwrap_err();
    assert!(err.to_string().contains("n/k"), "{err}");
    assert_eq!(store.revision(), 0);
    store
        .restore_records(MAX_IMPORTED_REVISION, Timestamp::EPOCH, [record(1)])
        .unwrap();
    store.close().unwrap();

    // A store at the ceiling: a record at the highest version, the revision
    // three below the highest.
    let dir = common::store_dir();
    store_at(dir.path(), MAX_REVISION - 2, &[("full", MAX_VERSION)]);
    let store = common::open(dir.path());
    let exhausted = |e: Error, record: Option<(&str, &str)>, value: u64| match e {
        Error::Exhausted {
            record: r,
            value: v,
        } => {
            assert_eq!(
                r,
                record.map(|(n, k)| (n.to_owned(), k.to_owned())),
                "which counter"
            );
            assert_eq!(v, value);
        }
        other => panic!("not Exhausted: {other}"),
    };
    // The version cannot go on: the write is refused, nothing changes.
    exhausted(
        store.put("n", "full", &2).unwrap_err(),
        Some(("n", "full")),
        MAX_VERSION,
    );
    exhausted(
        store
            .compare_and_swap("n", "full", MAX_VERSION, &2)
            .unwrap_err(),
        Some(("n", "full")),
        MAX_VERSION,
    );
    let err = store
        .transaction(|tx| {
            tx.put("n", "other", &1)?;
            tx.put("n", "full", &2)
        })
        .unwrap_err();
    exhausted(err, Some(("n", "full")), MAX_VERSION);
    // "Must not exist" never matches it.
    assert!(store.create("n", "full", &2).unwrap_err().is_conflict());
    assert_eq!(store.revision(), MAX_REVISION - 2);
    assert_eq!(store.get_raw("n", "other").unwrap(), None);
    let full = store.get_raw("n", "full").unwrap().unwrap();
    assert_eq!(full.version, MAX_VERSION);
    // Deleting it is still possible, and re-creating it starts at 1.
    assert_eq!(
        store.delete("n", "full").unwrap().unwrap().version,
        MAX_VERSION
    );
    assert_eq!(store.put("n", "full", &3).unwrap().version, 1);
    assert_eq!(store.revision(), MAX_REVISION);
    // The revision cannot go on.
    exhausted(store.put("n", "other", &1).unwrap_err(), None, MAX_REVISION);
    exhausted(store.put("n", "full", &4).unwrap_err(), None, MAX_REVISION);
    exhausted(store.delete("n", "absent").unwrap_err(), None, MAX_REVISION);
    assert_eq!(store.revision(), MAX_REVISION);
    assert_eq!(store.get_raw("n", "full").unwrap().unwrap().version, 1);
    store.close().unwrap();
    // The log holds exactly the commits, and the store reopens and checks clean.
    let log = read_log(&RealFs, dir.path()).unwrap();
    let revisions: Vec<u64> = log.commits.iter().map(|c| c.revision).collect();
    assert_eq!(
        revisions,
        [MAX_REVISION - 2, MAX_REVISION - 1, MAX_REVISION]
    );
    let report = maintenance::check(dir.path(), &CheckOptions::new()).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    let store = common::open(dir.path());
    assert_eq!(store.revision(), MAX_REVISION);
    assert_eq!(store.get_raw("n", "full").unwrap().unwrap().version, 1);
    store.close().unwrap();

    // A log record or segment header beyond the ceiling is damage.
    let id = *b"counters-test-id";
    let cases: [(u64, u64, &str); 3] = [
        (5, MAX_VERSION + 1, "outside 1 to"),
        (5, HUGE, "outside 1 to"),
        (MAX_REVISION + 1, 1, "from 1 to"),
    ];
    for (revision, version, expected) in cases {
        let dir = common::store_dir();
        let log = dir.path().join("log");
        std::fs::create_dir(&log).unwrap();
        std::fs::write(
            log.join(segment::file_name(revision)),
            base_segment(id, revision, &[("k", version)]),
        )
        .unwrap();
        match read_log(&RealFs, dir.path()) {
            Err(Error::Corrupt { reason, .. }) => {
                assert!(reason.contains(expected), "{revision} {version}: {reason}");
            }
            other => panic!("{revision} {version}: {other:?}"),
        }
    }
}
