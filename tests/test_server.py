"""kvstore-server over raw sockets (docs/protocol.md): the issue's bytes,
pipelining, bad input and limits against the shared ``server`` subprocess;
signals and options on servers of their own; flow control, idle connections
and the expiry tick on a ``kvstore.Server`` embedded in the test's loop.

Frames are built by hand (tests/test_protocol.py's helpers), so these tests
check the bytes the document promises, not the client's view of them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys

import pytest

import kvstore
from kvstore import _codec
from kvstore._protocol import OP_CAS, OP_GET, OP_INCR, OP_INFO, OP_MGET, OP_MSET, OP_PING, OP_SET
from kvstore.cli import _size
from kvstore.errors import InvalidArgumentError, ValueTooLargeError
from tests.procs import SERVER_COMMAND
from tests.looputil import guarded_loop, loop  # noqa: F401  (fixture)
from tests.test_protocol import (
    CAS_FAILED, ERROR, INVALID, NULL, OK, PING, enc, error_of, frame, i64, key, replies, set_frame,
    u16, u64,
)

IO_TIMEOUT_S = 10.0


class ReplyBuffer:
    """Reply frames parsed as bytes arrive (linear in what is received)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0
        self.parsed: list[tuple[int, bytes]] = []

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        while len(self.data) - self.pos >= 5:
            length = int.from_bytes(self.data[self.pos + 1:self.pos + 5], "big")
            end = self.pos + 5 + length
            if end > len(self.data):
                break
            self.parsed += replies(bytes(self.data[self.pos:end]))
            self.pos = end
        if self.pos > 1 << 20:
            del self.data[:self.pos]
            self.pos = 0

    def take(self, count: int) -> list[tuple[int, bytes]] | None:
        if len(self.parsed) < count:
            return None
        taken, self.parsed = self.parsed[:count], self.parsed[count:]
        return taken


class Raw:
    """A bare TCP connection speaking frames."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=IO_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.received = ReplyBuffer()

    @classmethod
    def to(cls, server) -> Raw:
        return cls(server.host, server.port)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, count: int) -> list[tuple[int, bytes]]:
        """The next ``count`` replies."""
        while (taken := self.received.take(count)) is None:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.received.feed(chunk)
        return taken

    def call(self, *frames: bytes) -> list[tuple[int, bytes]]:
        self.send(b"".join(frames))
        return self.read(len(frames))

    def read_until_closed(self) -> bytes:
        """Everything until the server closes the connection (a reset counts)."""
        data = b""
        try:
            while chunk := self.sock.recv(1 << 20):
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(server):
    conn = Raw.to(server)
    yield conn
    conn.close()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def info_of(conn: Raw) -> dict:
    ((status, payload),) = conn.call(frame(OP_INFO))
    assert status == OK
    return _codec.decode(payload)


# ---------------------------------------------------------------- the wire


def test_set_then_get_answers_the_issue_bytes_exactly(raw):
    raw.send(set_frame("foo", 42))
    assert raw.sock.recv(5) == bytes.fromhex("00 00000000")
    raw.send(frame(OP_GET, key("foo")))
    expected = bytes.fromhex("00 00000009 01 000000000000002a")
    received = b""
    while len(received) < len(expected):
        received += raw.sock.recv(64)
    assert received == expected


def test_get_of_a_missing_key_answers_01_00000000(raw, namespace):
    raw.send(frame(OP_GET, key(f"{namespace}:missing")))
    assert raw.sock.recv(64) == bytes.fromhex("01 00000000")


def test_pipelined_frames_sent_at_once_answer_in_order(raw, namespace):
    frames = []
    for i in range(2000):
        k = f"{namespace}:{i % 50}"
        frames += [set_frame(k, i), frame(OP_GET, key(k))]
    got = raw.call(*frames)
    assert got[1::2] == [(OK, enc(i)) for i in range(2000)]
    assert set(got[0::2]) == {(OK, b"")}


def test_every_reply_status_over_the_wire(raw, namespace):
    k = lambda name: key(f"{namespace}:{name}")
    got = raw.call(
        frame(OP_SET, k("s") + u64(0) + enc("text")),
        frame(OP_INCR, k("s") + i64(1)),
        frame(OP_CAS, k("s") + u64(0) + enc("other") + enc(1)),
        frame(OP_GET, k("nothing")),
        frame(0x55),
        frame(OP_MGET, u16(2) + k("s") + k("nothing")),
    )
    assert [status for status, _ in got] == [OK, ERROR, CAS_FAILED, NULL, INVALID, OK]
    assert error_of(got[1][1])[0] == "wrong_type"
    assert got[5][1] == u16(2) + enc("text") + b"\x00"


# ---------------------------------------------------------------- bad input


def test_unknown_op_is_invalid_and_the_connection_goes_on(raw, namespace):
    (status, payload), pong = raw.call(frame(0xEE, b"whatever"), PING)
    assert (status, error_of(payload)[0]) == (INVALID, "protocol")
    assert pong == (OK, b"")
    assert raw.call(set_frame(f"{namespace}:k", 1)) == [(OK, b"")]


def test_truncated_frame_waits_for_its_rest(raw, namespace):
    data = set_frame(f"{namespace}:slow", b"v" * 100_000) + PING
    for start in range(0, len(data), 7_777):
        raw.send(data[start:start + 7_777])
    assert raw.read(2) == [(OK, b""), (OK, b"")]


def test_truncated_frame_then_hang_up_leaves_the_server_serving(server, namespace):
    first = Raw.to(server)
    first.call(set_frame(f"{namespace}:kept", "value"))
    first.send(set_frame(f"{namespace}:cut", b"x" * 1000)[:500])
    first.close()
    second = Raw.to(server)
    assert second.call(frame(OP_GET, key(f"{namespace}:kept")), frame(OP_GET, key(f"{namespace}:cut"))) == [
        (OK, enc("value")), (NULL, b"")]
    second.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
@pytest.mark.parametrize("declared", [0xFFFFFFFF, 64 * 1024 * 1024 + 1])
def test_length_over_the_limit_closes_without_reading_the_payload(server, declared):
    before = rss_bytes(server.proc.pid)
    conn = Raw.to(server)
    conn.send(PING + bytes([OP_SET]) + declared.to_bytes(4, "big"))
    chunk = b"\xab" * (1 << 20)
    try:
        for _ in range(96):   # more than the default limit, if the server kept reading
            conn.sock.sendall(chunk)
    except OSError:
        pass      # reset by the server, as it should be
    assert conn.read_until_closed()[:5] in (b"", frame(OK))  # a reset may drop the replies
    conn.close()
    assert rss_bytes(server.proc.pid) - before < 16 * 1024 * 1024
    fresh = Raw.to(server)
    assert fresh.call(PING) == [(OK, b"")]
    fresh.close()


def test_oversized_frame_gets_a_too_large_reply_before_the_close(server):
    conn = Raw.to(server)
    conn.send(PING + b"\x02\xff\xff\xff\xff")
    data = conn.read_until_closed()
    conn.close()
    pong, (status, payload) = replies(data)
    assert pong == (OK, b"")
    assert (status, error_of(payload)[0]) == (INVALID, ValueTooLargeError.kind)


def test_random_garbage_never_hurts_the_server_or_its_data(server, namespace):
    names = [f"{namespace}:g{i}" for i in range(300)]
    writer = Raw.to(server)
    items = b"".join(key(n) + enc([n, 1.5]) for n in names)
    assert writer.call(frame(OP_MSET, u16(len(names)) + u64(0) + items)) == [(OK, b"")]
    rng = random.Random(20261128)
    for size in (1, 5, 100, 4096, 70_000):
        conn = Raw.to(server)
        conn.send(bytes(rng.getrandbits(8) for _ in range(size)))
        conn.sock.shutdown(socket.SHUT_WR)
        replies_or_reset = conn.read_until_closed()
        conn.close()
        assert isinstance(replies_or_reset, bytes)
    # The writer's connection never noticed, and a fresh one reads every key.
    assert writer.call(PING) == [(OK, b"")]
    fresh = Raw.to(server)
    got = fresh.call(frame(OP_MGET, u16(len(names)) + b"".join(key(n) for n in names)))
    assert got == [(OK, u16(len(names)) + b"".join(enc([n, 1.5]) for n in names))]
    writer.close()
    fresh.close()


def test_a_broken_connection_does_not_disturb_another(server, namespace):
    steady = Raw.to(server)
    steady.send(set_frame(f"{namespace}:s", 1)[:10])     # half a frame, pending
    for bad in (b"\x02\xff\xff\xff\xff", frame(0x99, b"?"), b"\x01\x00"):
        conn = Raw.to(server)
        conn.send(bad)
        conn.close()
    steady.send(set_frame(f"{namespace}:s", 1)[10:] + frame(OP_GET, key(f"{namespace}:s")))
    assert steady.read(2) == [(OK, b""), (OK, enc(1))]
    steady.close()


# ---------------------------------------------------------------- INFO


def test_info_reports_engine_and_server_figures(server, namespace):
    first, second = Raw.to(server), Raw.to(server)
    before = info_of(first)
    requests = [set_frame(f"{namespace}:i", 1)] + [frame(OP_GET, key(f"{namespace}:i"))] * 3
    second.call(*requests)
    after = info_of(first)
    assert {"keys", "memory_bytes", "hits", "misses", "expired"} <= set(after)
    assert after["keys"] >= 1 and after["memory_bytes"] > 0
    assert after["uptime_s"] > 0
    assert after["connections"] >= 2
    assert after["connections_total"] >= before["connections_total"]
    assert after["max_payload"] == 64 * 1024 * 1024
    calls = lambda info, name: info["calls"].get(name, 0)
    assert calls(after, "GET") - calls(before, "GET") == 3
    assert calls(after, "SET") - calls(before, "SET") == 1
    assert calls(after, "INFO") - calls(before, "INFO") == 1
    assert after["bytes_in"] - before["bytes_in"] >= sum(map(len, requests)) + 5
    assert after["bytes_out"] > before["bytes_out"]
    first.close()
    second.close()


# ---------------------------------------------------------------- the process


def _start(*args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [*SERVER_COMMAND, "--bind", "127.0.0.1:0", "--log-level", "warning", *args],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("kvstore-server listening on 127.0.0.1:"), line
    return proc, int(line.rsplit(":", 1)[1])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_cleanly_with_connections_open(signum):
    proc, port = _start()
    try:
        idle, busy = Raw("127.0.0.1", port), Raw("127.0.0.1", port)
        assert busy.call(set_frame("k", 1), PING) == [(OK, b""), (OK, b"")]
        busy.send(set_frame("k", 2)[:7])
        proc.send_signal(signum)
        assert proc.wait(IO_TIMEOUT_S) == 0
        assert idle.read_until_closed() == b"" and busy.read_until_closed() == b""
        idle.close()
        busy.close()
        with pytest.raises(OSError):
            Raw("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_max_payload_option_sets_the_frame_limit():
    proc, port = _start("--max-payload", "1K")
    try:
        conn = Raw("127.0.0.1", port)
        assert conn.call(frame(OP_PING, b"p" * 1024)) == [(OK, b"p" * 1024)]
        conn.send(frame(OP_PING, b"p" * 1025))
        (status, payload), = replies(conn.read_until_closed())
        assert (status, error_of(payload)[0]) == (INVALID, ValueTooLargeError.kind)
        conn.close()
    finally:
        proc.terminate()
        assert proc.wait(IO_TIMEOUT_S) == 0
        proc.stdout.close()


def test_idle_timeout_option_closes_idle_connections():
    proc, port = _start("--idle-timeout", "0.5")
    try:
        idle = Raw("127.0.0.1", port)
        assert idle.call(PING) == [(OK, b"")]
        # Closed by the server: recv sees the end well before the socket timeout.
        assert idle.read_until_closed() == b""
        idle.close()
        fresh = Raw("127.0.0.1", port)
        assert fresh.call(PING) == [(OK, b"")]
        fresh.close()
    finally:
        proc.terminate()
        assert proc.wait(IO_TIMEOUT_S) == 0
        proc.stdout.close()


@pytest.mark.parametrize("args, code", [
    (["--max-payload", "0"], 2),
    (["--max-payload", "lots"], 2),
    (["--idle-timeout", "-1"], 2),
    (["--bind", "127.0.0.1:70000"], 2),
    (["--bind", "127.0.0.1:1/ns"], 2),
], ids=["zero-payload", "bad-size", "negative-idle", "bad-port", "namespace"])
def test_bad_options_exit_2(args, code):
    done = subprocess.run([*SERVER_COMMAND, *args], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == code
    assert "kvstore-server" in done.stderr


def test_an_address_in_use_exits_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*SERVER_COMMAND, "--bind", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_sizes_take_binary_suffixes():
    assert [_size(t) for t in ("1024", "1K", "1KiB", "64M", "64mb", "1G")] == [
        1024, 1024, 1024, 64 << 20, 64 << 20, 1 << 30]


# ---------------------------------------------------------------- embedded Server


async def _open(server: kvstore.Server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    return reader, writer


async def _call(reader, writer, *frames: bytes) -> list[tuple[int, bytes]]:
    writer.write(b"".join(frames))
    return await _read(reader, len(frames))


async def _read(reader, count: int) -> list[tuple[int, bytes]]:
    received = ReplyBuffer()
    while (taken := received.take(count)) is None:
        chunk = await asyncio.wait_for(reader.read(1 << 20), IO_TIMEOUT_S)
        assert chunk, "the server closed the connection"
        received.feed(chunk)
    return taken


async def _until(condition, timeout: float = IO_TIMEOUT_S) -> None:
    """Let the loop run until condition() holds (state only the server sees)."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


def test_embedded_server_serves_the_engine_it_is_given(loop):
    engine = kvstore.Engine()
    engine.set("shared", [1, 2])

    async def main():
        async with kvstore.Server(engine, port=0) as server:
            reader, writer = await _open(server)
            assert await _call(reader, writer, frame(OP_GET, key("shared")),
                               set_frame("back", "x")) == [(OK, enc([1, 2])), (OK, b"")]
            figures = server.figures()
            assert figures["connections"] == 1 and figures["connections_total"] == 1
            writer.close()
            await writer.wait_closed()
        assert engine.get("back") == "x"

    loop.run_until_complete(main())


def test_embedded_server_serves_client_and_async_client(loop):
    engine = kvstore.Engine()
    engine.set("outside", 1)

    def blocking_client(url: str) -> list:
        with kvstore.Client.connect(url) as client:
            assert client.incr("n", 5) == 5
            return client.mget(["a", "n", "missing"])

    async def main():
        async with kvstore.Server(engine, port=0) as server:
            url = f"127.0.0.1:{server.port}/embedded"
            client = await kvstore.AsyncClient.connect(url)
            await client.set("a", {"x": [1, 2.5]}, ttl=30)
            assert await client.get("a") == {"x": [1, 2.5]}
            # A blocking Client in a worker thread, served by this same loop.
            answers = await asyncio.get_running_loop().run_in_executor(
                None, blocking_client, url)
            assert answers == [{"x": [1, 2.5]}, 5, None]
            assert engine.get("embedded:n") == 5 and 0 < engine.ttl("embedded:a") <= 30
            assert await client.flush() == 2
            await client.close()
        assert engine.get("outside") == 1 and len(engine) == 1

    loop.run_until_complete(main())


def test_close_ends_every_connection_and_stops_listening(loop):
    async def main():
        server = kvstore.Server(port=0)
        await server.start()
        serving = asyncio.ensure_future(server.serve_forever())
        conns = [await _open(server) for _ in range(3)]
        assert (await _call(*conns[0], PING)) == [(OK, b"")]
        server.close()
        await server.wait_closed()
        await serving
        for reader, writer in conns:
            assert await reader.read() == b""
            writer.close()
        with pytest.raises(OSError):
            await _open(server)

    loop.run_until_complete(main())


def test_client_that_does_not_read_is_paused_and_bounded(loop):
    engine = kvstore.Engine()
    engine.set("big", b"v" * (1 << 20))

    async def main():
        async with kvstore.Server(engine, port=0) as server:
            reader, writer = await _open(server)
            writer.write(frame(OP_GET, key("big")) * 64)      # 64 MiB of replies
            (conn,) = server._connections
            await _until(lambda: conn.writing_paused and conn.processor.has_backlog)
            # Replies wait in the transport only up to the cap and the high
            # water mark, not 200 MiB of them.
            assert conn.transport.get_write_buffer_size() < 3 * (1 << 20)
            # Another connection is served meanwhile.
            other = await _open(server)
            assert await _call(*other, PING) == [(OK, b"")]
            other[1].close()
            writer.write(PING)
            got = await _read(reader, 65)
            assert got == [(OK, enc(b"v" * (1 << 20)))] * 64 + [(OK, b"")]
            writer.close()

    loop.run_until_complete(main())


def test_idle_connections_are_closed_and_busy_ones_kept():
    async def main():
        async with kvstore.Server(port=0, idle_timeout=1.0) as server:
            idle = await _open(server)
            busy = await _open(server)
            for _ in range(15):                 # 1.5 s of activity, a ping every 0.1 s
                assert await _call(*busy, PING) == [(OK, b"")]
                await asyncio.sleep(0.1)
            assert await asyncio.wait_for(idle[0].read(), IO_TIMEOUT_S) == b""
            assert await _call(*busy, PING) == [(OK, b"")]
            assert await asyncio.wait_for(busy[0].read(), IO_TIMEOUT_S) == b""
            for _, writer in (idle, busy):
                writer.close()

    with guarded_loop() as event_loop:
        event_loop.run_until_complete(main())


def test_a_client_still_reading_its_replies_is_not_idle(loop):
    engine = kvstore.Engine()
    engine.set("big", b"v" * (1 << 20))
    count, reply_bytes = 10, 5 + 5 + (1 << 20)

    async def main():
        async with kvstore.Server(engine, port=0, idle_timeout=0.5) as server:
            sock = socket.socket()
            # Small socket buffers on both sides, so the answer cannot all sit
            # in the kernel while the client reads it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
            await _until(lambda: server._connections)
            (conn,) = server._connections
            conn.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
            writer.write(frame(OP_GET, key("big")) * count)
            received = 0
            # A slow but steady reader (about 5 MB/s): it takes 2 s, four
            # idle timeouts, without a pause of even one.
            while received < count * reply_bytes:
                chunk = await asyncio.wait_for(reader.read(1 << 16), IO_TIMEOUT_S)
                if not chunk:
                    break
                received += len(chunk)
                await asyncio.sleep(0.012)
            writer.close()
            assert received == count * reply_bytes

    loop.run_until_complete(main())


class WatchedEngine(kvstore.Engine):
    """An Engine that reports each tick() call of the server's expiry timer."""

    def __init__(self, clock) -> None:
        super().__init__(clock)
        self.budgets: list[float] = []
        self.empty = asyncio.Event()

    def tick(self, budget_ms: float = 1.0) -> bool:
        pending = super().tick(budget_ms)
        self.budgets.append(budget_ms)
        if self.info()["keys"] == 0:
            self.empty.set()
        return pending


def test_expiry_tick_reclaims_expired_keys_without_any_request(loop, clock):
    async def main():
        engine = WatchedEngine(clock)
        engine.mset({f"k{i}": i for i in range(50_000)}, ttl=1)
        clock.tick(2)
        async with kvstore.Server(engine, port=0, expiry_budget_ms=0.5):
            await asyncio.wait_for(engine.empty.wait(), IO_TIMEOUT_S)
        assert engine.info()["expired"] == 50_000
        assert set(engine.budgets) == {0.5}

    loop.run_until_complete(main())


def test_server_options_are_checked():
    for options in ({"port": -1}, {"port": "16380"}, {"idle_timeout": 0},
                    {"max_payload": 0}, {"max_payload": 2**32}, {"expiry_budget_ms": -1.0}):
        with pytest.raises(InvalidArgumentError):
            kvstore.Server(**options)
    with pytest.raises(InvalidArgumentError):
        kvstore.Server(kvstore.Engine().namespace("ns"))


# ---------------------------------------------------------------- endpoints (issue 9)


def test_one_server_serves_every_endpoint_from_one_engine(loop):
    from kvstore.server import Endpoint

    async def main():
        endpoints = [Endpoint("127.0.0.1", 0), Endpoint("127.0.0.1", 0, "binary")]
        async with kvstore.Server(endpoints=endpoints) as server:
            (_, first), (_, second) = server.addresses
            assert server.port == first and first != second
            a = await asyncio.open_connection("127.0.0.1", first)
            b = await asyncio.open_connection("127.0.0.1", second)
            assert await _call(*a, set_frame("k", 1)) == [(OK, b"")]
            assert await _call(*b, frame(OP_GET, key("k"))) == [(OK, enc(1))]
            assert len(server._connections) == 2
            assert all(isinstance(c, kvstore.server.ServerConnection) for c in server._connections)
            for _, writer in (a, b):
                writer.close()

    loop.run_until_complete(main())


def test_a_tls_endpoint_is_configuration(loop, tmp_path):
    import ssl
    import subprocess

    from kvstore.server import Endpoint

    cert, private = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(private), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"openssl could not make a test certificate: {exc}")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, private)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def main():
        async with kvstore.Server(endpoints=[Endpoint("127.0.0.1", 0, tls=server_tls)]) as server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=client_tls, server_hostname="localhost")
            assert await _call(reader, writer, set_frame("k", "x"), frame(OP_GET, key("k"))) == [
                (OK, b""), (OK, enc("x"))]
            writer.close()

    loop.run_until_complete(main())


@pytest.mark.parametrize("options", [
    {"framing": "nope"}, {"port": 70000}, {"port": "1"}, {"tls": "yes"},
])
def test_endpoint_options_are_checked(options):
    from kvstore.server import Endpoint
    with pytest.raises(InvalidArgumentError):
        Endpoint(**options)


def test_server_refuses_empty_or_foreign_endpoints():
    for endpoints in ([], [("127.0.0.1", 0)]):
        with pytest.raises(InvalidArgumentError):
            kvstore.Server(endpoints=endpoints)
