//! `statelog locks`: the locks held and the leases, with their holder and
//! age. `--json` prints `{"locks": [{"name", "token", "lease", "holder",
//! "since", "age"}], "leases": [{"id", "ttl", "remaining", "holder", "since",
//! "age", "locks", "bound"}]}` (durations in milliseconds; `remaining` is the
//! holder's clock, null once the lease's time is up).

use serde::Serialize;
use statelog::{Shown, Timestamp};

use crate::context::{Access, Ctx};
use crate::exit::Code;

pub const EXAMPLES: &str = r#"Examples:
  statelog locks
  statelog --json locks | jq -r '.locks[] | "\(.name) \(.holder)"'"#;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct LockDoc {
    name: String,
    token: u64,
    lease: String,
    holder: String,
    since: String,
    age: u64,
}

#[derive(Serialize)]
struct LeaseDoc {
    id: String,
    ttl: u64,
    remaining: Option<u64>,
    holder: String,
    since: String,
    age: u64,
    locks: Vec<String>,
    bound: usize,
}

#[derive(Serialize)]
struct LocksDoc {
    locks: Vec<LockDoc>,
    leases: Vec<LeaseDoc>,
}

fn age(since: Timestamp) -> u64 {
    let now = Timestamp::now().as_micros();
    u64::try_from(now.saturating_sub(since.as_micros()) / 1000).unwrap_or(0)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<Code> {
    let (locks, leases) = ctx.with_store(Access::Records, |store| {
        Ok((store.locks()?, store.leases()?))
    })?;
    let doc = LocksDoc {
        locks: locks
            .into_iter()
            .map(|l| LockDoc {
                age: age(l.since),
                since: l.since.to_string(),
                name: l.name,
                token: l.token,
                lease: format!("{:016x}", l.lease),
                holder: l.holder,
            })
            .collect(),
        leases: leases
            .into_iter()
            .map(|l| LeaseDoc {
                id: format!("{:016x}", l.id),
                ttl: millis(l.ttl),
                remaining: l.remaining.map(millis),
                age: age(l.since),
                since: l.since.to_string(),
                holder: l.holder,
                locks: l.locks,
                bound: l.bound,
            })
            .collect(),
    };
    if ctx.json {
        ctx.print_json(&doc)?;
        return Ok(Code::Ok);
    }
    let mut out = String::new();
    if doc.locks.is_empty() {
        out.push_str("no locks are held\n");
    }
    for l in &doc.locks {
        out.push_str(&format!(
            "lock {}: token {}, held by {} for {} (lease {})\n",
            Shown::new(&l.name),
            l.token,
            Shown::new(&l.holder),
            seconds(l.age),
            l.lease
        ));
    }
    for l in &doc.leases {
        let left = l
            .remaining
            .map_or_else(|| "ending".to_owned(), |r| format!("{} left", seconds(r)));
        out.push_str(&format!(
            "lease {}: ttl {}, {left}, taken by {} {} ago, {} lock(s), {} bound record(s)\n",
            l.id,
            seconds(l.ttl),
            Shown::new(&l.holder),
            seconds(l.age),
            l.locks.len(),
            l.bound
        ));
    }
    ctx.print(out.trim_end())?;
    Ok(Code::Ok)
}
