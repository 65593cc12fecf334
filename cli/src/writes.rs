//! The flags every writing command takes (`set`, `patch`, `incr`, `del`;
//! `import` takes `--fence` and `--idempotency-key` of its own):
//! fences, an idempotency key, a revision precondition. Each command builds
//! one [`Batch`] and adds these to it.

use std::time::Duration;

use clap::Args;
use statelog::{Batch, BatchOutcome, Shown};

use crate::exit::{Code, fail};

/// The environment variable giving `--idempotency-key`.
pub const IDEMPOTENCY_KEY_ENV: &str = "STATELOG_IDEMPOTENCY_KEY";

/// The heading of these flags in the help.
pub const HEADING: &str = "Write options";

/// Fences, an idempotency key, a revision precondition.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = HEADING)]
pub struct WriteArgs {
    /// Write only while lock NAME is still held with TOKEN (what `statelog
    /// lock` passes its command as $STATELOG_LOCK_NAME and
    /// $STATELOG_LOCK_TOKEN); exit 3 and write nothing otherwise. Repeatable
    #[arg(long, value_name = "NAME=TOKEN", value_parser = parse_fence)]
    pub fence: Vec<(String, u64)>,

    /// Make this command idempotent under KEY (at most 255 bytes): run again
    /// with the same KEY and the same arguments, it prints the first result
    /// and writes nothing; with other arguments it exits 8. Keys are kept for
    /// --keep-key (a day)
    #[arg(long, value_name = "KEY", env = IDEMPOTENCY_KEY_ENV, hide_env_values = true)]
    pub idempotency_key: Option<String>,

    /// How long to keep --idempotency-key: a DURATION (86400, 30m, 7d)
    /// [default: 1d]
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_long, requires = "idempotency_key")]
    pub keep_key: Option<Duration>,

    /// Write only if the record was last written by the commit at revision N
    /// (0: it does not exist); exit 3 otherwise. Unlike a version, a revision
    /// is never reused by a record deleted and created again
    #[arg(long, value_name = "N")]
    pub if_revision: Option<u64>,
}

pub fn parse_fence(text: &str) -> Result<(String, u64), String> {
    let (name, token) = text.rsplit_once('=').ok_or_else(|| {
        format!(
            "\"{}\" is not NAME=TOKEN (for example sync=$STATELOG_LOCK_TOKEN)",
            Shown::new(text)
        )
    })?;
    let token = token.parse::<u64>().map_err(|_| {
        format!(
            "the token of --fence {} is not a number: \"{}\"",
            Shown::new(name),
            Shown::new(token)
        )
    })?;
    if name.is_empty() {
        return Err("--fence needs a lock name before the =".to_owned());
    }
    Ok((name.to_owned(), token))
}

impl WriteArgs {
    /// Adds the flags to a batch writing `ns`/`key`.
    pub fn add_to(&self, mut batch: Batch, ns: &str, key: &str) -> Batch {
        for (name, token) in &self.fence {
            batch = batch.fence(name, *token);
        }
        if let Some(key) = self.idempotency_key.as_deref().filter(|k| !k.is_empty()) {
            batch = batch.idempotency_key(key);
            if let Some(keep) = self.keep_key {
                batch = batch.keep_key_for(keep);
            }
        }
        if let Some(revision) = self.if_revision {
            batch = batch.if_revision(ns, key, revision);
        }
        batch
    }
}

/// Applies a batch; a batch that could not be built (an invalid lock name or
/// key) is a usage error.
pub fn apply(store: &statelog::Store, batch: &Batch) -> anyhow::Result<BatchOutcome> {
    match store.apply(batch) {
        Err(statelog::Error::InvalidOption {
            name: "batch",
            reason,
        }) => Err(fail(Code::Usage, reason)),
        other => Ok(other?),
    }
}

/// Says that the outcome is a replay, on stderr (stdout stays what the first
/// run printed).
pub fn note_replay(outcome: &BatchOutcome, ctx: &crate::context::Ctx) {
    if outcome.replayed && !ctx.quiet && !ctx.json {
        crate::exit::print_stderr(
            "statelog: this idempotency key was used before for the same command: its first \
             result follows; nothing was written now\n",
        );
    }
}

/// Applies a batch holding one patch of `ns`/`key`; a patch that cannot
/// apply says the record was not changed (exit 1), with `hint`.
pub fn apply_patch(
    store: &statelog::Store,
    batch: &Batch,
    shown: &str,
    hint: &str,
) -> anyhow::Result<(BatchOutcome, statelog::Meta, statelog::RawValue)> {
    let outcome = match apply(store, batch) {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(statelog::Error::PatchFailed { message, .. }) =
                e.downcast_ref::<statelog::Error>()
            {
                return Err(fail(
                    Code::Error,
                    format!("{shown} was not changed: {}{hint}", Shown::new(message)),
                ));
            }
            return Err(e.context(format!("{shown} was not changed")));
        }
    };
    match outcome.writes.first() {
        Some(statelog::WriteResult::Put {
            meta,
            value: Some(value),
            ..
        }) => {
            let (meta, value) = (*meta, value.clone());
            Ok((outcome, meta, value))
        }
        _ => Err(anyhow::anyhow!("the store answered a patch with no value")),
    }
}
