"""AsyncClient: the Engine API over one pipelined asyncio connection.

Concurrent calls share the connection. Each call writes its frame at once and
appends ``(op, future)`` to a FIFO; replies come back in order, so
``data_received`` hands the bytes to the compiled ReplyReader and resolves
the futures from the front for as long as complete replies are buffered. No
reader task, no per-call timer.

- A cancelled call stays in the FIFO: its reply is still read and dropped, so
  it never shifts the answers of later calls.
- Timeout: a call has one deadline, ``timeout`` seconds after it was
  written, however its reply trickles in. One timer per connection watches
  the oldest waiting call (replies come in order, so it is the one due
  first); when it is overdue every waiting call fails with KvTimeoutError
  and the connection is closed.
- A lost connection, a timeout or a ProtocolError fail every waiting call and
  close the connection; the next call opens a new one. Reads are sent again
  once after a connection error, writes are not (see _commands).
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, Coroutine

from kvstore._address import Address
from kvstore._commands import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    AsyncExtras,
    AsyncView,
    call_timeout,
    may_retry,
    nested,
)
from kvstore._protocol import DEFAULT_MAX_PAYLOAD, MISSING, NEED_MORE, ReplyReader
from kvstore.errors import KvConnectionError, KvError, KvTimeoutError, ProtocolError
from kvstore.lock import AsyncLock
from kvstore.pipeline import AsyncPipeline

__all__ = ["AsyncClient"]

if TYPE_CHECKING:   # type checkers see the methods as coroutines (see AsyncCommands)
    from kvstore._commands import AsyncCommands as _Methods
else:
    from kvstore._commands import Commands as _Methods


class _Batch:
    """A pipeline waiting in the FIFO: its frames' op codes, the answers read
    so far (ReplyReader.read_batch fills them in), and its future."""

    __slots__ = ("ops", "defaults", "results", "errors", "future", "deadline")

    def __init__(self, ops: bytes, defaults: dict | None, future: asyncio.Future,
                 deadline: float) -> None:
        self.deadline = deadline   # loop time its whole answer is due
        self.ops = ops
        self.defaults = defaults
        self.results: list = []
        self.errors = 0
        self.future = future


class _Connection(asyncio.Protocol):
    """One connection: the FIFO of waiting calls and the reply reader."""

    def __init__(self, address: Address, timeout: float, max_reply: int | None = None) -> None:
        self._address = address
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._reader = ReplyReader(max_reply)
        # (op, future, loop time its answer is due) of a call, or the _Batch of a pipeline
        self._pending: collections.deque[Any] = collections.deque()
        self._transport: asyncio.Transport = None  # type: ignore[assignment]  # until connection_made
        self._timer: asyncio.TimerHandle | None = None
        self.failure: KvError | None = None   # set once the connection is unusable
        self.closed = self._loop.create_future()

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio and uvloop both turn TCP_NODELAY on for TCP transports.
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        pending = self._pending
        if not pending:
            self._fail(ProtocolError(f"{self._address} sent bytes nobody asked for"))
            return
        reader = self._reader
        reader.feed(data)
        while pending:
            entry = pending[0]
            if type(entry) is _Batch:
                try:
                    entry.errors += reader.read_batch(entry.ops, entry.results, entry.defaults)
                except ProtocolError as exc:
                    self._fail(exc)
                    return
                if len(entry.results) < len(entry.ops):
                    return
                pending.popleft()
                if not entry.future.done():   # a cancelled pipeline's replies are dropped
                    entry.future.set_result((entry.results, entry.errors))
                continue
            op, future, _ = entry
            try:
                result = reader.read(op)
            except ProtocolError as exc:
                self._fail(exc)
                return
            except KvError as exc:
                # An error reply, consumed whole: the rest stays in step.
                pending.popleft()
                if not future.done():
                    future.set_exception(exc)
                continue
            if result is NEED_MORE:
                return
            pending.popleft()
            if not future.done():
                future.set_result(result)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else " by the server"
        self._fail(KvConnectionError(f"connection to {self._address} closed{reason}"))
        if self._timer is not None:
            self._timer.cancel()
        if not self.closed.done():
            self.closed.set_result(None)

    def eof_received(self) -> bool:
        return False   # close our side too; connection_lost follows

    # -- requests ------------------------------------------------------------

    def request(self, data: bytes, op: int, timeout: float | None = None) -> asyncio.Future:
        """Write one frame; the future of its answer, due within ``timeout``
        seconds (None: the client's)."""
        if self.failure is not None:
            raise self._unusable()
        future = self._loop.create_future()
        deadline = self._due(future, timeout)
        self._pending.append((op, future, deadline))
        self._transport.write(data)
        return future

    def request_frames(self, data: bytes, op: int, count: int,
                       timeout: float | None = None) -> list[asyncio.Future]:
        """Write ``count`` frames of ``op`` at once; a future per frame."""
        if self.failure is not None:
            raise self._unusable()
        futures = [self._loop.create_future() for _ in range(count)]
        deadline = 0.0
        for future in futures:
            deadline = self._due(future, timeout)
        self._pending.extend((op, future, deadline) for future in futures)
        self._transport.write(data)
        return futures

    def request_batch(self, data: bytes, ops: bytes, defaults: dict | None,
                      timeout: float | None = None) -> asyncio.Future:
        """Write a pipeline's frames at once; the future of (answers, errors)."""
        if self.failure is not None:
            raise self._unusable()
        future = self._loop.create_future()
        self._pending.append(_Batch(ops, defaults, future, self._due(future, timeout)))
        self._transport.write(data)
        return future

    def _due(self, future: asyncio.Future, timeout: float | None) -> float:
        """The loop time the connection's timer fails everything if ``future``
        is still the oldest waiting call then: a server that stopped
        answering. A call whose own timeout is shorter than the client's gets
        a timer of its own instead, which fails that call alone (its reply is
        still read and dropped, like a cancelled call's)."""
        now = self._loop.time()
        if timeout is not None and timeout < self._timeout:
            timer = self._loop.call_at(now + timeout, _overdue, future, self._address, timeout)
            future.add_done_callback(lambda _: timer.cancel())
            timeout = None
        deadline = now + (self._timeout if timeout is None else timeout)
        # Invariant: while calls wait, a timer is armed, for no later than the
        # oldest one's deadline (a call may be given a longer one than later calls).
        if self._timer is None or deadline < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_progress)
        return deadline

    def close(self, reason: str) -> None:
        self._fail(KvConnectionError(f"{reason} ({self._address})"), abort=False)

    def _unusable(self) -> KvConnectionError:
        return KvConnectionError(f"connection to {self._address} is closed: {self.failure}")

    def _check_progress(self) -> None:
        self._timer = None
        if not self._pending or self.failure is not None:
            return
        front = self._pending[0]
        deadline = front.deadline if type(front) is _Batch else front[2]
        if self._loop.time() >= deadline:
            self._fail(KvTimeoutError(
                f"no whole reply from {self._address} within the call's timeout "
                f"(the client's: {self._timeout:g}s)"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_progress)

    def _fail(self, exc: KvError, abort: bool = True) -> None:
        """Make the connection unusable: every waiting call gets an error
        (the first one ``exc`` itself; the others a timeout or a connection
        error, so reads among them are retried after a mere connection
        loss), and the transport goes."""
        if self.failure is None:
            self.failure = exc
        pending, self._pending = self._pending, collections.deque()
        for entry in pending:
            future = entry.future if type(entry) is _Batch else entry[1]
            if not future.done():
                future.set_exception(exc)
                kind = KvTimeoutError if isinstance(exc, KvTimeoutError) else KvConnectionError
                exc = kind(f"connection to {self._address} dropped: {self.failure}")
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if abort:
                transport.abort()
            else:
                transport.close()


class AsyncClient(AsyncExtras, _Methods):
    """An asyncio client with the Engine API: every method is a coroutine
    (see kvstore._commands for the methods), plus ping(), info(), lock(),
    close() and ``async with``. Many concurrent calls may share one client.
    A bad argument raises as the method is called, before any await.

    ``await AsyncClient.connect(url)`` connects at once; ``AsyncClient(url)``
    on first use. Options as for :class:`kvstore.Client`.
    """

    __slots__ = ("_conn", "_connecting")
    _lock_class = AsyncLock

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, max_reply: int | None = None) -> None:
        super().__init__(url, timeout=timeout, connect_timeout=connect_timeout,
                         max_payload=max_payload, max_reply=max_reply)
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future | None = None

    @classmethod
    async def connect(cls, url: str, **options: Any) -> AsyncClient:
        """An AsyncClient connected to ``url`` (``[kv://]host[:port][/namespace]``);
        raises KvConnectionError when the server cannot be reached."""
        client = cls(url, **options)
        await client._connection()
        return client

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.failure is None

    async def close(self) -> None:
        """Close the connection (calls still waiting fail with
        KvConnectionError); later calls raise KvConnectionError."""
        conn = self._shutdown()
        if conn is not None:
            await conn.closed

    def _shutdown(self) -> _Connection | None:
        """close() without waiting for the transport to finish closing."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close("client closed")
        return conn

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def namespace(self, name: str | bytes) -> AsyncView:
        """A view of the keys of ``name`` (nested under this client's
        namespace, as Engine.namespace) over this client's connection; its
        methods are coroutines."""
        return AsyncView(self, nested(self.address.namespace, name))

    def pipeline(self) -> AsyncPipeline:
        """Calls queued and sent in one write by ``await execute()`` (kvstore.pipeline)."""
        return AsyncPipeline(self)

    _pipeline_class = AsyncPipeline

    # -- I/O -------------------------------------------------------------

    # _call and _call_frames take the request bytes out of the writer at once,
    # when the method is called, not when the coroutine first runs: several
    # calls made before any of them is awaited each send their own frames, and
    # a coroutine that is never awaited sends nothing.

    # A bad timeout= raises here, as the method is called (the frame already
    # taken out of the writer, so nothing is left behind).

    def _call(self, op: int, retry: bool, missing: Any = None,
              timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        data = self._writer.take()
        return self._round_trip(data, op, retry, missing, call_timeout(timeout))

    def _call_frames(self, op: int, retry: bool, count: int, combine: Any,
                     timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        data = self._writer.take()
        return self._round_trips(data, op, retry, count, combine, call_timeout(timeout))

    def _send(self, data: bytes, op: int, retry: bool, missing: Any,
              timeout: float | None) -> Coroutine[Any, Any, Any]:
        return self._round_trip(data, op, retry, missing, call_timeout(timeout))

    def _send_frames(self, data: bytes, op: int, retry: bool, count: int, combine: Any,
                     timeout: float | None) -> Coroutine[Any, Any, Any]:
        return self._round_trips(data, op, retry, count, combine, call_timeout(timeout))

    async def _pipeline(self, data: bytes, ops: bytes, retry: bool, defaults: dict | None,
                        timeout: float | None = None) -> tuple[list, int]:
        timeout = call_timeout(timeout)
        try:
            return await (await self._connection()).request_batch(data, ops, defaults, timeout)
        except KvConnectionError as exc:
            if not may_retry(retry, exc):
                raise
            return await (await self._connection()).request_batch(data, ops, defaults, timeout)

    async def _round_trip(self, data: bytes, op: int, retry: bool, missing: Any,
                          timeout: float | None) -> Any:
        conn = self._conn
        if conn is None or conn.failure is not None:
            conn = await self._connection()
        try:
            result = await conn.request(data, op, timeout)
        except KvConnectionError as exc:
            if not may_retry(retry, exc):
                raise
            result = await (await self._connection()).request(data, op, timeout)
        return missing if result is MISSING else result

    async def _round_trips(self, data: bytes, op: int, retry: bool, count: int,
                           combine: Any, timeout: float | None) -> Any:
        try:
            results = await _answers(
                (await self._connection()).request_frames(data, op, count, timeout))
        except KvConnectionError as exc:
            if not may_retry(retry, exc):
                raise
            results = await _answers(
                (await self._connection()).request_frames(data, op, count, timeout))
        return combine(results)

    async def _connection(self) -> _Connection:
        """The open connection, opened if needed; one connect at a time."""
        conn = self._conn
        if conn is not None and conn.failure is None:
            return conn
        if self._closed:
            raise self._closed_error()
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        # shield: a caller cancelled while waiting does not abort the connect
        # the other callers wait for.
        return await asyncio.shield(self._connecting)

    def _connected(self, connecting: asyncio.Future) -> None:
        self._connecting = None
        if connecting.cancelled() or connecting.exception() is not None:
            return   # retrieved here, so it is never "unretrieved" if every caller left
        conn = connecting.result()
        if self._closed:
            conn.close("client closed")
        else:
            self._conn = conn

    async def _open(self) -> _Connection:
        address = self.address
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(address, self.timeout, self.max_reply),
                                       address.host, address.port),
                self.connect_timeout)
        except asyncio.TimeoutError as exc:
            raise KvTimeoutError(
                f"connecting to {address} timed out after {self.connect_timeout:g}s") from exc
        except OSError as exc:
            raise KvConnectionError(
                f"cannot connect to {address}: {exc.strerror or exc}") from exc
        return conn


def _overdue(future: asyncio.Future, address: Address, timeout: float) -> None:
    if not future.done():
        future.set_exception(KvTimeoutError(f"no whole reply from {address} within {timeout:g}s"))


async def _answers(futures: list[asyncio.Future]) -> list:
    """The results of several frames in order. Every future is awaited even
    after one failed (an exception nobody retrieves would be reported to the
    loop), and a cancelled caller cancels the rest: their replies are still
    read and dropped."""
    results = []
    first_error = None
    try:
        for future in futures:
            try:
                results.append(await future)
            except KvError as exc:
                first_error = first_error or exc
    except asyncio.CancelledError:
        for future in futures:
            future.cancel()
        raise
    if first_error is not None:
        raise first_error
    return results
