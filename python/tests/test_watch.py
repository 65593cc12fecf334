"""Watch: every commit in scope, in order, as an iterator and an async
iterator; closing, Ctrl-C and cancellation end or interrupt a wait without
losing a change. Embedded and through another process holding the store."""

import asyncio
import os
import signal
import threading
import time

import pytest

import statelog

#: Bounds a wait that would otherwise hang the suite (a liveness check, not a
#: performance figure).
PATIENCE = 30


def test_the_iterator_gives_each_commit_in_order_with_previous_values(reached):
    store = reached
    store.put("jobs", "build", "queued")
    store.put("jobs", "build", "done")
    store.delete("jobs", "build")
    with store.watch("jobs", "build", start=1, prev=True) as watcher:
        changes = [next(watcher) for _ in range(3)]
    assert [c.revision for c in changes] == [1, 2, 3]
    first, second, third = (c.events[0] for c in changes)
    assert (first.value, first.prev) == ("queued", None)
    assert (second.value, second.prev.value, second.record.version) == ("done", "queued", 2)
    assert third.deleted and third.value is None and third.record is None
    assert (third.deleted_version, third.prev.value) == (2, "done")
    assert changes[1].time == second.record.updated_at
    assert watcher.closed


def test_each_scope_sees_its_records_and_only_them(reached):
    store = reached
    store.put("jobs", "a1", 1)
    store.put("jobs", "b1", 2)
    store.put("other", "a1", 3)
    store.put("jobs", "a2", 4)
    cases = [
        (dict(), ["jobs/a1", "jobs/b1", "other/a1", "jobs/a2"], ("jobs", "a1")),
        (dict(namespace="jobs"), ["jobs/a1", "jobs/b1", "jobs/a2"], ("jobs", "a1")),
        (dict(namespace="jobs", prefix="a"), ["jobs/a1", "jobs/a2"], ("jobs", "a1")),
        (dict(namespace="jobs", key="a1"), ["jobs/a1"], ("jobs", "a1")),
    ]
    sentinels = []  # jobs/a1 again, in every scope
    for scope, expected, sentinel in cases:
        expected = expected + sentinels
        with store.watch(**scope, start=1) as watcher:
            seen = [
                f"{e.namespace}/{e.key}" for _ in expected for e in next(watcher).events
            ]
            # A write in scope comes next: nothing out of scope slipped in.
            written = store.put(*sentinel, "sentinel")
            following = next(watcher)
        assert seen == expected, scope
        assert following.revision == written.revision, scope
        sentinels.append("jobs/a1")


def test_a_key_or_prefix_needs_its_namespace(store):
    with pytest.raises(statelog.InvalidOptionError):
        store.watch(key="a")
    with pytest.raises(statelog.InvalidOptionError):
        store.watch("jobs", "a", prefix="a")


def test_closing_from_another_thread_ends_a_waiting_iteration(reached):
    watcher = reached.watch("jobs")
    got = []
    waiting = threading.Thread(target=lambda: got.extend(watcher))
    waiting.start()
    time.sleep(0.2)  # let it block in its wait
    watcher.close()
    waiting.join(PATIENCE)
    assert not waiting.is_alive(), "close did not end the waiting iteration"
    assert got == [] and watcher.closed
    with pytest.raises(StopIteration):
        next(watcher)


def test_threads_sharing_a_watcher_each_get_distinct_changes(store):
    watcher = store.watch("jobs")
    got = [[], []]
    threads = [
        threading.Thread(target=lambda mine=mine: mine.extend(c.revision for c in watcher))
        for mine in got
    ]
    for t in threads:
        t.start()
    written = [store.put("jobs", f"k{i}", i).revision for i in range(200)]
    deadline = time.monotonic() + PATIENCE
    while len(got[0]) + len(got[1]) < len(written) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Neither iteration ended before the watcher was closed.
    assert all(t.is_alive() for t in threads)
    watcher.close()
    for t in threads:
        t.join(PATIENCE)
    assert sorted(got[0] + got[1]) == written
    assert got[0] == sorted(got[0]) and got[1] == sorted(got[1])


def test_ctrl_c_interrupts_a_waiting_iteration(store):
    # Python's own handler, also where SIGINT was ignored at start (a
    # background job of a shell).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = store.watch("jobs")
    interrupt = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    # Should the signal never reach the wait, it still ends (and this fails).
    give_up = threading.Timer(PATIENCE, watcher.close)
    interrupt.start()
    give_up.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            next(watcher)
    finally:
        interrupt.cancel()
        give_up.cancel()
        watcher.close()
        signal.signal(signal.SIGINT, previous)


def test_progress_only_when_asked(reached):
    store = reached
    store.put("other", "x", 1)
    with store.watch("jobs", progress=0.3) as watcher:
        progress = next(watcher)
    assert isinstance(progress, statelog.Progress)
    assert progress.revision >= 1
    # Without progress=, the iteration waits for a change (closed here).
    watcher = store.watch("jobs")
    threading.Timer(1.0, watcher.close).start()
    assert list(watcher) == []


def test_a_watcher_that_falls_behind_is_told_where_to_resume(store):
    watcher = store.watch("jobs", buffer=1)
    for i in range(5):
        store.put("jobs", f"k{i}", i)  # one commit each, none consumed
    delivered = []
    with pytest.raises(statelog.WatchCancelledError) as e:
        for change in watcher:
            delivered.append(change.revision)
    assert delivered and delivered == list(range(1, len(delivered) + 1))
    assert e.value.resume_from == delivered[-1] + 1
    # Watching again from there gets the rest.
    with store.watch("jobs", start=e.value.resume_from) as again:
        rest = [next(again).revision for _ in range(5 - len(delivered))]
    assert delivered + rest == [1, 2, 3, 4, 5]


def _watch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("statelog-watch")]


def test_async_for_sees_commits_while_the_loop_runs(path, request):
    async def main():
        async with statelog.AsyncStore.open(path) as store:
            ticks = 0
            seen = []

            async def tick():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            async def consume():
                async for change in store.watch("tasks"):
                    seen.append((change.events[0].key, change.events[0].value))
                    if len(seen) == 3:
                        break

            ticker = asyncio.ensure_future(tick())
            consumer = asyncio.ensure_future(consume())
            await asyncio.sleep(0.1)  # the consumer is waiting now
            before = ticks
            for i in range(3):
                # Written from the same loop: were the watch's wait on it,
                # these would never run.
                await store.put("tasks", f"t{i}", i)
            await asyncio.wait_for(consumer, PATIENCE)
            ticker.cancel()
            return seen, before

    seen, ticks_while_waiting = asyncio.run(main())
    assert seen == [("t0", 0), ("t1", 1), ("t2", 2)]
    assert ticks_while_waiting > 0


@pytest.mark.parametrize("mode", ["embedded", "holder"])
def test_a_cancelled_async_wait_loses_no_change(path, request, mode):
    if mode == "holder":
        request.getfixturevalue("holder")

    async def main():
        async with statelog.AsyncStore.open(path) as store:
            async with store.watch("tasks") as watcher:
                waiting = asyncio.ensure_future(watcher.__anext__())
                await asyncio.sleep(0.1)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                written = await store.put("tasks", "t", "after the cancel")
                change = await asyncio.wait_for(watcher.__anext__(), PATIENCE)
                return written, change

    written, change = asyncio.run(main())
    assert change.revision == written.revision
    assert change.events[0].value == "after the cancel"


def test_closing_an_async_watch_stops_its_thread(path):
    async def main():
        async with statelog.AsyncStore.open(path) as store:
            await store.put("tasks", "t", 1)
            async with store.watch("tasks", start=1) as watcher:
                first = await watcher.__anext__()
                waiting = asyncio.ensure_future(watcher.__anext__())
                await asyncio.sleep(0.1)
            # The block's end closed it: the waiting iteration ends.
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(waiting, PATIENCE)
            return first, watcher

    first, watcher = asyncio.run(main())
    assert first.revision == 1 and watcher.closed
    deadline = time.monotonic() + PATIENCE
    while _watch_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _watch_threads() == [], "the watch's thread still waits"
