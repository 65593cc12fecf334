//! What the comparison and restart benches share: the record shape, settings
//! from the environment, statistics, memory and machine facts, child processes.

// Both bench binaries include this file and each uses a part of it.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The record every engine stores: a version, a time and about 200 bytes of payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u64,
    pub at: i64,
    pub payload: String,
}

pub const PAYLOAD_LEN: usize = 200;

impl Record {
    pub fn new(version: u64, seed: u64) -> Record {
        Record {
            version,
            at: now_micros(),
            payload: payload(seed),
        }
    }

    /// The next version of this record, as every engine's update writes it.
    pub fn bumped(&self, seed: u64) -> Record {
        Record::new(self.version + 1, seed)
    }
}

/// 200 bytes of text that differ per seed (so nothing compresses to nothing).
pub fn payload(seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PAYLOAD_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

pub fn now_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

pub fn key(i: u64) -> String {
    format!("k{i:08}")
}

pub fn keys(n: u64) -> Vec<String> {
    (0..n).map(key).collect()
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a whole number")),
        Err(_) => default,
    }
}

pub fn env_f64(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a number")),
        Err(_) => default,
    }
}

pub fn quick() -> bool {
    std::env::var("STATELOG_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where bench data goes: `STATELOG_BENCH_DIR`, else the target's tmp directory
/// (same disk as the checkout; /tmp may be a tmpfs).
pub fn base_dir() -> PathBuf {
    let dir = std::env::var_os("STATELOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    dir
}

pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base_dir())
        .expect("create a temporary directory")
}

/// Median, min and max of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    assert!(n > 0, "no samples");
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Summary {
        median,
        min: sorted[0],
        max: sorted[n - 1],
    }
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
pub fn proc_status_kib(field: &str) -> u64 {
    proc_status_kib_of("self", field)
}

/// A field of `/proc/<pid>/status` (`"self"` for this process) in KiB (0
/// when unreadable).
pub fn proc_status_kib_of(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `/proc/<pid>/stat` (`"self"` for this process), in
/// clock ticks (0 when unreadable).
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// User and system CPU time of this process so far (every thread), in
/// seconds (ticks of 10 ms).
pub fn process_cpu_secs() -> f64 {
    cpu_ticks("self") as f64 / 100.0
}

/// Starts the process's peak RSS (`VmHWM`) again from its current RSS, so
/// that the peak read after a run is that run's (Linux: `clear_refs` 5).
pub fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        panic!("cannot reset the peak RSS through /proc/self/clear_refs: {e}");
    }
}

/// Runs `f`; returns its result, the RSS before it and the peak RSS during it
/// (KiB).
pub fn with_peak_rss<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    reset_peak_rss();
    let before = proc_status_kib("VmRSS");
    let out = f();
    (out, before, proc_status_kib("VmHWM"))
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Bytes under a directory (files only, recursively).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("read a directory entry");
        let target = to.join(entry.file_name());
        let file_type = entry.file_type().expect("file type");
        if file_type.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
        // Anything else (the socket a killed holder left) is not the store's data.
    }
}

/// The machine, for the report header: cores, kernel, and the file system that
/// holds `dir` with its mount options.
pub fn machine(dir: &Path) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mount = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && dir.starts_with(f[1])).then(|| (f[1].len(), f[0], f[2], f[3]))
        })
        .max_by_key(|m| m.0)
        .map(|(_, dev, fs, opts)| format!("{dev} {fs} ({opts})"))
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "{cores} cores ({cpu}), Linux {}, data in {} on {mount}",
        kernel.trim(),
        dir.display()
    )
}

/// The load average, to say how quiet the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs this bench binary again as a child with `args`, waits, and returns the
/// line of its standard output that starts with `RESULT `, split into
/// `name=value` pairs.
pub fn run_child(args: &[&str]) -> Vec<(String, String)> {
    let mut child = Conversation::start(args);
    let result = child.answer();
    child.wait();
    result
}

pub fn parse_result(stdout: &str) -> Option<Vec<(String, String)>> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    Some(
        line.split_whitespace()
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

pub fn field(result: &[(String, String)], name: &str) -> f64 {
    result
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the child's result {result:?}"))
}

/// A child process of this bench binary kept for a conversation: the parent
/// writes one request line at a time on its standard input, and the child
/// answers each with a line of its standard output that starts with
/// `RESULT ` (after a first such line of its own when it is ready).
pub struct Conversation {
    args: Vec<String>,
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Conversation {
    /// Starts this bench binary as `__child args...`.
    pub fn start(args: &[&str]) -> Conversation {
        use std::io::BufRead;
        let exe = std::env::current_exe().expect("find the bench binary");
        let mut child = std::process::Command::new(exe)
            .arg("__child")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start a child process");
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().expect("the child's stdout"));
        Conversation {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child,
            stdin,
            stdout: stdout.lines(),
        }
    }

    /// The child's next `RESULT` line, split into `name=value` pairs.
    pub fn answer(&mut self) -> Vec<(String, String)> {
        for line in self.stdout.by_ref() {
            let line = line.expect("read the child's output");
            if let Some(result) = parse_result(&line) {
                return result;
            }
        }
        let status = self.child.wait().expect("wait for the child");
        panic!("child {:?} ended ({status}) without an answer", self.args)
    }

    /// Sends `request` as a line and waits for the answer.
    pub fn ask(&mut self, request: &str) -> Vec<(String, String)> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        writeln!(stdin, "{request}")
            .and_then(|()| stdin.flush())
            .expect("write to the child");
        self.answer()
    }

    /// Sends the last request, then waits for the child to exit.
    pub fn finish(mut self, request: &str) -> Vec<(String, String)> {
        let result = self.ask(request);
        self.wait();
        result
    }

    /// Closes the child's input, reads what it still prints, and waits for
    /// it to exit successfully.
    pub fn wait(mut self) {
        drop(self.stdin.take());
        for line in self.stdout.by_ref() {
            line.expect("read the child's output");
        }
        let status = self.child.wait().expect("wait for the child");
        assert!(status.success(), "child {:?} failed: {status}", self.args);
    }
}

/// The request lines the parent of a `Conversation` sends, read by the child.
pub fn requests() -> impl Iterator<Item = String> {
    use std::io::BufRead;
    std::io::stdin()
        .lock()
        .lines()
        .map(|line| line.expect("read a request from the parent"))
}
