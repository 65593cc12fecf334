//! Serving a store to other processes: the process that holds a store listens
//! on a Unix socket in the store directory (`socket.rs`) and runs every
//! request of another process through its own backend (the embedded engine),
//! as its own threads do (`conn.rs`): commits join its group commit, reads
//! its published views.
//!
//! One thread per connection (small stacks; at most [`MAX_CONNECTIONS`], the
//! rest refused with a message), and one accepting. Stopping ([`Server::stop`],
//! when the holder closes the store): no new connections, the socket file
//! removed, every connection's reading side shut down, so a client's next
//! message fails to send (`EPIPE`: it knows it was never received); messages
//! already received are answered, those read after the stop with "not
//! executed"; then every connection thread is joined.

pub(crate) mod channel;
mod conn;
pub(crate) mod socket;

use std::collections::HashMap;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::access::Backend;
use crate::error::{Error, Result};

/// Connections served at once; more are refused.
pub(crate) const MAX_CONNECTIONS: usize = 4096;
/// Stack of a connection thread: it decodes requests (bounded nesting) and
/// runs them through the engine.
const CONNECTION_STACK: usize = 1 << 20;

/// What the server reports about the processes it serves.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    /// Open connections.
    pub clients: AtomicU64,
    /// Snapshots they pinned.
    pub pinned: AtomicU64,
    /// Requests being run now (the low 20 bits) and requests begun since
    /// the start (the rest, wrapping), in one word so that both are read at
    /// once: a commit's answer says whether it ran alone (`conn.rs`).
    pub running: AtomicU64,
}

/// The store a server serves.
pub(crate) struct Served {
    /// What every request runs through: the holder's own backend. Weak, so
    /// that serving never keeps the store open.
    pub backend: Weak<dyn Backend>,
    /// The store's directory.
    pub path: PathBuf,
    /// The store's id, 32 hex digits.
    pub store_id: String,
    /// How long either side waits for the other (`Options::response_wait`).
    pub wait: Duration,
    /// What the server reports.
    pub serving: Arc<Serving>,
}

/// What the accepting thread and the connection threads share.
pub(crate) struct State {
    pub served: Served,
    pub access: socket::Access,
    /// Set when the holder stops serving: requests read from now on are
    /// refused unexecuted.
    pub closing: AtomicBool,
    connections: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, (UnixStream, JoinHandle<()>)>,
    stopped: bool,
}

/// Forgets a connection when its thread ends.
struct Forget<'s>(&'s State, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

impl State {
    /// Forgets a connection whose thread is ending.
    fn forget(&self, id: u64) {
        if self.connections.lock().open.remove(&id).is_some() {
            self.served.serving.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The server of a store this process holds.
pub(crate) struct Server {
    state: Arc<State>,
    /// A handle on the listening socket, to wake the accepting thread.
    listener: UnixListener,
    accepting: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the store's socket and starts accepting.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be created.
    pub(crate) fn start(served: Served) -> Result<Server> {
        let path = served.path.clone();
        let failed = |e| {
            Error::io(
                "create the socket that serves other processes (Options::serve(false) turns \
                 serving off)",
                socket::socket_path(&path),
                e,
            )
        };
        let access = socket::Access::of(&path).map_err(failed)?;
        let listener = socket::bind(&path, &access).map_err(failed)?;
        let for_thread = listener.try_clone().map_err(failed)?;
        let state = Arc::new(State {
            served,
            access,
            closing: AtomicBool::new(false),
            connections: Mutex::new(Registry::default()),
        });
        let accepting = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("statelog-serve".to_owned())
                .spawn(move || accept_loop(&state, &for_thread))
                .map_err(failed)?
        };
        Ok(Server {
            state,
            listener,
            accepting: Some(accepting),
        })
    }

    /// Stops serving: see the module's documentation.
    pub(crate) fn stop(mut self) {
        let state = &self.state;
        state.closing.store(true, Ordering::Release);
        socket::wake_accept(&self.listener);
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
        socket::remove(&state.served.path);
        let connections = {
            let mut registry = state.connections.lock();
            registry.stopped = true;
            std::mem::take(&mut registry.open)
        };
        for (stream, _) in connections.values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
        for (_, (_, thread)) in connections {
            let _ = thread.join();
            state.served.serving.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn accept_loop(state: &Arc<State>, listener: &UnixListener) {
    let mut warned = false;
    loop {
        let accepted = listener.accept();
        if state.closing.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => admit(state, stream),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors or memory: wait for connections to end
                // rather than spin.
                if !warned {
                    tracing::warn!(error = %e, "cannot accept a connection; retrying");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn admit(state: &Arc<State>, stream: UnixStream) {
    let refusal = match socket::peer(&stream) {
        Ok(peer) => state.access.check(&peer).err(),
        Err(e) => Some(format!("the holder cannot tell who connected ({e})")),
    };
    let mut registry = state.connections.lock();
    if registry.stopped {
        return;
    }
    if registry.open.len() >= MAX_CONNECTIONS {
        drop(registry);
        conn::refuse_at_once(
            stream,
            format!(
                "the holder serves {MAX_CONNECTIONS} connections already; try again when some \
                 have closed"
            ),
        );
        return;
    }
    let Ok(for_registry) = stream.try_clone() else {
        return;
    };
    let id = registry.next;
    registry.next += 1;
    let for_thread = Arc::clone(state);
    // Counted before the thread can welcome the client, so that a client
    // that was welcomed is always counted.
    state.served.serving.clients.fetch_add(1, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("statelog-client".to_owned())
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            // Forgotten however the thread ends (a panic in the engine ends
            // this connection, not the holder).
            let _forget = Forget(&for_thread, id);
            conn::run(&for_thread, stream, refusal);
        });
    match spawned {
        Ok(thread) => {
            registry.open.insert(id, (for_registry, thread));
        }
        Err(e) => {
            state.served.serving.clients.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot start a thread for a connection");
        }
    }
}
