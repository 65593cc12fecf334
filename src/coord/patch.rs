//! Patches: changes to fields of a record, evaluated at commit against the
//! record's value at that moment (not against a value read earlier), so
//! patches of one record never conflict with each other. The log records the
//! resulting value, so a log record stays complete on its own.
//!
//! Values are handled as MessagePack trees (`rmpv`): every field a patch does
//! not touch keeps its exact type, bytes and order.

use rmpv::Value;
use serde::Serialize;

use crate::access::coord::{OpKind, PatchOp};
use crate::error::{Error, Result, Shown};
use crate::value::{self, RawValue, kind, tree as decode};

/// A patch: field operations applied in order, at commit, to the record's
/// value at that moment. A missing record starts as an empty object.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = statelog::Store::open(dir.path(), Default::default()).unwrap();
/// use statelog::Patch;
/// let patch = Patch::new()
///     .set(&["status"], &"running")
///     .add(&["stages_done"], 1)
///     .append_unique(&["hosts"], &"node7");
/// let done = store.patch("jobs", "j1", &patch)?;
/// assert_eq!(done.value.to_json().unwrap(), r#"{"status":"running","stages_done":1,"hosts":["node7"]}"#);
/// # Ok::<(), statelog::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    pub(crate) ops: Vec<PatchOp>,
    /// The first value that could not be encoded, reported at commit.
    pub(crate) error: Option<String>,
}

fn path_of(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| (*s).to_owned()).collect()
}

impl Patch {
    /// An empty patch.
    pub fn new() -> Patch {
        Patch::default()
    }

    fn push<T: Serialize + ?Sized>(mut self, kind: OpKind, path: &[&str], value: &T) -> Patch {
        match RawValue::from_value(value) {
            Ok(raw) => self.ops.push(PatchOp {
                kind,
                path: path_of(path),
                value: Some(raw.into_msgpack()),
            }),
            Err(e) => {
                self.error.get_or_insert(e.to_string());
            }
        }
        self
    }

    fn push_raw(mut self, kind: OpKind, path: &[&str], value: RawValue) -> Patch {
        self.ops.push(PatchOp {
            kind,
            path: path_of(path),
            value: Some(value.into_msgpack()),
        });
        self
    }

    /// Sets the field at `path` (the whole value for an empty path), creating
    /// missing objects on the way.
    pub fn set<T: Serialize + ?Sized>(self, path: &[&str], value: &T) -> Patch {
        self.push(OpKind::Set, path, value)
    }

    /// Like [`set`](Self::set), with a value given as MessagePack.
    pub fn set_raw(self, path: &[&str], value: RawValue) -> Patch {
        self.push_raw(OpKind::Set, path, value)
    }

    /// Removes the field at `path` (nothing if it is missing).
    pub fn remove(mut self, path: &[&str]) -> Patch {
        self.ops.push(PatchOp {
            kind: OpKind::Remove,
            path: path_of(path),
            value: None,
        });
        self
    }

    /// Adds `by` to the number at `path`; a missing field counts as 0.
    /// Integers stay integers within 64 bits (overflow fails the commit); a
    /// float on either side gives a float.
    pub fn add<N: Serialize>(self, path: &[&str], by: N) -> Patch {
        self.push(OpKind::Add, path, &by)
    }

    /// Appends `value` to the array at `path` (a missing field becomes one).
    pub fn append<T: Serialize + ?Sized>(self, path: &[&str], value: &T) -> Patch {
        self.push(OpKind::Append, path, value)
    }

    /// Like [`append`](Self::append), with a value given as MessagePack.
    pub fn append_raw(self, path: &[&str], value: RawValue) -> Patch {
        self.push_raw(OpKind::Append, path, value)
    }

    /// Appends `value` unless the array holds an equal element already.
    pub fn append_unique<T: Serialize + ?Sized>(self, path: &[&str], value: &T) -> Patch {
        self.push(OpKind::AppendUnique, path, value)
    }

    /// Like [`append_unique`](Self::append_unique), with a value given as
    /// MessagePack.
    pub fn append_unique_raw(self, path: &[&str], value: RawValue) -> Patch {
        self.push_raw(OpKind::AppendUnique, path, value)
    }

    /// Merges an object into the object at `path`: each member is set, and
    /// where both hold an object the two are merged in turn.
    pub fn merge<T: Serialize + ?Sized>(self, path: &[&str], object: &T) -> Patch {
        self.push(OpKind::Merge, path, object)
    }

    /// Like [`merge`](Self::merge), with an object given as MessagePack.
    pub fn merge_raw(self, path: &[&str], object: RawValue) -> Patch {
        self.push_raw(OpKind::Merge, path, object)
    }

    /// True when the patch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, checked, for a request on the record `namespace`/`key`.
    pub(crate) fn checked_ops(&self, namespace: &str, key: &str) -> Result<Vec<PatchOp>> {
        if let Some(message) = &self.error {
            return Err(Error::Encode {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                message: message.clone(),
            });
        }
        for op in &self.ops {
            op.check()
                .map_err(|message| failed(namespace, key, message))?;
        }
        Ok(self.ops.clone())
    }
}

fn failed(namespace: &str, key: &str, message: String) -> Error {
    Error::PatchFailed {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        message,
    }
}

/// What a value is, with a short rendering, for messages: `a string
/// ("running")`, `null`.
fn describe(value: &Value) -> String {
    if let Value::Nil = value {
        return "null".to_owned();
    }
    let mut bytes = Vec::new();
    let text = rmpv::encode::write_value(&mut bytes, value)
        .ok()
        .and_then(|()| RawValue::from_msgpack(bytes).ok())
        .and_then(|raw| raw.to_json().ok())
        .unwrap_or_else(|| "?".to_owned());
    let short: String = if text.chars().count() > 40 {
        text.chars().take(39).chain(['…']).collect()
    } else {
        text
    };
    format!("{} ({})", kind(value), Shown::new(&short))
}

fn shown_path(path: &[String]) -> String {
    if path.is_empty() {
        "the record's value".to_owned()
    } else {
        format!("field {}", Shown::new(&path.join(".")))
    }
}

/// Applies `ops` to `current` (the stored MessagePack, `None` when the record
/// is absent) and returns the new value's MessagePack.
///
/// # Errors
/// [`Error::PatchFailed`] naming the record, the field and why (a path through
/// something that is not an object, adding to something that is not a number,
/// an integer overflow); [`Error::TooLarge`] and [`Error::InvalidValue`] for a
/// result the store cannot hold.
pub(crate) fn apply(
    namespace: &str,
    key: &str,
    current: Option<&[u8]>,
    ops: &[PatchOp],
) -> Result<Vec<u8>> {
    let fail = |message: String| failed(namespace, key, message);
    let mut root = match current {
        Some(bytes) => {
            decode(bytes).map_err(|e| fail(format!("the stored value is damaged: {e}")))?
        }
        None => Value::Map(Vec::new()),
    };
    for op in ops {
        apply_one(&mut root, op).map_err(fail)?;
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &root).map_err(|e| fail(e.to_string()))?;
    value::check_len(namespace, key, out.len())?;
    value::check_msgpack(&out).map_err(|message| Error::InvalidValue {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        message,
    })?;
    Ok(out)
}

fn apply_one(root: &mut Value, op: &PatchOp) -> std::result::Result<(), String> {
    let operand = match &op.value {
        Some(bytes) => Some(decode(bytes)?),
        None => None,
    };
    if op.kind == OpKind::Remove {
        return remove(root, &op.path);
    }
    let operand = operand.ok_or_else(|| format!("{} needs a value", op.kind.name()))?;
    let (slot, created) = slot(root, &op.path)?;
    match op.kind {
        OpKind::Set => *slot = operand,
        OpKind::Remove => {}
        OpKind::Add => *slot = add(slot, created, &operand, &op.path)?,
        OpKind::Append | OpKind::AppendUnique => {
            if created {
                *slot = Value::Array(Vec::new());
            }
            let Value::Array(items) = slot else {
                return Err(format!(
                    "cannot append to {}: it is {}, not an array",
                    shown_path(&op.path),
                    describe(slot)
                ));
            };
            if op.kind == OpKind::Append || !items.contains(&operand) {
                items.push(operand);
            }
        }
        OpKind::Merge => {
            if created {
                *slot = Value::Map(Vec::new());
            }
            merge(slot, operand, &op.path)?;
        }
    }
    Ok(())
}

/// The place at `path`, reached by creating missing objects on the way, and
/// whether the last field was missing (then it holds `null` until set).
fn slot<'a>(
    root: &'a mut Value,
    path: &[String],
) -> std::result::Result<(&'a mut Value, bool), String> {
    let mut at = root;
    let mut created = false;
    for (i, name) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let Value::Map(entries) = at else {
            return Err(format!(
                "cannot reach {}: {} is {}, not an object",
                shown_path(path),
                shown_path(&path[..i]),
                describe(at)
            ));
        };
        let index = match entries.iter().position(|(k, _)| k.as_str() == Some(name)) {
            Some(index) => index,
            None => {
                created = true;
                let fresh = if last {
                    Value::Nil
                } else {
                    Value::Map(Vec::new())
                };
                entries.push((Value::from(name.as_str()), fresh));
                entries.len() - 1
            }
        };
        at = &mut entries[index].1;
    }
    Ok((at, created))
}

fn remove(root: &mut Value, path: &[String]) -> std::result::Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("a patch cannot remove the whole value (delete the record)".to_owned());
    };
    let mut at = root;
    for name in parents {
        let Value::Map(entries) = at else {
            return Ok(());
        };
        match entries.iter_mut().find(|(k, _)| k.as_str() == Some(name)) {
            Some((_, v)) => at = v,
            None => return Ok(()),
        }
    }
    if let Value::Map(entries) = at {
        entries.retain(|(k, _)| k.as_str() != Some(last));
    }
    Ok(())
}

fn merge(target: &mut Value, object: Value, path: &[String]) -> std::result::Result<(), String> {
    let Value::Map(members) = object else {
        return Err(format!("merge needs an object, not {}", kind(&object)));
    };
    let Value::Map(entries) = target else {
        return Err(format!(
            "cannot merge into {}: it is {}, not an object",
            shown_path(path),
            describe(target)
        ));
    };
    for (name, value) in members {
        match entries.iter_mut().find(|(k, _)| *k == name) {
            Some((_, existing @ Value::Map(_))) if matches!(value, Value::Map(_)) => {
                let mut inner = path.to_vec();
                inner.push(name.as_str().unwrap_or("?").to_owned());
                merge(existing, value, &inner)?;
            }
            Some((_, existing)) => *existing = value,
            None => entries.push((name, value)),
        }
    }
    Ok(())
}

fn as_i128(value: &Value) -> Option<i128> {
    match value {
        Value::Integer(i) => i
            .as_i64()
            .map(i128::from)
            .or_else(|| i.as_u64().map(i128::from)),
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        Value::Integer(_) => as_i128(value).map(|n| n as f64),
        _ => None,
    }
}

fn add(
    current: &Value,
    created: bool,
    by: &Value,
    path: &[String],
) -> std::result::Result<Value, String> {
    let overflow = || {
        format!(
            "cannot add to {}: the result is beyond the 64-bit integers (-2^63 to 2^64 - 1)",
            shown_path(path)
        )
    };
    let int = |n: i128| -> std::result::Result<Value, String> {
        if let Ok(n) = i64::try_from(n) {
            Ok(Value::from(n))
        } else if let Ok(n) = u64::try_from(n) {
            Ok(Value::from(n))
        } else {
            Err(overflow())
        }
    };
    let current = if created { &Value::from(0) } else { current };
    match (as_i128(current), as_i128(by)) {
        (Some(a), Some(b)) => int(a.checked_add(b).ok_or_else(overflow)?),
        _ => match (as_f64(current), as_f64(by)) {
            (Some(a), Some(b)) => {
                let total = a + b;
                if !total.is_finite() {
                    return Err(format!(
                        "cannot add to {}: the result is beyond the range of a 64-bit float",
                        shown_path(path)
                    ));
                }
                Ok(Value::F64(total))
            }
            (None, _) if matches!(current, Value::Ext(crate::bigint::EXT_TYPE, _)) => Err(format!(
                "cannot add to {}: it holds an integer beyond 64 bits, and add works within \
                 64 bits only (-2^63 to 2^64 - 1)",
                shown_path(path)
            )),
            (None, _) => Err(format!(
                "cannot add to {}: it is {}, not a number",
                shown_path(path),
                describe(current)
            )),
            (_, None) => Err(format!("add needs a number, not {}", kind(by))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> String {
        RawValue::from_msgpack(bytes.to_vec())
            .expect("valid")
            .to_json()
            .expect("renders")
    }

    fn run(start: Option<&str>, patch: &Patch) -> Result<String> {
        let start = start.map(|j| RawValue::from_json(j).expect("json").into_msgpack());
        let ops = patch.checked_ops("ns", "k")?;
        apply("ns", "k", start.as_deref(), &ops).map(|b| json(&b))
    }

    #[test]
    fn operations_apply_in_order_and_keep_other_fields() {
        let patch = Patch::new()
            .set(&["status"], &"running")
            .add(&["n"], 2)
            .add(&["n"], -5)
            .append(&["log"], &"a")
            .append_unique(&["log"], &"a")
            .append_unique(&["log"], &"b")
            .merge(
                &["meta"],
                &serde_json::json!({"host": "h", "deep": {"x": 1}}),
            )
            .merge(&["meta"], &serde_json::json!({"deep": {"y": 2}}))
            .remove(&["gone"])
            .remove(&["missing", "too"]);
        let out = run(
            Some(r#"{"keep": [1, 2.5], "gone": true, "status": "queued"}"#),
            &patch,
        )
        .expect("applies");
        assert_eq!(
            out,
            r#"{"keep":[1,2.5],"status":"running","n":-3,"log":["a","b"],"meta":{"deep":{"x":1,"y":2},"host":"h"}}"#
        );
    }

    #[test]
    fn a_missing_record_starts_as_an_empty_object() {
        let out = run(None, &Patch::new().add(&["a", "b"], 1)).expect("applies");
        assert_eq!(out, r#"{"a":{"b":1}}"#);
    }

    #[test]
    fn numbers_stay_integers_until_a_float_arrives_and_overflow_fails() {
        let out = run(
            Some(r#"{"n": 9223372036854775807}"#),
            &Patch::new().add(&["n"], 1),
        )
        .expect("u64 holds it");
        assert_eq!(out, r#"{"n":{"$int":"9223372036854775808"}}"#);
        let out = run(Some(r#"{"n": 1}"#), &Patch::new().add(&["n"], 0.5)).expect("float");
        assert_eq!(out, r#"{"n":1.5}"#);
        let e = run(
            Some(r#"{"n": {"$int": "18446744073709551615"}}"#),
            &Patch::new().add(&["n"], 1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("beyond the 64-bit integers"), "{e}");
    }

    #[test]
    fn wrong_shapes_fail_with_the_field_named() {
        for (start, patch, expected) in [
            (
                r#"{"n": "5"}"#,
                Patch::new().add(&["n"], 1),
                "field n: it is a string",
            ),
            (r#"{"n": null}"#, Patch::new().add(&["n"], 1), "it is null"),
            (
                r#"{"s": 1}"#,
                Patch::new().set(&["s", "x"], &1),
                "field s is a number",
            ),
            (
                r#"{"a": {}}"#,
                Patch::new().append(&["a"], &1),
                "not an array",
            ),
            (
                r#"{"m": [1]}"#,
                Patch::new().merge(&["m"], &serde_json::json!({})),
                "not an object",
            ),
        ] {
            let e = run(Some(start), &patch).unwrap_err();
            assert!(matches!(e, Error::PatchFailed { .. }), "{e}");
            assert!(e.to_string().contains(expected), "{start}: {e}");
        }
        let e = run(None, &Patch::new().merge(&["m"], &5)).unwrap_err();
        assert!(e.to_string().contains("merge needs an object"), "{e}");
        let e = run(None, &Patch::new().remove(&[])).unwrap_err();
        assert!(e.to_string().contains("delete the record"), "{e}");
    }
}
