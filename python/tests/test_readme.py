"""The README's Python example runs as written (its other blocks are tested
by the Rust doctests and cli/tests/readme.rs)."""

import re

from conftest import REPO


def python_blocks():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)


def test_the_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert blocks, "the README has no python block"
    # The example names its store and files relative to where it runs.
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "pipeline-state").is_dir()
    assert (tmp_path / "STATE.md").is_file()
    assert (tmp_path / "backups" / "state" / "MANIFEST").is_file()
    printed = capsys.readouterr().out
    assert "task_123" in printed
