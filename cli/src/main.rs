//! `statelog`: the store from shell scripts, CI jobs and cron.
//!
//! Every invocation opens the store (waiting for its lock), does one thing,
//! commits durably and closes before it exits, so any number of scripts may
//! run it at once. `main` only parses, sets up the output and turns the
//! outcome of the command into an exit code; see `exit.rs` for the codes and
//! `cmd/` for the subcommands, one file each.

mod cli;
mod cmd;
mod context;
mod duration;
mod errors;
mod exit;
mod fields;
mod logging;
mod malloc;
mod output;
mod progress;
mod signals;
mod writes;

use std::process::ExitCode;

use clap::FromArgMatches;
use clap::error::ContextValue;

use crate::exit::Code;

fn main() -> ExitCode {
    // First: the cap only holds if set before any thread allocates.
    malloc::cap_arenas();
    // Before parsing succeeds nothing says whether errors should be JSON; the
    // flag anywhere before `--` does.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json_asked = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    // The command alone when it can be (see `cli::command_for`); the whole
    // definition for anything it refuses, and for help and errors.
    let quick = cli::command_for(&args).and_then(|mut definition| {
        let matches = definition.try_get_matches_from_mut(&args).ok()?;
        Some((definition, matches))
    });
    let whole = match quick {
        Some(parsed) => Ok(parsed),
        None => {
            let mut definition = cli::command();
            definition
                .try_get_matches_from_mut(&args)
                .map(|matches| (definition, matches))
        }
    };
    let (definition, matches) = match whole {
        Ok(parsed) => parsed,
        Err(e) if e.use_stderr() => {
            // Usage errors exit 2, with clap's message in the form of ours.
            return exit::usage(&shown_usage_error(&e), json_asked).into();
        }
        Err(e) => {
            // Help and version go to stdout and succeed.
            let _ = e.print();
            return Code::Ok.into();
        }
    };
    let parsed = cli::Cli::from_arg_matches(&matches);
    let settings = match matches.subcommand() {
        Some((name, sub)) => cli::Settings::resolve(&definition, &matches, name, sub),
        None => Err("no command given".to_owned()),
    };
    let (command, settings) = match (parsed, settings) {
        (Ok(cli), Ok(settings)) => (cli.command, settings),
        (Err(e), _) => return exit::usage(&shown_usage_error(&e), json_asked).into(),
        (_, Err(message)) => {
            let text = format!("error: {}\n", statelog::Shown::whole(&message));
            return exit::usage(&text, json_asked).into();
        }
    };
    exit::set_json(settings.json);
    logging::init(settings.verbose, settings.json);
    let ctx = context::Ctx::new(settings);
    match command.run(&ctx) {
        Ok(code) => code.into(),
        Err(err) => exit::report(&err).into(),
    }
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
