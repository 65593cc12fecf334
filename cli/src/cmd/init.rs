//! `statelog init`: create the store. The only command that creates one;
//! running it on an existing store changes nothing, so scripts may run it
//! every time.

use serde::Serialize;
use statelog::{Shown, Store};

use crate::context::{Access, Ctx};
use crate::exit::Code;

pub const EXAMPLES: &str = r#"Examples:
  statelog init                          # ./.statelog
  statelog --store /var/lib/jobs/state init -q
  STATELOG_STORE=/var/lib/jobs/state statelog init"#;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct InitDoc<'a> {
    store: &'a str,
    id: String,
    created: bool,
    revision: u64,
}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let opened = ctx.waiting(|| Store::open(&ctx.store, ctx.options(Access::Records, false)));
    let (store, created) = match opened {
        Ok(store) => (store, false),
        Err(statelog::Error::NotAStore { .. }) => {
            let store = Store::open(&ctx.store, ctx.options(Access::Records, true)).map_err(
                |e| match e {
                    statelog::Error::Busy { .. } => ctx.open_error(e),
                    e => anyhow::Error::new(e).context(format!(
                        "cannot create a store in {}",
                        Shown::path(&ctx.store)
                    )),
                },
            )?;
            (store, true)
        }
        Err(e) => return Err(ctx.open_error(e)),
    };
    ctx.after_open(&store);
    let path = ctx.store.display().to_string();
    let doc = InitDoc {
        store: &path,
        id: store.id(),
        created,
        revision: store.revision(),
    };
    store.close()?;
    if ctx.json {
        ctx.print_json(&doc)?;
    } else if created {
        ctx.say(format!("created an empty store in {path}"))?;
    } else {
        ctx.say(format!(
            "{path} is already a store (revision {}); nothing was changed",
            doc.revision
        ))?;
    }
    Ok(Code::Ok)
}
