"""Pool and AsyncPool: many threads or tasks sharing a few connections,
waiting for a free one, discarding broken ones, and fork safety."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import subprocess
import sys
import threading

import pytest

import kvstore
from kvstore._commands import COMMANDS
from kvstore.errors import (
    InvalidArgumentError,
    KvConnectionError,
    PoolTimeoutError,
)
from tests.conftest import free_port
from tests.faultproxy import FaultProxy
from tests.looputil import loop  # noqa: F401  (fixture)


@pytest.fixture
def proxy(server):
    with FaultProxy(server.host, server.port) as faulty:
        yield faulty


def test_pool_offers_every_client_method_with_its_signature():
    for name in COMMANDS:
        for pool_class, client_class in ((kvstore.Pool, kvstore.Client),
                                         (kvstore.AsyncPool, kvstore.AsyncClient)):
            method = getattr(pool_class, name)
            assert inspect.signature(method) == inspect.signature(getattr(client_class, name))
            assert method.__doc__
    assert {"get", "set", "incr", "mget", "mset", "flush", "ping", "info"} <= set(COMMANDS)
    assert "lock" not in COMMANDS


@pytest.mark.parametrize("options", [{"max_size": 0}, {"max_size": 1.5}, {"timeout": 0},
                                     {"socket_timeout": -1}], ids=repr)
def test_bad_pool_options_raise_invalid_argument(options):
    for pool_class in (kvstore.Pool, kvstore.AsyncPool):
        with pytest.raises(InvalidArgumentError):
            pool_class("127.0.0.1", **options)


def test_eight_threads_share_a_pool(proxy, namespace):
    rounds = 100
    with kvstore.Pool(proxy.url(namespace), max_size=4) as pool:
        failures = []

        def work(worker):
            try:
                for i in range(rounds):
                    pool.incr("counter")
                    pool.set(f"w{worker}", i)
                    assert pool.get(f"w{worker}") == i
                    with pool.acquire() as client:
                        client.set(f"a{worker}", i)
                        assert client.mget([f"w{worker}", f"a{worker}"]) == [i, i]
            except BaseException as exc:   # reported from the main thread
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert pool.get("counter") == 8 * rounds
        assert 1 <= proxy.accepted <= 4
        pool.flush()


def test_fifty_tasks_share_an_async_pool(proxy, namespace, loop):
    rounds = 20

    async def work(pool, worker):
        for i in range(rounds):
            await pool.incr("counter")
            await pool.set(f"w{worker}", i)
            assert await pool.get(f"w{worker}") == i
            async with pool.acquire() as client:
                await client.set(f"a{worker}", i)
                assert await client.mget([f"w{worker}", f"a{worker}"]) == [i, i]

    async def scenario():
        async with await kvstore.AsyncPool.connect(proxy.url(namespace), max_size=5) as pool:
            await asyncio.gather(*(work(pool, n) for n in range(50)))
            assert await pool.get("counter") == 50 * rounds
            assert 1 <= proxy.accepted <= 5
            await pool.flush()

    loop.run_until_complete(scenario())


def test_borrower_waits_for_a_connection_then_times_out(server, namespace):
    with kvstore.Pool(server.url(namespace), max_size=1, timeout=0.1) as pool:
        with pool.acquire() as held:
            held.set("k", 1)
            with pytest.raises(PoolTimeoutError, match="max_size=1"):
                pool.get("k")
        assert pool.get("k") == 1


def test_waiting_borrower_gets_the_returned_connection(server, namespace):
    with kvstore.Pool(server.url(namespace), max_size=1, timeout=10) as pool:
        borrowed = threading.Event()
        result = []
        with pool.acquire() as held:
            def waiter():
                borrowed.set()
                result.append(pool.incr("n"))
            thread = threading.Thread(target=waiter)
            thread.start()
            borrowed.wait()
            held.set("n", 41)
        thread.join()
        assert result == [42]


def test_async_borrower_waits_then_times_out(server, namespace, loop):
    async def scenario():
        async with kvstore.AsyncPool(server.url(namespace), max_size=1, timeout=0.1) as pool:
            async with pool.acquire() as held:
                await held.set("k", 1)
                with pytest.raises(PoolTimeoutError):
                    await pool.get("k")
                waiting = asyncio.ensure_future(pool.incr("n"))
                await asyncio.sleep(0)
                assert not waiting.done()
            assert await waiting == 1
            assert await pool.get("k") == 1

    loop.run_until_complete(scenario())


def test_cancelled_async_borrower_passes_its_turn_on(server, namespace, loop):
    async def scenario():
        async with kvstore.AsyncPool(server.url(namespace), max_size=1, timeout=5) as pool:
            async with pool.acquire():
                first = asyncio.ensure_future(pool.get("k"))
                second = asyncio.ensure_future(pool.incr("k"))
                await asyncio.sleep(0)
                first.cancel()
            assert await second == 1
            assert first.cancelled()

    loop.run_until_complete(scenario())


def test_broken_connection_is_discarded_not_reused(proxy, namespace):
    with kvstore.Pool(proxy.url(namespace), max_size=1) as pool:
        with pool.acquire() as first:
            first.set("n", 0)
            proxy.drop_next_reply()
            with pytest.raises(KvConnectionError):
                first.incr("n")
        with pool.acquire() as second:
            assert second is not first
            assert second.get("n") == 1
        assert not first.connected
        assert proxy.accepted == 2


def test_broken_async_connection_is_discarded_not_reused(proxy, namespace, loop):
    async def scenario():
        async with kvstore.AsyncPool(proxy.url(namespace), max_size=1) as pool:
            async with pool.acquire() as first:
                await first.set("n", 0)
                proxy.drop_next_reply()
                with pytest.raises(KvConnectionError):
                    await first.incr("n")
            async with pool.acquire() as second:
                assert second is not first
                assert await second.get("n") == 1

    loop.run_until_complete(scenario())


def test_closed_pool_refuses_calls_and_closes_lent_connections(server, namespace):
    pool = kvstore.Pool(server.url(namespace), max_size=2)
    with pool.acquire() as lent:
        lent.ping()
        pool.close()
        assert lent.ping() is True     # a lent connection works until given back
    assert not lent.connected
    with pytest.raises(KvConnectionError, match="closed"):
        pool.ping()


def test_async_pool_connect_fails_fast_when_nobody_listens(loop):
    with pytest.raises(KvConnectionError):
        loop.run_until_complete(kvstore.AsyncPool.connect(f"127.0.0.1:{free_port()}"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_process_never_uses_the_parents_connection(server, namespace):
    with kvstore.Pool(server.url(namespace), max_size=2) as pool:
        with pool.acquire() as client:
            client.set("parent", 1)
            parent_end = client._sock.getsockname()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:   # the child: report through the pipe, never return into pytest
            status = b"ok"
            try:
                with pool.acquire() as client:
                    client.set("child", os.getpid())
                    if client._sock.getsockname() == parent_end:
                        status = b"reused the parent's socket"
                    elif pool.get("parent") != 1:
                        status = b"wrong answer"
            except BaseException as exc:
                status = repr(exc).encode()
            os.write(write_end, status)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            status = pipe.read()
        os.waitpid(pid, 0)
        assert status == b"ok"
        # The parent's connection is intact and sees the child's write.
        with pool.acquire() as client:
            assert client._sock.getsockname() == parent_end
            assert client.get("child") == pid


# ---------------------------------------------------------------- typed options (issue 8.9)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_a_misspelt_pool_option_fails_type_checking(tmp_path):
    (tmp_path / "good.py").write_text(
        "import kvstore\n"
        "async def main() -> None:\n"
        "    kvstore.Pool('h', max_size=2, timeout=1.0, socket_timeout=1.0)\n"
        "    await kvstore.AsyncPool.connect('h', max_size=2, max_payload=1024)\n")
    (tmp_path / "bad.py").write_text(
        "import kvstore\n"
        "async def main() -> None:\n"
        "    kvstore.Pool('h', max_sise=2)\n"
        "    await kvstore.AsyncPool.connect('h', max_sise=2)\n"
        "    await kvstore.AsyncPool.connect('h', max_size='2')\n")

    def check(name):
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", name],
            cwd=tmp_path, capture_output=True, text=True, timeout=300)

    good = check("good.py")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = check("bad.py")
    assert bad.returncode == 1
    assert bad.stdout.count("max_sise") == 2 and 'bad.py:5: error' in bad.stdout, bad.stdout
