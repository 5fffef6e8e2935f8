"""The client API, written once for Client and AsyncClient.

Every public method encodes its request with the compiled ``RequestWriter``
(kvstore._protocol: key rules, namespace prefix, ttl rule, size limit) and
hands it to ``self._call`` or ``self._call_frames``, the only I/O the clients
provide. Client's return the answer; AsyncClient's return an awaitable. So
both clients have the same methods, arguments, results, errors, batch
splitting and retry policy by construction, and the pools forward exactly
:data:`COMMANDS`.

Invariant: the writer is empty between calls. A method encodes, then its
``_call`` takes the bytes at once, before any I/O or ``await``; when encoding
a multi-frame batch fails half-way, the frames already written are dropped, so
a bad item sends nothing.

Retry policy (issue 3, "What users of redis-py trip over"): READ requests are
sent once more, on a fresh connection, after a connection error (not after a
timeout: a server that does not answer would only be waited for twice). WRITE
requests are never resent, since they may have reached the server.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Union

from kvstore._address import Address, parse_url
from kvstore._protocol import (
    DEFAULT_MAX_PAYLOAD,
    MAX_BATCH_KEYS,
    OP_CAS,
    OP_CONFIG_GET,  # -- eviction (issue 12)
    OP_CONFIG_SET,  # -- eviction (issue 12)
    OP_DECR,
    OP_DEL,
    OP_DELETE_IF_EQUAL,
    OP_EXISTS,
    OP_EXPIRE,
    OP_FLUSH,
    OP_GET,
    OP_GETDEL,
    OP_GETSET,
    OP_INCR,
    OP_INFO,
    OP_MDEL,
    OP_MEXISTS,
    OP_MGET,
    OP_MSET,
    OP_PERSIST,
    OP_PING,
    OP_SCAN,
    OP_SET,
    OP_SETNX,
    OP_SNAPSHOT,  # -- durability (issue 11)
    OP_TTL,
    RequestWriter,
    batch_keys,
    batch_pairs,
)
from kvstore.errors import (
    InvalidArgumentError,
    KvConnectionError,
    KvTimeoutError,
    PersistenceError,
    ValueTooLargeError,
)

__all__ = ["READ", "WRITE", "COMMANDS", "ClientBase", "Commands", "AsyncCommands",
           "may_retry", "check_timeout", "concat", "total", "nothing"]

# The `retry` flag every request carries.
READ = True
WRITE = False

# Finite by default, so no call can hang forever (seconds).
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0


def may_retry(retry: bool, exc: KvConnectionError) -> bool:
    """Whether a request that failed with ``exc`` is sent once more."""
    return retry and not isinstance(exc, KvTimeoutError)


def call_timeout(value: float | None) -> float | None:
    """A call's ``timeout=``: None (the client's), or as check_timeout."""
    return None if value is None else check_timeout("timeout", value)


def check_timeout(name: str, value: object) -> float:
    """A timeout option: a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 < value < math.inf
    ):
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


# Twice the server's default request limit: any value a default server takes
# comes back, with room for batches, while a broken or hostile server cannot
# make the client buffer gigabytes. Raise it for larger values or batches.
DEFAULT_MAX_REPLY = 2 * DEFAULT_MAX_PAYLOAD


def reply_limit(max_reply: object) -> int:
    """The ``max_reply`` option: bytes of payload a reply may declare before
    the client refuses it from its header (ReplyTooLargeError); None:
    DEFAULT_MAX_REPLY."""
    if max_reply is None:
        return DEFAULT_MAX_REPLY
    if isinstance(max_reply, bool) or not isinstance(max_reply, int) or max_reply < 1:
        raise InvalidArgumentError(f"max_reply must be a positive int (bytes), not {max_reply!r}")
    return max_reply


# How the answers of a batch split into several frames combine.
def concat(parts: list[list]) -> list:
    return [item for part in parts for item in part]


def total(parts: list[int]) -> int:
    return sum(parts)


def nothing(parts: list[None]) -> None:
    return None


class ClientBase:
    """What Client and AsyncClient share besides the methods: options, the
    request writer, and the hooks each client implements:
    ``_call(op, retry, missing=None)`` for one frame, answering ``missing`` in
    place of a NULL reply; ``_call_frames(op, retry, count, combine)`` for
    ``count`` frames of one op whose answers ``combine`` merges; the
    ``connected`` property; and ``_lock_class`` (Lock or AsyncLock).
    """

    __slots__ = ("address", "timeout", "connect_timeout", "max_payload", "max_reply", "_writer",
                 "_closed")

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, max_reply: int | None = None) -> None:
        self.address: Address = parse_url(url)
        self.timeout = check_timeout("timeout", timeout)
        self.connect_timeout = check_timeout("connect_timeout", connect_timeout)
        self._writer = RequestWriter(self.address.prefix, max_payload)
        self.max_payload = max_payload
        self.max_reply = reply_limit(max_reply)
        self._closed = False

    # -- what each client provides -------------------------------------------

    _lock_class: Any

    @property
    def connected(self) -> bool:
        """Whether a connection is open (one is opened on demand)."""
        raise NotImplementedError

    def _call(self, op: int, retry: bool, missing: Any = None,
              timeout: float | None = None) -> Any:
        return self._send(self._writer.take(), op, retry, missing, timeout)

    def _call_frames(self, op: int, retry: bool, count: int, combine: Callable,
                     timeout: float | None = None) -> Any:
        return self._send_frames(self._writer.take(), op, retry, count, combine, timeout)

    def _send(self, data: bytes, op: int, retry: bool, missing: Any,
              timeout: float | None) -> Any:
        """Send one encoded frame of ``op``; its answer (``missing`` for NULL),
        within ``timeout`` seconds (None: the client's timeout)."""
        raise NotImplementedError

    def _send_frames(self, data: bytes, op: int, retry: bool, count: int,
                     combine: Callable, timeout: float | None) -> Any:
        """Send ``count`` encoded frames of ``op``; their answers combined."""
        raise NotImplementedError

    def __repr__(self) -> str:
        namespace = f"/{self.address.namespace}" if self.address.namespace else ""
        state = "closed" if self._closed else "connected" if self.connected else "idle"
        return f"<{type(self).__name__} {self.address}{namespace} {state}>"

    def _closed_error(self) -> KvConnectionError:
        return KvConnectionError(f"client for {self.address} is closed")


Key = Union[str, bytes]


class Commands(ClientBase):
    """Every public request method, written once: Client's as they are,
    AsyncClient's returning a coroutine (see AsyncCommands for their types)."""

    __slots__ = ()

    def get(self, key: Key, default: Any = None, *, timeout: float | None = None) -> Any:
        """The value stored at ``key``, or ``default`` when there is none."""
        self._writer.get(key)
        return self._call(OP_GET, READ, default, timeout)

    def set(self, key: Key, value: Any, ttl: float | None = None, *, timeout: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl`` seconds (None: never)."""
        self._writer.set(key, value, ttl)
        return self._call(OP_SET, WRITE, None, timeout)

    def setnx(self, key: Key, value: Any, ttl: float | None = None, *, timeout: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True when stored."""
        self._writer.setnx(key, value, ttl)
        return self._call(OP_SETNX, WRITE, None, timeout)

    def delete(self, key: Key, *, timeout: float | None = None) -> bool:
        """Remove ``key``; True when it existed."""
        self._writer.delete(key)
        return self._call(OP_DEL, WRITE, None, timeout)

    def exists(self, key: Key, *, timeout: float | None = None) -> bool:
        """Whether ``key`` holds a value."""
        self._writer.exists(key)
        return self._call(OP_EXISTS, READ, None, timeout)

    def incr(self, key: Key, delta: int = 1, *, timeout: float | None = None) -> int:
        """Add ``delta`` to the int at ``key`` (missing: 0) and return the result.
        Never resent after a connection error: it may have been applied."""
        self._writer.incr(key, delta)
        return self._call(OP_INCR, WRITE, None, timeout)

    def decr(self, key: Key, delta: int = 1, *, timeout: float | None = None) -> int:
        """Subtract ``delta`` from the int at ``key`` (missing: 0); the result."""
        self._writer.decr(key, delta)
        return self._call(OP_DECR, WRITE, None, timeout)

    def cas(self, key: Key, expected: Any, new: Any, ttl: float | None = None, *, timeout: float | None = None) -> bool:
        """Store ``new`` if ``key`` holds exactly ``expected`` (same type and
        encoding); True when swapped."""
        self._writer.cas(key, expected, new, ttl)
        return self._call(OP_CAS, WRITE, None, timeout)

    def expire(self, key: Key, ttl: float, *, timeout: float | None = None) -> bool:
        """Make ``key`` expire ``ttl`` seconds from now; True when it exists."""
        self._writer.expire(key, ttl)
        return self._call(OP_EXPIRE, WRITE, None, timeout)

    def ttl(self, key: Key, *, timeout: float | None = None) -> float | None:
        """Seconds left before ``key`` expires (ms precision); None when it
        has no expiry or does not exist."""
        self._writer.ttl(key)
        return self._call(OP_TTL, READ, None, timeout)

    def persist(self, key: Key, *, timeout: float | None = None) -> bool:
        """Drop the expiry of ``key``; True when it exists and had one."""
        self._writer.persist(key)
        return self._call(OP_PERSIST, WRITE, None, timeout)

    def getdel(self, key: Key, default: Any = None, *, timeout: float | None = None) -> Any:
        """Remove ``key`` and return the value it held (``default`` when missing)."""
        self._writer.getdel(key)
        return self._call(OP_GETDEL, WRITE, default, timeout)

    def getset(self, key: Key, value: Any, ttl: float | None = None, *, timeout: float | None = None) -> Any:
        """Store ``value`` at ``key``; the value it held before, or None."""
        self._writer.getset(key, value, ttl)
        return self._call(OP_GETSET, WRITE, None, timeout)

    def delete_if_equal(self, key: Key, expected: Any, *, timeout: float | None = None) -> bool:
        """Remove ``key`` only if it holds exactly ``expected`` (compare-and-delete,
        one atomic step); True when removed."""
        self._writer.delete_if_equal(key, expected)
        return self._call(OP_DELETE_IF_EQUAL, WRITE, None, timeout)

    def scan(self, cursor: int = 0, match: str | bytes | None = None,
             count: int = 100, *, timeout: float | None = None) -> tuple[int, list[bytes]]:
        """One step of a scan of this namespace: ``(next_cursor, keys)``, keys as
        bytes without the namespace prefix; next_cursor 0 when done (as Engine.scan)."""
        self._writer.scan(cursor, match, count)
        return self._call(OP_SCAN, READ, None, timeout)

    def mget(self, keys: Iterable[Key], *, timeout: float | None = None) -> list:
        """The values of ``keys`` in order, None where missing."""
        return self._batch(OP_MGET, READ, self._writer.mget, batch_keys(keys), concat,
                           timeout=timeout)

    def mset(self, mapping: Mapping | Iterable[tuple], ttl: float | None = None, *, timeout: float | None = None) -> None:
        """Store every (key, value) pair, all-or-nothing. Every key and value
        is checked before anything is sent; a batch over 65,535 pairs (or over
        the frame size limit) goes as several frames, each all-or-nothing on
        its own but not atomic together. ``mapping``: anything with
        ``.items()`` or an iterable of pairs (Engine.mset's rule)."""
        return self._batch(OP_MSET, WRITE, self._writer.mset, batch_pairs(mapping), nothing, ttl,
                           timeout=timeout)

    def mdel(self, keys: Iterable[Key], *, timeout: float | None = None) -> int:
        """Remove ``keys``; how many existed."""
        return self._batch(OP_MDEL, WRITE, self._writer.mdel, batch_keys(keys), total,
                           timeout=timeout)

    def mexists(self, keys: Iterable[Key], *, timeout: float | None = None) -> list[bool]:
        """Whether each of ``keys`` holds a value."""
        return self._batch(OP_MEXISTS, READ, self._writer.mexists, batch_keys(keys), concat,
                           timeout=timeout)

    def flush(self, *, timeout: float | None = None) -> int:
        """Remove every key of this client's namespace (every key without
        one); how many were removed."""
        self._writer.flush()
        return self._call(OP_FLUSH, WRITE, None, timeout)

    def ping(self, *, timeout: float | None = None) -> bool:
        """A round trip to the server; True."""
        self._writer.ping()
        return self._call(OP_PING, READ, None, timeout)

    def info(self, *, timeout: float | None = None) -> dict:
        """The engine's ``info()`` plus server figures (uptime, connections,
        calls per command, bytes in and out)."""
        self._writer.info()
        return self._call(OP_INFO, READ, None, timeout)

    # -- eviction (issue 12)
    def config_get(self, *, timeout: float | None = None) -> dict:
        """The server's limits: max_memory, max_keys, eviction, eviction_samples."""
        self._writer.config_get()
        return self._call(OP_CONFIG_GET, READ, None, timeout)

    def config_set(self, settings: Mapping[str, Any], *, timeout: float | None = None) -> None:
        """Change the server's limits at runtime, as Engine.configure() does
        (a lowered limit is evicted down to in bounded steps)."""
        self._writer.config_set(settings)
        return self._call(OP_CONFIG_SET, WRITE, None, timeout)
    # -- end eviction

    # -- durability (issue 11)
    def snapshot(self, *, timeout: float | None = None) -> int:
        """Start a snapshot on a server with --data-dir (like BGSAVE) and
        return at once: 1 when one started, 0 when one was already running.
        ``info()["snapshot_in_progress"]`` and ``last_snapshot_*``
        tell when it is done and how it went.
        ``Client.snapshot(wait=True)`` (SyncExtras) also waits for it to end."""
        self._writer.snapshot()
        return self._call(OP_SNAPSHOT, READ, None, timeout)   # a resend only snapshots again
    # -- end durability

    def lock(self, key: Key, ttl: float, *, timeout: float | None = None,
             poll_interval: float = 0.05) -> Any:
        """A lock on ``key`` held for at most ``ttl`` seconds: see kvstore.lock.
        ``timeout`` bounds a blocking acquire (None: until acquired)."""
        return self._lock_class(self, key, ttl, timeout=timeout, poll_interval=poll_interval)

    # -- batches ---------------------------------------------------------

    def _batch(self, op: int, retry: bool, encode: Callable, items: list | tuple,
               combine: Callable, *args: Any, timeout: float | None = None) -> Any:
        frames = self._encode_frames(encode, items, args)
        if frames == 1:
            return self._call(op, retry, None, timeout)
        return self._call_frames(op, retry, frames, combine, timeout)

    def _encode_frames(self, encode: Callable, items: list | tuple, args: tuple) -> int:
        """Encode ``items`` as few frames as the key-count and payload limits
        allow; the number of frames. Nothing of them stays in the writer on
        error (what a pipeline queued before stays)."""
        mark = len(self._writer)
        if len(items) <= MAX_BATCH_KEYS:
            try:
                encode(items, *args)
                return 1
            except ValueTooLargeError:
                if len(items) < 2:
                    raise
        frames = start = 0
        size = MAX_BATCH_KEYS
        try:
            while start < len(items):
                chunk = items[start:start + size]
                try:
                    encode(chunk, *args)
                except ValueTooLargeError:
                    # Too many bytes for one frame: halve until it fits; a
                    # single item that does not fit is the caller's error.
                    if len(chunk) < 2:
                        raise
                    size = len(chunk) // 2
                    continue
                start += len(chunk)
                frames += 1
        except BaseException:
            self._writer.truncate(mark)
            raise
        return frames


class AsyncCommands(ClientBase):
    """The request methods as AsyncClient and AsyncPool offer them, for type
    checkers only: at run time AsyncClient inherits Commands, whose methods
    return coroutines. A test keeps the two signatures equal."""

    __slots__ = ()

    async def get(self, key: Key, default: Any = None, *, timeout: float | None = None) -> Any:
        raise NotImplementedError

    async def set(self, key: Key, value: Any, ttl: float | None = None, *, timeout: float | None = None) -> None:
        raise NotImplementedError

    async def setnx(self, key: Key, value: Any, ttl: float | None = None, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def delete(self, key: Key, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def exists(self, key: Key, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def incr(self, key: Key, delta: int = 1, *, timeout: float | None = None) -> int:
        raise NotImplementedError

    async def decr(self, key: Key, delta: int = 1, *, timeout: float | None = None) -> int:
        raise NotImplementedError

    async def cas(self, key: Key, expected: Any, new: Any, ttl: float | None = None, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def expire(self, key: Key, ttl: float, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def ttl(self, key: Key, *, timeout: float | None = None) -> float | None:
        raise NotImplementedError

    async def persist(self, key: Key, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def getdel(self, key: Key, default: Any = None, *, timeout: float | None = None) -> Any:
        raise NotImplementedError

    async def getset(self, key: Key, value: Any, ttl: float | None = None, *, timeout: float | None = None) -> Any:
        raise NotImplementedError

    async def delete_if_equal(self, key: Key, expected: Any, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def scan(self, cursor: int = 0, match: str | bytes | None = None,
                   count: int = 100, *, timeout: float | None = None) -> tuple[int, list[bytes]]:
        raise NotImplementedError

    async def mget(self, keys: Iterable[Key], *, timeout: float | None = None) -> list:
        raise NotImplementedError

    async def mset(self, mapping: Mapping | Iterable[tuple], ttl: float | None = None, *, timeout: float | None = None) -> None:
        raise NotImplementedError

    async def mdel(self, keys: Iterable[Key], *, timeout: float | None = None) -> int:
        raise NotImplementedError

    async def mexists(self, keys: Iterable[Key], *, timeout: float | None = None) -> list[bool]:
        raise NotImplementedError

    async def flush(self, *, timeout: float | None = None) -> int:
        raise NotImplementedError

    async def ping(self, *, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def info(self, *, timeout: float | None = None) -> dict:
        raise NotImplementedError

    async def config_get(self, *, timeout: float | None = None) -> dict:  # -- eviction (issue 12)
        raise NotImplementedError

    async def config_set(self, settings: Mapping[str, Any], *,
                         timeout: float | None = None) -> None:  # -- eviction (issue 12)
        raise NotImplementedError

    async def snapshot(self, *, timeout: float | None = None) -> int:  # -- durability (issue 11)
        raise NotImplementedError

    def lock(self, key: Key, ttl: float, *, timeout: float | None = None,
             poll_interval: float = 0.05) -> Any:
        raise NotImplementedError


# -- what is built on the request methods: counting, iterating, views ---------

# Keys per SCAN step when counting: the server's largest step.
_COUNT_STEP = 1000


def _scan_name(name: object) -> str:
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"namespace name {name!r} is not UTF-8") from None
    if not isinstance(name, str):
        raise InvalidArgumentError(f"namespace name must be str or bytes, not {type(name).__name__}")
    if not name:
        raise InvalidArgumentError("namespace name must not be empty")
    return name


class SyncExtras:
    """Engine's container habits over the network, for Client, its views and
    Pool: ``len()`` and ``count()`` walk the namespace with SCAN (one round
    trip per 1,000 keys, distinct keys counted: exact on a quiet store, not
    atomic while others write), ``in`` is exists(), a client is always true
    (``bool`` does not count), scan_iter() iterates scan() steps."""

    __slots__ = ()

    def count(self) -> int:
        """Live keys of this namespace (every key without one), by SCAN."""
        seen: set[bytes] = set()
        cursor = 0
        while True:
            cursor, keys = self.scan(cursor, None, _COUNT_STEP)  # type: ignore[attr-defined]
            seen.update(keys)
            if not cursor:
                return len(seen)

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, key: object) -> bool:
        return bool(self.exists(key))  # type: ignore[attr-defined]

    def __bool__(self) -> bool:
        return True

    def scan_iter(self, match: str | bytes | None = None, count: int = 100) -> Iterator[bytes]:
        """Every key of the namespace present throughout, at least once (as
        Engine.scan_iter), fetched ``count`` at a time."""
        cursor = 0
        while True:
            cursor, keys = self.scan(cursor, match, count)  # type: ignore[attr-defined]
            yield from keys
            if not cursor:
                return

    # -- durability (issue 11): snapshot(wait=True)
    def snapshot(self, *, wait: bool = False, timeout: float | None = None) -> int:
        """Start a snapshot (as BGSAVE: 1 when one started, 0 when one was
        already running); with ``wait=True`` return only when the running
        one has ended, raising PersistenceError if it failed. ``timeout``
        bounds each request, and the whole wait (KvTimeoutError)."""
        started = super().snapshot(timeout=timeout)  # type: ignore[misc]
        if wait:
            deadline = _wait_deadline(timeout)
            delay = _SNAPSHOT_POLL_FIRST_S
            while self.info(timeout=timeout)["snapshot_in_progress"]:  # type: ignore[attr-defined]
                time.sleep(_next_poll(deadline, delay))
                delay = min(delay * 2, _SNAPSHOT_POLL_MAX_S)
            _check_snapshot(self.info(timeout=timeout))  # type: ignore[attr-defined]
        return started
    # -- end durability


class AsyncExtras:
    """SyncExtras for AsyncClient, its views and AsyncPool: ``await count()``
    and ``async for key in scan_iter()``. ``len()`` and ``in`` cannot await,
    so they raise TypeError naming the coroutine to use instead."""

    __slots__ = ()

    async def count(self) -> int:
        seen: set[bytes] = set()
        cursor = 0
        while True:
            cursor, keys = await self.scan(cursor, None, _COUNT_STEP)  # type: ignore[attr-defined]
            seen.update(keys)
            if not cursor:
                return len(seen)

    async def scan_iter(self, match: str | bytes | None = None,
                        count: int = 100) -> AsyncIterator[bytes]:
        cursor = 0
        while True:
            cursor, keys = await self.scan(cursor, match, count)  # type: ignore[attr-defined]
            for key in keys:
                yield key
            if not cursor:
                return

    def __len__(self) -> int:
        raise TypeError(f"len() cannot wait for the server: use `await {type(self).__name__}.count()`")

    def __contains__(self, key: object) -> bool:
        raise TypeError(f"`in` cannot wait for the server: use `await {type(self).__name__}.exists(key)`")

    def __bool__(self) -> bool:
        return True

    # -- durability (issue 11): snapshot(wait=True), as SyncExtras'
    async def snapshot(self, *, wait: bool = False, timeout: float | None = None) -> int:
        """SyncExtras.snapshot, awaited: with ``wait=True`` it ends when the
        snapshot has (PersistenceError if it failed)."""
        started = await super().snapshot(timeout=timeout)  # type: ignore[misc]
        if wait:
            deadline = _wait_deadline(timeout)
            delay = _SNAPSHOT_POLL_FIRST_S
            while (await self.info(timeout=timeout))["snapshot_in_progress"]:  # type: ignore[attr-defined]
                await asyncio.sleep(_next_poll(deadline, delay))
                delay = min(delay * 2, _SNAPSHOT_POLL_MAX_S)
            _check_snapshot(await self.info(timeout=timeout))  # type: ignore[attr-defined]
        return started
    # -- end durability


# -- durability (issue 11): how snapshot(wait=True) polls INFO. A snapshot of a
# million keys takes seconds; the first polls are quick for small stores.
_SNAPSHOT_POLL_FIRST_S = 0.005
_SNAPSHOT_POLL_MAX_S = 0.1


def _wait_deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _next_poll(deadline: float | None, delay: float) -> float:
    if deadline is None:
        return delay
    left = deadline - time.monotonic()
    if left <= 0:
        raise KvTimeoutError("the snapshot did not end within the timeout")
    return min(delay, left)


def _check_snapshot(info: dict) -> None:
    if info.get("last_snapshot_result") != "ok":
        raise PersistenceError(f"the snapshot failed: {info.get('last_snapshot_result')!r} "
                               f"(persistence_error: {info.get('persistence_error')!r})")
# -- end durability


def nested(namespace: str, name: str | bytes) -> str:
    """The namespace ``name`` nested under ``namespace`` (Engine.namespace's rule)."""
    name = _scan_name(name)
    return f"{namespace}:{name}" if namespace else name


class View(Commands):
    """``client.namespace(name)``: the client's methods on the keys of
    ``name`` nested under the client's namespace, over the client's own
    connection (a view has no connection and no close() of its own)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Any, namespace: str) -> None:
        self._owner = owner
        self.address = owner.address._replace(namespace=namespace)
        self.timeout = owner.timeout
        self.connect_timeout = owner.connect_timeout
        self.max_payload = owner.max_payload
        self._writer = RequestWriter(self.address.prefix, owner.max_payload)
        self._closed = False

    @property
    def _lock_class(self) -> Any:  # type: ignore[override]
        return self._owner._lock_class

    @property
    def connected(self) -> bool:
        return bool(self._owner.connected)

    def _send(self, data: bytes, op: int, retry: bool, missing: Any,
              timeout: float | None) -> Any:
        return self._owner._send(data, op, retry, missing, timeout)

    def _send_frames(self, data: bytes, op: int, retry: bool, count: int,
                     combine: Callable, timeout: float | None) -> Any:
        return self._owner._send_frames(data, op, retry, count, combine, timeout)

    def _pipeline(self, data: bytes, ops: bytes, retry: bool, defaults: dict | None,
                  timeout: float | None = None) -> Any:
        return self._owner._pipeline(data, ops, retry, defaults, timeout)

    def namespace(self, name: str | bytes) -> Any:
        """A view of ``name`` nested under this one, on the same connection."""
        return type(self)(self._owner, nested(self.address.namespace, name))

    def pipeline(self) -> Any:
        """A pipeline of this view's namespace, executed on the owner's connection."""
        return self._owner._pipeline_class(self)


class SyncView(SyncExtras, View):
    """A namespace view of a Client."""

    __slots__ = ()


class AsyncView(AsyncExtras, View):
    """A namespace view of an AsyncClient (its methods are coroutines)."""

    __slots__ = ()


# What the pools forward: every public request method (lock() is the pools' own).
COMMANDS = tuple(
    name for name, member in vars(Commands).items()
    if callable(member) and not name.startswith("_") and name != "lock"
)
