//! Progress bars for long commands (export, import): drawn on stderr when it
//! is a terminal, and not at all when it is piped or `--quiet` is given.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::context::Ctx;

/// Whether to draw: stderr is a terminal, and the command's own output does
/// not go to the same terminal (where the bar would scribble over it).
fn wanted(ctx: &Ctx, output_on_stdout: bool) -> bool {
    !ctx.quiet && io::stderr().is_terminal() && !(output_on_stdout && io::stdout().is_terminal())
}

fn style(template: &str, fallback: ProgressStyle) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or(fallback)
}

/// An export's progress: records written (in the message, from the
/// library's callback) and bytes written (the position, from the output).
pub fn export(ctx: &Ctx, output_on_stdout: bool) -> ProgressBar {
    if !wanted(ctx, output_on_stdout) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(style(
        "{spinner} exporting: {msg}, {bytes} ({bytes_per_sec}, {elapsed})",
        ProgressStyle::default_spinner(),
    ));
    bar.set_message(records(0));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// An import's progress: a bar over the input's bytes when its length is
/// known (a file), else a spinner; records read go in the message.
pub fn import(ctx: &Ctx, total: Option<u64>) -> ProgressBar {
    if !wanted(ctx, false) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "importing: {msg} {wide_bar} {bytes}/{total_bytes}"
    } else {
        "{spinner} importing: {msg}, {bytes} ({bytes_per_sec}, {elapsed})"
    };
    bar.set_style(style(template, ProgressStyle::default_bar()));
    bar.set_message(records(0));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// "1,234 records" for a progress message.
pub fn records(n: u64) -> String {
    format!("{} records", indicatif::HumanCount(n))
}
