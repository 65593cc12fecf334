//! `statelog incr NS KEY FIELD [BY]`: add BY (default 1, may be negative or a
//! decimal) to a numeric field and print the new number.
//!
//! A missing record is created as `{FIELD: BY}`, a missing field starts at 0.
//! Integers stay 64-bit integers (overflow is an error, exit 1); a float on
//! either side gives a float. A field holding anything but a number (null
//! included), or a path through a non-object, is an error (exit 1) and nothing
//! is written. Runs as one optimistic transaction, like `patch`. `--json`
//! prints `{"namespace", "key", "version", "revision", "field", "value"}`.

use crate::context::{Access, Ctx};
use crate::exit::Code;
use crate::fields::{self, FieldPath, Number};
use crate::output::{self, WriteDoc};

pub const EXAMPLES: &str = r#"Examples:
  statelog incr jobs job42 retries       # 1, 2, ... never lost, never doubled
  statelog incr stats totals bytes 4096
  statelog incr budget team-a spent -2.5"#;

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
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    ctx.with_store(Access::Records, |store| {
        let edited = super::edit_record(store, ns, key, |tree| {
            fields::add(tree, &args.field, args.by)
        })?;
        let (version, revision, sum) = (edited.version, edited.revision, edited.result);
        if ctx.json {
            let sum = output::json_text(&fields::encode(&sum).map_err(anyhow::Error::msg)?)?;
            ctx.print_json(&WriteDoc {
                namespace: ns,
                key,
                version,
                revision,
                field: Some(&args.field.text),
                value: Some(sum),
            })?;
        } else {
            ctx.print(fields::raw_text(&sum).map_err(anyhow::Error::msg)?)?;
        }
        Ok(Code::Ok)
    })
}
