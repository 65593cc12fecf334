//! The ways of reaching a store that the behaviours run against. A new way
//! (the etcd backend, later) is one more implementation of [`Way`] and one
//! more line in `main.rs`.

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
}

enum Holder {
    /// This handle holds the store.
    Itself,
    /// Another handle in this process holds it.
    InProcess(Store),
    /// A `statelog serve` process holds it.
    Serve(Child),
}

impl Reached {
    fn new(store: Store, dir: &Path, options: Options, holder: Holder) -> Reached {
        Reached {
            store: Some(store),
            dir: dir.to_owned(),
            options,
            holder,
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
        assert_eq!(store.is_holder(), !self.is_remote());
        self.store = Some(store);
    }

    /// True when the store is reached through a holder.
    pub fn is_remote(&self) -> bool {
        !matches!(self.holder, Holder::Itself)
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
