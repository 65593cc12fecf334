//! `statelog lock NAME [--ttl DURATION] [--wait DURATION | --no-wait]
//! [--on-lost stop|ignore] -- CMD [ARGS...]`: run CMD holding lock NAME.
//!
//! It takes a lease of `--ttl` (default 30 s) and the lock under it, waiting
//! up to `--wait` (which also bounds the wait for the store; exit 5 when the
//! lock stays held), then runs CMD with `STATELOG_LOCK_NAME`,
//! `STATELOG_LOCK_TOKEN` (the fencing token: pass it to writes as `--fence
//! NAME=$STATELOG_LOCK_TOKEN`) and `STATELOG_STORE`. While CMD runs it keeps
//! the lease alive; if the lease is lost anyway (this process was stopped,
//! the store unreachable for a whole TTL) it says so on stderr and stops CMD
//! (SIGTERM, then SIGKILL after 10 s), unless `--on-lost ignore`. When CMD
//! ends it gives the lock back, ends the lease and exits with CMD's exit code
//! (128 + N when CMD died of signal N). SIGINT and SIGTERM are passed on to
//! CMD. A `statelog lock` killed outright leaves its lock to end with its
//! lease, one TTL later.
//!
//! The process serves the store to others while CMD runs, if it holds it (so
//! CMD's own `statelog` commands, and other `statelog lock`s waiting, work
//! through it).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use statelog::{Shown, Store};

use crate::context::{Access, Ctx};
use crate::exit::{self, Code};
use crate::signals;

pub const EXAMPLES: &str = r#"Examples:
  statelog lock sync -- ./sync.sh                  # one sync at a time
  statelog lock sync --wait 10m --ttl 1m -- make deploy
  statelog lock nightly --no-wait -- ./nightly.sh || echo "another run holds it"
  statelog lock sync -- sh -c 'statelog set state last "\"$(date)\"" --fence "sync=$STATELOG_LOCK_TOKEN"'"#;

/// What to do when the lock is lost while CMD runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLost {
    /// Say so and stop CMD (SIGTERM, then SIGKILL after 10 s)
    Stop,
    /// Say so and let CMD run on (its fenced writes fail)
    Ignore,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lock's name
    pub name: String,
    /// The lease's time to live: how long after this process dies (or stops
    /// answering) the lock frees itself; a DURATION (30, 30s, 5m)
    #[arg(long, value_name = "DURATION", default_value = "30", value_parser = crate::duration::parse)]
    pub ttl: Duration,
    /// What to do when the lock is lost while CMD runs
    #[arg(long, value_name = "ACTION", value_enum, default_value_t = OnLost::Stop)]
    pub on_lost: OnLost,
    /// The command and its arguments
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// How long CMD gets between SIGTERM and SIGKILL when the lock is lost.
const GRACE: Duration = Duration::from_secs(10);

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let shown = Shown::new(&args.name).to_string();
    // Blocked before any thread starts (the store's threads inherit the
    // mask); passed on to CMD by the thread below.
    let signals = signals::block(&[libc::SIGUSR1])?;
    let options = ctx.options(Access::Records, false).serve(true);
    let store = ctx
        .waiting(|| Store::open(&ctx.store, options))
        .map_err(|e| ctx.open_error(e))?;
    ctx.after_open(&store);
    let result = hold(&args, ctx, &store, &shown, &signals);
    if let Err(e) = store.close() {
        exit::warn(format!("closing the store failed: {e}"));
    }
    match result? {
        0 => Ok(Code::Ok),
        // CMD's own exit code, which none of the command line's codes is.
        code => std::process::exit(i32::from(code)),
    }
}

fn hold(
    args: &Args,
    ctx: &Ctx,
    store: &Store,
    shown: &str,
    signals: &signals::Blocked,
) -> anyhow::Result<u8> {
    let holder = format!(
        "statelog lock (pid {}): {}",
        std::process::id(),
        crate::output::shorten(&args.command.join(" "), 80)
    );
    let lease = store
        .grant_lease_as(args.ttl, &holder)
        .context("cannot take a lease")?;
    let grant = match lease.lock(&args.name, Some(ctx.wait)) {
        Ok(grant) => grant,
        Err(e) => {
            let _ = lease.revoke();
            return Err(anyhow::Error::new(e).context(format!("did not get lock {shown}")));
        }
    };
    let store_path = std::path::absolute(&ctx.store).unwrap_or_else(|_| ctx.store.clone());
    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("STATELOG_LOCK_NAME", &args.name)
        .env("STATELOG_LOCK_TOKEN", grant.token.to_string())
        .env("STATELOG_STORE", &store_path);
    // SAFETY: between fork and exec only the signal mask is changed
    // (async-signal-safe): CMD must not inherit the blocked signals.
    unsafe {
        command.pre_exec(|| {
            signals::unblock_all();
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = lease.unlock(&grant);
            let _ = lease.revoke();
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            exit::report(
                &anyhow::Error::new(e)
                    .context(format!("cannot run {}", Shown::new(&args.command[0]))),
            );
            return Ok(code);
        }
    };
    let pid = child.id();
    let child = Arc::new(Mutex::new(child));
    let done = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicBool::new(false));
    let keeper = {
        let (lease, child, done, lost) = (
            lease.clone(),
            Arc::clone(&child),
            Arc::clone(&done),
            Arc::clone(&lost),
        );
        let (on_lost, name, ttl) = (args.on_lost, shown.to_owned(), args.ttl);
        std::thread::spawn(move || keep_alive(&lease, ttl, &done, &lost, &child, on_lost, &name))
    };
    let forwarder = std::thread::spawn({
        let done = Arc::clone(&done);
        let set = signals.clone();
        move || signals::forward(&set, pid, &done)
    });
    let status = wait(&child);
    done.store(true, Ordering::Release);
    signals::wake(forwarder);
    let _ = keeper.join();
    if !lost.load(Ordering::Acquire)
        && let Err(e) = lease.unlock(&grant)
    {
        exit::warn(format!("giving back lock {shown} failed: {e}"));
    }
    if let Err(e) = lease.revoke() {
        exit::warn(format!(
            "ending the lease failed (it ends by itself within {:.0} s): {e}",
            args.ttl.as_secs_f64()
        ));
    }
    let status = status?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    })
}

/// Waits for CMD without holding its lock (the keeper may signal it).
fn wait(child: &Mutex<Child>) -> anyhow::Result<std::process::ExitStatus> {
    loop {
        let polled = child
            .lock()
            .map_err(|_| anyhow::anyhow!("the command's handle was poisoned"))?
            .try_wait()
            .context("cannot wait for the command")?;
        if let Some(status) = polled {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Keeps the lease alive (three times a TTL) until CMD ends; when the lease
/// is lost, says so and (unless told not to) stops CMD.
fn keep_alive(
    lease: &statelog::Lease,
    ttl: Duration,
    done: &AtomicBool,
    lost: &AtomicBool,
    child: &Mutex<Child>,
    on_lost: OnLost,
    name: &str,
) {
    let every = ttl / 3;
    let mut last_ok = Instant::now();
    let mut next = Instant::now() + every;
    while !done.load(Ordering::Acquire) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(10).min(every));
            continue;
        }
        next = Instant::now() + every;
        let why = match lease.keep_alive() {
            Ok(()) => {
                last_ok = Instant::now();
                continue;
            }
            Err(e @ statelog::Error::LeaseExpired { .. }) => e.to_string(),
            // The store may be between holders: keep trying for a TTL.
            Err(e) if last_ok.elapsed() < ttl => {
                exit::warn(format!("cannot keep the lease alive, trying again: {e}"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        lost.store(true, Ordering::Release);
        let action = match on_lost {
            OnLost::Stop => "stopping the command",
            OnLost::Ignore => "letting the command run on (--on-lost ignore)",
        };
        exit::print_stderr(&format!(
            "statelog: lost lock {name}: {}; {action}\n",
            Shown::whole(&why)
        ));
        if on_lost == OnLost::Stop {
            stop(child, done);
        }
        return;
    }
}

/// SIGTERM, then SIGKILL after [`GRACE`].
fn stop(child: &Mutex<Child>, done: &AtomicBool) {
    let Ok(pid) = child.lock().map(|c| c.id()) else {
        return;
    };
    // SAFETY: kill takes a pid and a signal number.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if done.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Ok(mut child) = child.lock() {
        let _ = child.kill();
    }
}
