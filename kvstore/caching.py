"""``@cached``: memoize a function's results in a kvstore, with single-flight.

    @kvstore.cached(engine, ttl=60)
    def profile(user_id): ...

    @kvstore.cached(async_pool, ttl=60, namespace="profiles")
    async def profile(user_id): ...

A call looks its key up in the store; on a miss it runs the function, stores
the result (with ``ttl``) and returns it. Single-flight means that callers
who miss the same key at the same time wait for ONE computation instead of
stampeding the backend:

- threads of one process share an in-process flight (a mutex-guarded table of
  keys being computed; followers wait on the leader's event and get its result
  or its exception);
- asyncio tasks share a flight per event loop (followers await the leader's
  future; if the leader is cancelled, a follower takes over);
- processes sharing a server take the store's lock on ``<key>:lock`` before
  computing and look the key up again once they hold it, so a second process
  finds the first one's result instead of computing it again. The lock's
  ``lock_ttl`` bounds how long the others wait for a process that died while
  computing. An in-process Engine needs no such lock and takes none.

Values: a result must be a value kvstore stores (None, bool, int, float,
Decimal, str, bytes, list, dict with str keys; a tuple comes back as a list)
unless ``serializer=`` is given: any object with ``dumps``/``loads`` (the
``pickle`` and ``json`` modules fit), whose output is stored instead. An
unsupported result raises UnsupportedValueError naming the function, and
nothing is stored. A stored None is a hit: misses are told apart by a sentinel,
not by the value.

Keys: ``key=`` is a callable taking the function's arguments and returning the
key (str or bytes). The default is the function's module and qualified name
followed by the ``repr`` of its arguments, which is deterministic across
processes for the usual argument types (numbers, strings, tuples); give
``key=`` for arguments whose repr is not (objects showing their address).
Default keys longer than 200 bytes are replaced by a BLAKE2b digest.
``namespace="x"`` puts ``x:`` before every key, as ``Engine.namespace`` does.

Counters: ``f.cache_info()`` returns ``CacheInfo(hits, misses, shared)``:
answered from the store, computed by this call, answered by another caller's
computation. ``f.invalidate(*args, **kwargs)`` deletes one call's entry.

Eviction and TTL: an entry lives for ``ttl`` seconds (None: until deleted or
evicted). Under a memory limit the store may evict an entry before its ttl;
the next call is then a miss and recomputes, exactly as after expiry.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import threading
import weakref
from typing import Any, Callable, NamedTuple, TypeVar

from kvstore._engine import KeySpace
from kvstore.errors import InvalidArgumentError, LockNotOwnedError, UnsupportedValueError

__all__ = ["cached", "CacheInfo"]

F = TypeVar("F", bound=Callable[..., Any])

_MISS: Any = object()            # get()'s default: a stored None is a hit
DEFAULT_LOCK_TTL = 30.0          # seconds a crashed computer can hold up other processes
LONG_KEY_BYTES = 200             # default keys longer than this are hashed


class CacheInfo(NamedTuple):
    hits: int      # answered from the store
    misses: int    # ran the function
    shared: int    # waited for another caller's computation


class _Counters:
    __slots__ = ("hits", "misses", "shared", "lock")

    def __init__(self) -> None:
        self.hits = self.misses = self.shared = 0
        self.lock = threading.Lock()

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def info(self) -> CacheInfo:
        with self.lock:
            return CacheInfo(self.hits, self.misses, self.shared)


def _default_key(func: Callable[..., Any]) -> Callable[..., str]:
    name = f"{func.__module__}.{func.__qualname__}"

    def make(*args: Any, **kwargs: Any) -> str:
        text = f"{name}{args!r}" if not kwargs else f"{name}{args!r}{sorted(kwargs.items())!r}"
        if len(text.encode("utf-8", "surrogatepass")) > LONG_KEY_BYTES:
            digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20)
            return f"{name}#{digest.hexdigest()}"
        return text

    return make


def _is_async_store(store: Any) -> bool:
    # The async clients' methods are plain functions returning awaitables,
    # so the class tells, not inspect.
    if isinstance(store, KeySpace):
        return False
    from kvstore.aio import AsyncClient
    from kvstore.pool import AsyncPool
    return isinstance(store, (AsyncClient, AsyncPool))


class _ThreadFlight:
    """One computation in progress, shared by the threads that want its key."""

    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Memo:
    """What one decorated function shares between its calls."""

    def __init__(self, store: Any, func: Callable[..., Any], ttl: float | None,
                 key: Callable[..., str | bytes] | None, namespace: str | None,
                 serializer: Any, lock_ttl: float) -> None:
        self.store = store
        self.func = func
        self.ttl = ttl
        self.make_key = key if key is not None else _default_key(func)
        self.prefix = b"" if not namespace else namespace.encode("utf-8") + b":"
        self.serializer = serializer
        self.lock_ttl = lock_ttl
        # Only a store other processes share needs the cross-process lock.
        self.shared_store = not isinstance(store, KeySpace)
        self.counters = _Counters()
        self.mutex = threading.Lock()
        self.thread_flights: dict[bytes, _ThreadFlight] = {}
        self.task_flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                     dict[bytes, asyncio.Future]] = (
            weakref.WeakKeyDictionary())

    # -- keys and values

    def key_of(self, args: tuple, kwargs: dict) -> bytes:
        key = self.make_key(*args, **kwargs)
        if isinstance(key, str):
            key = key.encode("utf-8", "surrogatepass")
        elif not isinstance(key, bytes):
            raise InvalidArgumentError(
                f"cached key function must return str or bytes, not {type(key).__name__}")
        return self.prefix + key

    def encode(self, result: Any) -> Any:
        return result if self.serializer is None else self.serializer.dumps(result)

    def decode(self, stored: Any) -> Any:
        return stored if self.serializer is None else self.serializer.loads(stored)

    def unsupported(self, error: UnsupportedValueError) -> UnsupportedValueError:
        return UnsupportedValueError(
            f"cached: {self.func.__qualname__}() returned a value kvstore cannot store "
            f"({error}); pass serializer=pickle (or json) to cached()")

    # -- the synchronous path

    def call(self, args: tuple, kwargs: dict) -> Any:
        key = self.key_of(args, kwargs)
        stored = self.store.get(key, _MISS)
        if stored is not _MISS:
            self.counters.add("hits")
            return self.decode(stored)
        with self.mutex:
            flight = self.thread_flights.get(key)
            leader = flight is None
            if leader:
                flight = self.thread_flights[key] = _ThreadFlight()
        assert flight is not None
        if not leader:
            flight.done.wait()
            self.counters.add("shared")
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = self._fill(key, args, kwargs)
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self.mutex:
                del self.thread_flights[key]
            flight.done.set()

    def _fill(self, key: bytes, args: tuple, kwargs: dict) -> Any:
        if not self.shared_store:
            return self._compute(key, args, kwargs)
        lock = self.store.lock(key + b":lock", self.lock_ttl)
        with _Released(lock):
            lock.acquire()
            stored = self.store.get(key, _MISS)    # another process may have filled it
            if stored is not _MISS:
                self.counters.add("shared")
                return self.decode(stored)
            return self._compute(key, args, kwargs)

    def _compute(self, key: bytes, args: tuple, kwargs: dict) -> Any:
        self.counters.add("misses")
        result = self.func(*args, **kwargs)
        try:
            self.store.set(key, self.encode(result), self.ttl)
        except UnsupportedValueError as exc:
            raise self.unsupported(exc) from None
        return result

    # -- the asyncio path

    async def acall(self, args: tuple, kwargs: dict) -> Any:
        key = self.key_of(args, kwargs)
        stored = await self._aget(key)
        if stored is not _MISS:
            self.counters.add("hits")
            return self.decode(stored)
        flights = self.task_flights.setdefault(asyncio.get_running_loop(), {})
        while True:
            flight = flights.get(key)
            if flight is None:
                break
            try:
                result = await asyncio.shield(flight)
            except asyncio.CancelledError:
                if flight.cancelled():
                    continue          # the leader was cancelled: take over
                raise                 # this caller was cancelled
            self.counters.add("shared")
            return result
        flight = flights[key] = asyncio.get_running_loop().create_future()
        try:
            result = await self._afill(key, args, kwargs)
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()        # retrieved: no "never retrieved" warning without followers
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            del flights[key]

    async def _aget(self, key: bytes) -> Any:
        if _is_async_store(self.store):
            return await self.store.get(key, _MISS)
        return self.store.get(key, _MISS)

    async def _afill(self, key: bytes, args: tuple, kwargs: dict) -> Any:
        if not self.shared_store:
            return await self._acompute(key, args, kwargs)
        lock = self.store.lock(key + b":lock", self.lock_ttl)
        await lock.acquire()
        try:
            stored = await self.store.get(key, _MISS)
            if stored is not _MISS:
                self.counters.add("shared")
                return self.decode(stored)
            return await self._acompute(key, args, kwargs)
        finally:
            try:
                await lock.release()
            except LockNotOwnedError:
                pass      # the lease ran out while computing: the result is stored anyway

    async def _acompute(self, key: bytes, args: tuple, kwargs: dict) -> Any:
        self.counters.add("misses")
        result = await self.func(*args, **kwargs)
        try:
            if _is_async_store(self.store):
                await self.store.set(key, self.encode(result), self.ttl)
            else:
                self.store.set(key, self.encode(result), self.ttl)
        except UnsupportedValueError as exc:
            raise self.unsupported(exc) from None
        return result


class _Released:
    """Releases a held lock at the end of a block; a lease that ran out while
    the function computed is not an error (its result is stored anyway)."""

    __slots__ = ("lock",)

    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        if self.lock.token is not None:
            try:
                self.lock.release()
            except LockNotOwnedError:
                pass


def cached(store: Any, ttl: float | None = None, *,
           key: Callable[..., str | bytes] | None = None,
           namespace: str | None = None,
           serializer: Any = None,
           lock_ttl: float = DEFAULT_LOCK_TTL) -> Callable[[F], F]:
    """Memoize a plain or ``async`` function in ``store`` (an Engine or
    namespace view, a Client, an AsyncClient or a pool) for ``ttl`` seconds,
    with single-flight (see the module docstring)."""
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                            or not ttl > 0):
        raise InvalidArgumentError(f"ttl must be None or a positive number of seconds, not {ttl!r}")
    if serializer is not None and not (hasattr(serializer, "dumps") and hasattr(serializer, "loads")):
        raise InvalidArgumentError("serializer must have dumps() and loads() (pickle and json do)")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise InvalidArgumentError(f"namespace must be a non-empty str, not {namespace!r}")

    def decorate(func: F) -> F:
        memo = _Memo(store, func, ttl, key, namespace, serializer, lock_ttl)
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await memo.acall(args, kwargs)
            wrapper: Any = async_wrapper
        else:
            if _is_async_store(store):
                raise InvalidArgumentError(
                    f"cached: {func.__qualname__} is a plain function but the store is "
                    "asynchronous; decorate an async function, or use a blocking store")

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return memo.call(args, kwargs)

        wrapper.cache_info = memo.counters.info

        def invalidate(*args: Any, **kwargs: Any) -> Any:
            """Delete the entry of one call (awaitable on an async store)."""
            return store.delete(memo.key_of(args, kwargs))

        wrapper.invalidate = invalidate
        return wrapper  # type: ignore[no-any-return]

    return decorate
