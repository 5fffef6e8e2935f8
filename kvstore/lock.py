"""Lock and AsyncLock: a lease on one key, built on SETNX with a random token.

The lock key is free when missing, and held by whoever has the token stored
in it until its ttl runs out:

    acquire   setnx(key, token, ttl)
    release   delete_if_equal(key, token)
    extend    cas(key, token, token, ttl)

Each step is one atomic operation on the server, so only the holder of the
current token can release or extend. The obvious "get, compare, delete" is
unsafe: between the get and the delete the lease can expire and another
holder take it, whose lock the delete would then remove; compare-and-delete
does both in one step, so a released lock leaves no key behind and is free
at once.

Every acquire draws a new token (``secrets``), so an old holder never acts on
a later lease. A lost lease is reported, never hidden: release() and extend()
raise LockNotOwnedError when the ttl ran out or someone else holds the key,
and so does leaving a ``with`` block whose lease expired in the meantime.

The lock only needs ``setnx``, ``delete_if_equal``, ``cas``, ``get`` and
``exists`` on its store: a Client, a Pool or an Engine (Lock); an
AsyncClient or AsyncPool (AsyncLock).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from kvstore.errors import InvalidArgumentError, LockError, LockNotOwnedError

__all__ = ["Lock", "AsyncLock"]

_DEFAULT: Any = object()


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


class _LockBase:
    __slots__ = ("store", "key", "ttl", "timeout", "poll_interval", "token")

    def __init__(self, store: Any, key: str | bytes, ttl: float, *,
                 timeout: float | None = None, poll_interval: float = 0.05) -> None:
        self.store = store
        self.key = key
        self.ttl = _positive("ttl", ttl)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, (int, float)) or not timeout >= 0):
            raise InvalidArgumentError(f"timeout must be None or >= 0 seconds, not {timeout!r}")
        self.timeout = timeout
        self.poll_interval = _positive("poll_interval", poll_interval)
        self.token: str | None = None   # the current lease's token; None when not acquired

    def __repr__(self) -> str:
        state = "acquired" if self.token is not None else "not acquired"
        return f"<{type(self).__name__} {self.key!r} ttl={self.ttl:g} {state}>"

    def _start(self, timeout: float | None) -> tuple[str, float | None]:
        """A fresh token and the deadline of an acquire."""
        if self.token is not None:
            raise LockError(f"lock {self.key!r} is already acquired by this holder "
                            "(locks are not reentrant)")
        if timeout is _DEFAULT:
            timeout = self.timeout
        return secrets.token_hex(16), None if timeout is None else time.monotonic() + timeout

    def _pause(self, deadline: float | None) -> float:
        """Seconds to wait before the next attempt; 0 when the deadline passed."""
        if deadline is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, deadline - time.monotonic()))

    def _end(self, action: str) -> str:
        """The token of the lease being released; LockError when there is none."""
        if self.token is None:
            raise LockError(f"cannot {action} lock {self.key!r}: it was not acquired")
        return self.token

    def _lost(self, action: str) -> LockNotOwnedError:
        return LockNotOwnedError(
            f"cannot {action} lock {self.key!r}: the lease expired or another holder took it")

    def _timed_out(self) -> LockError:
        return LockError(f"lock {self.key!r} not acquired within {self.timeout:g}s")


class Lock(_LockBase):
    """A lock on ``key`` of a Client, Pool or Engine, held for at most ``ttl``
    seconds unless extended. ``with lock:`` acquires (waiting up to
    ``timeout``, None: until acquired, polling every ``poll_interval``) and
    releases."""

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float | None = _DEFAULT) -> bool:
        """Take the lock; False when ``blocking`` is false and it is held, or
        when ``timeout`` seconds (default: the lock's) passed."""
        token, deadline = self._start(timeout)
        store, key, ttl = self.store, self.key, self.ttl
        while not store.setnx(key, token, ttl):
            pause = self._pause(deadline) if blocking else 0.0
            if not pause:
                return False
            time.sleep(pause)
        self.token = token
        return True

    def release(self) -> None:
        """Free the lock; LockNotOwnedError when the lease was lost."""
        token = self._end("release")
        self.token = None
        if not self.store.delete_if_equal(self.key, token):
            raise self._lost("release")

    def extend(self, ttl: float | None = None) -> None:
        """Hold the lock for ``ttl`` seconds from now (default: the lock's
        ttl); LockNotOwnedError when the lease was lost."""
        token = self._end("extend")
        if not self.store.cas(self.key, token, token, self.ttl if ttl is None else ttl):
            raise self._lost("extend")

    def owned(self) -> bool:
        """Whether this holder's lease is still current."""
        return self.token is not None and self.store.get(self.key) == self.token

    def locked(self) -> bool:
        """Whether anyone holds the lock now."""
        return bool(self.store.exists(self.key))

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise self._timed_out()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class AsyncLock(_LockBase):
    """Lock for an AsyncClient or AsyncPool: the same methods as coroutines,
    and ``async with``."""

    __slots__ = ()

    async def acquire(self, blocking: bool = True, timeout: float | None = _DEFAULT) -> bool:
        token, deadline = self._start(timeout)
        store, key, ttl = self.store, self.key, self.ttl
        while not await store.setnx(key, token, ttl):
            pause = self._pause(deadline) if blocking else 0.0
            if not pause:
                return False
            await asyncio.sleep(pause)
        self.token = token
        return True

    async def release(self) -> None:
        token = self._end("release")
        self.token = None
        if not await self.store.delete_if_equal(self.key, token):
            raise self._lost("release")

    async def extend(self, ttl: float | None = None) -> None:
        token = self._end("extend")
        if not await self.store.cas(self.key, token, token, self.ttl if ttl is None else ttl):
            raise self._lost("extend")

    async def owned(self) -> bool:
        return self.token is not None and await self.store.get(self.key) == self.token

    async def locked(self) -> bool:
        return bool(await self.store.exists(self.key))

    async def __aenter__(self) -> AsyncLock:
        if not await self.acquire():
            raise self._timed_out()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()
