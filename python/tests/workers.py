"""Functions the process tests run in child processes (importable by name,
as the "spawn" start method needs)."""

import statelog


def increment(old):
    return (old or 0) + 1


def open_once_and_update(path, count, barrier):
    """The final form: one Store for the process's whole life."""
    barrier.wait()
    with statelog.Store(path, lock_timeout=120) as store:
        for _ in range(count):
            store.update("counters", "shared", increment)


def open_per_update(path, count, barrier):
    """Works with today's one-holder lock: open, update, close, each time,
    taking turns with the other processes."""
    barrier.wait()
    for _ in range(count):
        with statelog.Store(path, lock_timeout=120) as store:
            store.update("counters", "shared", increment)


def open_once_and_incr(path, count, barrier):
    """Increments through a patch: never a conflict, never a lost one."""
    barrier.wait()
    with statelog.Store(path, lock_timeout=120) as store:
        for _ in range(count):
            store.incr("stats", "totals", "runs")
