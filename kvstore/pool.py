"""Pool and AsyncPool: up to ``max_size`` connections shared by threads, or
by tasks.

Every request method of the clients (kvstore._commands.COMMANDS) is callable
on a pool and borrows a connection for that one call; ``pool.acquire()``
lends one for several calls. A borrower waits up to ``timeout`` seconds for a
connection to come back, then gets PoolTimeoutError. Idle connections are
reused last-in first-out, so the warm ones stay in use and the others may be
closed by the server's idle timeout without harm. A connection that broke
while lent (the client dropped its socket) is discarded, never put back.

Fork safety (Pool): in a child process, the at-fork handler gives the pool a
new lock and forgets every connection it had; the clients themselves drop
their inherited sockets (kvstore.client), so the child opens its own and
never writes on the parent's. AsyncPool is not fork-safe, like asyncio itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, TypedDict

from kvstore._address import parse_url
from kvstore._commands import (
    COMMANDS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    AsyncExtras,
    SyncExtras,
    check_timeout,
)
from kvstore._protocol import DEFAULT_MAX_PAYLOAD
from kvstore.aio import AsyncClient
from kvstore.client import Client
from kvstore.errors import InvalidArgumentError, KvConnectionError, PoolTimeoutError
from kvstore.lock import AsyncLock, Lock
from kvstore.pipeline import AsyncPipeline, Pipeline

__all__ = ["Pool", "AsyncPool", "PoolOptions"]


class PoolOptions(TypedDict, total=False):
    """The keyword options of Pool and AsyncPool (and their ``connect``), so a
    type checker refuses a misspelt one such as ``max_sise=``."""

    max_size: int
    timeout: float
    socket_timeout: float
    connect_timeout: float
    max_payload: int
    max_reply: int | None


if TYPE_CHECKING:
    from typing_extensions import Unpack


    # The forwarded methods are made at import (end of this module); type
    # checkers see them through the clients' method classes.
    from kvstore._commands import AsyncCommands as _AsyncMethods
    from kvstore._commands import Commands as _Methods
else:
    _Methods = _AsyncMethods = object


class _PoolBase:
    """The bookkeeping both pools share; the caller serialises access."""

    _client_class: type

    def __init__(self, url: str, *, max_size: int = 10, timeout: float = 5.0,
                 socket_timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, max_reply: int | None = None) -> None:
        self.address = parse_url(url)
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise InvalidArgumentError(f"max_size must be an int >= 1, not {max_size!r}")
        self.max_size = max_size
        self.timeout = check_timeout("timeout", timeout)
        self._url = url
        self._client_options: dict[str, Any] = {"timeout": socket_timeout, "connect_timeout": connect_timeout,
                                "max_payload": max_payload, "max_reply": max_reply}
        # What a pipeline of the pool encodes by (kvstore.pipeline).
        self.max_payload = max_payload
        self.connect_timeout = connect_timeout
        # Bad client options fail here, not at the first call.
        self._client_class(url, **self._client_options)
        self._forget()
        self._closed = False

    def _forget(self) -> None:
        self._idle: list = []      # connections ready for use, most recent last
        self._lent: set = set()    # connections out with a borrower
        self._size = 0             # idle + lent + being created

    def _take(self) -> Any:
        """An idle client, a new one if the pool may grow, or None when full."""
        if self._closed:
            raise KvConnectionError(f"pool for {self.address} is closed")
        if self._idle:
            client = self._idle.pop()
        elif self._size < self.max_size:
            client = self._client_class(self._url, **self._client_options)
            self._size += 1
        else:
            return None
        self._lent.add(client)
        return client

    def _put(self, client: Any) -> bool:
        """Take ``client`` back; True when it goes idle, False when the
        caller must close it (broken, pool closed, or not this pool's)."""
        if client not in self._lent:
            return False
        self._lent.remove(client)
        if self._closed or not client.connected:
            self._slot_freed()
            return False
        self._idle.append(client)
        return True

    def _slot_freed(self) -> None:
        self._size -= 1

    def _all_idle(self) -> list:
        """The idle clients, now no longer the pool's; the pool is closed."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        return idle

    def _exhausted(self) -> PoolTimeoutError:
        return PoolTimeoutError(f"no connection to {self.address} became free within "
                                f"{self.timeout:g}s (max_size={self.max_size})")

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.address} size={self._size}/{self.max_size}"
                f" idle={len(self._idle)}{' closed' if self._closed else ''}>")


class Pool(SyncExtras, _PoolBase, _Methods):
    """A thread-safe pool of :class:`kvstore.Client` connections to ``url``.

    ``max_size`` connections at most; ``timeout`` seconds to wait for one to
    be free. ``socket_timeout``, ``connect_timeout``, ``max_payload`` and
    ``max_reply`` are each Client's ``timeout``, ``connect_timeout``,
    ``max_payload`` and ``max_reply``.
    """

    _client_class = Client

    def __init__(self, url: str, **options: Unpack[PoolOptions]) -> None:
        super().__init__(url, **options)
        self._cond = threading.Condition(threading.Lock())
        _pools.add(self)

    def pipeline(self) -> Pipeline:
        """A pipeline whose ``execute()`` borrows one connection (kvstore.pipeline)."""
        return Pipeline(self)

    def _pipeline(self, data: bytes, ops: bytes, retry: bool, defaults: dict | None,
                  timeout: float | None = None) -> tuple[list, int]:
        client = self._borrow()
        try:
            return client._pipeline(data, ops, retry, defaults, timeout)
        finally:
            self._give_back(client)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Client]:
        """Lend one connection for the ``with`` block."""
        client = self._borrow()
        try:
            yield client
        finally:
            self._give_back(client)

    def lock(self, key: str | bytes, ttl: float, **options: Any) -> Lock:
        """A Lock on ``key`` whose every step borrows a connection."""
        return Lock(self, key, ttl, **options)

    def close(self) -> None:
        """Close the idle connections now and lent ones when given back;
        later calls raise KvConnectionError."""
        with self._cond:
            idle = self._all_idle()
            self._cond.notify_all()
        for client in idle:
            client.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _borrow(self) -> Client:
        with self._cond:
            client = self._take()
            if client is None:
                deadline = time.monotonic() + self.timeout
                while client is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._exhausted()
                    self._cond.wait(remaining)
                    client = self._take()
        return client

    def _give_back(self, client: Client) -> None:
        with self._cond:
            kept = self._put(client)
            self._cond.notify()
        if not kept:
            client.close()

    def _after_fork_in_child(self) -> None:
        # The lock may have been held by a thread that does not exist here.
        self._cond = threading.Condition(threading.Lock())
        self._forget()


class AsyncPool(AsyncExtras, _PoolBase, _AsyncMethods):
    """A pool of :class:`kvstore.AsyncClient` connections, for asyncio tasks;
    the methods are coroutines. ``await AsyncPool.connect(url)`` also checks
    that the server answers."""

    _client_class = AsyncClient

    def __init__(self, url: str, **options: Unpack[PoolOptions]) -> None:
        super().__init__(url, **options)
        # Borrowers waiting for a connection, first come first served. A waiter
        # gets a client, or None meaning "a slot is free: open a new one".
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    @classmethod
    async def connect(cls, url: str, **options: Unpack[PoolOptions]) -> AsyncPool:
        pool = cls(url, **options)
        try:
            async with pool.acquire() as client:
                await client.ping()
        except BaseException:
            await pool.close()
            raise
        return pool

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[AsyncClient]:
        """Lend one connection for the ``async with`` block."""
        client = await self._borrow()
        try:
            yield client
        finally:
            self._give_back(client)

    def lock(self, key: str | bytes, ttl: float, **options: Any) -> AsyncLock:
        """An AsyncLock on ``key`` whose every step borrows a connection."""
        return AsyncLock(self, key, ttl, **options)

    def pipeline(self) -> AsyncPipeline:
        """A pipeline whose ``await execute()`` borrows one connection."""
        return AsyncPipeline(self)

    async def _pipeline(self, data: bytes, ops: bytes, retry: bool, defaults: dict | None,
                        timeout: float | None = None) -> tuple[list, int]:
        client = await self._borrow()
        try:
            return await client._pipeline(data, ops, retry, defaults, timeout)
        finally:
            self._give_back(client)

    async def close(self) -> None:
        idle = self._all_idle()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(KvConnectionError(f"pool for {self.address} is closed"))
        for client in idle:
            await client.close()

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _borrow(self) -> AsyncClient:
        client = self._take()
        if client is not None:
            return client
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.timeout, _expire, waiter, self._exhausted)
        try:
            client = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Cancelled just as a client or a slot was handed over: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._slot_freed()
                else:
                    self._give_back(handed)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        if client is None:   # a free slot, already counted in _size
            client = self._client_class(self._url, **self._client_options)
            self._lent.add(client)
        return client

    def _give_back(self, client: AsyncClient) -> None:
        if self._put(client):
            waiter = self._next_waiter()
            if waiter is not None:
                self._lent.add(self._idle.pop())
                waiter.set_result(client)
        else:
            client._shutdown()

    def _slot_freed(self) -> None:
        waiter = self._next_waiter()
        if waiter is None:
            self._size -= 1
        else:
            waiter.set_result(None)

    def _next_waiter(self) -> asyncio.Future | None:
        """The first borrower still waiting, taken off the queue."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None


def _expire(waiter: asyncio.Future, error: Callable[[], Exception]) -> None:
    if not waiter.done():
        waiter.set_exception(error())


# -- forwarding: every client request method, borrowing a connection per call --

def _forward(client_class: type, name: str) -> Callable:
    command = getattr(client_class, name)

    @functools.wraps(command)
    def call(self: Pool, *args: Any, **kwargs: Any) -> Any:
        client = self._borrow()
        try:
            return command(client, *args, **kwargs)
        finally:
            self._give_back(client)

    return call


def _forward_async(client_class: type, name: str) -> Callable:
    command = getattr(client_class, name)

    @functools.wraps(command)
    async def call(self: AsyncPool, *args: Any, **kwargs: Any) -> Any:
        client = await self._borrow()
        try:
            return await command(client, *args, **kwargs)
        finally:
            self._give_back(client)

    return call


for _name in COMMANDS:
    setattr(Pool, _name, _forward(Client, _name))
    setattr(AsyncPool, _name, _forward_async(AsyncClient, _name))
del _name


_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _reset_pools_in_child() -> None:
    for pool in list(_pools):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_in_child)
