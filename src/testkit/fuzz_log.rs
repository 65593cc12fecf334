//! The bodies of the fuzz targets for the log: the record decoder, segment
//! scanning, and recovery of a whole store from a damaged log directory. Like
//! those in [`fuzz`](super::fuzz), each takes arbitrary bytes and panics only
//! when an invariant is broken; `cargo fuzz` runs them, and the ordinary test
//! suite replays their corpora.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::sim::{Loss, SimFs};
use crate::counter::{MAX_REVISION, MAX_VERSION};
use crate::fs::{Fs, OpenMode};
use crate::log::catalog;
use crate::log::reader::{self, Position, Tail};
use crate::log::record;
use crate::log::segment::{LOG_FORMAT_VERSION, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::options::{CheckpointPolicy, Options};
use crate::store::Store;

/// Decodes arbitrary bytes as a log record. Never panics; a record that decodes
/// encodes to bytes that decode to the same record, and checking it never
/// panics; a record that passes the check has no counter beyond its ceiling.
pub fn record_decode(data: &[u8]) {
    let Ok(decoded) = record::decode(data) else {
        return;
    };
    if decoded.check().is_ok() {
        assert!(
            decoded.revision <= MAX_REVISION,
            "a revision beyond the ceiling"
        );
        for op in &decoded.ops {
            let version = match op {
                record::LogOp::Put(p) => p.version,
                record::LogOp::Delete(d) => d.version,
            };
            assert!(version <= MAX_VERSION, "a version beyond the ceiling");
        }
    }
    let mut again = Vec::new();
    record::encode_into(&decoded, &mut again).expect("a decoded record encodes");
    let back = record::decode(&again).expect("an encoded record decodes");
    assert_eq!(back, decoded, "decode/encode round trip");
}

const SCAN_STORE_ID: [u8; 16] = *b"fuzz-scan-store!";

/// Reads arbitrary bytes as the only segment of a log, through the whole
/// commit reader (frames, records, revision checks, the tail). The first byte
/// chooses whether a valid segment header is put in front (so most inputs reach
/// the frames) or the input is the file as it is. Never panics and always ends;
/// what it reports is self-consistent: commits in revision order, positions
/// inside the file, the tail after the last commit.
pub fn segment_scan(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = Vec::new();
    if mode & 1 == 0 {
        let header = SegmentHeader {
            format: LOG_FORMAT_VERSION,
            store_id: SCAN_STORE_ID,
            first_revision: 1,
            previous: 0,
            step: 0,
        };
        file.extend_from_slice(&header.encode());
    }
    file.extend_from_slice(rest);
    let fs = SimFs::new();
    let dir = Path::new("/log");
    let path = dir.join(crate::log::segment::file_name(1));
    fs.create_dir_all(dir)
        .expect("the simulated file system is on");
    fs.write_file(&path, &file)
        .expect("the simulated file system is on");
    let first = scan_once(&fs, dir, file.len() as u64);
    let second = scan_once(&fs, dir, file.len() as u64);
    assert_eq!(first, second, "scanning the same bytes twice differs");
}

fn scan_once(fs: &SimFs, dir: &Path, len: u64) -> Option<(Vec<(u64, u64)>, String)> {
    let segments = catalog::list(fs, dir, &SCAN_STORE_ID).ok()?;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let result = reader::read_commits(
        fs,
        &segments,
        Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN as u64,
        },
        0,
        |parts, end| {
            let head = parts.first().expect("a commit has at least one part");
            assert!(parts.iter().all(|p| p.revision == head.revision));
            assert!(parts.iter().all(|p| p.check().is_ok()));
            assert!(
                !parts.last().is_some_and(|p| p.more),
                "the last part says more"
            );
            if let Some((previous, previous_end)) = seen.last() {
                assert_eq!(head.revision, previous + 1, "revisions out of order");
                assert!(end.offset > *previous_end);
            }
            assert!(end.offset <= len);
            seen.push((head.revision, end.offset));
            Ok(true)
        },
    );
    let outcome = match result {
        Ok(end) => {
            assert_eq!(end.last_revision, seen.last().map_or(0, |s| s.0));
            if let Tail::Damaged { at, damage_at, .. } = &end.tail {
                assert!(at <= damage_at && *damage_at <= len);
                assert_eq!(
                    *at, end.end.offset,
                    "the damage starts after the last commit"
                );
                let file = fs
                    .open(&dir.join(crate::log::segment::file_name(1)), OpenMode::Read)
                    .expect("the segment opens");
                let found = reader::find_frame_after(
                    file.as_ref(),
                    dir,
                    *damage_at,
                    len,
                    end.last_revision + 1,
                )
                .expect("the segment reads");
                assert!(found.is_none_or(|at| at > *damage_at && at < len));
            }
            format!("{:?}", end.tail)
        }
        Err(e) => e.to_string(),
    };
    Some((seen, outcome))
}

/// A prepared store for [`recovery`]: commits over several segments, the last
/// of them past the last checkpoint, left as a crash leaves them.
struct Template {
    fs: SimFs,
    /// The state at every revision.
    history: Vec<BTreeMap<(String, String), (i64, u64)>>,
    checkpoint: u64,
}

const RECOVERY_STORE: &str = "/fuzz/store";

fn recovery_options(fs: &SimFs) -> Options {
    Options::default()
        .file_system(Arc::new(fs.clone()))
        .segment_size(4096)
        .preallocate(0)
        .cache_size(1 << 20)
        .lock_timeout(Duration::ZERO)
        .checkpoint(CheckpointPolicy::manual())
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let fs = SimFs::new();
        let store =
            Store::open(RECOVERY_STORE, recovery_options(&fs)).expect("create the template store");
        let mut history = vec![BTreeMap::new()];
        let mut state: BTreeMap<(String, String), (i64, u64)> = BTreeMap::new();
        let mut checkpoint = 0;
        for i in 0..40i64 {
            let ns = ["jobs", "tasks"][(i % 2) as usize];
            let key = format!("k{}", i % 5);
            let address = (ns.to_owned(), key.clone());
            if i % 7 == 6 && state.contains_key(&address) {
                store.delete(ns, &key).expect("template delete");
                state.remove(&address);
            } else {
                let value = i * 1000 + (i % 3);
                let text = "x".repeat((i as usize * 37) % 300);
                store
                    .transaction(|tx| {
                        tx.put(ns, &key, &value)?;
                        tx.put("meta", &format!("note{}", i % 3), &text.len())?;
                        Ok::<_, crate::Error>(())
                    })
                    .expect("template transaction");
                let version = state.get(&address).map_or(0, |v| v.1) + 1;
                state.insert(address, (value, version));
                let note = ("meta".to_owned(), format!("note{}", i % 3));
                let version = state.get(&note).map_or(0, |v| v.1) + 1;
                state.insert(note, (text.len() as i64, version));
            }
            history.push(state.clone());
            if i == 15 {
                store.checkpoint().expect("template checkpoint");
                checkpoint = history.len() as u64 - 1;
            }
        }
        // Crash: no close, nothing lost.
        let fs = fs.restart(Loss::Nothing);
        drop(store);
        Template {
            fs,
            history,
            checkpoint,
        }
    })
}

/// Reads fuzz input as a few bytes at a time.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<usize> {
        Some(usize::from(self.byte()?) << 8 | usize::from(self.byte()?))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn segment_files(fs: &SimFs) -> Vec<PathBuf> {
    fs.files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

/// Damages the log directory of a prepared store (40 commits over several
/// segments, the last 24 past the last checkpoint) as the input says: bit
/// flips, overwrites, truncations, zeroed ranges, appended bytes, removed,
/// copied or added segments. Then opens the store. The open must end with a
/// clean error, or with a consistent store: exactly the prepared state at some
/// revision no older than the checkpoint, which takes a new commit and keeps it
/// across a reopen. Never a panic or a hang.
pub fn recovery(data: &[u8]) {
    let template = template();
    let fs = template.fs.duplicate();
    let mut input = Input(data);
    for _ in 0..16 {
        let Some(op) = input.byte() else { break };
        let segments = segment_files(&fs);
        let Some(which) = input.byte() else { break };
        let Some(path) = segments
            .get(usize::from(which) % segments.len().max(1))
            .cloned()
        else {
            break;
        };
        let mut bytes = fs.read_file(&path).unwrap_or_default();
        let len = bytes.len();
        match op % 8 {
            0 => {
                let (Some(at), Some(bit)) = (input.u16(), input.byte()) else {
                    break;
                };
                if len > 0 {
                    bytes[at % len] ^= 1 << (bit % 8);
                }
            }
            1 => {
                let Some(at) = input.u16() else { break };
                let n = usize::from(input.byte().unwrap_or(0) % 32);
                let new = input.bytes(n).to_vec();
                let at = at % (len + 1);
                let end = (at + new.len()).min(len);
                bytes.splice(at..end, new);
            }
            2 => {
                let Some(at) = input.u16() else { break };
                bytes.truncate(at % (len + 1));
            }
            3 => {
                let (Some(at), Some(n)) = (input.u16(), input.u16()) else {
                    break;
                };
                let at = at % (len + 1);
                let end = (at + n).min(len);
                bytes[at..end].fill(0);
            }
            4 => {
                let _ = fs.remove_file_durably(&path);
                continue;
            }
            5 => {
                let n = usize::from(input.byte().unwrap_or(0));
                bytes.extend_from_slice(input.bytes(n));
            }
            6 => {
                let Some(other) = input.byte() else { break };
                let source = &segments[usize::from(other) % segments.len()];
                bytes = fs.read_file(source).unwrap_or_default();
            }
            _ => {
                let Some(first) = input.byte() else { break };
                let name = crate::log::segment::file_name(u64::from(first));
                let target = path.with_file_name(name);
                let _ = fs.write_file(&target, &bytes);
                continue;
            }
        }
        let _ = fs.write_file(&path, &bytes);
    }
    check_recovered(&fs, template);
}

fn check_recovered(fs: &SimFs, template: &Template) {
    let Ok(store) = Store::open(RECOVERY_STORE, recovery_options(fs)) else {
        return;
    };
    let revision = store.revision();
    assert!(
        revision >= template.checkpoint,
        "opened at revision {revision}, before the checkpoint at {}",
        template.checkpoint
    );
    let expected = template
        .history
        .get(revision as usize)
        .unwrap_or_else(|| panic!("opened at revision {revision}, which never existed"));
    assert_eq!(
        &read_all(&store),
        expected,
        "the state at revision {revision}"
    );
    let next = store
        .put("jobs", "after", &1)
        .expect("a recovered store takes commits");
    assert_eq!(next.revision, revision + 1);
    store.close().expect("close");
    let again = Store::open(RECOVERY_STORE, recovery_options(fs)).expect("reopen");
    assert_eq!(again.revision(), revision + 1);
    again.close().expect("close");
}

fn read_all(store: &Store) -> BTreeMap<(String, String), (i64, u64)> {
    let mut out = BTreeMap::new();
    for ns in store.namespaces().expect("namespaces") {
        for item in store.list::<i64>(&ns, ..).expect("list") {
            let (key, record) = item.expect("a record");
            out.insert((ns.clone(), key), (record.value, record.version));
        }
    }
    out
}
