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
use crate::exit::{Code, fail};
use crate::fields::{self, FieldPath, Number};
use crate::output::{self, WriteDoc};

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
        let outcome = store.transaction(|tx| -> anyhow::Result<_> {
            let current = tx.snapshot().get_raw(ns, key)?;
            let expected = current.as_ref().map_or(0, |r| r.version);
            tx.expect_version(ns, key, expected)?;
            let mut tree = match &current {
                Some(record) => fields::decode(&record.value).map_err(anyhow::Error::msg)?,
                None => rmpv::Value::Map(Vec::new()),
            };
            let sum = fields::add(&mut tree, &args.field, args.by)
                .map_err(|m| fail(Code::Error, format!("{ns}/{key} was not changed: {m}")))?;
            let raw = fields::encode(&tree)
                .map_err(|m| fail(Code::Error, format!("{ns}/{key} was not changed: {m}")))?;
            tx.put_raw(ns, key, raw)?;
            Ok((expected + 1, sum))
        })?;
        let (version, sum) = outcome.value;
        let revision = outcome.revision.unwrap_or_else(|| store.revision());
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
