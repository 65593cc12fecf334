//! `statelog watch [NS [KEY]] [--prefix P] [--rev N] [--prev] [--count N]
//! [-- CMD [ARGS...]]`: the store's commits as they happen (and, with
//! `--rev`, from a past revision on), one line per record written.
//!
//! - plain: `REVISION TIME put|delete NS/KEY VALUE` (the value as compact
//!   JSON; with `--prev`, then `<- PREVIOUS`);
//! - `--json`: one document per record written: `{"revision", "time",
//!   "namespace", "key", "event": "put"|"delete", "version",
//!   "create_revision", "value", "prev"}` (`version`, `create_revision`,
//!   `value` for a put; `prev` with `--prev`, null when there was none);
//! - `-- CMD ARGS`: CMD runs once per record written, in order, each run
//!   finishing before the next, with the event in its environment:
//!   `STATELOG_REVISION`, `STATELOG_TIME`, `STATELOG_NAMESPACE`,
//!   `STATELOG_KEY`, `STATELOG_EVENT` (put or delete), `STATELOG_VERSION`,
//!   `STATELOG_VALUE` (JSON; empty for a delete), `STATELOG_PREV_VALUE`
//!   (with `--prev`) and `STATELOG_EVENT_JSON` (the `--json` document). A
//!   CMD that fails stops the watch (exit 1), naming the `--rev` to resume
//!   from.
//!
//! The watch runs until interrupted, or `--count` events. While it runs
//! without a holder it holds the store and serves the other invocations.
//! When the watch is cut (its holder went away, it fell behind), it exits
//! 1 saying which `--rev` resumes it without missing anything.

use std::process::Command;

use serde::Serialize;
use serde_json::value::RawValue as JsonText;
use statelog::{Event, Shown, Watch, WatchEvent};

use crate::context::Ctx;
use crate::exit::{Code, fail};
use crate::output;

pub const EXAMPLES: &str = r#"Examples:
  statelog watch jobs                      # every change in the namespace, as it happens
  statelog watch jobs build --rev 1 --json # one record's every version, then what comes
  statelog watch jobs --prefix deploy- -- sh -c 'echo "$STATELOG_KEY: $STATELOG_VALUE"'"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace (omit to watch the whole store)
    pub namespace: Option<String>,
    /// Key (omit to watch the namespace)
    #[arg(requires = "namespace")]
    pub key: Option<String>,
    /// Only keys that start with P
    #[arg(long, value_name = "P", requires = "namespace", conflicts_with = "key")]
    pub prefix: Option<String>,
    /// Start with the commit at revision N (from the log the store still
    /// holds); default: the next commit
    #[arg(long, value_name = "N")]
    pub rev: Option<u64>,
    /// Show each record's previous value too
    #[arg(long)]
    pub prev: bool,
    /// Stop after N events
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Run this command once per event, with the event in its environment
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Serialize)]
struct EventDoc<'a> {
    revision: u64,
    time: String,
    namespace: &'a str,
    key: &'a str,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Box<JsonText>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<Option<Box<JsonText>>>,
}

/// The watch the arguments ask for.
pub fn scope(namespace: Option<&str>, key: Option<&str>, prefix: Option<&str>) -> Watch {
    match (namespace, key, prefix) {
        (None, _, _) => Watch::all(),
        (Some(ns), Some(key), _) => Watch::key(ns, key),
        (Some(ns), None, Some(prefix)) => Watch::prefix(ns, prefix),
        (Some(ns), None, None) => Watch::namespace(ns),
    }
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let mut watch = scope(
        args.namespace.as_deref(),
        args.key.as_deref(),
        args.prefix.as_deref(),
    )
    .prev(args.prev);
    if let Some(rev) = args.rev {
        watch = watch.from(rev);
    }
    ctx.with_holding_store(|store| {
        let mut left = args.count;
        let mut resume = args.rev.unwrap_or(0);
        if left == Some(0) {
            return Ok(Code::Ok);
        }
        for event in store.watch(watch)? {
            let change = match event? {
                WatchEvent::Change(change) => change,
                WatchEvent::Progress { .. } => continue,
            };
            resume = change.revision + 1;
            for event in &change.events {
                let doc = event_doc(change.revision, &change.time.to_string(), event, args.prev)?;
                if args.command.is_empty() {
                    if ctx.json {
                        ctx.print_json(&doc)?;
                    } else {
                        ctx.print(line(&doc))?;
                    }
                } else {
                    run_command(&args.command, &doc, change.revision)?;
                }
                if let Some(n) = &mut left {
                    *n -= 1;
                    if *n == 0 {
                        return Ok(Code::Ok);
                    }
                }
            }
        }
        Err(fail(
            Code::Error,
            format!("the watch ended; resume it with --rev {resume}"),
        ))
    })
}

fn event_doc<'a>(
    revision: u64,
    time: &str,
    event: &'a Event,
    with_prev: bool,
) -> anyhow::Result<EventDoc<'a>> {
    let prev = match &event.prev {
        Some(p) => Some(Some(output::json_text(&p.value)?)),
        None => with_prev.then_some(None),
    };
    Ok(EventDoc {
        revision,
        time: time.to_owned(),
        namespace: &event.namespace,
        key: &event.key,
        event: if event.is_delete() { "delete" } else { "put" },
        version: event.value.as_ref().map(|v| v.version),
        create_revision: event.value.as_ref().map(|v| v.create_revision),
        value: match &event.value {
            Some(v) => Some(output::json_text(&v.value)?),
            None => None,
        },
        prev,
    })
}

fn line(doc: &EventDoc<'_>) -> String {
    let mut text = format!(
        "{} {} {} {}/{}",
        doc.revision,
        doc.time,
        doc.event,
        Shown::new(doc.namespace),
        Shown::new(doc.key)
    );
    if let Some(value) = &doc.value {
        text.push(' ');
        text.push_str(value.get());
    }
    if let Some(prev) = &doc.prev {
        text.push_str(" <- ");
        text.push_str(prev.as_ref().map_or("(none)", |p| p.get()));
    }
    text
}

fn run_command(command: &[String], doc: &EventDoc<'_>, revision: u64) -> anyhow::Result<()> {
    let json = crate::context::with_shape(&serde_json::to_string(doc)?);
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("STATELOG_REVISION", doc.revision.to_string())
        .env("STATELOG_TIME", &doc.time)
        .env("STATELOG_NAMESPACE", doc.namespace)
        .env("STATELOG_KEY", doc.key)
        .env("STATELOG_EVENT", doc.event)
        .env(
            "STATELOG_VERSION",
            doc.version.map(|v| v.to_string()).unwrap_or_default(),
        )
        .env(
            "STATELOG_VALUE",
            doc.value.as_ref().map(|v| v.get()).unwrap_or_default(),
        )
        .env("STATELOG_EVENT_JSON", json);
    if let Some(prev) = &doc.prev {
        cmd.env(
            "STATELOG_PREV_VALUE",
            prev.as_ref().map(|v| v.get()).unwrap_or_default(),
        );
    }
    let status = cmd.status().map_err(|e| {
        fail(
            Code::Error,
            format!("cannot run {}: {e}", Shown::new(&command[0])),
        )
    })?;
    if !status.success() {
        return Err(fail(
            Code::Error,
            format!(
                "{} failed ({status}) for revision {revision}; resume the watch with --rev \
                 {revision}",
                Shown::new(&command[0])
            ),
        ));
    }
    Ok(())
}
