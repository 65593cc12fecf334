//! `statelog man [--dir DIR]`: the manual page, made from the command line's
//! definition: `statelog(1)` on stdout, or with `--dir` that page and one per
//! command (`statelog-get(1)`, ...) written into DIR.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use statelog::Shown;

use crate::exit::Code;

pub const EXAMPLES: &str = "\
Examples:
  statelog man | man -l -
  statelog man --dir /usr/local/share/man/man1";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write statelog.1 and statelog-COMMAND.1 for every command into DIR
    /// (created if missing) instead of printing statelog.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<Code> {
    let mut command = crate::cli::command();
    command.build();
    let Some(dir) = args.dir else {
        let page = render(&command)?;
        let mut out = std::io::stdout().lock();
        out.write_all(&page)
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        return Ok(Code::Ok);
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the directory {}", Shown::path(&dir)))?;
    write(&dir, "statelog", &command)?;
    for sub in command.get_subcommands() {
        let name = format!("statelog-{}", sub.get_name());
        // The page's title and synopsis name the command as it is typed.
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("statelog {}", sub.get_name()));
        write(&dir, &name, &sub)?;
    }
    Ok(Code::Ok)
}

fn render(command: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .context("cannot render the manual page")?;
    Ok(page)
}

fn write(dir: &Path, name: &str, command: &clap::Command) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, render(command)?)
        .with_context(|| format!("cannot write {}", Shown::path(&path)))
}
