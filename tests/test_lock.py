"""Lock and AsyncLock: exclusion, release only by the holder, extend, expiry.

Expiry is tested on an Engine with the fake clock (the lock only needs
setnx/cas/get); exclusion and the rest against the real server.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import kvstore
from kvstore.errors import InvalidArgumentError, LockError, LockNotOwnedError
from tests.looputil import loop  # noqa: F401  (fixture)


@pytest.fixture
def client(server, namespace):
    with kvstore.Client.connect(server.url(namespace)) as connected:
        yield connected
        connected.flush()


@pytest.fixture
def other(server, namespace):
    with kvstore.Client.connect(server.url(namespace)) as connected:
        yield connected


# ---------------------------------------------------------------- expiry (fake clock)


def test_lease_expires_and_the_next_holder_gets_it(engine, clock):
    first = kvstore.Lock(engine, "L", ttl=10)
    second = kvstore.Lock(engine, "L", ttl=10)
    assert first.acquire(blocking=False)
    clock.tick(9)
    assert not second.acquire(blocking=False)
    clock.tick(2)
    assert second.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError):
        first.extend()
    with pytest.raises(LockNotOwnedError):
        first.release()
    assert second.owned()
    second.release()


def test_extend_pushes_the_expiry_back(engine, clock):
    lock = kvstore.Lock(engine, "L", ttl=10)
    lock.acquire()
    clock.tick(8)
    lock.extend()             # 10 s from now
    clock.tick(8)
    assert lock.owned()
    lock.extend(100)
    assert engine.ttl("L") == 100
    clock.tick(99)
    assert lock.owned()
    lock.release()


def test_leaving_a_block_whose_lease_expired_raises(engine, clock):
    with pytest.raises(LockNotOwnedError):
        with kvstore.Lock(engine, "L", ttl=1):
            clock.tick(2)
            assert kvstore.Lock(engine, "L", ttl=1).acquire(blocking=False)


# ---------------------------------------------------------------- over the network


def test_second_holder_is_excluded(client, other):
    held = client.lock("L", 10)
    contender = other.lock("L", 10, timeout=0.05, poll_interval=0.01)
    assert held.acquire()
    assert not contender.acquire(blocking=False)
    assert not contender.acquire(timeout=0.05)
    with pytest.raises(LockError, match="not acquired within"):
        with contender:
            pass
    assert held.locked() and contender.locked()
    held.release()
    assert not contender.locked()
    assert contender.acquire(blocking=False)   # free at once, no waiting for expiry
    contender.release()


def test_only_the_holder_releases(client, other):
    held = client.lock("L", 10)
    held.acquire()
    stranger = other.lock("L", 10)
    with pytest.raises(LockError, match="not acquired"):
        stranger.release()
    # Someone overwrote the key: the holder must hear that it lost the lease,
    # and its release must leave the other value alone.
    other.set("L", "someone else")
    assert not held.owned()
    with pytest.raises(LockNotOwnedError):
        held.release()
    assert other.get("L") == "someone else"


def test_with_block_holds_and_frees(client, other):
    with client.lock("L", 10) as lock:
        assert lock.owned()
        assert other.get("L") == lock.token
        assert 9 < other.ttl("L") <= 10
    assert lock.token is None
    # Released by compare-and-delete: no tombstone is left behind.
    assert not other.exists("L")
    assert other.lock("L", 10).acquire(blocking=False)


def test_locks_are_not_reentrant(client):
    lock = client.lock("L", 10)
    lock.acquire()
    with pytest.raises(LockError, match="reentrant"):
        lock.acquire()
    lock.release()


def test_each_lease_gets_a_new_token(client):
    lock = client.lock("L", 10)
    lock.acquire()
    first = lock.token
    lock.release()
    lock.acquire()
    assert lock.token != first
    lock.release()


def test_blocking_acquire_waits_for_the_lease_to_expire(client, other):
    client.lock("L", 0.1).acquire()            # abandoned: never released
    assert other.lock("L", 10, poll_interval=0.02).acquire(timeout=5)


def test_lock_serialises_a_read_modify_write(server, namespace):
    with kvstore.Pool(server.url(namespace), max_size=8) as pool:
        pool.set("count", 0)

        def work():
            for _ in range(15):
                with pool.lock("L", 10, poll_interval=0.001):
                    pool.set("count", pool.get("count") + 1)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert pool.get("count") == 8 * 15
        pool.flush()


@pytest.mark.parametrize("options", [{"ttl": 0}, {"ttl": "1"}, {"ttl": 1, "timeout": -1},
                                     {"ttl": 1, "poll_interval": 0}], ids=repr)
def test_bad_lock_options_raise_invalid_argument(engine, options):
    with pytest.raises(InvalidArgumentError):
        kvstore.Lock(engine, "L", **options)


# ---------------------------------------------------------------- AsyncLock


def test_async_lock_excludes_and_releases(server, namespace, loop):
    async def scenario():
        async with await kvstore.AsyncClient.connect(server.url(namespace)) as one, \
                await kvstore.AsyncClient.connect(server.url(namespace)) as two:
            async with one.lock("L", 10) as held:
                assert await held.owned()
                contender = two.lock("L", 10, timeout=0.05, poll_interval=0.01)
                assert not await contender.acquire()
                with pytest.raises(LockError):
                    async with contender:
                        pass
                await held.extend(50)
                assert 40 < await two.ttl("L") <= 50
            assert await two.lock("L", 10).acquire(blocking=False)
            await two.flush()

    loop.run_until_complete(scenario())


def test_async_lock_serialises_tasks(server, namespace, loop):
    async def work(pool):
        for _ in range(10):
            async with pool.lock("L", 10, poll_interval=0.001):
                value = await pool.get("count")
                await asyncio.sleep(0)   # let the others try to interleave
                await pool.set("count", value + 1)

    async def scenario():
        async with kvstore.AsyncPool(server.url(namespace), max_size=4) as pool:
            await pool.set("count", 0)
            await asyncio.gather(*(work(pool) for _ in range(10)))
            assert await pool.get("count") == 100
            await pool.flush()

    loop.run_until_complete(scenario())
