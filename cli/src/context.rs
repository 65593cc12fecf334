//! What every subcommand needs: which store, how long to wait for it, how to
//! print, and opening and closing the store around the work.
//!
//! One invocation is one open, the work (at most one commit for the writing
//! commands, durable before `Store` returns) and one close. The store's lock
//! serialises invocations; the close's checkpoint keeps the next open short.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use statelog::{Options, Shown, Store};

use crate::cli::{STORE_ENV, Settings};
use crate::exit;
use crate::output::SHAPE;

/// How long an open waits before saying so on a terminal.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// Page cache for commands that scan the whole store (export): small, so a
/// large export does not fill memory with pages it reads once.
const SCAN_CACHE: usize = 16 << 20;

/// How a command opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads and writes of a few records.
    Records,
    /// A scan of the whole store: a small page cache.
    Scan,
}

/// The settings of one invocation.
#[derive(Debug)]
pub struct Ctx {
    pub store: PathBuf,
    /// Where `store` came from, for messages.
    pub store_from: &'static str,
    pub wait: Duration,
    pub json: bool,
    pub quiet: bool,
}

impl Ctx {
    pub fn new(settings: Settings) -> Ctx {
        Ctx {
            store: settings.store,
            store_from: settings.store_from.describe(),
            wait: settings.wait,
            json: settings.json,
            quiet: settings.quiet,
        }
    }

    /// The options every open uses; `create` only for `init`. An invocation
    /// works through the store's holder when there is one, and never serves
    /// others itself (it is gone a moment later): without a holder,
    /// invocations take turns on the store's lock.
    pub fn options(&self, access: Access, create: bool) -> Options {
        let mut options = Options::default()
            .create(create)
            .lock_timeout(self.wait)
            .serve(false);
        if self
            .store
            .as_os_str()
            .as_encoded_bytes()
            .starts_with(b"etcd://")
        {
            // On etcd, the wait bounds how long a request keeps trying members
            // that do not answer. Bad settings in the environment are left for
            // the open to report.
            if let Ok(etcd) = statelog::EtcdOptions::from_env() {
                options = options.etcd(etcd.failover_timeout(self.wait));
            }
        }
        match access {
            Access::Records => options,
            Access::Scan => options.cache_size(SCAN_CACHE),
        }
    }

    /// Opens the existing store (never creates one).
    pub fn open(&self, access: Access) -> anyhow::Result<Store> {
        let store = self
            .waiting(|| Store::open(&self.store, self.options(access, false)))
            .map_err(|e| self.open_error(e))?;
        self.after_open(&store);
        Ok(store)
    }

    /// Runs `open`, saying on a terminal that it waits for the store if it
    /// takes more than a second (another process has it): a silent pause of up
    /// to `--wait` would look like a hang.
    pub fn waiting<T>(&self, open: impl FnOnce() -> T) -> T {
        if self.quiet || self.json || self.wait <= NOTICE_AFTER || !io::stderr().is_terminal() {
            return open();
        }
        let (done, wait) = mpsc::channel::<()>();
        let limit = self.wait.as_secs_f64();
        let notice = std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(NOTICE_AFTER) {
                exit::print_stderr(&format!(
                    "statelog: waiting up to {limit:.0} s for the store: another process has it \
                     open\n"
                ));
            }
        });
        let result = open();
        drop(done);
        let _ = notice.join();
        result
    }

    /// Explains a failed open: what to do comes first, the library's reason
    /// follows as the cause.
    pub fn open_error(&self, e: statelog::Error) -> anyhow::Error {
        let path = Shown::path(&self.store);
        let from = self.store_from;
        let message = match &e {
            statelog::Error::NotAStore { .. } if missing_or_empty(&self.store) => format!(
                "there is no statelog store at {path} ({from}); create one with \
                 `statelog init`, or point --store or ${STORE_ENV} at an existing store"
            ),
            statelog::Error::Busy { waited, .. } => format!(
                "gave up waiting for the store at {path} after {:.1} s: another process has it \
                 open (and does not answer, if it serves it); try again, or wait longer with \
                 --wait DURATION",
                waited.as_secs_f64()
            ),
            _ => format!("cannot open the store at {path} ({from})"),
        };
        anyhow::Error::new(e).context(message)
    }

    /// Explains a failed start of `check`, `repair` or `compact`, which need
    /// the store closed: they never work through a process holding it.
    pub fn tool_error(&self, e: statelog::Error) -> anyhow::Error {
        match &e {
            statelog::Error::Busy { waited, .. } => {
                let message = format!(
                    "gave up waiting for the store at {} after {:.1} s: another process holds it \
                     (`statelog serve` or a program; its pid follows); check, repair and compact \
                     need the store closed: stop that process, then run this again",
                    self.store.display(),
                    waited.as_secs_f64()
                );
                anyhow::Error::new(e).context(message)
            }
            _ => self.open_error(e),
        }
    }

    /// Says what recovery did, when it cut something, and when the store could
    /// only be opened read-only.
    pub fn after_open(&self, store: &Store) {
        if let Some(why) = store.read_only()
            && !self.quiet
        {
            exit::warn(format!(
                "the store's file system takes no writes ({why}): it is open read-only; reading, \
                 exporting and backing up work, changes fail"
            ));
        }
        if let Some(cut) = &store.recovery().cut
            && !self.quiet
        {
            exit::warn(format!(
                "the last write to the log was torn (a crash while committing; it was never \
                 acknowledged): cut {} bytes at offset {} of {} and kept them in {}",
                cut.bytes,
                cut.offset,
                Shown::path(&cut.segment),
                Shown::path(&cut.saved_to)
            ));
        }
    }

    /// Opens the store, runs `work`, and closes the store, whatever `work`
    /// returned.
    ///
    /// A failed close does not fail the command: every commit was durable
    /// before `work` returned, and reporting failure would make a script redo
    /// a write that happened (an `incr` would count twice). It is a warning.
    pub fn with_store<T>(
        &self,
        access: Access,
        work: impl FnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let store = self.open(access)?;
        let result = work(&store);
        if let Err(e) = store.close() {
            exit::warn(format!(
                "closing the store at {} failed (what was committed is durable and will be \
                 replayed at the next open): {e}",
                Shown::path(&self.store)
            ));
        }
        result
    }

    /// Like [`with_store`](Self::with_store), for commands that keep the
    /// store open for long (`watch`, `wait`): without a holder, this process
    /// holds the store and serves the other invocations meanwhile, rather than
    /// keeping them waiting for its lock.
    pub fn with_holding_store<T>(
        &self,
        work: impl FnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let store = self
            .waiting(|| {
                Store::open(
                    &self.store,
                    self.options(Access::Records, false).serve(true),
                )
            })
            .map_err(|e| self.open_error(e))?;
        self.after_open(&store);
        let result = work(&store);
        if let Err(e) = store.close() {
            exit::warn(format!(
                "closing the store at {} failed (what was committed is durable and will be \
                 replayed at the next open): {e}",
                Shown::path(&self.store)
            ));
        }
        result
    }

    /// Writes human-readable text to stdout, unless `--quiet`.
    pub fn say(&self, text: impl AsRef<str>) -> anyhow::Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.print(text)
    }

    /// Writes `text` and a newline to stdout, always (what was asked for).
    pub fn print(&self, text: impl AsRef<str>) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_ref().as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .context("cannot write to stdout")
    }

    /// Writes one compact JSON document and a newline to stdout, with its
    /// shape version first.
    pub fn print_json(&self, doc: &impl Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string(doc).context("cannot render the JSON output")?;
        self.print(with_shape(&text))
    }

    /// True when stdout is a terminal (output for people: aligned, shortened).
    pub fn stdout_is_terminal(&self) -> bool {
        io::stdout().is_terminal()
    }
}

/// A JSON object with `"shape"` added as its first member (the documents'
/// values are embedded JSON text, which serde's flattening cannot carry).
pub fn with_shape(object: &str) -> String {
    match object.strip_prefix('{') {
        Some("}") => format!("{{\"shape\":{SHAPE}}}"),
        Some(rest) => format!("{{\"shape\":{SHAPE},{rest}"),
        None => object.to_owned(),
    }
}

/// True when `dir` does not exist or holds nothing: no store was ever made
/// there (anything else that is not a store is reported as the library says).
fn missing_or_empty(dir: &std::path::Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}
