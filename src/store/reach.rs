//! Reaching a store when it is opened (and again when its holder goes away):
//! take its lock and hold it here ([`Local`]), or connect to the process that
//! holds it ([`Remote`]); an `etcd://` address goes to a store on etcd
//! (feature `etcd`). Another way of reaching a store is one more [`Backend`]
//! and one more arm here.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Recovery;
use super::local::Local;
use crate::access::{self, Backend};
use crate::engine::open::{self, Lock};
use crate::error::{Error, Result};
use crate::fs::LockError;
use crate::layout::LOCK_FILE;
use crate::options::Options;
use crate::remote;

/// A store reached by [`reach`].
pub(crate) struct Reached {
    pub backend: Arc<dyn Backend>,
    /// The store id, 32 hex digits.
    pub store_id: String,
    /// What opening it here had to recover (nothing when reached remotely).
    pub recovery: Recovery,
}

/// Reaches the store at `path`: takes its lock and opens it here (creating it
/// when allowed), or, while another process holds it, connects to that
/// process (unless [`Options::remote`] forbids it), polling with jittered
/// pauses until [`Options::lock_timeout`]; then [`Error::Busy`] names the
/// holder.
pub(crate) fn reach(path: &Path, options: &Options) -> Result<Reached> {
    if let Some(address) = access::etcd_address(path) {
        #[cfg(feature = "etcd")]
        {
            let (backend, store_id) = super::etcd::reach(address, options)?;
            return Ok(Reached {
                backend,
                store_id,
                recovery: Recovery::default(),
            });
        }
        #[cfg(not(feature = "etcd"))]
        return Err({
            let _ = address;
            access::etcd_not_built()
        });
    }
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    let mut warned = false;
    let opened = open::open_with(path, options, |fs, dir| {
        loop {
            let held = match fs.try_lock(&dir.join(LOCK_FILE)) {
                Ok(guard) => return Ok(Lock::Taken(guard)),
                Err(LockError::Held(pid)) => pid,
                // Another user's store: this process cannot hold it, but may be
                // served by its holder.
                Err(LockError::Io(e))
                    if e.kind() == std::io::ErrorKind::PermissionDenied && options.remote =>
                {
                    if let Some(remote) = remote::connect(fs, dir, options, start)? {
                        return Ok(Lock::Other(remote));
                    }
                    return Err(Error::io("lock", dir.join(LOCK_FILE), e));
                }
                Err(LockError::Io(e)) => return Err(Error::io("lock", dir.join(LOCK_FILE), e)),
            };
            if options.remote
                && let Some(remote) = remote::connect(fs, dir, options, start)?
            {
                return Ok(Lock::Other(remote));
            }
            let waited = start.elapsed();
            if waited >= options.lock_timeout {
                return Err(Error::Busy {
                    path: dir.to_owned(),
                    pid: held,
                    waited,
                });
            }
            if !warned && waited >= Duration::from_secs(1) {
                // The target is the one this event always had, which
                // `RUST_LOG` filters may name.
                tracing::warn!(
                    target: "statelog::access",
                    store = %dir.display(),
                    holder = ?held,
                    "waiting for the store"
                );
                warned = true;
            }
            // Random pauses keep many waiting processes from polling in step.
            let jitter = Duration::from_micros(fastrand::u64(0..=pause.as_micros() as u64));
            std::thread::sleep((pause / 2 + jitter).min(options.lock_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(8));
        }
    })?;
    match opened {
        Ok(opened) => {
            let store_id = crate::log::catalog::hex(&opened.store_id);
            let recovery = Recovery {
                replayed: opened.replayed,
                cut: opened.cut.clone(),
            };
            let backend = Local::start(path, options, opened)?;
            Ok(Reached {
                backend,
                store_id,
                recovery,
            })
        }
        Err(remote) => Ok(Reached {
            store_id: remote.store_id().to_owned(),
            backend: Arc::new(remote),
            recovery: Recovery::default(),
        }),
    }
}
