"""The one error vocabulary of kvstore.

Every class carries a wire ``kind``: the server sends the kind of the error it
raised, and the client raises the class registered for that kind, so a caller
sees the same exception from ``Engine``, ``Client`` and ``AsyncClient``.
Classes register themselves as they are created (asyncpg keys its exceptions
by SQLSTATE the same way).
"""

from __future__ import annotations

__all__ = [
    "KvError",
    "InvalidKeyError",
    "UnsupportedValueError",
    "ValueTooLargeError",
    "InvalidArgumentError",
    "WrongTypeError",
    "IntegerOverflowError",
    "ProtocolError",
    "ReplyTooLargeError",
    "ServerError",
    "KvConnectionError",
    "KvTimeoutError",
    "PoolTimeoutError",
    "LockError",
    "LockNotOwnedError",
    "OutOfMemoryError",  # -- eviction (issue 12)
    # -- durability (issue 11)
    "PersistenceError",
    "DataDirLockedError",
    "CorruptDataError",
    # -- end durability
    "error_class",
]

_BY_KIND: dict[str, type[KvError]] = {}


class KvError(Exception):
    """Base class of every error kvstore raises on purpose."""

    kind = "error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class that names its own kind is reachable from the wire.
        if "kind" in cls.__dict__:
            if cls.kind in _BY_KIND:
                raise RuntimeError(f"error kind {cls.kind!r} registered twice")
            _BY_KIND[cls.kind] = cls


_BY_KIND[KvError.kind] = KvError


class InvalidKeyError(KvError, ValueError):
    """A key that is not str/bytes, is empty, or exceeds 65,535 bytes encoded
    (a namespace prefix counts)."""

    kind = "invalid_key"


class UnsupportedValueError(KvError, TypeError):
    """A value kvstore cannot store: a type outside the value model, an int
    outside signed 64 bits, a dict key that is not str, or nesting too deep."""

    kind = "unsupported_value"


class ValueTooLargeError(KvError, ValueError):
    """An encoded value, or a frame carrying it, over the configured limit."""

    kind = "too_large"


class InvalidArgumentError(KvError, ValueError):
    """A bad argument other than a key or value: a ttl that is not a positive
    number, a delta that is not an int64, a malformed URL."""

    kind = "invalid_argument"


class WrongTypeError(KvError, TypeError):
    """An operation applied to a stored value of the wrong type, such as
    ``incr`` on a str."""

    kind = "wrong_type"


class IntegerOverflowError(KvError, OverflowError):
    """``incr``/``decr`` whose result would leave signed 64 bits; the stored
    value is unchanged."""

    kind = "overflow"


class ProtocolError(KvError):
    """A frame or payload that breaks the wire protocol (docs/protocol.md):
    the server answered INVALID, or a reply could not be parsed."""

    kind = "protocol"


# -- client reply limit (issue 10, client half) --
class ReplyTooLargeError(ProtocolError, ValueTooLargeError):
    """A reply declared more bytes than the client's ``max_reply``: refused
    from its header, before anything is allocated for it, and the connection
    is dropped (the rest of that reply is still on the wire)."""

    kind = "reply_too_large"
# -- end client reply limit --


class ServerError(KvError):
    """The server failed in a way that has no more specific kind."""

    kind = "server"


class KvConnectionError(KvError, ConnectionError):
    """Connecting to, or talking with, a server failed; the message names the
    address."""

    kind = "connection"


class KvTimeoutError(KvConnectionError, TimeoutError):
    """A connect or socket timeout expired."""

    kind = "timeout"


class PoolTimeoutError(KvTimeoutError):
    """No pooled connection became free within the pool's timeout."""

    kind = "pool_timeout"


class LockError(KvError):
    """A lock could not be acquired in time, or was used wrongly."""

    kind = "lock"


class LockNotOwnedError(LockError):
    """Release or extend of a lock this holder no longer owns (it expired, or
    another holder took it)."""

    kind = "lock_not_owned"


# -- robustness limits (issue 10) ---------------------------------------------

class LimitError(KvError):
    """The server refused a request or a connection at one of its limits: a
    reply over its reply limit (nothing was changed), too many clients, or a
    connection's input or output over its budget (the connection is closed)."""

    kind = "limit"


class ServerOutOfMemoryError(ServerError):
    """The server process ran out of memory while running the request (an
    allocation failed): the request was refused, the connection goes on."""

    kind = "server_memory"


__all__ += ["LimitError", "ServerOutOfMemoryError"]

# -- eviction (issue 12)
class OutOfMemoryError(KvError, MemoryError):
    """A write that needs room over the memory or key limit when the eviction
    policy has nothing to evict (noeviction; volatile-* with no key holding a
    ttl). Nothing was written; reads, deletes, expire and flush still work."""

    kind = "oom"


# -- end eviction

# -- durability (issue 11)
class PersistenceError(KvError):
    """The data directory cannot be written (a failed write or fsync, a
    closed engine): the call that met it did not become durable, and write
    calls are refused (reads go on) until a snapshot succeeds or a restart."""

    kind = "persistence"


class DataDirLockedError(PersistenceError):
    """Another engine or process holds the data directory's lock."""

    kind = "locked"


class CorruptDataError(PersistenceError):
    """A data file that cannot be trusted: corruption before the end of the
    last log (the file and byte offset are named), a corrupt or missing
    MANIFEST, or a format newer than this kvstore."""

    kind = "corrupt_data"
# -- end durability


def error_class(kind: str) -> type[KvError]:
    """The class registered for a wire ``kind``; ``KvError`` for kinds this
    version does not know, so a newer server never breaks an older client."""
    return _BY_KIND.get(kind, KvError)
