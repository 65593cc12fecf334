//! `statelog patch NS KEY FIELD=VALUE... [--json-field FIELD=JSON]...`: set
//! fields of a record, creating it (as an object) if it does not exist.
//!
//! The read-modify-write runs as one optimistic transaction: the version read
//! is re-checked at commit and the whole patch re-applied on a conflict, so
//! concurrent patches of different fields never lose each other's changes.
//! Plain fields apply first, then `--json-field`s, each in the order given.
//! Typing rules: see `fields.rs` and the README. `--json` prints
//! `{"namespace", "key", "version", "revision", "value"}` with the new value.

use rmpv::Value;

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::fields::{self, FieldPath};
use crate::output::{self, WriteDoc};

pub const EXAMPLES: &str = r#"Values: true, false, null; JSON numbers (50, -1.5, 1e3); a JSON string in double quotes;
anything else is text as written (running, node7, 007). Quote to force a string.
A backslash makes the next character of a field name literal.

Examples:
  statelog patch jobs job42 status=running progress=50 meta.host=node7
  statelog patch jobs job42 'code="50"' --json-field 'cfg={"retries": 3}'
  statelog patch pages site 'pages.index\.md=done'"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
    /// FIELD=VALUE: VALUE is true, false, null, a JSON number, a "quoted" JSON
    /// string, or else taken as text; FIELD may be a.b.c
    #[arg(value_name = "FIELD=VALUE", required_unless_present = "json_fields")]
    pub fields: Vec<String>,
    /// FIELD=JSON: set a field to any JSON value (objects, arrays)
    #[arg(long = "json-field", value_name = "FIELD=JSON")]
    pub json_fields: Vec<String>,
}

/// Parses the assignments: a malformed expression is a usage error (exit 2), a
/// value that cannot be stored an error (exit 1); both before the store is
/// opened.
fn assignments(args: &Args) -> anyhow::Result<Vec<(FieldPath, Value)>> {
    let mut out = Vec::new();
    for expr in &args.fields {
        let (path, text) = fields::split_assignment(expr).map_err(|m| fail(Code::Usage, m))?;
        let value = fields::typed_value(text)
            .map_err(|m| fail(Code::Error, format!("field {path}: {m}")))?;
        out.push((path, value));
    }
    for expr in &args.json_fields {
        let (path, text) = fields::split_assignment(expr).map_err(|m| fail(Code::Usage, m))?;
        let value = fields::parse_json(text).map_err(|m| {
            fail(
                Code::Error,
                format!("the JSON of --json-field {path} is not valid: {m}"),
            )
        })?;
        out.push((path, value));
    }
    Ok(out)
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let assignments = assignments(&args)?;
    ctx.with_store(Access::Records, |store| {
        let edited = super::edit_record(store, ns, key, |tree| {
            for (path, value) in &assignments {
                fields::set(tree, path, value.clone())
                    .map_err(|m| format!("{m} (`statelog set` replaces a whole value)"))?;
            }
            Ok(())
        })?;
        let (version, revision, raw) = (edited.version, edited.revision, edited.value);
        if ctx.json {
            ctx.print_json(&WriteDoc {
                namespace: ns,
                key,
                version,
                revision,
                field: None,
                value: Some(output::json_text(&raw)?),
            })?;
        } else {
            ctx.say(format!(
                "patched {ns}/{key}: version {version} (revision {revision})"
            ))?;
        }
        Ok(Code::Ok)
    })
}
