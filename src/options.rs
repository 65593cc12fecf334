//! Settings for opening a store.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::{Fs, RealFs};
use crate::time::Clock;

/// When a commit is acknowledged, and so what a crash can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Acknowledge a commit only after its log record is synced to disk. A crash,
    /// including a power loss, loses nothing that was acknowledged. The default.
    Sync,
    /// Acknowledge after the log record is written (to the operating system), and
    /// sync the log in the background at least every `max_delay`. A process crash
    /// loses nothing; a power loss or kernel crash can lose the commits of the
    /// last `max_delay`, never a torn or reordered state: the store comes back at
    /// an earlier revision.
    Relaxed {
        /// The longest time an acknowledged commit may stay unsynced.
        max_delay: Duration,
    },
}

/// How `update` and `transaction` retry after losing a race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included; then the call returns [`Error::Conflict`].
    pub max_attempts: u32,
    /// Upper bound of the random wait after the first conflict.
    pub initial_backoff: Duration,
    /// The wait bound doubles after each conflict up to this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 200,
            initial_backoff: Duration::from_micros(50),
            max_backoff: Duration::from_millis(20),
        }
    }
}

impl RetryPolicy {
    /// Attempts in all, the first included.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Upper bound of the random wait after the first conflict.
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// The most the wait bound grows to.
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// The wait before attempt `attempt + 1` after `attempt` conflicts: uniformly
    /// random ("full jitter") below an exponentially growing bound.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        let bound = self
            .initial_backoff
            .saturating_mul(1 << shift)
            .min(self.max_backoff);
        let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=micros))
    }
}

/// When the materialised state is made durable, bounding the log a restart replays.
///
/// A checkpoint is a durable commit of the state database that records the last
/// applied revision. It runs when any bound is reached (and on close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointPolicy {
    /// Commits since the last checkpoint.
    pub commits: u64,
    /// Bytes of log since the last checkpoint.
    pub log_bytes: u64,
    /// Time since the last checkpoint, when anything was committed.
    pub interval: Duration,
}

impl CheckpointPolicy {
    /// No automatic checkpoints: only [`Store::checkpoint`](crate::Store::checkpoint)
    /// and closing the store make the state durable (a restart replays
    /// everything since). For bulk jobs that checkpoint at their own points,
    /// and for tests that need the log tail to stay unapplied.
    pub fn manual() -> CheckpointPolicy {
        CheckpointPolicy {
            commits: u64::MAX,
            log_bytes: u64::MAX,
            interval: Duration::MAX,
        }
    }

    /// Checkpoint after this many commits.
    pub fn commits(mut self, commits: u64) -> Self {
        self.commits = commits;
        self
    }

    /// Checkpoint after this many bytes of log.
    pub fn log_bytes(mut self, bytes: u64) -> Self {
        self.log_bytes = bytes;
        self
    }

    /// Checkpoint this long after the last one, when anything was committed.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            commits: 50_000,
            log_bytes: 64 << 20,
            interval: Duration::from_secs(30),
        }
    }
}

/// Which sealed log segments a store keeps once the state no longer needs them.
///
/// Only segments wholly behind the last checkpoint are ever removed (the
/// checkpoint's own segment and every later one stay), always the oldest first,
/// so the log that remains is one unbroken run of segments. A segment is removed
/// as soon as keeping it would exceed any of the limits, counted from the newest
/// removable segment back. The policy runs after every checkpoint and in
/// [`compact`](crate::maintenance::compact).
///
/// With `keep_until_backed_up` (the default), once the store has been backed up
/// ([`Store::backup`](crate::Store::backup)), a segment holding any revision the
/// last backup did not copy is kept whatever the limits say, so the next
/// incremental backup finds everything it needs. A store that was never backed
/// up is bounded by the limits alone. The default limits keep at most 128 MiB of
/// sealed log behind the checkpoint (two segments of the default size): with
/// the checkpoint's own segment and the ones after it, a store's log stays
/// within about 200 MiB of its state, and reads of the past, watches from a
/// revision and restores to a point in time reach back that far. A store that
/// wants more of its history says so ([`keep_all`](Self::keep_all), or larger
/// limits); incremental backups never depend on the limits (see above).
///
/// ```
/// use statelog::{Options, RetentionPolicy};
/// let options = Options::default().retention(RetentionPolicy::default().max_segments(Some(8)));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// At most this many sealed segments behind the checkpoint. Default: no limit.
    pub max_segments: Option<usize>,
    /// At most this many bytes of sealed segments behind the checkpoint.
    /// Default: 128 MiB.
    pub max_bytes: Option<u64>,
    /// Remove a segment once it was sealed (its successor started) this long ago.
    /// Default: no limit.
    pub max_age: Option<Duration>,
    /// Keep every segment holding a revision the last backup did not copy.
    /// Default: true.
    pub keep_until_backed_up: bool,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            max_segments: None,
            max_bytes: Some(128 << 20),
            max_age: None,
            keep_until_backed_up: true,
        }
    }
}

impl RetentionPolicy {
    /// Keeps the whole log: no segment is ever removed.
    pub fn keep_all() -> RetentionPolicy {
        RetentionPolicy {
            max_segments: None,
            max_bytes: None,
            max_age: None,
            keep_until_backed_up: true,
        }
    }

    /// Keeps at most this many sealed segments behind the checkpoint (`None`:
    /// no limit).
    pub fn max_segments(mut self, segments: Option<usize>) -> Self {
        self.max_segments = segments;
        self
    }

    /// Keeps at most this many bytes of sealed segments behind the checkpoint
    /// (`None`: no limit).
    pub fn max_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Removes a segment once it was sealed this long ago (`None`: no limit).
    pub fn max_age(mut self, age: Option<Duration>) -> Self {
        self.max_age = age;
        self
    }

    /// Whether to keep every segment holding a revision the last backup did
    /// not copy.
    pub fn keep_until_backed_up(mut self, keep: bool) -> Self {
        self.keep_until_backed_up = keep;
        self
    }
}

/// Settings for [`Store::open`](crate::Store::open).
///
/// ```
/// use std::time::Duration;
/// use statelog::{Durability, Options};
/// let options = Options::default()
///     .durability(Durability::Relaxed { max_delay: Duration::from_millis(5) })
///     .lock_timeout(Duration::from_secs(5));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) lock_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) checkpoint: CheckpointPolicy,
    pub(crate) retention: RetentionPolicy,
    pub(crate) segment_size: u64,
    pub(crate) preallocate: u64,
    pub(crate) cache_size: usize,
    pub(crate) create: bool,
    pub(crate) verify_on_open: bool,
    pub(crate) serve: bool,
    pub(crate) remote: bool,
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) clock: Clock,
    /// How long an idempotency key is kept (`coord/`).
    pub(crate) idempotency_retention: Duration,
    /// How to reach a store on etcd (`None`: from the environment).
    #[cfg(feature = "etcd")]
    pub(crate) etcd: Option<crate::etcd::EtcdOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            lock_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            checkpoint: CheckpointPolicy::default(),
            retention: RetentionPolicy::default(),
            segment_size: 64 << 20,
            preallocate: 4 << 20,
            cache_size: 64 << 20,
            create: true,
            verify_on_open: false,
            serve: true,
            remote: true,
            fs: Arc::new(RealFs),
            clock: Clock::default(),
            idempotency_retention: crate::access::coord::DEFAULT_IDEMPOTENCY_RETENTION,
            #[cfg(feature = "etcd")]
            etcd: None,
        }
    }
}

/// Smallest segment size accepted; smaller would be mostly header.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

impl Options {
    /// How long the idempotency keys of this handle's batches are kept (see
    /// [`Batch::idempotency_key`](crate::Batch::idempotency_key)); a key
    /// used again within it returns the first outcome. Default: a day. They
    /// are pruned after it.
    pub fn idempotency_retention(mut self, keep: Duration) -> Self {
        self.idempotency_retention = keep;
        self
    }

    /// When commits are acknowledged. Default: [`Durability::Sync`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long `open` waits for another handle to release the store (when
    /// it cannot be served by it) before it fails with [`Error::Busy`].
    /// Default: 30 s. Zero fails at once.
    ///
    /// It is also how long one side of a connection between processes waits
    /// for the other (never less than a second): a handle working through the
    /// store's holder waits this long for each answer, counted from the last
    /// thing the holder sent, and the holder this long for the rest of a
    /// message a client began. A holder that does not answer in time (frozen,
    /// stopped) fails reads with [`Error::Busy`] and commits with
    /// [`Error::OutcomeUnknown`], both naming its process id.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How `update` and `transaction` retry on conflicts.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// When checkpoints run.
    pub fn checkpoint(mut self, checkpoint: CheckpointPolicy) -> Self {
        self.checkpoint = checkpoint;
        self
    }

    /// Which old log segments are removed; see [`RetentionPolicy`].
    pub fn retention(mut self, retention: RetentionPolicy) -> Self {
        self.retention = retention;
        self
    }

    /// Size at which a log segment is sealed and a new one started, at the next
    /// commit boundary. Default: 64 MiB.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// The active segment grows in zero-filled, synced steps of this many bytes, so
    /// that a commit's sync never has to update the file's size. 0 turns this off
    /// (plain appends). Default: 4 MiB.
    pub fn preallocate(mut self, bytes: u64) -> Self {
        self.preallocate = bytes;
        self
    }

    /// Memory the state database may use for caching pages. Default: 64 MiB,
    /// which holds the whole state of most stores; a large export or scan fills it,
    /// so the process's peak memory is about this plus a few MiB.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Whether `open` may create a new store when the directory holds none.
    /// Default: true.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Whether `open` verifies the checksum of every page of the state database
    /// (reading the whole file) before trusting it. redb checks its pages when it
    /// recovers from a crash, but not on a clean open or on reads, so damage to
    /// the file after a clean close (a flipped bit on disk) is otherwise found
    /// only by `statelog check`. A failed verification is reported as
    /// [`Error::Database`] and changes nothing. Default: false, because it makes
    /// every open read the whole state.
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// Whether the process that holds the store (the one that opened it
    /// first) serves the other processes that open it meanwhile, through a
    /// Unix socket in the store directory (`statelog.sock`). Default: true.
    /// With false, other processes wait for this one to close the store, as
    /// with [`remote(false)`](Self::remote) on their side. If the socket cannot
    /// be created, `open` fails: turn serving off to open such a store.
    ///
    /// Only the user owning the store directory (and root, and members of its
    /// group when the directory grants its group read and write access) may
    /// connect. See `DESIGN.md`, "One store, many processes".
    pub fn serve(mut self, serve: bool) -> Self {
        self.serve = serve;
        self
    }

    /// Whether `open` may work through another process that holds the store
    /// and serves it, instead of waiting for it to close the store. Default:
    /// true. The options that shape the engine (durability, checkpoints,
    /// retention, segments, cache) are then the holder's; the retry policy and
    /// [`lock_timeout`](Self::lock_timeout) are this handle's.
    pub fn remote(mut self, remote: bool) -> Self {
        self.remote = remote;
        self
    }

    /// How to reach a store on etcd (feature `etcd`): credentials, TLS,
    /// timeouts and the cluster's limits. Used when the path given to
    /// [`Store::open`](crate::Store::open) is an `etcd://` address; without
    /// it, [`EtcdOptions::from_env`](crate::EtcdOptions::from_env) is used.
    /// Of the other options, a store on etcd uses `create`, `retry` and (for
    /// backups) `lock_timeout`; the engine's (durability, checkpoints,
    /// retention, segments, cache, serving) do not apply.
    #[cfg(feature = "etcd")]
    pub fn etcd(mut self, etcd: crate::etcd::EtcdOptions) -> Self {
        self.etcd = Some(etcd);
        self
    }

    /// Runs the store on another file system (the simulated one of the test
    /// kit). Such a store is neither served nor reached through a holder.
    #[cfg(feature = "testkit")]
    pub fn file_system(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self.serve = false;
        self.remote = false;
        self
    }

    /// Takes commit times from `now` instead of the system clock (a clock
    /// before 1970, one that jumps), for tests of what the store records.
    #[cfg(feature = "testkit")]
    pub fn clock(
        mut self,
        now: impl Fn() -> std::time::SystemTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Clock::fake(now);
        self
    }

    /// How long one side of a connection waits for the other.
    pub(crate) fn response_wait(&self) -> Duration {
        self.lock_timeout.max(Duration::from_secs(1))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(Error::InvalidOption {
                name: "segment_size",
                reason: format!(
                    "{} bytes is below the minimum of {MIN_SEGMENT_SIZE}",
                    self.segment_size
                ),
            });
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::InvalidOption {
                name: "retry.max_attempts",
                reason: "must be at least 1".to_owned(),
            });
        }
        if let Durability::Relaxed { max_delay } = self.durability
            && max_delay.is_zero()
        {
            return Err(Error::InvalidOption {
                name: "durability",
                reason: "a relaxed max_delay of zero is Durability::Sync; use that".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..40 {
            assert!(policy.backoff(attempt) <= policy.max_backoff);
        }
        assert!(policy.backoff(1) <= policy.initial_backoff);
    }

    #[test]
    fn rejects_unworkable_options() {
        assert!(Options::default().segment_size(10).validate().is_err());
        let zero = Durability::Relaxed {
            max_delay: Duration::ZERO,
        };
        assert!(Options::default().durability(zero).validate().is_err());
        assert!(Options::default().validate().is_ok());
    }
}
