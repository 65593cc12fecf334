//! Client processes of an etcd test: children of the test binary, each
//! playing a role, whose `@@` lines on stdout are collected.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// Spawns `count` children of `test` playing `role` with `arg|index`; their
/// `@@` lines are collected.
pub struct Children {
    running: Vec<(
        std::process::Child,
        std::thread::JoinHandle<Vec<String>>,
        std::thread::JoinHandle<String>,
    )>,
}

impl Children {
    pub fn spawn(test: &str, role: &str, arg: &str, count: usize) -> Children {
        let mut running = Vec::new();
        for p in 0..count {
            let mut child = crate::common::child_command(test, role, &format!("{arg}|{p}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a client process");
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            let lines = std::thread::spawn(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|line| line.find("@@").map(|at| line[at..].to_owned()))
                    .collect::<Vec<_>>()
            });
            let errors = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
                text
            });
            running.push((child, lines, errors));
        }
        Children { running }
    }

    /// Waits for every child; each must succeed. Their `@@` lines.
    pub fn wait(self) -> Vec<String> {
        let mut out = Vec::new();
        for (mut child, lines, errors) in self.running {
            let status = child.wait().expect("wait for a client process");
            let lines = lines.join().expect("the reader thread");
            let errors = errors.join().expect("the reader thread");
            assert!(
                status.success(),
                "a client process failed ({status}):\n{errors}"
            );
            out.extend(lines);
        }
        out
    }
}
