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
use clap::error::ContextValue;

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
            let text = shown_usage_error(&e);
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

/// clap's message for a usage error, with the arguments it repeats shown as
/// every message shows what the user gave (escaped and shortened), so that
/// an argument cannot add lines or drive the terminal.
fn shown_usage_error(e: &clap::Error) -> String {
    // The rendering with its styles holds the arguments as given (the plain
    // one has escape sequences stripped from them too, so they could not be
    // found in it); the styles go once they are replaced.
    let mut text = e.render().ansi().to_string();
    for (_, value) in e.context() {
        let given: Vec<&str> = match value {
            ContextValue::String(s) => vec![s.as_str()],
            ContextValue::Strings(v) => v.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        for s in given {
            let shown = statelog::Shown::new(s).to_string();
            if shown != s {
                text = text.replace(s, &shown);
            }
        }
    }
    clap::builder::StyledStr::from(text)
        .to_string()
        .lines()
        .map(|line| format!("{}\n", statelog::Shown::whole(line)))
        .collect()
}
