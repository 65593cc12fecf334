//! A read-only web view of a store and its JSON API (feature `web`): the
//! namespaces, a namespace's records with paging, sorting and filtering, a
//! record with its history, and live updates pushed as server-sent events
//! from the store's change feed. `statelog serve --http ADDR` runs it in the
//! store's holder; an embedder runs it with [`WebServer::start`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use statelog::web::{WebOptions, WebServer};
//! # fn main() -> statelog::Result<()> {
//! let store = Arc::new(statelog::Store::open("state", Default::default())?);
//! let server = WebServer::start(Arc::clone(&store), WebOptions::new("127.0.0.1:8080".parse().unwrap()))?;
//! println!("open http://{}/", server.local_addr());
//! // ... until the program stops:
//! server.stop();
//! # Ok(()) }
//! ```
//!
//! The API (every answer JSON, every error `{"error": MESSAGE}`):
//!
//! | path | what |
//! | --- | --- |
//! | `GET /api/v1/namespaces` | the namespaces holding records, with their counts |
//! | `GET /api/v1/namespaces/{ns}/records` | a page of records: `limit`, `offset`, `sort`, `q`, `where` |
//! | `GET /api/v1/namespaces/{ns}/records/{key}` | one record |
//! | `GET /api/v1/namespaces/{ns}/history/{key}` | a record's versions (`limit`) |
//! | `GET /api/v1/watch` | server-sent events: `ns`, `key`, `prefix`, `from`, `Last-Event-ID` |
//!
//! Nothing writes: any other method than GET and HEAD gets 405. On a
//! loopback address the server needs no token, and answers only requests
//! naming a loopback host (a page elsewhere cannot reach it through DNS
//! rebinding); any other address needs a token ([`WebOptions::token`]),
//! given as `Authorization: Bearer TOKEN`, as the `token` query parameter
//! (which also sets a cookie, for the page's own requests), or that cookie.
//!
//! Modules: `api.rs` (the JSON endpoints), `query.rs` (paging, sorting and
//! filtering), `sse.rs` (the event stream), `feed.rs` (the interface to the
//! store's change feed and history), `guard.rs` (token, host, methods,
//! headers), `page.rs` (the page: HTML, script and style, served from the
//! binary), `json.rs` (records as JSON).

mod api;
mod feed;
mod guard;
mod json;
mod page;
mod query;
mod sse;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::store::Store;

use self::feed::{Feed, StoreFeed};

/// Event streams served at once unless [`WebOptions::max_watchers`] says
/// otherwise.
pub const DEFAULT_MAX_WATCHERS: usize = 512;

/// The shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// How long stopping waits for requests in flight before it ends them.
const DRAIN: Duration = Duration::from_secs(5);

/// Where and how to serve the web view.
#[derive(Clone)]
pub struct WebOptions {
    addr: SocketAddr,
    token: Option<String>,
    max_watchers: usize,
}

impl std::fmt::Debug for WebOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebOptions")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("max_watchers", &self.max_watchers)
            .finish()
    }
}

impl WebOptions {
    /// Serves on `addr` (port 0: any free port, see
    /// [`WebServer::local_addr`]), without a token: only a loopback address
    /// works so.
    pub fn new(addr: SocketAddr) -> WebOptions {
        WebOptions {
            addr,
            token: None,
            max_watchers: DEFAULT_MAX_WATCHERS,
        }
    }

    /// Requires `token` on every request: at least [`MIN_TOKEN_LEN`]
    /// characters from `A-Z a-z 0-9 - . _ ~` (such as the output of
    /// `openssl rand -hex 16`). Required on an address other than loopback.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> WebOptions {
        self.token = Some(token.into());
        self
    }

    /// At most `n` event streams at once (at least 1); more are answered 503.
    #[must_use]
    pub fn max_watchers(mut self, n: usize) -> WebOptions {
        self.max_watchers = n.max(1);
        self
    }

    /// Checks the options as [`WebServer::start`] does, without listening.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an address other than loopback without a
    /// token, or a token that is too short or holds other characters.
    pub fn validate(&self) -> Result<()> {
        match &self.token {
            None if !self.addr.ip().is_loopback() => Err(Error::InvalidOption {
                name: "http token",
                reason: format!(
                    "{} is not a loopback address: anyone who reaches it could read the store; \
                     give a token (at least {MIN_TOKEN_LEN} characters, such as the output of \
                     `openssl rand -hex 16`) or listen on 127.0.0.1",
                    self.addr
                ),
            }),
            Some(token)
                if token.chars().count() < MIN_TOKEN_LEN
                    || !token
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)) =>
            {
                Err(Error::InvalidOption {
                    name: "http token",
                    reason: format!(
                        "a token has at least {MIN_TOKEN_LEN} characters from A-Z a-z 0-9 - . _ \
                         ~ (it goes in headers, cookies and addresses); `openssl rand -hex 16` \
                         makes one"
                    ),
                })
            }
            _ => Ok(()),
        }
    }
}

/// What every request handler shares.
pub(crate) struct App {
    store: Arc<Store>,
    feed: Arc<dyn Feed>,
    options: WebOptions,
    /// Permits for event streams.
    watchers: Arc<Semaphore>,
    /// Set to true when the server stops: the event streams end.
    stop: tokio::sync::watch::Sender<bool>,
    /// The same, for the streams' threads.
    stopping: AtomicBool,
    /// The streams' threads, joined when the server stops.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl App {
    /// Keeps a stream's thread to join, forgetting those that ended.
    fn keep_thread(&self, thread: JoinHandle<()>) {
        let mut threads = self.threads.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }
}

/// The web view, serving on its own threads until [`stop`](Self::stop).
pub struct WebServer {
    addr: SocketAddr,
    app: Arc<App>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WebServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl WebServer {
    /// Listens on the options' address and serves `store` from threads of
    /// its own (a small tokio runtime).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an address other than loopback without a
    /// token, or a token that is too short or holds other characters;
    /// [`Error::Io`] when the address cannot be listened on.
    pub fn start(store: Arc<Store>, options: WebOptions) -> Result<WebServer> {
        options.validate()?;
        let wanted = options.addr;
        let failed = |e| Error::io("listen for HTTP on", wanted.to_string(), e);
        let listener = TcpListener::bind(options.addr).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("statelog-web")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("start the HTTP server for", addr.to_string(), e))?;
        let (stop, _) = tokio::sync::watch::channel(false);
        let app = Arc::new(App {
            feed: Arc::new(StoreFeed(Arc::clone(&store))),
            store,
            watchers: Arc::new(Semaphore::new(options.max_watchers)),
            options,
            stop,
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(failed)?
        };
        let router = router(Arc::clone(&app));
        let mut stopped = app.stop.subscribe();
        let thread = std::thread::Builder::new()
            .name("statelog-web".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut drained = stopped.clone();
                    let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    });
                    // Requests in flight get DRAIN to finish once stopping
                    // starts; then the runtime drops what is left.
                    let limit = async move {
                        let _ = drained.wait_for(|s| *s).await;
                        tokio::time::sleep(DRAIN).await;
                    };
                    tokio::select! {
                        result = serve => {
                            if let Err(e) = result {
                                tracing::warn!("the web view stopped serving: {e}");
                            }
                        }
                        () = limit => {
                            tracing::warn!("requests still in flight after {DRAIN:?} were ended");
                        }
                    }
                });
                runtime.shutdown_timeout(DRAIN);
            })
            .map_err(|e| Error::io("start the HTTP server for", addr.to_string(), e))?;
        Ok(WebServer {
            addr,
            app,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: no new connections, event streams end, requests in
    /// flight get a few seconds to finish; returns when every thread of the
    /// server has ended.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.app.stopping.store(true, Ordering::Release);
        self.app.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let threads = std::mem::take(&mut *self.app.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/api/v1/namespaces", get(api::namespaces))
        .route("/api/v1/namespaces/{ns}/records", get(api::records))
        .route("/api/v1/namespaces/{ns}/records/{*key}", get(api::record))
        .route("/api/v1/namespaces/{ns}/history/{*key}", get(api::history))
        .route("/api/v1/watch", get(sse::watch))
        .fallback(api::unknown)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            guard::guard,
        ))
        .with_state(app)
}
