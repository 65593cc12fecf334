"""A store on etcd from Python: ``Store("etcd://HOST:PORT/PREFIX")`` gives
the same API, and what does not apply says so.

Needs an ``etcd`` binary on PATH (Debian's etcd-server). Without one these
tests are skipped, saying so, unless ``STATELOG_REQUIRE_ETCD=1`` (as CI sets
it), which makes a missing etcd fail them."""

import os
import shutil
import socket
import subprocess
import time

import pytest

import statelog


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    """One etcd member on free loopback ports, stopped after the module."""
    binary = shutil.which("etcd")
    if binary is None:
        message = "the etcd tests need an `etcd` binary on PATH (Debian: etcd-server)"
        if os.environ.get("STATELOG_REQUIRE_ETCD") == "1":
            pytest.fail(message)
        pytest.skip(message)
    data = tmp_path_factory.mktemp("etcd")
    client, peer = _free_port(), _free_port()
    log = open(data / "etcd.log", "wb")
    process = subprocess.Popen(
        [
            binary,
            "--name=py",
            f"--data-dir={data / 'member'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=py=http://127.0.0.1:{peer}",
        ],
        stdout=log,
        stderr=log,
    )
    endpoint = f"127.0.0.1:{client}"
    deadline = time.monotonic() + 30
    while True:
        try:
            # Opening creates the store only once etcd answers.
            statelog.Store(f"etcd://{endpoint}/py-ready").close()
            break
        except statelog.StatelogError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.1)
    yield endpoint
    process.kill()
    process.wait()
    log.close()


def test_the_api_on_etcd(etcd):
    with statelog.Store(f"etcd://{etcd}/py/api") as store:
        assert store.revision == 0
        first = store.put("tasks", "t1", {"status": "queued"})
        assert first.version == 1
        assert store.revision == first.revision
        store.update("tasks", "t1", lambda old: {**old, "status": "running"})
        record = store.get("tasks", "t1")
        assert (record.value, record.version) == ({"status": "running"}, 2)
        assert record.create_revision == first.revision
        with pytest.raises(statelog.ConflictError) as e:
            store.compare_and_swap("tasks", "t1", 1, {})
        assert (e.value.expected, e.value.actual) == (1, 2)

        def move(tx):
            tx.put("tasks", "t2", 1)
            tx.delete("tasks", "t1")

        store.transaction(move)
        assert [r.key for r in store.list("tasks")] == ["t2"]
        assert store.namespaces() == ["tasks"]


def test_what_does_not_apply_says_so(etcd):
    with statelog.Store(f"etcd://{etcd}/py/na") as store:
        with pytest.raises(statelog.UnsupportedError) as e:
            store.checkpoint()
        assert "etcd" in str(e.value) and e.value.what
        with pytest.raises(statelog.LimitExceededError) as e:
            store.put("big", "v", "x" * (2 << 20))
        assert e.value.limit == "--max-request-bytes"
        assert store.revision == 0


def test_watch_locks_leases_patches_and_keys_on_etcd(etcd):
    with statelog.Store(f"etcd://{etcd}/py/coord") as store:
        watcher = store.watch("jobs")
        # Patches: evaluated against the record as etcd has it.
        store.put("jobs", "j", {"runs": 1})
        patched = store.patch("jobs", "j", statelog.Patch().add("runs", 2).set("state", "ok"))
        assert patched.value == {"runs": 3, "state": "ok"}
        counted = store.incr("jobs", "j", "runs")
        assert counted.value["runs"] == 4 and counted.version == 3

        # The watch saw the three commits of its namespace, in order.
        seen = []
        for change in watcher:
            seen.extend(event.value for event in change.events)
            if len(seen) == 3:
                break
        watcher.close()
        assert [v["runs"] for v in seen] == [1, 3, 4]

        # Idempotency keys: the same request replays, a different one is refused.
        first = store.put("runs", "r", 1, idempotency_key="py-k")
        again = store.put("runs", "r", 1, idempotency_key="py-k")
        assert again.replayed and again.revision == first.revision
        with pytest.raises(statelog.IdempotencyKeyReusedError):
            store.put("runs", "r", 2, idempotency_key="py-k")
        assert store.get("runs", "r").version == 1

        # Locks: tokens grow, a stale token is fenced off.
        with store.lock("deploy", ttl=10) as token:
            store.put("deploy", "state", "a", fence=("deploy", token))
        with store.lock("deploy", ttl=10) as later:
            assert later > token
            with pytest.raises(statelog.FencedError):
                store.put("deploy", "state", "b", fence=("deploy", token))
        assert store.get("deploy", "state").value == "a"

        # A record bound to a lease goes with it.
        lease = store.lease(10)
        store.put("workers", "w1", "alive", lease=lease)
        lease.revoke()
        assert store.get("workers", "w1") is None
