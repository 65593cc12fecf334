//! The ways of reaching a store that the behaviours run against. A new way
//! is one more implementation of [`Way`] and one more module in `main.rs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use statelog::{Options, Store};

/// How a test reaches a store in a directory.
pub trait Way: Sync {
    /// Opens the store in `dir` (creating it) this way.
    fn open(&self, dir: &Path, options: Options) -> Reached;
}

/// A store reached some way, and what keeps that way up (a holder).
pub struct Reached {
    store: Option<Store>,
    dir: std::path::PathBuf,
    options: Options,
    holder: Holder,
    /// The revision before the store's first commit (0 but on etcd).
    base: u64,
}

enum Holder {
    /// This handle holds the store.
    Itself,
    /// Another handle in this process holds it.
    InProcess(Store),
    /// A `statelog serve` process holds it.
    Serve(Child),
    /// Nothing holds it: it is on this etcd member, started for it.
    #[cfg(feature = "etcd-tests")]
    Etcd {
        _member: Box<crate::etcd_harness::Cluster>,
    },
}

impl Reached {
    fn new(store: Store, dir: &Path, options: Options, holder: Holder) -> Reached {
        Reached {
            store: Some(store),
            dir: dir.to_owned(),
            options,
            holder,
            base: 0,
        }
    }

    /// The handle.
    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    /// Closes this handle and opens the store again the same way (the holder,
    /// if any, stays).
    pub fn reopen(&mut self) {
        if let Some(store) = self.store.take() {
            store.close().expect("close");
        }
        let store = Store::open(&self.dir, self.options.clone()).expect("reopen");
        assert_eq!(store.is_holder(), !self.is_remote() && !self.is_etcd());
        self.store = Some(store);
    }

    /// True when the store is reached through a holder.
    pub fn is_remote(&self) -> bool {
        matches!(self.holder, Holder::InProcess(_) | Holder::Serve(_))
    }

    /// True when the store is on etcd.
    pub fn is_etcd(&self) -> bool {
        !matches!(
            self.holder,
            Holder::Itself | Holder::InProcess(_) | Holder::Serve(_)
        )
    }

    /// The store's revision after its `n`th commit. The revisions of a store
    /// on etcd are etcd's, which counted the store's creation before its
    /// first commit; on its own member, nothing else counts.
    pub fn rev(&self, n: u64) -> u64 {
        self.base + n
    }
}

impl Drop for Reached {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            let _ = store.close();
        }
        match &mut self.holder {
            Holder::Itself => {}
            Holder::InProcess(holder) => {
                let _ = holder.clone().close();
            }
            Holder::Serve(child) => stop_serve(child),
            #[cfg(feature = "etcd-tests")]
            Holder::Etcd { .. } => {}
        }
    }
}

/// The store opened in this process: it holds the store.
pub struct Embedded;

impl Way for Embedded {
    fn open(&self, dir: &Path, options: Options) -> Reached {
        let store = Store::open(dir, options.clone()).expect("open");
        assert!(store.is_holder());
        Reached::new(store, dir, options, Holder::Itself)
    }
}

/// A second handle in the process that holds the store: it cannot take the
/// store's lock (the first has it) and works through the holder's socket.
pub struct InProcessHolder;

impl Way for InProcessHolder {
    fn open(&self, dir: &Path, options: Options) -> Reached {
        let holder = Store::open(dir, options.clone()).expect("open the holder");
        let store = Store::open(dir, options.clone()).expect("open through the holder");
        assert!(
            !store.is_holder(),
            "the second handle must go through the holder"
        );
        Reached::new(store, dir, options, Holder::InProcess(holder))
    }
}

/// A `statelog serve` process holds the store; this process reaches it
/// through that process.
pub struct ServeProcess;

impl Way for ServeProcess {
    fn open(&self, dir: &Path, options: Options) -> Reached {
        Store::open(dir, Options::default().serve(false))
            .expect("create the store")
            .close()
            .expect("close");
        let child = start_serve(dir);
        let store = Store::open(dir, options.clone()).expect("open through statelog serve");
        assert!(
            !store.is_holder(),
            "the handle must go through statelog serve"
        );
        Reached::new(store, dir, options, Holder::Serve(child))
    }
}

/// A store on etcd: a one-member etcd on a free loopback port started for
/// each store (so that its revisions count this store's commits alone), with
/// limits raised to what the behaviours commit in one transaction. `dir`
/// names nothing on etcd; the member's data lives in a directory of its own.
#[cfg(feature = "etcd-tests")]
pub struct Etcd;

#[cfg(feature = "etcd-tests")]
impl Way for Etcd {
    fn open(&self, _dir: &Path, options: Options) -> Reached {
        use crate::etcd_harness::{Cluster, Settings};
        const MAX_TXN_OPS: usize = 4096;
        const MAX_REQUEST_BYTES: usize = 32 << 20;
        let cluster = Cluster::start(
            1,
            Settings {
                extra: vec![
                    format!("--max-txn-ops={MAX_TXN_OPS}"),
                    format!("--max-request-bytes={MAX_REQUEST_BYTES}"),
                ],
                tls: None,
            },
        );
        let address = format!("etcd://{}/conformance", cluster.endpoints().join(","));
        let options = options.etcd(
            statelog::EtcdOptions::new()
                .connect_timeout(Duration::from_millis(500))
                .request_timeout(Duration::from_secs(10))
                .failover_timeout(Duration::from_secs(10))
                .max_txn_ops(MAX_TXN_OPS)
                .max_request_bytes(MAX_REQUEST_BYTES),
        );
        let store = Store::open(&address, options.clone()).expect("open the store on etcd");
        assert!(!store.is_holder());
        // The revision of the store's creation (its identity key).
        let base = cluster
            .client()
            .range(statelog::testkit::etcd::proto::RangeRequest {
                key: b"conformance".to_vec(),
                ..Default::default()
            })
            .expect("read etcd's revision")
            .header
            .expect("a header")
            .revision;
        let mut reached = Reached::new(
            store,
            Path::new(&address),
            options,
            Holder::Etcd {
                _member: Box::new(cluster),
            },
        );
        reached.base = u64::try_from(base).expect("a revision");
        reached
    }
}

/// Starts `statelog serve` on `dir` and waits until it serves. It gets
/// SIGTERM when the thread that started it ends (a test that fails cannot
/// leave it behind).
pub fn start_serve(dir: &Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_statelog"));
    command
        .arg("--store")
        .arg(dir)
        .args(["--json", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    die_with_parent(&mut command);
    let mut child = command.spawn().expect("start statelog serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the serve line");
    assert!(line.contains("\"serving\""), "statelog serve said {line:?}");
    child
}

/// Stops a `statelog serve` child with SIGTERM and checks it exits 0.
pub fn stop_serve(child: &mut Child) {
    // SAFETY: kill takes a pid and a signal number.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait().expect("wait for statelog serve") {
            Some(status) => {
                assert!(status.success(), "statelog serve exited with {status}");
                return;
            }
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                panic!("statelog serve did not stop within 30 s of SIGTERM");
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Makes the child get SIGTERM when the thread that spawned it ends.
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; it only sets this (child) process's
    // parent-death signal.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}
