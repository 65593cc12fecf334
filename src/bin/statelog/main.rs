//! `statelog`: the store from shell scripts, CI jobs and cron.
//!
//! Every invocation opens the store (waiting for its lock), does one thing,
//! commits durably and closes before it exits, so any number of scripts may
//! run it at once. `main` only turns the outcome of [`run`] into an exit
//! code; see `exit.rs` for the codes and `cmd/` for the subcommands, one file
//! each.

mod cli;
mod cmd;
mod context;
mod exit;
mod fields;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::exit::Code;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code.into(),
        Err(err) => exit::report(&err).into(),
    }
}

/// Parses the command line and runs the subcommand.
fn run() -> anyhow::Result<Code> {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // Usage errors exit 2, with clap's message in the form of ours.
            let text = e.render().to_string();
            let prefix = if text.starts_with("error:") {
                "statelog: "
            } else {
                ""
            };
            exit::print_stderr(&format!("{prefix}{text}"));
            return Ok(Code::Usage);
        }
        Err(e) => {
            // Help and version go to stdout and succeed.
            let _ = e.print();
            return Ok(Code::Ok);
        }
    };
    let ctx = context::Ctx::new(&cli.global);
    cli.command.run(&ctx)
}
