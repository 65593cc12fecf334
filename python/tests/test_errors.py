"""Every error class is raised where it should be, with the fields of the
library's error.

Not provoked here: InvalidValueError (raw MessagePack input, which the Python
API does not take), DatabaseError and PoisonedError (they need a failing disk;
the Rust suite injects those faults)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import statelog


def test_every_class_is_a_statelog_error():
    for name in statelog._errors.__all__:
        assert issubclass(getattr(statelog, name), statelog.StatelogError), name
    assert issubclass(statelog.InvalidKeyError, ValueError)
    assert issubclass(statelog.EncodeError, ValueError)
    assert issubclass(statelog.IoError, OSError)


def test_invalid_key(store):
    with pytest.raises(statelog.InvalidKeyError) as e:
        store.put("", "k", 1)
    assert e.value.part == "namespace" and e.value.value == ""
    with pytest.raises(statelog.InvalidKeyError) as e:
        store.get("tasks", "a\nb")
    assert e.value.part == "key" and e.value.value == "a\nb"
    assert "control" in e.value.reason
    with pytest.raises(statelog.InvalidKeyError):
        store.put("tasks", "k" * (statelog.MAX_KEY_LEN + 1), 1)


def test_conflicts(store):
    store.create("tasks", "t", {"n": 1})
    with pytest.raises(statelog.ConflictError) as e:
        store.create("tasks", "t", {"n": 2})
    assert (e.value.namespace, e.value.key) == ("tasks", "t")
    assert (e.value.expected, e.value.actual, e.value.attempts) == (0, 1, 1)
    with pytest.raises(statelog.ConflictError) as e:
        store.compare_and_swap("tasks", "t", 5, {"n": 2})
    assert (e.value.expected, e.value.actual) == (5, 1)
    with pytest.raises(statelog.ConflictError) as e:
        store.delete("tasks", "t", if_version=2)
    assert (e.value.expected, e.value.actual) == (2, 1)
    with pytest.raises(statelog.ConflictError) as e:
        store.delete("tasks", "absent", if_version=1)
    assert (e.value.expected, e.value.actual) == (1, 0)
    assert store.get("tasks", "t").value == {"n": 1}


def test_update_gives_up_after_its_attempts(path):
    with statelog.Store(path, max_attempts=3) as store:
        calls = []

        def meddle(old):
            # Another writer changes the record on every attempt.
            calls.append(old)
            store.put("tasks", "t", len(calls))
            return "mine"

        with pytest.raises(statelog.ConflictError) as e:
            store.update("tasks", "t", meddle)
        assert e.value.attempts == 3 and len(calls) == 3
        assert store.get("tasks", "t").value == 3

        def meddle_tx(tx):
            tx.get("tasks", "t")
            store.put("tasks", "t", "other")
            tx.put("tasks", "t", "mine")

        with pytest.raises(statelog.ConflictError) as e:
            store.transaction(meddle_tx)
        assert e.value.attempts == 3
        assert store.get("tasks", "t").value == "other"


def test_encode(store):
    with pytest.raises(statelog.EncodeError) as e:
        store.put("tasks", "t", {"when": object()})
    assert (e.value.namespace, e.value.key) == ("tasks", "t")
    assert "['when']" in e.value.message and "object" in e.value.message
    # Integers of any size up to 2^8191 are stored; beyond, an EncodeError.
    with pytest.raises(statelog.EncodeError, match="8192 bits, beyond the integers"):
        store.put("tasks", "t", [2**8191])
    with pytest.raises(statelog.EncodeError, match="8192 bits, beyond the integers"):
        store.put("tasks", "t", -(2**8191) - 1)
    # Extension type 105 is the big integers': it cannot be written as an Ext.
    with pytest.raises(statelog.EncodeError, match="reserved for integers beyond 64 bits"):
        store.put("tasks", "t", statelog.Ext(105, bytes(9)))
    loop = []
    loop.append(loop)
    with pytest.raises(statelog.EncodeError, match="nests deeper"):
        store.put("tasks", "t", loop)
    with pytest.raises(statelog.EncodeError, match="surrogate"):
        store.put("tasks", "t", "\ud800")
    # An update whose function returns something unstorable writes nothing.
    with pytest.raises(statelog.EncodeError):
        store.update("tasks", "t", lambda old: {1, 2})
    assert store.get("tasks", "t") is None


def test_exceptions_of_the_function_pass_through(store):
    class Stop(Exception):
        pass

    def fail(old):
        raise Stop()

    with pytest.raises(Stop):
        store.update("tasks", "t", fail)

    def fail_tx(tx):
        tx.put("tasks", "t", 1)
        raise Stop()

    with pytest.raises(Stop):
        store.transaction(fail_tx)
    assert store.get("tasks", "t") is None


def test_decode(store, path, cli):
    store.close()
    # A map whose keys Python cannot hold apart (1 and true).
    subprocess.run(
        [cli, "--store", path, "set", "tasks", "t", '{"$map": [[1, "a"], [true, "b"]]}'],
        check=True,
    )
    with statelog.Store(path) as s:
        with pytest.raises(statelog.DecodeError) as e:
            s.get("tasks", "t")
        assert (e.value.namespace, e.value.key) == ("tasks", "t")
        assert "equal in Python" in e.value.message


def test_too_large(store):
    with pytest.raises(statelog.TooLargeError) as e:
        store.put("tasks", "big", b"x" * (statelog.MAX_VALUE_LEN + 1))
    assert e.value.limit == statelog.MAX_VALUE_LEN and e.value.size > e.value.limit


def test_busy(store, path):
    # A handle that may not work through the holder waits for the lock.
    with pytest.raises(statelog.BusyError) as e:
        statelog.Store(path, lock_timeout=0, remote=False)
    assert e.value.pid == os.getpid()
    assert e.value.path == path
    assert e.value.waited >= 0


def test_closed(path):
    store = statelog.Store(path)
    store.close()
    store.close()  # twice is fine
    assert store.closed
    with pytest.raises(statelog.ClosedError):
        store.get("tasks", "t")
    # and the store is free for the next handle
    statelog.Store(path, lock_timeout=0).close()


def test_not_a_store(tmp_path):
    with pytest.raises(statelog.NotAStoreError) as e:
        statelog.Store(tmp_path / "missing", create=False)
    assert e.value.path.endswith("missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    with pytest.raises(statelog.NotAStoreError):
        statelog.Store(tmp_path / "other")


def test_unsupported_format(path):
    statelog.Store(path).close()
    identity = pathlib.Path(path) / "STATELOG"
    doc = json.loads(identity.read_text())
    doc["version"] = 99
    identity.write_text(json.dumps(doc))
    with pytest.raises(statelog.UnsupportedFormatError) as e:
        statelog.Store(path)
    assert e.value.found == 99 and e.value.supported >= 1


def test_corrupt(path):
    # A child commits and dies without closing (nothing checkpointed), then a
    # byte of the first commit is damaged: synced, with commits after it.
    code = (
        "import os, statelog\n"
        f"s = statelog.Store({path!r})\n"
        "for i in range(5): s.put('jobs', f'j{i}', i)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    segment = pathlib.Path(path) / "log" / ("1".zfill(20) + ".log")
    data = bytearray(segment.read_bytes())
    data[64 + 12 + 4] ^= 0x40
    segment.write_bytes(bytes(data))
    with pytest.raises(statelog.CorruptError) as e:
        statelog.Store(path)
    assert e.value.file == str(segment)
    assert e.value.offset == 64
    assert e.value.reason


def test_io(store, tmp_path):
    with pytest.raises(statelog.IoError) as e:
        store.export(tmp_path / "no" / "such" / "dir" / "out.json")
    assert e.value.errno == 2 and e.value.filename.endswith(".tmp-%d" % os.getpid())
    assert "cannot create" in str(e.value)
    with pytest.raises(OSError):
        store.import_(tmp_path / "missing.json")


def test_not_empty(store, tmp_path):
    store.put("tasks", "t", 1)
    snapshot = tmp_path / "s.json"
    store.export(snapshot)
    with pytest.raises(statelog.NotEmptyError) as e:
        store.import_(snapshot, mode="restore")
    assert e.value.revision == 1


def test_invalid_option(path):
    with pytest.raises(statelog.InvalidOptionError) as e:
        statelog.Store(path, durability="fast")
    assert e.value.name == "durability"
    with pytest.raises(statelog.InvalidOptionError) as e:
        statelog.Store(path, lock_timeout=-1)
    assert e.value.name == "lock_timeout"
    with pytest.raises(statelog.InvalidOptionError):
        statelog.Store(path, max_attempts=0)


def test_invalid_snapshot(store):
    with pytest.raises(statelog.InvalidSnapshotError) as e:
        store.import_text('{"format": "statelog-snapshot", "version": 1,\n  "revision": x')
    assert e.value.line == 2 and e.value.column is not None
    assert store.revision == 0


def test_invalid_backup_and_target_not_empty(store, tmp_path):
    store.put("tasks", "t", 1)
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "MANIFEST").write_text("not json")
    with pytest.raises(statelog.InvalidBackupError) as e:
        statelog.restore(bogus, tmp_path / "restored")
    assert e.value.reason
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    with pytest.raises(statelog.TargetNotEmptyError) as e:
        store.backup(full)
    assert e.value.path.endswith("full")


def test_snapshot_io(store, tmp_path):
    with pytest.raises(statelog.SnapshotIoError) as e:
        store.import_(tmp_path)  # a directory opens, but cannot be read
    assert e.value.op == "read"
    assert isinstance(e.value, OSError)
