//! Property: for any records (unicode namespaces and keys, any MessagePack
//! value), every format round-trips: export, restore into an empty store,
//! export again gives the same bytes, the same metadata, and the same value
//! bytes (floats as 64-bit, NaN canonical).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use rmpv::Value;
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::{Durability, Options, RawValue, Store};

const FORMATS: [Format; 4] = [
    Format::Json,
    Format::JsonCompact,
    Format::JsonLines,
    Format::Markdown,
];

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(&format!("(?s).{{0,{max}}}")).unwrap(),
        proptest::string::string_regex(&format!("[ -~]{{0,{max}}}")).unwrap(),
        Just("$int".to_owned()),
        Just("$map".to_owned()),
        Just("$".to_owned()),
        Just(String::new()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    let ints = prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        Just(-1),
        Just((1 << 53) - 1),
        Just(1 << 53),
        Just(-(1 << 53) + 1),
        Just(-(1 << 53)),
        any::<i64>(),
    ];
    let uints = prop_oneof![Just(u64::MAX), Just(1u64 << 63), any::<u64>()];
    let floats = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        Just(f64::MAX),
        Just(1e16),
        Just(2.0),
        Just(0.1),
        any::<f64>(),
    ];
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        ints.prop_map(Value::from),
        uints.prop_map(Value::from),
        floats.prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        text(24).prop_map(Value::from),
        (1000usize..20_000).prop_map(|n| Value::from("é|`*\n".repeat(n / 5))),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..17))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        let key = prop_oneof![
            text(8),
            // A small alphabet makes repeated keys likely.
            proptest::string::string_regex("[ab$]{0,2}").unwrap(),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key, inner.clone()), 0..6).prop_map(|kv| {
                Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
            }),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

/// Namespaces and keys within the key rules: no control characters, not empty.
fn name(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(&format!("[^\\p{{Cc}}]{{1,{max}}}")).unwrap(),
        proptest::string::string_regex(&format!("[ -~]{{1,{max}}}")).unwrap(),
        proptest::string::string_regex("[ _a-z*`|#\\\\]{1,6}").unwrap(),
    ]
}

/// What a value is after a round trip: 32-bit floats widened, NaN canonical.
fn normalized(v: &Value) -> Value {
    match v {
        Value::F32(f) => normalized(&Value::F64(f64::from(*f))),
        Value::F64(f) if f.is_nan() => Value::F64(f64::NAN),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (normalized(k), normalized(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn msgpack(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn open(path: &std::path::Path) -> Store {
    let relaxed = Durability::Relaxed {
        max_delay: Duration::from_millis(50),
    };
    common::open_with(path, Options::default().durability(relaxed))
}

fn export(store: &Store, format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    snapshot::export(store, &mut out, &ExportOptions::new(format)).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn every_format_round_trips(
        records in proptest::collection::vec((name(10), name(16), value()), 0..7),
        rewrites in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let dir = common::store_dir();
        let source = open(&dir.path().join("source"));
        let mut expected: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
        for (ns, key, value) in &records {
            let raw = RawValue::from_msgpack(msgpack(value)).unwrap();
            source.put_raw(ns, key, raw).unwrap();
            expected.insert((ns.clone(), key.clone()), msgpack(&normalized(value)));
        }
        // Rewrite some records so versions and revisions differ.
        for index in &rewrites {
            if !records.is_empty() {
                let (ns, key, _) = &records[index.index(records.len())];
                let current = source.get_raw(ns, key).unwrap().unwrap();
                source.put_raw(ns, key, RawValue::from_msgpack(vec![0xc0]).unwrap()).unwrap();
                source.put_raw(ns, key, current.value).unwrap();
            }
        }
        for (i, format) in FORMATS.into_iter().enumerate() {
            let first = export(&source, format);
            let copy = open(&dir.path().join(format!("copy{i}")));
            let report = snapshot::import(
                &copy,
                first.as_slice(),
                &ImportOptions::new(format, ImportMode::Restore),
            );
            let report = match report {
                Ok(report) => report,
                Err(e) => panic!("{format:?}: {e}\n{}", String::from_utf8_lossy(&first)),
            };
            prop_assert_eq!(report.records as usize, expected.len());
            let again = export(&copy, format);
            prop_assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(&first),
                "{:?} re-export differs", format
            );
            prop_assert_eq!(copy.revision(), source.revision());
            for ((ns, key), bytes) in &expected {
                let theirs = source.get_raw(ns, key).unwrap().unwrap();
                let ours = copy.get_raw(ns, key).unwrap().unwrap();
                prop_assert_eq!(ours.meta(), theirs.meta());
                prop_assert_eq!(ours.value.as_msgpack(), bytes.as_slice(), "{:?} {}/{}", format, ns, key);
            }
        }
    }
}
