"""Locks (a context manager yielding the fencing token), leases, fenced
writes, patches and idempotency keys: embedded, through another process
holding the store, from threads and processes, and from asyncio."""

import asyncio
import multiprocessing
import threading
import time

import pytest

import statelog
import workers

#: Bounds a wait that would otherwise hang the suite (a liveness check).
PATIENCE = 30


def _until(condition):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


# Locks and leases


def test_a_lock_yields_its_token_and_is_given_back_at_the_end(reached):
    store = reached
    with store.lock("deploy", ttl=5, holder="worker-1") as token:
        (held,) = store.locks()
        assert (held["name"], held["token"], held["holder"]) == ("deploy", token, "worker-1")
        written = store.put("jobs", "deploy", "running", fence=("deploy", token))
    assert store.locks() == [] and store.leases() == []
    # The token is the revision of the commit that granted the lock, and
    # tokens only grow.
    assert 0 < token < written.revision
    with store.lock("deploy") as again:
        assert again > token


def test_a_lock_is_given_back_when_the_block_raises(reached):
    store = reached
    lock = store.lock("deploy")
    with pytest.raises(RuntimeError, match="boom"):
        with lock as token:
            assert lock.token == token
            raise RuntimeError("boom")
    assert store.locks() == [] and lock.token is None


def test_a_held_lock_is_refused_or_waited_for(reached):
    store = reached
    first = store.lock("deploy", holder="first")
    token = first.acquire()
    with pytest.raises(statelog.LockHeldError) as e:
        with store.lock("deploy"):
            pass
    assert (e.value.lock, e.value.token, e.value.holder) == ("deploy", token, "first")
    # Waiting: the first holder lets go meanwhile.
    threading.Timer(0.3, first.release).start()
    with store.lock("deploy", wait=PATIENCE) as second:
        assert second > token


def test_the_lease_is_kept_alive_while_the_block_runs(reached):
    store = reached
    with store.lock("deploy", ttl=0.3) as token:
        time.sleep(1.2)  # four TTLs: only the keep-alives hold the lock
        assert [l["token"] for l in store.locks()] == [token]
        store.put("jobs", "deploy", "still mine", fence=("deploy", token))
        assert not store.lock("deploy").lost


def test_a_write_fenced_by_a_lost_lock_is_refused(reached):
    store = reached
    lease = store.lease(0.2)
    token = lease.lock("deploy")
    store.put("jobs", "deploy", "mine", fence=("deploy", token))
    # Not kept alive: the lease ends, and the lock with it.
    _until(lambda: store.locks() == [])
    with pytest.raises(statelog.FencedError) as e:
        store.put("jobs", "deploy", "too late", fence=[("deploy", token)])
    assert (e.value.lock, e.value.token, e.value.current) == ("deploy", token, None)
    assert store.get("jobs", "deploy").value == "mine"
    with pytest.raises(statelog.LeaseExpiredError) as e:
        lease.keep_alive()
    assert e.value.lease == lease.id


def test_records_written_under_a_lease_end_with_it(reached):
    store = reached
    with store.lease(10, holder="worker-1") as lease:
        store.put("workers", "w1", {"alive": True}, lease=lease)
        store.put("workers", "w2", {"alive": True})
        (info,) = store.leases()
        assert (info["id"], info["holder"], info["bound"]) == (lease.id, "worker-1", 1)
        token = lease.lock("shard-1")
        assert [l["lease"] for l in store.locks()] == [lease.id]
        lease.unlock("shard-1", token)
        assert store.locks() == []
    assert store.get("workers", "w1") is None
    assert store.get("workers", "w2").value == {"alive": True}


def test_async_with_a_lock(path):
    async def main():
        async with statelog.AsyncStore.open(path) as store:
            async with store.lock("deploy", ttl=5) as token:
                held = await store.locks()
                await store.put("jobs", "d", 1, fence=("deploy", token))
            with pytest.raises(RuntimeError):
                async with store.lock("deploy") as again:
                    raise RuntimeError("boom")
            after = await store.locks()
            lease = await store.lease(5)
            await store.put("workers", "w1", 1, lease=lease)
            await lease.revoke()
            return token, again, held, after, await store.get("workers", "w1")

    token, again, held, after, bound = asyncio.run(main())
    assert [l["token"] for l in held] == [token]
    assert again > token and after == [] and bound is None


def test_a_cancelled_async_lock_wait_gives_the_lock_back(path):
    async def main():
        async with statelog.AsyncStore.open(path) as store:
            blocker = store.store.lock("deploy")
            blocker.acquire()
            waiting = asyncio.ensure_future(
                store.lock("deploy", wait=PATIENCE).__aenter__()
            )
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # The take goes on in its thread and gets the lock once free;
            # nobody holds it then, so it is given back: this waits for that.
            blocker.release()
            async with store.lock("deploy", wait=PATIENCE) as token:
                pass
            return token, await store.locks()

    token, locks = asyncio.run(main())
    assert token > 0 and locks == []


# Patches


def test_patch_operations_apply_to_the_value_at_commit(reached):
    store = reached
    store.put("jobs", "j1", {"status": "queued", "hosts": ["node1"], "limits": {"cpu": 1}})
    patch = (
        statelog.Patch()
        .set("status", "running")
        .add("stages_done", 1)
        .add(["limits", "cpu"], 0.5)
        .append("hosts", "node7")
        .append("hosts", "node1", unique=True)
        .merge("limits", {"memory": "2G"})
        .remove("missing")
    )
    record = store.patch("jobs", "j1", patch)
    assert record.value == {
        "status": "running",
        "hosts": ["node1", "node7"],
        "limits": {"cpu": 1.5, "memory": "2G"},
        "stages_done": 1,
    }
    assert record.version == 2 and not record.replayed
    assert store.get("jobs", "j1") == record
    assert store.patch("jobs", "new", statelog.Patch().set(["a", "b"], 1)).value == {
        "a": {"b": 1}
    }
    assert store.patch("jobs", "new", statelog.Patch().remove("a")).value == {}


def test_a_patch_that_cannot_apply_writes_nothing(reached):
    store = reached
    store.put("jobs", "j1", {"status": "queued"})
    with pytest.raises(statelog.PatchFailedError) as e:
        store.incr("jobs", "j1", "status")
    assert (e.value.namespace, e.value.key) == ("jobs", "j1")
    assert "status" in e.value.message
    with pytest.raises(statelog.PatchFailedError):
        store.incr("jobs", "j1", "n", 2**64 - 1)  # the largest integer
        store.incr("jobs", "j1", "n")  # overflows
    record = store.get("jobs", "j1")
    assert record.value == {"status": "queued", "n": 2**64 - 1} and record.version == 2
    with pytest.raises(TypeError):
        statelog.Patch().add("n", "1")
    with pytest.raises(statelog.InvalidOptionError):
        store.incr("jobs", "j1", "n", 2**64)


def test_increments_from_threads_are_never_lost(store):
    threads_n, each = 8, 200
    barrier = threading.Barrier(threads_n)

    def work():
        barrier.wait()
        for _ in range(each):
            store.incr("stats", "totals", ["runs", "count"])

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = store.get("stats", "totals")
    assert record.value == {"runs": {"count": threads_n * each}}
    assert record.version == threads_n * each
    # Patches never conflict: no retry was needed.
    assert store.stats()["conflicts"] == 0


def test_increments_from_processes_through_the_holder_are_never_lost(holder):
    processes, each = 4, 100
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    procs = [
        ctx.Process(target=workers.open_once_and_incr, args=(holder, each, barrier))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * processes
    with statelog.Store(holder) as store:
        record = store.get("stats", "totals")
    assert record.value == {"runs": processes * each}
    assert record.version == processes * each


# Idempotency keys


def test_a_write_retried_with_its_idempotency_key_is_replayed(reached):
    store = reached
    first = store.put("runs", "r1", "done", idempotency_key="run-r1")
    again = store.put("runs", "r1", "done", idempotency_key="run-r1")
    assert not first.replayed and again.replayed
    assert (again.revision, again.version) == (first.revision, first.version)
    assert store.revision == first.revision  # nothing written the second time
    with pytest.raises(statelog.IdempotencyKeyReusedError) as e:
        store.put("runs", "r1", "failed", idempotency_key="run-r1")
    assert (e.value.key, e.value.first) == ("run-r1", first.revision)
    assert store.get("runs", "r1").value == "done"

    counted = store.incr("stats", "deploys", "n", idempotency_key="deploy-42")
    recounted = store.incr("stats", "deploys", "n", idempotency_key="deploy-42")
    assert counted.value == recounted.value == {"n": 1}
    assert recounted.replayed and recounted.version == counted.version

    gone = store.delete("runs", "r1", idempotency_key="drop-r1")
    gone_again = store.delete("runs", "r1", idempotency_key="drop-r1")
    assert gone.version == 1 and gone_again.replayed
    assert gone_again.revision == gone.revision
    assert store.create("runs", "r2", 1, idempotency_key="make-r2").version == 1
    assert store.create("runs", "r2", 1, idempotency_key="make-r2").replayed
    assert store.idempotency_keys() == 4



def test_update_and_transaction_with_a_key_run_their_function_once(reached):
    store = reached
    calls = []

    def bump(old):
        calls.append("update")
        return (old or 0) + 1

    first = store.update("jobs", "n", bump, idempotency_key="step-1")
    again = store.update("jobs", "n", bump, idempotency_key="step-1")
    assert calls == ["update"]  # the key is checked before fn runs
    assert not first.replayed and again.replayed
    assert (again.value, again.version) == (1, first.version)
    assert store.get("jobs", "n").value == 1
    with pytest.raises(statelog.IdempotencyKeyReusedError):
        store.update("jobs", "other", bump, idempotency_key="step-1")
    assert calls == ["update"]

    def move(tx):
        calls.append("tx")
        tx.put("jobs", "t", "done")
        return {"moved": 1, "big": 2**70}

    assert store.transaction(move, idempotency_key="tx-1") == {"moved": 1, "big": 2**70}
    revision = store.revision
    assert store.transaction(move, idempotency_key="tx-1") == {"moved": 1, "big": 2**70}
    assert calls == ["update", "tx"]
    assert store.revision == revision  # the replay wrote nothing

    def unstorable(tx):
        tx.put("jobs", "u", 1)
        return object()

    with pytest.raises(statelog.EncodeError):
        store.transaction(unstorable, idempotency_key="tx-2")
    assert store.get("jobs", "u") is None

def test_async_patch_incr_and_idempotency(path):
    async def main():
        async with statelog.AsyncStore.open(path) as store:
            await asyncio.gather(
                *(store.incr("stats", "totals", "runs") for _ in range(16))
            )
            patched = await store.patch(
                "stats", "totals", statelog.Patch().set("name", "nightly")
            )
            first = await store.put("runs", "r", 1, idempotency_key="k")
            again = await store.put("runs", "r", 1, idempotency_key="k")
            return patched, first, again

    patched, first, again = asyncio.run(main())
    assert patched.value == {"runs": 16, "name": "nightly"}
    assert patched.version == 17
    assert again.replayed and again.revision == first.revision
