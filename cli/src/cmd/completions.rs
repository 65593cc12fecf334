//! `statelog completions SHELL`: a completion script for the shell, made
//! from the command line's definition, so it always knows every command and
//! flag of this build.

use std::io::Write;

use anyhow::Context as _;
use clap_complete::Shell;

use crate::exit::Code;

pub const EXAMPLES: &str = "\
Examples:
  statelog completions bash > ~/.local/share/bash-completion/completions/statelog
  statelog completions zsh > \"${fpath[1]}/_statelog\"
  statelog completions fish > ~/.config/fish/completions/statelog.fish";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: Args) -> anyhow::Result<Code> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::cli::command(),
        "statelog",
        &mut script,
    );
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    Ok(Code::Ok)
}
