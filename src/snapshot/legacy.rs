//! Legacy files: a plain JSON object whose members become the records of one
//! namespace, such as a `sync_state.json` of `website -> {file -> {...}}`.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use rmpv::Value;
use struson::reader::{JsonReader, ValueType};

use super::mapping::{self, Mode, Place};
use super::{Location, Progress, encode_value, read_error, without_byte_order_mark};
use crate::error::{KeyPart, Result, quote};
use crate::key;
use crate::store::Store;
use crate::value::RawValue;

#[derive(Clone)]
enum Step {
    Lowercase,
    StripWww,
    DotsToHyphens,
    Custom(Arc<dyn Fn(&str) -> String + Send + Sync>),
}

/// Turns the keys of a legacy file into the keys they are stored under, one
/// step after another in the order they were added.
///
/// ```
/// use statelog::snapshot::KeyNormalizer;
/// let n = KeyNormalizer::new().lowercase().strip_www().dots_to_hyphens();
/// assert_eq!(n.normalize("WWW.Example.com"), "example-com");
/// assert_eq!(n.normalize("jgengineering-ie"), "jgengineering-ie");
/// let custom = KeyNormalizer::new().custom(|k| k.trim_end_matches('/').to_owned());
/// assert_eq!(custom.normalize("docs/"), "docs");
/// ```
#[derive(Clone, Default)]
pub struct KeyNormalizer {
    steps: Vec<Step>,
}

impl KeyNormalizer {
    /// Keeps keys as they are (add steps to change them).
    pub fn new() -> KeyNormalizer {
        KeyNormalizer::default()
    }

    /// Lower-cases the key (Unicode lower case).
    pub fn lowercase(mut self) -> Self {
        self.steps.push(Step::Lowercase);
        self
    }

    /// Removes a leading `www.`.
    pub fn strip_www(mut self) -> Self {
        self.steps.push(Step::StripWww);
        self
    }

    /// Replaces every `.` with `-`.
    pub fn dots_to_hyphens(mut self) -> Self {
        self.steps.push(Step::DotsToHyphens);
        self
    }

    /// Applies a function of the caller's.
    pub fn custom(mut self, f: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.steps.push(Step::Custom(Arc::new(f)));
        self
    }

    /// The key `key` is stored under.
    pub fn normalize(&self, key: &str) -> String {
        let mut out = key.to_owned();
        for step in &self.steps {
            out = match step {
                Step::Lowercase => out.to_lowercase(),
                Step::StripWww => match out.strip_prefix("www.") {
                    Some(rest) => rest.to_owned(),
                    None => out,
                },
                Step::DotsToHyphens => out.replace('.', "-"),
                Step::Custom(f) => f(&out),
            };
        }
        out
    }
}

impl fmt::Debug for KeyNormalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Lowercase => "lowercase",
                Step::StripWww => "strip_www",
                Step::DotsToHyphens => "dots_to_hyphens",
                Step::Custom(_) => "custom",
            })
            .collect();
        f.debug_tuple("KeyNormalizer").field(&names).finish()
    }
}

/// How to import a legacy file.
///
/// ```
/// use statelog::snapshot::{KeyNormalizer, LegacyOptions};
/// let options = LegacyOptions::new("sync")
///     .normalizer(KeyNormalizer::new().lowercase().strip_www().dots_to_hyphens())
///     .merge_collisions(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LegacyOptions {
    namespace: String,
    normalizer: KeyNormalizer,
    merge_collisions: bool,
    progress: Option<Progress>,
    idempotency_key: Option<String>,
    fences: Vec<(String, u64)>,
}

impl LegacyOptions {
    /// Imports into `namespace`, keys as they are, collisions refused.
    pub fn new(namespace: impl Into<String>) -> LegacyOptions {
        LegacyOptions {
            namespace: namespace.into(),
            normalizer: KeyNormalizer::new(),
            merge_collisions: false,
            progress: None,
            idempotency_key: None,
            fences: Vec::new(),
        }
    }

    /// Makes the import commit only while lock `lock` is still held with
    /// `token` (see [`Tx::fence`](crate::Tx::fence)).
    pub fn fence(mut self, lock: impl Into<String>, token: u64) -> Self {
        self.fences.push((lock.into(), token));
        self
    }

    /// Makes the import idempotent under `key` (at most 255 bytes): the same
    /// import (the same namespace and resulting records) made again with the
    /// key returns the first report, marked
    /// [`replayed`](LegacyReport::replayed), and writes nothing; another
    /// import, or any other request, with the key fails with
    /// [`Error::IdempotencyKeyReused`](crate::Error::IdempotencyKeyReused).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Normalises keys with `normalizer`.
    pub fn normalizer(mut self, normalizer: KeyNormalizer) -> Self {
        self.normalizer = normalizer;
        self
    }

    /// Whether members whose keys collide after normalising are merged (true)
    /// or the import is refused (false, the default).
    ///
    /// Merging: the colliding values must all be objects; the result holds
    /// every member of each, in order of first appearance, and where several
    /// define the same member, the one latest in the file wins. The report
    /// names those members.
    pub fn merge_collisions(mut self, merge: bool) -> Self {
        self.merge_collisions = merge;
        self
    }

    /// Calls `progress` with the number of members read so far, every 256
    /// members and once when the input is read, on the importing thread.
    pub fn progress(mut self, progress: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress::new(progress));
        self
    }
}

/// Keys of a legacy file that became one key after normalising.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The key they became.
    pub key: String,
    /// The keys in the file, in file order.
    pub sources: Vec<String>,
    /// Members defined by more than one of them with different values (when
    /// merged, the latest in the file won).
    pub clashing_fields: Vec<String>,
}

/// What a legacy import did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a legacy import stops at key collisions unless merging; check `applied`"]
#[non_exhaustive]
pub struct LegacyReport {
    /// Members in the file.
    pub members: u64,
    /// Records they became (fewer when keys collided and were merged).
    pub records: u64,
    /// Records written.
    pub written: u64,
    /// Records left alone because the store already held the same value.
    pub unchanged: u64,
    /// Members whose key the normaliser changed, as (from, to), in file order.
    pub renamed: Vec<(String, String)>,
    /// Keys that collided after normalising.
    pub collisions: Vec<Collision>,
    /// The revision of the commit; `None` when nothing was written.
    pub revision: Option<u64>,
    /// False when collisions stopped the import (merging was not asked for)
    /// and nothing was written.
    pub applied: bool,
    /// True when this is the first report of the same import with the same
    /// idempotency key, returned again: nothing was written now.
    pub replayed: bool,
}

/// One member of the file.
struct Member {
    name: String,
    value: Value,
    at: Place,
}

/// Imports a plain JSON object into a namespace: each member becomes the record
/// of its (normalised) key, its value mapped plainly (objects are maps,
/// numbers with `.` or an exponent are floats; no `$` escapes). All records
/// commit in one commit, or none do; values equal to the stored ones are left
/// alone.
///
/// ```
/// use statelog::snapshot::{self, KeyNormalizer, LegacyOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = statelog::Store::open(dir.path(), Default::default())?;
/// let file = r#"{"example.com": {"a.md": {"hash": "1"}}, "example-com": {"b.md": {"hash": "2"}}}"#;
/// let options = LegacyOptions::new("sync")
///     .normalizer(KeyNormalizer::new().dots_to_hyphens());
/// let report = snapshot::import_legacy(&store, file.as_bytes(), &options)?;
/// assert!(!report.applied); // the two keys collide; nothing was written
/// assert_eq!(report.collisions[0].sources, ["example.com", "example-com"]);
///
/// let report = snapshot::import_legacy(&store, file.as_bytes(), &options.merge_collisions(true))?;
/// assert_eq!(report.written, 1);
/// let merged: serde_json::Value = store.get("sync", "example-com")?.unwrap().value;
/// assert_eq!(merged["a.md"]["hash"], "1");
/// assert_eq!(merged["b.md"]["hash"], "2");
/// # Ok::<(), statelog::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidKey`](crate::Error::InvalidKey) for a bad namespace;
/// [`Error::InvalidSnapshot`](crate::Error::InvalidSnapshot) with
/// line and column for input that is not a JSON object, a member name that
/// appears twice, a key that is not valid after normalising, or colliding
/// values that cannot be merged (not objects);
/// [`Error::SnapshotIo`](crate::Error::SnapshotIo) if
/// `input` fails; the I/O errors of a commit. The store is unchanged after any
/// error.
pub fn import_legacy(
    store: &Store,
    input: impl Read,
    options: &LegacyOptions,
) -> Result<LegacyReport> {
    import_legacy_checked(store, check_legacy(input, options)?)
}

/// A legacy file read, its keys normalised and its values checked, not yet
/// written: what [`check_legacy`] returns and [`import_legacy_checked`]
/// writes. It holds every record in memory.
#[derive(Debug, Clone)]
pub struct CheckedLegacy {
    namespace: String,
    /// What the import will report; `applied` is false until it is written.
    report: LegacyReport,
    /// The records to write; empty when collisions stop the import.
    records: Vec<(String, RawValue)>,
    idempotency_key: Option<String>,
    fences: Vec<(String, u64)>,
}

impl CheckedLegacy {
    /// Members in the file.
    pub fn members(&self) -> u64 {
        self.report.members
    }
}

/// Reads a legacy file for [`import_legacy_checked`] without a store:
/// everything [`import_legacy`] does before it writes, so that slow input is
/// read before the store is opened and locked.
///
/// # Errors
/// As [`import_legacy`], but for the commit's.
pub fn check_legacy(input: impl Read, options: &LegacyOptions) -> Result<CheckedLegacy> {
    key::validate(KeyPart::Namespace, &options.namespace)?;
    let members = read_members(input, options.progress.as_ref())?;
    // Group by normalised key, in order of first appearance.
    let mut order: Vec<(String, Vec<Member>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut renamed = Vec::new();
    let count = members.len() as u64;
    for member in members {
        let key = options.normalizer.normalize(&member.name);
        key::validate(KeyPart::Key, &key).map_err(|e| {
            Location::new(member.at, None).error(format!(
                "the key {} becomes {} after normalising, which cannot be stored: {e}",
                quote(&member.name),
                quote(&key)
            ))
        })?;
        if key != member.name {
            renamed.push((member.name.clone(), key.clone()));
        }
        match index.get(&key) {
            Some(&i) => order[i].1.push(member),
            None => {
                index.insert(key.clone(), order.len());
                order.push((key, vec![member]));
            }
        }
    }
    let collisions: Vec<Collision> = order
        .iter()
        .filter(|(_, group)| group.len() > 1)
        .map(|(key, group)| Collision {
            key: key.clone(),
            sources: group.iter().map(|m| m.name.clone()).collect(),
            clashing_fields: clashing_fields(group),
        })
        .collect();
    let mut report = LegacyReport {
        members: count,
        records: order.len() as u64,
        written: 0,
        unchanged: 0,
        renamed,
        collisions,
        revision: None,
        applied: false,
        replayed: false,
    };
    let namespace = options.namespace.clone();
    if !report.collisions.is_empty() && !options.merge_collisions {
        return Ok(CheckedLegacy {
            namespace,
            report,
            records: Vec::new(),
            idempotency_key: options.idempotency_key.clone(),
            fences: options.fences.clone(),
        });
    }
    let mut records: Vec<(String, RawValue)> = Vec::with_capacity(order.len());
    for (key, group) in order {
        let at = group.first().map(|m| m.at).unwrap_or_default();
        let value = merge(&key, group)?;
        let raw = encode_value(&value).map_err(|m| Location::new(at, None).error(m))?;
        records.push((key, raw));
    }
    report.applied = true;
    Ok(CheckedLegacy {
        namespace,
        report,
        records,
        idempotency_key: options.idempotency_key.clone(),
        fences: options.fences.clone(),
    })
}

/// Writes a legacy file that [`check_legacy`] read: one commit, or nothing
/// (also when its keys collided and merging was not asked for: the report
/// says so).
///
/// # Errors
/// The I/O errors of a commit; the store is then unchanged.
pub fn import_legacy_checked(store: &Store, checked: CheckedLegacy) -> Result<LegacyReport> {
    let CheckedLegacy {
        namespace,
        mut report,
        records,
        idempotency_key,
        fences,
    } = checked;
    if !report.applied {
        return Ok(report);
    }
    let namespace = namespace.as_str();
    // (written, unchanged): kept with an idempotency key for its replays.
    let run = |tx: &mut crate::Tx| -> Result<(u64, u64)> {
        for (lock, token) in &fences {
            tx.fence(lock, *token)?;
        }
        let (mut written, mut unchanged) = (0, 0);
        for (key, value) in &records {
            let current = tx.snapshot().get_raw(namespace, key)?;
            if current.is_some_and(|c| c.value == *value) {
                unchanged += 1;
            } else {
                tx.put_raw(namespace, key, value.clone())?;
                written += 1;
            }
        }
        Ok((written, unchanged))
    };
    let outcome = match idempotency_key.as_deref() {
        None => store.transaction(run)?,
        Some(key) => {
            // The import is the namespace and the records it writes.
            let mut h = crate::coord::Fnv::default();
            h.bytes(namespace.as_bytes());
            h.u64(records.len() as u64);
            for (key, value) in &records {
                h.bytes(key.as_bytes());
                h.bytes(value.as_msgpack());
            }
            let call = [b"import-legacy\0".as_slice(), &h.finish()].concat();
            let idempotency = store.keyed_call(key, call, None)?;
            store.keyed_transaction(idempotency, run)?
        }
    };
    (report.written, report.unchanged) = outcome.value;
    report.revision = outcome.revision;
    report.replayed = outcome.replayed;
    Ok(report)
}

fn read_members(input: impl Read, progress: Option<&Progress>) -> Result<Vec<Member>> {
    let re = |e| read_error(mapping::reader_error(e), 0, None);
    let mut r = mapping::reader(without_byte_order_mark(input)?);
    let found = r.peek().map_err(re)?;
    let at = mapping::place(&r);
    if found != ValueType::Object {
        return Err(Location::new(at, None).error(format!(
            "a legacy file must be a JSON object of key -> value, not {}",
            mapping::type_name(found)
        )));
    }
    r.begin_object().map_err(re)?;
    let mut members = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    while r.has_next().map_err(re)? {
        let at = mapping::place(&r);
        let name = r.next_name_owned().map_err(re)?;
        if let Some(first) = seen.insert(name.clone(), at.line) {
            return Err(Location::new(at, None).error(format!(
                "the key {} appears twice (first at line {first}); keep one of them",
                quote(&name)
            )));
        }
        let value = mapping::read_value(&mut r, Mode::Plain).map_err(|e| read_error(e, 0, None))?;
        members.push(Member { name, value, at });
        Progress::tick(progress, members.len() as u64);
    }
    r.end_object().map_err(re)?;
    r.consume_trailing_whitespace().map_err(re)?;
    Progress::finish(progress, members.len() as u64);
    Ok(members)
}

/// Members defined by more than one of `group` with different values.
fn clashing_fields(group: &[Member]) -> Vec<String> {
    let mut first: HashMap<&str, &Value> = HashMap::new();
    let mut clashing: Vec<String> = Vec::new();
    for member in group {
        let Value::Map(entries) = &member.value else {
            continue;
        };
        for (k, v) in entries {
            let Some(name) = k.as_str() else { continue };
            match first.get(name) {
                Some(seen) if *seen != v && !clashing.iter().any(|c| c == name) => {
                    clashing.push(name.to_owned());
                }
                Some(_) => {}
                None => {
                    first.insert(name, v);
                }
            }
        }
    }
    clashing
}

/// One value for a key: the member's own, or the merge of colliding members.
fn merge(key: &str, group: Vec<Member>) -> Result<Value> {
    if group.len() == 1 {
        return Ok(group
            .into_iter()
            .next()
            .map_or(Value::Nil, |member| member.value));
    }
    let mut merged: Vec<(Value, Value)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for member in group {
        let Value::Map(entries) = member.value else {
            return Err(Location::new(member.at, None).error(format!(
                "cannot merge {} into {}: its value is not an object; fix the file or \
                 import without merging",
                quote(&member.name),
                quote(key)
            )));
        };
        for (k, v) in entries {
            let name = k.as_str().unwrap_or_default().to_owned();
            match index.get(&name) {
                Some(&i) => merged[i].1 = v,
                None => {
                    index.insert(name, merged.len());
                    merged.push((k, v));
                }
            }
        }
    }
    Ok(Value::Map(merged))
}
