//! The public API on a store on etcd: `Store::open("etcd://...")` and what
//! differs from an embedded store (revisions with gaps, what does not apply,
//! backups as one revision, the store's identity, compaction).

use std::time::Duration;

use statelog::backup::{RestoreOptions, restore};
use statelog::snapshot::{self, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::testkit::etcd::{Client, Commit, EtcdStore, Layout, Limits, proto};
use statelog::{Error, EtcdOptions, KeyRange, Options, RawValue, Store};

use crate::harness::Cluster;

/// The address of the store under `prefix` on `cluster`.
pub fn address(cluster: &Cluster, prefix: &str) -> String {
    format!("etcd://{}/{prefix}", cluster.endpoints().join(","))
}

pub fn options() -> Options {
    Options::default().etcd(
        EtcdOptions::new()
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(Duration::from_secs(5))
            .failover_timeout(Duration::from_secs(5)),
    )
}

fn open(cluster: &Cluster, prefix: &str) -> Store {
    Store::open(address(cluster, prefix), options()).unwrap()
}

#[test]
fn the_api_on_etcd_gives_embedded_results_with_etcds_revisions() {
    let cluster = Cluster::single();
    let store = open(&cluster, "ci/sync-state");
    assert!(!store.is_holder());
    assert_eq!(
        store.path().to_str().unwrap(),
        address(&cluster, "ci/sync-state")
    );
    assert_eq!(store.id().len(), 32);
    assert_eq!(store.revision(), 0, "no commit yet");
    assert_eq!(store.snapshot().unwrap().revision().unwrap(), 0);

    let first = store.create("tasks", "t1", &"queued").unwrap();
    assert_eq!((first.version, first.changed), (1, true));
    assert_eq!(store.revision(), first.revision);
    let e = store.create("tasks", "t1", &"again").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let second = store
        .compare_and_swap("tasks", "t1", 1, &"running")
        .unwrap();
    assert!(second.revision > first.revision);
    assert_eq!(second.version, 2);
    let read = store.get::<String>("tasks", "t1").unwrap().unwrap();
    assert_eq!(
        (read.value.as_str(), read.version, read.create_revision),
        ("running", 2, first.revision)
    );
    assert_eq!(read.mod_revision, second.revision);

    // Writes to another store on the same cluster move etcd's revision, not
    // this store's.
    let neighbour = open(&cluster, "ci/sync-state-2");
    let elsewhere = neighbour.put("tasks", "t1", &1).unwrap();
    assert!(elsewhere.revision > second.revision);
    assert_eq!(store.revision(), second.revision);
    assert_eq!(neighbour.revision(), elsewhere.revision);

    // Nothing changed, nothing committed: no revision.
    let same = store.put_if_changed("tasks", "t1", &"running").unwrap();
    assert_eq!((same.changed, same.revision), (false, second.revision));
    assert_eq!(store.delete("tasks", "none").unwrap(), None);
    assert_eq!(store.revision(), second.revision);

    // update retries its compare-and-swap; a transaction is one etcd Txn.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let store = store.clone();
            scope.spawn(move || {
                for _ in 0..10 {
                    store
                        .update("counters", "c", |n: Option<u64>| -> statelog::Result<u64> {
                            Ok(n.unwrap_or(0) + 1)
                        })
                        .unwrap();
                }
            });
        }
    });
    let c = store.get::<u64>("counters", "c").unwrap().unwrap();
    assert_eq!((c.value, c.version), (40, 40));
    let before = store.revision();
    let moved = store
        .transaction(|tx| {
            let n: u64 = tx.get("counters", "c")?.map_or(0, |r| r.value);
            tx.put("counters", "c", &(n - 5))?;
            tx.put("counters", "d", &5u64)?;
            tx.delete("tasks", "t1")?;
            Ok::<_, Error>(n)
        })
        .unwrap();
    let revision = moved.revision.unwrap();
    assert!(revision > before);
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.revision().unwrap(), revision);
    assert_eq!(snap.get::<u64>("counters", "d").unwrap().unwrap().value, 5);
    assert_eq!(snap.get::<String>("tasks", "t1").unwrap(), None);

    // A snapshot keeps its revision while others write.
    store.put("counters", "d", &6u64).unwrap();
    store.put("other", "x", &true).unwrap();
    assert_eq!(snap.get::<u64>("counters", "d").unwrap().unwrap().value, 5);
    assert_eq!(snap.namespaces().unwrap(), ["counters"]);
    assert_eq!(store.namespaces().unwrap(), ["counters", "other"]);
    assert!(snap.time().unwrap() <= store.snapshot().unwrap().time().unwrap());

    // The store is found again under its address, with the same id.
    let id = store.id();
    store.close().unwrap();
    let again = Store::open(address(&cluster, "ci/sync-state"), options().create(false)).unwrap();
    assert_eq!(again.id(), id);
    assert_eq!(again.get::<u64>("counters", "d").unwrap().unwrap().value, 6);
    let e = Store::open(address(&cluster, "ci/none"), options().create(false)).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e:?}");
    assert!(e.to_string().contains("statelog init"), "{e}");
}

#[test]
fn listings_page_through_ranges_at_one_revision() {
    let cluster = Cluster::single();
    let store = open(&cluster, "pages");
    for batch in 0..6 {
        store
            .transaction(|tx| {
                for i in 0..100 {
                    let n = batch * 100 + i;
                    tx.put("jobs", &format!("job-{n:05}"), &n)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
    }
    store.put("jobs", "job", &-1).unwrap();
    store.put("jobs2", "x", &0).unwrap();
    store.put("a", "1", &0).unwrap();
    let snap = store.snapshot().unwrap();
    // Changes after the snapshot are not in its listings.
    store.put("jobs", "job-00000", &9999).unwrap();
    store.delete("jobs", "job-00599").unwrap();
    let all: Vec<(String, i64)> = snap
        .list::<i64>("jobs", ..)
        .unwrap()
        .map(|item| item.map(|(k, r)| (k, r.value)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 601);
    assert_eq!(all[0], ("job".to_owned(), -1));
    assert_eq!(all[1], ("job-00000".to_owned(), 0));
    assert_eq!(all[600], ("job-00599".to_owned(), 599));
    let keys = |range: KeyRange| -> Vec<String> {
        snap.list_raw("jobs", range)
            .unwrap()
            .map(|item| item.unwrap().0)
            .collect()
    };
    assert_eq!(keys(KeyRange::prefix("job-0001")).len(), 10);
    assert_eq!(
        keys(("job-00100".."job-00103").into()),
        ["job-00100", "job-00101", "job-00102"]
    );
    assert_eq!(
        keys(("job-00100"..="job-00101").into()),
        ["job-00100", "job-00101"]
    );
    assert_eq!(keys(("job-00598"..).into()), ["job-00598", "job-00599"]);
    assert_eq!(keys((..="job").into()), ["job"]);
    assert_eq!(keys(("b".."a").into()), Vec::<String>::new());
    assert_eq!(snap.count("jobs").unwrap(), 601);
    assert_eq!(snap.count("none").unwrap(), 0);
    assert_eq!(snap.namespaces().unwrap(), ["a", "jobs", "jobs2"]);
    assert_eq!(store.snapshot().unwrap().count("jobs").unwrap(), 600);
}

#[test]
fn what_does_not_apply_to_a_store_on_etcd_says_so() {
    let cluster = Cluster::single();
    let store = open(&cluster, "na");
    let e = store.checkpoint().unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("etcdctl compact"), "{e}");
    let e = store
        .restore_records(5, statelog::Timestamp::EPOCH, vec![])
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("--mode merge"), "{e}");
    // So does a restore-mode import; a merge import into the empty store works.
    let source = crate::common::store_dir();
    let local = Store::open(source.path().join("s"), Options::default()).unwrap();
    local.put("tasks", "a", &1).unwrap();
    local.put("tasks", "b", &"two").unwrap();
    let mut file = Vec::new();
    snapshot::export(&local, &mut file, &ExportOptions::new(Format::JsonLines)).unwrap();
    let e = snapshot::import(
        &store,
        file.as_slice(),
        &ImportOptions::new(Format::JsonLines, ImportMode::Restore),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    let merge = ImportMode::Merge {
        check_versions: false,
        skip_conflicts: false,
    };
    let report = snapshot::import(
        &store,
        file.as_slice(),
        &ImportOptions::new(Format::JsonLines, merge),
    )
    .unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(
        store.get::<String>("tasks", "b").unwrap().unwrap().value,
        "two"
    );
    assert_eq!(store.stats().commits, 1);
    assert_eq!(store.stats().revision, store.revision());
}

#[test]
fn a_commit_over_etcds_limits_is_refused_whole_through_the_api() {
    let cluster = Cluster::single();
    let store = open(&cluster, "limits");
    store.put("ns", "before", &1).unwrap();
    let revision = store.revision();
    let e = store
        .transaction(|tx| {
            for i in 0..200 {
                tx.put("ns", &format!("k{i}"), &i)?;
            }
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }), "{e:?}");
    assert!(e.to_string().contains("--max-txn-ops"), "{e}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    let big = "x".repeat(2 << 20);
    let e = store.put("ns", "big", &big).unwrap_err();
    assert!(e.to_string().contains("--max-request-bytes"), "{e}");
    assert_eq!(store.revision(), revision);
    assert_eq!(store.snapshot().unwrap().count("ns").unwrap(), 1);
    // Told that the cluster allows more, statelog sends it, and etcd refuses
    // it whole, naming the same limit.
    let optimistic = Store::open(
        address(&cluster, "limits"),
        Options::default().etcd(EtcdOptions::new().max_txn_ops(1000)),
    )
    .unwrap();
    let e = optimistic
        .transaction(|tx| {
            for i in 0..200 {
                tx.put("ns", &format!("k{i}"), &i)?;
            }
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(e.to_string().contains("--max-txn-ops"), "{e}");
    assert_eq!(store.revision(), revision);
}

#[test]
fn a_snapshot_whose_revision_was_compacted_says_so() {
    let cluster = Cluster::single();
    let store = open(&cluster, "compacted");
    store.put("ns", "a", &1).unwrap();
    let snap = store.snapshot().unwrap();
    let at = snap.revision().unwrap();
    store.put("ns", "a", &2).unwrap();
    let now = store.put("ns", "b", &3).unwrap().revision;
    cluster.client().compact(now).unwrap();
    let e = snap.get::<i32>("ns", "a").unwrap_err();
    match &e {
        Error::Compacted { requested, .. } => assert_eq!(*requested, at),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(e.to_string().contains(&format!("revision {at}")), "{e}");
    let e = snap
        .list_raw("ns", ..)
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::Compacted { .. }), "{e:?}");
    // A new snapshot reads the current revision.
    let fresh = store.snapshot().unwrap();
    assert_eq!(fresh.get::<i32>("ns", "a").unwrap().unwrap().value, 2);
}

#[test]
fn a_handle_never_writes_into_a_store_created_after_its_own_was_removed() {
    let cluster = Cluster::single();
    let old = open(&cluster, "replaced");
    old.put("ns", "a", &1).unwrap();
    let id = old.id();
    // Someone empties the prefix, and a new store is created there.
    let layout = Layout::new("replaced").unwrap();
    let (start, end) = layout.everything();
    cluster
        .client()
        .delete_range(proto::DeleteRangeRequest {
            key: start,
            range_end: end,
            prev_kv: false,
        })
        .unwrap();
    let new = open(&cluster, "replaced");
    assert_ne!(new.id(), id);
    let e = old.put("ns", "b", &2).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    assert_eq!(new.get::<i32>("ns", "b").unwrap(), None);
    assert_eq!(new.revision(), 0);
}

#[test]
fn a_backup_is_one_revision_and_restores_locally_and_into_etcd() {
    let cluster = Cluster::single();
    let store = open(&cluster, "backed-up");
    for i in 0..30 {
        store.put("jobs", &format!("j{i:02}"), &i).unwrap();
    }
    store.put("jobs", "j00", &100).unwrap();
    store.delete("jobs", "j29").unwrap();
    let dir = crate::common::store_dir();
    let dest = dir.path().join("backup");
    let first = store.backup(&dest).unwrap();
    assert!(first.full);
    assert_eq!(first.revision, store.revision());
    assert_eq!(
        (first.base_revision, first.base_records),
        (first.revision, 29)
    );
    assert_eq!(first.store_id, store.id());

    // Into a local store: exactly as it was, versions and revisions kept.
    let local = dir.path().join("local");
    let report = restore(&dest, &local, &RestoreOptions::new()).unwrap();
    assert_eq!(report.revision, first.revision);
    let copy = Store::open(&local, Options::default().serve(false)).unwrap();
    assert_eq!(copy.revision(), first.revision);
    let (on_etcd, restored) = (
        store.get_raw("jobs", "j00").unwrap().unwrap(),
        copy.get_raw("jobs", "j00").unwrap().unwrap(),
    );
    assert_eq!(on_etcd, restored);
    assert_eq!(restored.version, 2);
    assert_eq!(copy.snapshot().unwrap().count("jobs").unwrap(), 29);
    copy.close().unwrap();

    // A later run is a new base at the new revision, in the same directory.
    store.put("jobs", "late", &1).unwrap();
    let next = store.backup(&dest).unwrap();
    assert!(next.full);
    assert_eq!(next.revision, store.revision());
    let names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("base-"))
        .collect();
    assert_eq!(names.len(), 1, "the old base is removed: {names:?}");

    // Into etcd: the values, as new versions, in one transaction.
    let target = address(&cluster, "restored");
    let options = RestoreOptions::new().store_options(options());
    let report = restore(&dest, &target, &options).unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("versions")),
        "{report:?}"
    );
    let back = open(&cluster, "restored");
    assert_eq!(back.revision(), report.revision);
    assert_eq!(back.get::<i32>("jobs", "j00").unwrap().unwrap().value, 100);
    assert_eq!(back.get::<i32>("jobs", "j00").unwrap().unwrap().version, 1);
    assert_eq!(back.snapshot().unwrap().count("jobs").unwrap(), 30);
    // Not over records, unless asked; then the extra records go too.
    back.put("extra", "x", &1).unwrap();
    let e = restore(&dest, &target, &options).unwrap_err();
    assert!(matches!(e, Error::TargetNotEmpty { .. }), "{e:?}");
    restore(&dest, &target, &options.clone().overwrite(true)).unwrap();
    assert_eq!(back.get::<i32>("extra", "x").unwrap(), None);
    assert_eq!(back.snapshot().unwrap().count("jobs").unwrap(), 30);

    // A backup directory of another store is refused.
    let e = back.backup(&dest).unwrap_err();
    assert!(matches!(e, Error::InvalidBackup { .. }), "{e:?}");
}

#[test]
fn the_raw_mapping_and_the_api_agree() {
    // A record written through the raw mapping reads the same through the
    // public API (the same keys and value bytes).
    let cluster = Cluster::single();
    let store = open(&cluster, "agree");
    let raw = EtcdStore::new(
        Client::new(&cluster.options()).unwrap(),
        Layout::new("agree").unwrap(),
        Limits::default(),
    );
    raw.commit(
        Commit::new()
            .put("ns", "k", RawValue::from_value(&"raw").unwrap(), false)
            .unwrap(),
    )
    .unwrap();
    let read = store.get::<String>("ns", "k").unwrap().unwrap();
    assert_eq!(read.value, "raw");
    assert_eq!(store.revision(), read.mod_revision);
    let via_raw = raw.get("ns", "k", 0).unwrap().unwrap();
    assert_eq!(via_raw.meta(), read.meta());
}

/// An update's metadata comes from the record it replaced: etcd's previous
/// key-value, or the handle's own read of that very write (same modification
/// revision). Either way it is what a read shows afterwards, across another
/// handle's writes, a delete and a re-create.
#[test]
fn an_updates_metadata_is_what_a_read_shows_afterwards() {
    let cluster = Cluster::single();
    let store = open(&cluster, "update-meta");
    let other = open(&cluster, "update-meta");
    let bump = |s: &Store| {
        s.update("n", "k", |n: Option<u64>| -> statelog::Result<u64> {
            Ok(n.unwrap_or(0) + 1)
        })
        .unwrap()
    };
    let check = |updated: statelog::Versioned<u64>| {
        let read = other.get::<u64>("n", "k").unwrap().unwrap();
        assert_eq!(updated.meta(), read.meta(), "value {}", updated.value);
        assert_eq!(updated.value, read.value);
    };
    for _ in 0..3 {
        check(bump(&store));
    }
    // Another handle's write: this handle's last read is not the write its
    // next update replaces.
    other.put("n", "k", &10u64).unwrap();
    check(bump(&store));
    // Deleted and created again: a new create revision, version 1 again.
    let before = store.get::<u64>("n", "k").unwrap().unwrap();
    other.delete("n", "k").unwrap();
    other.put("n", "k", &20u64).unwrap();
    let again = bump(&store);
    assert_ne!(again.create_revision, before.create_revision);
    assert_eq!(again.version, 2);
    check(again);
    // Deleted and created again up to the version this handle last read.
    let before = store.get::<u64>("n", "k").unwrap().unwrap();
    other.delete("n", "k").unwrap();
    for _ in 0..before.version {
        bump(&other);
    }
    let again = bump(&store);
    assert_ne!(again.create_revision, before.create_revision);
    check(again);
}
