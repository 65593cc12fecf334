//! `statelog wait NS KEY --until FIELD=VALUE [--timeout DURATION]`: returns
//! once the record's field holds the value (at once if it already does),
//! printing the record as `get --meta` would (`--json`: as `get --json`).
//! VALUE is typed as `patch` types it (`true`, `42`, `"42"` for text).
//! After DURATION without it, exits 7. A CI step waiting for a job:
//! `statelog wait jobs build --until status=done --timeout 10m`.

use std::time::{Duration, Instant};

use statelog::{RawValue, Shown, Versioned, Watch, WatchEvent};

use crate::context::Ctx;
use crate::exit::{Code, fail};
use crate::fields;
use crate::output::{self, RecordDoc};

pub const EXAMPLES: &str = r#"Examples:
  statelog wait jobs build --until status=done --timeout 10m
  statelog wait jobs build --until meta.ready=true --timeout 90s || echo "not ready""#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
    /// The condition: FIELD=VALUE (a.b.c=done)
    #[arg(long, value_name = "FIELD=VALUE")]
    pub until: String,
    /// Give up after this long (30s, 10m, 2h, 500ms; a number is seconds);
    /// then exit 7. Default: wait for ever
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: f64 = number.trim().parse().map_err(|_| {
        format!(
            "{} is not a duration (like 30s, 10m, 2h, 500ms)",
            Shown::new(text)
        )
    })?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => {
            return Err(format!(
                "{} has an unknown unit (use ms, s, m, h or d)",
                Shown::new(text)
            ));
        }
    };
    Duration::try_from_secs_f64(n * scale)
        .map_err(|_| format!("{} is not a duration", Shown::new(text)))
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let (path, text) = fields::split_assignment(&args.until)
        .map_err(|m| fail(Code::Usage, format!("--until: {m}")))?;
    let wanted = fields::typed_value(text).map_err(|m| fail(Code::Error, m))?;
    let holds = |value: &RawValue| -> bool {
        fields::decode(value)
            .ok()
            .and_then(|tree| fields::lookup(&tree, &path).ok().cloned())
            .is_some_and(|found| found == wanted)
    };
    let started = Instant::now();
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    let found = ctx.with_holding_store(|store| {
        // What holds now, then every later change: subscribing from the
        // revision after the one read misses nothing in between.
        let snapshot = store.snapshot()?;
        let current = snapshot.get_raw(ns, key)?;
        if let Some(record) = current.filter(|r| holds(&r.value)) {
            return Ok(Some(record));
        }
        let watch = Watch::key(ns, key)
            .from(snapshot.revision()? + 1)
            .progress(Duration::from_millis(100));
        drop(snapshot);
        for event in store.watch(watch)? {
            if let WatchEvent::Change(change) = event? {
                for e in change.events {
                    if let Some(record) = e.value.filter(|r| holds(&r.value)) {
                        return Ok(Some(record));
                    }
                }
            }
            if args.timeout.is_some_and(|t| started.elapsed() >= t) {
                return Ok(None);
            }
        }
        Ok(None)
    })?;
    let Some(record) = found else {
        return Err(fail(
            Code::TimedOut,
            format!(
                "{shown}: {} did not hold within {:.1} s",
                Shown::new(&args.until),
                args.timeout.unwrap_or_default().as_secs_f64()
            ),
        ));
    };
    print(ctx, ns, key, &record)?;
    Ok(Code::Ok)
}

fn print(ctx: &Ctx, ns: &str, key: &str, record: &Versioned<RawValue>) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(&RecordDoc::new(Some(ns), key, record)?);
    }
    ctx.say(format!(
        "{}/{} version {} (revision {}): {}",
        Shown::new(ns),
        Shown::new(key),
        record.version,
        record.mod_revision,
        output::json_text(&record.value)?.get()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
