"""AsyncStore: the store's methods as coroutines for asyncio.

Every call runs the blocking method of a :class:`statelog.Store` on a small
thread pool of the AsyncStore's own (the native calls release the GIL), so the
event loop never waits for the disk, for a lock, or for a conflicting writer.
"""

import asyncio
import collections
import functools
import inspect
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Dict,
    Generator,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ._errors import ClosedError, ForkError
from ._native import (
    Change,
    Committed,
    Deleted,
    Lease,
    Lock,
    Progress,
    Record,
    Store,
    Transaction,
    Watcher,
)
from ._patch import FieldPath, Patch

__all__ = ["AsyncStore", "AsyncWatcher", "AsyncLock", "AsyncLease"]

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]
#: ``fence=``: a (lock name, fencing token) pair, or a list of them.
Fence = Union[Tuple[str, int], Sequence[Tuple[str, int]]]

#: Threads per AsyncStore: enough for concurrent commits to share a disk sync.
DEFAULT_WORKERS = 16
#: Records fetched per trip to the thread pool when iterating.
BATCH = 256


class AsyncStore:
    """An open store for asyncio code: the methods of :class:`Store`, as
    coroutines that never block the event loop.

    Open one with ``store = await AsyncStore.open(path)`` or
    ``async with AsyncStore.open(path) as store:``, or wrap a Store that is
    already open with ``AsyncStore(store)``.

    Functions handed to :meth:`update` and :meth:`transaction` are plain
    functions: they run in a worker thread, possibly several times (once per
    conflict), and must not await anything.

    A call whose task is cancelled still completes in its thread: a cancelled
    ``put`` may have been committed.
    """

    def __init__(self, store: Store, *, workers: int = DEFAULT_WORKERS) -> None:
        self._store = store
        self._pid = os.getpid()
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="statelog"
        )
        self._executor_closed = False

    @classmethod
    def open(
        cls, path: PathLike, *, workers: int = DEFAULT_WORKERS, **options: Any
    ) -> "_Opening":
        """Opens the store at ``path`` in a worker thread (waiting for the
        store's lock there). ``options`` are those of :class:`Store`. Await
        the result, or use it in ``async with``."""
        return _Opening(cls, path, workers, options)

    @property
    def store(self) -> Store:
        """The blocking handle underneath (for code running in threads)."""
        return self._store

    @property
    def path(self) -> str:
        """The store's directory."""
        return self._store.path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._store.closed

    def _submit(
        self, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> "asyncio.Future[T]":
        """Starts ``fn`` in a worker thread; the future of its result."""
        if os.getpid() != self._pid:
            # The pool's threads do not exist in a forked child.
            error = ForkError(
                f"this AsyncStore was opened by process {self._pid} and is used in "
                f"process {os.getpid()}, a fork of it; a store handle cannot cross a "
                "fork: open statelog.AsyncStore.open(path) in this process instead"
            )
            error.opened_by = self._pid
            error.pid = os.getpid()
            raise error
        if self._executor_closed:
            raise ClosedError("the store has been closed")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(
            self._executor, functools.partial(fn, *args, **kwargs)
        )

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._submit(fn, *args, **kwargs)

    # Records

    async def get(self, namespace: str, key: str) -> Optional[Record]:
        """The record, or None. See :meth:`Store.get`."""
        return await self._run(self._store.get, namespace, key)

    async def put(
        self,
        namespace: str,
        key: str,
        value: Any,
        *,
        if_changed: bool = False,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional["AsyncLease"] = None,
    ) -> Committed:
        """Writes a value. See :meth:`Store.put` (and its keywords)."""
        return await self._run(
            self._store.put,
            namespace,
            key,
            value,
            if_changed=if_changed,
            fence=fence,
            idempotency_key=idempotency_key,
            keep_key_for=keep_key_for,
            lease=_native_lease(lease),
        )

    async def create(
        self,
        namespace: str,
        key: str,
        value: Any,
        *,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional["AsyncLease"] = None,
    ) -> Committed:
        """Creates a record that must not exist. See :meth:`Store.create`."""
        return await self._run(
            self._store.create,
            namespace,
            key,
            value,
            fence=fence,
            idempotency_key=idempotency_key,
            keep_key_for=keep_key_for,
            lease=_native_lease(lease),
        )

    async def compare_and_swap(
        self,
        namespace: str,
        key: str,
        expected: int,
        value: Any,
        *,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional["AsyncLease"] = None,
    ) -> Committed:
        """Writes if at version ``expected``. See :meth:`Store.compare_and_swap`."""
        return await self._run(
            self._store.compare_and_swap,
            namespace,
            key,
            expected,
            value,
            fence=fence,
            idempotency_key=idempotency_key,
            keep_key_for=keep_key_for,
            lease=_native_lease(lease),
        )

    async def delete(
        self,
        namespace: str,
        key: str,
        *,
        if_version: Optional[int] = None,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
    ) -> Optional[Deleted]:
        """Removes a record. See :meth:`Store.delete`."""
        return await self._run(
            self._store.delete,
            namespace,
            key,
            if_version=if_version,
            fence=fence,
            idempotency_key=idempotency_key,
            keep_key_for=keep_key_for,
        )

    async def patch(
        self,
        namespace: str,
        key: str,
        patch: Patch,
        *,
        if_changed: bool = False,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional["AsyncLease"] = None,
    ) -> Record:
        """Applies a :class:`Patch` at commit; never conflicts. See
        :meth:`Store.patch`."""
        return await self._run(
            self._store.patch,
            namespace,
            key,
            patch,
            if_changed=if_changed,
            fence=fence,
            idempotency_key=idempotency_key,
            keep_key_for=keep_key_for,
            lease=_native_lease(lease),
        )

    async def incr(
        self,
        namespace: str,
        key: str,
        field: FieldPath,
        by: Union[int, float] = 1,
        *,
        fence: Optional[Fence] = None,
        idempotency_key: Optional[str] = None,
        keep_key_for: Optional[float] = None,
        lease: Optional["AsyncLease"] = None,
    ) -> Record:
        """Adds ``by`` to a number field; never conflicts. See
        :meth:`Store.incr`."""
        return await self._run(
            self._store.incr,
            namespace,
            key,
            field,
            by,
            fence=fence,
            idempotency_key=idempotency_key,
            keep_key_for=keep_key_for,
            lease=_native_lease(lease),
        )

    async def update(
        self,
        namespace: str,
        key: str,
        fn: Callable[[Any], Any],
        *,
        idempotency_key: Optional[str] = None,
    ) -> Record:
        """Read, change, write, retried on conflict: ``fn(old)`` returns the
        new value. ``fn`` runs in a worker thread. See :meth:`Store.update`."""
        _plain_function("update", fn)
        return await self._run(
            self._store.update, namespace, key, fn, idempotency_key=idempotency_key
        )

    async def transaction(
        self, fn: Callable[[Transaction], T], *, idempotency_key: Optional[str] = None
    ) -> T:
        """Runs ``fn(tx)`` as one all-or-nothing transaction, re-run on
        conflict; ``fn`` runs in a worker thread. See
        :meth:`Store.transaction`."""
        _plain_function("transaction", fn)
        return await self._run(
            self._store.transaction, fn, idempotency_key=idempotency_key
        )

    def list(
        self,
        namespace: str,
        *,
        prefix: Optional[str] = None,
        start: Optional[str] = None,
        end: Optional[str] = None,
    ) -> AsyncIterator[Record]:
        """The records of a namespace in key order, for ``async for``, read
        from one snapshot in batches. See :meth:`Store.list`."""
        return _BlockingIterator(
            self._run,
            functools.partial(
                self._store.list, namespace, prefix=prefix, start=start, end=end
            ),
        )

    async def count(self, namespace: str) -> int:
        """How many records ``namespace`` holds."""
        return await self._run(self._store.count, namespace)

    async def namespaces(self) -> List[str]:
        """The namespaces that hold records."""
        return await self._run(self._store.namespaces)

    async def revision(self) -> int:
        """The revision of the last commit readers can see."""
        return await self._run(lambda: self._store.revision)

    # Watch, locks and leases

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
    ) -> "AsyncWatcher":
        """The store's commits for ``async for``: :class:`Change` objects in
        revision order (the options of :meth:`Store.watch`). The waits run in
        a thread of the watch's own, never on the event loop nor in the
        store's worker threads. End it with ``aclose()``, an ``async with``
        block, or by dropping it; cancelling a task waiting on it loses no
        change (the next iteration returns it)."""
        return AsyncWatcher(
            self,
            functools.partial(
                self._store.watch,
                namespace,
                key,
                prefix=prefix,
                start=start,
                prev=prev,
                progress=progress,
                buffer=buffer,
            ),
        )

    def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        wait: Optional[float] = None,
        holder: Optional[str] = None,
    ) -> "AsyncLock":
        """A lock for ``async with store.lock("deploy", ttl=10) as token:``;
        see :meth:`Store.lock`. Taking and giving it back run in worker
        threads."""
        return AsyncLock(self, self._store.lock(name, ttl=ttl, wait=wait, holder=holder))

    async def lease(self, ttl: float, *, holder: Optional[str] = None) -> "AsyncLease":
        """Takes a lease of ``ttl`` seconds; see :meth:`Store.lease`."""
        lease = await self._run(self._store.lease, ttl, holder=holder)
        return AsyncLease(self, lease)

    async def locks(self) -> List[Dict[str, Any]]:
        """The locks held now. See :meth:`Store.locks`."""
        return await self._run(self._store.locks)

    async def leases(self) -> List[Dict[str, Any]]:
        """The leases. See :meth:`Store.leases`."""
        return await self._run(self._store.leases)

    async def idempotency_keys(self) -> int:
        """How many idempotency keys the store keeps now."""
        return await self._run(self._store.idempotency_keys)

    # Files

    async def export(
        self,
        path: PathLike,
        *,
        format: Optional[str] = None,
        namespaces: Optional[Sequence[str]] = None,
        prefix: Optional[str] = None,
        columns: Optional[Sequence[str]] = None,
    ) -> Dict[str, Any]:
        """Writes a snapshot file atomically. See :meth:`Store.export`."""
        return await self._run(
            self._store.export,
            path,
            format=format,
            namespaces=_list_or_none(namespaces),
            prefix=prefix,
            columns=_list_or_none(columns),
        )

    async def export_text(
        self,
        *,
        format: Optional[str] = None,
        namespaces: Optional[Sequence[str]] = None,
        prefix: Optional[str] = None,
        columns: Optional[Sequence[str]] = None,
    ) -> str:
        """A snapshot as text. See :meth:`Store.export_text`."""
        return await self._run(
            self._store.export_text,
            format=format,
            namespaces=_list_or_none(namespaces),
            prefix=prefix,
            columns=_list_or_none(columns),
        )

    async def import_(
        self,
        path: PathLike,
        *,
        format: Optional[str] = None,
        mode: str = "merge",
        check_versions: bool = False,
        skip_conflicts: bool = False,
    ) -> Dict[str, Any]:
        """Reads a snapshot file in one commit. See :meth:`Store.import_`."""
        return await self._run(
            self._store.import_,
            path,
            format=format,
            mode=mode,
            check_versions=check_versions,
            skip_conflicts=skip_conflicts,
        )

    async def import_text(
        self,
        text: Union[str, bytes],
        *,
        format: Optional[str] = None,
        mode: str = "merge",
        check_versions: bool = False,
        skip_conflicts: bool = False,
    ) -> Dict[str, Any]:
        """Reads a snapshot from text. See :meth:`Store.import_text`."""
        data = text.encode() if isinstance(text, str) else text
        return await self._run(
            self._store.import_text,
            data,
            format=format,
            mode=mode,
            check_versions=check_versions,
            skip_conflicts=skip_conflicts,
        )

    async def import_legacy(
        self,
        path: PathLike,
        namespace: str,
        *,
        normalize: Iterable[str] = (),
        merge_collisions: bool = False,
    ) -> Dict[str, Any]:
        """Reads a hand-rolled state file. See :meth:`Store.import_legacy`."""
        return await self._run(
            self._store.import_legacy,
            path,
            namespace,
            normalize=list(normalize),
            merge_collisions=merge_collisions,
        )

    async def backup(self, dest: PathLike) -> Dict[str, Any]:
        """An online backup into ``dest``. See :meth:`Store.backup`."""
        return await self._run(self._store.backup, dest)

    async def stats(self) -> Dict[str, Any]:
        """What this handle has done since it was opened."""
        return await self._run(self._store.stats)

    async def checkpoint(self) -> None:
        """Makes the state durable now."""
        await self._run(self._store.checkpoint)

    async def close(self) -> None:
        """Closes the store and stops the worker threads."""
        if os.getpid() != self._pid:
            await self._run(lambda: None)  # raises ForkError
        if self._executor_closed:
            return
        try:
            await self._run(self._store.close)
        finally:
            self._executor_closed = True
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> "AsyncStore":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncStore({self._store!r})"


def _native_lease(lease: Optional["AsyncLease"]) -> Optional[Lease]:
    if lease is None or isinstance(lease, Lease):
        return lease
    return lease.lease


class AsyncWatcher(AsyncIterator[Union[Change, Progress]]):
    """What :meth:`AsyncStore.watch` returns: an async iterator of
    :class:`Change` (and :class:`Progress`, when asked for), and an async
    context manager that ends the watch at its end.

    The watch opens at the first iteration (or on entering ``async with``).
    Its waits run in a thread of its own: a watch that waits for hours holds
    none of the store's worker threads, and the event loop never waits.
    """

    def __init__(self, store: AsyncStore, open_watch: Callable[[], Watcher]) -> None:
        self._store = store
        self._open = open_watch
        self._watcher: Optional[Watcher] = None
        self._pool: Optional[ThreadPoolExecutor] = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the watch ended (closed, or after its error)."""
        return self._closed or (self._watcher is not None and self._watcher.closed)

    async def _opened(self) -> Watcher:
        if self._watcher is None:
            watcher = await self._store._run(self._open)
            if self._closed:
                watcher.close()
            self._watcher = watcher
        return self._watcher

    def __aiter__(self) -> "AsyncWatcher":
        return self

    async def __anext__(self) -> Union[Change, Progress]:
        if self._closed:
            raise StopAsyncIteration
        watcher = await self._opened()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="statelog-watch"
            )
        loop = asyncio.get_running_loop()
        while True:
            # A cancelled wait leaves what it finds in the watcher, for the
            # next iteration.
            await loop.run_in_executor(self._pool, watcher._wait, None)
            ended, item = watcher._take()
            if ended:
                await self.aclose()
                raise StopAsyncIteration
            if item is not None:
                return item

    async def aclose(self) -> None:
        """Ends the watch; iterating goes on no further."""
        self._close()

    def _close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    async def __aenter__(self) -> "AsyncWatcher":
        await self._opened()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not self._closed:
            self._close()


class AsyncLock:
    """What :meth:`AsyncStore.lock` returns: ``async with`` takes the lock and
    gives its fencing token; the end of the block gives it back (also on an
    exception or a cancellation). See :class:`Lock`."""

    def __init__(self, store: AsyncStore, lock: Lock) -> None:
        self._store = store
        self.lock = lock  #: the blocking lock underneath

    @property
    def token(self) -> Optional[int]:
        """The fencing token while held, else None."""
        return self.lock.token

    @property
    def lost(self) -> bool:
        """True when a keep-alive found the lease ended: the lock is gone."""
        return self.lock.lost

    async def acquire(self) -> int:
        """Takes the lock; its fencing token."""
        taking = self._store._submit(self.lock.acquire)
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The take goes on in its thread: give the lock back once it is
            # taken, since nobody will hold it.
            def release(done: "asyncio.Future[int]") -> None:
                if not done.cancelled() and done.exception() is None:
                    self._store._submit(self.lock.release)

            taking.add_done_callback(release)
            raise

    async def release(self) -> None:
        """Gives the lock back and ends its lease."""
        await asyncio.shield(self._store._submit(self.lock.release))

    async def __aenter__(self) -> int:
        return await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"Async{self.lock!r}"


class AsyncLease:
    """A lease for asyncio code, from :meth:`AsyncStore.lease`: the methods of
    :class:`Lease` as coroutines; ``async with`` revokes it at the end."""

    def __init__(self, store: AsyncStore, lease: Lease) -> None:
        self._store = store
        self.lease = lease  #: the blocking lease underneath

    @property
    def id(self) -> int:
        """The lease's id."""
        return self.lease.id

    @property
    def ttl(self) -> float:
        """Its TTL in seconds."""
        return self.lease.ttl

    async def keep_alive(self) -> None:
        """Keeps it alive: its full TTL from now."""
        await self._store._run(self.lease.keep_alive)

    async def revoke(self) -> None:
        """Ends it now, with its locks and the records bound to it."""
        await self._store._run(self.lease.revoke)

    async def lock(self, name: str, *, wait: Optional[float] = None) -> int:
        """Takes lock ``name`` under this lease; its fencing token."""
        return await self._store._run(self.lease.lock, name, wait=wait)

    async def unlock(self, name: str, token: int) -> None:
        """Gives lock ``name`` back."""
        await self._store._run(self.lease.unlock, name, token)

    async def __aenter__(self) -> "AsyncLease":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.revoke()

    def __repr__(self) -> str:
        return f"Async{self.lease!r}"


def _plain_function(what: str, fn: Callable[..., Any]) -> None:
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"the function given to {what} must be a plain function, not a coroutine "
            "function: it runs in a worker thread, possibly several times (once per "
            "conflict); do any awaiting before or after the call"
        )


def _list_or_none(items: Optional[Sequence[str]]) -> Optional[List[str]]:
    return None if items is None else list(items)


def _take(iterator: Iterator[T], n: int) -> List[T]:
    return list(itertools.islice(iterator, n))


class _BlockingIterator(AsyncIterator[T]):
    """An async iterator over a blocking one: the blocking iterator is made
    and advanced in the store's threads, ``BATCH`` items per trip."""

    def __init__(
        self,
        run: Callable[..., Any],
        make: Callable[[], Iterator[T]],
    ) -> None:
        self._run = run
        self._make = make
        self._iterator: Optional[Iterator[T]] = None
        self._buffer: Deque[T] = collections.deque()
        self._done = False

    def __aiter__(self) -> "_BlockingIterator[T]":
        return self

    async def __anext__(self) -> T:
        if not self._buffer and not self._done:
            if self._iterator is None:
                self._iterator = await self._run(self._make)
            batch = await self._run(_take, self._iterator, BATCH)
            self._buffer.extend(batch)
            self._done = len(batch) < BATCH
        if not self._buffer:
            raise StopAsyncIteration
        return self._buffer.popleft()


class _Opening:
    """What :meth:`AsyncStore.open` returns: awaitable, and an async context
    manager that closes the store at its end."""

    def __init__(
        self, cls: type, path: PathLike, workers: int, options: Dict[str, Any]
    ) -> None:
        self._cls = cls
        self._path = path
        self._workers = workers
        self._options = options
        self._store: Optional[AsyncStore] = None

    async def _open(self) -> AsyncStore:
        loop = asyncio.get_running_loop()
        # Opening may wait for the store's lock: in a thread of its own, which
        # is not waited for (if this task is cancelled, the open finishes
        # there and the handle is dropped).
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="statelog-open")
        try:
            store = await loop.run_in_executor(
                pool, functools.partial(Store, self._path, **self._options)
            )
        finally:
            pool.shutdown(wait=False)
        return self._cls(store, workers=self._workers)

    def __await__(self) -> Generator[Any, None, AsyncStore]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(self, *exc: Any) -> None:
        if self._store is not None:
            await self._store.close()
