"""kvstore: a key-value store with a Cython engine, in-process or over the network."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvstore._engine import Engine, Namespace
from kvstore.errors import (
    CorruptDataError,
    DataDirLockedError,
    IntegerOverflowError,
    InvalidArgumentError,
    InvalidKeyError,
    KvConnectionError,
    KvError,
    KvTimeoutError,
    LimitError,
    LockError,
    LockNotOwnedError,
    OutOfMemoryError,
    PersistenceError,
    PoolTimeoutError,
    ProtocolError,
    ReplyTooLargeError,
    ServerError,
    ServerOutOfMemoryError,
    UnsupportedValueError,
    ValueTooLargeError,
    WrongTypeError,
)

__all__ = [
    "Engine",
    "Namespace",
    "Client",
    "AsyncClient",
    "Pool",
    "AsyncPool",
    "Lock",
    "AsyncLock",
    "Server",
    "cached",
    "KvError",
    "InvalidKeyError",
    "UnsupportedValueError",
    "ValueTooLargeError",
    "InvalidArgumentError",
    "WrongTypeError",
    "IntegerOverflowError",
    "ProtocolError",
    "ServerError",
    "KvConnectionError",
    "KvTimeoutError",
    "PoolTimeoutError",
    "LockError",
    "LockNotOwnedError",
    "OutOfMemoryError",
    "LimitError",
    "ServerOutOfMemoryError",
    "ReplyTooLargeError",
    "PersistenceError",
    "DataDirLockedError",
    "CorruptDataError",
]

__version__ = "0.1.0"

# The network side is imported on first use: an embedded Engine user should not
# pay for asyncio and sockets at import time.
_LAZY = {
    "Client": "kvstore.client",
    "AsyncClient": "kvstore.aio",
    "Pool": "kvstore.pool",
    "AsyncPool": "kvstore.pool",
    "Lock": "kvstore.lock",
    "AsyncLock": "kvstore.lock",
    "Server": "kvstore.server",
    "cached": "kvstore.caching",
}

if TYPE_CHECKING:
    from kvstore.aio import AsyncClient
    from kvstore.caching import cached
    from kvstore.client import Client
    from kvstore.lock import AsyncLock, Lock
    from kvstore.pool import AsyncPool, Pool
    from kvstore.server import Server


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kvstore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
