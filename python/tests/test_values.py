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


BIG = [
    2**64,
    -(2**63) - 1,
    2**127 - 1,
    -(2**127),
    2**128 - 1,
    2**128,
    10**100,
    -(10**100) + 1,
    2**8191 - 1,
    -(2**8191),
]


def test_big_ints_round_trip_exactly(store):
    for i, n in enumerate(BIG):
        store.put("big", str(i), n)
        got = store.get("big", str(i)).value
        assert type(got) is int and got == n, n
    # Nested, as dict keys and values, in transactions and updates.
    value = {2**100: [2**200, {"n": -(2**300)}], "x": (2**70, -(2**70))}
    store.put("big", "nested", value)
    assert same(store.get("big", "nested").value, {2**100: [2**200, {"n": -(2**300)}], "x": [2**70, -(2**70)]})
    record = store.update("big", "counter", lambda old: (old or 2**64) * 3)
    assert record.value == 3 * 2**64
    # An int subclass is an int.
    import enum

    class Huge(enum.IntEnum):
        N = 2**90

    store.put("big", "enum", Huge.N)
    assert store.get("big", "enum").value == 2**90


def test_the_json_snapshot_holds_big_ints_exactly(store):
    for i, n in enumerate(BIG):
        store.put("big", str(i), n)
    text = store.export_text()
    records = json.loads(text)["namespaces"]["big"]
    for i, n in enumerate(BIG):
        # Beyond 2^53, as an escape that no float reader rounds.
        assert records[str(i)]["value"] == {"$int": str(n)}
    # Markdown too; both read back as the same ints.
    for format in ("json", "jsonl", "markdown"):
        text = store.export_text(format=format)
        store.put("big", "0", 0)
        store.import_text(text, format=format, mode="merge")
        for i, n in enumerate(BIG):
            assert store.get("big", str(i)).value == n


def test_the_cli_and_python_agree_on_big_ints(path, cli):
    run_cli(cli, path, "init", "-q")
    for i, n in enumerate(BIG):
        # A plain JSON literal of any size is read exactly, never as a float.
        run_cli(cli, path, "set", "big", str(i), "-", stdin=str(n))
        run_cli(cli, path, "patch", "fields", str(i), f"n={n}")
    run_cli(cli, path, "patch", "fields", "0", "--json-field", f"more=[{2**200}, {{\"$int\": \"{-(2**70)}\"}}]")
    with statelog.Store(path) as store:
        for i, n in enumerate(BIG):
            assert store.get("big", str(i)).value == n
            assert store.get("fields", str(i)).value["n"] == n
        assert store.get("fields", "0").value["more"] == [2**200, -(2**70)]
        store.put("big", "python", {"n": 2**300, "list": [-(2**100)]})
    # The command line prints what Python wrote: in full decimal for --field,
    # as the snapshot mapping in JSON.
    assert run_cli(cli, path, "get", "big", "python", "--field", "n").strip() == str(2**300)
    shown = json.loads(run_cli(cli, path, "get", "big", "python", "--json"))
    assert shown["value"] == {"n": {"$int": str(2**300)}, "list": [{"$int": str(-(2**100))}]}
    # Export through the command line, import into a new store from Python.
    exported = run_cli(cli, path, "export", "--format", "json")
    with statelog.Store(path + "-copy") as copy:
        copy.import_text(exported, mode="restore")
        assert copy.get("big", "python").value == {"n": 2**300, "list": [-(2**100)]}
        for i, n in enumerate(BIG):
            assert copy.get("big", str(i)).value == n


def test_incr_refuses_big_ints_clearly(path, cli):
    with statelog.Store(path) as store:
        store.put("c", "k", {"n": 2**64 - 1, "big": 2**100})
    for field, message in (("n", "beyond the 64-bit integers"), ("big", "beyond 64 bits")):
        result = subprocess.run(
            [cli, "--store", path, "incr", "c", "k", field],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1 and message in result.stderr, result.stderr
    with statelog.Store(path) as store:
        assert store.get("c", "k").value == {"n": 2**64 - 1, "big": 2**100}
        assert store.get("c", "k").version == 1
