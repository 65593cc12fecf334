//! The library's `tracing` events on stderr: off unless asked for with `-v`
//! (warnings and what the library does), `-vv` (details), `-vvv`
//! (everything), or `RUST_LOG`, which when set decides instead (its full
//! syntax: `RUST_LOG=statelog=debug`). With `--json` each event is one JSON
//! object on its own line, as errors and warnings are.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber for this process.
pub fn init(verbose: u8, json: bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    // Nothing to show: no subscriber, whose setup (a filter parsed, the
    // terminal asked) would cost every invocation for events it drops.
    if from_env.is_none() && verbose == 0 {
        return;
    }
    let filter = match from_env {
        Some(directives) => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            crate::exit::warn(format!(
                "RUST_LOG={} is not a valid filter ({e}); showing warnings only",
                statelog::Shown::new(&directives)
            ));
            EnvFilter::new("warn")
        }),
        None => EnvFilter::new(match verbose {
            0 => "off",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // Another subscriber can only be there if this ran twice; nothing to do.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
