//! The command line's grammar: the global flags here, each subcommand's own
//! in its file under `cmd/`.
//!
//! Global flags are not clap globals: each subcommand takes the groups it
//! uses (a [`StoreArgs`] for the store, [`WaitArgs`], [`OutputArgs`]), so its
//! help lists exactly those, under their own heading, and a flag it would
//! ignore is refused. The top level takes every group too, so that the flags
//! may come before the command (`statelog --store DIR get ...`);
//! [`Settings::resolve`] merges the two places.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, Parser};

use crate::cmd::Command;

/// The environment variable naming the store when `--store` is not given.
pub const STORE_ENV: &str = "STATELOG_STORE";
/// The environment variable giving `--wait` when it is not given.
pub const WAIT_ENV: &str = "STATELOG_WAIT";
/// The environment variable giving `serve --http-token`.
pub const HTTP_TOKEN_ENV: &str = "STATELOG_HTTP_TOKEN";
/// The store when neither `--store` nor the environment names one.
pub const DEFAULT_STORE: &str = ".statelog";
/// How long to wait for the store when neither `--wait` nor the environment
/// says.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The heading of the global flags in every help.
pub const GLOBAL_HEADING: &str = "Global options";

const ABOUT: &str = "Safe shared state for shell scripts, CI jobs and cron: versioned records by \
namespace and key, updated without lost updates, durable before each command exits.";

const AFTER_HELP: &str = "\
The store is --store DIR, else $STATELOG_STORE, else ./.statelog; `statelog init` creates it.
Concurrent invocations wait for each other (up to --wait, else $STATELOG_WAIT, else 30 s),
or work through the process holding the store when it serves it (`statelog serve`, or a program).
Global options go before or after the command; each command's help lists those it takes.

Exit codes:
  0  success
  1  error (I/O, a missing or damaged store, invalid JSON, a value of the wrong shape)
  2  usage (a bad command line, field expression or key)
  3  conflict or failed precondition (--if-version, --if-revision, --create-only, import
     conflicts, a --fence whose lock is no longer held with its token)
  4  not found (the record, or the field of `get --field`)
  5  busy: another process held the store for the whole --wait (or did not answer); for
     `lock`, the lock stayed held for the whole lock --wait
  6  outcome unknown: the process holding the store went away with this command's commit
     in flight; check the record before running the command again
  7  timed out: `wait --until` did not see its condition hold within --timeout
  8  the --idempotency-key was used before for a different command; nothing was written

Examples:
  statelog init
  statelog patch jobs job42 status=running progress=50
  statelog get jobs job42 --field status
  statelog --json list jobs | jq '.records[].key'
  statelog completions bash > ~/.local/share/bash-completion/completions/statelog";

/// The version, with the on-disk and wire formats this build reads and
/// writes (what decides whether two builds can share a store or a backup).
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (store layout {}, log format {}, state schema {}, snapshot format {}, backup format \
         {}, wire protocol {})",
        env!("CARGO_PKG_VERSION"),
        statelog::STORE_FORMAT_VERSION,
        statelog::LOG_FORMAT_VERSION,
        statelog::SCHEMA_VERSION,
        statelog::snapshot::FORMAT_VERSION,
        statelog::backup::BACKUP_FORMAT_VERSION,
        statelog::PROTOCOL_VERSION,
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "statelog",
    version = VERSION.as_str(),
    about = ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 100,
    subcommand_help_heading = "Commands",
    // `alias sl='statelog --store A'` then `sl --store B ...`: the last wins.
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub output: OutputArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The command line's definition, as clap builds it (for parsing, help,
/// completions and the man page).
pub fn command() -> clap::Command {
    Cli::command()
}

/// The definition to parse `args` (the whole command line, the program's
/// name first) with when its command is one [`crate::cmd::alone`] builds on
/// its own: the top level's flags and that one command. `None` sends the
/// caller to [`command`]: no command, or a flag before it that is not one of
/// the global flags (`--help`, `--version`, a typo). Parsing with it accepts
/// only what the whole definition accepts, with the same matches; whatever it
/// refuses (help included) is parsed again with the whole definition, so
/// that help and errors are exactly its.
pub fn command_for(args: &[OsString]) -> Option<clap::Command> {
    let mut rest = args.iter().skip(1);
    let name = loop {
        let arg = rest.next()?.to_str()?;
        match arg {
            "--store" | "--wait" => {
                rest.next()?;
            }
            "--no-wait" | "--json" | "--quiet" | "--verbose" => {}
            _ if arg.starts_with("--store=") || arg.starts_with("--wait=") => {}
            // -q, -v, -vv, -qv ...
            _ if arg.len() > 1
                && arg.starts_with('-')
                && arg[1..].chars().all(|c| c == 'q' || c == 'v') => {}
            _ if arg.starts_with('-') => return None,
            name => break name,
        }
    };
    let one = crate::cmd::alone(name)?;
    let top = clap::Command::new("statelog")
        .version(VERSION.as_str())
        .max_term_width(100)
        .args_override_self(true)
        .subcommand_required(true)
        .arg_required_else_help(true)
        // The derive's group of `Cli`'s own arguments (it has none).
        .group(clap::ArgGroup::new("Cli").multiple(true));
    let top = OutputArgs::augment_args(WaitArgs::augment_args(StoreArgs::augment_args(top)));
    Some(top.subcommand(one))
}

/// Which store.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct StoreArgs {
    /// The store directory [default: ./.statelog]
    #[arg(long, value_name = "DIR", env = STORE_ENV, hide_env_values = true)]
    pub store: Option<PathBuf>,
}

/// How long to wait for the store.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct WaitArgs {
    /// Wait up to DURATION (seconds, or 500ms, 30s, 5m) for other statelog
    /// processes to release the store (or, when one serves it, to answer),
    /// then fail with exit code 5; for a store on etcd, it also bounds how long
    /// a request keeps trying members that do not answer
    #[arg(
        long,
        value_name = "DURATION",
        env = WAIT_ENV,
        hide_env_values = true,
        default_value = "30",
        value_parser = parse_wait
    )]
    pub wait: Duration,

    /// Do not wait for the store: fail at once with exit code 5 if another
    /// process has it open and does not serve it
    #[arg(long)]
    pub no_wait: bool,
}

/// What to print.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct OutputArgs {
    /// Print one JSON document on stdout, and errors as one JSON object on
    /// stderr (the shapes are in the README)
    #[arg(long)]
    pub json: bool,

    /// Print nothing on success but what was asked for (values, exports);
    /// errors still go to stderr
    #[arg(short, long)]
    pub quiet: bool,

    /// Show the library's events on stderr: -v what it does, -vv details,
    /// -vvv everything ($RUST_LOG, if set, decides instead)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// A store and the waits, for the commands that open one.
#[derive(Debug, Clone, Args)]
pub struct StoreGlobals {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The waits alone, for `restore` (its store is its TARGET).
#[derive(Debug, Clone, Args)]
pub struct WaitGlobals {
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    // An empty $STATELOG_WAIT is as good as none.
    if text.is_empty() {
        return Ok(DEFAULT_WAIT);
    }
    crate::duration::parse(text)
}

/// Where the store's path came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFrom {
    Flag,
    Env,
    Default,
}

impl StoreFrom {
    pub fn describe(self) -> &'static str {
        match self {
            StoreFrom::Flag => "given by --store",
            StoreFrom::Env => "given by $STATELOG_STORE",
            StoreFrom::Default => "the default, as neither --store nor $STATELOG_STORE is set",
        }
    }
}

/// The global settings of one invocation, from wherever they were given.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: PathBuf,
    pub store_from: StoreFrom,
    pub wait: Duration,
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
}

impl Settings {
    /// Merges the flags given before the command (`top`) with those after it
    /// (`sub`, the matches of the subcommand `name`): after the command wins
    /// over before it, either over the environment, the environment over the
    /// default. A flag given before a command that does not take it is a
    /// usage error naming it. `definition` is the one `top` was parsed with.
    pub fn resolve(
        definition: &clap::Command,
        top: &ArgMatches,
        name: &str,
        sub: &ArgMatches,
    ) -> Result<Settings, String> {
        let takes: Vec<String> = definition
            .find_subcommand(name)
            .map(|c| c.get_arguments().map(|a| a.get_id().to_string()).collect())
            .unwrap_or_default();
        let takes = |id: &str| takes.iter().any(|t| t == id);
        for id in ["store", "wait", "no_wait", "json", "quiet", "verbose"] {
            if !takes(id) && top.value_source(id) == Some(ValueSource::CommandLine) {
                let flag = match id {
                    "no_wait" => "--no-wait".to_owned(),
                    id => format!("--{id}"),
                };
                return Err(format!(
                    "`statelog {name}` does not take {flag}{}",
                    if id == "store" && name == "restore" {
                        ": it restores into TARGET"
                    } else {
                        ""
                    }
                ));
            }
        }
        let sub = |id: &str| takes(id).then_some(sub);
        let (store, store_from) = match pick::<PathBuf>(top, sub("store"), "store") {
            Some((path, ValueSource::CommandLine)) => (path, StoreFrom::Flag),
            Some((path, _)) if !path.as_os_str().is_empty() => (path, StoreFrom::Env),
            _ => (PathBuf::from(DEFAULT_STORE), StoreFrom::Default),
        };
        let wait = pick::<Duration>(top, sub("wait"), "wait").map_or(DEFAULT_WAIT, |(w, _)| w);
        let flag = |id: &str| flag(top, id) || sub(id).is_some_and(|m| flag(m, id));
        let count = |m: Option<&ArgMatches>| {
            m.and_then(|m| m.get_one::<u8>("verbose"))
                .copied()
                .unwrap_or(0)
        };
        Ok(Settings {
            store,
            store_from,
            wait: if flag("no_wait") {
                Duration::ZERO
            } else {
                wait
            },
            json: flag("json"),
            quiet: flag("quiet"),
            verbose: count(Some(top)).saturating_add(count(sub("verbose"))),
        })
    }
}

/// A flag's value from after the command if given there, else from before
/// it, else from the environment (either place reads it), with its source.
/// `sub` is `None` when the command does not take the flag.
fn pick<T: Clone + Send + Sync + 'static>(
    top: &ArgMatches,
    sub: Option<&ArgMatches>,
    id: &str,
) -> Option<(T, ValueSource)> {
    let get = |m: &ArgMatches| -> Option<(T, ValueSource)> {
        let value = m.get_one::<T>(id)?.clone();
        Some((value, m.value_source(id)?))
    };
    let after = sub.and_then(get);
    let before = get(top);
    let from = |v: &Option<(T, ValueSource)>, source: ValueSource| {
        v.as_ref().is_some_and(|(_, s)| *s == source)
    };
    for source in [ValueSource::CommandLine, ValueSource::EnvVariable] {
        if from(&after, source) {
            return after;
        }
        if from(&before, source) {
            return before;
        }
    }
    None
}

fn flag(m: &ArgMatches, id: &str) -> bool {
    m.get_one::<bool>(id).copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn wait_takes_seconds() {
        assert_eq!(parse_wait("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_wait(""), Ok(DEFAULT_WAIT));
        assert!(parse_wait("-1").is_err());
        assert!(parse_wait("soon").is_err());
    }

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let mut all = vec!["statelog"];
        all.extend_from_slice(args);
        let mut definition = command();
        let top = definition
            .try_get_matches_from_mut(all)
            .map_err(|e| e.to_string())?;
        let (name, sub) = top.subcommand().expect("a subcommand");
        Settings::resolve(&definition, &top, name, sub)
    }

    #[test]
    fn flags_after_the_command_win_over_flags_before_it() {
        let s = settings(&[
            "--store", "a", "--wait", "2", "get", "--store", "b", "n", "k",
        ])
        .unwrap();
        assert_eq!(s.store, PathBuf::from("b"));
        assert_eq!(s.store_from, StoreFrom::Flag);
        assert_eq!(s.wait, Duration::from_secs(2));
        let s = settings(&["-v", "--json", "stats", "-v", "--no-wait"]).unwrap();
        assert!(s.json);
        assert_eq!(s.verbose, 2);
        assert_eq!(s.wait, Duration::ZERO);
    }

    const ALONE: [&str; 5] = ["get", "set", "patch", "incr", "del"];

    fn described<'a>(args: impl Iterator<Item = &'a clap::Arg>) -> Vec<String> {
        args.map(|a| format!("{a:?}")).collect()
    }

    #[test]
    fn a_command_alone_is_defined_as_in_the_whole() {
        let whole = command();
        for name in ALONE {
            let alone = command_for(&["statelog".into(), name.into()]).expect(name);
            assert_eq!(
                described(alone.get_arguments()),
                described(whole.get_arguments()),
                "top level, parsing {name}"
            );
            let groups = |c: &clap::Command| -> Vec<String> {
                c.get_groups().map(|g| format!("{g:?}")).collect()
            };
            assert_eq!(groups(&alone), groups(&whole), "top level, parsing {name}");
            let one = alone.find_subcommand(name).expect(name);
            let same = whole.find_subcommand(name).expect(name);
            assert_eq!(
                described(one.get_arguments()),
                described(same.get_arguments()),
                "{name}"
            );
            assert_eq!(groups(one), groups(same), "{name}");
            assert_eq!(
                one.is_allow_negative_numbers_set(),
                same.is_allow_negative_numbers_set(),
                "{name}"
            );
        }
        assert!(crate::cmd::alone("export").is_none());
    }

    #[test]
    fn a_command_alone_parses_as_the_whole_or_not_at_all() {
        let lines: &[&[&str]] = &[
            &["get", "ns", "k"],
            &[
                "--store", "a", "-v", "get", "--json", "ns", "k", "--field", "x.y",
            ],
            &["--store=a", "--wait=2", "incr", "ns", "k", "n", "-3"],
            &[
                "-qv",
                "--no-wait",
                "incr",
                "ns",
                "k",
                "n",
                "2.5",
                "--store",
                "b",
            ],
            &["set", "ns", "k", "{\"a\":1}", "--if-version", "3"],
            &["patch", "ns", "k", "a=1", "b.c=x"],
            &["del", "ns", "k", "--quiet"],
            &["--json", "--json", "del", "ns", "k"],
            &["incr", "ns", "k"],
            &["incr", "ns", "k", "n", "x"],
            &["get", "ns"],
            &["get", "--help"],
            &["get", "ns", "k", "--frob"],
            &["--version"],
            &["--frob", "get", "ns", "k"],
            &["list", "ns"],
        ];
        let mut parsed_alone = Vec::new();
        for line in lines {
            let mut args: Vec<OsString> = vec!["statelog".into()];
            args.extend(line.iter().map(OsString::from));
            let whole = command().try_get_matches_from(&args);
            let Some(mut alone) = command_for(&args) else {
                continue;
            };
            match alone.try_get_matches_from_mut(&args) {
                Ok(matches) => {
                    parsed_alone.push(line[0..2].join(" "));
                    let whole = whole.unwrap_or_else(|e| panic!("{line:?}: {e}"));
                    // What was matched, the command's included; not which
                    // commands there were to match.
                    let matched = |m: &ArgMatches| {
                        let text = format!("{m:?}");
                        let from = text.find(" args: ").expect("matches");
                        text[from..].to_owned()
                    };
                    assert_eq!(matched(&matches), matched(&whole), "{line:?}");
                    let (name, sub) = matches.subcommand().expect("a command");
                    let settings = Settings::resolve(&alone, &matches, name, sub);
                    let (name, sub) = whole.subcommand().expect("a command");
                    let expected = Settings::resolve(&command(), &whole, name, sub);
                    assert_eq!(format!("{settings:?}"), format!("{expected:?}"), "{line:?}");
                }
                // Parsed again with the whole definition, which must refuse
                // it too (or show help).
                Err(_) => assert!(whole.is_err(), "{line:?} refused alone only"),
            }
        }
        assert_eq!(
            parsed_alone,
            [
                "get ns",
                "--store a",
                "--store=a --wait=2",
                "-qv --no-wait",
                "set ns",
                "patch ns",
                "del ns",
                "--json --json"
            ]
        );
    }

    #[test]
    fn a_flag_the_command_does_not_take_is_refused_before_it_too() {
        let err = settings(&["--store", "a", "restore", "b", "t"]).unwrap_err();
        assert!(err.contains("does not take --store"), "{err}");
        assert!(settings(&["restore", "--store", "a", "b", "t"]).is_err());
        assert!(settings(&["--json", "completions", "bash"]).is_err());
    }
}
