"""A TCP proxy that breaks connections on purpose (the model is asyncpg's
_testbase/fuzzer.py).

It runs its own event loop in a thread, so blocking and asyncio clients alike
can talk through it, and the test steers it from outside: hold the replies,
drop the next request or the next reply, deliver replies byte by byte, kill
every connection. Each steering call returns once the proxy applied it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

__all__ = ["FaultProxy"]

CHUNK_BYTES = 65536


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target`` until close()."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._pairs: set[_Pair] = set()
        self.accepted = 0                       # client connections so far
        self.to_server = bytearray()            # every byte forwarded to the server
        self._fault: str | None = None          # "drop_request" | "drop_reply" | "cut_reply"
        self._fault_times = 0                   # how many more requests it hits
        self.trickle = False                    # replies one byte per write
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="fault-proxy")
        self._thread.start()
        self.port = ready.result(10)

    # -- steering (from the test's thread) ----------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, namespace: str = "") -> str:
        return f"{self.address}/{namespace}" if namespace else self.address

    def hold_replies(self) -> None:
        """Keep server replies in the proxy until release_replies()."""
        self._apply(lambda: self._flowing.clear())

    def release_replies(self) -> None:
        self._apply(lambda: self._flowing.set())

    def drop_next_request(self, times: int = 1) -> None:
        """The next client bytes are not forwarded; that connection is killed
        (and so for the following ``times - 1`` requests)."""
        self._apply(lambda: self._arm("drop_request", times))

    def drop_next_reply(self, times: int = 1) -> None:
        """The next request is forwarded, but its reply is not: the client
        connection is killed when the reply arrives (the server did the work)."""
        self._apply(lambda: self._arm("drop_reply", times))

    def cut_next_reply(self, times: int = 1) -> None:
        """Like drop_next_reply, but the first half of the reply gets through."""
        self._apply(lambda: self._arm("cut_reply", times))

    def set_trickle(self, on: bool) -> None:
        self._apply(lambda: setattr(self, "trickle", on))

    def kill_all(self) -> None:
        """Abort every open connection, as a crashing server would."""
        self._apply(lambda: [pair.abort() for pair in list(self._pairs)])

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._apply(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _apply(self, action) -> None:
        async def run():
            action()
        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- the proxy's own thread -----------------------------------------------

    def _run(self, ready: concurrent.futures.Future) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing = asyncio.Event()
        self._flowing.set()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", 0))
        self._server = server
        ready.set_result(server.sockets[0].getsockname()[1])
        self._loop.run_forever()
        # Drain the tasks the aborts left, so no "Task was destroyed" noise.
        tasks = asyncio.all_tasks(self._loop)
        if tasks:
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def _shutdown(self) -> None:
        self._server.close()
        self._flowing.set()   # let held pumps see their pair is dead and finish
        for pair in list(self._pairs):
            pair.abort()

    def _arm(self, fault: str, times: int) -> None:
        self._fault, self._fault_times = fault, times

    def _take_fault(self, kind: str) -> bool:
        if self._fault != kind:
            return False
        self._fault_times -= 1
        if self._fault_times <= 0:
            self._fault = None
        return True

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        pair = _Pair(client_writer, server_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._requests(pair, client_reader),
                                 self._replies(pair, server_reader),
                                 return_exceptions=True)
        finally:
            self._pairs.discard(pair)
            pair.abort()

    async def _requests(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        while not pair.dead:
            data = await _read(reader)
            if not data:
                break
            if self._take_fault("drop_request"):
                pair.abort()
                break
            if self._take_fault("drop_reply"):
                pair.drop_reply = True
            if self._take_fault("cut_reply"):
                pair.cut_reply = True
            self.to_server += data
            pair.server.write(data)
        pair.abort()

    async def _replies(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        while not pair.dead:
            data = await _read(reader)
            if not data or pair.drop_reply:
                break
            await self._flowing.wait()
            if pair.dead:
                break
            if pair.cut_reply:
                pair.client.write(data[:max(1, len(data) // 2)])
                break
            if self.trickle:
                for i in range(len(data)):
                    pair.client.write(data[i:i + 1])
                    await pair.client.drain()
                    await asyncio.sleep(0)
            else:
                pair.client.write(data)
        pair.abort()


class _Pair:
    """A client connection and the proxy's connection to the server for it."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.drop_reply = False
        self.cut_reply = False
        self.dead = False

    def abort(self) -> None:
        if not self.dead:
            self.dead = True
            # close() flushes what was written (a cut reply's first half); a
            # reset would discard it.
            self.client.transport.close()
            self.server.transport.abort()


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(CHUNK_BYTES)
    except (ConnectionError, OSError):
        return b""
