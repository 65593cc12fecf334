"""AsyncStore: the pipeline of the video field note (parallel stages of one
task updating its record), and the event loop never waiting for the store."""

import asyncio
import threading

import pytest

import statelog

STAGES = [f"stage{i:02}" for i in range(16)]


def test_sixteen_stages_update_one_task_record(path):
    async def main():
        async with statelog.AsyncStore.open(path) as store:
            await store.put("tasks", "task_123", {"status": "queued", "artifacts": {}})

            async def stage(name):
                await asyncio.sleep(0)  # the stages interleave on the loop

                def finish(task):
                    task["artifacts"][name] = f"{name}/task_123.out"
                    task["progress"] = len(task["artifacts"])
                    return task

                return await store.update("tasks", "task_123", finish)

            written = await asyncio.gather(*(stage(s) for s in STAGES))
            final = await store.get("tasks", "task_123")
            return written, final, await store.stats()

    written, final, stats = asyncio.run(main())
    assert sorted(final.value["artifacts"]) == STAGES
    assert all(final.value["artifacts"][s] == f"{s}/task_123.out" for s in STAGES)
    assert final.value["progress"] == len(STAGES)
    # One version for the put, one per stage: no update lost, none doubled.
    assert final.version == 1 + len(STAGES)
    assert sorted(r.version for r in written) == list(range(2, 2 + len(STAGES)))
    assert stats["commits"] == 1 + len(STAGES)


def test_the_loop_runs_while_a_call_waits(path):
    """Opening waits for another handle's lock; only a coroutine on the same
    loop releases it. Were the open run on the loop, the releasing coroutine
    could not run, and the open would fail with BusyError after 5 s."""
    holder = statelog.Store(path)
    ticks = 0

    async def release_soon():
        nonlocal ticks
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        holder.close()

    async def main():
        releaser = asyncio.ensure_future(release_soon())
        store = await statelog.AsyncStore.open(path, lock_timeout=5)
        await releaser
        await store.put("tasks", "t", 1)
        await store.close()

    asyncio.run(main())
    assert ticks == 20


def test_the_loop_runs_while_an_update_function_waits(store):
    """The update's function runs in a worker thread and waits for the loop to
    send it a value; on the loop itself, it would wait for ever (here: fail
    after 5 s)."""
    handed = threading.Event()

    async def main():
        astore = statelog.AsyncStore(store)

        def wait_for_the_loop(old):
            assert handed.wait(5), "the loop never ran while the update waited"
            return (old or 0) + 1

        async def hand_over():
            await asyncio.sleep(0.05)
            handed.set()

        _, record = await asyncio.gather(
            hand_over(), astore.update("c", "n", wait_for_the_loop)
        )
        return record

    record = asyncio.run(main())
    assert record.value == 1


def test_async_methods(path, tmp_path):
    async def main():
        store = await statelog.AsyncStore.open(path)
        assert (await store.create("tasks", "a", {"n": 1})).version == 1
        assert (await store.put("tasks", "b", {"n": 2})).revision == 2
        assert (await store.compare_and_swap("tasks", "a", 1, {"n": 3})).version == 2
        with pytest.raises(statelog.ConflictError):
            await store.create("tasks", "a", {})
        keys = [r.key async for r in store.list("tasks")]
        assert keys == ["a", "b"]
        many = [store.put("bulk", f"k{i:04}", i) for i in range(600)]
        await asyncio.gather(*many)
        listed = [r.value async for r in store.list("bulk", prefix="k0")]
        assert listed == list(range(600))
        assert await store.count("bulk") == 600
        assert await store.namespaces() == ["bulk", "tasks"]

        def move(tx):
            a = tx.get("tasks", "a").value["n"]
            tx.put("tasks", "b", {"n": a})
            tx.delete("tasks", "a")
            return a

        assert await store.transaction(move) == 3
        assert await store.get("tasks", "a") is None
        assert (await store.delete("tasks", "b")).version == 2
        await store.export(tmp_path / "out.md")
        assert "# " in (tmp_path / "out.md").read_text()
        assert (await store.backup(tmp_path / "backup"))["full"]
        assert await store.revision() == (await store.stats())["revision"]

        async def not_plain(old):
            return old

        with pytest.raises(TypeError, match="plain function"):
            await store.update("tasks", "x", not_plain)
        await store.close()
        assert store.closed
        with pytest.raises(statelog.ClosedError):
            await store.get("tasks", "a")

    asyncio.run(main())
