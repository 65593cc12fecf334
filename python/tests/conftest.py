import os
import pathlib
import subprocess

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
