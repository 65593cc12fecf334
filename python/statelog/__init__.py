"""statelog: an embedded transactional state store.

Records are addressed by namespace and key, hold plain Python values (dict,
list, str, int, float, bool, None, bytes), and carry a version (1 on create,
+1 per write) and revisions. No update is ever lost: ``compare_and_swap``
checks the version, ``update`` retries on conflict, and ``transaction`` makes
several writes all or nothing. Every commit is durable before it returns.

    import statelog

    with statelog.Store("pipeline-state") as store:
        store.put("tasks", "task_123", {"status": "queued", "progress": 0})

        def advance(task):
            task = task or {}
            task["progress"] = task.get("progress", 0) + 10
            return task

        record = store.update("tasks", "task_123", advance)  # retried on conflict
        print(record.version, record.value)

The values are those of the store's snapshots (README, "From Python"), so what
Python writes reads back identically from Rust and from the ``statelog``
command line. :class:`AsyncStore` offers the same methods as coroutines.
"""

from ._async import AsyncLease, AsyncLock, AsyncStore, AsyncWatcher
from ._errors import (
    BusyError,
    ClosedError,
    CompactedError,
    ConflictError,
    CorruptError,
    DatabaseError,
    DecodeError,
    EncodeError,
    FencedError,
    ForkError,
    IdempotencyKeyReusedError,
    InvalidBackupError,
    InvalidKeyError,
    InvalidOptionError,
    InvalidSnapshotError,
    InvalidValueError,
    IoError,
    LeaseExpiredError,
    LimitExceededError,
    LockHeldError,
    NotAStoreError,
    NotEmptyError,
    OutcomeUnknownError,
    PatchFailedError,
    PoisonedError,
    RefusedError,
    RevisionMismatchError,
    SnapshotIoError,
    StatelogError,
    TargetNotEmptyError,
    TooLargeError,
    UnreachableError,
    UnsupportedError,
    UnsupportedFormatError,
    WatchCancelledError,
)
from ._native import (
    MAX_KEY_LEN,
    MAX_NAMESPACE_LEN,
    MAX_VALUE_LEN,
    Change,
    Committed,
    Deleted,
    Event,
    Ext,
    Lease,
    Lock,
    Progress,
    Record,
    RecordIterator,
    Store,
    Transaction,
    Watcher,
    restore,
)
from ._patch import Patch

__version__ = "0.1.0"

__all__ = [
    "AsyncStore",
    "Store",
    "Transaction",
    "Record",
    "RecordIterator",
    "Committed",
    "Deleted",
    "Ext",
    "Patch",
    "Watcher",
    "Change",
    "Event",
    "Progress",
    "Lock",
    "Lease",
    "AsyncWatcher",
    "AsyncLock",
    "AsyncLease",
    "restore",
    "MAX_KEY_LEN",
    "MAX_NAMESPACE_LEN",
    "MAX_VALUE_LEN",
    "StatelogError",
    "InvalidKeyError",
    "ConflictError",
    "DecodeError",
    "EncodeError",
    "InvalidValueError",
    "TooLargeError",
    "CorruptError",
    "NotAStoreError",
    "UnsupportedFormatError",
    "BusyError",
    "OutcomeUnknownError",
    "RefusedError",
    "UnsupportedError",
    "UnreachableError",
    "LimitExceededError",
    "CompactedError",
    "IoError",
    "DatabaseError",
    "PoisonedError",
    "ClosedError",
    "NotEmptyError",
    "InvalidOptionError",
    "InvalidSnapshotError",
    "InvalidBackupError",
    "TargetNotEmptyError",
    "SnapshotIoError",
    "ForkError",
    "WatchCancelledError",
    "PatchFailedError",
    "RevisionMismatchError",
    "FencedError",
    "LockHeldError",
    "LeaseExpiredError",
    "IdempotencyKeyReusedError",
]
