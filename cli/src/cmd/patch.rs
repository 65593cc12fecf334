//! `statelog patch NS KEY FIELD=VALUE... [--json-field FIELD=JSON]...
//! [--merge FIELD=JSON]... [--append FIELD=VALUE]... [--append-unique
//! FIELD=VALUE]... [--remove FIELD]...`: change fields of a record, creating
//! it (as an object) if it does not exist.
//!
//! The changes travel to the store as one patch, applied at commit to the
//! record's value at that moment: concurrent patches never conflict and
//! never lose each other's changes, and through a holder it is one round
//! trip. They apply in this order: plain fields, `--json-field`s, `--merge`s,
//! `--append`s, `--append-unique`s, `--remove`s, each in the order given.
//! Typing rules: see `fields.rs` and the README. `--json` prints
//! `{"namespace", "key", "version", "revision", "value"}` with the new value.

use rmpv::Value;
use statelog::{Batch, Patch, Shown};

use crate::context::{Access, Ctx};
use crate::exit::{Code, fail};
use crate::fields::{self, FieldPath};
use crate::output::{self, WriteDoc};
use crate::writes::{self, WriteArgs};

pub const EXAMPLES: &str = r#"Values: true, false, null; JSON numbers (50, -1.5, 1e3); a JSON string in double quotes;
anything else is text as written (running, node7, 007). Quote to force a string.
A backslash makes the next character of a field name literal.

Examples:
  statelog patch jobs job42 status=running progress=50 meta.host=node7
  statelog patch jobs job42 'code="50"' --json-field 'cfg={"retries": 3}'
  statelog patch jobs job42 --append log=started --append-unique hosts=node7 --remove error
  statelog patch pages site 'pages.index\.md=done'"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace
    pub namespace: String,
    /// Key
    pub key: String,
    /// FIELD=VALUE: VALUE is true, false, null, a JSON number, a "quoted" JSON
    /// string, or else taken as text; FIELD may be a.b.c
    #[arg(value_name = "FIELD=VALUE", required_unless_present_any = ["json_fields", "merge", "append", "append_unique", "remove"])]
    pub fields: Vec<String>,
    /// FIELD=JSON: set a field to any JSON value (objects, arrays)
    #[arg(long = "json-field", value_name = "FIELD=JSON")]
    pub json_fields: Vec<String>,
    /// FIELD=JSON: merge a JSON object into the object in FIELD (members are
    /// set; objects in both are merged in turn)
    #[arg(long, value_name = "FIELD=JSON")]
    pub merge: Vec<String>,
    /// FIELD=VALUE: append VALUE (typed as in FIELD=VALUE) to the array in
    /// FIELD (a missing field becomes an array)
    #[arg(long, value_name = "FIELD=VALUE")]
    pub append: Vec<String>,
    /// FIELD=VALUE: append VALUE unless the array holds it already
    #[arg(long, value_name = "FIELD=VALUE")]
    pub append_unique: Vec<String>,
    /// FIELD: remove the field (nothing if it is missing)
    #[arg(long, value_name = "FIELD", value_parser = FieldPath::parse)]
    pub remove: Vec<FieldPath>,
    /// Leave the record alone when the patch changes nothing (no new
    /// version, no log record)
    #[arg(long)]
    pub if_changed: bool,
    #[command(flatten)]
    pub write: WriteArgs,
}

/// `FIELD=VALUE` (typed) or, with `json`, `FIELD=JSON`: a malformed
/// expression is a usage error (exit 2), a value that cannot be stored an
/// error (exit 1); both before the store is opened.
fn assignment(expr: &str, json: Option<&str>) -> anyhow::Result<(FieldPath, Value)> {
    let (path, text) = fields::split_assignment(expr).map_err(|m| fail(Code::Usage, m))?;
    let value = match json {
        None => fields::typed_value(text)
            .map_err(|m| fail(Code::Error, format!("field {path}: {m}")))?,
        Some(flag) => fields::parse_json(text).map_err(|m| {
            fail(
                Code::Error,
                format!("the JSON of {flag} {path} is not valid: {m}"),
            )
        })?,
    };
    Ok((path, value))
}

fn names(path: &FieldPath) -> Vec<&str> {
    path.names.iter().map(String::as_str).collect()
}

fn raw(value: &Value) -> anyhow::Result<statelog::RawValue> {
    fields::encode(value).map_err(|m| fail(Code::Error, m))
}

/// The patch the arguments ask for.
fn build(args: &Args) -> anyhow::Result<Patch> {
    let mut patch = Patch::new();
    for expr in &args.fields {
        let (path, value) = assignment(expr, None)?;
        patch = patch.set_raw(&names(&path), raw(&value)?);
    }
    for expr in &args.json_fields {
        let (path, value) = assignment(expr, Some("--json-field"))?;
        patch = patch.set_raw(&names(&path), raw(&value)?);
    }
    for expr in &args.merge {
        let (path, value) = assignment(expr, Some("--merge"))?;
        if !matches!(value, Value::Map(_)) {
            return Err(fail(
                Code::Error,
                format!(
                    "--merge {path} needs a JSON object, not {}",
                    fields::kind(&value)
                ),
            ));
        }
        patch = patch.merge_raw(&names(&path), raw(&value)?);
    }
    for expr in &args.append {
        let (path, value) = assignment(expr, None)?;
        patch = patch.append_raw(&names(&path), raw(&value)?);
    }
    for expr in &args.append_unique {
        let (path, value) = assignment(expr, None)?;
        patch = patch.append_unique_raw(&names(&path), raw(&value)?);
    }
    for path in &args.remove {
        patch = patch.remove(&names(path));
    }
    Ok(patch)
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (ns, key) = (args.namespace.as_str(), args.key.as_str());
    let shown = format!("{}/{}", Shown::new(ns), Shown::new(key));
    let patch = build(&args)?;
    let mut batch = Batch::new().patch(ns, key, &patch);
    if args.if_changed {
        batch = batch.if_changed();
    }
    let batch = args.write.add_to(batch, ns, key);
    ctx.with_store(Access::Records, |store| {
        let (outcome, meta, value) = writes::apply_patch(
            store,
            &batch,
            &shown,
            " (`statelog set` replaces a whole value)",
        )?;
        writes::note_replay(&outcome, ctx);
        let (version, revision) = (meta.version, meta.mod_revision);
        let changed = outcome.revision.is_some() || outcome.replayed;
        if ctx.json {
            ctx.print_json(&WriteDoc {
                namespace: ns,
                key,
                version,
                revision,
                field: None,
                value: Some(output::json_text(&value)?),
                replayed: outcome.replayed,
                changed,
            })?;
        } else if changed {
            ctx.say(format!(
                "patched {ns}/{key}: version {version} (revision {revision})"
            ))?;
        } else {
            ctx.say(format!(
                "{ns}/{key} is unchanged by this patch: left at version {version} (revision \
                 {revision})"
            ))?;
        }
        Ok(Code::Ok)
    })
}
