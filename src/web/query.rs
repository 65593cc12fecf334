//! The parameters of `GET /api/v1/namespaces/{ns}/records` and the choice of
//! records they make: paging, sorting and filtering over one snapshot.
//!
//! The common case, the first pages in key order without a filter, streams
//! the records in key order and stops after the page. Any other order or a
//! filter reads the whole namespace once: each value is decoded, filtered and
//! reduced to its sort key; only the matching keys and their sort keys are
//! kept, and the page's records are read again by key.

use std::cmp::Ordering;

use rmpv::Value;

use crate::error::Result;
use crate::snapshot::mapping;
use crate::store::{KeyRange, Snapshot};
use crate::value::{RawValue, Versioned};

/// Records per page unless `limit` says otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub(crate) const MAX_LIMIT: usize = 1000;
/// The longest filter text (`q`, a `where` value), in bytes.
const MAX_FILTER_LEN: usize = 1024;
/// The most `where` conditions.
const MAX_WHERE: usize = 16;

/// A parameter with a value that cannot work: the HTTP layer answers 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadParameter {
    /// The parameter's name.
    pub parameter: String,
    /// What is wrong and what would do.
    pub message: String,
}

fn bad(parameter: &str, message: impl Into<String>) -> BadParameter {
    BadParameter {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

/// What a record is sorted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SortBy {
    Key,
    Version,
    CreateRevision,
    ModRevision,
    Updated,
    /// A field of the value, by its path (`value.a.b`: `["a", "b"]`).
    Field(Vec<String>),
}

/// The parsed parameters of a records request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordsQuery {
    pub limit: usize,
    pub offset: u64,
    pub sort: SortBy,
    pub descending: bool,
    /// Lowercased text that the key or the value's JSON must contain.
    pub text: Option<String>,
    /// Fields that must show exactly these texts.
    pub conditions: Vec<(Vec<String>, String)>,
}

impl RecordsQuery {
    /// Parses the query string's pairs; `token` (authentication) is ignored.
    pub(crate) fn parse(pairs: &[(String, String)]) -> std::result::Result<Self, BadParameter> {
        let mut query = RecordsQuery {
            limit: DEFAULT_LIMIT,
            offset: 0,
            sort: SortBy::Key,
            descending: false,
            text: None,
            conditions: Vec::new(),
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if name != "where" {
                if seen.contains(&name.as_str()) {
                    return Err(bad(name, format!("{name} is given twice; give it once")));
                }
                seen.push(name);
            }
            match name.as_str() {
                "limit" => {
                    query.limit = match value.parse::<usize>() {
                        Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                        _ => {
                            return Err(bad(
                                "limit",
                                format!(
                                    "limit must be a whole number from 1 to {MAX_LIMIT}, not \
                                     {value:?}"
                                ),
                            ));
                        }
                    }
                }
                "offset" => {
                    query.offset = value.parse::<u64>().map_err(|_| {
                        bad(
                            "offset",
                            format!("offset must be a whole number from 0, not {value:?}"),
                        )
                    })?;
                }
                "sort" => (query.sort, query.descending) = parse_sort(value)?,
                "q" => {
                    check_len("q", value)?;
                    if !value.is_empty() {
                        query.text = Some(value.to_lowercase());
                    }
                }
                "where" => {
                    if query.conditions.len() == MAX_WHERE {
                        return Err(bad(
                            "where",
                            format!("at most {MAX_WHERE} where conditions"),
                        ));
                    }
                    check_len("where", value)?;
                    let Some((path, expected)) = value.split_once('=') else {
                        return Err(bad(
                            "where",
                            format!(
                                "where must be FIELD=VALUE (like status=failed), not {value:?}"
                            ),
                        ));
                    };
                    query
                        .conditions
                        .push((parse_path("where", path)?, expected.to_owned()));
                }
                "token" => {}
                other => {
                    return Err(bad(
                        other,
                        format!(
                            "unknown parameter {other:?}; the parameters are limit, offset, sort, \
                             q and where"
                        ),
                    ));
                }
            }
        }
        Ok(query)
    }

    /// True when the page is the records in key order from the start: no
    /// filter, no other order.
    fn in_key_order(&self) -> bool {
        self.sort == SortBy::Key
            && !self.descending
            && self.text.is_none()
            && self.conditions.is_empty()
    }
}

fn check_len(parameter: &str, value: &str) -> std::result::Result<(), BadParameter> {
    if value.len() > MAX_FILTER_LEN {
        return Err(bad(
            parameter,
            format!("{parameter} is longer than {MAX_FILTER_LEN} bytes"),
        ));
    }
    Ok(())
}

fn parse_sort(value: &str) -> std::result::Result<(SortBy, bool), BadParameter> {
    let (descending, name) = match value.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, value),
    };
    let sort = match name {
        "key" => SortBy::Key,
        "version" => SortBy::Version,
        "create_revision" => SortBy::CreateRevision,
        "mod_revision" => SortBy::ModRevision,
        "updated" => SortBy::Updated,
        _ => match name.strip_prefix("value.") {
            Some(path) => SortBy::Field(parse_path("sort", path)?),
            None => {
                return Err(bad(
                    "sort",
                    format!(
                        "cannot sort by {value:?}: sort by key, version, create_revision, \
                         mod_revision, updated or value.FIELD (a field of the values, like \
                         value.status), with a leading - for descending order"
                    ),
                ));
            }
        },
    };
    Ok((sort, descending))
}

fn parse_path(parameter: &str, path: &str) -> std::result::Result<Vec<String>, BadParameter> {
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(bad(
            parameter,
            format!(
                "{path:?} is not a field path: names separated by dots, like status or job.stage"
            ),
        ));
    }
    Ok(parts)
}

/// One page of records and what it was chosen from.
#[derive(Debug)]
pub(crate) struct Page {
    /// Records in the namespace.
    pub total: u64,
    /// Records that match the filter.
    pub matched: u64,
    /// The page, in order.
    pub records: Vec<(String, Versioned<RawValue>)>,
}

/// Chooses the page `query` asks for among the records of `namespace` in
/// `snapshot`.
///
/// # Errors
/// When the store cannot be read.
pub(crate) fn select(snapshot: &Snapshot, namespace: &str, query: &RecordsQuery) -> Result<Page> {
    let total = snapshot.count(namespace)?;
    if query.in_key_order() {
        let mut records = Vec::with_capacity(query.limit);
        let skip = usize::try_from(query.offset).unwrap_or(usize::MAX);
        for item in snapshot
            .list_raw(namespace, KeyRange::all())?
            .skip(skip)
            .take(query.limit)
        {
            records.push(item?);
        }
        return Ok(Page {
            total,
            matched: total,
            records,
        });
    }
    let mut chosen: Vec<(SortKey, String)> = Vec::new();
    let mut json = Vec::new();
    for item in snapshot.list_raw(namespace, KeyRange::all())? {
        let (key, record) = item?;
        // A value that does not decode matches only filters on the key.
        let value = mapping::from_msgpack(record.value.as_msgpack()).unwrap_or(Value::Nil);
        if let Some(text) = &query.text {
            json.clear();
            let _ = mapping::write_value(&value, false, 0, &mut json);
            if !key.to_lowercase().contains(text.as_str())
                && !String::from_utf8_lossy(&json)
                    .to_lowercase()
                    .contains(text.as_str())
            {
                continue;
            }
        }
        if !query
            .conditions
            .iter()
            .all(|(path, expected)| field(&value, path).is_some_and(|v| shown(v) == *expected))
        {
            continue;
        }
        let sort_key = match &query.sort {
            SortBy::Key => SortKey::None,
            SortBy::Version => SortKey::Number(record.version as f64),
            SortBy::CreateRevision => SortKey::Number(record.create_revision as f64),
            SortBy::ModRevision => SortKey::Number(record.mod_revision as f64),
            SortBy::Updated => SortKey::Number(record.updated_at.as_micros() as f64),
            SortBy::Field(path) => field(&value, path).map_or(SortKey::Missing, SortKey::of),
        };
        chosen.push((sort_key, key));
    }
    // Keys arrive in order, and the sort is stable: equal sort keys stay in
    // key order (reversed too when descending). Missing fields sort last
    // either way.
    chosen.sort_by(|(a, ka), (b, kb)| {
        let by_field = match (a, b) {
            (SortKey::Missing, SortKey::Missing) => Ordering::Equal,
            (SortKey::Missing, _) => return Ordering::Greater,
            (_, SortKey::Missing) => return Ordering::Less,
            _ => a.cmp(b),
        };
        let order = by_field.then_with(|| ka.cmp(kb));
        if query.descending {
            order.reverse()
        } else {
            order
        }
    });
    let matched = chosen.len() as u64;
    let start = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let mut records = Vec::with_capacity(query.limit);
    for (_, key) in chosen.into_iter().skip(start).take(query.limit) {
        // The snapshot does not change: every chosen key is still there.
        if let Some(record) = snapshot.get_raw(namespace, &key)? {
            records.push((key, record));
        }
    }
    Ok(Page {
        total,
        matched,
        records,
    })
}

/// The field at `path` of a map value.
fn field<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, name| match v {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name.as_str()))
            .map(|(_, v)| v),
        _ => None,
    })
}

/// A field's text for `where`: strings as they are, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.as_str().unwrap_or_default().to_owned(),
        other => {
            let mut json = Vec::new();
            let _ = mapping::write_value(other, false, 0, &mut json);
            String::from_utf8_lossy(&json).into_owned()
        }
    }
}

/// What a record sorts by: null, then false and true, then numbers, then
/// strings, then anything else by its JSON; records without the field last.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortKey {
    None,
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Other(String),
    Missing,
}

impl SortKey {
    fn of(value: &Value) -> SortKey {
        match value {
            Value::Nil => SortKey::Null,
            Value::Boolean(b) => SortKey::Bool(*b),
            Value::Integer(i) => SortKey::Number(i.as_f64().unwrap_or(0.0)),
            Value::F32(f) => SortKey::Number(f64::from(*f)),
            Value::F64(f) => SortKey::Number(*f),
            Value::String(s) => SortKey::Text(s.as_str().unwrap_or_default().to_owned()),
            other => SortKey::Other(shown(other)),
        }
    }

    fn cmp(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
            _ => self.partial_cmp(other).unwrap_or(Ordering::Equal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        text.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn defaults_and_every_parameter() {
        let q = RecordsQuery::parse(&[]).unwrap();
        assert_eq!(
            (q.limit, q.offset, &q.sort, q.descending),
            (100, 0, &SortBy::Key, false)
        );
        assert!(q.in_key_order());
        let q = RecordsQuery::parse(&pairs(
            "limit=5&offset=10&sort=-value.job.stage&q=FaIl&where=status=failed&where=n=3&token=x",
        ))
        .unwrap();
        assert_eq!(q.limit, 5);
        assert_eq!(q.offset, 10);
        assert_eq!(q.sort, SortBy::Field(vec!["job".into(), "stage".into()]));
        assert!(q.descending);
        assert_eq!(q.text.as_deref(), Some("fail"));
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[1], (vec!["n".to_owned()], "3".to_owned()));
        assert!(!q.in_key_order());
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (text, parameter) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("offset=-1", "offset"),
            ("sort=colour", "sort"),
            ("sort=value.", "sort"),
            ("sort=value.a..b", "sort"),
            ("where=status", "where"),
            ("where==x", "where"),
            ("page=2", "page"),
            ("limit=1&limit=2", "limit"),
        ] {
            let e = RecordsQuery::parse(&pairs(text)).unwrap_err();
            assert_eq!(e.parameter, parameter, "{text}: {}", e.message);
        }
    }

    #[test]
    fn sort_keys_order_kinds_then_values() {
        let mut keys = vec![
            SortKey::Text("b".into()),
            SortKey::Number(10.0),
            SortKey::Null,
            SortKey::Number(9.5),
            SortKey::Bool(true),
            SortKey::Text("a".into()),
            SortKey::Bool(false),
        ];
        keys.sort_by(SortKey::cmp);
        assert_eq!(
            keys,
            vec![
                SortKey::Null,
                SortKey::Bool(false),
                SortKey::Bool(true),
                SortKey::Number(9.5),
                SortKey::Number(10.0),
                SortKey::Text("a".into()),
                SortKey::Text("b".into()),
            ]
        );
    }
}
