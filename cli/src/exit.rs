//! Exit codes, and how an error becomes one (and a message on stderr).
//!
//! The codes are stable and documented in the README:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | error (I/O, damaged store, missing store, invalid JSON, a value of the wrong shape) |
//! | 2 | usage: a bad command line (unknown flag, bad field expression, invalid key) |
//! | 3 | conflict or failed precondition (`--if-version`, `--if-revision`, `--create-only`, import conflicts, a `--fence` whose lock is no longer held with its token) |
//! | 4 | not found (the record, or the field of `get --field`) |
//! | 5 | busy: another process held the store for the whole `--wait` (or, holding it, did not answer); for `lock`, the lock stayed held for the whole lock `--wait` |
//! | 6 | outcome unknown: the process holding the store went away (or stopped answering) with this command's commit in flight; it may or may not have been applied |
//! | 7 | timed out: `wait --until` did not see its condition hold within `--timeout` |
//! | 8 | the idempotency key was used before for a different command (nothing was written) |

use std::fmt;
use std::io;
use std::process::ExitCode;
use std::sync::OnceLock;

use serde::Serialize;
use statelog::Shown;

use crate::errors::ErrorDoc;
use crate::output::SHAPE;

/// What an invocation ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Error = 1,
    Usage = 2,
    Conflict = 3,
    NotFound = 4,
    Busy = 5,
    OutcomeUnknown = 6,
    TimedOut = 7,
    KeyReused = 8,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code as u8)
    }
}

/// An error the command line raises itself, with the exit code it means.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An error with exit code `code`.
pub fn fail(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}

/// The exit code an error means: the outermost [`Failure`] or library error
/// in its chain decides.
pub fn code_of(err: &anyhow::Error) -> Code {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.code;
        }
        if let Some(e) = cause.downcast_ref::<statelog::Error>() {
            return code_of_library(e);
        }
    }
    Code::Error
}

fn code_of_library(e: &statelog::Error) -> Code {
    match e {
        statelog::Error::Conflict { .. }
        | statelog::Error::NotEmpty { .. }
        | statelog::Error::RevisionMismatch { .. }
        | statelog::Error::Fenced { .. } => Code::Conflict,
        statelog::Error::Busy { .. } | statelog::Error::LockHeld { .. } => Code::Busy,
        statelog::Error::IdempotencyKeyReused { .. } => Code::KeyReused,
        statelog::Error::OutcomeUnknown { .. } => Code::OutcomeUnknown,
        statelog::Error::InvalidKey { .. } => Code::Usage,
        _ => Code::Error,
    }
}

/// True when the error is stdout's reader going away (`statelog list | head`).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Whether errors and warnings are JSON (`--json`): set once, at the start.
static JSON: OnceLock<bool> = OnceLock::new();

/// Makes errors and warnings JSON objects from now on.
pub fn set_json(json: bool) {
    let _ = JSON.set(json);
}

fn json() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// Prints `err` on stderr (one line, then one line per cause; with `--json`
/// one JSON object) and returns its exit code. A broken pipe ends the
/// program quietly and successfully, as other Unix filters do: whatever was
/// asked for was done before the output was cut.
pub fn report(err: &anyhow::Error) -> Code {
    if is_broken_pipe(err) {
        return Code::Ok;
    }
    let code = code_of(err);
    if json() {
        print_json_line(&ErrorDoc::new(err, code));
        return code;
    }
    // Messages show user text through `Shown` where they put it in; escaping
    // each whole line again keeps any text that came another way (an
    // operating-system message, a file name in a cause) from breaking the
    // line or driving the terminal.
    let mut text = format!("statelog: error: {}\n", Shown::whole(&err.to_string()));
    for cause in err.chain().skip(1) {
        text.push_str(&format!(
            "  caused by: {}\n",
            Shown::whole(&cause.to_string())
        ));
    }
    print_stderr(&text);
    code
}

/// Reports a usage error (a bad command line; clap's message, or ours), exit
/// 2. `text` is the whole message, its first line starting with `error:`.
pub fn usage(text: &str, json: bool) -> Code {
    if json {
        // clap's text: the message (perhaps over several lines), a blank
        // line, tips, the usage line, a pointer to --help.
        let message: Vec<&str> = text
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect();
        let message = message.join(" ");
        let message = message.strip_prefix("error: ").unwrap_or(&message);
        let usage = text
            .lines()
            .find_map(|l| l.strip_prefix("Usage: "))
            .map(str::to_owned);
        print_json_line(&ErrorDoc::usage(message, usage));
    } else {
        let prefix = if text.starts_with("error:") {
            "statelog: "
        } else {
            ""
        };
        print_stderr(&format!("{prefix}{text}"));
    }
    Code::Usage
}

#[derive(Serialize)]
struct WarningDoc {
    shape: u32,
    warning: WarningBody,
}

#[derive(Serialize)]
struct WarningBody {
    message: String,
}

/// Prints a warning on stderr (things that did not stop the command); with
/// `--json`, one JSON object.
pub fn warn(message: impl fmt::Display) {
    if json() {
        print_json_line(&WarningDoc {
            shape: SHAPE,
            warning: WarningBody {
                message: message.to_string(),
            },
        });
        return;
    }
    print_stderr(&format!(
        "statelog: warning: {}\n",
        Shown::whole(&message.to_string())
    ));
}

/// One JSON object and a newline on stderr.
fn print_json_line(doc: &impl Serialize) {
    // These documents hold only strings, numbers and maps: they serialise.
    if let Ok(mut line) = serde_json::to_string(doc) {
        line.push('\n');
        print_stderr(&line);
    }
}

/// Writes to stderr; nothing more can be done if stderr is gone.
pub fn print_stderr(text: &str) {
    let _ = io::Write::write_all(&mut io::stderr().lock(), text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_known_error_decides() {
        let conflict = statelog::Error::Conflict {
            namespace: "n".into(),
            key: "k".into(),
            expected: 1,
            actual: 2,
            attempts: 1,
        };
        let err = anyhow::Error::new(conflict).context("while setting n/k");
        assert_eq!(code_of(&err), Code::Conflict);
        let err = fail(Code::NotFound, "gone").context("outer");
        assert_eq!(code_of(&err), Code::NotFound);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), Code::Error);
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe.context("write")));
    }
}
