"""kvstore.cached (issue 15): memoization on every kind of store, single-flight
across threads, tasks and processes sharing a server, and the value rules."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading

import pytest

import kvstore
from kvstore.caching import CacheInfo, cached
from tests.looputil import loop  # noqa: F401  (fixture)

BURSTS = 10
CALLERS = 32


def test_a_miss_computes_and_a_hit_does_not(engine):
    calls = []

    @cached(engine, ttl=10)
    def square(x):
        calls.append(x)
        return x * x

    assert square(3) == 9
    assert square(3) == 9
    assert square(4) == 16
    assert calls == [3, 4]
    assert square.cache_info() == CacheInfo(hits=1, misses=2, shared=0)


def test_a_none_result_is_cached_too(engine):
    calls = []

    @cached(engine)
    def nothing():
        calls.append(1)

    assert nothing() is None
    assert nothing() is None
    assert len(calls) == 1


def test_the_ttl_expires_the_entry(engine, clock):
    calls = []

    @cached(engine, ttl=5)
    def now():
        calls.append(1)
        return len(calls)

    assert now() == 1
    clock.tick(4.9)
    assert now() == 1
    clock.tick(0.2)
    assert now() == 2


def test_keys_use_the_key_function_and_the_namespace(engine):
    @cached(engine, key=lambda user: f"user:{user}", namespace="profiles")
    def profile(user):
        return {"name": user}

    profile("ada")
    assert engine.get("profiles:user:ada") == {"name": "ada"}


def test_default_keys_separate_arguments_and_functions(engine):
    @cached(engine)
    def one(*args, **kwargs):
        return [list(args), sorted(kwargs)]

    @cached(engine)
    def two(*args, **kwargs):
        return "two"

    assert one(1, b=2) == [[1], ["b"]]
    assert one(1) == [[1], []]
    assert two(1, b=2) == "two"
    assert one.cache_info().misses == 2


def test_a_long_default_key_is_hashed_within_the_key_limit(engine):
    @cached(engine)
    def echo(text):
        return text

    text = "x" * 100_000
    assert echo(text) == text
    assert echo(text) == text
    assert echo.cache_info().hits == 1


def test_an_unsupported_result_is_refused_and_nothing_is_stored(engine):
    @cached(engine, namespace="n")
    def make():
        return object()

    with pytest.raises(kvstore.UnsupportedValueError, match="serializer"):
        make()
    assert len(engine) == 0


@pytest.mark.parametrize("serializer", [pickle, json], ids=["pickle", "json"])
def test_a_serializer_stores_what_the_codec_cannot(engine, serializer):
    @cached(engine, serializer=serializer)
    def make(n):
        # Beyond the codec: a 70-bit int (json), a tuple key and a set (pickle).
        return {"n": n, "big": 2**70} if serializer is json else {n: (1, 2), "s": {3}}

    first = make(1)
    assert make(1) == first
    assert make.cache_info() == CacheInfo(hits=1, misses=1, shared=0)


def test_invalidate_deletes_one_entry(engine):
    calls = []

    @cached(engine)
    def f(x):
        calls.append(x)
        return x

    f(1), f(2)
    assert f.invalidate(1) is True
    f(1), f(2)
    assert calls == [1, 2, 1]


def test_an_exception_is_not_cached(engine):
    calls = []

    @cached(engine)
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first")
        return "ok"

    with pytest.raises(RuntimeError):
        flaky()
    assert flaky() == "ok"


@pytest.mark.parametrize("bad", [
    {"ttl": 0}, {"ttl": True}, {"namespace": ""}, {"serializer": object()}])
def test_bad_options_are_refused(engine, bad):
    with pytest.raises(kvstore.InvalidArgumentError):
        cached(engine, **bad)


def test_a_plain_function_on_an_async_store_is_refused(server):
    store = kvstore.AsyncClient(server.url())
    with pytest.raises(kvstore.InvalidArgumentError, match="async"):
        @cached(store)
        def f():
            return 1


class _Arrivals:
    """Counts callers as they enter (the key function runs first in every
    call), so a body can wait until every caller of a burst has arrived:
    the stampede is then real, not left to the scheduler."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.all_in = threading.Event()
        self.lock = threading.Lock()

    def key(self, burst: int) -> str:
        with self.lock:
            self.count += 1
            if self.count == self.expected:
                self.all_in.set()
        return f"burst:{burst}"

    def reset(self) -> None:
        self.count = 0
        self.all_in.clear()


def _thread_stampede(functions, arrivals):
    """Each burst: CALLERS threads call one function (round robin over
    ``functions``) on a cold key; returns the results of every burst."""
    results = []
    for burst in range(BURSTS):
        arrivals.reset()
        out = [None] * CALLERS
        def call(i):
            out[i] = functions[i % len(functions)](burst)
        threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        results.append(out)
    return results


def test_stampede_of_threads_runs_the_body_once_per_burst(engine):
    arrivals = _Arrivals(CALLERS)
    runs = []

    @cached(engine, key=arrivals.key)
    def slow(burst):
        arrivals.all_in.wait(10)
        runs.append(burst)
        return burst * 10

    results = _thread_stampede([slow], arrivals)
    assert runs == list(range(BURSTS))
    assert results == [[b * 10] * CALLERS for b in range(BURSTS)]
    info = slow.cache_info()
    assert info.misses == BURSTS
    assert info.hits + info.shared == BURSTS * (CALLERS - 1)


def test_stampede_of_tasks_runs_the_body_once_per_burst(engine, loop):
    arrivals = _Arrivals(CALLERS)
    runs = []

    @cached(engine, key=arrivals.key)
    async def slow(burst):
        while not arrivals.all_in.is_set():
            await asyncio.sleep(0.001)
        runs.append(burst)
        return burst * 10

    async def bursts():
        for burst in range(BURSTS):
            arrivals.reset()
            out = await asyncio.gather(*(slow(burst) for _ in range(CALLERS)))
            assert out == [burst * 10] * CALLERS

    loop.run_until_complete(bursts())
    assert runs == list(range(BURSTS))


def test_a_follower_takes_over_when_the_leader_task_is_cancelled(engine, loop):
    started = asyncio.Event()
    runs = []

    @cached(engine)
    async def slow():
        runs.append(1)
        if len(runs) == 1:
            started.set()
            await asyncio.sleep(3600)
        return "done"

    async def scenario():
        leader = asyncio.ensure_future(slow())
        await started.wait()
        follower = asyncio.ensure_future(slow())
        await asyncio.sleep(0)
        leader.cancel()
        assert await follower == "done"
        with pytest.raises(asyncio.CancelledError):
            await leader

    loop.run_until_complete(scenario())
    assert len(runs) == 2


def test_followers_get_the_leaders_exception(engine):
    arrivals = _Arrivals(4)

    @cached(engine, key=arrivals.key)
    def broken(burst):
        arrivals.all_in.wait(10)
        raise ValueError("broken")

    errors = []

    def call():
        try:
            broken(0)
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 4
    assert broken.cache_info().misses == 1


@pytest.mark.server
def test_processes_sharing_a_server_compute_once_per_burst(server, namespace):
    """Eight 'processes': eight separately decorated functions, each with its
    own pool of connections, so they share nothing but the server (and its lock)."""
    arrivals = _Arrivals(CALLERS)
    runs = []
    clients = [kvstore.Pool(server.url(namespace), max_size=4) for _ in range(8)]

    def make(client):
        @cached(client, ttl=60, key=arrivals.key, lock_ttl=10)
        def slow(burst):
            arrivals.all_in.wait(10)
            runs.append(burst)
            return burst * 10
        return slow

    try:
        results = _thread_stampede([make(c) for c in clients], arrivals)
    finally:
        for client in clients:
            client.close()
    assert results == [[b * 10] * CALLERS for b in range(BURSTS)]
    assert runs == list(range(BURSTS))


@pytest.mark.server
def test_async_client_and_pool_memoize_with_the_servers_lock(server, namespace, loop):
    runs = []

    async def scenario():
        async with kvstore.AsyncPool(server.url(namespace), max_size=4) as pool:
            @cached(pool, ttl=60, namespace="async")
            async def double(x):
                runs.append(x)
                return 2 * x

            out = await asyncio.gather(*(double(i % 3) for i in range(30)))
            assert out == [2 * (i % 3) for i in range(30)]
            assert await pool.get("async:" + _default_key_of(double, 1)) == 2
            assert await double.invalidate(1) is True

    loop.run_until_complete(scenario())
    assert sorted(runs) == [0, 1, 2]


def _default_key_of(function, *args):
    return f"{function.__module__}.{function.__qualname__}{args!r}"


def test_the_package_exports_the_decorator_even_after_its_module_is_imported():
    # A submodule named like the function would shadow it on the package
    # (importing kvstore.X sets kvstore.X to the module).
    import kvstore.caching  # noqa: F401
    assert kvstore.cached is cached and "cached" in kvstore.__all__
