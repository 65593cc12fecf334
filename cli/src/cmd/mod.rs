//! The subcommands, one file each: its flags (`Args`) and its `run`.
//!
//! A new subcommand is a new file here, one variant of [`Command`] and one arm
//! of [`Command::run`]. It opens the store through [`Ctx::with_store`] (or
//! [`Ctx::open`]), uses only the library's public API, prints through `Ctx`
//! and returns an exit code, or an error whose exit code `exit::code_of`
//! derives.

mod backup;
mod check;
mod compact;
mod completions;
mod del;
mod export;
mod get;
mod history;
mod import;
mod incr;
mod init;
mod list;
mod lock;
mod locks;
mod man;
mod past;
mod patch;
mod repair;
mod restore;
mod serve;
mod set;
mod stats;
mod wait;
mod watch;

use clap::Subcommand;

use crate::cli::{StoreGlobals, WaitGlobals};
use crate::context::Ctx;
use crate::exit::Code;

/// A command's own arguments, and the global flags it takes.
#[derive(Debug, clap::Args)]
pub struct With<A: clap::Args, G: clap::Args> {
    #[command(flatten)]
    pub args: A,
    /// Read from the matches by `Settings::resolve`, which also needs to know
    /// where each came from (the command line or the environment).
    #[command(flatten)]
    #[allow(dead_code)]
    pub global: G,
}

/// The commands that open the store, with their global flags.
type S<A> = With<A, StoreGlobals>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store (here ./.statelog, or --store DIR); nothing happens if
    /// it exists
    #[command(after_help = init::EXAMPLES)]
    Init(S<init::Args>),
    /// Print a record's value as JSON (or one field, raw, with --field)
    #[command(after_help = get::EXAMPLES)]
    Get(S<get::Args>),
    /// Replace a record's value with JSON (an argument, or - for stdin)
    #[command(after_help = set::EXAMPLES)]
    Set(S<set::Args>),
    /// Set fields of a record: status=running progress=50 meta.host=node7
    #[command(after_help = patch::EXAMPLES)]
    Patch(S<patch::Args>),
    /// Add to a numeric field (1 unless BY is given) and print the new number
    #[command(after_help = incr::EXAMPLES, allow_negative_numbers = true)]
    Incr(S<incr::Args>),
    /// Delete a record
    #[command(after_help = del::EXAMPLES)]
    Del(S<del::Args>),
    /// Run a command holding a lock (a lease kept alive while it runs; its
    /// fencing token in $STATELOG_LOCK_TOKEN)
    #[command(after_help = lock::EXAMPLES)]
    Lock(S<lock::Args>),
    /// List the locks held and the leases, with their holder and age
    #[command(after_help = locks::EXAMPLES)]
    Locks(S<locks::Args>),
    /// List a namespace's records (or, without NS, the namespaces)
    #[command(after_help = list::EXAMPLES)]
    List(S<list::Args>),
    /// Show the store's revision, namespaces, record counts and size
    #[command(after_help = stats::EXAMPLES)]
    Stats(S<stats::Args>),
    /// Write the store as JSON, JSON Lines, Markdown or HTML
    #[command(after_help = export::EXAMPLES)]
    Export(S<export::Args>),
    /// Read a snapshot (or a legacy JSON state file) into the store
    #[command(after_help = import::EXAMPLES)]
    Import(S<import::Args>),
    /// Back the store up into DEST, online (later runs copy only the new log)
    #[command(after_help = backup::EXAMPLES)]
    Backup(S<backup::Args>),
    /// Create a store from a backup, up to its end, a revision or a time
    #[command(after_help = restore::EXAMPLES)]
    Restore(With<restore::Args, WaitGlobals>),
    /// Verify the store (or --backup DIR) without changing it; exit 1 on
    /// problems
    #[command(after_help = check::EXAMPLES)]
    Check(S<check::Args>),
    /// Repair a damaged store: keep what is intact, move the rest aside
    #[command(after_help = repair::EXAMPLES)]
    Repair(S<repair::Args>),
    /// Checkpoint, drop old log segments (retention) and compact the state
    /// database
    #[command(after_help = compact::EXAMPLES)]
    Compact(S<compact::Args>),
    /// Hold the store and serve every other process that opens it, until
    /// SIGINT or SIGTERM (then finish what is in flight, checkpoint, exit 0)
    #[command(after_help = serve::EXAMPLES)]
    Serve(S<serve::Args>),
    /// Print every change to the store (a namespace, a record, a key prefix)
    /// as it happens, or from a past revision; or run a command per change
    #[command(after_help = watch::EXAMPLES)]
    Watch(S<watch::Args>),
    /// Wait until a record's field holds a value (exit 7 after --timeout)
    #[command(after_help = wait::EXAMPLES)]
    Wait(S<wait::Args>),
    /// Print every version of a record the store still holds
    #[command(after_help = history::EXAMPLES)]
    History(S<history::Args>),
    /// Print a completion script for a shell (bash, zsh, fish, ...)
    #[command(after_help = completions::EXAMPLES)]
    Completions(completions::Args),
    /// Print the manual page (roff), or write one per command into a directory
    #[command(after_help = man::EXAMPLES)]
    Man(man::Args),
}

/// The definition of one of the commands shell loops run most (`get`, `set`,
/// `patch`, `incr`, `del`) on its own, as [`Command`] defines it: parsing
/// their command lines then builds one command's arguments instead of every
/// command's (clap's building of the whole tree was a fifth of the CPU of an
/// invocation through a holder). `None` for the others. Help and errors
/// always come from the whole definition (see `main`); a test checks that
/// each one matches its part of the whole.
pub fn alone(name: &str) -> Option<clap::Command> {
    use clap::Args as _;
    let command = clap::Command::new(name.to_owned());
    Some(match name {
        "get" => S::<get::Args>::augment_args(command),
        "set" => S::<set::Args>::augment_args(command),
        "patch" => S::<patch::Args>::augment_args(command),
        "incr" => S::<incr::Args>::augment_args(command),
        "del" => S::<del::Args>::augment_args(command),
        _ => return None,
    })
}

impl Command {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<Code> {
        match self {
            Command::Init(w) => init::run(w.args, ctx),
            Command::Get(w) => get::run(w.args, ctx),
            Command::Set(w) => set::run(w.args, ctx),
            Command::Patch(w) => patch::run(w.args, ctx),
            Command::Incr(w) => incr::run(w.args, ctx),
            Command::Del(w) => del::run(w.args, ctx),
            Command::Lock(w) => lock::run(w.args, ctx),
            Command::Locks(w) => locks::run(w.args, ctx),
            Command::List(w) => list::run(w.args, ctx),
            Command::Stats(w) => stats::run(w.args, ctx),
            Command::Export(w) => export::run(w.args, ctx),
            Command::Import(w) => import::run(w.args, ctx),
            Command::Backup(w) => backup::run(w.args, ctx),
            Command::Restore(w) => restore::run(w.args, ctx),
            Command::Check(w) => check::run(w.args, ctx),
            Command::Repair(w) => repair::run(w.args, ctx),
            Command::Compact(w) => compact::run(w.args, ctx),
            Command::Serve(w) => serve::run(w.args, ctx),
            Command::Watch(w) => watch::run(w.args, ctx),
            Command::Wait(w) => wait::run(w.args, ctx),
            Command::History(w) => history::run(w.args, ctx),
            Command::Completions(args) => completions::run(args),
            Command::Man(args) => man::run(args),
        }
    }
}
