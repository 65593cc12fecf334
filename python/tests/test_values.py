"""Values round-trip exactly between Python, the command line and Rust.

data/values.json is the snapshot the Rust test tests/python_values.rs checks
typed Rust values against; here Python must write the same snapshot, read it
back as the same values, and agree with what the command line prints and
writes."""

import json
import math
import pathlib
import subprocess

import statelog
from values import NAMESPACE, VALUES, same

FIXTURE = pathlib.Path(__file__).parent / "data" / "values.json"


def fixture_values():
    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return {k: r["value"] for k, r in doc["namespaces"][NAMESPACE].items()}


def json_same(a, b):
    """JSON trees equal, with -0.0 told from 0.0 and ints from floats."""
    return same(a, b)


def test_python_values_read_back_identically(store):
    for key, value in VALUES.items():
        store.put(NAMESPACE, key, value)
    for key, value in VALUES.items():
        got = store.get(NAMESPACE, key).value
        assert same(got, value), (key, got, value)


def test_python_writes_the_snapshot_rust_writes(store):
    for key, value in VALUES.items():
        store.put(NAMESPACE, key, value)
    exported = json.loads(store.export_text())["namespaces"][NAMESPACE]
    want = fixture_values()
    assert sorted(exported) == sorted(want)
    for key in want:
        assert json_same(exported[key]["value"], want[key]), key


def test_the_snapshot_rust_writes_reads_as_the_python_values(store):
    report = store.import_(FIXTURE, mode="restore")
    assert report["applied"] and report["records"] == len(VALUES)
    for key, value in VALUES.items():
        record = store.get(NAMESPACE, key)
        assert same(record.value, value), key
    # Restored exactly: exporting gives back the very bytes of the file.
    assert store.export_text() == FIXTURE.read_text(encoding="utf-8")


def run_cli(cli, path, *args, stdin=None):
    result = subprocess.run(
        [cli, "--store", path, *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_cli_reads_what_python_wrote(path, cli):
    with statelog.Store(path) as store:
        for key, value in VALUES.items():
            store.put(NAMESPACE, key, value)
    want = fixture_values()
    for key in VALUES:
        shown = json.loads(run_cli(cli, path, "get", NAMESPACE, key, "--json"))
        assert json_same(shown["value"], want[key]), key
        assert shown["version"] == 1


def test_python_reads_what_the_cli_wrote(tmp_path, cli):
    path = str(tmp_path / "cli-store")
    run_cli(cli, path, "init", "-q")
    for key, value in fixture_values().items():
        run_cli(cli, path, "set", NAMESPACE, key, "-", stdin=json.dumps(value))
    with statelog.Store(path) as store:
        for key, value in VALUES.items():
            assert same(store.get(NAMESPACE, key).value, value), key


def test_mapping_details(store):
    def roundtrip(value):
        store.put("t", "v", value)
        return store.get("t", "v").value

    # tuples are arrays; arrays as map keys read back as tuples
    assert same(roundtrip((1, (2, 3))), [1, [2, 3]])
    assert same(roundtrip({(1, "a"): True}), {(1, "a"): True})
    # bytearray and memoryview are binary
    assert same(roundtrip(bytearray(b"ab")), b"ab")
    assert same(roundtrip(memoryview(b"cd")), b"cd")
    # extension types are kept
    ext = statelog.Ext(5, b"\x01\x02")
    assert roundtrip([ext]) == [ext]
    assert ext.code == 5 and ext.data == b"\x01\x02"
    # bool stays bool, int stays int, float stays float
    assert same(roundtrip([True, 1, 1.0]), [True, 1, 1.0])
    assert math.isnan(roundtrip(float("nan")))
    # the full 64-bit range on both sides
    assert same(roundtrip([2**64 - 1, -(2**63)]), [2**64 - 1, -(2**63)])
