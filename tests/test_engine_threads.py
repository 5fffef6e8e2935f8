"""Engine calls from several Python threads: each call is atomic.

The GIL is handed over far more often than by default, so a call that lets
another thread in halfway (by running Python code between its steps) shows up
as a lost update or a torn batch.
"""

from __future__ import annotations

import decimal
import random
import sys
import threading

import pytest

import kvstore

JOIN_TIMEOUT = 120.0


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


def run_threads(*targets):
    """Start every target at once, join them, and re-raise the first error."""
    errors = []
    start = threading.Barrier(len(targets))

    def wrap(target):
        def run():
            start.wait()
            try:
                target()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "a thread is stuck"
    if errors:
        raise errors[0]


def test_concurrent_incr_loses_nothing(engine):
    threads, per_thread = 8, 20_000

    def bump():
        for _ in range(per_thread):
            engine.incr("counter")

    run_threads(*[bump] * threads)
    assert engine.get("counter") == threads * per_thread


def test_concurrent_incr_and_decr_balance(engine):
    engine.set("counter", 1000)

    def up():
        for _ in range(10_000):
            engine.incr("counter", 3)

    def down():
        for _ in range(10_000):
            engine.decr("counter", 3)

    run_threads(up, down, up, down)
    assert engine.get("counter") == 1000


def test_concurrent_cas_increments_are_never_lost(engine):
    engine.set("n", 0)
    wins = []

    def cas_loop():
        mine = 0
        for _ in range(3000):
            current = engine.get("n")
            if engine.cas("n", current, current + 1):
                mine += 1
        wins.append(mine)

    run_threads(*[cas_loop] * 4)
    assert engine.get("n") == sum(wins)
    assert sum(wins) > 0


def test_exactly_one_thread_wins_each_setnx(engine):
    rounds, threads = 300, 4
    winners = [[] for _ in range(rounds)]
    step = threading.Barrier(threads)

    def contender(tid):
        def run():
            for r in range(rounds):
                step.wait()
                if engine.setnx(f"round-{r}", tid):
                    winners[r].append(tid)
        return run

    run_threads(*[contender(t) for t in range(threads)])
    for r in range(rounds):
        assert len(winners[r]) == 1, f"round {r}: {winners[r]}"
        assert engine.get(f"round-{r}") == winners[r][0]


def test_concurrent_set_get_delete_keep_a_consistent_state(engine):
    shared = [f"shared-{i}" for i in range(32)]
    owned_models = {}

    def worker(tid):
        def run():
            rng = random.Random(tid)
            model = {}
            for i in range(8000):
                op = rng.random()
                if op < 0.2:
                    key = rng.choice(shared)
                    engine.set(key, [tid, i, "x" * rng.randrange(40)])
                elif op < 0.3:
                    engine.delete(rng.choice(shared))
                elif op < 0.4:
                    value = engine.get(rng.choice(shared))
                    assert value is None or (type(value) is list and len(value) == 3)
                elif op < 0.7:
                    key = f"own-{tid}-{rng.randrange(64)}"
                    engine.set(key, i)
                    model[key] = i
                elif op < 0.85:
                    key = f"own-{tid}-{rng.randrange(64)}"
                    assert engine.delete(key) is (key in model)
                    model.pop(key, None)
                else:
                    key = f"own-{tid}-{rng.randrange(64)}"
                    assert engine.get(key) == model.get(key)
                if i % 500 == 0:
                    assert 0 <= len(engine) <= len(shared) + 6 * 64
            owned_models[tid] = model
        return run

    run_threads(*[worker(t) for t in range(6)])
    owned = {k: v for model in owned_models.values() for k, v in model.items()}
    shared_live = sum(engine.mexists(shared))
    assert len(engine) == len(owned) + shared_live
    assert engine.mget(list(owned)) == list(owned.values())
    assert engine.flush() == len(owned) + shared_live


def test_mset_is_all_or_nothing_as_seen_by_mget(engine):
    keys = [f"batch-{i}" for i in range(64)]
    iterations = 2000
    torn = []

    def writer(tag):
        def run():
            for i in range(iterations):
                # Values that take Python work to encode (str, Decimal, nesting).
                value = [tag, i, decimal.Decimal(i) / 7, {"s": str(i) * 3}]
                engine.mset({k: value for k in keys})
        return run

    def deleter():
        for _ in range(iterations // 4):
            engine.mdel(keys)

    def reader():
        for _ in range(iterations):
            got = engine.mget(keys)
            if got.count(got[0]) != len(got):
                torn.append(got)
                return

    run_threads(writer("A"), writer("B"), deleter, reader, reader)
    assert torn == [], f"mget saw a half-written batch: {sorted(set(map(repr, torn[0])))[:4]}"


def test_namespace_flush_leaves_other_writers_keys(engine):
    mine, other = engine.namespace("mine"), engine.namespace("other")

    def flusher():
        for i in range(300):
            mine.mset({f"k{j}": j for j in range(20)})
            mine.flush()

    def writer():
        for i in range(5000):
            other.set(f"k{i}", i)

    run_threads(flusher, writer)
    assert len(mine) == 0
    assert len(other) == 5000
    assert other.mget(["k0", "k4999"]) == [0, 4999]


def test_expiry_while_threads_read_and_write(engine, clock):
    stop = threading.Event()
    lock = threading.Lock()

    def ticker():
        # The clock only moves forward, in steps the writers race against.
        while not stop.is_set():
            with lock:
                clock.tick(0.125)
            engine.purge_expired()

    def writer(tid):
        def run():
            try:
                for i in range(5000):
                    engine.set(f"ttl-{tid}-{i % 200}", i, ttl=0.25 + (i % 4) * 0.125)
                    engine.get(f"ttl-{tid}-{(i * 7) % 200}")
                    if i % 50 == 0:
                        engine.set(f"persistent-{tid}-{i}", i)
            finally:
                stop.set()
        return run

    run_threads(ticker, writer(0), writer(1), writer(2))
    clock.tick(10)
    for _ in range(5000):
        if engine.info()["keys"] == 300 and len(engine) == 300:
            break
        engine.purge_expired()
    assert len(engine) == 300
    assert engine.mget([f"persistent-1-{i}" for i in range(0, 5000, 50)]) == list(range(0, 5000, 50))


def test_background_reclaimer_alongside_callers_then_stops(clock):
    before = set(threading.enumerate())
    engine = kvstore.Engine(clock=clock, reclaim_interval=0.001)
    reclaimers = [t for t in set(threading.enumerate()) - before if t.name == "kvstore-reclaimer"]
    assert reclaimers, "reclaim_interval started no reclaimer thread"

    def writer(tid):
        def run():
            for i in range(3000):
                engine.set(f"w{tid}-{i % 300}", i, ttl=0.125 * (1 + i % 3))
                if i % 100 == 0:
                    clock.tick(0.125)
                    engine.set(f"keep-{tid}-{i}", i)
        return run

    run_threads(writer(0), writer(1), writer(2))
    engine.stop_reclaimer()
    for thread in reclaimers:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "stop_reclaimer() did not end the reclaimer thread"
    clock.tick(1)
    assert len(engine) == 90
    assert engine.get("keep-2-2900") == 2900
