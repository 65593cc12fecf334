//! Property: for any records (unicode namespaces and keys, any MessagePack
//! value), every format round-trips: export, restore into an empty store,
//! export again gives the same bytes, the same metadata, and the same value
//! bytes (floats as 64-bit, NaN canonical). Integers of every size among them;
//! `integers_of_any_size_round_trip` follows single integers through every
//! spelling.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use rmpv::Value;
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::{Durability, Options, RawValue, Store, bigint};

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
        // Type 105 holds integers beyond 64 bits, generated below.
        (
            any::<i8>().prop_filter("105 is the integers'", |t| *t != bigint::EXT_TYPE),
            proptest::collection::vec(any::<u8>(), 0..17)
        )
            .prop_map(|(t, d)| Value::Ext(t, d)),
        big_int().prop_map(|payload| Value::Ext(bigint::EXT_TYPE, payload)),
    ]
}

/// The payload of any integer beyond 64 bits: random two's complement bytes,
/// shortened to the canonical form; the few that then fit in 64 bits (or are
/// too long) are left out.
fn big_int() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 9..40),
        1 => proptest::collection::vec(any::<u8>(), 1000..=bigint::MAX_LEN),
        1 => (any::<bool>(), 9..=bigint::MAX_LEN).prop_map(|(negative, len)| {
            // The extremes of each length: 0x7fff.., 0x8000..
            let mut bytes = vec![if negative { 0 } else { 0xff }; len];
            bytes[0] = if negative { 0x80 } else { 0x7f };
            bytes
        }),
    ]
    .prop_map(|bytes| {
        let mut start = 0;
        while start + 1 < bytes.len()
            && ((bytes[start] == 0 && bytes[start + 1] < 0x80)
                || (bytes[start] == 0xff && bytes[start + 1] >= 0x80))
        {
            start += 1;
        }
        bytes[start..].to_vec()
    })
    .prop_filter("fits in 64 bits", |payload| bigint::check(payload).is_ok())
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

/// An integer's decimal text, computed here from its two's complement bytes by
/// long division (not by the code under test).
fn decimal_of(payload: &[u8]) -> String {
    let negative = payload[0] >= 0x80;
    let mut magnitude: Vec<u8> = payload.to_vec();
    if negative {
        // -n = !n + 1
        let mut carry = 1u16;
        for b in magnitude.iter_mut().rev() {
            let sum = u16::from(!*b) + carry;
            *b = sum as u8;
            carry = sum >> 8;
        }
    }
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in magnitude.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if negative {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap()
}

fn ext(payload: &[u8]) -> Vec<u8> {
    msgpack(&Value::Ext(bigint::EXT_TYPE, payload.to_vec()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every i128 and u128: a plain MessagePack integer when it fits in 64
    /// bits, else type 105; typed reads give it back; JSON spells it plainly
    /// up to 2^53 - 1, else as `$int`; both spellings, and a plain literal,
    /// read back to the same bytes.
    #[test]
    fn i128_and_u128_round_trip(n in prop_oneof![
        any::<i128>(),
        any::<i64>().prop_map(i128::from),
        (-(1i128 << 66)..(1i128 << 66)),
        Just(i128::MIN), Just(i128::MAX),
        Just(i128::from(i64::MIN) - 1), Just(i128::from(u64::MAX) + 1),
    ], u in any::<u128>()) {
        let raw = RawValue::from_value(&n).unwrap();
        prop_assert_eq!(raw.decode::<i128>().unwrap(), n);
        let fits = i64::try_from(n).is_ok() || u64::try_from(n).is_ok();
        prop_assert_eq!(raw.as_msgpack()[0] != 0xc7 && raw.as_msgpack()[0] != 0xd8, fits);
        let json = raw.to_json().unwrap();
        if n.unsigned_abs() < 1 << 53 {
            prop_assert_eq!(&json, &n.to_string());
        } else {
            prop_assert_eq!(&json, &format!(r#"{{"$int":"{n}"}}"#));
        }
        prop_assert_eq!(RawValue::from_json(&json).unwrap(), raw.clone());
        prop_assert_eq!(RawValue::from_json(&n.to_string()).unwrap(), raw.clone());

        let raw = RawValue::from_value(&u).unwrap();
        prop_assert_eq!(raw.decode::<u128>().unwrap(), u);
        prop_assert_eq!(RawValue::from_json(&u.to_string()).unwrap(), raw.clone());
        prop_assert_eq!(RawValue::from_json(&raw.to_json().unwrap()).unwrap(), raw);
    }

    /// Integers beyond 128 bits, to the largest stored: exact through
    /// MessagePack, JSON (escaped and plain) and a store's JSON, JSON Lines
    /// and Markdown snapshots; typed reads take those that fit in i128 or u128
    /// and refuse the rest.
    #[test]
    fn integers_of_any_size_round_trip(payload in big_int()) {
        let bytes = ext(&payload);
        let raw = RawValue::from_msgpack(bytes.clone()).unwrap();
        let text = decimal_of(&payload);
        prop_assert_eq!(bigint::to_decimal(&payload).unwrap(), text.clone());
        prop_assert_eq!(raw.to_json().unwrap(), format!(r#"{{"$int":"{text}"}}"#));
        prop_assert_eq!(RawValue::from_json(&text).unwrap().into_msgpack(), bytes.clone());
        prop_assert_eq!(
            RawValue::from_json(&raw.to_json_pretty().unwrap()).unwrap().into_msgpack(),
            bytes
        );
        match raw.decode::<i128>() {
            Ok(n) => {
                prop_assert!(payload.len() <= 16);
                prop_assert_eq!(n.to_string(), text.clone());
            }
            Err(e) => {
                prop_assert!(payload.len() > 16, "{}", e);
                prop_assert!(e.to_string().contains("does not fit in an i128"), "{}", e);
            }
        }
        match raw.decode::<u128>() {
            Ok(n) => prop_assert_eq!(n.to_string(), text),
            Err(e) => prop_assert!(e.to_string().contains("does not fit in an u128"), "{}", e),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn integers_of_any_size_survive_every_snapshot_format(
        payloads in proptest::collection::vec(big_int(), 1..4),
    ) {
        let dir = common::store_dir();
        let source = open(&dir.path().join("source"));
        for (i, payload) in payloads.iter().enumerate() {
            let value = Value::Map(vec![
                ("n".into(), Value::Ext(bigint::EXT_TYPE, payload.clone())),
                ("list".into(), Value::Array(vec![Value::Ext(bigint::EXT_TYPE, payload.clone())])),
            ]);
            source.put_raw("ints", &i.to_string(), RawValue::from_msgpack(msgpack(&value)).unwrap()).unwrap();
        }
        for (i, format) in FORMATS.into_iter().enumerate() {
            let text = export(&source, format);
            let copy = open(&dir.path().join(format!("copy{i}")));
            let report = snapshot::import(
                &copy,
                text.as_slice(),
                &ImportOptions::new(format, ImportMode::Restore),
            )
            .unwrap();
            prop_assert!(report.applied);
            for (i, payload) in payloads.iter().enumerate() {
                let ours = copy.get_raw("ints", &i.to_string()).unwrap().unwrap().value;
                let theirs = source.get_raw("ints", &i.to_string()).unwrap().unwrap().value;
                prop_assert_eq!(ours.as_msgpack(), theirs.as_msgpack());
                let shown = String::from_utf8_lossy(&text).into_owned();
                let decimal = decimal_of(payload);
                prop_assert!(shown.contains(&format!("\"$int\": \"{decimal}\"")) ||
                    shown.contains(&format!("\"$int\":\"{decimal}\"")), "{:?}", format);
            }
        }
    }
}
