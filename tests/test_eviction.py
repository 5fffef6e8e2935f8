"""Eviction under max_memory / max_keys (issue 12, docs/eviction.md).

Deterministic: a fake clock and Engine._seed() (hashing and sampling).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvstore import Engine
from kvstore._engine import EVICTION_POLICIES, parse_memory
from kvstore.errors import InvalidArgumentError, KvError, OutOfMemoryError, error_class

POLICIES = [p for p in EVICTION_POLICIES if p != "noeviction"]
VOLATILE = [p for p in POLICIES if p.startswith("volatile-")]
# The largest write in these tests: key + value + entry header + ttl block.
WRITE_SLACK = 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(**kwargs) -> tuple[Engine, Clock]:
    clock = Clock()
    e = Engine(clock, **kwargs)
    e._seed(7)
    return e, clock


def contents(e: Engine) -> dict:
    return {k: e.get(k) for k in sorted(e.scan_iter())}


# ---------------------------------------------------------------- interface

def test_limits_parse_with_binary_multiples() -> None:
    assert parse_memory("256mb") == 256 * 1024 ** 2
    assert parse_memory("2GB") == 2 * 1024 ** 3
    assert parse_memory("2G") == 2 * 1024 ** 3
    assert parse_memory("100k") == 100 * 1024
    assert parse_memory("1m") == 1024 ** 2
    assert parse_memory("64MiB") == 64 * 1024 ** 2
    assert parse_memory(12345) == 12345
    assert parse_memory(None) == 0
    for bad in ("12 parsecs", "-1", "", 1.5, True, -3):
        with pytest.raises(InvalidArgumentError):
            parse_memory(bad)


def test_default_policy_is_s3fifo_with_a_limit_and_noeviction_without() -> None:
    assert Engine().info()["eviction_policy"] == "noeviction"
    e = Engine(max_memory="1mb")
    info = e.info()
    assert (info["eviction_policy"], info["max_memory"], info["max_keys"]) == ("s3fifo", 1024 ** 2, 0)
    assert Engine(max_keys=5, eviction="allkeys-lru").info()["eviction_policy"] == "allkeys-lru"
    # A policy chosen once stays chosen when the limit changes.
    e = Engine(eviction="volatile-ttl")
    e.configure(max_keys=10)
    assert e.info()["eviction_policy"] == "volatile-ttl"


def test_bad_configuration_changes_nothing() -> None:
    e = Engine(max_keys=10, eviction="allkeys-lru")
    for kwargs in ({"eviction": "lru"}, {"max_memory": "lots"}, {"max_keys": -1},
                   {"eviction_samples": 0}, {"on_evict": 3}, {"max_keys": 3, "eviction": "x"}):
        with pytest.raises(InvalidArgumentError):
            e.configure(**kwargs)
    info = e.info()
    assert (info["max_keys"], info["eviction_policy"], info["eviction_samples"]) == (10, "allkeys-lru", 5)


def test_oom_has_its_own_wire_kind() -> None:
    assert OutOfMemoryError.kind == "oom"
    assert error_class("oom") is OutOfMemoryError
    assert issubclass(OutOfMemoryError, KvError)


# ------------------------------------------------------------- the bound

@pytest.mark.parametrize("policy", POLICIES)
def test_fill_to_ten_times_the_limit_never_exceeds_it(policy: str) -> None:
    limit = 64 * 1024
    e, clock = engine(max_memory=limit, eviction=policy)
    rng = random.Random(policy)
    written = 0
    refused = 0
    while written < 10 * limit:
        size = rng.randint(1, 400)
        ttl = rng.choice([None, 50.0, 500.0])
        try:
            e.set(f"key{rng.randrange(10**9)}", b"v" * size, ttl=ttl)
        except OutOfMemoryError:
            # Only volatile-* can find nothing to evict: every key with a ttl
            # is gone and those without fill the limit.
            assert policy in VOLATILE and e.info()["keys_with_ttl"] == 0
            refused += 1
        written += size
        if rng.random() < 0.3:
            e.get(f"key{rng.randrange(10**9)}")
        info = e.info()
        assert info["used_memory"] <= limit + WRITE_SLACK, info
    e._check()
    info = e.info()
    assert info["evicted_keys"] > 0
    # In steady state the slab's free space is refilled, not grown without end.
    assert info["memory_bytes"] < info["used_memory"] + 70 * 16 * 1024


@pytest.mark.parametrize("policy", POLICIES)
def test_max_keys_holds_after_every_call(policy: str) -> None:
    e, _ = engine(max_keys=50, eviction=policy)
    for i in range(500):
        e.set(f"k{i}", i, ttl=100.0)
        if policy in VOLATILE:
            e.getset(f"g{i}", i, ttl=5.0)
        else:
            e.incr(f"n{i}")
        assert len(e) <= 50
    e.mset({f"m{i}": i for i in range(20)}, ttl=9.0)
    assert len(e) <= 50
    e._check()


OPS = st.lists(st.tuples(
    st.sampled_from(["set", "set_ttl", "get", "delete", "mset", "incr", "expire", "getset", "tick"]),
    st.integers(0, 60), st.integers(1, 300)), max_size=120)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(EVICTION_POLICIES), ops=OPS, limit=st.integers(2000, 20000),
       max_keys=st.sampled_from([0, 5, 30]))
def test_model_bound_after_every_call_and_refusals_change_nothing(policy, ops, limit, max_keys):
    e, clock = engine(max_memory=limit, max_keys=max_keys or None, eviction=policy)
    for op, k, size in ops:
        key = f"k{k}"
        before = contents(e)
        try:
            if op == "set":
                e.set(key, b"x" * size)
            elif op == "set_ttl":
                e.set(key, b"x" * size, ttl=size / 10)
            elif op == "get":
                e.get(key)
            elif op == "delete":
                e.delete(key)
            elif op == "mset":
                e.mset({f"k{(k + i) % 61}": b"y" * size for i in range(3)})
            elif op == "incr":
                try:
                    e.incr(key)
                except KvError as exc:
                    if isinstance(exc, OutOfMemoryError):
                        raise
            elif op == "expire":
                e.expire(key, 5)
            elif op == "getset":
                e.getset(key, b"z" * size)
            else:
                clock.now += size / 100
                e.tick(1.0)
        except OutOfMemoryError:
            # Refused before the write changed anything (nothing was left to
            # evict; as in Redis, what could be evicted first may be gone).
            assert policy == "noeviction" or policy in VOLATILE
            after = contents(e)
            assert after.items() <= before.items()
            if policy == "noeviction":
                assert after == before
        info = e.info()
        assert info["used_memory"] <= limit + WRITE_SLACK
        if max_keys:
            assert info["keys"] <= max_keys
    e._check()


# ------------------------------------------------------------- noeviction

def test_noeviction_refuses_writes_and_keeps_reads_deletes_expire_flush() -> None:
    e, _ = engine(max_keys=3, eviction="noeviction")
    e.mset({"a": 1, "b": 2, "c": 3})
    with pytest.raises(OutOfMemoryError):
        e.set("d", 4)
    with pytest.raises(OutOfMemoryError):
        e.setnx("d", 4)
    with pytest.raises(OutOfMemoryError):
        e.incr("d")
    with pytest.raises(OutOfMemoryError):
        e.getset("d", 4)
    with pytest.raises(OutOfMemoryError):
        e.mset({"a": 10, "d": 4})          # all or nothing: "a" keeps 1
    assert contents(e) == {b"a": 1, b"b": 2, b"c": 3}
    e.set("a", 11)                          # an overwrite adds no key
    assert e.incr("b") == 3                 # in place
    assert e.expire("c", 10) and e.get("c") == 3
    assert e.delete("a")
    e.set("d", 4)                           # room again
    assert e.flush() == 3
    assert e.info()["evicted_keys"] == 0


def test_noeviction_memory_refusal_leaves_the_engine_as_it_was() -> None:
    e, _ = engine(max_memory=20000, eviction="noeviction")
    i = 0
    with pytest.raises(OutOfMemoryError):
        while True:
            e.set(f"k{i}", b"x" * 100)
            i += 1
    records = []
    e._observe(records.append)
    before = (contents(e), e.info()["used_memory"])
    for _ in range(3):
        with pytest.raises(OutOfMemoryError):
            e.set("new", b"x" * 100)
        with pytest.raises(OutOfMemoryError):
            e.mset([("k0", b"y" * 300), ("other", b"z")])
    e._observe(None)
    assert records == []
    assert (contents(e), e.info()["used_memory"]) == before
    assert e.get("k0") == b"x" * 100
    e.set("k0", b"short")                   # shrinking is never refused


# ------------------------------------------------------------- who goes

@pytest.mark.parametrize("policy", VOLATILE)
def test_volatile_policies_evict_only_keys_with_a_ttl(policy: str) -> None:
    e, _ = engine(max_keys=40, eviction=policy)
    for i in range(20):
        e.set(f"keep{i}", i)
    for i in range(400):
        e.set(f"t{i}", i, ttl=1000.0 + i)
    assert all(e.exists(f"keep{i}") for i in range(20))
    assert e.info()["evicted_keys"] == 380
    # With no key holding a ttl left, nothing is evictable.
    for i in range(400):
        e.delete(f"t{i}")
    for i in range(20, 40):
        e.set(f"keep{i}", i)
    with pytest.raises(OutOfMemoryError):
        e.set("one-more", 1)


def test_volatile_ttl_evicts_the_nearest_deadlines_first() -> None:
    e, _ = engine(max_keys=100, eviction="volatile-ttl")
    order = list(range(100))
    random.Random(3).shuffle(order)
    for i in order:
        e.set(f"t{i}", i, ttl=100.0 + i)
    for j in range(50):
        e.set(f"late{j}", j, ttl=10_000.0)
    left = sorted(int(k[1:]) for k in e.scan_iter("t*"))
    # Sampled (5 + the 16-entry pool), so near, not exact: the survivors are
    # the far deadlines.
    assert len(left) == 50
    assert sum(left) / len(left) > 62      # 74.5 exact, 49.5 at random
    assert all(e.exists(f"late{j}") for j in range(50))


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "allkeys-lfu", "s3fifo"])
def test_a_key_read_after_every_write_survives(policy: str) -> None:
    e, _ = engine(max_keys=100, eviction=policy)
    e.set("hot", 1, ttl=10_000.0)
    for i in range(3000):
        e.set(f"k{i}", i, ttl=10_000.0)
        assert e.get("hot") == 1


def hot_set_survivors(e: Engine, hot: int, reads: int, cold: int, every: int) -> int:
    """Write `hot` keys and read each `reads` times, then write `cold` keys
    once each, reading one hot key every `every` writes; hot keys left."""
    for i in range(hot):
        e.set(f"hot{i}", i)
    for _ in range(reads):
        for i in range(hot):
            e.get(f"hot{i}")
    for i in range(cold):
        e.set(f"cold{i}", i)
        if i % every == 0:
            e.get(f"hot{i % hot}")
    return sum(e.exists(f"hot{i}") for i in range(hot))


def test_lfu_keeps_the_frequently_read() -> None:
    e, _ = engine(max_keys=200, eviction="allkeys-lfu")
    assert hot_set_survivors(e, hot=20, reads=50, cold=2000, every=10) >= 19


def test_s3fifo_resists_a_scan() -> None:
    e, _ = engine(max_keys=500, eviction="s3fifo")
    assert hot_set_survivors(e, hot=300, reads=2, cold=5000, every=5) >= 270


def test_lru_prefers_the_idle() -> None:
    e, _ = engine(max_keys=200, eviction="allkeys-lru")
    for i in range(200):
        e.set(f"k{i}", i)
    for i in range(100, 200):
        e.get(f"k{i}")                     # the second half is recent
    for i in range(50):
        e.set(f"new{i}", i)
    survivors_old = sum(e.exists(f"k{i}") for i in range(100))
    survivors_recent = sum(e.exists(f"k{i}") for i in range(100, 200))
    assert survivors_recent >= 95 and survivors_old <= 60


def test_expired_keys_go_before_live_ones() -> None:
    e, clock = engine(max_keys=100, eviction="allkeys-random")
    for i in range(50):
        e.set(f"live{i}", i)
    for i in range(50):
        e.set(f"short{i}", i, ttl=1.0)
    clock.now += 2
    for i in range(50):
        e.set(f"new{i}", i)
    assert all(e.exists(f"live{i}") for i in range(50))
    assert e.info()["evicted_keys"] == 0 and e.info()["expired"] == 50


# ------------------------------------------------------------- on_evict

def test_on_evict_is_called_after_the_call_in_eviction_order() -> None:
    seen: list = []
    e, _ = engine(max_keys=3, eviction="allkeys-lru")

    def listener(key: bytes, reason: str) -> None:
        # After the call: the engine is usable and the key is gone already.
        seen.append((key, reason, e.exists(key), len(e)))

    e.configure(on_evict=listener)
    e.mset({"a": 1, "b": 2, "c": 3})
    e.get("a")
    e.get("c")
    e.set("d", 4)                          # evicts b, the idlest
    assert seen == [(b"b", "max_keys", False, 3)]
    ns = e.namespace("ns")
    ns.set("x", 1)
    e.set("e", 5)
    assert [s[0] for s in seen[1:]] and all(isinstance(s[0], bytes) for s in seen)
    assert len(seen) == 3
    e.configure(max_keys=None, max_memory=2000)
    for i in range(200):
        e.set(f"m{i}", b"x" * 50)
    assert {s[1] for s in seen[3:]} == {"max_memory"}
    assert len(seen) == e.info()["evicted_keys"]
    order = [s[0] for s in seen[3:]]
    assert len(set(order)) == len(order)


def test_on_evict_none_stops_it() -> None:
    seen: list = []
    e, _ = engine(max_keys=2, on_evict=lambda k, r: seen.append(k))
    e.mset({"a": 1, "b": 2})
    e.set("c", 3)
    e.configure(on_evict=None)
    e.set("d", 4)
    assert len(seen) == 1 and e.info()["evicted_keys"] == 2


# ------------------------------------------------------------- runtime

@pytest.mark.parametrize("policy", POLICIES)
def test_lowering_the_limit_evicts_down_in_bounded_steps(policy: str) -> None:
    e, _ = engine(eviction=policy)
    for i in range(5000):
        e.set(f"k{i}", b"x" * 40, ttl=1000.0)
    e.configure(max_keys=1000)
    assert len(e) == 5000                  # configure itself evicts nothing
    steps = 0
    while e.tick(0.0):                     # each step: one chunk of victims
        steps += 1
        assert len(e) >= 1000
    assert len(e) == 1000 and steps >= 4000 // 64 - 2
    used = e.info()["used_memory"]
    e.configure(max_keys=None, max_memory=used // 2)
    while e.tick(1.0):
        pass
    assert e.info()["used_memory"] <= used // 2
    e._check()


def test_writes_while_over_the_limit_do_not_grow_memory() -> None:
    e, _ = engine(eviction="allkeys-lru")
    for i in range(3000):
        e.set(f"k{i}", b"x" * 40)
    used = e.info()["used_memory"]
    e.configure(max_memory=used // 3)
    start = used
    for i in range(200):
        e.set(f"n{i}", b"x" * 40)
        # (a shrink started by the evictions holds both slot arrays a while)
        assert e.info()["used_memory"] <= start
    assert e.info()["used_memory"] < start * 0.7

def test_policy_switches_keep_the_table_consistent() -> None:
    e, _ = engine(max_keys=300)
    for policy in EVICTION_POLICIES[1:] + ("s3fifo", "allkeys-lfu", "s3fifo"):
        e.configure(eviction=policy)
        for i in range(400):
            e.set(f"{policy}{i}", i, ttl=100.0 + i)
            e.get(f"{policy}{i // 2}")
        e._check()
        assert len(e) <= 300
    e.configure(max_keys=None)
    assert e.info()["eviction_policy"] == "s3fifo"
    e.flush()
    e._check()


def test_hit_ratio() -> None:
    e, _ = engine()
    e.set("a", 1)
    e.get("a")
    e.get("a")
    e.get("b")
    assert e.info()["hit_ratio"] == pytest.approx(2 / 3)


# ------------------------------------------------------------- the server

@pytest.fixture
def limited_server():
    from tests.conftest import ServerProcess

    srv = ServerProcess("--max-keys", "5", "--max-memory", "64M")
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0


@pytest.mark.server
def test_server_defaults_to_noeviction_and_refuses_with_the_oom_kind(limited_server) -> None:
    import kvstore

    with kvstore.Client.connect(limited_server.address) as kv:
        assert kv.config_get() == {"max_memory": 64 * 1024 ** 2, "max_keys": 5,
                                   "eviction": "noeviction", "eviction_samples": 5}
        kv.mset({f"k{i}": i for i in range(4)})
        with pytest.raises(OutOfMemoryError):
            kv.mset({"k0": 10, "x": 1, "y": 2})          # all or nothing
        assert kv.mget(["k0", "x", "y"]) == [0, None, None]
        kv.set("k4", 4)
        for write in (lambda: kv.set("z", 1), lambda: kv.incr("z"), lambda: kv.setnx("z", 1)):
            with pytest.raises(OutOfMemoryError):
                write()
        assert kv.get("k1") == 1 and kv.expire("k1", 100) and kv.delete("k2")
        kv.set("z", 26)                                     # room again
        info = kv.info()
        assert (info["max_keys"], info["eviction_policy"], info["evicted_keys"]) == (
            5, "noeviction", 0)
        assert info["calls"]["CONFIG_GET"] == 1
        # At runtime: a policy, then a lower limit, evicted down by the
        # server's housekeeping.
        kv.config_set({"eviction": "allkeys-lru", "max_keys": 100})
        for i in range(50):
            kv.set(f"n{i}", i)
        kv.config_set({"max_keys": 10})
        import time

        give_up = time.monotonic() + 10
        while kv.info()["keys"] > 10 and time.monotonic() < give_up:
            time.sleep(0.02)
        assert kv.info()["keys"] <= 10
        assert kv.config_get()["eviction"] == "allkeys-lru"
        with pytest.raises(InvalidArgumentError):
            kv.config_set({"eviction": "sometimes"})
        with pytest.raises(InvalidArgumentError):
            kv.config_set({"maxmemory": 1})
        assert kv.config_get()["max_keys"] == 10
        assert kv.flush() >= 1
