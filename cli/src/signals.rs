//! SIGINT and SIGTERM without handlers: blocked in every thread (block them
//! before starting any), then taken with `sigwait` by the thread that acts on
//! them (`serve` drains and exits; `lock` passes them on to its command).

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;

/// The set of signals blocked by [`block`].
#[derive(Clone)]
pub struct Blocked(libc::sigset_t);

// SAFETY: a sigset_t is plain data.
unsafe impl Send for Blocked {}

/// Blocks SIGINT, SIGTERM and `extra` in this thread (and the threads it
/// starts from now on).
pub fn block(extra: &[libc::c_int]) -> anyhow::Result<Blocked> {
    // SAFETY: the set is initialised by sigemptyset before use; the calls
    // only read and write the set and this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM].iter().chain(extra) {
            libc::sigaddset(&mut set, *signal);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc))
                .context("cannot block SIGINT and SIGTERM");
        }
        Ok(Blocked(set))
    }
}

/// Waits for one of the blocked signals (EINTR retried).
fn next(blocked: &Blocked) -> std::io::Result<libc::c_int> {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: the set was built by `block`; `signal` is writable.
        let rc = unsafe { libc::sigwait(&blocked.0, &mut signal) };
        match rc {
            0 => return Ok(signal),
            libc::EINTR => {}
            _ => return Err(std::io::Error::from_raw_os_error(rc)),
        }
    }
}

/// Waits for SIGINT or SIGTERM; its name.
pub fn wait(blocked: &Blocked) -> anyhow::Result<&'static str> {
    let signal = next(blocked).context("cannot wait for SIGINT or SIGTERM")?;
    Ok(match signal {
        libc::SIGINT => "SIGINT",
        _ => "SIGTERM",
    })
}

/// In a child, before exec: no signal blocked.
pub fn unblock_all() {
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Passes SIGINT and SIGTERM on to `pid` until `done` (then a SIGUSR1 sent
/// by [`wake`] ends the wait; `block` must have blocked SIGUSR1 too).
pub fn forward(blocked: &Blocked, pid: u32, done: &AtomicBool) {
    loop {
        let signal = next(blocked);
        if done.load(Ordering::Acquire) {
            return;
        }
        if let Ok(signal) = signal
            && signal != libc::SIGUSR1
        {
            // SAFETY: kill takes a pid and a signal number.
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
    }
}

/// Ends [`forward`]'s thread.
pub fn wake(thread: JoinHandle<()>) {
    // SAFETY: sends SIGUSR1 to this process, where it is blocked in every
    // thread and taken only by `forward`'s sigwait.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGUSR1);
    }
    let _ = thread.join();
}
