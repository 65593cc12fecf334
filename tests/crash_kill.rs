//! The crash-kill loop: a child process runs random multi-key transactions
//! (puts, deletes, compare-and-swap, transactions over several namespaces) and
//! reports each one to the parent through a pipe: what it is about to commit,
//! then the revision it was acknowledged at. The parent kills it with SIGKILL
//! at a random moment (during its open and recovery, a commit, a checkpoint, a
//! segment rotation), reopens the store and checks:
//!
//! - the store opens, without help;
//! - every acknowledged transaction is in the log at its revision, with exactly
//!   its writes; every other commit in the log is a whole transaction the
//!   child tried (the one in flight), never part of one, and none is there
//!   twice;
//! - replaying the log gives the state the store holds: values, versions,
//!   create and modify revisions, and the store's revision.
//!
//! Variants: plain; a checkpoint every few commits (killed during background
//! checkpoints); tiny segments (killed during rotations); four threads
//! committing at once (group commit); relaxed durability. A fresh store every
//! few cycles, so some kills land in its creation. CI runs 5 x 44 cycles; the
//! ignored `crash_kill_long` runs 5,000. `STATELOG_CRASH_SEED=<n>` fixes the
//! seed (printed by every run; kill timing still varies).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use statelog::testkit::record::LogOp;
use statelog::testkit::{RealFs, log_reader};
use statelog::{CheckpointPolicy, Durability, Error, Options, RawValue, Store};

const NAMESPACES: [&str; 3] = ["jobs", "tasks", "meta"];
const KEYS: usize = 8;
const CYCLES_PER_STORE: u64 = 11;

fn variant_options(variant: &str) -> Options {
    let options = Options::default().lock_timeout(Duration::from_secs(20));
    match variant {
        "checkpoints" => options.checkpoint(
            CheckpointPolicy::default()
                .commits(3)
                .log_bytes(2048)
                .interval(Duration::from_millis(5)),
        ),
        "rotation" => options.segment_size(4096).preallocate(4096),
        "relaxed" => options.durability(Durability::Relaxed {
            max_delay: Duration::from_millis(2),
        }),
        _ => options,
    }
}

fn threads_of(variant: &str) -> usize {
    if variant == "threads" { 4 } else { 1 }
}

/// A write of an intent: namespace, key, and the value (None: delete).
type Write = (String, String, Option<String>);

// ---------------------------------------------------------------------------
// The child.

fn child(arg: &str) {
    let parts: Vec<&str> = arg.split('|').collect();
    let (dir, variant, cycle, seed) = (
        parts[0],
        parts[1],
        parts[2].parse::<u64>().unwrap(),
        parts[3].parse::<u64>().unwrap(),
    );
    let store = Store::open(dir, variant_options(variant)).unwrap();
    std::thread::scope(|scope| {
        for t in 0..threads_of(variant) {
            let store = store.clone();
            scope.spawn(move || child_thread(&store, cycle, t, seed));
        }
    });
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn child_thread(store: &Store, cycle: u64, t: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed ^ (t as u64) << 32);
    for seq in 0..5000u64 {
        let id = format!("c{cycle}-t{t}-{seq}");
        let address = |rng: &mut fastrand::Rng| {
            (
                NAMESPACES[rng.usize(0..NAMESPACES.len())].to_owned(),
                format!("k{}", rng.usize(0..KEYS)),
            )
        };
        let kind = rng.u32(0..10);
        let count = if kind >= 6 { rng.usize(2..6) } else { 1 };
        let mut writes: Vec<Write> = Vec::new();
        let mut seen = BTreeSet::new();
        for i in 0..count {
            let (ns, key) = address(&mut rng);
            if !seen.insert((ns.clone(), key.clone())) {
                continue;
            }
            // Single puts and compare-and-swap write; a single delete deletes;
            // transactions mix both.
            let delete = kind == 4 || (kind >= 6 && rng.u32(0..4) == 0);
            writes.push((ns, key, (!delete).then(|| format!("{id}-{i}"))));
        }
        println!("@@try {id} {}", serde_json::to_string(&writes).unwrap());
        let outcome: Result<Option<u64>, Error> = match kind {
            // A put.
            0..4 => {
                let (ns, key, value) = &writes[0];
                store
                    .put(ns, key, value.as_ref().unwrap())
                    .map(|c| Some(c.revision))
            }
            // A delete.
            4 => {
                let (ns, key, _) = &writes[0];
                store.delete(ns, key).map(|d| d.map(|d| d.revision))
            }
            // Compare-and-swap on the version just read.
            5 => {
                let (ns, key, value) = &writes[0];
                let version = store.get_raw(ns, key).unwrap().map_or(0, |r| r.version);
                store
                    .compare_and_swap(ns, key, version, value.as_ref().unwrap())
                    .map(|c| Some(c.revision))
            }
            // A transaction of several writes.
            _ => store
                .transaction(|tx| {
                    for (ns, key, value) in &writes {
                        match value {
                            Some(v) => tx.put(ns, key, v)?,
                            None => tx.delete(ns, key)?,
                        }
                    }
                    Ok::<_, Error>(())
                })
                .map(|out| out.revision),
        };
        match outcome {
            Ok(Some(revision)) => println!("@@ack {id} {revision}"),
            Ok(None) => println!("@@none {id}"),
            Err(e) if e.is_conflict() => println!("@@fail {id}"),
            Err(e) => panic!("{id}: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The parent.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    value: String,
    version: u64,
    created: u64,
    modified: u64,
}

#[derive(Debug, Default)]
struct Intent {
    writes: Vec<Write>,
    acked: Option<u64>,
    /// Reported as changing nothing or as a conflict: must not be in the log.
    no_commit: bool,
    /// Found in the log.
    logged: Option<u64>,
}

/// What the parent knows about one store.
#[derive(Debug, Default)]
struct Checked {
    state: BTreeMap<(String, String), Rec>,
    revision: u64,
    intents: HashMap<String, Intent>,
}

fn parse_line(line: &str, intents: &mut HashMap<String, Intent>) {
    let mut parts = line.splitn(3, ' ');
    let (Some(tag), Some(id)) = (parts.next(), parts.next()) else {
        return;
    };
    let rest = parts.next();
    match tag {
        "@@try" => {
            let writes: Vec<Write> = serde_json::from_str(rest.unwrap()).unwrap();
            intents.insert(
                id.to_owned(),
                Intent {
                    writes,
                    ..Intent::default()
                },
            );
        }
        "@@ack" => {
            let intent = intents.get_mut(id).expect("an ack follows its try");
            intent.acked = Some(rest.unwrap().parse().unwrap());
        }
        "@@none" | "@@fail" => intents.get_mut(id).expect("follows its try").no_commit = true,
        _ => {}
    }
}

fn decode(value: &[u8]) -> String {
    RawValue::from_msgpack(value.to_vec())
        .and_then(|v| v.decode::<String>())
        .expect("a logged value is a string")
}

/// Checks the log past what was checked before, and the state.
fn check_store(dir: &Path, checked: &mut Checked) -> Result<(), String> {
    let store = Store::open(dir, Options::default()).map_err(|e| format!("reopen: {e}"))?;
    let log = log_reader::read_log(&RealFs, dir).map_err(|e| format!("read the log: {e}"))?;
    if let Some(tail) = &log.damaged_tail {
        return Err(format!(
            "an opened store's log has a damaged tail: {tail:?}"
        ));
    }
    for commit in log.commits.iter().skip(checked.revision as usize) {
        let revision = checked.revision + 1;
        if commit.revision != revision {
            return Err(format!(
                "log revision {} where {revision} was due",
                commit.revision
            ));
        }
        // Which intent is this? A put names it by its value; a commit of
        // deletes only is the acknowledged one at this revision, or one in flight.
        let mut puts = BTreeMap::new();
        let mut deletes = BTreeSet::new();
        for op in &commit.ops {
            match op {
                LogOp::Put(p) => {
                    puts.insert((p.ns.to_string(), p.key.to_string()), decode(&p.value));
                }
                LogOp::Delete(d) => {
                    deletes.insert((d.ns.to_string(), d.key.to_string()));
                }
            }
        }
        // Several threads' transactions can be in flight at a kill, and a
        // commit of deletes carries no value naming its intent: it is one whose
        // effect on the state is exactly these deletes (each of its keys deleted
        // if and only if it exists), the acknowledged one first, then the one
        // with the fewest writes (candidates with equal write sets are
        // interchangeable).
        let id = match puts.values().next() {
            Some(value) => value.rsplit_once('-').map(|(id, _)| id.to_owned()).unwrap(),
            None => checked
                .intents
                .iter()
                .filter(|(_, i)| i.logged.is_none() && !i.no_commit)
                .filter(|(_, i)| i.acked.is_none_or(|a| a == revision))
                .filter(|(_, i)| i.writes.iter().all(|w| w.2.is_none()))
                .filter(|(_, i)| {
                    deletes
                        .iter()
                        .all(|d| i.writes.iter().any(|w| (&w.0, &w.1) == (&d.0, &d.1)))
                })
                .filter(|(_, i)| {
                    i.writes.iter().all(|(ns, key, _)| {
                        let address = (ns.clone(), key.clone());
                        deletes.contains(&address) == checked.state.contains_key(&address)
                    })
                })
                .min_by_key(|(id, i)| (i.acked.is_none(), i.writes.len(), (*id).clone()))
                .map(|(id, _)| id.clone())
                .ok_or_else(|| {
                    format!("revision {revision} deletes {deletes:?}: no such intent")
                })?,
        };
        let intent = checked
            .intents
            .get_mut(&id)
            .ok_or_else(|| format!("revision {revision} is {id}, never tried"))?;
        if intent.no_commit {
            return Err(format!(
                "{id} was reported as not committing, but is at {revision}"
            ));
        }
        if let Some(at) = intent.logged {
            return Err(format!("{id} is in the log twice: at {at} and {revision}"));
        }
        if intent.acked.is_some_and(|a| a != revision) {
            return Err(format!(
                "{id} was acknowledged at {:?}, logged at {revision}",
                intent.acked
            ));
        }
        intent.logged = Some(revision);
        // Exactly its writes: every put, and every delete of a key that existed.
        let want_puts: BTreeMap<_, _> = intent
            .writes
            .iter()
            .filter_map(|(ns, key, v)| v.clone().map(|v| ((ns.clone(), key.clone()), v)))
            .collect();
        if puts != want_puts {
            return Err(format!(
                "{id} at {revision}: puts {puts:?}, intended {want_puts:?}"
            ));
        }
        for (ns, key, value) in &intent.writes {
            let address = (ns.clone(), key.clone());
            if value.is_none() && deletes.contains(&address) != checked.state.contains_key(&address)
            {
                return Err(format!(
                    "{id} at {revision}: the delete of {ns}/{key} does not follow the state"
                ));
            }
        }
        if deletes
            .iter()
            .any(|d| !intent.writes.iter().any(|w| (&w.0, &w.1) == (&d.0, &d.1)))
        {
            return Err(format!(
                "{id} at {revision}: deletes {deletes:?} it never intended"
            ));
        }
        for op in &commit.ops {
            match op {
                LogOp::Put(p) => {
                    let address = (p.ns.to_string(), p.key.to_string());
                    let old = checked.state.get(&address);
                    let version = old.map_or(0, |r| r.version) + 1;
                    let created = old.map_or(revision, |r| r.created);
                    if (p.version, p.created) != (version, created) {
                        return Err(format!(
                            "{id} at {revision}: {address:?} logged as version {} created {}, \
                             expected {version} created {created}",
                            p.version, p.created
                        ));
                    }
                    checked.state.insert(
                        address,
                        Rec {
                            value: decode(&p.value),
                            version,
                            created,
                            modified: revision,
                        },
                    );
                }
                LogOp::Delete(d) => {
                    let address = (d.ns.to_string(), d.key.to_string());
                    let old = checked.state.remove(&address);
                    if old.map(|r| r.version) != Some(d.version) {
                        return Err(format!("{id} at {revision}: a delete of the wrong version"));
                    }
                }
            }
        }
        checked.revision = revision;
    }
    if store.revision() != checked.revision {
        return Err(format!(
            "the store is at {} but its log ends at {}",
            store.revision(),
            checked.revision
        ));
    }
    for (id, intent) in &checked.intents {
        if let Some(acked) = intent.acked
            && intent.logged != Some(acked)
        {
            return Err(format!(
                "{id} was acknowledged at {acked} but is not in the log"
            ));
        }
    }
    let mut actual = BTreeMap::new();
    for ns in store.namespaces().map_err(|e| e.to_string())? {
        for item in store.list::<String>(&ns, ..).map_err(|e| e.to_string())? {
            let (key, r) = item.map_err(|e| e.to_string())?;
            actual.insert(
                (ns.clone(), key),
                Rec {
                    value: r.value,
                    version: r.version,
                    created: r.create_revision,
                    modified: r.mod_revision,
                },
            );
        }
    }
    if actual != checked.state {
        return Err("the store's state differs from its log replayed".to_owned());
    }
    store.close().map_err(|e| format!("close: {e}"))
}

/// Totals of a run.
#[derive(Debug, Default)]
struct Totals {
    cycles: u64,
    /// Commits checked in the log, over all stores.
    commits: u64,
    /// Acknowledged transactions found where they belong.
    acked: u64,
    /// Kills before the child reported anything (during its open or creation).
    early_kills: u64,
    /// Transactions in flight at a kill that made it into the log, whole.
    in_flight_kept: u64,
}

fn crash_kill(test: &str, variants: &[&str], cycles: u64) {
    if let Some((_, arg)) = common::child_role() {
        child(&arg);
        return;
    }
    let seed = std::env::var("STATELOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{test}: STATELOG_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut totals = Totals::default();
    let mut dir = common::store_dir();
    let mut checked = Checked::default();
    for cycle in 0..cycles {
        let variant = variants[(cycle / CYCLES_PER_STORE) as usize % variants.len()];
        if cycle % CYCLES_PER_STORE == 0 {
            dir = common::store_dir();
            checked = Checked::default();
        }
        let path = dir.path().join("store");
        let arg = format!("{}|{variant}|{cycle}|{}", path.display(), rng.u64(..));
        let mut child = common::child_command(test, "crash", &arg)
            // The long variant is ignored by default, in the child too.
            .arg("--include-ignored")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness may have printed the test's name on the
                // same line before the child's first report.
                if let Some(at) = line.find("@@")
                    && tx.send(line[at..].to_owned()).is_err()
                {
                    break;
                }
            }
        });
        // Kill at a random moment: often during its open, mostly while it
        // commits.
        let delay = Duration::from_micros(rng.u64(0..60_000));
        std::thread::sleep(delay);
        child.kill().expect("kill");
        let status = child.wait().expect("wait");
        reader.join().expect("the reader thread");
        let errors = errors.join().expect("the stderr thread");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "cycle {cycle}: the child ended on its own ({status}):\n{errors}"
        );
        let mut reported = 0;
        for line in rx.try_iter() {
            parse_line(&line, &mut checked.intents);
            reported += 1;
        }
        if reported == 0 {
            totals.early_kills += 1;
        }
        let before = checked.revision;
        if let Err(e) = check_store(&path, &mut checked) {
            panic!(
                "{test}, cycle {cycle} (variant {variant}, killed after {delay:?}): {e}\n  \
                 replay: STATELOG_CRASH_SEED={seed} cargo test --test crash_kill {test}"
            );
        }
        totals.commits += checked.revision - before;
        totals.acked += checked
            .intents
            .values()
            .filter(|i| i.acked.is_some_and(|a| a > before))
            .count() as u64;
        totals.in_flight_kept += checked
            .intents
            .values()
            .filter(|i| i.logged.is_some_and(|l| l > before) && i.acked.is_none())
            .count() as u64;
        totals.cycles += 1;
        // Intents of finished cycles are settled: keep only what matters.
        checked
            .intents
            .retain(|_, i| i.logged.is_some() || i.acked.is_some());
    }
    println!(
        "{test}: {} cycles in {:?}: {} commits checked, {} acknowledged transactions found, \
         {} kills before the first report (while opening), {} transactions in flight at a \
         kill found whole in the log",
        totals.cycles,
        start.elapsed(),
        totals.commits,
        totals.acked,
        totals.early_kills,
        totals.in_flight_kept
    );
}

#[test]
fn crash_kill_plain() {
    crash_kill("crash_kill_plain", &["plain"], 44);
}

#[test]
fn crash_kill_during_checkpoints() {
    crash_kill("crash_kill_during_checkpoints", &["checkpoints"], 44);
}

#[test]
fn crash_kill_during_segment_rotation() {
    crash_kill("crash_kill_during_segment_rotation", &["rotation"], 44);
}

#[test]
fn crash_kill_while_threads_commit_at_once() {
    crash_kill("crash_kill_while_threads_commit_at_once", &["threads"], 44);
}

#[test]
fn crash_kill_relaxed() {
    crash_kill("crash_kill_relaxed", &["relaxed"], 44);
}

/// The long run: 5,000 cycles over every variant.
#[test]
#[ignore = "long: run with --ignored (about six minutes)"]
fn crash_kill_long() {
    crash_kill(
        "crash_kill_long",
        &["plain", "checkpoints", "rotation", "threads", "relaxed"],
        5000,
    );
}
