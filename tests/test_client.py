"""Client and AsyncClient beyond the shared contract: URLs, options, timeouts,
what is refused before sending, retries after a dropped connection, error
replies, protocol errors, cancellation and pipelining.

Most tests run on both clients through the ``connect`` fixture (the
AsyncClient driven by looputil.Blocking, on asyncio and uvloop); faults come
from tests/faultproxy.py between the client and the real server, or from a
tiny canned server when the server itself must misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import select
import socket
import threading
import time

import pytest

import kvstore
from kvstore._protocol import Processor, RequestWriter
from kvstore._address import Address, parse_url
from kvstore._commands import COMMANDS, AsyncCommands, Commands
from kvstore.errors import (
    InvalidArgumentError,
    KvConnectionError,
    KvTimeoutError,
    ProtocolError,
    ReplyTooLargeError,
    UnsupportedValueError,
    ValueTooLargeError,
    WrongTypeError,
)
from tests.conftest import free_port
from tests.faultproxy import FaultProxy
from tests.looputil import connect, loop  # noqa: F401  (fixtures)

PING_FRAME = b"\x08\x00\x00\x00\x00"   # op PING, empty payload (docs/protocol.md)


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize("url, expected", [
    ("127.0.0.1:1234", ("127.0.0.1", 1234, "")),
    ("kv://127.0.0.1:1234/ns", ("127.0.0.1", 1234, "ns")),
    ("KV://cache.example", ("cache.example", 16380, "")),
    ("localhost/ns", ("localhost", 16380, "ns")),
    ("[::1]:7000/a/b", ("::1", 7000, "a/b")),
    ("kv://[::1]", ("::1", 16380, "")),
    ("host:1/", ("host", 1, "")),
    ("host/ns:sub", ("host", 16380, "ns:sub")),
    ("host:65535/\u00e9t\u00e9", ("host", 65535, "\u00e9t\u00e9")),
    ("kvstore://127.0.0.1:1234/celery", ("127.0.0.1", 1234, "celery")),   # Celery's scheme
    ("KVSTORE://h", ("h", 16380, "")),
    ("h:1/ns@x", ("h", 1, "ns@x")),   # an @ in the namespace is no credential
])
def test_url_parsing(url, expected):
    assert parse_url(url) == Address(*expected)


@pytest.mark.parametrize("url", [
    "", ":1234", "host:", "host:0", "host:65536", "host:abc", "host:+1", "host:\u0661",
    "::1", "[::1", "[::1]x", "[]:1", "redis://host", "kv://", "kv://kv://host",
    123, None, b"host:1",
], ids=repr)
def test_bad_url_raises_invalid_argument(url):
    with pytest.raises(InvalidArgumentError):
        parse_url(url)
    with pytest.raises(InvalidArgumentError):
        kvstore.Client(url)
    with pytest.raises(InvalidArgumentError):
        kvstore.AsyncClient(url)


@pytest.mark.parametrize("url", [
    "kv://user:s3cret@host:1/ns", "kvstore://:s3cret@host", "s3cret@host", "redis://u:s3cret@h",
])
def test_credentials_in_a_url_are_refused_and_never_echoed(url):
    for make in (parse_url, kvstore.Client, kvstore.AsyncClient, kvstore.Pool):
        with pytest.raises(InvalidArgumentError) as caught:
            make(url)
        assert "s3cret" not in str(caught.value) and "***@" in str(caught.value)


def test_address_and_prefix():
    address = parse_url("[::1]:7000/ns")
    assert str(address) == "[::1]:7000"
    assert address.prefix == b"ns:"
    assert parse_url("h").prefix == b""
    assert parse_url("h/\u00e9").prefix == "\u00e9:".encode()


@pytest.mark.parametrize("option", ["timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [0, -1, None, "5", float("inf"), float("nan"), True], ids=repr)
def test_timeouts_must_be_positive_and_finite(option, value):
    for client_class in (kvstore.Client, kvstore.AsyncClient):
        with pytest.raises(InvalidArgumentError):
            client_class("127.0.0.1", **{option: value})


# ---------------------------------------------------------------- both clients
# (``connect`` opens a Client or an AsyncClient behind one blocking interface)


@pytest.fixture
def proxy(server):
    with FaultProxy(server.host, server.port) as faulty:
        yield faulty


def test_connection_refused_names_the_address(connect):
    port = free_port()
    with pytest.raises(KvConnectionError, match=f"127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}")


def test_silent_server_raises_timeout_naming_the_address(connect):
    # The kernel completes the handshake for the backlog; nobody ever reads.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = connect(f"127.0.0.1:{port}", timeout=0.2)
        with pytest.raises(KvTimeoutError, match=f"127.0.0.1:{port}"):
            client.get("k")


def test_ping_and_context_manager(server, namespace):
    with kvstore.Client.connect(server.url(namespace)) as client:
        assert client.ping() is True
        assert client.connected
    assert not client.connected
    with pytest.raises(KvConnectionError, match="closed"):
        client.ping()


def test_async_context_manager(server, namespace, loop):
    async def scenario():
        async with await kvstore.AsyncClient.connect(server.url(namespace)) as client:
            assert await client.ping() is True
        with pytest.raises(KvConnectionError, match="closed"):
            await client.ping()

    loop.run_until_complete(scenario())


def test_client_connects_on_first_use(server, namespace):
    client = kvstore.Client(server.url(namespace))
    assert not client.connected
    try:
        assert client.exists("k") is False
        assert client.connected
    finally:
        client.close()


def test_oversize_value_is_refused_before_anything_is_sent(connect, proxy, namespace):
    client = connect(proxy.url(namespace), max_payload=1024)
    with pytest.raises(ValueTooLargeError):
        client.set("k", b"x" * 2000)
    with pytest.raises(ValueTooLargeError):
        client.cas("k", None, "y" * 2000)
    # Nothing went out: the first bytes the server ever saw are the PING.
    assert client.ping() is True
    assert bytes(proxy.to_server) == PING_FRAME
    client.set("k", b"x" * 500)
    assert client.get("k") == b"x" * 500


def test_split_batch_with_a_bad_item_sends_nothing(connect, proxy, namespace):
    client = connect(proxy.url(namespace))
    batch = [(f"k{i}", i) for i in range(70_000)] + [("bad", {1})]
    with pytest.raises(UnsupportedValueError):
        client.mset(batch)
    assert client.ping() is True
    assert bytes(proxy.to_server) == PING_FRAME


def test_batch_over_the_payload_limit_is_split_transparently(connect, server, namespace):
    client = connect(server.url(namespace), max_payload=4096)
    batch = {f"k{i}": "v" * 100 for i in range(200)}   # ~22 KB: several frames
    client.mset(batch)
    assert client.mget(list(batch)) == list(batch.values())
    assert client.mdel(list(batch)) == 200


def test_error_reply_keeps_the_connection(connect, proxy, namespace):
    client = connect(proxy.url(namespace))
    client.set("s", "text")
    with pytest.raises(WrongTypeError):
        client.incr("s")
    assert client.get("s") == "text"
    assert proxy.accepted == 1


def test_read_is_retried_once_on_a_fresh_connection(connect, proxy, namespace):
    client = connect(proxy.url(namespace))
    client.set("k", "v")
    proxy.drop_next_request()
    assert client.get("k") == "v"
    assert client.mget(["k", "missing"]) == ["v", None]
    assert proxy.accepted == 2


def test_read_is_retried_only_once(connect, proxy, namespace):
    client = connect(proxy.url(namespace))
    proxy.drop_next_request(times=2)
    with pytest.raises(KvConnectionError, match=proxy.address):
        client.exists("k")
    assert proxy.accepted == 2
    assert client.exists("k") is False


def test_incr_whose_reply_was_lost_is_not_retried(connect, proxy, namespace):
    client = connect(proxy.url(namespace))
    client.set("n", 0)
    proxy.drop_next_reply()
    with pytest.raises(KvConnectionError):
        client.incr("n")
    # The server applied it once; a blind retry would have made it 2.
    assert client.get("n") == 1


def test_write_that_never_arrived_is_not_retried_either(connect, proxy, namespace):
    client = connect(proxy.url(namespace))
    client.set("n", 0)
    proxy.drop_next_request()
    with pytest.raises(KvConnectionError):
        client.incr("n")
    assert client.get("n") == 0
    assert proxy.accepted == 2


def test_write_after_the_server_closed_an_idle_connection_uses_a_fresh_one(
        server, proxy, namespace):
    client = kvstore.Client.connect(proxy.url(namespace))
    try:
        client.set("n", 0)
        proxy.kill_all()
        # Wait for the close to reach our socket (an event, not a sleep).
        readable, _, _ = select.select([client._sock], [], [], 5)
        assert readable
        # The client looks for a close only on a connection idle for
        # PROBE_AFTER (so back-to-back calls make no extra syscall).
        time.sleep(kvstore.client.PROBE_AFTER)
        assert client.incr("n") == 1
        assert proxy.accepted == 2
    finally:
        client.close()


# ---------------------------------------------------------------- misbehaving servers


class CannedServer:
    """Accepts connections and answers every chunk it receives with ``reply``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                while conn.recv(65536):
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("reply", [b"\x7f\x00\x00\x00\x00", b"\x00\x00\x00\x00\x01\x63"],
                         ids=["unknown-status", "bad-value-tag"])
def test_unparsable_reply_raises_protocol_error_and_drops_the_connection(reply):
    canned = CannedServer(reply)
    client = kvstore.Client.connect(canned.address)
    try:
        with pytest.raises(ProtocolError):
            client.get("k")
        assert not client.connected
    finally:
        client.close()
        canned.close()


def test_async_unparsable_reply_raises_protocol_error_and_drops_the_connection(loop):
    canned = CannedServer(b"\x7f\x00\x00\x00\x00")

    async def scenario():
        client = await kvstore.AsyncClient.connect(canned.address)
        with pytest.raises(ProtocolError):
            await client.get("k")
        assert not client.connected
        await client.close()

    try:
        loop.run_until_complete(scenario())
    finally:
        canned.close()


def _reply_to_get(value):
    engine = kvstore.Engine()
    engine.set("k", value)
    writer = RequestWriter()
    writer.get("k")
    return Processor(engine).feed(writer.take())


class ScriptedServer:
    """Answers every request chunk with ``reply``, sent in pieces of
    ``piece`` bytes ``pause`` seconds apart (a trickling server). With
    ``stray``, its first connection also sends that frame, one nobody asked
    for, ``delay`` seconds after the first reply."""

    def __init__(self, reply: bytes, piece: int = 1 << 30, pause: float = 0.0,
                 stray: bytes = b"", delay: float = 0.0) -> None:
        self.reply, self.piece, self.pause = reply, piece, pause
        self.stray, self.delay = stray, delay
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._answer, args=(conn, self.accepted == 1),
                             daemon=True).start()

    def _answer(self, conn: socket.socket, first: bool) -> None:
        with conn, contextlib.suppress(OSError):   # the client may drop the connection
            while conn.recv(65536):
                for i in range(0, len(self.reply), self.piece):
                    if self._stop.wait(self.pause):
                        return
                    conn.sendall(self.reply[i:i + self.piece])
                if first and self.stray:
                    first = False
                    time.sleep(self.delay)
                    conn.sendall(self.stray)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@contextlib.contextmanager
def stray_client(delay: float):
    """A Client of a ScriptedServer whose stray frame follows the first reply
    after ``delay`` seconds."""
    server = ScriptedServer(_reply_to_get("mine"), stray=_reply_to_get("stray"), delay=delay)
    client = kvstore.Client(server.address)
    try:
        yield server, client
    finally:
        client.close()
        server.close()


def test_a_stray_frame_beside_a_reply_raises_instead_of_shifting_answers():
    # Which of the two frames answers the request cannot be told: refuse both.
    with stray_client(0) as (server, client):
        try:
            answer = client.get("k")
        except ProtocolError:
            assert not client.connected
        else:
            # The stray frame came in a later segment than the reply: it is
            # found before the next request, which goes on a new connection.
            assert answer == "mine"
        if client.connected:
            select.select([client._sock], [], [], 5)
        time.sleep(kvstore.client.PROBE_AFTER)
        assert client.get("k") == "mine"
        assert server.accepted == 2


def test_a_stray_frame_on_an_idle_connection_is_never_read_as_an_answer():
    with stray_client(0.05) as (server, client):
        assert client.get("k") == "mine"
        readable, _, _ = select.select([client._sock], [], [], 5)   # the stray frame is here
        assert readable
        time.sleep(kvstore.client.PROBE_AFTER)
        for _ in range(3):
            assert client.get("k") == "mine"
        assert server.accepted == 2


def test_bool_of_a_client_does_no_io_and_async_len_names_count():
    assert kvstore.Client("127.0.0.1:1")   # nothing listens there: bool() made no call
    client = kvstore.AsyncClient("127.0.0.1:1")
    assert client
    with pytest.raises(TypeError, match="count"):
        len(client)
    with pytest.raises(TypeError, match="exists"):
        "k" in client


@pytest.fixture
def trickling():
    # A correct GET reply of 40 bytes, one byte every 50 ms: 2 s in all, while
    # no single wait for a byte comes near the clients' 0.3 s timeout.
    server = ScriptedServer(_reply_to_get("v" * 30), piece=1, pause=0.05)
    yield server
    server.close()


def test_a_trickled_reply_cannot_stretch_a_call_past_its_timeout(connect, trickling):
    client = connect(trickling.address, timeout=0.3)
    with pytest.raises(KvTimeoutError, match=trickling.address):
        client.get("k")


def test_a_trickled_pipeline_cannot_stretch_past_its_timeout(trickling):
    with kvstore.Client(trickling.address, timeout=0.3) as client:
        p = client.pipeline()
        p.get("k")
        with pytest.raises(KvTimeoutError):
            p.execute()


def test_a_call_timeout_bounds_that_call_alone(connect, trickling):
    client = connect(trickling.address, timeout=30)
    with pytest.raises(KvTimeoutError, match="0.3s"):
        client.get("k", timeout=0.3)


def test_a_call_timeout_may_be_longer_than_the_clients(connect):
    # The reply comes whole after 0.5 s: past the client's 0.2 s, within the call's.
    slow = ScriptedServer(_reply_to_get("late"), pause=0.5)
    try:
        client = connect(slow.address, timeout=0.2)
        assert client.get("k", timeout=5) == "late"
        with pytest.raises(KvTimeoutError):
            client.get("k")
    finally:
        slow.close()


@pytest.mark.parametrize("timeout", [0, -1, "1", float("inf"), True], ids=repr)
def test_a_bad_call_timeout_raises_and_sends_nothing(connect, server, namespace, timeout):
    client = connect(server.url(namespace))
    with pytest.raises(InvalidArgumentError):
        client.set("k", 1, timeout=timeout)
    with pytest.raises(InvalidArgumentError):
        client.mget(["k"], timeout=timeout)
    assert client.get("k") is None      # nothing was sent, nothing is left to send


def test_a_pipeline_takes_one_timeout_for_all_its_calls(trickling, server, namespace):
    with kvstore.Client(trickling.address, timeout=30) as client:
        p = client.pipeline()
        p.get("k")
        with pytest.raises(InvalidArgumentError, match="execute"):
            p.get("other", timeout=1)
        assert len(p) == 1
        with pytest.raises(KvTimeoutError):
            p.execute(timeout=0.3)
    with kvstore.Client(server.url(namespace)) as client:
        p = client.pipeline()
        p.set("k", 1)
        with pytest.raises(InvalidArgumentError):
            p.set("k", 2, timeout=1)
        assert p.execute(timeout=5) == [None] and client.get("k") == 1
        client.delete("k")


def test_a_reply_over_max_reply_is_refused_from_its_header(connect):
    # A reply declaring 256 MiB, of which 1 MiB arrives: refused at once, the
    # connection dropped, and the client never buffers more than it received.
    header = b"\x00" + (256 << 20).to_bytes(4, "big")
    server = ScriptedServer(header + b"\x05" + (256 << 20).to_bytes(4, "big") + b"x" * (1 << 20))
    try:
        client = connect(server.address, max_reply=1 << 20)
        with pytest.raises(ReplyTooLargeError, match="max_reply"):
            client.get("k")
        assert not client.connected
    finally:
        server.close()


def test_the_default_reply_limit_takes_any_default_sized_value(connect, server, namespace):
    client = connect(server.url(namespace))
    assert client.max_reply == 2 * kvstore._protocol.DEFAULT_MAX_PAYLOAD
    client.set("big", b"x" * (8 << 20))
    assert len(client.get("big")) == 8 << 20
    client.delete("big")


@pytest.mark.parametrize("value", [0, -1, 1.5, "1", True], ids=repr)
def test_max_reply_must_be_a_positive_int(value):
    for client_class in (kvstore.Client, kvstore.AsyncClient, kvstore.Pool):
        with pytest.raises(InvalidArgumentError):
            client_class("127.0.0.1", max_reply=value)


# ---------------------------------------------------------------- AsyncClient


def test_concurrent_calls_on_one_async_client_each_get_their_answer(proxy, namespace, loop):
    async def scenario():
        client = await kvstore.AsyncClient.connect(proxy.url(namespace))
        await client.mset({f"k{i}": i for i in range(200)})
        proxy.hold_replies()      # every request below is in flight at once
        calls = [asyncio.ensure_future(client.get(f"k{i}")) for i in range(200)]
        calls.append(asyncio.ensure_future(client.mget(["k1", "k2"])))
        calls.append(asyncio.ensure_future(client.incr("k3")))
        await asyncio.sleep(0)
        proxy.release_replies()
        results = await asyncio.gather(*calls)
        assert results == list(range(200)) + [[1, 2], 4]
        assert proxy.accepted == 1
        await client.close()

    loop.run_until_complete(scenario())


def test_cancelled_call_does_not_shift_later_answers(proxy, namespace, loop):
    async def scenario():
        client = await kvstore.AsyncClient.connect(proxy.url(namespace))
        await client.mset({"a": "A", "b": "B"})
        proxy.hold_replies()
        first = asyncio.ensure_future(client.get("a"))
        await asyncio.sleep(0)        # one step: the request is written
        first.cancel()
        second = asyncio.ensure_future(client.get("b"))
        await asyncio.sleep(0)
        proxy.release_replies()
        assert await second == "B"
        assert first.cancelled()
        assert await client.get("a") == "A"
        assert proxy.accepted == 1
        await client.close()

    loop.run_until_complete(scenario())


def test_cancelled_batch_does_not_shift_later_answers(proxy, namespace, loop):
    async def scenario():
        client = await kvstore.AsyncClient.connect(proxy.url(namespace))
        keys = [f"k{i}" for i in range(70_000)]
        await client.mset(dict.fromkeys(keys, 1))
        proxy.hold_replies()
        batch = asyncio.ensure_future(client.mget(keys))
        await asyncio.sleep(0)
        batch.cancel()
        after = asyncio.ensure_future(client.get("k0"))
        await asyncio.sleep(0)
        proxy.release_replies()
        assert await after == 1
        assert batch.cancelled()
        await client.flush()
        await client.close()

    loop.run_until_complete(scenario())


def test_async_timeout_fails_waiting_calls_and_reconnects(proxy, namespace, loop):
    async def scenario():
        client = await kvstore.AsyncClient.connect(proxy.url(namespace), timeout=0.2)
        await client.set("k", 1)
        proxy.hold_replies()
        calls = [asyncio.ensure_future(client.get("k")) for _ in range(3)]
        for call in calls:
            with pytest.raises(KvTimeoutError, match=proxy.address):
                await call
        proxy.release_replies()
        assert await client.get("k") == 1
        assert proxy.accepted == 2
        await client.close()

    loop.run_until_complete(scenario())


def test_async_connection_lost_fails_every_waiting_call(proxy, namespace, loop):
    async def scenario():
        client = await kvstore.AsyncClient.connect(proxy.url(namespace))
        await client.set("n", 0)
        proxy.hold_replies()
        writes = [asyncio.ensure_future(client.incr("n")) for _ in range(3)]
        read = asyncio.ensure_future(client.get("n"))
        await asyncio.sleep(0)
        proxy.kill_all()
        proxy.release_replies()
        for write in writes:
            with pytest.raises(KvConnectionError):
                await write
        # The read was sent again on a fresh connection; the incrs were not.
        assert await read in (0, 1, 2, 3)
        assert 0 <= await client.get("n") <= 3
        await client.close()

    loop.run_until_complete(scenario())


def test_coroutine_never_awaited_sends_nothing_and_shifts_nothing(server, namespace, loop):
    async def scenario():
        client = await kvstore.AsyncClient.connect(server.url(namespace))
        await client.set("a", "A")
        orphan = client.get("a")        # created, never awaited
        orphan.close()
        calls = [client.get("missing"), client.incr("n"), client.get("a")]
        assert await asyncio.gather(*calls) == [None, 1, "A"]
        await client.flush()
        await client.close()

    loop.run_until_complete(scenario())


def test_async_method_types_match_the_methods():
    # AsyncCommands exists for type checkers only; it must not drift.
    for name in (*COMMANDS, "lock"):
        typed, real = getattr(AsyncCommands, name), getattr(Commands, name)
        assert inspect.signature(typed).parameters == inspect.signature(real).parameters, name
    assert inspect.iscoroutinefunction(AsyncCommands.get)


# ---------------------------------------------------------------- the command table


_SAMPLE_ARGS = {
    "get": ("k",), "set": ("k", 1), "setnx": ("k", 1), "delete": ("k",), "exists": ("k",),
    "incr": ("k",), "decr": ("k",), "cas": ("k", 1, 2), "expire": ("k", 1), "ttl": ("k",),
    "persist": ("k",), "getdel": ("k",), "getset": ("k", 1), "delete_if_equal": ("k", 1),
    "scan": (), "mget": (["k"],), "mset": ({"k": 1},), "mdel": (["k"],), "mexists": (["k"],),
    "flush": (), "ping": (), "info": (),
    "config_get": (), "config_set": ({"max_keys": 10},), "snapshot": (),
}


def test_every_method_sends_its_commands_op_with_the_tables_retry_class():
    # The client methods name READ/WRITE themselves; the command table is the
    # authority on which requests may be resent after a connection error.
    table = {c.name: c for c in kvstore._protocol.COMMANDS}
    sent: list = []

    class Recorder(kvstore.Client):
        def _call(self, op, retry, missing=None, timeout=None):
            sent.append((op, retry, self._writer.take()[0]))

    recorder = Recorder("127.0.0.1:1")
    assert set(_SAMPLE_ARGS) == set(COMMANDS)
    for name in COMMANDS:
        getattr(recorder, name)(*_SAMPLE_ARGS[name])
        op, retry, first_byte = sent.pop()
        assert (op, retry) == (table[name].op, table[name].retry_safe), name
        assert first_byte == op, name
