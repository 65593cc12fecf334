import os
import pathlib
import subprocess
import sys

import pytest

import statelog

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path):
    """A store directory that does not exist yet."""
    return str(tmp_path / "store")


@pytest.fixture
def store(path):
    with statelog.Store(path) as s:
        yield s


@pytest.fixture(scope="session")
def cli():
    """The `statelog` command line of this repository, built if needed (the
    value round trips run it; a missing toolchain fails the tests)."""
    explicit = os.environ.get("STATELOG_CLI")
    if explicit:
        return explicit
    subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "statelog"], cwd=REPO, check=True
    )
    binary = REPO / "target" / "debug" / "statelog"
    assert binary.exists(), f"cargo built no {binary}"
    return str(binary)


# A process that opens the store, serves it to the others, and keeps it until
# its stdin closes.
_HOLDER = """
import sys
import statelog
store = statelog.Store(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


@pytest.fixture
def holder(path):
    """The store at ``path``, held and served by another process: a Store
    opened here works through it."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout.readline() == b"ready\n", "the holder did not start"
        # Held elsewhere: a handle that may not go through the holder waits.
        with pytest.raises(statelog.BusyError):
            statelog.Store(path, lock_timeout=0, remote=False)
        yield path
    finally:
        process.stdin.close()
        assert process.wait(timeout=60) == 0


@pytest.fixture(params=["embedded", "holder"])
def reached(request, path):
    """A store opened here (``embedded``), or reached through another process
    holding it (``holder``)."""
    if request.param == "holder":
        request.getfixturevalue("holder")
    with statelog.Store(path) as s:
        yield s
