//! Progress bars for long commands (export, import, backup, restore): drawn
//! on stderr when it is a terminal, and not at all when it is piped or
//! `--quiet` is given.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::context::Ctx;

/// Where the command's own output goes, which decides whether a bar may be
/// drawn: not on a terminal its output also goes to, where it would
/// scribble over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// To stdout (an export without `--out`).
    Stdout,
    /// Elsewhere, or a short summary after the bar is gone.
    Elsewhere,
}

/// A bar (over `total` when known, else a spinner) with `template`, or a
/// hidden one when nothing should be drawn.
pub fn bar(ctx: &Ctx, output: Output, total: Option<u64>, template: &str) -> ProgressBar {
    let shared_terminal = output == Output::Stdout && io::stdout().is_terminal();
    if ctx.quiet || !io::stderr().is_terminal() || shared_terminal {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let fallback = if total.is_some() {
        ProgressStyle::default_bar()
    } else {
        ProgressStyle::default_spinner()
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or(fallback));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// An export's progress: records written (in the message, from the
/// library's callback) and bytes written (the position, from the output).
pub fn export(ctx: &Ctx, output: Output) -> ProgressBar {
    let bar = bar(
        ctx,
        output,
        None,
        "{spinner} exporting: {msg}, {bytes} ({bytes_per_sec}, {elapsed})",
    );
    bar.set_message(records(0));
    bar
}

/// An import's progress: a bar over the input's bytes when its length is
/// known (a file), else a spinner; records read go in the message.
pub fn import(ctx: &Ctx, total: Option<u64>) -> ProgressBar {
    let template = if total.is_some() {
        "importing: {msg} {wide_bar} {bytes}/{total_bytes}"
    } else {
        "{spinner} importing: {msg}, {bytes} ({bytes_per_sec}, {elapsed})"
    };
    let bar = bar(ctx, Output::Elsewhere, total, template);
    bar.set_message(records(0));
    bar
}

/// "1,234 records" for a progress message.
pub fn records(n: u64) -> String {
    format!("{} records", indicatif::HumanCount(n))
}
