//! The command line's grammar: global flags here, each subcommand's own in its
//! file under `cmd/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use crate::cmd::Command;
use statelog::Shown;

const ABOUT: &str = "Safe shared state for shell scripts, CI jobs and cron: versioned records by \
namespace and key, updated without lost updates, durable before each command exits.";

const AFTER_HELP: &str = "\
The store is --store DIR, else $STATELOG_STORE, else ./.statelog; `statelog init` creates it.
Concurrent invocations wait for each other (up to --wait seconds, 30 by default), or work
through the process holding the store when it serves it (`statelog serve`, or a program).

Exit codes:
  0  success
  1  error (I/O, a missing or damaged store, invalid JSON, a value of the wrong shape)
  2  usage (a bad command line, field expression or key)
  3  conflict or failed precondition (--if-version, --create-only, import conflicts)
  4  not found (the record, or the field of `get --field`)
  5  busy: another process held the store for the whole --wait (or did not answer)
  6  outcome unknown: the process holding the store went away with this command's commit
     in flight; check the record before running the command again";

#[derive(Debug, Parser)]
#[command(
    name = "statelog",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes, before or after its name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The store directory [env: STATELOG_STORE] [default: ./.statelog]
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Wait up to SECS for other statelog processes to release the store (or,
    /// when one serves it, to answer), then fail with exit code 5
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value = "30",
        value_parser = parse_wait
    )]
    pub wait: Duration,

    /// Do not wait for the store: fail at once with exit code 5 if another
    /// process has it open and does not serve it
    #[arg(long, global = true)]
    pub no_wait: bool,

    /// Print one JSON document on stdout (the shapes are in the README)
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing on success but what was asked for (values, exports);
    /// errors still go to stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("\"{}\" is not a number of seconds", Shown::new(text)))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!(
            "{} is not from 0 to 86400 seconds",
            Shown::new(text)
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn wait_takes_seconds() {
        assert_eq!(parse_wait("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_wait("-1").is_err());
        assert!(parse_wait("soon").is_err());
    }
}
