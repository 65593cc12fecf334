//! `statelog serve`: hold the store and serve it to every other process that
//! opens it (other invocations, programs), until SIGINT or SIGTERM; then stop
//! taking requests, let those in flight finish, checkpoint, and exit 0.
//!
//! While it runs, every other invocation works through it: no open, no
//! recovery and no checkpoint of its own, and its commits share the server's
//! syncs. Nothing else changes for scripts. It never works through another
//! holder: if another process holds the store, it waits for it (`--wait`) and
//! then exits 5.
//!
//! With `--http ADDR` it also serves the read-only web view and JSON API
//! (the library's `web` module) on ADDR, and stops it first when it stops.
//!
//! It says what it does on stdout (`--json`: one line when it starts,
//! `{"event": "serving", "store", "id", "pid", "revision", "http"}`, with
//! `http` the web view's address or null, and one when it stops,
//! `{"event": "stopped", "signal", "revision", "commits"}`).

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use statelog::Store;
use statelog::web::{WebOptions, WebServer};

use crate::cli::HTTP_TOKEN_ENV;
use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::signals;

pub const EXAMPLES: &str = r#"Examples:
  statelog serve &                       # until SIGINT or SIGTERM
  statelog incr jobs n c                 # works through it
  kill %1
  statelog serve --http 127.0.0.1:8080   # and the web view at http://127.0.0.1:8080/
  STATELOG_HTTP_TOKEN=$(openssl rand -hex 16) statelog serve --http 0.0.0.0:8080"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also serve the read-only web view and its JSON API (/api/v1/) on ADDR
    /// (such as 127.0.0.1:8080; port 0 picks a free one). An address other
    /// than loopback needs --http-token
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// The token every HTTP request must give (Authorization: Bearer TOKEN,
    /// or ?token=TOKEN once in the browser): at least 16 characters of A-Z
    /// a-z 0-9 - . _ ~. Prefer the environment variable: arguments are
    /// visible to other users
    #[arg(long, value_name = "TOKEN", env = HTTP_TOKEN_ENV, hide_env_values = true, requires = "http")]
    pub http_token: Option<String>,
}

#[derive(Serialize)]
struct Serving<'a> {
    event: &'static str,
    store: &'a str,
    id: String,
    pid: u32,
    revision: u64,
    http: Option<String>,
}

#[derive(Serialize)]
struct Stopped {
    event: &'static str,
    signal: &'static str,
    revision: u64,
    commits: u64,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let web = match args.http {
        Some(addr) => {
            let mut options = WebOptions::new(addr);
            if let Some(token) = args.http_token {
                options = options.token(token);
            }
            options
                .validate()
                .map_err(|e| fail(Code::Usage, format!("--http {addr}: {e}")))?;
            Some(options)
        }
        None => None,
    };
    // Before any thread starts (the store's threads inherit the mask): the
    // signals wait for `sigwait` below instead of ending the process.
    let signals = signals::block(&[])?;
    let options = ctx
        .options(Access::Records, false)
        .serve(true)
        .remote(false);
    let store = ctx
        .waiting(|| Store::open(&ctx.store, options))
        .map_err(|e| ctx.open_error(e))?;
    ctx.after_open(&store);
    let store = Arc::new(store);
    let server = match web {
        Some(options) => Some(WebServer::start(Arc::clone(&store), options)?),
        None => None,
    };
    let path = ctx.store.display().to_string();
    let started = Serving {
        event: "serving",
        store: &path,
        id: store.id(),
        pid: std::process::id(),
        revision: store.revision(),
        http: server
            .as_ref()
            .map(|s| format!("http://{}/", s.local_addr())),
    };
    if ctx.json {
        ctx.print_json(&started)?;
    } else {
        ctx.say(format!(
            "serving the store at {path} (revision {}) as process {}; other statelog processes \
             work through this one; stop with Ctrl-C or SIGTERM",
            started.revision, started.pid
        ))?;
        if let Some(http) = &started.http {
            ctx.say(format!("the web view is at {http}"))?;
        }
    }
    let signal = signals::wait(&signals)?;
    // The web view reads the store: it stops first.
    if let Some(server) = server {
        server.stop();
    }
    let Ok(store) = Arc::try_unwrap(store) else {
        return Err(fail(
            Code::Error,
            "the web view still used the store after it stopped; the store was not checkpointed \
             (the next open recovers from the log)",
        ));
    };
    let stats = store.stats();
    let stopped = Stopped {
        event: "stopped",
        signal,
        revision: stats.revision,
        commits: stats.commits,
    };
    store.close()?;
    if ctx.json {
        ctx.print_json(&stopped)?;
    } else {
        ctx.say(format!(
            "stopped on {signal}: requests in flight finished, checkpointed at revision {} ({} \
             commits while serving)",
            stopped.revision, stopped.commits
        ))?;
    }
    Ok(Code::Ok)
}
