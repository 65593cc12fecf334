//! The Python package's values, seen from typed Rust: `python/tests/data/
//! values.json` is a snapshot of the values the Python tests write (big
//! integers, bytes, unicode, nesting, NaN and infinities, non-string keys).
//! Here the same values, as Rust types, must export to exactly what the file
//! holds, and the file imported must decode into them. The Python tests check
//! that Python writes and reads the same file and that the command line shows
//! the same JSON, which closes the circle Python -> Rust -> CLI -> Python.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::{Options, RawValue, Store};

const NS: &str = "values";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Integers {
    small: u8,
    negative: i32,
    safe_max: u64,
    beyond_safe: u64,
    u64_max: u64,
    i64_min: i64,
}

/// Integers beyond 64 bits that Rust's 128-bit types hold.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct WideIntegers {
    u64_max_plus_one: u128,
    i64_min_minus_one: i128,
    i128_max: i128,
    i128_min: i128,
    u128_max: u128,
}

fn wide_integers() -> WideIntegers {
    WideIntegers {
        u64_max_plus_one: 1 << 64,
        i64_min_minus_one: i128::from(i64::MIN) - 1,
        i128_max: i128::MAX,
        i128_min: i128::MIN,
        u128_max: u128::MAX,
    }
}

/// 2^8191 - 1, -2^8191 and 2^200 + 1 as MessagePack, built here byte by byte
/// from the format in DESIGN.md (extension type 105, minimal two's complement,
/// big-endian) rather than by the code under test.
fn wider_integers() -> Vec<u8> {
    let ext = |payload: Vec<u8>| {
        let mut out = if payload.len() < 256 {
            vec![0xc7, payload.len() as u8]
        } else {
            [vec![0xc8], (payload.len() as u16).to_be_bytes().to_vec()].concat()
        };
        out.push(105);
        out.extend(payload);
        out
    };
    let largest = [vec![0x7f], vec![0xff; 1023]].concat();
    let smallest = [vec![0x80], vec![0; 1023]].concat();
    let two_200_plus_one = [vec![1], vec![0; 24], vec![1]].concat();
    [
        vec![0x93],
        ext(largest),
        ext(smallest),
        ext(two_200_plus_one),
    ]
    .concat()
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Stage {
    name: String,
    done: bool,
    artifacts: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    task: String,
    stages: Vec<Stage>,
    progress: f64,
    owner: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Empty {
    dict: BTreeMap<String, u8>,
    list: Vec<u8>,
    text: String,
    none: Option<u8>,
}

fn fixture_text() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/tests/data/values.json");
    std::fs::read(path).unwrap()
}

fn fixture() -> serde_json::Value {
    serde_json::from_slice(&fixture_text()).unwrap()
}

fn floats() -> Vec<f64> {
    vec![
        0.1,
        -0.0,
        1e300,
        5e-324,
        2.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ]
}

/// Writes every value as its Rust type.
fn put_all(store: &Store) {
    let integers = Integers {
        small: 7,
        negative: -1,
        safe_max: (1 << 53) - 1,
        beyond_safe: 1 << 53,
        u64_max: u64::MAX,
        i64_min: i64::MIN,
    };
    store.put(NS, "integers", &integers).unwrap();
    store.put(NS, "floats", &floats()).unwrap();
    let bytes = ByteBuf::from(b"\x00\x01\xfe\xff statelog".to_vec());
    store.put(NS, "bytes", &bytes).unwrap();
    store.put(NS, "unicode", &unicode()).unwrap();
    store.put(NS, "nested", &job()).unwrap();
    let int_keys: BTreeMap<i32, String> = [(-3, "minus three"), (1, "one"), (2, "two")]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    store.put(NS, "int_keys", &int_keys).unwrap();
    let dollar: BTreeMap<String, String> = [("$int".to_owned(), "not an escape".to_owned())]
        .into_iter()
        .collect();
    store.put(NS, "dollar_key", &dollar).unwrap();
    store.put(NS, "empty", &empty()).unwrap();
    store.put(NS, "bools", &vec![true, false]).unwrap();
    store.put(NS, "wide_integers", &wide_integers()).unwrap();
    let wider = RawValue::from_msgpack(wider_integers()).unwrap();
    store.put_raw(NS, "wider_integers", wider).unwrap();
}

fn unicode() -> String {
    "naïve ☃ 𝄞 e\u{301} \t\n \"quoted\" \\ \u{1}".to_owned()
}

fn job() -> Job {
    Job {
        task: "task_123".into(),
        stages: vec![
            Stage {
                name: "audio".into(),
                done: true,
                artifacts: vec!["audio/task_123.wav".into()],
            },
            Stage {
                name: "video".into(),
                done: false,
                artifacts: vec![],
            },
        ],
        progress: 0.5,
        owner: None,
    }
}

fn empty() -> Empty {
    Empty {
        dict: BTreeMap::new(),
        list: vec![],
        text: String::new(),
        none: None,
    }
}

#[test]
fn rust_values_export_to_the_fixture_python_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), Options::default()).unwrap();
    put_all(&store);
    let mut out = Vec::new();
    snapshot::export(&store, &mut out, &ExportOptions::new(Format::Json)).unwrap();
    let exported: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let want = &fixture()["namespaces"][NS];
    let got = &exported["namespaces"][NS];
    let keys: Vec<&String> = want.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        got.as_object().unwrap().keys().collect::<Vec<_>>(),
        "the same records"
    );
    for key in keys {
        assert_eq!(
            got[key]["value"], want[key]["value"],
            "{key}: Rust wrote something else than the fixture holds"
        );
    }
}

fn get<T: DeserializeOwned>(store: &Store, key: &str) -> T {
    store.get::<T>(NS, key).unwrap().unwrap().value
}

#[test]
fn the_fixture_decodes_into_the_rust_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), Options::default()).unwrap();
    let options = ImportOptions::new(Format::Json, ImportMode::Restore);
    let report = snapshot::import(&store, fixture_text().as_slice(), &options).unwrap();
    assert!(report.applied);

    let integers: Integers = get(&store, "integers");
    assert_eq!(integers.u64_max, u64::MAX);
    assert_eq!(integers.i64_min, i64::MIN);
    assert_eq!(integers.beyond_safe, 1 << 53);
    let got: Vec<f64> = get(&store, "floats");
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&got),
        bits(&floats()),
        "floats bit for bit, -0.0 and NaN too"
    );
    assert_eq!(
        get::<ByteBuf>(&store, "bytes").into_vec(),
        b"\x00\x01\xfe\xff statelog"
    );
    assert_eq!(get::<String>(&store, "unicode"), unicode());
    assert_eq!(get::<Job>(&store, "nested"), job());
    let int_keys: BTreeMap<i32, String> = get(&store, "int_keys");
    assert_eq!(int_keys[&-3], "minus three");
    assert_eq!(int_keys.len(), 3);
    let dollar: BTreeMap<String, String> = get(&store, "dollar_key");
    assert_eq!(dollar["$int"], "not an escape");
    assert_eq!(get::<Empty>(&store, "empty"), empty());
    assert_eq!(get::<Vec<bool>>(&store, "bools"), vec![true, false]);
    assert_eq!(
        get::<WideIntegers>(&store, "wide_integers"),
        wide_integers()
    );
    let wider = store.get_raw(NS, "wider_integers").unwrap().unwrap().value;
    assert_eq!(wider.as_msgpack(), wider_integers().as_slice());
}
