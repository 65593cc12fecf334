"""The exceptions statelog raises: one class per kind of failure, all under
:class:`StatelogError`, each carrying the fields of the library's error as
attributes (``ConflictError.expected``, ``BusyError.pid``, ...).

The native module creates them; they are defined here, in Python, so that bad
input can also be caught as ``ValueError`` and file-system failures as
``OSError``.
"""

from typing import Optional

__all__ = [
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


class StatelogError(Exception):
    """Base class of every statelog error. ``str(e)`` says what happened,
    where, and what to do."""


class InvalidKeyError(StatelogError, ValueError):
    """A namespace or key is empty, too long, or holds a control character."""

    part: str  #: "namespace" or "key"
    value: str  #: the rejected text
    reason: str


class ConflictError(StatelogError):
    """A version precondition did not hold: ``create`` of a record that
    exists, ``compare_and_swap`` or ``delete(if_version=...)`` at another
    version, or ``update``/``transaction`` still losing after every retry.
    Version 0 stands for "does not exist"."""

    namespace: str
    key: str
    expected: int  #: the version the caller expected (0: absent)
    actual: int  #: the version the record had (0: absent)
    attempts: int  #: attempts made (1 for a plain compare-and-swap)


class DecodeError(StatelogError):
    """A stored value has no Python equivalent (a map whose keys are maps, or
    whose keys are equal in Python, such as 1 and 1.0)."""

    namespace: str
    key: str
    message: str


class EncodeError(StatelogError, ValueError):
    """A Python value cannot be stored: a type outside the mapping (see the
    README), an int beyond -2^8191 to 2^8191 - 1, nesting deeper than 256
    levels."""

    namespace: str
    key: str
    message: str  #: where in the value, and what is wrong


class InvalidValueError(StatelogError, ValueError):
    """Raw bytes handed in as a value are not one MessagePack value."""

    namespace: str
    key: str
    message: str


class TooLargeError(StatelogError, ValueError):
    """A value or a transaction exceeds a size limit (``MAX_VALUE_LEN``)."""

    what: str
    size: int
    limit: int


class CorruptError(StatelogError):
    """A file of the store is damaged. Nothing was changed; run
    ``statelog check`` and ``statelog repair``, or restore a backup."""

    file: str
    offset: int
    reason: str


class NotAStoreError(StatelogError):
    """The directory exists but holds something other than a store (or no
    store, with ``create=False``)."""

    path: str
    reason: str


class UnsupportedFormatError(StatelogError):
    """A file of the store was written by a newer statelog."""

    path: str
    found: int
    supported: int


class BusyError(StatelogError):
    """Another handle (in this or another process) held the store for the
    whole ``lock_timeout``."""

    path: str
    pid: Optional[int]  #: the holder's process id, when known
    waited: float  #: seconds waited


class OutcomeUnknownError(StatelogError):
    """A commit was sent to the process holding the store, which went away
    (or stopped answering) before it said whether it was applied. It may or
    may not have been, and it is not retried: read what it would have written
    before doing it again."""

    path: str
    pid: Optional[int]  #: the holder's process id, when known
    reason: str


class RefusedError(StatelogError):
    """The process holding the store refused this one (another user the store
    directory does not grant access, another protocol version); for a store
    on etcd, the cluster refused the credentials or the user has no
    permission on the store's prefix (``pid`` is then None)."""

    path: str
    pid: Optional[int]  #: the holder's process id, when known
    reason: str


class UnsupportedError(StatelogError):
    """The operation does not apply to the way the store is reached (a
    checkpoint of a store on etcd, ...); the message says what to do
    instead."""

    what: str
    reason: str


class UnreachableError(StatelogError):
    """No member of the etcd cluster answered in time (every endpoint was
    tried). A write was not applied."""

    endpoints: str
    op: str
    reason: str


class LimitExceededError(StatelogError):
    """A commit exceeds a limit of the etcd cluster (operations per
    transaction, request size, its database quota). Nothing was written."""

    limit: str  #: etcd's option: "--max-txn-ops", "--max-request-bytes", ...
    what: str
    hint: str


class CompactedError(StatelogError):
    """A snapshot's revision is no longer kept: etcd compacted its history
    past it. Read again from a new snapshot."""

    requested: int
    compacted: Optional[int]


class _OSErrorText:
    """Keeps statelog's message as ``str(e)``: ``OSError.__str__`` would
    rebuild it from ``errno`` and ``filename``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class IoError(_OSErrorText, StatelogError, OSError):
    """An operating-system call on one of the store's files failed
    (``errno``, ``strerror`` and ``filename`` are set as for ``OSError``)."""

    op: str
    path: str


class DatabaseError(StatelogError):
    """The state database reported an error; ``hint`` says what to do."""

    op: str
    path: str
    hint: str
    cause: str


class PoisonedError(StatelogError):
    """A write or sync failed earlier; the handle refuses writes until the
    store is closed and opened again, which finds out what is durable."""

    cause: str


class ClosedError(StatelogError):
    """The store was closed."""


class NotEmptyError(StatelogError):
    """The operation (``import_(mode="restore")``) needs a store without
    commits."""

    revision: int


class InvalidOptionError(StatelogError, ValueError):
    """An option has a value that cannot work."""

    name: str
    reason: str


class InvalidSnapshotError(StatelogError, ValueError):
    """A snapshot given to import is not valid; nothing was imported."""

    line: int
    column: Optional[int]
    section: Optional[str]
    message: str


class InvalidBackupError(StatelogError):
    """A backup cannot be used (damaged, of another store, or missing
    revisions); nothing was changed."""

    path: str
    reason: str


class TargetNotEmptyError(StatelogError):
    """A restore target or backup destination holds something else."""

    path: str
    reason: str


class SnapshotIoError(_OSErrorText, StatelogError, OSError):
    """Reading or writing a snapshot stream failed."""

    op: str


class ForkError(StatelogError):
    """A Store (or a Transaction or iterator of it) was used in a process
    forked after it was opened. The child must open its own Store."""

    opened_by: int  #: the process that opened the store
    pid: int  #: this process



class WatchCancelledError(StatelogError):
    """A watch ended before it was closed: it fell too far behind (its
    ``buffer`` filled), the store was closed, or its holder went away.
    Watching again with ``start=resume_from`` misses nothing and repeats
    nothing."""

    resume_from: int  #: the first revision the watcher did not get
    reason: str


class PatchFailedError(StatelogError):
    """A patch could not apply to the record's value at commit (a path
    through something that is not a dict, adding to something that is not a
    number, an integer overflow). Nothing was written."""

    namespace: str
    key: str
    message: str


class RevisionMismatchError(ConflictError):
    """A write required a record's last write to be a given revision, and it
    was not (0 stands for "does not exist"). Nothing was written."""

    expected: int  #: the revision required (0: absent)
    actual: int  #: the record's modification revision (0: absent)


class FencedError(StatelogError):
    """A write fenced with ``fence=(lock, token)`` found the lock no longer
    held with that token: its holder lost it (its lease ended), and somebody
    else may hold it now. Nothing was written: stop, and take the lock
    again."""

    lock: str
    token: int  #: the token the write carried
    current: Optional[int]  #: the token of the holder now, if any


class LockHeldError(StatelogError):
    """A lock is held by somebody else (after waiting ``waited`` seconds)."""

    lock: str
    token: int  #: the holder's fencing token
    holder: str  #: who holds it, as its lease says
    waited: float  #: seconds this caller waited


class LeaseExpiredError(StatelogError):
    """A lease has ended (revoked, or not kept alive within its TTL), and
    with it its locks and the records bound to it. Take a new one."""

    lease: int


class IdempotencyKeyReusedError(StatelogError, ValueError):
    """An idempotency key was used before for a different write. Nothing was
    written: use a new key for a new request."""

    key: str
    first: Optional[int]  #: the revision of the first write's commit, if any


# Shown and pickled as statelog.ConflictError etc., where users import them.
for _name in __all__:
    globals()[_name].__module__ = "statelog"
del _name
