//! `statelog incr NS KEY FIELD [BY]`: add BY (default 1, may be negative or a
//! decimal) to a numeric field and print the new number.
//!
//! A missing record is created as `{FIELD: BY}`, a missing field starts at 0.
//! Integers stay 64-bit integers (overflow is an error, exit 1); a float on
//! either side gives a float. A field holding anything but a number (null
//! included), or a path through a non-object, is an error (exit 1) and nothing
//! is written. The addition is a patch, applied at commit to the value the
//! record has then: concurrent `incr`s never conflict, and through a holder
//! it is one round trip. `--json` prints `{"namespace", "key", "version",
//! "revision", "field", "value"}`.

use statelog::{Batch, Patch, Shown};

use crate::context::{Access, Ctx};
use crate::exit::Code;
use crate::fields::{self, FieldPath, Number};
use crate::output::{self, WriteDoc};
use crate::writes::{self, WriteArgs};

pub const EXAMPLES: &str = r#"Examples:
  statelog incr jobs job42 retries       # 1, 2, ... never lost, never doubled
  statelog incr stats totals bytes 4096
  statelog incr budget team-a spent -2.5
  statelog incr stats deploys n --idempotency-key "$GITHUB_RUN_ID"   # counts once per run"#;

#[derive(Debug, clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
    /// The numeric field (a.b.c)
    #[arg(value_parser = FieldPath::parse)]
    pub field: FieldPath,
    /// What to add: an integer (negative to subtract) or a decimal
    #[arg(default_value = "1", value_parser = Number::parse)]
    pub by: Number,
    #[command(flatten)]
    pub write: WriteArgs,
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    let path: Vec<&str> = args.field.names.iter().map(String::as_str).collect();
    let patch = match args.by {
        Number::Int(n) => match i64::try_from(n) {
            Ok(n) => Patch::new().add(&path, n),
            Err(_) => Patch::new().add(&path, u64::try_from(n).unwrap_or(u64::MAX)),
        },
        Number::Float(f) => Patch::new().add(&path, f),
    };
    let batch = args
        .write
        .add_to(Batch::new().patch(ns, key, &patch), ns, key);
    ctx.with_store(Access::Records, |store| {
        let (outcome, meta, value) = writes::apply_patch(store, &batch, &shown, "")?;
        writes::note_replay(&outcome, ctx);
        let tree = fields::decode(&value).map_err(anyhow::Error::msg)?;
        let sum = fields::lookup(&tree, &args.field).map_err(anyhow::Error::msg)?;
        let (version, revision) = (meta.version, meta.mod_revision);
        if ctx.json {
            let sum = output::json_text(&fields::encode(sum).map_err(anyhow::Error::msg)?)?;
            ctx.print_json(&WriteDoc {
                namespace: ns,
                key,
                version,
                revision,
                field: Some(&args.field.text),
                value: Some(sum),
                replayed: outcome.replayed,
                changed: true,
            })?;
        } else {
            ctx.print(fields::raw_text(sum).map_err(anyhow::Error::msg)?)?;
        }
        Ok(Code::Ok)
    })
}
