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

import math
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Union

from kvstore._address import Address, parse_url
from kvstore._protocol import (
    DEFAULT_MAX_PAYLOAD,
    MAX_BATCH_KEYS,
    OP_CAS,
    OP_DECR,
    OP_DEL,
    OP_EXISTS,
    OP_EXPIRE,
    OP_FLUSH,
    OP_GET,
    OP_INCR,
    OP_INFO,
    OP_MDEL,
    OP_MEXISTS,
    OP_MGET,
    OP_MSET,
    OP_PING,
    OP_SET,
    OP_SETNX,
    OP_SNAPSHOT,  # -- durability (issue 11)
    OP_TTL,
    RequestWriter,
)
from kvstore.errors import InvalidArgumentError, KvConnectionError, KvTimeoutError, ValueTooLargeError

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


def check_timeout(name: str, value: object) -> float:
    """A timeout option: a positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 < value < math.inf
    ):
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


# How the answers of a batch split into several frames combine.
def concat(parts: list[list]) -> list:
    return [item for part in parts for item in part]


def total(parts: list[int]) -> int:
    return sum(parts)


def nothing(parts: list[None]) -> None:
    return None


def _as_sequence(items: Iterable) -> list | tuple:
    return items if isinstance(items, (list, tuple)) else list(items)


class ClientBase:
    """What Client and AsyncClient share besides the methods: options, the
    request writer, and the hooks each client implements:
    ``_call(op, retry, missing=None)`` for one frame, answering ``missing`` in
    place of a NULL reply; ``_call_frames(op, retry, count, combine)`` for
    ``count`` frames of one op whose answers ``combine`` merges; the
    ``connected`` property; and ``_lock_class`` (Lock or AsyncLock).
    """

    __slots__ = ("address", "timeout", "connect_timeout", "_writer", "_closed")

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.address: Address = parse_url(url)
        self.timeout = check_timeout("timeout", timeout)
        self.connect_timeout = check_timeout("connect_timeout", connect_timeout)
        self._writer = RequestWriter(self.address.prefix, max_payload)
        self._closed = False

    @property
    def namespace(self) -> str:
        return self.address.namespace

    # -- what each client provides -------------------------------------------

    _lock_class: Any

    @property
    def connected(self) -> bool:
        """Whether a connection is open (one is opened on demand)."""
        raise NotImplementedError

    def _call(self, op: int, retry: bool, missing: Any = None) -> Any:
        raise NotImplementedError

    def _call_frames(self, op: int, retry: bool, count: int, combine: Callable) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        namespace = f"/{self.namespace}" if self.namespace else ""
        state = "closed" if self._closed else "connected" if self.connected else "idle"
        return f"<{type(self).__name__} {self.address}{namespace} {state}>"

    def _closed_error(self) -> KvConnectionError:
        return KvConnectionError(f"client for {self.address} is closed")


Key = Union[str, bytes]


class Commands(ClientBase):
    """Every public request method, written once: Client's as they are,
    AsyncClient's returning a coroutine (see AsyncCommands for their types)."""

    __slots__ = ()

    def get(self, key: Key, default: Any = None) -> Any:
        """The value stored at ``key``, or ``default`` when there is none."""
        self._writer.get(key)
        return self._call(OP_GET, READ, default)

    def set(self, key: Key, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl`` seconds (None: never)."""
        self._writer.set(key, value, ttl)
        return self._call(OP_SET, WRITE)

    def setnx(self, key: Key, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; True when stored."""
        self._writer.setnx(key, value, ttl)
        return self._call(OP_SETNX, WRITE)

    def delete(self, key: Key) -> bool:
        """Remove ``key``; True when it existed."""
        self._writer.delete(key)
        return self._call(OP_DEL, WRITE)

    def exists(self, key: Key) -> bool:
        """Whether ``key`` holds a value."""
        self._writer.exists(key)
        return self._call(OP_EXISTS, READ)

    def incr(self, key: Key, delta: int = 1) -> int:
        """Add ``delta`` to the int at ``key`` (missing: 0) and return the result.
        Never resent after a connection error: it may have been applied."""
        self._writer.incr(key, delta)
        return self._call(OP_INCR, WRITE)

    def decr(self, key: Key, delta: int = 1) -> int:
        """Subtract ``delta`` from the int at ``key`` (missing: 0); the result."""
        self._writer.decr(key, delta)
        return self._call(OP_DECR, WRITE)

    def cas(self, key: Key, expected: Any, new: Any, ttl: float | None = None) -> bool:
        """Store ``new`` if ``key`` holds exactly ``expected`` (same type and
        encoding); True when swapped."""
        self._writer.cas(key, expected, new, ttl)
        return self._call(OP_CAS, WRITE)

    def expire(self, key: Key, ttl: float) -> bool:
        """Make ``key`` expire ``ttl`` seconds from now; True when it exists."""
        self._writer.expire(key, ttl)
        return self._call(OP_EXPIRE, WRITE)

    def ttl(self, key: Key) -> float | None:
        """Seconds left before ``key`` expires (ms precision); None when it
        has no expiry or does not exist."""
        self._writer.ttl(key)
        return self._call(OP_TTL, READ)

    def mget(self, keys: Iterable[Key]) -> list:
        """The values of ``keys`` in order, None where missing."""
        return self._batch(OP_MGET, READ, self._writer.mget, _as_sequence(keys), concat)

    def mset(self, mapping: Mapping | Iterable[tuple], ttl: float | None = None) -> None:
        """Store every (key, value) pair, all-or-nothing. Every key and value
        is checked before anything is sent; a batch over 65,535 pairs (or over
        the frame size limit) goes as several frames, each all-or-nothing on
        its own but not atomic together."""
        pairs = list(mapping.items()) if isinstance(mapping, Mapping) else _as_sequence(mapping)
        return self._batch(OP_MSET, WRITE, self._writer.mset, pairs, nothing, ttl)

    def mdel(self, keys: Iterable[Key]) -> int:
        """Remove ``keys``; how many existed."""
        return self._batch(OP_MDEL, WRITE, self._writer.mdel, _as_sequence(keys), total)

    def mexists(self, keys: Iterable[Key]) -> list[bool]:
        """Whether each of ``keys`` holds a value."""
        return self._batch(OP_MEXISTS, READ, self._writer.mexists, _as_sequence(keys), concat)

    def flush(self) -> int:
        """Remove every key of this client's namespace (every key without
        one); how many were removed."""
        self._writer.flush()
        return self._call(OP_FLUSH, WRITE)

    def ping(self) -> bool:
        """A round trip to the server; True."""
        self._writer.ping()
        return self._call(OP_PING, READ)

    def info(self) -> dict:
        """The engine's ``info()`` plus server figures (uptime, connections,
        calls per command, bytes in and out)."""
        self._writer.info()
        return self._call(OP_INFO, READ)

    # -- durability (issue 11)
    def snapshot(self) -> int:
        """Start a snapshot on a server with --data-dir (like BGSAVE) and
        return at once: 1 when one started, 0 when one was already running. ``info()["snapshot_in_progress"]`` and ``last_snapshot_*``
        tell when it is done and how it went."""
        self._writer.snapshot()
        return self._call(OP_SNAPSHOT, READ)   # a resend only snapshots again
    # -- end durability

    def lock(self, key: Key, ttl: float, *, timeout: float | None = None,
             poll_interval: float = 0.05) -> Any:
        """A lock on ``key`` held for at most ``ttl`` seconds: see kvstore.lock.
        ``timeout`` bounds a blocking acquire (None: until acquired)."""
        return self._lock_class(self, key, ttl, timeout=timeout, poll_interval=poll_interval)

    # -- batches ---------------------------------------------------------

    def _batch(self, op: int, retry: bool, encode: Callable, items: list | tuple,
               combine: Callable, *args: Any) -> Any:
        frames = self._encode_frames(encode, items, args)
        if frames == 1:
            return self._call(op, retry)
        return self._call_frames(op, retry, frames, combine)

    def _encode_frames(self, encode: Callable, items: list | tuple, args: tuple) -> int:
        """Encode ``items`` as few frames as the key-count and payload limits
        allow; the number of frames. Nothing stays in the writer on error."""
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
            self._writer.take()
            raise
        return frames


class AsyncCommands(ClientBase):
    """The request methods as AsyncClient and AsyncPool offer them, for type
    checkers only: at run time AsyncClient inherits Commands, whose methods
    return coroutines. A test keeps the two signatures equal."""

    __slots__ = ()

    async def get(self, key: Key, default: Any = None) -> Any:
        raise NotImplementedError

    async def set(self, key: Key, value: Any, ttl: float | None = None) -> None:
        raise NotImplementedError

    async def setnx(self, key: Key, value: Any, ttl: float | None = None) -> bool:
        raise NotImplementedError

    async def delete(self, key: Key) -> bool:
        raise NotImplementedError

    async def exists(self, key: Key) -> bool:
        raise NotImplementedError

    async def incr(self, key: Key, delta: int = 1) -> int:
        raise NotImplementedError

    async def decr(self, key: Key, delta: int = 1) -> int:
        raise NotImplementedError

    async def cas(self, key: Key, expected: Any, new: Any, ttl: float | None = None) -> bool:
        raise NotImplementedError

    async def expire(self, key: Key, ttl: float) -> bool:
        raise NotImplementedError

    async def ttl(self, key: Key) -> float | None:
        raise NotImplementedError

    async def mget(self, keys: Iterable[Key]) -> list:
        raise NotImplementedError

    async def mset(self, mapping: Mapping | Iterable[tuple], ttl: float | None = None) -> None:
        raise NotImplementedError

    async def mdel(self, keys: Iterable[Key]) -> int:
        raise NotImplementedError

    async def mexists(self, keys: Iterable[Key]) -> list[bool]:
        raise NotImplementedError

    async def flush(self) -> int:
        raise NotImplementedError

    async def ping(self) -> bool:
        raise NotImplementedError

    async def info(self) -> dict:
        raise NotImplementedError

    async def snapshot(self) -> int:  # -- durability (issue 11)
        raise NotImplementedError

    def lock(self, key: Key, ttl: float, *, timeout: float | None = None,
             poll_interval: float = 0.05) -> Any:
        raise NotImplementedError


# What the pools forward: every public request method (lock() is the pools' own).
COMMANDS = tuple(
    name for name, member in vars(Commands).items()
    if callable(member) and not name.startswith("_") and name != "lock"
)
