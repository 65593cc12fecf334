//! The sync-state scenario of the CI field note, across "runners": four
//! processes, each with a working directory of its own holding the same
//! documents, sync them to a remote document store through one store on
//! etcd. The remote store is a directory that counts uploads; the sync state
//! (per document: its content hash, the remote document id, and whether an
//! upload is under way) lives in the store.
//!
//! A runner claims a document's upload with a compare-and-swap on its
//! sync-state record (hash and `uploading`), uploads, then records the new
//! document id with another compare-and-swap on the version it claimed, and
//! only then deletes the document's previous version from the remote store.
//! Runners that find the same content uploaded (or being uploaded) skip it.
//! Over rounds in which documents change, every content is uploaded exactly
//! once, none is lost, and the remote store ends with one document per file,
//! the latest.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statelog::{Error, Store};

use crate::common;
use crate::harness::Cluster;

const TEST: &str = "sync_state::runners_upload_each_content_once_and_lose_none";
const RUNNERS: usize = 4;
const DOCUMENTS: usize = 12;
const ROUNDS: usize = 4;
const PREFIX: &str = "ci/sync-state";
/// How long anyone waits for a round or a peer's upload.
const WAIT: Duration = Duration::from_secs(60);

/// One document's sync state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Synced {
    /// The content hash uploaded, or being uploaded.
    hash: String,
    /// The remote id of the uploaded content; while `uploading`, of the
    /// previous content (what to delete once the new one is recorded).
    document_id: Option<String>,
    uploading: bool,
    /// The runner that claimed the upload.
    by: String,
}

/// The content of document `d` in round `r`: some documents change each
/// round.
fn content(d: usize, r: usize) -> String {
    let generation = (0..=r)
        .filter(|&r| r == 0 || (d + r).is_multiple_of(3))
        .count();
    format!("document {d}, generation {generation}\n")
}

fn hash(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

#[test]
fn runners_upload_each_content_once_and_lose_none() {
    if let Some((_, arg)) = common::child_role() {
        runner(&arg);
        return;
    }
    let cluster = Cluster::single();
    let dir = common::store_dir();
    let remote = dir.path().join("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let address = crate::store::address(&cluster, PREFIX);
    let mut children = Vec::new();
    for n in 0..RUNNERS {
        let work = dir.path().join(format!("runner-{n}"));
        std::fs::create_dir_all(&work).unwrap();
        let arg = format!(
            "{address}|{}|{}|runner-{n}",
            remote.display(),
            dir.path().display()
        );
        let child = common::child_command(TEST, "runner", &arg)
            .current_dir(&work)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a runner");
        children.push(child);
    }
    for round in 0..ROUNDS {
        // Every runner checks out the round's documents, then all sync at once.
        for n in 0..RUNNERS {
            let work = dir.path().join(format!("runner-{n}"));
            for d in 0..DOCUMENTS {
                std::fs::write(work.join(format!("doc-{d:02}.md")), content(d, round)).unwrap();
            }
        }
        std::fs::write(dir.path().join(format!("go-{round}")), b"").unwrap();
        let deadline = Instant::now() + WAIT;
        while (0..RUNNERS).any(|n| !dir.path().join(format!("done-{round}-{n}")).exists()) {
            assert!(Instant::now() < deadline, "round {round} did not finish");
            for child in &mut children {
                if let Some(status) = child.try_wait().unwrap().filter(|s| !s.success()) {
                    let mut text = String::new();
                    let stderr = child.stderr.as_mut().unwrap();
                    std::io::Read::read_to_string(stderr, &mut text).unwrap();
                    panic!("a runner failed ({status}):\n{text}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for mut child in children {
        let output = {
            let status = child.wait().unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut text).unwrap();
            (status, text)
        };
        assert!(output.0.success(), "a runner failed:\n{}", output.1);
    }

    // Every content of every document was uploaded exactly once.
    let log = std::fs::read_to_string(remote.join("uploads.log")).unwrap();
    let mut uploads: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut deleted = BTreeSet::new();
    for line in log.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["upload", file, h, _id] => {
                *uploads
                    .entry(((*file).to_owned(), (*h).to_owned()))
                    .or_default() += 1
            }
            ["delete", id] => assert!(deleted.insert((*id).to_owned()), "deleted twice: {id}"),
            _ => panic!("a bad log line: {line:?}"),
        }
    }
    let expected: BTreeSet<(String, String)> = (0..DOCUMENTS)
        .flat_map(|d| {
            (0..ROUNDS).map(move |r| (format!("doc-{d:02}.md"), hash(content(d, r).as_bytes())))
        })
        .collect();
    let duplicated: Vec<_> = uploads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "uploaded more than once: {duplicated:?}"
    );
    let uploaded: BTreeSet<_> = uploads.keys().cloned().collect();
    assert_eq!(uploaded, expected, "every content uploaded, nothing else");

    // The remote store holds exactly the latest document of each file, and
    // the sync state names it.
    let store = Store::open(&address, crate::store::options()).unwrap();
    let mut live = BTreeSet::new();
    for entry in std::fs::read_dir(&remote).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "uploads.log" {
            live.insert(name);
        }
    }
    assert_eq!(
        live.len(),
        DOCUMENTS,
        "one remote document per file: {live:?}"
    );
    for d in 0..DOCUMENTS {
        let file = format!("doc-{d:02}.md");
        let state = store.get::<Synced>("docs", &file).unwrap().unwrap().value;
        let latest = content(d, ROUNDS - 1);
        assert!(!state.uploading, "{file}: {state:?}");
        assert_eq!(state.hash, hash(latest.as_bytes()), "{file}");
        let id = state.document_id.expect("a document id");
        assert!(
            live.contains(&id),
            "{file}: {id} is not in the remote store"
        );
        assert_eq!(std::fs::read_to_string(remote.join(&id)).unwrap(), latest);
    }
    println!(
        "{} uploads, {} old versions deleted, store revision {}",
        uploads.len(),
        deleted.len(),
        store.revision()
    );
}

/// One runner: for each round, waits for its documents, syncs them, and says
/// it is done.
fn runner(arg: &str) {
    let parts: Vec<&str> = arg.split('|').collect();
    let [address, remote, shared, me] = parts.as_slice() else {
        panic!("bad argument {arg:?}");
    };
    let (remote, shared) = (Path::new(remote), Path::new(shared));
    let store = Store::open(address, crate::store::options()).expect("open the store");
    let mut uploaded = 0u64;
    for round in 0..ROUNDS {
        let deadline = Instant::now() + WAIT;
        while !shared.join(format!("go-{round}")).exists() {
            assert!(Instant::now() < deadline, "no go for round {round}");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The runner's own checkout: its working directory.
        let mut files: Vec<PathBuf> = std::fs::read_dir(".")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        // All in the same order: the runners race for every document.
        files.sort();
        let n: usize = me.trim_start_matches("runner-").parse().unwrap();
        for file in files {
            if sync_one(&store, remote, &file, me) {
                uploaded += 1;
            }
        }
        std::fs::write(shared.join(format!("done-{round}-{n}")), b"").unwrap();
    }
    eprintln!("{me}: uploaded {uploaded}");
}

/// Syncs one document; true if this runner uploaded it.
fn sync_one(store: &Store, remote: &Path, file: &Path, me: &str) -> bool {
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    let bytes = std::fs::read(file).unwrap();
    let h = hash(&bytes);
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "{name}: stuck");
        let current = store.get::<Synced>("docs", &name).unwrap();
        let (version, previous) = match &current {
            // Uploaded already, or being uploaded by another runner.
            Some(r) if r.value.hash == h && !r.value.uploading => return false,
            Some(r) if r.value.hash == h => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Some(r) if r.value.uploading => {
                panic!("{name}: {} uploads other content meanwhile", r.value.by)
            }
            Some(r) => (r.version, r.value.document_id.clone()),
            None => (0, None),
        };
        let claim = Synced {
            hash: h.clone(),
            document_id: previous.clone(),
            uploading: true,
            by: me.to_owned(),
        };
        let claimed = match store.compare_and_swap("docs", &name, version, &claim) {
            Ok(c) => c,
            Err(Error::Conflict { .. }) => continue,
            Err(e) => panic!("{name}: claim: {e}"),
        };
        let id = upload(remote, &name, &h, &bytes);
        let done = Synced {
            hash: h.clone(),
            document_id: Some(id),
            uploading: false,
            by: me.to_owned(),
        };
        store
            .compare_and_swap("docs", &name, claimed.version, &done)
            .unwrap_or_else(|e| panic!("{name}: record the upload: {e}"));
        if let Some(old) = previous {
            std::fs::remove_file(remote.join(&old)).unwrap();
            log(remote, &format!("delete {old}"));
        }
        return true;
    }
}

/// Uploads to the fake remote store: a new document, logged.
fn upload(remote: &Path, name: &str, h: &str, bytes: &[u8]) -> String {
    let id = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
    std::fs::write(remote.join(&id), bytes).unwrap();
    log(remote, &format!("upload {name} {h} {id}"));
    id
}

/// Appends one line to the upload log (one `write` with `O_APPEND`: lines
/// of concurrent runners never interleave).
fn log(remote: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(remote.join("uploads.log"))
        .unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}
