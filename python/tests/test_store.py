"""The Store's API: what each method writes, returns and refuses."""

import datetime
import threading

import pytest

import statelog


def test_put_get_and_metadata(store):
    assert store.get("tasks", "t1") is None
    before = datetime.datetime.now(datetime.timezone.utc)
    c = store.put("tasks", "t1", {"status": "queued"})
    assert (c.revision, c.version, c.changed) == (1, 1, True)
    c = store.put("tasks", "t1", {"status": "running"})
    assert (c.revision, c.version) == (2, 2)
    r = store.get("tasks", "t1")
    assert (r.namespace, r.key, r.value) == ("tasks", "t1", {"status": "running"})
    assert (r.version, r.create_revision, r.mod_revision) == (2, 1, 2)
    assert r.updated_at.tzinfo is not None
    assert before - datetime.timedelta(seconds=5) <= r.updated_at
    assert r == store.get("tasks", "t1")
    assert store.revision == 2
    unchanged = store.put("tasks", "t1", {"status": "running"}, if_changed=True)
    assert (unchanged.changed, unchanged.version, unchanged.revision) == (False, 2, 2)
    assert store.revision == 2


def test_create_compare_and_swap_delete(store):
    assert store.create("tasks", "t", 1).version == 1
    assert store.compare_and_swap("tasks", "t", 1, 2).version == 2
    assert store.compare_and_swap("tasks", "new", 0, "x").version == 1
    assert store.delete("tasks", "missing") is None
    deleted = store.delete("tasks", "t", if_version=2)
    assert (deleted.version, deleted.revision) == (2, 4)
    assert store.get("tasks", "t") is None
    # Re-created records start again at version 1.
    assert store.create("tasks", "t", 3).version == 1


def test_update_sees_the_old_value_and_retries(store):
    seen = []

    def bump(old):
        seen.append(old)
        return {"n": (old or {"n": 0})["n"] + 1}

    assert store.update("c", "k", bump).value == {"n": 1}
    assert store.update("c", "k", bump).version == 2
    assert seen == [None, {"n": 1}]

    # A writer sneaking in between the read and the commit: fn runs again on
    # the new value, and nothing is lost.
    calls = []

    def racing(old):
        calls.append(old)
        if len(calls) == 1:
            store.put("c", "k", {"n": 100})
        return {"n": old["n"] + 1}

    r = store.update("c", "k", racing)
    assert [c["n"] for c in calls] == [2, 100]
    assert (r.value, r.version) == ({"n": 101}, 4)
    assert store.stats()["retries"] >= 1


def test_transaction_is_all_or_nothing_and_reruns(store):
    store.put("accounts", "a", 10)

    def move(tx):
        a = tx.get("accounts", "a").value
        b = tx.get("accounts", "b")
        tx.put("accounts", "a", a - 3)
        tx.put("accounts", "b", (b.value if b else 0) + 3)
        # The transaction reads its own writes.
        assert tx.get("accounts", "a").value == a - 3
        return "moved"

    assert store.transaction(move) == "moved"
    assert store.get("accounts", "a").value == 7
    assert store.get("accounts", "b").value == 3
    assert store.get("accounts", "a").mod_revision == store.get("accounts", "b").mod_revision

    runs = []

    def contended(tx):
        runs.append(tx.revision)
        a = tx.get("accounts", "a").value
        if len(runs) == 1:
            store.put("accounts", "a", 1000)  # a conflict: the function runs again
        tx.put("accounts", "a", a + 1)

    store.transaction(contended)
    assert len(runs) == 2 and runs[1] > runs[0]
    assert store.get("accounts", "a").value == 1001

    def only_reads(tx):
        return tx.get("accounts", "a").value

    revision = store.revision
    assert store.transaction(only_reads) == 1001
    assert store.revision == revision



def test_transaction_preconditions(path):
    with statelog.Store(path, max_attempts=2) as store:
        store.put("accounts", "a", 1)
        store.put("accounts", "a", 2)

        def conditional(tx):
            tx.expect_version("accounts", "a", 1)  # it is at 2
            tx.create("accounts", "c", 1)

        with pytest.raises(statelog.ConflictError) as e:
            store.transaction(conditional)
        assert (e.value.key, e.value.expected, e.value.actual) == ("a", 1, 2)
        assert store.get("accounts", "c") is None

        def swap(tx):
            tx.compare_and_swap("accounts", "a", 2, 3)
            tx.delete("accounts", "missing")

        store.transaction(swap)
        assert store.get("accounts", "a").value == 3


def test_transaction_handle_is_valid_only_inside(store):
    kept = []
    store.transaction(lambda tx: kept.append(tx))
    with pytest.raises(RuntimeError, match="has ended"):
        kept[0].get("tasks", "t")


def test_list_count_and_namespaces(store):
    for key in ["a1", "a2", "b1", "b2", "c"]:
        store.put("items", key, key.upper())
    store.put("other", "x", 0)
    assert [r.key for r in store.list("items")] == ["a1", "a2", "b1", "b2", "c"]
    assert [r.value for r in store.list("items", prefix="b")] == ["B1", "B2"]
    assert [r.key for r in store.list("items", start="a2", end="c")] == ["a2", "b1", "b2"]
    assert store.count("items") == 5
    assert store.namespaces() == ["items", "other"]
    with pytest.raises(statelog.InvalidOptionError):
        store.list("items", prefix="a", start="b")
    # One snapshot: writes after the iterator started are not in it.
    items = store.list("items")
    first = next(items)
    store.put("items", "d", "D")
    assert first.key == "a1" and [r.key for r in items][-1] == "c"


def test_export_import_backup_restore(store, tmp_path):
    store.put("tasks", "t1", {"status": "done", "progress": 100})
    store.put("tasks", "t2", {"status": "queued", "progress": 0})
    report = store.export(tmp_path / "STATE.md")
    assert (report["format"], report["records"]) == ("md", 2)
    text = (tmp_path / "STATE.md").read_text()
    assert "## tasks" in text and "### t1" in text
    assert store.export_text(format="jsonl").count("\n") == 4

    with statelog.Store(tmp_path / "copy") as copy:
        report = copy.import_(tmp_path / "STATE.md", mode="restore")
        assert report["applied"] and report["revision"] == 2
        assert copy.get("tasks", "t2") == store.get("tasks", "t2")

    # A merge that checks versions reports what is stale and writes nothing.
    snapshot = store.export_text()
    store.put("tasks", "t1", {"status": "reopened"})
    report = store.import_text(snapshot, check_versions=True)
    assert not report["applied"]
    assert report["conflicts"] == [
        {"namespace": "tasks", "key": "t1", "expected": 1, "actual": 2}
    ]

    backup = tmp_path / "backup"
    first = store.backup(backup)
    assert first["full"] and first["revision"] == 3
    store.put("tasks", "t3", {})
    second = store.backup(backup)
    assert not second["full"] and second["revision"] == 4
    restored = statelog.restore(backup, tmp_path / "at-3", to_revision=3)
    assert restored["revision"] == 3
    with statelog.Store(tmp_path / "at-3") as old:
        assert old.get("tasks", "t3") is None
        assert old.get("tasks", "t1").value == {"status": "reopened"}
    at = store.get("tasks", "t3").updated_at
    restored = statelog.restore(backup, tmp_path / "before-t3", to_time=at)
    assert restored["revision"] == 3


def test_import_legacy(store, tmp_path):
    legacy = tmp_path / "sync_state.json"
    legacy.write_text('{"www.Example.com": {"hash": "a"}, "docs.site.org": {"hash": "b"}}')
    report = store.import_legacy(
        legacy, "sync", normalize=["lower", "strip-www", "dots-to-hyphens"]
    )
    assert report["applied"] and report["records"] == 2
    assert store.get("sync", "example-com").value == {"hash": "a"}


def test_stats_checkpoint_and_reopen(path):
    with statelog.Store(path) as store:
        store.put("tasks", "t", 1)
        store.checkpoint()
        stats = store.stats()
        assert stats["checkpoint_revision"] == 1 and stats["commits"] == 1
        store_id = store.id
    with statelog.Store(path) as store:
        assert store.id == store_id and len(store_id) == 32
        assert store.stats()["replayed_on_open"] == 0
        assert store.get("tasks", "t").value == 1


def test_relaxed_durability(path):
    with statelog.Store(path, durability="relaxed", max_delay=0.005) as store:
        store.put("tasks", "t", 1)
    with statelog.Store(path) as store:
        assert store.get("tasks", "t").value == 1


def test_one_store_shared_by_threads_reads_while_writing(store):
    store.put("c", "n", 0)
    stop = threading.Event()
    seen = []

    def reader():
        while not stop.is_set():
            seen.append(store.get("c", "n").value)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(1, 51):
        store.put("c", "n", i)
    stop.set()
    t.join()
    assert seen == sorted(seen)  # readers never go back in time
    assert store.get("c", "n").value == 50


def test_nested_updates_do_not_wait_for_themselves(path):
    with statelog.Store(path, max_attempts=3) as store:

        def outer(old):
            store.update("c", "other", lambda o: (o or 0) + 1)
            return (old or 0) + 1

        assert store.update("c", "k", outer).value == 1

        def same_key(old):
            # Commits under the outer update's feet: the outer one conflicts
            # every time and gives up, but nothing waits for ever.
            store.update("c", "k", lambda o: (o or 0) + 10)
            return -1

        with pytest.raises(statelog.ConflictError):
            store.update("c", "k", same_key)
        assert store.get("c", "k").value == 31
