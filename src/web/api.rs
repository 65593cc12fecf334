//! The JSON API under `/api/v1/`: namespaces, a namespace's records, one
//! record, a record's history. Every read runs on one snapshot, on tokio's
//! blocking pool; errors are `{"error": MESSAGE}` (and `"parameter"` for a
//! bad one) with a status that says whose fault it is.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::App;
use super::feed::PastVersion;
use super::json::{RecordJson, value_json};
use super::query::{self, BadParameter, RecordsQuery};
use crate::error::Error;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub parameter: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            parameter: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<BadParameter> for ApiError {
    fn from(e: BadParameter) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: e.message,
            parameter: Some(e.parameter),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::InvalidKey { .. } => StatusCode::BAD_REQUEST,
            Error::Compacted { .. } => StatusCode::GONE,
            Error::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            Error::Closed | Error::Disconnected { .. } | Error::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.parameter {
            Some(parameter) => json!({ "error": self.message, "parameter": parameter }),
            None => json!({ "error": self.message }),
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

/// The query string's pairs, decoded.
pub(crate) fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Refuses every parameter but `token`.
fn no_parameters(query: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    for (name, _) in pairs(query) {
        if name != "token" && !allowed.contains(&name.as_str()) {
            let known = if allowed.is_empty() {
                "it takes none".to_owned()
            } else {
                format!("it takes {}", allowed.join(", "))
            };
            return Err(BadParameter {
                message: format!("unknown parameter {name:?}; {known}"),
                parameter: name,
            }
            .into());
        }
    }
    Ok(())
}

/// Runs a blocking read of the store.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the read failed: {e}"),
        )
    })?
}

/// `GET /api/v1/namespaces`.
pub(crate) async fn namespaces(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> ApiResult {
    no_parameters(q.as_deref(), &[])?;
    #[derive(Serialize)]
    struct Namespace {
        name: String,
        records: u64,
    }
    let store = Arc::clone(&app.store);
    let (revision, list) = blocking(move || {
        let snapshot = store.snapshot()?;
        let mut list = Vec::new();
        for name in snapshot.namespaces()? {
            let records = snapshot.count(&name)?;
            list.push(Namespace { name, records });
        }
        Ok((snapshot.revision()?, list))
    })
    .await?;
    Ok(Json(json!({ "revision": revision, "namespaces": list })).into_response())
}

fn no_namespace(namespace: &str) -> ApiError {
    ApiError::not_found(format!(
        "no namespace {namespace:?}: it holds no records (GET /api/v1/namespaces lists those \
         that do)"
    ))
}

/// `GET /api/v1/namespaces/{ns}/records`.
pub(crate) async fn records(
    State(app): State<Arc<App>>,
    Path(namespace): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let parsed = RecordsQuery::parse(&pairs(q.as_deref()))?;
    let store = Arc::clone(&app.store);
    let body = blocking(move || {
        let snapshot = store.snapshot()?;
        let page = query::select(&snapshot, &namespace, &parsed)?;
        if page.total == 0 {
            return Err(no_namespace(&namespace));
        }
        let records: Vec<RecordJson<'_>> = page
            .records
            .iter()
            .map(|(key, record)| RecordJson::new(None, key, record))
            .collect();
        let sort = sort_name(&parsed);
        serde_json::to_vec(&json!({
            "namespace": namespace,
            "revision": snapshot.revision()?,
            "total": page.total,
            "matched": page.matched,
            "offset": parsed.offset,
            "limit": parsed.limit,
            "sort": sort,
            "records": records,
        }))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn sort_name(q: &RecordsQuery) -> String {
    let name = match &q.sort {
        query::SortBy::Key => "key".to_owned(),
        query::SortBy::Version => "version".to_owned(),
        query::SortBy::CreateRevision => "create_revision".to_owned(),
        query::SortBy::ModRevision => "mod_revision".to_owned(),
        query::SortBy::Updated => "updated".to_owned(),
        query::SortBy::Field(path) => format!("value.{}", path.join(".")),
    };
    if q.descending {
        format!("-{name}")
    } else {
        name
    }
}

/// `GET /api/v1/namespaces/{ns}/records/{key}`.
pub(crate) async fn record(
    State(app): State<Arc<App>>,
    Path((namespace, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    no_parameters(q.as_deref(), &[])?;
    let store = Arc::clone(&app.store);
    let body = blocking(move || {
        let snapshot = store.snapshot()?;
        let Some(record) = snapshot.get_raw(&namespace, &key)? else {
            return Err(ApiError::not_found(format!(
                "no record {key:?} in namespace {namespace:?}"
            )));
        };
        let mut doc = serde_json::to_value(RecordJson::new(Some(&namespace), &key, &record))
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        doc["revision"] = snapshot.revision()?.into();
        Ok(doc)
    })
    .await?;
    Ok(Json(body).into_response())
}

/// Versions a history answer holds unless `limit` says otherwise.
const HISTORY_LIMIT: usize = 100;

/// `GET /api/v1/namespaces/{ns}/history/{key}`: the newest `limit` versions,
/// oldest first.
pub(crate) async fn history(
    State(app): State<Arc<App>>,
    Path((namespace, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    no_parameters(q.as_deref(), &["limit"])?;
    let mut limit = HISTORY_LIMIT;
    for (name, value) in pairs(q.as_deref()) {
        if name == "limit" {
            limit = match value.parse::<usize>() {
                Ok(n) if (1..=query::MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(BadParameter {
                        parameter: name,
                        message: format!(
                            "limit must be a whole number from 1 to {}, not {value:?}",
                            query::MAX_LIMIT
                        ),
                    }
                    .into());
                }
            };
        }
    }
    let feed = Arc::clone(&app.feed);
    let store = Arc::clone(&app.store);
    let body = blocking(move || {
        let revision = store.revision();
        let versions = feed.history(&namespace, &key)?;
        if versions.is_empty() && store.get_raw(&namespace, &key)?.is_none() {
            return Err(ApiError::not_found(format!(
                "no record {key:?} in namespace {namespace:?}, and no history of one"
            )));
        }
        let total = versions.len();
        let shown: Vec<serde_json::Value> = versions
            .iter()
            .skip(total.saturating_sub(limit))
            .map(version_json)
            .collect();
        Ok(json!({
            "namespace": namespace,
            "key": key,
            "revision": revision,
            "total": total,
            "versions": shown,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

fn version_json(v: &PastVersion) -> serde_json::Value {
    match &v.value {
        Some(record) => {
            let (value, value_error) = value_json(&record.value);
            let mut doc = json!({
                "revision": v.revision,
                "time": v.time.to_string(),
                "deleted": false,
                "version": record.version,
                "value": value,
            });
            if let Some(why) = value_error {
                doc["value_error"] = why.into();
            }
            doc
        }
        None => json!({
            "revision": v.revision,
            "time": v.time.to_string(),
            "deleted": true,
            "value": serde_json::Value::Null,
        }),
    }
}

/// Anything else under `/api/`.
pub(crate) async fn unknown() -> ApiError {
    ApiError::not_found(
        "no such endpoint; the API is GET /api/v1/namespaces, \
         /api/v1/namespaces/{ns}/records, /api/v1/namespaces/{ns}/records/{key}, \
         /api/v1/namespaces/{ns}/history/{key} and /api/v1/watch",
    )
}
