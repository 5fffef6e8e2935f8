"""The Engine against a plain dict model, driven by hypothesis.

The model is {key bytes: (value, deadline ms or None)}; the FakeClock moves in
multiples of 1/8 s so model time (integer ms) and engine time agree exactly.
A few keys only, so the same slots are hit over and over, plus a bulk rule
that forces the table to grow and shrink.
"""

from __future__ import annotations

import decimal
import math
import struct

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import kvstore
from kvstore.errors import IntegerOverflowError, UnsupportedValueError, WrongTypeError
from tests.conftest import FakeClock
from tests.strategies import INT64_MAX, INT64_MIN, small_keys, same_value, values

NS = "ns"
NS_PREFIX = b"ns:"


def in_namespace(key: bytes) -> bool:
    # The root key b"ns:" itself is no key of the view (the view cannot name
    # it: its key would be empty), so len(), flush() and scan() leave it out.
    return key.startswith(NS_PREFIX) and len(key) > len(NS_PREFIX)


DAY = 86400

# Keys for the root engine: the shared small alphabet plus keys a namespace
# view also reaches, so the two paths to one entry get mixed.
root_keys = st.one_of(small_keys, st.sampled_from([b"ns:a", "ns:c", b"ns:", "ns"]))

# ttls whose millisecond value is exact: eighths of a second, 1 ms, and one
# that must round up to 1 ms.
ttls = st.sampled_from([0.0001, 0.001, 0.125, 0.25, 0.5, 1, 1.5, 2, 10, 60, 3600, DAY])
optional_ttls = st.one_of(st.none(), ttls)
ticks = st.sampled_from([0.125, 0.25, 0.5, 1, 1.125, 2, 10, 60, 3600, DAY, 400 * DAY])
counters = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([INT64_MAX, INT64_MAX - 1, INT64_MIN, INT64_MIN + 1]),
    st.integers(INT64_MIN, INT64_MAX),
)
deltas = st.one_of(st.integers(-3, 3), st.sampled_from([INT64_MAX, INT64_MIN + 1, 2**62]))
unsupported = st.sampled_from([{1}, object(), 2**63, {1: 2}, [1, {2}]])


def key_bytes(key) -> bytes:
    return key.encode() if isinstance(key, str) else key


def ttl_ms(ttl) -> int:
    return math.ceil(ttl * 1000)


def encoding_identity(value):
    """A comparable stand-in for the wire encoding: what cas compares."""
    if value is None or isinstance(value, (str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", struct.pack(">d", value))
    if isinstance(value, decimal.Decimal):
        return ("decimal", str(value))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(encoding_identity(v) for v in value))
    if isinstance(value, dict):
        return ("map", tuple((k, encoding_identity(v)) for k, v in value.items()))
    raise AssertionError(f"not a storable value: {value!r}")


def as_stored(value):
    """The value as get() gives it back: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [as_stored(v) for v in value]
    if isinstance(value, dict):
        return {k: as_stored(v) for k, v in value.items()}
    return value


class EngineMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.clock = FakeClock()
        self.engine = kvstore.Engine(clock=self.clock)
        self.view = self.engine.namespace(NS)
        self.empty_memory = self.engine.info()["memory_bytes"]
        self.model: dict[bytes, tuple[object, int | None]] = {}
        self.bulk_round = 0

    # ------------------------------------------------------------ model helpers

    def now_ms(self) -> int:
        return round(self.clock.now * 1000)

    def live(self, key: bytes):
        """(value, deadline) for a live key, else None; drops expired ones."""
        entry = self.model.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= self.now_ms():
            del self.model[key]
            return None
        return entry

    def live_keys(self):
        return [k for k in list(self.model) if self.live(k) is not None]

    def store(self, key: bytes, value, ttl) -> None:
        deadline = None if ttl is None else self.now_ms() + ttl_ms(ttl)
        self.model[key] = (as_stored(value), deadline)

    def expect_value(self, got, key: bytes, default=None):
        entry = self.live(key)
        expected = default if entry is None else entry[0]
        assert same_value(got, expected), (key, got, expected)

    # ------------------------------------------------------------ single-key rules

    @rule(key=root_keys, value=values, ttl=optional_ttls)
    def set(self, key, value, ttl):
        assert self.engine.set(key, value, ttl=ttl) is None
        self.store(key_bytes(key), value, ttl)

    @rule(key=root_keys, value=counters, ttl=optional_ttls)
    def set_counter(self, key, value, ttl):
        self.engine.set(key, value, ttl=ttl)
        self.store(key_bytes(key), value, ttl)

    @rule(key=root_keys, value=unsupported)
    def set_unsupported(self, key, value):
        with pytest.raises(UnsupportedValueError):
            self.engine.set(key, value)

    @rule(key=root_keys)
    def get(self, key):
        self.expect_value(self.engine.get(key, "<default>"), key_bytes(key), "<default>")

    @rule(key=root_keys)
    def delete(self, key):
        existed = self.live(key_bytes(key)) is not None
        assert self.engine.delete(key) is existed
        self.model.pop(key_bytes(key), None)

    @rule(key=root_keys)
    def exists(self, key):
        expected = self.live(key_bytes(key)) is not None
        assert self.engine.exists(key) is expected
        assert (key in self.engine) is expected

    @rule(key=root_keys, delta=deltas, decrement=st.booleans())
    def incr_or_decr(self, key, delta, decrement):
        kb = key_bytes(key)
        entry = self.live(kb)
        start, deadline = (0, None) if entry is None else entry
        call = self.engine.decr if decrement else self.engine.incr
        if type(start) is not int:
            with pytest.raises(WrongTypeError):
                call(key, delta)
            return
        result = start - delta if decrement else start + delta
        if not INT64_MIN <= result <= INT64_MAX:
            with pytest.raises(IntegerOverflowError):
                call(key, delta)
            return
        assert call(key, delta) == result
        self.model[kb] = (result, deadline)

    @rule(key=root_keys, value=values, ttl=optional_ttls)
    def setnx(self, key, value, ttl):
        kb = key_bytes(key)
        missing = self.live(kb) is None
        assert self.engine.setnx(key, value, ttl=ttl) is missing
        if missing:
            self.store(kb, value, ttl)

    @rule(key=root_keys, data=st.data(), new=values, ttl=optional_ttls)
    def cas(self, key, data, new, ttl):
        kb = key_bytes(key)
        entry = self.live(kb)
        if entry is not None and data.draw(st.booleans(), label="expect current"):
            expected = entry[0]
        else:
            expected = data.draw(values, label="expected")
        swap = entry is not None and encoding_identity(expected) == encoding_identity(entry[0])
        assert self.engine.cas(key, expected, new, ttl=ttl) is swap
        if swap:
            self.store(kb, new, ttl)

    @rule(key=root_keys, ttl=ttls)
    def expire(self, key, ttl):
        kb = key_bytes(key)
        entry = self.live(kb)
        assert self.engine.expire(key, ttl) is (entry is not None)
        if entry is not None:
            self.store(kb, entry[0], ttl)

    @rule(key=root_keys)
    def ttl(self, key):
        entry = self.live(key_bytes(key))
        got = self.engine.ttl(key)
        if entry is None or entry[1] is None:
            assert got is None
        else:
            assert got == pytest.approx((entry[1] - self.now_ms()) / 1000, abs=1e-9)

    # ------------------------------------------------------------ batch rules

    @rule(keys=st.lists(root_keys, max_size=6))
    def mget(self, keys):
        got = self.engine.mget(keys)
        assert len(got) == len(keys)
        for key, value in zip(keys, got):
            self.expect_value(value, key_bytes(key))

    @rule(pairs=st.lists(st.tuples(root_keys, values), max_size=5), ttl=optional_ttls,
          as_mapping=st.booleans())
    def mset(self, pairs, ttl, as_mapping):
        batch = dict(pairs) if as_mapping else pairs
        assert self.engine.mset(batch, ttl=ttl) is None
        for key, value in (batch.items() if as_mapping else pairs):
            self.store(key_bytes(key), value, ttl)

    @rule(pairs=st.lists(st.tuples(root_keys, values), min_size=1, max_size=4),
          bad=unsupported, where=st.integers(0, 4))
    def mset_with_a_bad_value_writes_nothing(self, pairs, bad, where):
        pairs = list(pairs)
        pairs.insert(min(where, len(pairs)), (b"bad-value-key", bad))
        with pytest.raises(UnsupportedValueError):
            self.engine.mset(pairs)

    @rule(keys=st.lists(root_keys, max_size=6))
    def mdel(self, keys):
        expected = 0
        for key in keys:
            if self.live(key_bytes(key)) is not None:
                expected += 1
                del self.model[key_bytes(key)]
        assert self.engine.mdel(keys) == expected

    @rule(keys=st.lists(root_keys, max_size=6))
    def mexists(self, keys):
        assert self.engine.mexists(keys) == [self.live(key_bytes(k)) is not None for k in keys]

    @rule()
    def flush(self):
        assert self.engine.flush() == len(self.live_keys())
        self.model.clear()
        assert len(self.engine) == 0
        assert self.engine.info()["memory_bytes"] == self.empty_memory

    # ------------------------------------------------------------ namespace rules

    @rule(key=small_keys, value=values, ttl=optional_ttls)
    def ns_set(self, key, value, ttl):
        self.view.set(key, value, ttl=ttl)
        self.store(NS_PREFIX + key_bytes(key), value, ttl)

    @rule(key=small_keys)
    def ns_get(self, key):
        self.expect_value(self.view.get(key), NS_PREFIX + key_bytes(key))

    @rule(key=small_keys)
    def ns_delete(self, key):
        kb = NS_PREFIX + key_bytes(key)
        assert self.view.delete(key) is (self.live(kb) is not None)
        self.model.pop(kb, None)

    @rule(key=small_keys, delta=deltas)
    def ns_incr(self, key, delta):
        kb = NS_PREFIX + key_bytes(key)
        entry = self.live(kb)
        start, deadline = (0, None) if entry is None else entry
        if type(start) is not int:
            with pytest.raises(WrongTypeError):
                self.view.incr(key, delta)
        elif not INT64_MIN <= start + delta <= INT64_MAX:
            with pytest.raises(IntegerOverflowError):
                self.view.incr(key, delta)
        else:
            assert self.view.incr(key, delta) == start + delta
            self.model[kb] = (start + delta, deadline)

    @rule(pairs=st.lists(st.tuples(small_keys, values), max_size=4), ttl=optional_ttls)
    def ns_mset(self, pairs, ttl):
        self.view.mset(pairs, ttl=ttl)
        for key, value in pairs:
            self.store(NS_PREFIX + key_bytes(key), value, ttl)

    @rule(keys=st.lists(small_keys, max_size=5))
    def ns_mget(self, keys):
        for key, value in zip(keys, self.view.mget(keys), strict=True):
            self.expect_value(value, NS_PREFIX + key_bytes(key))

    @rule()
    def ns_len(self):
        assert len(self.view) == sum(1 for k in self.live_keys() if in_namespace(k))

    @rule()
    def ns_flush(self):
        mine = [k for k in self.live_keys() if in_namespace(k)]
        assert self.view.flush() == len(mine)
        for key in mine:
            del self.model[key]

    # ------------------------------------------------------------ time and size

    @rule(seconds=ticks)
    def tick(self, seconds):
        self.clock.tick(seconds)

    @rule(seconds=ticks, key=root_keys)
    def tick_then_get(self, seconds, key):
        # One bounded expiry step, validated before len() (in the invariant)
        # can finish the work: catches states that exist only mid-backlog.
        self.clock.tick(seconds)
        self.get(key)
        self.check_structure()

    @rule()
    def purge_expired(self):
        before = self.engine.info()["expired"]
        assert self.engine.purge_expired() >= 0
        assert self.engine.info()["expired"] >= before

    @rule(count=st.integers(50, 400), ttl=optional_ttls)
    def insert_many(self, count, ttl):
        # Distinct keys per round: the table must grow, then shrink on delete.
        self.bulk_round += 1
        batch = {b"bulk-%d-%d" % (self.bulk_round, i): i for i in range(count)}
        self.engine.mset(batch, ttl=ttl)
        for key, value in batch.items():
            self.store(key, value, ttl)

    @precondition(lambda self: any(k.startswith(b"bulk-") for k in self.model))
    @rule(fraction=st.sampled_from([0.5, 1.0]))
    def delete_many(self, fraction):
        bulk = [k for k in self.model if k.startswith(b"bulk-")]
        doomed = bulk[: max(1, int(len(bulk) * fraction))]
        expected = sum(1 for k in doomed if self.live(k) is not None)
        assert self.engine.mdel(doomed) == expected
        for key in doomed:
            self.model.pop(key, None)

    # ------------------------------------------------------------ invariants

    def check_structure(self):
        check = getattr(self.engine, "_check", None)
        if check is not None:
            check()

    @invariant()
    def structure_is_valid_and_len_counts_live_keys(self):
        # The validator first: len() does expiry work of its own and would
        # tidy up the state a rule left behind before anyone looked at it.
        self.check_structure()
        assert len(self.engine) == len(self.live_keys())


EngineMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_engine_matches_dict_model = EngineMachine.TestCase
