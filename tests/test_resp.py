"""RESP2/RESP3 framing (docs/resp.md): exact replies from the compiled
processor, the parser's limits and a fuzz of it, then redis-py (sync and
asyncio, RESP2 and RESP3) against a kvstore-server subprocess on the shared
port and on --resp-port."""

from __future__ import annotations

import asyncio
import decimal
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvstore
from kvstore._protocol import RESP_COMMANDS, RespProcessor

from .conftest import ServerProcess, free_port

redis = pytest.importorskip("redis", reason="redis-py is needed for the RESP client tests")
import redis.asyncio  # noqa: E402


def cmd(*words: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(words)]
    for w in words:
        w = w.encode() if isinstance(w, str) else w
        out.append(b"$%d\r\n%s\r\n" % (len(w), w))
    return b"".join(out)


@pytest.fixture
def resp(engine):
    return RespProcessor(engine)


def run(p: RespProcessor, *commands: tuple) -> bytes:
    return p.feed(b"".join(cmd(*c) for c in commands))


# -- exact replies ---------------------------------------------------------------

def test_basic_string_commands_answer_redis_bytes(resp):
    assert run(resp, ("PING",)) == b"+PONG\r\n"
    assert run(resp, ("set", "k", "v")) == b"+OK\r\n"
    assert run(resp, ("GET", "k"), ("GET", "nope")) == b"$1\r\nv\r\n$-1\r\n"
    assert run(resp, ("INCR", "n"), ("INCRBY", "n", "9"), ("DECR", "n")) == b":1\r\n:10\r\n:9\r\n"
    assert run(resp, ("MGET", "k", "nope", "n")) == b"*3\r\n$1\r\nv\r\n$-1\r\n$1\r\n9\r\n"
    assert run(resp, ("DEL", "k", "n", "nope")) == b":2\r\n"


def test_inline_commands_parse_like_redis(resp):
    assert resp.feed(b"PING\r\n") == b"+PONG\r\n"
    assert resp.feed(b"set  k \"a b\\x41\"\n") == b"+OK\r\n"
    assert resp.feed(b"GET k\r\n") == b"$4\r\na bA\r\n"
    assert resp.feed(b"\r\n") == b""                 # an empty line is skipped
    assert resp.feed(b"ECHO 'it\\'s'\r\n") == b"$4\r\nit's\r\n"


def test_unbalanced_quotes_are_a_protocol_error_that_closes(resp):
    assert resp.feed(b'SET k "open\r\n') == b"-ERR Protocol error: unbalanced quotes in request\r\n"
    assert resp.framing_lost
    assert resp.feed(cmd("PING")) == b""


def test_errors_carry_redis_7_texts(resp):
    assert run(resp, ("GET",)) == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert run(resp, ("NOPE", "a", "b")) == (
        b"-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' \r\n")
    run(resp, ("SET", "s", "abc"))
    assert run(resp, ("INCR", "s")) == b"-ERR value is not an integer or out of range\r\n"
    assert run(resp, ("SET", "s", "v", "NX", "XX")) == b"-ERR syntax error\r\n"
    assert run(resp, ("SET", "s", "v", "EX", "0")) == (
        b"-ERR invalid expire time in 'set' command\r\n")
    assert run(resp, ("SET", "m", "9223372036854775807"), ("INCR", "m")) == (
        b"+OK\r\n-ERR increment or decrement would overflow\r\n")
    assert run(resp, ("SELECT", "1")) == b"-ERR DB index is out of range\r\n"
    assert run(resp, ("RENAME", "nope", "x")) == b"-ERR no such key\r\n"
    assert run(resp, ("EXPIRE", "s", "10", "NX", "XX")) == (
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n")
    # The connection goes on after every one of them.
    assert run(resp, ("GET", "s")) == b"$3\r\nabc\r\n"


def test_typed_values_read_over_resp_as_redis_would_show_them(engine, resp):
    engine.set("b", b"raw")
    engine.set("s", "héllo")
    engine.set("i", -42)
    engine.set("f", 1.5)
    engine.set("t", True)
    engine.set("d", decimal.Decimal("3.10"))
    engine.set("l", [1, 2])
    engine.set("none", None)
    got = run(resp, *[("GET", k) for k in ("b", "s", "i", "f", "t", "d")])
    assert got == (b"$3\r\nraw\r\n$6\r\nh\xc3\xa9llo\r\n$3\r\n-42\r\n$3\r\n1.5\r\n"
                   b"$1\r\n1\r\n$4\r\n3.10\r\n")
    wrong = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    assert run(resp, ("GET", "l"), ("GET", "none")) == wrong * 2
    assert run(resp, ("MGET", "l", "b")) == b"*2\r\n$-1\r\n$3\r\nraw\r\n"
    assert run(resp, ("TYPE", "l"), ("TYPE", "b"), ("TYPE", "x")) == (
        b"+kvstore-value\r\n+string\r\n+none\r\n")
    # INCR reads an int value in place and a decimal text as Redis does.
    assert run(resp, ("INCR", "i"), ("SET", "n", "10"), ("INCR", "n")) == b":-41\r\n+OK\r\n:11\r\n"
    assert engine.get("n") == 11             # stored as an int from then on
    run(resp, ("SET", "w", "x"))
    assert engine.get("w") == b"x"           # a RESP value reads back as bytes


def test_set_options_and_ttls(resp, clock):
    assert run(resp, ("SET", "k", "v", "PX", "1500"), ("PTTL", "k"), ("TTL", "k")) == (
        b"+OK\r\n:1500\r\n:2\r\n")
    assert run(resp, ("SET", "k", "w", "KEEPTTL", "GET"), ("PTTL", "k")) == b"$1\r\nv\r\n:1500\r\n"
    assert run(resp, ("SET", "k", "x", "NX")) == b"$-1\r\n"
    assert run(resp, ("SET", "new", "x", "XX"), ("EXISTS", "new")) == b"$-1\r\n:0\r\n"
    assert run(resp, ("SET", "k", "y"), ("TTL", "k"), ("TTL", "nope")) == b"+OK\r\n:-1\r\n:-2\r\n"
    assert run(resp, ("SET", "gone", "v", "EXAT", "1"), ("EXISTS", "gone")) == b"+OK\r\n:0\r\n"
    clock.tick(2)
    assert run(resp, ("SETEX", "e", "1", "v"), ("GETEX", "e", "PERSIST"), ("TTL", "e")) == (
        b"+OK\r\n$1\r\nv\r\n:-1\r\n")


def test_expire_conditions_follow_redis_7(resp):
    run(resp, ("SET", "k", "v"))
    assert run(resp, ("EXPIRE", "k", "100", "XX"), ("EXPIRE", "k", "100", "GT")) == b":0\r\n:0\r\n"
    assert run(resp, ("EXPIRE", "k", "100", "LT"), ("TTL", "k")) == b":1\r\n:100\r\n"
    assert run(resp, ("EXPIRE", "k", "50", "GT"), ("EXPIRE", "k", "200", "GT")) == b":0\r\n:1\r\n"
    assert run(resp, ("EXPIRE", "k", "10", "NX"), ("PERSIST", "k"), ("PERSIST", "k")) == (
        b":0\r\n:1\r\n:0\r\n")
    assert run(resp, ("EXPIRE", "k", "-1"), ("EXISTS", "k")) == b":1\r\n:0\r\n"


def test_string_ranges_and_rename(resp):
    run(resp, ("SET", "k", "Hello World"))
    assert run(resp, ("GETRANGE", "k", "0", "4"), ("GETRANGE", "k", "-5", "-1"),
               ("GETRANGE", "k", "5", "2")) == b"$5\r\nHello\r\n$5\r\nWorld\r\n$0\r\n\r\n"
    assert run(resp, ("SETRANGE", "z", "3", "ab"), ("GET", "z")) == b":5\r\n$5\r\n\x00\x00\x00ab\r\n"
    assert run(resp, ("APPEND", "z", "!"), ("STRLEN", "z"), ("STRLEN", "no")) == (
        b":6\r\n:6\r\n:0\r\n")
    assert run(resp, ("RENAMENX", "k", "z"), ("RENAME", "k", "r"), ("GET", "r")) == (
        b":0\r\n+OK\r\n$11\r\nHello World\r\n")
    assert run(resp, ("INCRBYFLOAT", "f", "10.5"), ("INCRBYFLOAT", "f", "0.1")) == (
        b"$4\r\n10.5\r\n$4\r\n10.6\r\n")


def test_multi_exec_and_watch(engine, resp):
    assert run(resp, ("MULTI",), ("SET", "a", "1"), ("INCR", "a"), ("EXEC",)) == (
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n")
    assert run(resp, ("MULTI",), ("NOPE",), ("EXEC",)).endswith(
        b"-EXECABORT Transaction discarded because of previous errors.\r\n")
    run(resp, ("WATCH", "a"))
    engine.set("a", b"changed")                     # another client's write
    assert run(resp, ("MULTI",), ("SET", "a", "x"), ("EXEC",)) == (
        b"+OK\r\n+QUEUED\r\n*-1\r\n")
    assert engine.get("a") == b"changed"
    run(resp, ("WATCH", "a"))
    engine.set("other", 1)                          # unrelated keys do not conflict
    assert run(resp, ("MULTI",), ("SET", "a", "x"), ("EXEC",)).endswith(b"*1\r\n+OK\r\n")
    assert run(resp, ("EXEC",), ("DISCARD",)) == (
        b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n")


def test_hello_switches_to_resp3(resp):
    got = run(resp, ("HELLO", "3"))
    assert got.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert resp.protocol == 3
    assert run(resp, ("GET", "nope")) == b"_\r\n"
    assert run(resp, ("CONFIG", "GET", "appendonly")) == b"%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    assert run(resp, ("HELLO", "4")) == b"-NOPROTO unsupported protocol version\r\n"
    assert run(resp, ("HELLO", "2"))[:2] == b"*1"
    assert run(resp, ("GET", "nope")) == b"$-1\r\n"


def test_info_and_config_are_what_tools_read(resp):
    info = run(resp, ("INFO",)).decode()
    for field in ("redis_version:7.2.0", "arch_bits:64", "cluster_enabled:0"):
        assert field in info
    assert run(resp, ("CONFIG", "GET", "save")) == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert run(resp, ("CONFIG", "GET", "maxmemory*")) == (
        b"*4\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n")
    assert run(resp, ("COMMAND", "COUNT")) == b":%d\r\n" % len(RESP_COMMANDS)


def test_resp_commands_count_on_their_own_rows(engine):
    stats = kvstore._protocol.ServerStats()
    p = RespProcessor(engine, stats=stats)
    run(p, ("SET", "a", "1"), ("APPEND", "a", "2"), ("GET", "a"), ("NOPE",))
    assert stats.commands() == {"SET": 1, "APPEND": 1, "GET": 1, "UNKNOWN": 1}


# -- the parser's limits ---------------------------------------------------------------

@pytest.mark.parametrize("data, error", [
    (b"*3000000000\r\n", b"invalid multibulk length"),
    (b"*2000000\r\n", b"invalid multibulk length"),
    (b"*1\r\n$-5\r\n", b"invalid bulk length"),
    (b"*1\r\n$99999999999\r\n", b"invalid bulk length"),
    (b"*1\r\nx3\r\n", b"expected '$', got 'x'"),
    (b"*x\r\n", b"invalid multibulk length"),
    (b"*1" + b"1" * 70_000, b"too big mbulk count string"),
    (b"*1\r\n$" + b"1" * 70_000, b"too big bulk count string"),
    (b"GET " + b"a" * 70_000, b"too big inline request"),
])
def test_hostile_headers_are_refused_and_close(engine, data, error):
    p = RespProcessor(engine, max_payload=1 << 20)
    got = p.feed(cmd("PING") + data)
    assert got == b"+PONG\r\n-ERR Protocol error: " + error + b"\r\n"
    assert p.framing_lost


def test_a_cut_command_waits_and_a_huge_count_allocates_nothing(engine):
    p = RespProcessor(engine)
    # A count of a million words costs nothing until the words arrive.
    assert p.feed(b"*1000000\r\n$3\r\nSET\r\n") == b""
    whole = cmd("SET", "k", "v" * 100_000)
    q = RespProcessor(engine)
    out = b"".join(q.feed(whole[i:i + 4096]) for i in range(0, len(whole), 4096))
    assert out == b"+OK\r\n"
    assert len(engine.get("k")) == 100_000


def test_one_command_is_bounded_by_max_payload(engine):
    p = RespProcessor(engine, max_payload=1000)
    assert p.feed(cmd("SET", "k", "v" * 600, "x" * 600)).startswith(b"-ERR Protocol error:")
    assert p.framing_lost


def test_replies_past_the_output_cap_are_held_in_order(engine):
    engine.set("big", b"x" * 300_000)
    p = RespProcessor(engine)
    stream = cmd("GET", "big") * 8 + cmd("PING")
    out = p.feed(stream)
    assert p.has_backlog and len(out) < 8 * 300_000
    while p.has_backlog:
        out += p.feed(b"")
    assert out == (b"$300000\r\n" + b"x" * 300_000 + b"\r\n") * 8 + b"+PONG\r\n"


_words = st.lists(st.binary(max_size=12), min_size=1, max_size=5)
_commands = st.lists(
    st.one_of(
        st.tuples(st.just(b"SET"), st.binary(min_size=1, max_size=6), st.binary(max_size=20)),
        st.tuples(st.just(b"GET"), st.binary(min_size=1, max_size=6)),
        st.tuples(st.just(b"INCR"), st.binary(min_size=1, max_size=6)),
        st.tuples(st.just(b"APPEND"), st.binary(min_size=1, max_size=6), st.binary(max_size=9)),
        _words.map(tuple),
    ),
    min_size=1, max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=_commands, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_fuzz_any_split_gives_the_same_replies_as_one_feed(commands, cuts):
    stream = b"".join(cmd(*c) for c in commands)
    whole = RespProcessor(kvstore.Engine()).feed(stream)
    split = RespProcessor(kvstore.Engine())
    bounds = sorted({0, len(stream), *[c % (len(stream) + 1) for c in cuts]})
    out = b"".join(split.feed(stream[a:b]) for a, b in zip(bounds, bounds[1:]))
    assert out == whole
    # One reply per command: the stream never desyncs.
    assert not split.framing_lost


_hostile = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda n, rest: b"*%d\r\n" % n + rest, st.integers(-10, 2 ** 40), st.binary(max_size=40)),
    st.builds(lambda n, rest: b"*1\r\n$%d\r\n" % n + rest, st.integers(-10, 2 ** 40),
              st.binary(max_size=40)),
    st.builds(lambda a, b: a + b, _commands.map(lambda cs: b"".join(cmd(*c) for c in cs)),
              st.binary(max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(data=_hostile)
def test_fuzz_hostile_input_never_crashes_and_leaves_others_alone(data):
    engine = kvstore.Engine()
    bystander = RespProcessor(engine)
    run(bystander, ("SET", "safe", "1"))
    p = RespProcessor(engine, max_payload=1 << 16)
    out = p.feed(data)
    while p.has_backlog:
        out += p.feed(b"")
    assert isinstance(out, bytes)
    # Every reply line is well formed: a RESP type byte starts each one.
    assert all(line[:1] in b"+-:$*_%=" or not line for line in _reply_heads(out))
    assert run(bystander, ("GET", "safe")) == b"$1\r\n1\r\n"


def _reply_heads(out: bytes) -> list[bytes]:
    # The first line of the replies, split after bulk payloads (enough to see framing).
    heads, pos = [], 0
    while pos < len(out):
        end = out.index(b"\r\n", pos)
        line = out[pos:end]
        heads.append(line)
        pos = end + 2
        if line[:1] == b"$" and int(line[1:]) >= 0:
            pos += int(line[1:]) + 2
    return heads


# -- redis-py against kvstore-server ----------------------------------------------------------

@pytest.fixture(scope="module")
def own_server():
    """A server of this module's own: FLUSHDB, DBSIZE and KEYS see the whole keyspace."""
    resp_port = free_port()
    srv = ServerProcess("--resp-port", str(resp_port))
    srv.resp_port = resp_port
    yield srv
    srv.stop()


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def r(request, own_server):
    client = redis.Redis(host=own_server.host, port=own_server.port, protocol=request.param)
    client.flushall()
    yield client
    client.close()


def test_redis_py_every_string_command(r):
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    assert r.set("a", "1") and r.get("a") == b"1"
    assert r.set("a", "2", get=True) == b"1"
    assert r.setnx("a", "x") is False and r.setex("e", 100, "v") and r.psetex("p", 5000, "v")
    assert 0 < r.pttl("p") <= 5000 and 0 < r.ttl("e") <= 100
    assert r.getset("a", "3") == b"2" and r.getdel("a") == b"3" and r.get("a") is None
    assert r.getex("e", persist=True) == b"v" and r.ttl("e") == -1
    assert r.mset({"m1": "1", "m2": "2"}) and r.mget("m1", "m2", "no") == [b"1", b"2", None]
    assert r.msetnx({"m1": "x", "m3": "3"}) is False and r.exists("m3") == 0
    assert r.incr("n") == 1 and r.incrby("n", 5) == 6 and r.decr("n") == 5
    assert r.decrby("n", 10) == -5 and r.incrbyfloat("fl", 2.5) == 2.5
    assert r.append("s", "ab") == 2 and r.strlen("s") == 2 and r.getrange("s", 0, 0) == b"a"
    assert r.setrange("s", 1, "z") == 2 and r.get("s") == b"az"
    assert r.delete("m1", "m2", "no") == 2 and r.unlink("m3") == 0
    assert r.exists("s", "s", "no") == 2 and r.touch("s", "no") == 1 and r.type("s") == b"string"
    assert r.rename("s", "t") and r.renamenx("t", "n") is False
    assert sorted(r.keys("*")) == sorted([b"e", b"p", b"n", b"fl", b"t"])
    assert r.dbsize() == 5 and r.randomkey() in {b"e", b"p", b"n", b"fl", b"t"}
    cursor, keys = r.scan(0, match="*", count=100)
    assert cursor == 0 and sorted(keys) == sorted(r.keys())
    assert sorted(r.scan_iter(match="[ef]*")) == [b"e", b"fl"]
    assert r.expire("t", 100, nx=True) and not r.expire("t", 50, gt=True)
    assert r.pexpire("t", 200_000) and r.expireat("n", int(time.time()) + 100)
    assert abs(r.expiretime("n") - (int(time.time()) + 100)) <= 1
    assert r.pexpireat("n", int(time.time() * 1000) + 100_000) and r.pexpiretime("n") > 0
    assert r.persist("n") and r.ttl("n") == -1
    assert r.flushdb() and r.dbsize() == 0


def test_redis_py_errors_are_redis_errors(r):
    r.set("s", "text")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.incr("s")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("NOSUCH")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", "3")


def test_redis_py_pipelines_and_watch(r, own_server):
    with r.pipeline(transaction=False) as p:
        p.set("k", 1).incr("k").get("k")
        assert p.execute() == [True, 2, b"2"]
    with r.pipeline() as p:
        p.incr("k").incr("k")
        assert p.execute() == [3, 4]
    other = redis.Redis(host=own_server.host, port=own_server.port)
    with r.pipeline() as p:
        p.watch("k")
        other.set("k", 100)
        p.multi()
        p.set("k", 0)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("k") == b"100"
    assert r.transaction(lambda p: p.multi() or p.incr("k"), "k") == [101]
    other.close()


def test_redis_py_client_names_and_info(r):
    assert r.client_setname("worker-1") and r.client_getname() in ("worker-1", b"worker-1")
    assert isinstance(r.client_id(), int)
    info = r.info()
    assert info["redis_version"] == "7.2.0" and info["cluster_enabled"] == 0
    assert r.config_get("maxmemory") == {"maxmemory": "0"} or r.config_get("maxmemory") == {
        b"maxmemory": b"0"}
    assert len(r.time()) == 2


def test_redis_py_asyncio(own_server):
    async def main():
        client = redis.asyncio.Redis(host=own_server.host, port=own_server.port)
        await client.set("ak", "v")
        async with client.pipeline() as p:
            p.get("ak").incr("an")
            got = await p.execute()
        await client.aclose()
        return got

    assert asyncio.run(main()) == [b"v", 1]


def test_resp_port_speaks_resp_only(own_server):
    client = redis.Redis(host=own_server.host, port=own_server.resp_port)
    assert client.set("rk", "v") and client.get("rk") == b"v"
    client.close()
    # A binary frame on the RESP-only port is not binary there: it is an inline line.
    with socket.create_connection((own_server.host, own_server.resp_port)) as s:
        s.sendall(b"\x08\x00\x00\x00\x00\r\n")
        assert s.recv(100).startswith(b"-ERR unknown command")


def test_binary_clients_and_redis_py_share_a_port_and_values(own_server):
    native = kvstore.Client(own_server.address)
    native.set("typed", 7)
    native.set("text", "héllo")
    r = redis.Redis(host=own_server.host, port=own_server.port)
    assert r.get("typed") == b"7" and r.get("text") == "héllo".encode()
    r.set("from-resp", "x")
    assert native.get("from-resp") == b"x"
    assert r.incr("typed") == 8 and native.get("typed") == 8
    native.close()
    r.close()


# -- differential: the same commands to Redis 7 and to kvstore, byte for byte ----------

def _read_reply(sock: socket.socket, buf: bytearray) -> bytes:
    # One whole RESP reply off the socket (the bytes exactly as sent).
    def need(n: int) -> None:
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf.extend(chunk)

    def line_end(pos: int) -> int:
        while True:
            end = buf.find(b"\r\n", pos)
            if end >= 0:
                return end
            need(len(buf) + 1)

    def skip(pos: int) -> int:
        need(pos + 1)
        end = line_end(pos)
        kind, body = buf[pos:pos + 1], bytes(buf[pos + 1:end])
        pos = end + 2
        if kind in (b"$", b"=") and int(body) >= 0:
            need(pos + int(body) + 2)
            return pos + int(body) + 2
        if kind in (b"*", b"%"):
            for _ in range(max(int(body), 0) * (2 if kind == b"%" else 1)):
                pos = skip(pos)
        return pos

    end = skip(0)
    reply = bytes(buf[:end])
    del buf[:end]
    return reply


_keys = st.sampled_from(["a", "b", "c"])
_numbers = st.sampled_from(["0", "1", "-7", "10", "9223372036854775807", "x", "1.5", "007"])
_texts = st.sampled_from(["", "v", "hello", "10", "-3", "x y"])
_differential_commands = st.one_of(
    st.tuples(st.sampled_from(["GET", "INCR", "DECR", "STRLEN", "TYPE", "DEL", "EXISTS",
                               "GETDEL", "PERSIST", "TTL", "PTTL", "UNLINK", "TOUCH"]), _keys),
    st.tuples(st.sampled_from(["SET", "SETNX", "GETSET", "APPEND"]), _keys, _texts),
    st.tuples(st.sampled_from(["INCRBY", "DECRBY"]), _keys, _numbers),
    st.tuples(st.just("GETRANGE"), _keys, _numbers, _numbers),
    st.tuples(st.just("SETRANGE"), _keys, st.sampled_from(["0", "2", "-1", "x"]), _texts),
    st.tuples(st.sampled_from(["RENAME", "RENAMENX"]), _keys, _keys),
    st.tuples(st.just("MGET"), _keys, _keys),
    st.tuples(st.sampled_from(["MSET", "MSETNX"]), _keys, _texts, _keys, _texts),
    st.tuples(st.just("SET"), _keys, _texts,
              st.sampled_from(["NX", "XX", "GET", "KEEPTTL", "EX", "PX"]),
              st.sampled_from(["100000", "0", "-1", "x", "NX", "GET"])),
    st.tuples(st.sampled_from(["EXPIRE", "PEXPIRE"]), _keys,
              st.sampled_from(["100000", "200000", "0", "x"]),
              st.sampled_from(["NX", "XX", "GT", "LT"])),
    st.tuples(st.just("EXPIRE"), _keys, st.sampled_from(["100000", "300000"])),
    st.tuples(st.just("INCRBYFLOAT"), _keys,
              st.sampled_from(["0.1", "0.2", "-1.5", "1e3", "3", "x", " 1", "1e400"])),
    st.tuples(st.sampled_from(["ECHO", "PING"]), _texts),
    st.tuples(st.just("NOSUCH"), _texts),
)


@pytest.fixture(scope="module")
def redis7():
    import shutil
    import subprocess
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield sock
        sock.close()
    finally:
        proc.terminate()
        proc.wait(10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(_differential_commands, min_size=1, max_size=25))
def test_differential_against_redis_7(redis7, commands):
    buf = bytearray()
    redis7.sendall(cmd("FLUSHALL"))
    _read_reply(redis7, buf)
    ours = RespProcessor(kvstore.Engine())
    for c in commands:
        redis7.sendall(cmd(*c))
        theirs = _read_reply(redis7, buf)
        mine = ours.feed(cmd(*c))
        if c[0] in ("TTL", "PTTL") and _both_positive(mine, theirs):
            # Time passes between the two servers' reads (a loaded machine:
            # seconds): a remaining TTL matches within that, not to the ms.
            slack = 5 if c[0] == "TTL" else 5000
            assert abs(int(mine[1:]) - int(theirs[1:])) <= slack, (c, mine, theirs)
            continue
        assert mine == theirs, c


def _both_positive(mine: bytes, theirs: bytes) -> bool:
    return (mine[:1] == theirs[:1] == b":" and int(mine[1:]) > 0 and int(theirs[1:]) > 0)
