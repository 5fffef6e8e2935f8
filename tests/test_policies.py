"""The eviction simulators of benchmarks/policies.py on tiny hand-made traces.

benchmarks/ is not installed, so the module is loaded from the checkout by
path (the suite imports the installed kvstore with --import-mode=importlib).
"""

from __future__ import annotations

import importlib.util
import pathlib
import random
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "policies.py"
_spec = importlib.util.spec_from_file_location("kv_bench_policies", _PATH)
P = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = P
_spec.loader.exec_module(P)


def hits_of(policy, trace):
    return [policy.access(k) for k in trace]


def all_policies(capacity, trace):
    return {
        "LRU": P.LRU(capacity),
        "W-TinyLFU": P.WTinyLFU(capacity),
        "W-TinyLFU+dk": P.WTinyLFU(capacity, doorkeeper=True),
        "S3-FIFO": P.S3FIFO(capacity),
        "s-LRU-5": P.SampledLRU(capacity, 5),
        "s-LRU-10": P.SampledLRU(capacity, 10),
        "s-LFU": P.SampledLFU(capacity, 5, period=7),
        "s-W-TinyLFU": P.SampledWTinyLFU(capacity),
        "s-S3-FIFO": P.SampledS3FIFO(capacity),
    }


def test_lru_exact_on_a_known_sequence():
    # capacity 2: a b a c b a  ->  c evicts b (a was used after b), then b
    # misses and evicts a, then a misses.
    assert hits_of(P.LRU(2), "abacba") == [False, False, True, False, False, False]
    assert hits_of(P.LRU(3), "abcabdab") == [False] * 3 + [True] * 2 + [False] + [True] * 2


def test_belady_known_sequence():
    # capacity 2 on a b c a b: c is never used again, so OPT keeps a and b.
    trace = "abcab"
    assert hits_of(P.Belady(2, trace), trace) == [False, False, False, True, True]
    # a b c b a, capacity 2: at c, a (next at 4) goes before b (next at 3)...
    # and c itself is never reused, so it is not admitted at all.
    trace = "abcbca"
    assert hits_of(P.Belady(2, trace), trace) == [False, False, False, True, True, False]


def _brute_force_best(capacity, trace):
    """The true optimum by exhaustive search: on every miss, try keeping the
    newcomer in place of each resident, or not keeping it."""
    from functools import lru_cache

    @lru_cache(maxsize=None)
    def best(i, cache):
        if i == len(trace):
            return 0
        k = trace[i]
        if k in cache:
            return 1 + best(i + 1, cache)
        options = [best(i + 1, cache)]
        if len(cache) < capacity:
            options.append(best(i + 1, cache | {k}))
        else:
            options += [best(i + 1, (cache - {v}) | {k}) for v in cache]
        return max(options)

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(8))
def test_belady_matches_exhaustive_search(seed):
    rng = random.Random(seed)
    trace = [rng.randrange(6) for _ in range(14)]
    for capacity in (1, 2, 3):
        assert P.run(P.Belady(capacity, trace), trace) == _brute_force_best(capacity, trace)


def test_belady_must_replay_its_own_trace():
    opt = P.Belady(2, "ab")
    with pytest.raises(ValueError):
        opt.access("b")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("capacity", [1, 3, 8])
def test_opt_is_at_least_every_policy(seed, capacity):
    rng = random.Random(seed)
    trace = [int(rng.paretovariate(1.0)) % 40 for _ in range(600)]
    best = P.run(P.Belady(capacity, trace), trace)
    for name, policy in all_policies(capacity, trace).items():
        assert P.run(policy, trace) <= best, name


@pytest.mark.parametrize("capacity", [1, 4, 16])
def test_capacity_is_never_exceeded(capacity):
    rng = random.Random(capacity)
    trace = [rng.randrange(100) for _ in range(2000)]
    for name, policy in all_policies(capacity, trace).items():
        for k in trace:
            policy.access(k)
            assert len(policy) <= capacity, name


def test_a_repeat_within_capacity_always_hits():
    # any policy must hit on a key it has just seen when the trace never holds
    # more distinct keys than the capacity... except admission filters, which
    # may refuse a newcomer only when the cache is full. Here it never is.
    trace = list("abcdabcdabcd")
    for name, policy in all_policies(4, trace).items():
        assert hits_of(policy, trace) == [False] * 4 + [True] * 8, name


def _hot_then_scan(cache, hot):
    """Read ``hot`` three times, then scan 500 new keys; return the hot
    keys' hits afterwards."""
    for _ in range(3):
        for k in hot:
            cache.access(k)
    for k in range(1000, 1500):
        cache.access(-k)
    return [cache.access(k) for k in hot]


def test_s3fifo_one_hit_wonders_do_not_displace_the_hot_set():
    # a hot set accessed twice while in S moves to M; then a long scan of
    # new keys only churns S and the ghost, and the hot set keeps hitting,
    # where LRU loses all of it.
    hot = list(range(8))
    assert all(_hot_then_scan(P.S3FIFO(20), hot))
    assert all(_hot_then_scan(P.S3FIFO(20, move_threshold=1), hot))
    assert not any(_hot_then_scan(P.LRU(20), hot))


def test_s3fifo_ghost_hit_goes_to_main():
    cache = P.S3FIFO(10)   # S holds 1 key, M 9
    cache.access("x")
    cache.access("y")
    for k in range(12):
        cache.access(k)
    # x left S unaccessed and is remembered by the ghost: it returns into M
    assert "x" in cache._ghost or "x" not in cache._freq
    cache.access("x")
    assert "x" in cache._main


def test_wtinylfu_admits_by_frequency():
    cache = P.WTinyLFU(100)      # window 1 key, main 99
    popular = list(range(99))
    for _ in range(5):
        for k in popular:
            cache.access(k)
    # a stream of one-off keys passes the window and loses every contest
    for k in range(1000, 1300):
        cache.access(k)
    assert sum(cache.access(k) for k in popular) >= 97


def test_frequency_sketch_counts_and_ages():
    sketch = P.FrequencySketch(64)
    for _ in range(7):
        sketch.increment("a")
    sketch.increment("b")
    assert sketch.frequency("a") >= 7
    assert sketch.frequency("a") > sketch.frequency("b")
    for _ in range(20):
        sketch.increment("a")
    assert sketch.frequency("a") == 15     # saturates at 15
    # 10 * 64 increments trigger a reset that halves every counter
    for i in range(640):
        sketch.increment(("filler", i))
    assert sketch.frequency("a") <= 8


def test_doorkeeper_absorbs_the_first_occurrence():
    sketch = P.FrequencySketch(64, doorkeeper=True)
    assert sketch.frequency("k") == 0
    sketch.increment("k")
    assert sketch.frequency("k") == 1      # doorkeeper only
    sketch.increment("k")
    assert sketch.frequency("k") == 2


def test_sampled_lru_with_full_sample_is_exact_lru():
    # with as many samples as keys, the pool always sees every key and the
    # idlest one goes: exact LRU.
    rng = random.Random(3)
    trace = [rng.randrange(12) for _ in range(500)]
    assert hits_of(P.SampledLRU(6, samples=6), trace) == hits_of(P.LRU(6), trace)


def test_sampled_lfu_counter_follows_redis():
    lfu = P.SampledLFU(4, period=10)
    lfu.access("k")
    assert lfu._counter["k"] == P.LFU_INIT_VAL
    # at LFU_INIT_VAL the increment probability is 1
    lfu.access("k")
    assert lfu._counter["k"] == P.LFU_INIT_VAL + 1
    # thirty idle periods later the counter has decayed to 0 (one per period)
    lfu.clock += 300
    assert lfu._decayed("k") == 0


def test_sampled_lfu_keeps_the_frequent_key():
    lfu = P.SampledLFU(3, samples=3)
    for _ in range(50):
        lfu.access("hot")
    for k in range(100):
        lfu.access(k)
    assert lfu.access("hot")


def test_adapters_drive_mappings_and_stores():
    cachetools = pytest.importorskip("cachetools")
    lib = P.LibraryCache(cachetools.LRUCache(2))
    assert hits_of(lib, "abacba") == hits_of(P.LRU(2), "abacba")
    store: dict[bytes, bytes] = {}
    adapter = P.StoreAdapter(store.get, store.__setitem__)
    assert hits_of(adapter, [1, 2, 1]) == [False, False, True]
    assert set(store) == {b"1", b"2"}


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        P.LRU(0)
