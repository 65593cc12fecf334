//! A harness for testing statelog's pages in a real browser: Debian's Chromium,
//! headless, driven through chromedriver (WebDriver) with `fantoccini`.
//!
//! [`Browser::start`] starts chromedriver on a free loopback port and opens a
//! session in a fresh Chromium profile; [`Browser::close`] ends both, and
//! dropping a [`Browser`] (a failed assertion, a timeout) kills whatever is
//! left. Every wait is bounded. [`Cli`] runs the `statelog` binary against a
//! store, and [`Browser::screenshot`] saves PNGs under
//! `target/browser-screenshots/`, where CI keeps them. [`Served`] runs
//! `statelog serve --http` for the live web view.
//!
//! The binaries: `STATELOG_BIN` (else `target/debug/statelog`; build it first
//! with `cargo build`), `CHROMIUM` (else `/usr/bin/chromium`) and
//! `CHROMEDRIVER` (else `/usr/bin/chromedriver`). A missing one is an error,
//! never a skipped test.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

mod serve;
use fantoccini::{Client, ClientBuilder, Locator};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
pub use serve::Served;

/// Chromium's flags: headless, and nothing that reaches for the network (this
/// machine's network is closed, and Chromium stalls on refused connections
/// without the background-networking flags).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The browser window's size (screenshots show its viewport).
pub const WINDOW: (u32, u32) = (1280, 900);

/// How long chromedriver and Chromium may take to start.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long closing the session may take before everything is killed.
const CLOSE_LIMIT: Duration = Duration::from_secs(15);

/// How to start the browser.
#[derive(Debug, Clone)]
pub struct Options {
    /// Whether pages may run scripts (WebDriver's own scripts run either way).
    pub javascript: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { javascript: true }
    }
}

/// A headless Chromium session through its own chromedriver.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a Chromium session with
    /// a fresh profile, within a minute.
    ///
    /// # Errors
    /// When a binary is missing, chromedriver does not listen, or the session
    /// cannot be created (the error carries chromedriver's log).
    pub async fn start() -> anyhow::Result<Browser> {
        Browser::start_with(&Options::default()).await
    }

    /// [`Browser::start`] with `options`.
    ///
    /// # Errors
    /// As [`Browser::start`].
    pub async fn start_with(options: &Options) -> anyhow::Result<Browser> {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium", "chromium")?;
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver")?;
        let profile = tempfile::Builder::new()
            .prefix("statelog-browser-")
            .tempdir()
            .context("cannot create a directory for the browser profile")?;
        let port = free_port()?;
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that Drop can end it with every
            // Chromium process it started.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", chromedriver.display()))?;
        let mut browser = Browser {
            client: None,
            driver,
            profile,
        };
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Some(status) = browser.driver.try_wait()? {
                bail!(
                    "chromedriver exited ({status}) before listening on port {port}:\n{}",
                    browser.driver_log()
                );
            }
            ensure!(
                started.elapsed() < START_LIMIT,
                "chromedriver did not listen on port {port} within {START_LIMIT:?}:\n{}",
                browser.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser.profile.path().join("chromium").display()
        ));
        args.push(format!("--window-size={},{}", WINDOW.0, WINDOW.1));
        // Content setting 2 blocks the pages' scripts.
        let javascript = if options.javascript { 1 } else { 2 };
        let prefs = json!({ "profile.managed_default_content_settings.javascript": javascript });
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args, "prefs": prefs },
            "timeouts": { "pageLoad": 120_000, "script": 60_000, "implicit": 0 },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(capabilities);
        let address = format!("http://127.0.0.1:{port}");
        let connect = builder.connect(&address);
        let client = match tokio::time::timeout(START_LIMIT, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => bail!(
                "chromedriver could not start Chromium: {e}\n{}",
                browser.driver_log()
            ),
            Err(_) => bail!(
                "no browser session within {START_LIMIT:?}\n{}",
                browser.driver_log()
            ),
        };
        browser.client = Some(client);
        Ok(browser)
    }

    /// The WebDriver client, for anything the helpers here do not cover.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until close()")
    }

    /// Opens `url` and waits for it to load.
    ///
    /// # Errors
    /// When navigation fails or the page does not load within the session's
    /// page-load timeout (120 s).
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client()
            .goto(url)
            .await
            .with_context(|| format!("cannot open {url}"))
    }

    /// Runs `script` (a function body: `return ...`) in the page and decodes
    /// what it returns.
    ///
    /// # Errors
    /// When the script throws or its result does not decode as `T`.
    pub async fn eval<T: DeserializeOwned>(&self, script: &str) -> anyhow::Result<T> {
        let value = self
            .client()
            .execute(script, Vec::new())
            .await
            .with_context(|| format!("the script failed: {script}"))?;
        serde_json::from_value(value.clone())
            .with_context(|| format!("unexpected result {value} of {script}"))
    }

    /// Evaluates `script` every 25 ms until it returns `true`.
    ///
    /// # Errors
    /// When it has not within `limit`; the error names `what` and shows what
    /// `report` (another script) returns then.
    pub async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        script: &str,
        report: &str,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if self.eval::<bool>(script).await? {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                let seen: Value = self.eval(report).await.unwrap_or(Value::Null);
                bail!("{what}: not within {limit:?} (the page shows {seen})");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The first element matching a CSS selector.
    ///
    /// # Errors
    /// When there is none.
    pub async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client()
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element matches {css:?}"))
    }

    /// Saves a screenshot of the window as `target/browser-screenshots/NAME.png`.
    ///
    /// # Errors
    /// When the browser cannot take it or the file cannot be written.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client().screenshot().await.context("no screenshot")?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Ends the session (Chromium exits) and chromedriver.
    ///
    /// # Errors
    /// When the session does not end cleanly; everything is killed anyway.
    pub async fn close(mut self) -> anyhow::Result<()> {
        if let Some(client) = self.client.take() {
            match tokio::time::timeout(CLOSE_LIMIT, client.close()).await {
                Ok(result) => result.context("cannot end the browser session")?,
                Err(_) => bail!("the browser session did not end within {CLOSE_LIMIT:?}"),
            }
        }
        Ok(())
    }

    /// CPU time used so far by this session's processes (chromedriver and
    /// every Chromium process, read from `/proc`): a cost that other load on
    /// the machine changes far less than wall time. Processes that have
    /// exited no longer count.
    pub fn cpu_time(&self) -> Duration {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let total: u64 = users_of(self.profile.path())
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| {
                // Fields after the command, which may hold spaces: state is
                // the first, utime and stime the 12th and 13th.
                let rest = &stat[stat.rfind(')')? + 2..];
                let fields: Vec<&str> = rest.split(' ').collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .sum();
        Duration::from_micros(total * 1_000_000 / ticks)
    }

    fn driver_log(&self) -> String {
        let text = std::fs::read_to_string(self.profile.path().join("chromedriver.log"))
            .unwrap_or_else(|e| format!("(no chromedriver log: {e})"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Browser {
    /// Kills chromedriver's process group, then any process still using this
    /// session's profile (Chromium's helpers can outlive their group).
    fn drop(&mut self) {
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.driver.wait();
        kill_users_of(self.profile.path());
    }
}

/// Kills every process whose command line names `dir`.
fn kill_users_of(dir: &Path) {
    for pid in users_of(dir) {
        // SAFETY: kill(2) on one process id read just now.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// The processes whose command line names `dir`.
fn users_of(dir: &Path) -> Vec<libc::pid_t> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<libc::pid_t>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .windows(needle.len())
                .any(|w| w == needle)
                .then_some(pid)
        })
        .collect()
}

/// A binary from an environment variable or its Debian path.
fn binary(var: &str, default: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    ensure!(
        path.is_file(),
        "{} is missing: install Debian's {package} (`apt-get install chromium \
         chromium-driver`; .ci/run does) or set {var}",
        path.display()
    );
    Ok(path)
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `future` for at most `limit`.
///
/// # Errors
/// The future's error, or a timeout naming `what`.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    future: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => bail!("{what} did not finish within {limit:?}"),
    }
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// Where screenshots go: `target/browser-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("browser-screenshots")
}

/// The `statelog` binary: `STATELOG_BIN`, else `target/debug/statelog`.
///
/// # Errors
/// When it does not exist, saying how to build it.
pub fn statelog_bin() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("STATELOG_BIN") {
        Some(path) => PathBuf::from(path),
        None => target_dir().join("debug/statelog"),
    };
    ensure!(
        path.is_file(),
        "the statelog binary {} is missing: build it first (`cargo build --bin statelog`) \
         or point STATELOG_BIN at it",
        path.display()
    );
    Ok(path)
}

/// A `file://` URL for a local file.
///
/// # Errors
/// When `path` is not absolute.
pub fn file_url(path: &Path) -> anyhow::Result<String> {
    url::Url::from_file_path(path)
        .map(String::from)
        .map_err(|()| anyhow::anyhow!("{} is not an absolute path", path.display()))
}

/// The `statelog` command line on one store.
pub struct Cli {
    bin: PathBuf,
    store: PathBuf,
}

impl Cli {
    /// Creates a store at `store` with `statelog init`.
    ///
    /// # Errors
    /// When the binary is missing or `init` fails.
    pub fn init(store: &Path) -> anyhow::Result<Cli> {
        let cli = Cli {
            bin: statelog_bin()?,
            store: store.to_owned(),
        };
        cli.run(&["init", "-q"])?;
        Ok(cli)
    }

    /// Imports `records` job records into namespace `jobs` (`task-00000000`,
    /// ..., five fields each: the benchmarks' workload), through a legacy
    /// JSON file written in `scratch`.
    ///
    /// # Errors
    /// When the file cannot be written or the import fails.
    pub fn load_jobs(&self, scratch: &Path, records: usize) -> anyhow::Result<()> {
        const STATUSES: [&str; 4] = ["queued", "running", "done", "failed"];
        let jobs: std::collections::BTreeMap<String, Value> = (0..records)
            .map(|i| {
                let value = json!({
                    "status": STATUSES[i % 4],
                    "progress": (i * 37) % 101,
                    "stage": "render",
                    "attempts": i % 3,
                    "artifact": format!("s3://bucket/out/{i:08}.mp4"),
                });
                (format!("task-{i:08}"), value)
            })
            .collect();
        let file = scratch.join("jobs.json");
        std::fs::write(&file, serde_json::to_vec(&jobs)?)?;
        let file = file.to_str().context("a UTF-8 scratch path")?;
        self.run(&["import", "--legacy", "--ns", "jobs", file])?;
        Ok(())
    }

    /// Runs `statelog --store STORE ARGS...`.
    ///
    /// # Errors
    /// When it exits unsuccessfully (with its stderr).
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.bin)
            .arg("--store")
            .arg(&self.store)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        ensure!(
            output.status.success(),
            "statelog {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
