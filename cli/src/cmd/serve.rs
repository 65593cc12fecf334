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
//! It says what it does on stdout (`--json`: one line when it starts,
//! `{"event": "serving", "store", "id", "pid", "revision"}`, and one when it
//! stops, `{"event": "stopped", "signal", "revision", "commits"}`).

use serde::Serialize;
use statelog::Store;

use crate::context::{Access, Ctx};
use crate::exit::Code;

pub const EXAMPLES: &str = r#"Examples:
  statelog serve &                       # until SIGINT or SIGTERM
  statelog incr jobs n c                 # works through it
  kill %1"#;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Serving<'a> {
    event: &'static str,
    store: &'a str,
    id: String,
    pid: u32,
    revision: u64,
}

#[derive(Serialize)]
struct Stopped {
    event: &'static str,
    signal: &'static str,
    revision: u64,
    commits: u64,
}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    // Before any thread starts (the store's threads inherit the mask): the
    // signals wait for `sigwait` below instead of ending the process.
    let signals = signals::block()?;
    let options = ctx
        .options(Access::Records, false)
        .serve(true)
        .remote(false);
    let store = ctx
        .waiting(|| Store::open(&ctx.store, options))
        .map_err(|e| ctx.open_error(e))?;
    ctx.after_open(&store);
    let path = ctx.store.display().to_string();
    let started = Serving {
        event: "serving",
        store: &path,
        id: store.id(),
        pid: std::process::id(),
        revision: store.revision(),
    };
    if ctx.json {
        ctx.print_json(&started)?;
    } else {
        ctx.say(format!(
            "serving the store at {path} (revision {}) as process {}; other statelog processes \
             work through this one; stop with Ctrl-C or SIGTERM",
            started.revision, started.pid
        ))?;
    }
    let signal = signals::wait(&signals)?;
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

/// Waiting for SIGINT and SIGTERM without a handler: blocked in every thread,
/// taken with `sigwait`.
mod signals {
    use anyhow::Context as _;

    pub struct Blocked(libc::sigset_t);

    pub fn block() -> anyhow::Result<Blocked> {
        // SAFETY: the set is initialised by sigemptyset before use; the calls
        // only read and write the set and this thread's signal mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc))
                    .context("cannot block SIGINT and SIGTERM");
            }
            Ok(Blocked(set))
        }
    }

    /// Waits for one of the blocked signals; its name.
    pub fn wait(blocked: &Blocked) -> anyhow::Result<&'static str> {
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: the set was built by `block`; `signal` is writable.
            let rc = unsafe { libc::sigwait(&blocked.0, &mut signal) };
            if rc == libc::EINTR {
                continue;
            }
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc))
                    .context("cannot wait for SIGINT or SIGTERM");
            }
            return Ok(match signal {
                libc::SIGINT => "SIGINT",
                _ => "SIGTERM",
            });
        }
    }
}
