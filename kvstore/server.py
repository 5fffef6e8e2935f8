"""Server: an Engine behind the wire protocol (docs/protocol.md), on asyncio.

The Python layer is thin on purpose: each connection's ``data_received``
hands the bytes to its compiled processor and writes the one buffer of
replies it returns. Everything else here is housekeeping done on timers, never
per request: the engine's housekeeping tick, idle connections, flow control
and shutdown.

Front ends are configuration: a Server listens on one or more ``Endpoint``s
(host, port, framing, TLS context), and each connection gets its processor
from its endpoint's framing (``kvstore._protocol.FRAMINGS``), so a RESP or a
TLS listener is one more Endpoint, not another class.

Housekeeping: keys are reclaimed lazily as they are touched, and by a timer
that calls ``engine.tick(budget)``, the engine's one bounded housekeeping
step (expiry, resize migration), so no client waits on it for more than about
HOUSEKEEPING_BUDGET_MS. While the engine says work is pending the timer comes
back after HOUSEKEEPING_BUSY_INTERVAL_S, otherwise every
HOUSEKEEPING_INTERVAL_S (Redis's active expire cycle, bounded the same way).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import select
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kvstore._engine import Engine, KeySpace
from kvstore._protocol import DEFAULT_MAX_PAYLOAD, DEFAULT_PORT, FRAMINGS, ServerStats
from kvstore.errors import InvalidArgumentError, LimitError, PersistenceError

__all__ = ["Endpoint", "Server", "ServerConnection"]

log = logging.getLogger("kvstore.server")

HOUSEKEEPING_INTERVAL_S = 0.1
HOUSEKEEPING_BUSY_INTERVAL_S = 0.001
HOUSEKEEPING_BUDGET_MS = 1.0
# Idle connections are looked at this many times per idle_timeout, so one is
# closed between 1 and 1.25 idle_timeouts after its last byte.
IDLE_CHECKS_PER_TIMEOUT = 4
# How long wait_closed() lets connections flush their replies before
# dropping them.
SHUTDOWN_GRACE_S = 5.0
# -- limits (issue 10) ----------------------------------------------------------
# Defaults of the per-connection limits (docs/protocol.md, "Limits"). None: off.
DEFAULT_MAX_CLIENTS = 10000               # redis's maxclients
DEFAULT_FRAME_TIMEOUT_S = 30.0            # a started request must be complete by then
DEFAULT_MAX_INPUT_BUFFERS = 1 << 30       # unfinished requests of all connections together
DEFAULT_CLIENT_OUTPUT_GRACE_S = 10.0      # over --client-output-limit this long: closed
# A connection being closed gets this long to flush what it has (an error
# saying why, the replies so far), then it is aborted: close() alone waits
# forever for a client that does not read.
CLOSE_GRACE_S = 1.0
# The limits sweep (frame deadlines, output over its limit) runs this often.
LIMITS_SWEEP_S = 0.25


@dataclass(frozen=True)
class Endpoint:
    """One listening socket: where, which framing (a name in
    ``kvstore._protocol.FRAMINGS``), and a TLS context or None for plain TCP.
    ``port=0`` picks a free port."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    framing: str = "binary"
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise InvalidArgumentError(f"port must be an int from 0 to 65535, not {port!r}")
        if self.framing not in FRAMINGS:
            raise InvalidArgumentError(
                f"framing must be one of {sorted(FRAMINGS)}, not {self.framing!r}")
        if self.tls is not None and not isinstance(self.tls, ssl.SSLContext):
            raise InvalidArgumentError(
                f"tls must be an ssl.SSLContext or None, not {type(self.tls).__name__}")


class ServerConnection(asyncio.Protocol):
    """One client connection: bytes in, its framing's replies out."""

    __slots__ = ("server", "loop", "endpoint", "processor", "transport", "peer", "seen_bytes",
                 "quiet_since", "writing_paused",
                 # -- limits (issue 10)
                 "pending_seen", "frame_since", "over_since", "dropped", "fd",
                 "detect_framing")  # issue 13

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop,
                 endpoint: Endpoint) -> None:
        self.server = server
        self.loop = loop
        self.endpoint = endpoint
        self.processor = FRAMINGS[endpoint.framing](server.engine, server.max_payload,
                                                    server.stats, server.figures,
                                                    max_reply=server.max_reply)
        self.transport: Any = None
        self.peer: Any = None
        # For the idle sweep: (bytes received, write buffer size) when last looked at.
        self.seen_bytes: tuple[int, int] = (0, 0)
        self.quiet_since = 0.0
        self.writing_paused = False
        # -- limits (issue 10)
        self.pending_seen = 0        # processor.pending_bytes as last counted in the budget
        self.frame_since: float | None = None   # when the unfinished request started
        self.over_since: float | None = None    # since when unsent replies are over the limit
        self.dropped = False         # being closed by the server (logged once)
        self.fd = -1                 # the socket's, to see a hang-up while reading is paused
        # issue 13: a binary endpoint also speaks RESP, chosen on the first byte.
        self.detect_framing = endpoint.framing == "binary"

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Replies are whole when written: nothing to gain from Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock is not None:  # -- limits (issue 10)
            self.fd = sock.fileno()
        self.server._opened(self)

    def data_received(self, data: bytes) -> None:
        if self.detect_framing:
            self._detect_framing(data)
        # -- durability (issue 11): with a data directory, replies wait for the log
        if self.server._journal is not None:
            self.server._reply_when_durable(self, self.processor.feed(data))
        else:
            self.transport.write(self.processor.feed(data))
        # -- end durability
        if self.processor.framing_lost or self.processor.has_backlog:
            self._stalled()
        # -- limits (issue 10): the same for every framing
        if self.processor.pending_bytes != self.pending_seen:
            self._pending_changed()
        if self.server.client_output_limit is not None:
            self._check_output()

    # -- RESP on the binary port (issue 13) -----------------------------------
    def _detect_framing(self, data: bytes) -> None:
        # The first byte of a connection picks its framing (docs/protocol.md):
        # binary op codes are below 0x20; RESP starts with "*" or, for an
        # inline command, a letter. Anything else stays binary (and gets its
        # INVALID reply).
        if not data:
            return
        self.detect_framing = False
        first = data[0]
        if first == 0x2A or 0x41 <= first <= 0x5A or 0x61 <= first <= 0x7A:
            self.processor = FRAMINGS["resp"](self.server.engine, self.server.max_payload,
                                              self.server.stats, self.server.figures,
                                              max_reply=self.server.max_reply)

    def _stalled(self) -> None:
        if self.processor.framing_lost:
            # close(), not abort(): the INVALID reply saying why goes out
            # first. Reading stops at once: the payload is never read.
            if self.endpoint.framing == "resp" or not isinstance(
                    self.processor, FRAMINGS["binary"]):   # issue 13: RESP's reasons
                self.drop("RESP protocol error or QUIT")
            else:
                self.drop(f"a frame declared more than {self.server.max_payload} payload bytes")
        elif self.processor.has_backlog:
            # The processor stopped at its output cap: no more requests are
            # read until the ones it holds are answered.
            self.transport.pause_reading()
            if not self.writing_paused:
                self.loop.call_soon(self._run_backlog)
        elif not self.writing_paused:
            self.transport.resume_reading()

    def _run_backlog(self) -> None:
        # -- limits (issue 10): reading is paused while a backlog runs, so a
        # client that hung up would go unseen until all its work is done
        # (pipelined FLUSHes: seconds for nobody); one poll() per turn sees it.
        if self.fd >= 0 and not self.transport.is_closing() and _hung_up(self.fd):
            self.drop("the client hung up with requests left to run", now=True)
            return
        if not self.transport.is_closing():
            # -- durability (issue 11)
            if self.server._journal is not None:
                self.server._reply_when_durable(self, self.processor.feed(b""))
            else:
                self.transport.write(self.processor.feed(b""))
            # -- end durability
            self._stalled()
            if self.server.client_output_limit is not None:
                self._check_output()

    # Flow control: a client that sends faster than it reads stops being read
    # until its replies have drained.
    def pause_writing(self) -> None:
        self.writing_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._stalled()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._closed(self)
        # -- limits (issue 10)
        self.server._input_total -= self.pending_seen
        self.pending_seen = 0

    # -- limits (issue 10) ------------------------------------------------------

    def drop(self, reason: str, *, refusal: str | None = None, now: bool = False) -> None:
        """Close this connection for good, logged once: ``refusal`` (an error
        message) is sent first as an error reply of kind "limit"; ``now``
        aborts at once (its unsent replies are the problem), otherwise what it
        has gets CLOSE_GRACE_S to go out before the abort."""
        if self.dropped:
            return
        self.dropped = True
        log.info("closing %s: %s", self.peer, reason)
        if now:
            self.transport.abort()
            return
        if refusal is not None:
            self.transport.write(self.processor.error_frame(LimitError.kind, refusal))
        self.transport.close()
        self.loop.call_later(CLOSE_GRACE_S, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self in self.server._connections:
            self.transport.abort()

    def _pending_changed(self) -> None:
        # An unfinished request: it has until the frame deadline to complete,
        # and all of them together share the input budget.
        server = self.server
        pending = self.processor.pending_bytes
        server._input_total += pending - self.pending_seen
        if not pending:
            self.frame_since = None
        elif not self.pending_seen:
            self.frame_since = self.loop.time()
        self.pending_seen = pending
        if (server.max_input_buffers is not None
                and server._input_total > server.max_input_buffers):
            self.drop(f"unfinished requests of all connections over {server.max_input_buffers} "
                      "bytes", refusal="the server's input buffers are full; "
                      "closing the connection")

    def _check_output(self) -> None:
        limit = self.server.client_output_limit
        assert limit is not None
        if self.transport.get_write_buffer_size() <= limit:
            self.over_since = None
        elif self.over_since is None:
            self.over_since = self.loop.time()
            if self.server.client_output_grace == 0:
                self._output_over()

    def _output_over(self) -> None:
        self.drop(f"unsent replies over {self.server.client_output_limit} bytes for "
                  f"{self.server.client_output_grace:g} s", now=True)


class Server:
    """kvstore's network server around an Engine.

    ``Server(engine=None, host="127.0.0.1", port=16380, max_payload=64 MiB,
    idle_timeout=None)``: serves ``engine`` (a new Engine when None) on one
    binary endpoint; ``endpoints=[Endpoint(...), ...]`` instead listens on
    each of them (host and port are then not used). Then ``await
    server.start()`` and ``await server.serve_forever()``, or ``async with
    server:``; ``close()`` stops listening and closes every connection once
    its replies are written, ``await wait_closed()`` waits for that.
    ``port=0`` picks a free port (``server.port`` after start: the first
    endpoint's; ``server.addresses`` has them all). ``idle_timeout`` closes
    connections that send nothing for that many seconds (None: never).
    """

    def __init__(self, engine: KeySpace | None = None, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 idle_timeout: float | None = None,
                 expiry_budget_ms: float = HOUSEKEEPING_BUDGET_MS,
                 endpoints: Sequence[Endpoint] | None = None,
                 # -- limits (issue 10)
                 max_clients: int | None = DEFAULT_MAX_CLIENTS,
                 max_reply: int | None = None,
                 client_output_limit: int | None = None,
                 client_output_grace: float = DEFAULT_CLIENT_OUTPUT_GRACE_S,
                 frame_timeout: float | None = DEFAULT_FRAME_TIMEOUT_S,
                 max_input_buffers: int | None = DEFAULT_MAX_INPUT_BUFFERS) -> None:
        if endpoints is None:
            endpoints = [Endpoint(host, port)]
        endpoints = list(endpoints)
        if not endpoints or not all(isinstance(e, Endpoint) for e in endpoints):
            raise InvalidArgumentError("endpoints must be a non-empty sequence of Endpoint")
        if idle_timeout is not None:
            idle_timeout = _positive("idle_timeout", idle_timeout)
        self.engine = engine if engine is not None else Engine()
        self.endpoints = endpoints
        self.addresses: list[tuple[str, int]] = [(e.host, e.port) for e in endpoints]
        self.max_payload = max_payload
        self.idle_timeout = idle_timeout
        self.expiry_budget_ms = _positive("expiry_budget_ms", expiry_budget_ms)
        self.stats = ServerStats()
        # -- limits (issue 10)
        self.max_clients = _count_or_none("max_clients", max_clients)
        self.max_reply = max_reply
        self.client_output_limit = _count_or_none("client_output_limit", client_output_limit)
        self.client_output_grace = _not_negative("client_output_grace", client_output_grace)
        self.frame_timeout = (None if frame_timeout is None
                              else _positive("frame_timeout", frame_timeout))
        self.max_input_buffers = _count_or_none("max_input_buffers", max_input_buffers)
        self._input_total = 0        # pending_bytes of every connection
        # Checks engine and max_payload by the framings' own rules, before any client comes.
        for framing in {e.framing for e in endpoints}:
            FRAMINGS[framing](self.engine, max_payload, self.stats, max_reply=max_reply)
        self._connections: set[ServerConnection] = set()
        self._connections_total = 0
        self._started_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[asyncio.AbstractServer] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._stopped: asyncio.Event | None = None    # set by close()
        self._drained: asyncio.Event | None = None    # set once closing and no connection is left
        self._closing = False
        # -- durability (issue 11): group commit (see _reply_when_durable)
        self._journal: Any = getattr(self.engine, "journal", None)
        if self._journal is not None:
            # The server writes and syncs the log itself, once per loop pass.
            self._journal.group_commit = True
        self._held: list[tuple[ServerConnection, bytes]] = []
        self._commit_scheduled = False
        self._commit_running = False
        self._sync_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.group_commits = 0
        # -- end durability

    @property
    def host(self) -> str:
        """The first endpoint's host."""
        return self.addresses[0][0]

    @property
    def port(self) -> int:
        """The first endpoint's port (the bound one once started)."""
        return self.addresses[0][1]

    def __repr__(self) -> str:
        state = "closed" if self._closing else "serving" if self._listeners else "not started"
        return f"<kvstore.Server {self.host}:{self.port} {state}>"

    # -- figures ------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """Server figures for INFO; the processor adds calls and bytes in/out."""
        uptime = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        return {
            "uptime_s": round(uptime, 3),
            "connections": len(self._connections),
            "connections_total": self._connections_total,
            "max_payload": self.max_payload,
            **(self.persistence_figures() if self._journal is not None else {}),  # -- durability
        }

    def _opened(self, conn: ServerConnection) -> None:
        # -- limits (issue 10): counted before this one joins
        full = self.max_clients is not None and len(self._connections) >= self.max_clients
        self._connections.add(conn)
        self._connections_total += 1
        conn.quiet_since = self._loop.time() if self._loop else 0.0
        if self._closing:
            conn.transport.close()
        elif full:
            conn.drop(f"over --max-clients {self.max_clients}",
                      refusal=f"max number of clients reached ({self.max_clients})")

    def _closed(self, conn: ServerConnection) -> None:
        self._connections.discard(conn)
        if self._closing and not self._connections and self._drained is not None:
            self._drained.set()

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Listen on every endpoint; returns once the sockets are bound."""
        if self._listeners:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopped = asyncio.Event()
        self._drained = asyncio.Event()
        try:
            for index, endpoint in enumerate(self.endpoints):
                listener = await loop.create_server(
                    lambda endpoint=endpoint: ServerConnection(self, loop, endpoint),
                    endpoint.host, endpoint.port, ssl=endpoint.tls, reuse_address=True,
                    backlog=1024)
                self._listeners.append(listener)
                self.addresses[index] = (endpoint.host, listener.sockets[0].getsockname()[1])
        except BaseException:
            for opened in self._listeners:
                opened.close()
            self._listeners.clear()
            raise
        self._started_at = time.monotonic()
        self._housekeeping_tick()
        if self.idle_timeout is not None:
            self._idle_sweep()
        # -- limits (issue 10)
        if self.frame_timeout is not None or self.client_output_limit is not None:
            self._limits_sweep()
        for endpoint, (host, port) in zip(self.endpoints, self.addresses):
            log.debug("listening on %s:%d (%s%s)", host, port, endpoint.framing,
                     ", TLS" if endpoint.tls is not None else "")

    async def serve_forever(self) -> None:
        """Start if needed and serve until close() is called."""
        await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    def close(self) -> None:
        """Stop listening and close every connection once its replies are out."""
        if self._closing:
            return
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for listener in self._listeners:
            listener.close()
        for conn in list(self._connections):
            conn.transport.close()
        if self._stopped is not None:
            self._stopped.set()
        if self._drained is not None and not self._connections:
            self._drained.set()

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection are closed; connections
        that cannot flush within SHUTDOWN_GRACE_S are dropped."""
        if not self._listeners or self._drained is None:
            return
        for listener in self._listeners:
            await listener.wait_closed()
        try:
            await asyncio.wait_for(self._drained.wait(), SHUTDOWN_GRACE_S)
        except asyncio.TimeoutError:
            for conn in list(self._connections):
                conn.transport.abort()
            await self._drained.wait()
        if self._sync_pool is not None:   # -- durability (issue 11)
            self._sync_pool.shutdown(wait=True)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # -- housekeeping -----------------------------------------------------------

    def _schedule(self, name: str, delay: float, callback: Any) -> None:
        if not self._closing:
            self._timers[name] = self._loop.call_later(delay, callback)  # type: ignore[union-attr]

    def _housekeeping_tick(self) -> None:
        pending = False
        try:
            pending = self.engine.tick(self.expiry_budget_ms)
        except Exception:
            log.exception("housekeeping tick failed")
        self._schedule("housekeeping",
                       HOUSEKEEPING_BUSY_INTERVAL_S if pending else HOUSEKEEPING_INTERVAL_S,
                       self._housekeeping_tick)

    # -- durability (issue 11) ---------------------------------------------------
    #
    # fsync="always" is a group commit (Redis's beforeSleep): the frames of one
    # event-loop pass run, each connection's replies are held, then one call
    # (scheduled with call_soon, so it runs after every data_received of the
    # pass) writes all of the pass's log records with one write() and hands
    # one fdatasync to a worker thread; the pass's replies go out when it
    # returns. The loop goes on serving meanwhile: frames that arrive during
    # the fsync are executed and their replies held for the next commit, so a
    # reply never leaves before every write it could have observed is on
    # disk. A reply that cannot have observed an unsynced write (no records
    # pending, no commit under way, nothing held) goes out at once: a reader
    # of durable data does not wait for anyone's fsync.
    #
    # everysec and no: the same holding, but the commit is the pass's one
    # write() and the replies go out right after it, so a process crash loses
    # nothing; the journal's own thread fdatasyncs about once a second
    # (everysec) and never blocks the loop.
    #
    # A failed write or fsync is never an OK: the connections whose replies
    # were held are dropped (their clients see a connection error, not a
    # reply), and the engine refuses writes with PersistenceError from then
    # on, reads going on, until a SNAPSHOT rewrites the state into new files.

    def _reply_when_durable(self, conn: ServerConnection, out: bytes) -> None:
        if self._journal.pending_bytes or self._held or self._commit_running:
            self._held.append((conn, out))
            if not self._commit_scheduled and not self._commit_running:
                self._commit_scheduled = True
                self._loop.call_soon(self._group_commit)  # type: ignore[union-attr]
            return
        conn.transport.write(out)

    def _group_commit(self) -> None:
        self._commit_scheduled = False
        if self._commit_running:
            return
        batch, self._held = self._held, []
        try:
            self._journal.write_pending()
        except PersistenceError:
            self._drop_batch(batch)
            return
        if self._journal.policy != 2:    # everysec, no: written is enough (a crash keeps it)
            self._release(batch)
            return
        if self._sync_pool is None:
            self._sync_pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="kvstore-group-commit")
        self._commit_running = True
        future = self._loop.run_in_executor(  # type: ignore[union-attr]
            self._sync_pool, self._journal.sync)
        future.add_done_callback(lambda done: self._committed(batch, done))

    def _committed(self, batch: list[tuple[ServerConnection, bytes]],
                   done: asyncio.Future[None]) -> None:
        self._commit_running = False
        self.group_commits += 1
        if done.exception() is not None:
            self._drop_batch(batch)
        else:
            self._release(batch)
        if self._held and not self._commit_scheduled:
            self._commit_scheduled = True
            self._loop.call_soon(self._group_commit)  # type: ignore[union-attr]

    def _release(self, batch: list[tuple[ServerConnection, bytes]]) -> None:
        for conn, out in batch:
            if not conn.transport.is_closing():
                conn.transport.write(out)

    def _drop_batch(self, batch: list[tuple[ServerConnection, bytes]]) -> None:
        log.error("the log could not be made durable (%s): dropping %d connections whose "
                  "replies waited for it", self._journal.failure, len({c for c, _ in batch}))
        for conn, _ in batch:
            conn.transport.abort()

    def persistence_figures(self) -> dict[str, Any]:
        return {"group_commits": self.group_commits, "replies_held": len(self._held)}

    # -- end durability

    def _idle_sweep(self) -> None:
        timeout = self.idle_timeout
        assert timeout is not None and self._loop is not None
        now = self._loop.time()
        for conn in list(self._connections):
            # Progress either way counts: bytes in, or replies draining out of
            # the write buffer (a client reading a long answer is not idle; one
            # that never reads leaves the buffer unchanged and is closed).
            progress = (conn.processor.bytes_received, conn.transport.get_write_buffer_size())
            if progress != conn.seen_bytes:
                conn.seen_bytes = progress
                conn.quiet_since = now
            elif now - conn.quiet_since >= timeout:
                # -- limits (issue 10): closed for real (aborted after a grace
                # when it does not read), logged once.
                conn.drop(f"idle for {timeout:g} s")
        self._schedule("idle", timeout / IDLE_CHECKS_PER_TIMEOUT, self._idle_sweep)

    # -- limits (issue 10) ---------------------------------------------------------

    def _limits_sweep(self) -> None:
        # Frame deadlines and output over its limit for longer than the grace;
        # O(connections) four times a second, nothing per request.
        assert self._loop is not None
        now = self._loop.time()
        frame_timeout = self.frame_timeout
        grace = self.client_output_grace
        for conn in list(self._connections):
            if conn.dropped:
                continue
            if (frame_timeout is not None and conn.frame_since is not None
                    and now - conn.frame_since >= frame_timeout):
                conn.drop(f"a request unfinished after {frame_timeout:g} s",
                          refusal=f"a request must be complete within {frame_timeout:g} s of "
                                  "its first byte; closing the connection")
            elif self.client_output_limit is not None:
                conn._check_output()
                if conn.over_since is not None and now - conn.over_since >= grace:
                    conn._output_over()
        self._schedule("limits", LIMITS_SWEEP_S, self._limits_sweep)


# -- limits (issue 10)
_HANG_UP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, _HANG_UP)
    return bool(poller.poll(0))


def _count_or_none(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive int or None, not {value!r}")
    return value


def _not_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value < math.inf):
        raise InvalidArgumentError(f"{name} must be a number >= 0, not {value!r}")
    return float(value)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < math.inf):
        raise InvalidArgumentError(f"{name} must be a positive number, not {value!r}")
    return float(value)
