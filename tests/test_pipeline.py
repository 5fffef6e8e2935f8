"""pipeline() on Client, AsyncClient, their namespace views, Pool and
AsyncPool: queued calls go in one write and come back in order, errors in
place or raised, batches split as outside a pipeline, and the compiled
ReplyReader.read_batch that decodes them."""

from __future__ import annotations

import asyncio

import pytest

import kvstore
from kvstore import client as client_module
from kvstore._protocol import OP_GET, OP_INCR, OP_SET, Processor, ReplyReader, RequestWriter
from kvstore.errors import (
    InvalidArgumentError,
    KvConnectionError,
    ProtocolError,
    UnsupportedValueError,
    WrongTypeError,
)
from tests.faultproxy import FaultProxy
from tests.looputil import Blocking, connect, loop  # noqa: F401  (fixtures)


@pytest.fixture
def proxy(server):
    with FaultProxy(server.host, server.port) as faulty:
        yield faulty


def run(client, pipeline, **options):
    """execute() of a pipeline of a Client, or of an AsyncClient behind Blocking."""
    if isinstance(client, Blocking):
        return client._loop.run_until_complete(pipeline.execute(**options))
    return pipeline.execute(**options)


def view_of(client, name):
    """client.namespace(name), behind Blocking when the client is."""
    if isinstance(client, Blocking):
        return Blocking(client._target.namespace(name), client._loop)
    return client.namespace(name)


@pytest.fixture
def kv(connect, server, namespace):
    store = connect(server.url(namespace))
    yield store
    store.flush()


# ---------------------------------------------------------------- results


def test_answers_come_back_in_the_order_of_the_calls(kv):
    kv.set("s", "x")
    with kv.pipeline() as p:
        p.set("a", 1)
        p.get("a")
        p.get("missing")
        p.get("missing", "fallback")
        p.incr("n", 5)
        p.setnx("a", 2)
        p.mget(["a", "missing"])
        p.ttl("missing")
        p.exists("s")
        p.delete_if_equal("s", "x")
        p.scan(0, None, 1000)
        assert len(p) == 11
        results = run(kv, p)
    assert results[:10] == [None, 1, None, "fallback", 5, False, [1, None], None, True, True]
    cursor, keys = results[10]
    assert cursor == 0 and sorted(keys) == [b"a", b"n"]
    assert len(p) == 0


def test_a_stored_none_is_not_mistaken_for_a_missing_key(kv):
    kv.set("none", None)
    p = kv.pipeline()
    p.get("none", "fallback")
    p.get("absent", "fallback")
    assert run(kv, p) == [None, "fallback"]


def test_an_empty_pipeline_sends_nothing(kv):
    assert run(kv, kv.pipeline()) == []


def test_a_pipeline_is_reusable_and_leaving_with_discards_the_rest(kv):
    with kv.pipeline() as p:
        p.set("a", 1)
        assert run(kv, p) == [None]
        p.incr("a")
        assert run(kv, p) == [2]
        p.set("a", "never sent")
    assert len(p) == 0
    assert kv.get("a") == 2


# ---------------------------------------------------------------- errors


def test_an_error_reply_raises_by_default_after_every_call_ran(kv):
    kv.set("s", "text")
    p = kv.pipeline()
    p.incr("s")
    p.set("after", 1)
    with pytest.raises(WrongTypeError):
        run(kv, p)
    assert kv.get("after") == 1       # not a transaction: the rest ran
    assert kv.get("s") == "text"      # and the connection is still in step


def test_errors_come_back_in_place_when_asked(kv):
    kv.set("s", "text")
    p = kv.pipeline()
    p.incr("s")
    p.get("s")
    p.incr("s")
    first, value, second = run(kv, p, raise_on_error=False)
    assert isinstance(first, WrongTypeError) and isinstance(second, WrongTypeError)
    assert value == "text"


def test_a_bad_argument_raises_at_the_call_and_queues_nothing(kv):
    p = kv.pipeline()
    p.set("kept", 1)
    with pytest.raises(UnsupportedValueError):
        p.set("bad", object())
    with pytest.raises(InvalidArgumentError):
        p.mget("abc")    # a str is one key, not a list of keys
    # A batch that fails half-way through its frames leaves the earlier calls.
    pairs = [(f"k{i}", i) for i in range(70_000)] + [("bad", object())]
    with pytest.raises(UnsupportedValueError):
        p.mset(pairs)
    assert len(p) == 1
    assert run(kv, p) == [None]
    assert not kv.exists("k0")


def test_a_lock_cannot_be_queued(kv):
    with pytest.raises(TypeError):
        kv.pipeline().lock("L", 1)


# ---------------------------------------------------------------- sizes


def test_a_batch_over_one_frame_is_one_answer(kv):
    keys = [f"k{i}" for i in range(70_000)]
    kv.mset({k: 1 for k in keys})
    p = kv.pipeline()
    p.mget(keys)
    p.mdel(keys)
    p.get("k0")
    values, removed, last = run(kv, p)
    assert values == [1] * len(keys) and removed == len(keys) and last is None


def test_a_pipeline_larger_than_the_socket_buffers_does_not_deadlock(kv):
    # 24 MiB of requests whose replies (96 MiB) exceed every buffer: the server
    # stops reading while its replies wait, so the client must read while it
    # sends (Client: in parts; AsyncClient: the event loop).
    key = "k" * 1000
    kv.set(key, "x" * 4000)
    p = kv.pipeline()
    for _ in range(24_000):
        p.get(key)
    results = run(kv, p)
    assert len(results) == 24_000 and results[-1] == "x" * 4000


def test_parts_cut_at_frame_boundaries():
    writer = RequestWriter()
    for i in range(10_000):
        writer.get(f"key{i}")
    data = writer.take()
    parts = client_module._parts(data, 10_000)
    assert len(parts) > 1 and parts[-1] == (len(data), 10_000)
    start = 0
    for end, _frames in parts:
        assert end - start <= client_module.PART_BYTES
        start = end


# ---------------------------------------------------------------- targets


def test_a_view_pipeline_uses_the_views_namespace(kv):
    view = view_of(kv, "inner")
    p = view.pipeline()
    p.set("k", "inside")
    run(kv, p)
    assert kv.get("inner:k") == "inside"
    assert view.get("k") == "inside"


def test_pool_pipeline_borrows_one_connection(server, namespace):
    with kvstore.Pool(server.url(namespace), max_size=1) as pool:
        with pool.pipeline() as p:
            p.set("a", 1)
            p.incr("a")
            assert p.execute() == [None, 2]
        with pool.acquire():    # given back: the only connection is free
            pass
        pool.flush()


def test_async_pool_pipeline(server, namespace, loop):
    async def scenario():
        async with kvstore.AsyncPool(server.url(namespace), max_size=1) as pool:
            async with pool.pipeline() as p:
                p.set("a", 1)
                p.get("a")
                assert await p.execute() == [None, 1]
            await pool.flush()

    loop.run_until_complete(scenario())


# ---------------------------------------------------------------- retry


def test_a_read_only_pipeline_is_retried_once(connect, proxy, namespace):
    kv = connect(proxy.url(namespace))
    kv.set("k", "v")
    proxy.drop_next_request()
    p = kv.pipeline()
    p.get("k")
    p.exists("k")
    assert run(kv, p) == ["v", True]
    assert proxy.accepted == 2


def test_a_pipeline_with_a_write_is_never_resent(connect, proxy, namespace):
    kv = connect(proxy.url(namespace))
    kv.set("n", 0)
    proxy.drop_next_reply()
    p = kv.pipeline()
    p.get("n")
    p.incr("n")
    with pytest.raises(KvConnectionError):
        run(kv, p)
    assert kv.get("n") == 1     # applied once, not twice


def test_a_cancelled_async_pipeline_does_not_shift_later_answers(proxy, namespace, loop):
    async def scenario():
        client = await kvstore.AsyncClient.connect(proxy.url(namespace))
        await client.mset({"a": "A", "b": "B"})
        proxy.hold_replies()
        p = client.pipeline()
        p.get("a")
        p.get("a")
        first = asyncio.ensure_future(p.execute())
        await asyncio.sleep(0)
        first.cancel()
        second = asyncio.ensure_future(client.get("b"))
        await asyncio.sleep(0)
        proxy.release_replies()
        assert await second == "B"
        assert first.cancelled()
        await client.flush()
        await client.close()

    loop.run_until_complete(scenario())


# ---------------------------------------------------------------- read_batch


def _replies(*pairs):
    """Reply frames made by a real processor for the given writer calls."""
    engine = kvstore.Engine()
    writer = RequestWriter()
    for name, args in pairs:
        getattr(writer, name)(*args)
    processor = Processor(engine)
    return processor.feed(writer.take())


def test_read_batch_gives_the_same_answers_fed_one_byte_at_a_time():
    data = _replies(("set", ("s", "x")), ("get", ("s",)), ("incr", ("s",)), ("get", ("no",)))
    ops = bytes([OP_SET, OP_GET, OP_INCR, OP_GET])
    reader = ReplyReader()
    results: list = []
    errors = 0
    for i in range(len(data)):
        reader.feed(data[i:i + 1])
        errors += reader.read_batch(ops, results, {3: "fallback"})
    assert results[:2] == [None, "x"] and results[3] == "fallback"
    assert isinstance(results[2], WrongTypeError) and errors == 1
    assert len(reader) == 0


def test_read_batch_refuses_a_reply_of_the_wrong_shape():
    reader = ReplyReader()
    reader.feed(b"\x00\x00\x00\x00\x00")   # OK, empty: not an answer to GET
    with pytest.raises(ProtocolError):
        reader.read_batch(bytes([OP_GET]), [])
