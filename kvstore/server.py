"""Server: an Engine behind the binary protocol, on asyncio.

The Python layer is thin on purpose: each connection's ``data_received``
hands the bytes to its compiled ``Processor`` and writes the one buffer of
replies it returns. Everything else here is housekeeping: the listening
socket, the expiry tick, idle connections, flow control and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from kvstore._engine import Engine, KeySpace
from kvstore._protocol import DEFAULT_MAX_PAYLOAD, DEFAULT_PORT, Processor, ServerStats
from kvstore.errors import InvalidArgumentError

__all__ = ["Server"]

log = logging.getLogger("kvstore.server")

# The expiry tick (seconds): often while expired keys wait to be reclaimed,
# rarely otherwise. Each tick reclaims for at most TICK_BUDGET_MS, so clients
# never wait on it for longer than that.
TICK_IDLE_S = 0.1
TICK_BACKLOG_S = 0.001
TICK_BUDGET_MS = 1.0


class _Connection(asyncio.Protocol):
    __slots__ = ("_server", "_processor", "_transport", "last_active", "peer")

    def __init__(self, server: Server) -> None:
        self._server = server
        self._processor = Processor(server.engine, server.max_payload, server.stats,
                                    server.figures)
        self._transport: asyncio.Transport | None = None
        self.last_active = time.monotonic()
        self.peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server._opened(self)

    def data_received(self, data: bytes) -> None:
        replies = self._processor.feed(data)
        if replies:
            self._transport.write(replies)  # type: ignore[union-attr]
        if self._processor.framing_lost:
            log.info("closing %s: a frame exceeded %d bytes", self.peer, self._server.max_payload)
            self._transport.abort()  # type: ignore[union-attr]
        self.last_active = time.monotonic()

    def eof_received(self) -> bool:
        return False

    # Flow control: a client that sends faster than it reads stops being read.
    def pause_writing(self) -> None:
        self._transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self._transport.resume_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._closed(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Server:
    """kvstore's network server around an Engine.

    ``Server(engine=None, host="127.0.0.1", port=16380, max_payload=64 MiB,
    idle_timeout=None)``; ``await server.start()``, then ``serve_forever()``
    or ``async with server:``. ``close()`` stops listening and closes every
    connection; ``wait_closed()`` waits for that. port=0 picks a free port
    (see ``server.port`` after start).
    """

    def __init__(self, engine: KeySpace | None = None, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 idle_timeout: float | None = None) -> None:
        if not 0 < max_payload <= DEFAULT_MAX_PAYLOAD * 16:
            raise InvalidArgumentError(f"max_payload must be in 1..{DEFAULT_MAX_PAYLOAD * 16}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise InvalidArgumentError("idle_timeout must be > 0 seconds, or None")
        self.engine = engine if engine is not None else Engine()
        self.host = host
        self.port = port
        self.max_payload = max_payload
        self.idle_timeout = idle_timeout
        self.stats = ServerStats()
        self._connections: set[_Connection] = set()
        self._connections_total = 0
        self._started = 0.0
        self._server: asyncio.AbstractServer | None = None
        self._housekeeping: asyncio.Task | None = None

    # -- figures ------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """Server figures for INFO (the processor adds calls and bytes)."""
        return {
            "uptime_s": round(time.monotonic() - self._started, 3) if self._started else 0.0,
            "connections": len(self._connections),
            "connections_total": self._connections_total,
            "max_payload": self.max_payload,
        }

    def _opened(self, conn: _Connection) -> None:
        self._connections.add(conn)
        self._connections_total += 1

    def _closed(self, conn: _Connection) -> None:
        self._connections.discard(conn)

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
        self._housekeeping = loop.create_task(self._tick())
        log.info("kvstore-server listening on %s:%d", self.host, self.port)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        try:
            await self._server.serve_forever()  # type: ignore[union-attr]
        except asyncio.CancelledError:
            pass

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        if self._housekeeping is not None:
            try:
                await self._housekeeping
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    async def _tick(self) -> None:
        """Reclaim expired keys and close idle connections."""
        next_idle_check = time.monotonic()
        while True:
            self.engine.purge_expired(TICK_BUDGET_MS)
            if self.idle_timeout is not None and time.monotonic() >= next_idle_check:
                self._close_idle()
                next_idle_check = time.monotonic() + min(1.0, self.idle_timeout / 2)
            await asyncio.sleep(TICK_BACKLOG_S if self.engine.expiry_backlog else TICK_IDLE_S)

    def _close_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_timeout  # type: ignore[operator]
        for conn in list(self._connections):
            if conn.last_active < cutoff:
                log.info("closing %s: idle for %.0f s", conn.peer, self.idle_timeout)
                conn.close()
