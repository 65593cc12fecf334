"""Type hints of the native part of statelog (a Rust extension module)."""

import datetime
import os
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ._patch import FieldPath, Patch

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]

#: What the store holds: None, bool, int (to ±2^8191), float, str, bytes, Ext,
#: and lists, tuples and dicts of these (dict keys of these types too).
Value = Any

MAX_VALUE_LEN: int
MAX_KEY_LEN: int
MAX_NAMESPACE_LEN: int

#: ``fence=``: a (lock name, fencing token) pair, or a list of them: the write
#: happens only while each lock is held with its token (else FencedError).
Fence = Union[Tuple[str, int], Sequence[Tuple[str, int]]]

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
    @property
    def replayed(self) -> bool:
        """True when a patch or incr with an idempotency key used before
        returned its first result again: nothing was written now."""

class Committed:
    """What a successful write did."""

    @property
    def revision(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def changed(self) -> bool:
        """False when ``put(..., if_changed=True)`` found the same value."""
    @property
    def replayed(self) -> bool:
        """True when a write with an idempotency key used before returned its
        first result again: nothing was written now."""

class Deleted:
    """What a successful delete did."""

    @property
    def revision(self) -> int: ...
    @property
    def version(self) -> int:
        """The version the record had."""
    @property
    def replayed(self) -> bool:
        """True when a delete with an idempotency key used before returned its
        first result again: nothing was written now."""

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

class Event:
    """One record written by a commit."""

    @property
    def namespace(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def record(self) -> Optional[Record]:
        """The record as written; None when the commit deleted it."""
    @property
    def value(self) -> Value:
        """The value written (None for a delete)."""
    @property
    def deleted(self) -> bool:
        """True when the commit deleted the record."""
    @property
    def deleted_version(self) -> int:
        """The version a delete removed (0 for a write)."""
    @property
    def prev(self) -> Optional[Record]:
        """The record just before the commit, with ``watch(prev=True)``; None
        when it did not exist (or was not asked for)."""

class Change:
    """One commit's changes to the records a watch covers."""

    @property
    def revision(self) -> int: ...
    @property
    def time(self) -> datetime.datetime:
        """The commit time (aware, UTC)."""
    @property
    def events(self) -> List[Event]:
        """The records it wrote, in the order it wrote them."""

class Progress:
    """Nothing the watch covers changed up to and including ``revision``
    (with ``watch(progress=SECONDS)``)."""

    @property
    def revision(self) -> int: ...

class Watcher(Iterator[Union[Change, Progress]]):
    """The changes committed to a store, in revision order. Iterating waits
    without the GIL (Ctrl-C interrupts it); it ends once closed, and raises
    WatchCancelledError (with ``resume_from``) when the watch fell behind, the
    store closed or its holder went away. ``with`` closes it at the end."""

    def __iter__(self) -> "Watcher": ...
    def __next__(self) -> Union[Change, Progress]: ...
    def close(self) -> None:
        """Ends the watch; a wait in progress returns within a fraction of a
        second."""
    @property
    def closed(self) -> bool: ...
    def _wait(self, timeout: Optional[float] = None) -> bool: ...
    def _take(self) -> Tuple[bool, Optional[Union[Change, Progress]]]: ...
    def __enter__(self) -> "Watcher": ...
    def __exit__(self, *exc: Any) -> None: ...

class Lock:
    """A lock for a ``with`` block, from :meth:`Store.lock`: entering takes
    it under a lease kept alive from a thread, and gives the fencing token;
    leaving gives it back and ends the lease (also on an exception)."""

    def acquire(self) -> int:
        """Takes the lock; its fencing token. LockHeldError when it stays
        held by somebody else."""
    def release(self) -> None:
        """Gives it back and ends its lease; FencedError if it was lost."""
    @property
    def name(self) -> str: ...
    @property
    def token(self) -> Optional[int]:
        """The fencing token while held."""
    @property
    def lease(self) -> Optional[int]:
        """The id of the lease holding it, while held."""
    @property
    def lost(self) -> bool:
        """True when a keep-alive found the lease ended: the lock is gone."""
    def __enter__(self) -> int: ...
    def __exit__(self, *exc: Any) -> None: ...

class Lease:
    """A lease, from :meth:`Store.lease`: it ends when revoked or when not
    kept alive within its TTL, and with it its locks and the records written
    with ``lease=``. ``with`` revokes it at the end."""

    @property
    def id(self) -> int: ...
    @property
    def ttl(self) -> float:
        """Seconds."""
    def keep_alive(self) -> None:
        """Its full TTL from now; LeaseExpiredError once it has ended."""
    def revoke(self) -> None: ...
    def lock(self, name: str, *, wait: Optional[float] = None) -> int:
        """Takes lock ``name`` (waiting up to ``wait`` seconds; None: tries
        once); its fencing token."""
    def unlock(self, name: str, token: int) -> None: ...
    def __enter__(self) -> "Lease": ...
    def __exit__(self, *exc: Any) -> None: ...

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
        self,
        namespace: str,
        key: str,
        value: Value,
        *,
        if_changed: bool = False,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional[Lease] = None,
    ) -> Committed:
        """Writes ``value``. Every write takes ``fence`` (write only while
        the locks are held with these tokens), ``idempotency_key`` (a retry
        returns the first result, ``replayed=True``, and writes nothing; the
        key is kept ``keep_key_for`` seconds, a day by default) and ``lease``
        (the record is deleted when the lease ends)."""
    def create(
        self,
        namespace: str,
        key: str,
        value: Value,
        *,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional[Lease] = None,
    ) -> Committed:
        """Raises ConflictError if the record exists."""
    def compare_and_swap(
        self,
        namespace: str,
        key: str,
        expected: int,
        value: Value,
        *,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional[Lease] = None,
    ) -> Committed:
        """Raises ConflictError unless the record is at version ``expected``
        (0: absent)."""
    def delete(
        self,
        namespace: str,
        key: str,
        *,
        if_version: Optional[int] = None,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
    ) -> Optional[Deleted]: ...
    def patch(
        self,
        namespace: str,
        key: str,
        patch: Patch,
        *,
        if_changed: bool = False,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional[Lease] = None,
    ) -> Record:
        """Applies ``patch`` at commit to the value the record has then (a
        missing record starts as ``{}``): never a conflict. PatchFailedError
        (nothing written) when an operation cannot apply."""
    def incr(
        self,
        namespace: str,
        key: str,
        field: FieldPath,
        by: Union[int, float] = 1,
        *,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional[Lease] = None,
    ) -> Record:
        """Adds ``by`` to the number at ``field`` (a missing one counts as 0)
        as a patch: concurrent increments never conflict. The record written;
        ``record.value[field]`` is the sum."""
    def watch(
        self,
        namespace: Optional[str] = None,
        key: Optional[str] = None,
        *,
        prefix: Optional[str] = None,
        start: Optional[int] = None,
        prev: bool = False,
        progress: Optional[float] = None,
        buffer: Optional[int] = None,
    ) -> Watcher:
        """The commits to the whole store, a namespace, one key, or the keys
        starting with ``prefix``, in revision order: from revision ``start``
        (included; CompactedError when the log no longer holds it), else from
        the next commit. ``prev=True`` adds each record's previous version;
        ``progress`` (seconds) yields a Progress when nothing changed for that
        long; ``buffer`` commits may wait for a slow consumer before the
        watch is cancelled (WatchCancelledError)."""
    def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        wait: Optional[float] = None,
        holder: Optional[str] = None,
    ) -> Lock:
        """``with store.lock("deploy", ttl=10) as token:`` holds the lock for
        the block (waiting up to ``wait`` seconds for it; None: tries once,
        else LockHeldError)."""
    def lease(self, ttl: float, *, holder: Optional[str] = None) -> Lease:
        """Takes a lease of ``ttl`` seconds (0.1 to a day)."""
    def locks(self) -> List[Dict[str, Any]]:
        """The locks held: name, token, lease, holder, since."""
    def leases(self) -> List[Dict[str, Any]]:
        """The leases: id, ttl, holder, since, locks, bound, remaining."""
    def idempotency_keys(self) -> int:
        """How many idempotency keys the store keeps now."""
    def update(
        self,
        namespace: str,
        key: str,
        fn: Callable[[Value], Value],
        *,
        idempotency_key: Optional[str] = None,
    ) -> Record:
        """``fn(old)`` (None if absent) returns the new value; it runs again
        if the record changed meanwhile. With ``idempotency_key``, a call
        after the first one's commit returns its record (``.replayed``)
        without running ``fn``."""
    def transaction(
        self, fn: Callable[[Transaction], T], *, idempotency_key: Optional[str] = None
    ) -> T:
        """Runs ``fn(tx)`` all or nothing, again on conflict; returns its
        result. With ``idempotency_key``, a call after the first one's commit
        returns the first result without running ``fn``."""
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
