"""Python get, put and update per second: statelog against what a Python
orchestrator would use instead, in one run on one disk.

- statelog: one ``statelog.Store`` shared by the threads (``get``, ``put``,
  ``update`` with a function that bumps a field; default durability: every
  commit synced before it returns).
- sqlite3 (the standard library): ``journal_mode=WAL``, ``synchronous=FULL``,
  a connection per thread, 30 s busy timeout; a value is a JSON text in
  ``records(key PRIMARY KEY, version, value)``; put is an upsert in
  autocommit, update is ``BEGIN IMMEDIATE``, select, update, commit.
- json-file: the hand-rolled status quo: one JSON object of all records; put
  and update take an exclusive ``fcntl.flock`` on a lock file, read and parse
  the whole file, change one entry, write a temporary file, fsync it and
  rename it over the original; get parses the whole file without the lock
  (the rename is atomic).

Every engine holds RECORDS records of the same small task dict; operations
pick keys at random. Each cell (engine, operation, threads) runs SECS seconds,
REPS times, repetitions interleaved across engines so that a change of load
hits all alike; the table shows median, min and max, and statelog's median
over each peer's. After the update cells, every engine's sum of the bumped
field must equal the number of updates done (no update lost).

Run (from the repository root, with the package installed):

    python python/bench/bench.py            # about 3 minutes
    STATELOG_BENCH_SECS=0.5 STATELOG_BENCH_REPS=1 python python/bench/bench.py

Data goes under target/tmp (the disk of the checkout; /tmp may be a tmpfs) or
STATELOG_BENCH_DIR, and is removed at the end.
"""

import fcntl
import json
import os
import pathlib
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

import statelog

SECS = float(os.environ.get("STATELOG_BENCH_SECS", "2"))
REPS = int(os.environ.get("STATELOG_BENCH_REPS", "3"))
RECORDS = int(os.environ.get("STATELOG_BENCH_RECORDS", "1000"))
THREADS = [1, 8]
OPS = ["get", "put", "update"]


def record(i):
    return {
        "status": "running",
        "progress": 0,
        "host": f"node{i % 16}",
        "artifacts": [f"audio/task_{i}.wav", f"video/task_{i}.mp4"],
    }


def keys():
    return [f"task_{i:06}" for i in range(RECORDS)]


def bump(task):
    task["progress"] += 1
    return task


class Statelog:
    name = "statelog"

    def __init__(self, root):
        self.store = statelog.Store(root / "statelog")
        self.store.transaction(
            lambda tx: [tx.put("tasks", k, record(i)) for i, k in enumerate(keys())]
        )

    def worker(self):
        store = self.store
        return {
            "get": lambda k: store.get("tasks", k).value,
            "put": lambda k: store.put("tasks", k, record(0)),
            "update": lambda k: store.update("tasks", k, bump),
        }

    def commits_and_syncs(self):
        stats = self.store.stats()
        return stats["commits"], stats["batches"]

    def progress_total(self):
        return sum(r.value["progress"] for r in self.store.list("tasks"))

    def reset_progress(self):
        def reset(tx):
            for r in tx.list("tasks"):
                tx.put("tasks", r.key, record(0))

        self.store.transaction(reset)

    def close(self):
        self.store.close()


class Sqlite:
    name = "sqlite3-wal-full"

    def __init__(self, root):
        self.path = str(root / "sqlite.db")
        con = self.connect()
        con.execute(
            "CREATE TABLE records (key TEXT PRIMARY KEY, version INTEGER, value TEXT)"
        )
        with con:
            con.executemany(
                "INSERT INTO records VALUES (?, 1, ?)",
                [(k, json.dumps(record(i))) for i, k in enumerate(keys())],
            )
        con.close()

    def connect(self):
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        return con

    def worker(self):
        con = self.connect()

        def get(k):
            row = con.execute("SELECT value FROM records WHERE key = ?", (k,)).fetchone()
            return json.loads(row[0])

        def put(k):
            con.execute(
                "INSERT INTO records VALUES (?, 1, ?) ON CONFLICT(key) DO UPDATE "
                "SET version = version + 1, value = excluded.value",
                (k, json.dumps(record(0))),
            )

        def update(k):
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute("SELECT value FROM records WHERE key = ?", (k,)).fetchone()
                value = bump(json.loads(row[0]))
                con.execute(
                    "UPDATE records SET version = version + 1, value = ? WHERE key = ?",
                    (json.dumps(value), k),
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

        return {"get": get, "put": put, "update": update}

    def commits_and_syncs(self):
        return None

    def progress_total(self):
        con = self.connect()
        total = sum(json.loads(v)["progress"] for (v,) in con.execute("SELECT value FROM records"))
        con.close()
        return total

    def reset_progress(self):
        con = self.connect()
        with con:
            con.execute("BEGIN")
            con.executemany(
                "UPDATE records SET value = ? WHERE key = ?",
                [(json.dumps(record(0)), k) for k in keys()],
            )
        con.close()

    def close(self):
        pass


class JsonFile:
    name = "json-file-flock"

    def __init__(self, root):
        self.path = root / "state.json"
        self.lock_path = root / "state.json.lock"
        self.lock_path.touch()
        self.write({k: record(i) for i, k in enumerate(keys())}, "init")

    def read(self):
        with open(self.path, "rb") as f:
            return json.load(f)

    def write(self, state, tag):
        temp = self.path.with_name(f"state.json.tmp-{tag}")
        with open(temp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temp, self.path)

    def change(self, lock, tag, key, fn):
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = self.read()
            state[key] = fn(state[key])
            self.write(state, tag)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    def worker(self):
        # Each thread its own descriptor: flock excludes the other threads too.
        lock = open(self.lock_path, "rb")
        tag = f"{os.getpid()}-{threading.get_ident()}"
        return {
            "get": lambda k: self.read()[k],
            "put": lambda k: self.change(lock, tag, k, lambda old: record(0)),
            "update": lambda k: self.change(lock, tag, k, bump),
        }

    def commits_and_syncs(self):
        return None

    def progress_total(self):
        return sum(v["progress"] for v in self.read().values())

    def reset_progress(self):
        self.write({k: record(i) for i, k in enumerate(keys())}, "reset")

    def close(self):
        pass


def run_cell(engine, op, threads):
    """Operations per second of `op` from `threads` threads for SECS."""
    names = keys()
    done = [0] * threads
    workers = [engine.worker()[op] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(i):
        fn = workers[i]
        rng = random.Random(i)
        start.wait()
        n = 0
        while not stop.is_set():
            fn(names[rng.randrange(len(names))])
            n += 1
        done[i] = n

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(SECS)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    return sum(done) / elapsed, sum(done)


def main():
    base = os.environ.get("STATELOG_BENCH_DIR")
    if base is None:
        base = pathlib.Path(__file__).resolve().parents[2] / "target" / "tmp"
    base = pathlib.Path(base)
    base.mkdir(parents=True, exist_ok=True)
    root = pathlib.Path(tempfile.mkdtemp(prefix="python-bench-", dir=base))
    print(
        f"# {RECORDS} records, {SECS} s x {REPS} per cell, Python {sys.version.split()[0]}, "
        f"sqlite {sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        engines = []
        for cls in (Statelog, Sqlite, JsonFile):
            d = root / cls.name
            d.mkdir()
            engines.append(cls(d))
        results = {}
        batches = {}
        lost = {}
        for op in OPS:
            for threads in THREADS:
                if op == "update":
                    for engine in engines:
                        engine.reset_progress()
                updates = {e.name: 0 for e in engines}
                for _ in range(REPS):
                    for engine in engines:
                        before = engine.commits_and_syncs()
                        rate, count = run_cell(engine, op, threads)
                        after = engine.commits_and_syncs()
                        results.setdefault((op, threads, engine.name), []).append(rate)
                        updates[engine.name] += count
                        note = ""
                        if before and after[1] > before[1]:
                            per_sync = (after[0] - before[0]) / (after[1] - before[1])
                            batches.setdefault((op, threads), []).append(per_sync)
                            note = f" ({per_sync:.1f} commits per sync)"
                        print(f"{op} x{threads} {engine.name}: {rate:,.0f}/s{note}", flush=True)
                if op == "update":
                    for engine in engines:
                        total = engine.progress_total()
                        if total != updates[engine.name]:
                            lost[(threads, engine.name)] = (total, updates[engine.name])
        print(f"\nload average at the end {os.getloadavg()[0]:.2f}\n")
        print("| operation | threads | engine | median | min | max | statelog / peer | note |")
        print("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |")
        for op in OPS:
            for threads in THREADS:
                ours = statistics.median(results[(op, threads, "statelog")])
                for engine in engines:
                    rates = results[(op, threads, engine.name)]
                    median = statistics.median(rates)
                    ratio = "" if engine.name == "statelog" else f"{ours / median:.2f}"
                    note = ""
                    if engine.name == "statelog" and (op, threads) in batches:
                        per_sync = statistics.median(batches[(op, threads)])
                        note = f"{per_sync:.1f} commits per sync"
                    print(
                        f"| {op} | {threads} | {engine.name} | {median:,.0f} | "
                        f"{min(rates):,.0f} | {max(rates):,.0f} | {ratio} | {note} |"
                    )
        if lost:
            print(f"\nLOST UPDATES (counted, done): {lost}")
            return 1
        print("\nEvery update counted: no engine lost one.")
        for engine in engines:
            engine.close()
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
