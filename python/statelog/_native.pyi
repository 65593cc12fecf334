"""Type hints of the native part of statelog (a Rust extension module)."""

import datetime
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar, Union

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]

#: What the store holds: None, bool, int (to ±2^8191), float, str, bytes, Ext,
#: and lists, tuples and dicts of these (dict keys of these types too).
Value = Any

MAX_VALUE_LEN: int
MAX_KEY_LEN: int
MAX_NAMESPACE_LEN: int

class Record:
    """A record: its value and the metadata the store keeps with it."""

    @property
    def namespace(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> Value: ...
    @property
    def version(self) -> int:
        """1 when the record was created, +1 on every write since."""
    @property
    def create_revision(self) -> int:
        """The revision that created the record."""
    @property
    def mod_revision(self) -> int:
        """The revision that last wrote it."""
    @property
    def updated_at(self) -> datetime.datetime:
        """The commit time of the last write (aware, UTC, microseconds)."""

class Committed:
    """What a successful write did."""

    @property
    def revision(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def changed(self) -> bool:
        """False when ``put(..., if_changed=True)`` found the same value."""

class Deleted:
    """What a successful delete did."""

    @property
    def revision(self) -> int: ...
    @property
    def version(self) -> int:
        """The version the record had."""

class Ext:
    """A MessagePack extension value (type code -128..127 and bytes); type
    105 is the integers beyond 64 bits', which read as ``int``."""

    def __init__(self, code: int, data: bytes) -> None: ...
    @property
    def code(self) -> int: ...
    @property
    def data(self) -> bytes: ...

class RecordIterator(Iterator[Record]):
    """Records in key order, read from one snapshot as it advances."""

    def __iter__(self) -> "RecordIterator": ...
    def __next__(self) -> Record: ...

class Transaction:
    """A transaction in progress; valid only inside the function given to
    :meth:`Store.transaction`."""

    def get(self, namespace: str, key: str) -> Optional[Record]:
        """The record as this transaction sees it; the commit requires it to
        be unchanged."""
    def put(
        self, namespace: str, key: str, value: Value, *, if_changed: bool = False
    ) -> None: ...
    def create(self, namespace: str, key: str, value: Value) -> None: ...
    def compare_and_swap(
        self, namespace: str, key: str, expected: int, value: Value
    ) -> None: ...
    def delete(self, namespace: str, key: str) -> None: ...
    def expect_version(self, namespace: str, key: str, version: int) -> None:
        """Makes the commit require the record at ``version`` (0: absent)."""
    def list(
        self,
        namespace: str,
        *,
        prefix: Optional[str] = None,
        start: Optional[str] = None,
        end: Optional[str] = None,
    ) -> RecordIterator:
        """The namespace in the transaction's snapshot (not re-checked at the
        commit)."""
    @property
    def revision(self) -> int:
        """The revision of the transaction's snapshot."""

class Store:
    """An open store, safe to share between threads. Every call releases the
    GIL while it touches the store."""

    def __init__(
        self,
        path: PathLike,
        *,
        create: bool = True,
        lock_timeout: float = 30.0,
        durability: str = "sync",
        max_delay: float = 0.01,
        max_attempts: int = 200,
        cache_size: Optional[int] = None,
        serve: bool = True,
        remote: bool = True,
    ) -> None:
        """Opens (creating unless ``create=False``) the store in ``path``.
        While another process holds it and serves it, the handle works through
        that process (unless ``remote=False``); otherwise this waits up to
        ``lock_timeout`` seconds for it to release the store. Unless
        ``serve=False``, this handle serves the others while it holds it. ``durability``: "sync" (acknowledged once on disk) or "relaxed"
        (synced at least every ``max_delay`` seconds; a power loss may take
        back that much). ``max_attempts``: of ``update`` and ``transaction``."""
    @property
    def path(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def get(self, namespace: str, key: str) -> Optional[Record]: ...
    def put(
        self, namespace: str, key: str, value: Value, *, if_changed: bool = False
    ) -> Committed: ...
    def create(self, namespace: str, key: str, value: Value) -> Committed:
        """Raises ConflictError if the record exists."""
    def compare_and_swap(
        self, namespace: str, key: str, expected: int, value: Value
    ) -> Committed:
        """Raises ConflictError unless the record is at version ``expected``
        (0: absent)."""
    def delete(
        self, namespace: str, key: str, *, if_version: Optional[int] = None
    ) -> Optional[Deleted]: ...
    def update(self, namespace: str, key: str, fn: Callable[[Value], Value]) -> Record:
        """``fn(old)`` (None if absent) returns the new value; it runs again
        if the record changed meanwhile."""
    def transaction(self, fn: Callable[[Transaction], T]) -> T:
        """Runs ``fn(tx)`` all or nothing, again on conflict; returns its
        result."""
    def list(
        self,
        namespace: str,
        *,
        prefix: Optional[str] = None,
        start: Optional[str] = None,
        end: Optional[str] = None,
    ) -> RecordIterator: ...
    def count(self, namespace: str) -> int: ...
    def namespaces(self) -> List[str]: ...
    def export(
        self,
        path: PathLike,
        *,
        format: Optional[str] = None,
        namespaces: Optional[Sequence[str]] = None,
        prefix: Optional[str] = None,
        columns: Optional[Sequence[str]] = None,
    ) -> Dict[str, Any]: ...
    def export_text(
        self,
        *,
        format: Optional[str] = None,
        namespaces: Optional[Sequence[str]] = None,
        prefix: Optional[str] = None,
        columns: Optional[Sequence[str]] = None,
    ) -> str: ...
    def import_(
        self,
        path: PathLike,
        *,
        format: Optional[str] = None,
        mode: str = "merge",
        check_versions: bool = False,
        skip_conflicts: bool = False,
    ) -> Dict[str, Any]: ...
    def import_text(
        self,
        text: Union[str, bytes],
        *,
        format: Optional[str] = None,
        mode: str = "merge",
        check_versions: bool = False,
        skip_conflicts: bool = False,
    ) -> Dict[str, Any]: ...
    def import_legacy(
        self,
        path: PathLike,
        namespace: str,
        *,
        normalize: Sequence[str] = ...,
        merge_collisions: bool = False,
    ) -> Dict[str, Any]: ...
    def backup(self, dest: PathLike) -> Dict[str, Any]: ...
    def stats(self) -> Dict[str, Any]: ...
    def checkpoint(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Store": ...
    def __exit__(self, *exc: Any) -> None: ...

def restore(
    backup: PathLike,
    target: PathLike,
    *,
    to_revision: Optional[int] = None,
    to_time: Optional[Union[datetime.datetime, str]] = None,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """A new store in ``target`` from the backup, up to its end, revision
    ``to_revision``, or the commits before ``to_time``."""
