"""Pipelines: queue any calls, send them in one write, get the answers in order.

::

    with client.pipeline() as p:
        p.set("a", 1)
        p.get("a")
        results = p.execute()          # [None, 1]

A pipeline has every request method of the clients (kvstore._commands),
with the same arguments and checks: a bad argument raises at the call that
queues it and queues nothing. Each queued call returns the pipeline itself.
``execute()`` sends every queued frame in one write (several for a pipeline
over 64 KiB, see kvstore.client), reads the replies with the compiled
``ReplyReader.read_batch`` and returns the answers in the order of the
calls. The pipeline is then empty and may be used again; leaving the
``with`` block discards what was not executed.

Errors (redis-py's ``raise_on_error``): an error reply to one call does not
stop the others, which all run. By default ``execute()`` then raises the
first error; with ``raise_on_error=False`` each error is returned in its
call's place, as the KvError instance. A pipeline is not a transaction:
other clients' requests may run between its calls.

Retry: a pipeline of reads only is sent once more on a fresh connection
after a connection error, like a single read; one with any write never is.

The same Pipeline serves a Client, a Client's namespace view and a Pool (it
borrows one connection for ``execute()``); AsyncPipeline serves AsyncClient
and AsyncPool, and only its ``execute()`` is a coroutine (queueing does no
I/O).
"""

from __future__ import annotations

from typing import Any, Callable

from kvstore._commands import Commands
from kvstore._protocol import RequestWriter
from kvstore.errors import InvalidArgumentError, KvError

__all__ = ["Pipeline", "AsyncPipeline"]


class _Queue(Commands):
    """The queueing both pipelines share: the frames in a writer of their
    own, one op code per frame, the defaults of calls whose NULL answer is
    not None, and the batches that went as several frames."""

    __slots__ = ("_target", "_ops", "_retry", "_defaults", "_groups", "_calls", "_mark")

    def __init__(self, target: Any) -> None:
        # Not ClientBase.__init__: the options are the target's.
        self._target = target
        self.address = target.address
        self.timeout = target.timeout
        self.connect_timeout = target.connect_timeout
        self.max_payload = target.max_payload
        self._writer = RequestWriter(target.address.prefix, target.max_payload)
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._writer.take()
        self._ops = bytearray()
        self._retry = True
        self._defaults: dict[int, Any] | None = None
        self._groups: list[tuple[int, int, Callable]] = []
        self._calls = 0
        self._mark = 0     # the writer's length after the last queued call

    @property
    def connected(self) -> bool:
        return bool(getattr(self._target, "connected", True))   # a pool: always ready

    def __len__(self) -> int:
        """Calls queued and not executed yet."""
        return self._calls

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._calls} calls for {self._target!r}>"

    def reset(self) -> None:
        """Discard the queued calls."""
        self._reset()

    # -- the hooks Commands calls ------------------------------------------------

    def _call(self, op: int, retry: bool, missing: Any = None,
              timeout: float | None = None) -> Any:
        self._no_timeout(timeout)
        if missing is not None:
            if self._defaults is None:
                self._defaults = {}
            self._defaults[len(self._ops)] = missing
        self._ops.append(op)
        return self._queued(retry)

    def _call_frames(self, op: int, retry: bool, count: int, combine: Callable,
                     timeout: float | None = None) -> Any:
        self._no_timeout(timeout)
        self._groups.append((len(self._ops), count, combine))
        self._ops.extend(bytes((op,)) * count)
        return self._queued(retry)

    def _queued(self, retry: bool) -> Any:
        self._retry = self._retry and retry
        self._calls += 1
        self._mark = len(self._writer)
        return self

    def _no_timeout(self, timeout: float | None) -> None:
        # One deadline covers the whole pipeline: execute(timeout=...).
        if timeout is not None:
            self._writer.truncate(self._mark)
            raise InvalidArgumentError(
                "a queued call takes no timeout: give the pipeline's execute(timeout=...)")

    def _take(self) -> tuple[bytes, bytes, bool, dict | None, list]:
        """What execute() sends, and the pipeline is empty again."""
        taken = (self._writer.take(), bytes(self._ops), self._retry, self._defaults, self._groups)
        self._reset()
        return taken

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a lock cannot be taken inside a pipeline")


def finish(results: list, errors: int, groups: list, raise_on_error: bool) -> list:
    """The answers of the calls from the answers of the frames: batches sent
    as several frames combined into one answer each (their first error, if
    any), then the first error raised when ``raise_on_error``."""
    if groups:
        merged: list = []
        done = 0
        for start, count, combine in groups:
            merged.extend(results[done:start])
            parts = results[start:start + count]
            failed = [part for part in parts if isinstance(part, KvError)]
            merged.append(failed[0] if failed else combine(parts))
            errors -= len(failed) - bool(failed)
            done = start + count
        merged.extend(results[done:])
        results = merged
    if errors and raise_on_error:
        for result in results:
            if isinstance(result, KvError):
                raise result
    return results


class Pipeline(_Queue):
    """Calls queued for a Client, a namespace view of one, or a Pool."""

    __slots__ = ()

    def execute(self, raise_on_error: bool = True, timeout: float | None = None) -> list:
        """Send the queued calls and return their answers in order (see the
        module docstring for errors), all within ``timeout`` seconds (None:
        the client's); [] when nothing is queued."""
        data, ops, retry, defaults, groups = self._take()
        if not ops:
            return []
        results, errors = self._target._pipeline(data, ops, retry, defaults, timeout)
        return finish(results, errors, groups, raise_on_error)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reset()


class AsyncPipeline(_Queue):
    """Calls queued for an AsyncClient, a namespace view of one, or an
    AsyncPool; ``await p.execute()``. ``async with`` and ``with`` both work."""

    __slots__ = ()

    async def execute(self, raise_on_error: bool = True, timeout: float | None = None) -> list:
        """As Pipeline.execute, awaited."""
        data, ops, retry, defaults, groups = self._take()
        if not ops:
            return []
        results, errors = await self._target._pipeline(data, ops, retry, defaults, timeout)
        return finish(results, errors, groups, raise_on_error)

    def __enter__(self) -> AsyncPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._reset()

    async def __aenter__(self) -> AsyncPipeline:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._reset()
