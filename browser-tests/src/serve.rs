//! `statelog serve --http` as a child process, for pages served live.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::statelog_bin;

/// How long `serve` may take to start, and to stop after SIGTERM.
const LIMIT: Duration = Duration::from_secs(60);

/// A `statelog serve --http 127.0.0.1:0` process, stopped with SIGTERM when
/// dropped (killed if it does not stop in time).
pub struct Served {
    child: Child,
    url: String,
}

impl Served {
    /// Starts serving the store at `store` on a free loopback port, with
    /// `args` added to `serve`.
    ///
    /// # Errors
    /// When the binary is missing, or `serve` fails or does not say where it
    /// listens within a minute.
    pub fn start(store: &Path, args: &[&str]) -> anyhow::Result<Served> {
        let bin = statelog_bin()?;
        let mut child = Command::new(&bin)
            .arg("--store")
            .arg(store)
            .args(["--json", "serve", "--http", "127.0.0.1:0"])
            .args(args)
            .env_remove("STATELOG_HTTP_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} serve", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut served = Served {
            child,
            url: String::new(),
        };
        let Ok(line) = rx.recv_timeout(LIMIT) else {
            bail!("statelog serve did not say where it listens within {LIMIT:?}");
        };
        let started: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("statelog serve said {line:?}"))?;
        served.url = started["http"]
            .as_str()
            .with_context(|| format!("no web view address in {line:?}"))?
            .to_owned();
        Ok(served)
    }

    /// The page's address, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops it with SIGTERM and waits for it to exit.
    ///
    /// # Errors
    /// When it does not exit within a minute (it is killed) or exits
    /// unsuccessfully.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "statelog serve exited with {status}");
                return Ok(());
            }
            if started.elapsed() > LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("statelog serve did not stop within {LIMIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}
