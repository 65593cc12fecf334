//! Python values <-> stored values (MessagePack, as `rmpv::Value`).
//!
//! The mapping is the one snapshots use (DESIGN.md, "Value mapping"), seen from
//! Python instead of JSON:
//!
//! | Python | MessagePack |
//! | --- | --- |
//! | `None`, `bool`, `str` | nil, bool, string |
//! | `int` from -2^63 to 2^64 - 1 | integer |
//! | `int` beyond, to ±2^8191 | integer beyond 64 bits (extension type 105, `statelog::bigint`; beyond that: `EncodeError`) |
//! | `float` (NaN and infinities too) | float 64 (a stored float 32 reads as `float`) |
//! | `bytes`, `bytearray`, `memoryview` | binary (reads as `bytes`) |
//! | `list`, `tuple` | array (reads as `list`; as `tuple` when it is a map key) |
//! | `dict` | map, keys of any of these types, in insertion order |
//! | `statelog.Ext(code, data)` | extension type (but 105, which is the integers') |
//!
//! Values are converted into an owned tree while the GIL is held, so that the
//! store call itself runs without it.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};
use rmpv::Value;
use statelog::bigint;

use crate::types::Ext;

/// Deepest nesting of lists and dicts accepted, as for raw values in the store
/// (`value::MAX_DEPTH`); it also bounds the recursion here (and catches a list
/// that contains itself).
const MAX_DEPTH: usize = 256;

/// Why a value could not be converted, and where in it.
#[derive(Debug)]
pub(crate) struct ConvertError {
    /// Where in the value, innermost last: `["stages"][0]`.
    path: Vec<String>,
    message: String,
}

impl ConvertError {
    fn new(message: impl Into<String>) -> ConvertError {
        ConvertError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn at(mut self, step: String) -> ConvertError {
        self.path.push(step);
        self
    }

    /// "value["stages"][0]: cannot store ..."
    pub(crate) fn describe(&self) -> String {
        if self.path.is_empty() {
            return self.message.clone();
        }
        let place: String = self.path.iter().rev().map(|s| format!("[{s}]")).collect();
        format!("value{place}: {}", self.message)
    }
}

type Converted<T> = Result<T, ConvertError>;

/// Converts a Python value into a stored value.
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> Converted<Value> {
    to_value_at(obj, 0)
}

fn to_value_at(obj: &Bound<'_, PyAny>, depth: usize) -> Converted<Value> {
    if obj.is_none() {
        return Ok(Value::Nil);
    }
    // bool before int: bool is a subclass of int.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Boolean(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return int_value(obj);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::F64(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return match s.to_cow() {
            Ok(s) => Ok(Value::from(s.into_owned())),
            Err(_) => Err(ConvertError::new(
                "the string holds a lone surrogate, which is not valid UTF-8",
            )),
        };
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Binary(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Binary(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes = obj
            .call_method0("tobytes")
            .and_then(|b| b.extract::<Vec<u8>>())
            .map_err(|e| ConvertError::new(format!("cannot read the memoryview: {e}")))?;
        return Ok(Value::Binary(bytes));
    }
    if let Ok(ext) = obj.cast::<Ext>() {
        let ext = ext.get();
        if ext.code == bigint::EXT_TYPE {
            return Err(ConvertError::new(format!(
                "statelog.Ext({}, ...): extension type {} is reserved for integers beyond \
                 64 bits; store the int itself",
                ext.code,
                bigint::EXT_TYPE
            )));
        }
        return Ok(Value::Ext(ext.code, ext.data.clone()));
    }
    let nested = obj.is_instance_of::<PyList>()
        || obj.is_instance_of::<PyTuple>()
        || obj.is_instance_of::<PyDict>();
    if nested && depth >= MAX_DEPTH {
        return Err(ConvertError::new(format!(
            "the value nests deeper than {MAX_DEPTH} lists and dicts (does it contain itself?)"
        )));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let mut items = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            items.push(to_value_at(&item, depth + 1).map_err(|e| e.at(i.to_string()))?);
        }
        return Ok(Value::Array(items));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let mut items = Vec::with_capacity(tuple.len());
        for (i, item) in tuple.iter().enumerate() {
            items.push(to_value_at(&item, depth + 1).map_err(|e| e.at(i.to_string()))?);
        }
        return Ok(Value::Array(items));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut entries = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let step = || k.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string());
            let key = to_value_at(&k, depth + 1).map_err(|e| e.at(format!("key {}", step())))?;
            let value = to_value_at(&v, depth + 1).map_err(|e| e.at(step()))?;
            entries.push((key, value));
        }
        return Ok(Value::Map(entries));
    }
    let type_name = obj
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    Err(ConvertError::new(format!(
        "cannot store a {type_name}: values are None, bool, int, float, str, bytes, list, \
         tuple, dict and statelog.Ext (convert it first, e.g. a datetime to its isoformat())"
    )))
}

fn int_value(obj: &Bound<'_, PyAny>) -> Converted<Value> {
    match obj.extract::<i64>() {
        Ok(n) => return Ok(Value::from(n)),
        Err(e) if !e.is_instance_of::<PyOverflowError>(obj.py()) => {
            return Err(ConvertError::new(format!("cannot read the integer: {e}")));
        }
        Err(_) => {}
    }
    if let Ok(n) = obj.extract::<u64>() {
        return Ok(Value::from(n));
    }
    big_int_value(obj).map_err(|e| ConvertError::new(format!("cannot store the integer: {e}")))?
}

/// An int beyond 64 bits: its two's complement bytes, big-endian, as short as
/// they can be (`int.to_bytes`, linear in the length; decimal text would be
/// quadratic, and Python limits it).
fn big_int_value(obj: &Bound<'_, PyAny>) -> PyResult<Converted<Value>> {
    let py = obj.py();
    // A negative n takes as many bytes as ~n = -n - 1 does, plus the sign.
    let magnitude = if obj.lt(0)? {
        obj.call_method0("__invert__")?
    } else {
        obj.clone()
    };
    let bits: usize = magnitude.call_method0("bit_length")?.extract()?;
    let len = bits / 8 + 1;
    if len > bigint::MAX_LEN {
        return Ok(Err(ConvertError::new(format!(
            "the integer has {bits} bits, beyond the integers statelog stores \
             (from -2^8191 to 2^8191 - 1); store it as bytes or a str"
        ))));
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("signed", true)?;
    let bytes: Vec<u8> = obj
        .call_method("to_bytes", (len, "big"), Some(&kwargs))?
        .extract()?;
    Ok(bigint::check(&bytes)
        .map(|()| Value::Ext(bigint::EXT_TYPE, bytes))
        .map_err(ConvertError::new))
}

/// A stored integer beyond 64 bits as a Python int (`int.from_bytes`).
fn big_int<'py>(py: Python<'py>, payload: &[u8]) -> Converted<Bound<'py, PyAny>> {
    bigint::check(payload)
        .map_err(|e| ConvertError::new(format!("the stored value is damaged: {e}")))?;
    let kwargs = PyDict::new(py);
    let int = py.get_type::<PyInt>();
    kwargs
        .set_item("signed", true)
        .and_then(|()| {
            int.call_method(
                "from_bytes",
                (PyBytes::new(py, payload), "big"),
                Some(&kwargs),
            )
        })
        .map_err(|e| ConvertError::new(e.to_string()))
}

/// Converts a stored value into a Python value.
pub(crate) fn to_python<'py>(py: Python<'py>, value: &Value) -> Converted<Bound<'py, PyAny>> {
    to_python_as(py, value, false)
}

/// `as_key`: arrays become tuples (a dict key must be hashable).
fn to_python_as<'py>(py: Python<'py>, value: &Value, as_key: bool) -> Converted<Bound<'py, PyAny>> {
    let py_err = |e: PyErr| ConvertError::new(e.to_string());
    Ok(match value {
        Value::Nil => py.None().into_bound(py),
        Value::Boolean(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(n), _) => {
                let Ok(n) = n.into_pyobject(py);
                n.into_any()
            }
            (None, Some(n)) => {
                let Ok(n) = n.into_pyobject(py);
                n.into_any()
            }
            (None, None) => return Err(ConvertError::new("an integer out of range")),
        },
        Value::F32(f) => PyFloat::new(py, f64::from(*f)).into_any(),
        Value::F64(f) => PyFloat::new(py, *f).into_any(),
        Value::String(s) => match s.as_str() {
            Some(s) => PyString::new(py, s).into_any(),
            None => return Err(ConvertError::new("a string is not valid UTF-8")),
        },
        Value::Binary(b) => PyBytes::new(py, b).into_any(),
        Value::Ext(bigint::EXT_TYPE, payload) => big_int(py, payload)?,
        Value::Ext(code, data) => Bound::new(
            py,
            Ext {
                code: *code,
                data: data.clone(),
            },
        )
        .map_err(py_err)?
        .into_any(),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_python_as(py, item, as_key).map_err(|e| e.at(i.to_string()))?);
            }
            if as_key {
                PyTuple::new(py, out).map_err(py_err)?.into_any()
            } else {
                PyList::new(py, out).map_err(py_err)?.into_any()
            }
        }
        Value::Map(entries) => {
            if as_key {
                return Err(ConvertError::new(
                    "a map key is itself a map, which a Python dict cannot hold as a key",
                ));
            }
            let dict = PyDict::new(py);
            for (i, (k, v)) in entries.iter().enumerate() {
                let key = to_python_as(py, k, true).map_err(|e| e.at(format!("key {i}")))?;
                let step = || {
                    key.repr()
                        .map_or_else(|_| "?".to_owned(), |r| r.to_string())
                };
                let item = to_python_as(py, v, false).map_err(|e| e.at(step()))?;
                dict.set_item(&key, item).map_err(py_err)?;
            }
            if dict.len() != entries.len() {
                return Err(ConvertError::new(
                    "the map has keys that are equal in Python (a key repeated, or keys such \
                     as 1, 1.0 and True), which a dict cannot hold apart",
                ));
            }
            dict.into_any()
        }
    })
}
