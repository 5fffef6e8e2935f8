"""Client: the Engine API over one blocking TCP connection.

A call encodes its request (kvstore._commands), sends it with one
``sendall`` and reads until the compiled ``ReplyReader`` has the whole reply.
The socket has TCP_NODELAY, a connect timeout and a per-call deadline (the
whole reply within ``timeout``), both a few seconds by default, so no call
hangs forever, and a reply larger than ``max_reply`` is refused from its
header before it is buffered.

The connection is opened on first use and again after it broke: any
connection error, timeout, ProtocolError, or an exception such as
KeyboardInterrupt in the middle of an exchange drops it, because what is left
on the wire no longer matches the requests sent. Reads are then sent again
once; writes are not (see _commands). A Client is not thread-safe: share a
:class:`kvstore.Pool` between threads. After ``os.fork()`` the child drops the
connections it inherited (without shutting them down, so the parent's keep
working) and opens its own.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
import weakref
from typing import Any

from kvstore._commands import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    Commands,
    SyncExtras,
    SyncView,
    check_timeout,
    may_retry,
    nested,
)
from kvstore._protocol import DEFAULT_MAX_PAYLOAD, MISSING, NEED_MORE, ReplyReader
from kvstore.errors import KvConnectionError, KvError, KvTimeoutError, ProtocolError
from kvstore.lock import Lock
from kvstore.pipeline import Pipeline

__all__ = ["Client"]

# Below glibc's mmap threshold, so each recv's buffer is a cheap allocation.
RECV_BYTES = 65536

# A connection idle this long (seconds) is polled before its next request;
# back-to-back calls skip the syscall (see Client._check_idle).
PROBE_AFTER = 0.001

# A wait may end this much (seconds) past the call's deadline rather than
# cost a setsockopt on every call (see Client._more).
DEADLINE_SLACK = 0.001

# A pipeline goes in parts of at most this many bytes, each sent after the
# replies to the one before were read: a part always fits the kernel's socket
# buffers (the server's receive buffer alone is larger), so neither side can
# block the other however large the replies.
PART_BYTES = 65536

# op u8 + payload length u32 (docs/protocol.md)
HEADER_BYTES = 5

# Every Client with an open socket, for the fork handler below.
_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client(SyncExtras, Commands):
    """A blocking client with the Engine API (see kvstore._commands for the
    methods), plus ping(), info(), lock(), close() and ``with``.

    ``Client(url)`` connects on first use; ``Client.connect(url)`` at once.
    ``timeout`` bounds each call, from its request to its whole reply (one
    deadline however the reply trickles in), ``connect_timeout`` each
    connect (seconds); ``max_payload`` is the server's frame limit, checked
    before anything is sent; ``max_reply`` the largest reply payload taken
    (default 128 MiB, twice the server's default request limit), refused from its header with
    ReplyTooLargeError before anything is buffered.
    """

    __slots__ = ("_reader", "_sock", "_poller", "_idle_since", "_deadline", "_io_timeout",
                 "_call_timeout", "__weakref__")
    _lock_class = Lock

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_payload: int = DEFAULT_MAX_PAYLOAD, max_reply: int | None = None) -> None:
        super().__init__(url, timeout=timeout, connect_timeout=connect_timeout,
                         max_payload=max_payload, max_reply=max_reply)
        self._reader: Any = None   # the ReplyReader of the open connection
        self._sock: socket.socket | None = None
        self._poller: Any = None   # select.poll of the open connection
        self._idle_since = 0.0     # monotonic time the last request began
        self._deadline = 0.0       # monotonic time the current call must be answered by
        self._io_timeout = 0.0     # the socket's SO_RCVTIMEO now (shortened near a deadline)
        self._call_timeout = self.timeout   # the current call's timeout

    @classmethod
    def connect(cls, url: str, **options: Any) -> Client:
        """A Client connected to ``url`` (``[kv://]host[:port][/namespace]``);
        raises KvConnectionError when the server cannot be reached."""
        client = cls(url, **options)
        client._open()
        return client

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        """Close the connection; later calls raise KvConnectionError."""
        self._closed = True
        self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def namespace(self, name: str | bytes) -> SyncView:
        """A view of the keys of ``name`` (nested under this client's
        namespace, as Engine.namespace) over this client's connection."""
        return SyncView(self, nested(self.address.namespace, name))

    def pipeline(self) -> Pipeline:
        """Calls queued and sent in one write by ``execute()`` (kvstore.pipeline)."""
        return Pipeline(self)

    _pipeline_class = Pipeline

    # -- I/O -------------------------------------------------------------

    def _call(self, op: int, retry: bool, missing: Any = None,
              timeout: float | None = None) -> Any:
        result = self._request(self._writer.take(), op, retry, 1, timeout)
        return missing if result is MISSING else result

    def _send(self, data: bytes, op: int, retry: bool, missing: Any,
              timeout: float | None) -> Any:
        result = self._request(data, op, retry, 1, timeout)
        return missing if result is MISSING else result

    def _send_frames(self, data: bytes, op: int, retry: bool, count: int, combine: Any,
                     timeout: float | None) -> Any:
        return combine(self._request(data, op, retry, count, timeout))

    def _request(self, data: bytes, op: int, retry: bool, count: int,
                 timeout: float | None) -> Any:
        self._check_idle(timeout)
        try:
            return self._exchange(data, op, count)
        except KvConnectionError as exc:
            if not may_retry(retry, exc):
                raise
            return self._exchange(data, op, count)

    def _pipeline(self, data: bytes, ops: bytes, retry: bool, defaults: dict | None,
                  timeout: float | None = None) -> tuple[list, int]:
        """Send a pipeline's frames; (answers in place, error replies among them)."""
        self._check_idle(timeout)
        try:
            return self._exchange_batch(data, ops, defaults)
        except KvConnectionError as exc:
            if not may_retry(retry, exc):
                raise
            return self._exchange_batch(data, ops, defaults)

    def _check_idle(self, timeout: float | None) -> None:
        """The rule for bytes nobody asked for (a stray frame from a broken
        server or proxy) and for a server that closed an idle connection,
        without a syscall on back-to-back calls: after a reply, any byte
        left in the reader is stray (checked in _settle); before a request
        PROBE_AFTER or more after the previous one began, a zero-timeout
        poll (which holds for a TLS socket too, unlike recv(MSG_PEEK)) finds
        either, and the request goes on a fresh connection instead. Also
        starts the call's deadline, ``timeout`` (None: the client's) from
        now (see _more; a read resent after a connection error gets one
        more first wait of up to ``timeout``)."""
        seconds = self.timeout if timeout is None else check_timeout("timeout", timeout)
        now = time.monotonic()
        self._deadline = now + seconds
        self._call_timeout = seconds
        if self._sock is not None and now - self._idle_since >= PROBE_AFTER:
            if self._poller.poll(0):
                self._drop()
        self._idle_since = now

    def _settle(self) -> None:
        # The exchange is complete: nothing else may have arrived.
        if len(self._reader):
            raise ProtocolError(f"{self.address} sent bytes nobody asked for")

    def _exchange(self, data: bytes, op: int, count: int) -> Any:
        """Send ``data`` and read ``count`` replies to ``op``: the answer, or
        the list of answers when count > 1."""
        sock = self._sock or self._open()
        if self._io_timeout != self._call_timeout:
            self._first_wait(sock)
        try:
            sock.sendall(data)
            if count == 1:
                try:
                    result = self._read(sock, op)
                except ProtocolError:
                    raise
                except KvError:
                    self._settle()   # an error reply is a whole exchange too
                    raise
                if len(self._reader):   # _settle(), inline on the hot path
                    self._settle()
                return result
            results = []
            first_error = None
            for _ in range(count):
                # Every reply is read even after an error reply, so the
                # connection stays in step; the first error is raised.
                try:
                    results.append(self._read(sock, op))
                except ProtocolError:
                    raise
                except KvError as exc:
                    first_error = first_error or exc
            self._settle()
            if first_error is not None:
                raise first_error
            return results
        except OSError as exc:
            self._drop()
            raise self._connection_error(exc) from exc
        except ProtocolError:
            self._drop()
            raise
        except KvError:
            # An error reply: consumed whole, the connection is in step.
            raise
        except BaseException:
            # Interrupted half-way (KeyboardInterrupt, MemoryError): replies
            # may still be on their way, so this connection cannot be reused.
            self._drop()
            raise

    def _exchange_batch(self, data: bytes, ops: bytes, defaults: dict | None) -> tuple[list, int]:
        sock = self._sock or self._open()
        if self._io_timeout != self._call_timeout:
            self._first_wait(sock)
        reader = self._reader
        results: list = []
        errors = 0
        try:
            start = 0
            for end, frames in _parts(data, len(ops)):
                # One part in flight at a time: the server stops reading while
                # its replies are not read, so a part must fit the socket
                # buffers whatever its replies are (see PART_BYTES).
                sock.sendall(data[start:end] if start or end < len(data) else data)
                start = end
                while len(results) < frames:
                    self._more(sock)
                    errors += reader.read_batch(ops, results, defaults)
            self._settle()
            return results, errors
        except OSError as exc:
            self._drop()
            raise self._connection_error(exc) from exc
        except BaseException:
            # A ProtocolError, or interrupted half-way: out of step.
            self._drop()
            raise

    def _read(self, sock: socket.socket, op: int) -> Any:
        reader = self._reader
        result = reader.read(op)
        if result is NEED_MORE:
            # The first wait needs no deadline check: the socket's timeout
            # is the call's whole timeout (see _first_wait).
            chunk = sock.recv(RECV_BYTES)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            reader.feed(chunk)
            result = reader.read(op)
            while result is NEED_MORE:
                self._more(sock)
                result = reader.read(op)
        return result

    def _first_wait(self, sock: socket.socket) -> None:
        # The socket's timeout becomes this call's (a call with its own
        # timeout=, or one after a wait was shortened): a syscall only then.
        _set_io_timeout(sock, self._call_timeout)
        self._io_timeout = self._call_timeout

    def _more(self, sock: socket.socket) -> None:
        """Feed the reader the next bytes, within the call's deadline. The
        socket's own timeout (the call's whole timeout) bounds the first
        wait; a later one, only when a reply comes in pieces, is shortened
        to what is left, so a trickling reply cannot stretch the call."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if remaining < self._io_timeout - DEADLINE_SLACK:
            _set_io_timeout(sock, remaining)
            self._io_timeout = remaining
        chunk = sock.recv(RECV_BYTES)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self._reader.feed(chunk)

    def _open(self) -> socket.socket:
        if self._closed:
            raise self._closed_error()
        address = self.address
        try:
            sock = socket.create_connection((address.host, address.port),
                                            timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise KvTimeoutError(
                f"connecting to {address} timed out after {self.connect_timeout:g}s") from exc
        except OSError as exc:
            raise KvConnectionError(f"cannot connect to {address}: {_reason(exc)}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _set_io_timeout(sock, self.timeout)
            self._io_timeout = self.timeout
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = ReplyReader(self.max_reply)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._idle_since = time.monotonic()
        _open_clients.add(self)
        return sock

    def _drop(self) -> None:
        sock, self._sock, self._reader, self._poller = self._sock, None, None, None
        if sock is not None:
            _open_clients.discard(self)
            sock.close()

    def _connection_error(self, exc: OSError) -> KvConnectionError:
        if isinstance(exc, (TimeoutError, BlockingIOError)):
            return KvTimeoutError(
                f"no whole reply from {self.address} within {self._call_timeout:g}s")
        return KvConnectionError(f"connection to {self.address} failed: {_reason(exc)}")


def _parts(data: bytes, count: int) -> list[tuple[int, int]]:
    """A pipeline's bytes cut at frame boundaries into parts of at most
    PART_BYTES (or one frame, when a frame is larger): (end offset, frames
    up to there) for each part."""
    if len(data) <= PART_BYTES:
        return [(len(data), count)]
    parts = []
    pos = part_start = frames = 0
    while pos < len(data):
        end = pos + HEADER_BYTES + int.from_bytes(data[pos + 1:pos + HEADER_BYTES], "big")
        if end - part_start > PART_BYTES and pos > part_start:
            parts.append((pos, frames))
            part_start = pos
        pos = end
        frames += 1
    parts.append((len(data), frames))
    return parts


def _set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound every send and recv by ``seconds``. The kernel's SO_RCVTIMEO /
    SO_SNDTIMEO (expiry: EAGAIN, a BlockingIOError) keep the socket
    blocking, which spares the poll() CPython makes before each call on a
    socket with a Python-level timeout."""
    sock.settimeout(None)
    whole = int(seconds)
    # At least 1 µs: a zero timeval would mean "wait forever".
    micros = max(int((seconds - whole) * 1_000_000), 0 if whole else 1)
    timeval = struct.pack("@ll", whole, micros)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:
        sock.settimeout(seconds)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _forget_inherited_connections() -> None:
    # In a fork child: the sockets are shared with the parent. Closing our
    # descriptors leaves the parent's connections alive (no shutdown()).
    for client in list(_open_clients):
        client._drop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_connections)
