//! `GET /api/v1/watch`: the change feed as server-sent events.
//!
//! Each stream has a thread of its own that reads the feed (a blocking
//! iterator) and hands events to the connection through a small bounded
//! channel. The feed yields at least every [`TICK`], so the thread notices
//! within a tick that its client went away or that the server stops; the
//! number of streams is capped ([`WebOptions::max_watchers`](super::WebOptions::max_watchers)).
//!
//! Events: `change` (id = revision; data: the commit's records in scope),
//! `progress` (id = revision; nothing in scope changed up to it; at most
//! every [`PROGRESS_EVERY`]) and `end` (the feed failed, as when the client
//! fell too far behind; data: why, and the revision to resume from). A client
//! that reconnects with `Last-Event-ID: R` resumes with revision R + 1, as
//! browsers' `EventSource` does by itself.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::mpsc;

use super::App;
use super::api::{ApiError, ApiResult, pairs};
use super::feed::{FeedEvent, Scope};
use super::json::RecordJson;
use super::query::BadParameter;
use crate::error::KeyPart;
use crate::key;

/// How often the feed must yield, at least.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// How often a quiet stream is told the revision it has seen up to.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// Events queued for one client before its thread waits.
const QUEUE: usize = 16;
/// Stack of a stream's thread: it reads the feed and encodes nothing.
const STACK: usize = 256 << 10;

enum Message {
    Event(FeedEvent),
    /// The feed failed: why, and from which revision to watch again.
    End(String, Option<u64>),
}

fn bad(parameter: &str, message: String) -> ApiError {
    BadParameter {
        parameter: parameter.to_owned(),
        message,
    }
    .into()
}

/// The scope and start a request asks for.
fn parse(query: Option<&str>, headers: &HeaderMap) -> Result<(Scope, Option<u64>), ApiError> {
    let (mut ns, mut key_, mut prefix, mut from) = (None, None, None, None);
    for (name, value) in pairs(query) {
        let slot = match name.as_str() {
            "ns" => &mut ns,
            "key" => &mut key_,
            "prefix" => &mut prefix,
            "from" => &mut from,
            "token" => continue,
            _ => {
                return Err(bad(
                    &name,
                    format!(
                        "unknown parameter {name:?}; the parameters are ns, key, prefix and from"
                    ),
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(bad(&name, format!("{name} is given twice; give it once")));
        }
    }
    let invalid = |e: crate::Error| bad("ns", e.to_string());
    let scope = match (ns, key_, prefix) {
        (None, None, None) => Scope::All,
        (Some(ns), None, None) => {
            key::validate(KeyPart::Namespace, &ns).map_err(invalid)?;
            Scope::Namespace(ns)
        }
        (Some(ns), Some(k), None) => {
            key::encode(&ns, &k).map_err(|e| bad("key", e.to_string()))?;
            Scope::Key(ns, k)
        }
        (Some(ns), None, Some(p)) => {
            key::validate(KeyPart::Namespace, &ns).map_err(invalid)?;
            Scope::Prefix(ns, p)
        }
        (None, _, _) => {
            return Err(bad(
                "ns",
                "key and prefix need ns, the namespace they are in".to_owned(),
            ));
        }
        (Some(_), Some(_), Some(_)) => {
            return Err(bad("prefix", "give key or prefix, not both".to_owned()));
        }
    };
    let revision = |name: &str, text: &str| {
        text.trim().parse::<u64>().map_err(|_| {
            bad(
                name,
                format!("{name} must be a revision (a whole number from 0), not {text:?}"),
            )
        })
    };
    let mut start = match from {
        Some(text) => Some(revision("from", &text)?),
        None => None,
    };
    if let Some(last) = headers.get("last-event-id") {
        let text = last.to_str().unwrap_or("?");
        // The last event the client saw: resume after it.
        start = Some(revision("Last-Event-ID", text)?.saturating_add(1));
    }
    Ok((scope, start))
}

/// `GET /api/v1/watch`.
pub(crate) async fn watch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let (scope, from) = parse(query.as_deref(), &headers)?;
    let Ok(permit) = Arc::clone(&app.watchers).try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} event streams are open, the most this server serves; try again later",
                app.options.max_watchers
            ),
        ));
    };
    let feed = Arc::clone(&app.feed);
    let events = tokio::task::spawn_blocking(move || feed.events(&scope, from, TICK))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (sender, receiver) = mpsc::channel(QUEUE);
    let thread_app = Arc::clone(&app);
    let thread = std::thread::Builder::new()
        .name("statelog-web-watch".to_owned())
        .stack_size(STACK)
        .spawn(move || {
            forward(events, &sender, &thread_app);
            drop(permit);
        })
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot start a thread for the event stream: {e}"),
            )
        })?;
    app.keep_thread(thread);
    let opened = Event::default()
        .retry(Duration::from_secs(1))
        .comment("statelog change feed");
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(opened) });
    let stop = app.stop.subscribe();
    let rest =
        futures_util::stream::unfold((receiver, stop), |(mut receiver, mut stop)| async move {
            if *stop.borrow() {
                return None;
            }
            tokio::select! {
                message = receiver.recv() => {
                    message.map(|m| (Ok::<_, Infallible>(event(m)), (receiver, stop)))
                }
                _ = stop.changed() => None,
            }
        });
    let stream = first.chain(rest);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(PROGRESS_EVERY))
        .into_response())
}

/// Reads the feed into the channel until the client goes away, the server
/// stops or the feed ends.
fn forward(events: super::feed::Events, sender: &mpsc::Sender<Message>, app: &App) {
    let mut told = Instant::now();
    for item in events {
        if app.stopping.load(Ordering::Acquire) || sender.is_closed() {
            return;
        }
        let message = match item {
            Ok(FeedEvent::Progress { .. }) if told.elapsed() < PROGRESS_EVERY => continue,
            Ok(event) => Message::Event(event),
            Err(e) => {
                let resume_from = match &e {
                    crate::Error::WatchCancelled { resume_from, .. } => Some(*resume_from),
                    _ => None,
                };
                let _ = sender.blocking_send(Message::End(e.to_string(), resume_from));
                return;
            }
        };
        told = Instant::now();
        if sender.blocking_send(message).is_err() {
            return;
        }
    }
}

fn event(message: Message) -> Event {
    match message {
        Message::Event(FeedEvent::Change {
            revision,
            time,
            records,
        }) => {
            let records: Vec<serde_json::Value> = records
                .iter()
                .map(|r| match &r.value {
                    Some(value) => {
                        serde_json::to_value(RecordJson::new(Some(&r.namespace), &r.key, value))
                            .unwrap_or_default()
                    }
                    None => json!({ "namespace": r.namespace, "key": r.key, "deleted": true }),
                })
                .collect();
            let data =
                json!({ "revision": revision, "time": time.to_string(), "records": records });
            Event::default()
                .event("change")
                .id(revision.to_string())
                .data(data.to_string())
        }
        Message::Event(FeedEvent::Progress { revision }) => Event::default()
            .event("progress")
            .id(revision.to_string())
            .data(json!({ "revision": revision }).to_string()),
        Message::End(why, resume_from) => Event::default()
            .event("end")
            .data(json!({ "error": why, "resume_from": resume_from }).to_string()),
    }
}
