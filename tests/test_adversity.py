"""Clients on a network that misbehaves: replies in one-byte pieces, replies
cut in half, connections killed while calls are in flight (tests/faultproxy.py,
after asyncpg's test_adversity.py and _testbase/fuzzer.py).

What must hold whatever the network does: every call either returns the
right answer or raises KvConnectionError; no answer ever goes to the wrong
call; a client keeps working once the network does.
"""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

import kvstore
from kvstore.errors import KvConnectionError
from tests.faultproxy import FaultProxy
from tests.looputil import connect, loop  # noqa: F401  (fixtures)


@pytest.fixture
def proxy(server):
    with FaultProxy(server.host, server.port) as faulty:
        yield faulty


@pytest.fixture
def store(connect, proxy, namespace):
    """A client of each kind through the proxy."""
    return connect(proxy.url(namespace))


def test_replies_arriving_one_byte_at_a_time(store, proxy):
    proxy.set_trickle(True)
    store.set("k", {"nested": ["value", 1, 2.5, None]})
    assert store.get("k") == {"nested": ["value", 1, 2.5, None]}
    assert store.incr("n", 5) == 5
    keys = [f"k{i}" for i in range(300)]
    store.mset(dict.fromkeys(keys, "x"))
    assert store.mget(keys) == ["x"] * 300
    assert store.ttl("k") is None
    assert store.info()["keys"] >= 301


def test_read_cut_mid_reply_is_retried(store, proxy):
    store.set("k", "v" * 1000)
    proxy.cut_next_reply()
    assert store.get("k") == "v" * 1000
    assert proxy.accepted == 2


def test_write_cut_mid_reply_raises_and_the_client_recovers(store, proxy):
    store.set("big", "v" * 1000)
    proxy.cut_next_reply()
    with pytest.raises(KvConnectionError):
        store.cas("big", "v" * 1000, "w")
    assert store.get("big") == "w"


def test_read_after_every_connection_was_killed(store, proxy):
    store.set("k", 1)
    proxy.kill_all()
    assert store.get("k") == 1        # sent again on a fresh connection if need be
    assert store.mget(["k"]) == [1]


class Model:
    """What a key may hold after calls that succeeded or failed: a failed
    write may or may not have been applied."""

    def __init__(self) -> None:
        self.possible: dict[str, set] = {}

    def written(self, key: str, value: int, ok: bool) -> None:
        before = self.possible.get(key, {None})
        self.possible[key] = {value} if ok else before | {value}

    def check(self, key: str, value: object) -> None:
        assert value in self.possible.get(key, {None}), (key, value, self.possible.get(key))


def test_tasks_on_one_async_client_while_connections_die(proxy, namespace, loop):
    async def worker(client, worker_id, model, stats):
        rng = random.Random(worker_id)
        for step in range(60):
            key = f"w{worker_id}-{rng.randrange(3)}"
            try:
                if rng.random() < 0.5:
                    value = step * 1000 + worker_id
                    try:
                        await client.set(key, value)
                    except KvConnectionError:
                        model.written(key, value, ok=False)
                        stats["failed"] += 1
                        continue
                    model.written(key, value, ok=True)
                else:
                    model.check(key, await client.get(key))
                stats["ok"] += 1
            except KvConnectionError:
                stats["failed"] += 1

    async def killer():
        rng = random.Random(0)
        for _ in range(15):
            await asyncio.sleep(rng.uniform(0.001, 0.01))   # fault cadence, not a wait
            await asyncio.get_running_loop().run_in_executor(None, proxy.kill_all)

    async def scenario():
        client = await kvstore.AsyncClient.connect(proxy.url(namespace))
        model, stats = Model(), {"ok": 0, "failed": 0}
        await asyncio.gather(killer(), *(worker(client, n, model, stats) for n in range(30)))
        assert stats["ok"] > 0
        # Once the network is quiet again, every key reads back a possible value.
        for key in model.possible:
            model.check(key, await client.get(key))
        await client.flush()
        await client.close()

    loop.run_until_complete(scenario())


def test_threads_on_a_pool_while_connections_die(proxy, namespace):
    model, failures = Model(), []
    done = threading.Event()
    with kvstore.Pool(proxy.url(namespace), max_size=4) as pool:
        def worker(worker_id):
            rng = random.Random(worker_id)
            try:
                for step in range(80):
                    key = f"w{worker_id}-{rng.randrange(3)}"
                    if rng.random() < 0.5:
                        value = step * 1000 + worker_id
                        try:
                            pool.set(key, value)
                            model.written(key, value, ok=True)
                        except KvConnectionError:
                            model.written(key, value, ok=False)
                    else:
                        try:
                            model.check(key, pool.get(key))
                        except KvConnectionError:
                            pass
            except BaseException as exc:
                failures.append(exc)

        def killer():
            rng = random.Random(1)
            while not done.wait(rng.uniform(0.001, 0.01)):
                proxy.kill_all()

        kill_thread = threading.Thread(target=killer)
        kill_thread.start()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        kill_thread.join()
        assert not failures, failures
        for key in model.possible:
            model.check(key, pool.get(key))
        pool.flush()
