"""A Store does not cross a fork: the child's calls are refused with
ForkError, and the child can open a store of its own."""

import os

import pytest

import statelog


# Python 3.12+ warns that forking a process with threads (the store's own) may
# deadlock the child; these children only touch what the test controls.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_use_after_fork_is_refused(store, tmp_path):
    store.put("tasks", "t", 1)
    items = store.list("tasks")
    own = str(tmp_path / "child-store")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        # The child: report what happened through the pipe, exit without
        # running any cleanup of the parent's objects.
        outcome = []
        try:
            try:
                store.get("tasks", "t")
                outcome.append("get allowed")
            except statelog.ForkError as e:
                ok = e.opened_by == os.getppid() and e.pid == os.getpid()
                outcome.append("get refused" if ok else "wrong fields")
            for call in (lambda: store.put("tasks", "t", 2), lambda: next(items), store.close):
                try:
                    call()
                    outcome.append("allowed")
                except statelog.ForkError:
                    outcome.append("refused")
            with statelog.Store(own) as mine:
                mine.put("tasks", "t", "child")
                outcome.append("own store works")
        except BaseException as e:
            outcome.append(f"error {e!r}")
        os.write(write, ";".join(outcome).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    report = os.read(read, 4096).decode()
    os.close(read)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert report == "get refused;refused;refused;refused;own store works"
    # The parent's store is untouched and still works.
    assert store.get("tasks", "t").value == 1
    store.put("tasks", "t", 3)
    assert store.get("tasks", "t").version == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_async_store_after_fork_is_refused(store):
    import asyncio

    astore = statelog.AsyncStore(store)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            asyncio.run(astore.get("tasks", "t"))
            message = "allowed"
        except statelog.ForkError:
            message = "refused"
        except BaseException as e:
            message = f"error {e!r}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 4096).decode() == "refused"
    os.close(read)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_does_not_keep_the_parents_store_locked(path):
    """The child inherits the store's descriptors (its lock among them); once
    the parent closes the store, another process must be able to open it
    while the child still lives."""
    import subprocess
    import sys

    store = statelog.Store(path)
    store.put("tasks", "t", "parent")
    release_read, release_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        # The child: say it is up, then live until the parent lets it go.
        os.close(release_write)
        os.write(ready_write, b"up")
        os.read(release_read, 1)
        os._exit(0)
    os.close(release_read)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 2) == b"up"
        store.close()
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, statelog\n"
                "with statelog.Store(sys.argv[1], lock_timeout=3.0) as s:\n"
                "    s.put('tasks', 't', 'other')\n"
                "    print(s.get('tasks', 't').version)\n",
                path,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == "2"
        # The child is still alive: nothing it holds kept the store.
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        os.write(release_write, b"x")
        os.close(release_write)
        os.close(ready_read)
        os.waitpid(pid, 0)
