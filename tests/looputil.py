"""Event loops for the network tests, a wrapper that lets a test written
for a blocking API drive an AsyncClient, and the ``connect`` fixture that
opens either client behind that one blocking interface.

Every loop runs with an exception handler that records what asyncio reports
(an unretrieved future exception, a callback that raised, a task destroyed
while pending); the loop fixture fails the test when anything was reported,
as asyncpg's and uvloop's test bases do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any, Callable, Iterator

import pytest

import kvstore

try:
    import uvloop
except ImportError:  # the uvloop extra is optional
    uvloop = None

__all__ = ["LOOP_KINDS", "CLIENT_KINDS", "guarded_loop", "Blocking", "client_factory",
           "loop", "connect"]

_NEEDS_UVLOOP = pytest.mark.skipif(uvloop is None, reason="uvloop not installed")
LOOP_KINDS = ["asyncio", pytest.param("uvloop", marks=_NEEDS_UVLOOP)]
CLIENT_KINDS = ["client", "async-asyncio", pytest.param("async-uvloop", marks=_NEEDS_UVLOOP)]


@contextlib.contextmanager
def guarded_loop(kind: str = "asyncio") -> Iterator[asyncio.AbstractEventLoop]:
    new_loop = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop
    event_loop = new_loop()
    reported: list[dict] = []
    event_loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        yield event_loop
        # Let callbacks scheduled by the last steps (connection_lost...) run.
        event_loop.run_until_complete(asyncio.sleep(0))
        pending = [t for t in asyncio.all_tasks(event_loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            event_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        event_loop.run_until_complete(event_loop.shutdown_asyncgens())
    finally:
        event_loop.close()
    messages = [context.get("message", "") + " " + repr(context.get("exception"))
                for context in reported]
    assert not messages, f"the event loop reported errors: {messages}"


@pytest.fixture(params=LOOP_KINDS)
def loop(request) -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop of each kind, failing the test on loop errors."""
    with guarded_loop(request.param) as event_loop:
        yield event_loop


class Blocking:
    """Runs each coroutine method of ``target`` to completion on ``loop``,
    so one test body written against the blocking API serves both clients."""

    def __init__(self, target: Any, event_loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = event_loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                return self._loop.run_until_complete(result)
            return result

        return call

    def __repr__(self) -> str:
        return f"Blocking({self._target!r})"


@contextlib.contextmanager
def client_factory(kind: str, flush: bool = False) -> Iterator[Callable[..., Any]]:
    """``(url, **options) -> client`` for a CLIENT_KINDS kind: a Client, or an
    AsyncClient behind Blocking on its own guarded loop. Every client opened
    is closed at exit, after flushing its namespace when ``flush``."""
    if kind == "client":
        clients: list = []

        def open_client(url: str, **options: Any) -> Any:
            clients.append(kvstore.Client.connect(url, **options))
            return clients[-1]

        try:
            yield open_client
        finally:
            for client in clients:
                if flush:
                    client.flush()
                client.close()
        return
    with guarded_loop(kind.split("-")[1]) as event_loop:
        clients = []

        def open_async_client(url: str, **options: Any) -> Any:
            connecting = kvstore.AsyncClient.connect(url, **options)
            clients.append(event_loop.run_until_complete(connecting))
            return Blocking(clients[-1], event_loop)

        try:
            yield open_async_client
        finally:
            for client in clients:
                if flush:
                    event_loop.run_until_complete(client.flush())
                event_loop.run_until_complete(client.close())


@pytest.fixture(params=CLIENT_KINDS)
def connect(request) -> Iterator[Callable[..., Any]]:
    """``(url, **options) -> client`` with a blocking interface, for each
    client kind (see client_factory)."""
    with client_factory(request.param) as open_client:
        yield open_client
