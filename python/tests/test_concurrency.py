"""No lost update from many threads sharing a Store, nor from many
processes each opening their own."""

import multiprocessing
import os
import threading

import statelog
import workers

THREADS = 8
PROCESSES = 8
INCREMENTS = 500


def test_threads_sharing_one_store_lose_no_update(store):
    barrier = threading.Barrier(THREADS)
    errors = []

    def work():
        try:
            barrier.wait()
            for _ in range(INCREMENTS):
                store.update("counters", "shared", workers.increment)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    record = store.get("counters", "shared")
    assert record.value == THREADS * INCREMENTS
    assert record.version == THREADS * INCREMENTS
    stats = store.stats()
    # Every increment is one commit; the GIL was released while they waited,
    # so commits met in the queue and shared syncs.
    assert stats["commits"] == THREADS * INCREMENTS


def run_processes(path, target):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=target, args=(path, INCREMENTS, barrier))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    with statelog.Store(path) as store:
        record = store.get("counters", "shared")
    assert record.value == PROCESSES * INCREMENTS
    assert record.version == PROCESSES * INCREMENTS


def test_processes_each_opening_the_store_once_lose_no_update(path):
    run_processes(path, workers.open_once_and_update)


def test_processes_opening_it_per_update_lose_no_update(path):
    run_processes(path, workers.open_per_update)
