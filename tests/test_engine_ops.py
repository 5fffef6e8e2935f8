"""Engine: the ops of issue 9 (persist, getdel, getset, delete_if_equal,
tick), the batch-argument rule, and the one mutation point.

The mutation test replays what Engine._observe reports onto a dict and checks
that the dict and the engine agree after every step: a change that bypassed
the mutation point would make them differ.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import kvstore
from kvstore import _codec
from kvstore.errors import InvalidArgumentError
from tests.conftest import FakeClock


# ----------------------------------------------------------------- new ops


def test_persist_drops_the_ttl(engine, clock):
    engine.set("k", 1, ttl=5)
    assert engine.persist("k") is True
    assert engine.ttl("k") is None
    clock.tick(10)
    assert engine.get("k") == 1
    assert engine.persist("k") is False        # no ttl left
    assert engine.persist("missing") is False
    engine._check()


def test_persist_of_an_expired_key_is_false(engine, clock):
    engine.set("k", 1, ttl=1)
    clock.tick(2)
    assert engine.persist("k") is False
    assert "k" not in engine


def test_getdel(engine):
    engine.set("k", [1, "two"])
    assert engine.getdel("k") == [1, "two"]
    assert "k" not in engine
    assert engine.getdel("k") is None
    assert engine.getdel("k", "gone") == "gone"
    engine._check()


def test_getset(engine, clock):
    assert engine.getset("k", 1) is None
    assert engine.getset("k", "two", ttl=5) == 1
    assert engine.get("k") == "two"
    assert engine.ttl("k") == 5.0
    assert engine.getset("k", 3) == "two"
    assert engine.ttl("k") is None             # like set(): no ttl clears the old one
    engine._check()


def test_delete_if_equal_compares_encodings(engine):
    engine.set("k", 1)
    assert engine.delete_if_equal("k", True) is False   # 1 is not True
    assert engine.delete_if_equal("k", 2) is False
    assert engine.delete_if_equal("k", 1) is True
    assert "k" not in engine
    assert engine.delete_if_equal("k", 1) is False


def test_namespaced_ops_use_the_prefix(engine):
    view = engine.namespace("ns")
    view.set("k", 1, ttl=5)
    assert view.persist("k") and engine.ttl("ns:k") is None
    assert view.getset("k", 2) == 1 and engine.get("ns:k") == 2
    assert view.delete_if_equal("k", 2) and "ns:k" not in engine
    engine.set("ns:j", 3)
    assert view.getdel("j") == 3 and "ns:j" not in engine


@pytest.mark.parametrize("call", [
    lambda e: e.getset("k", {1}),
    lambda e: e.getset("", 1),
    lambda e: e.getset("k", 1, ttl=-1),
    lambda e: e.delete_if_equal("k", {1}),
    lambda e: e.getdel(3),
    lambda e: e.persist(b""),
])
def test_refused_ops_change_nothing(engine, call):
    engine.set("k", 1, ttl=5)
    before = (engine.get("k"), engine.ttl("k"), engine.info()["memory_bytes"])
    with pytest.raises(kvstore.KvError):
        call(engine)
    assert (engine.get("k"), engine.ttl("k"), engine.info()["memory_bytes"]) == before


def test_tick_reports_pending_work(engine, clock):
    assert engine.tick() is False
    engine.mset({b"t%d" % i: i for i in range(5000)}, ttl=1)
    clock.tick(2)
    assert engine.tick(0.0) is True          # a zero budget does one chunk only
    while engine.tick(50.0):
        pass
    assert len(engine) == 0
    with pytest.raises(InvalidArgumentError):
        engine.tick(-1)
    assert not hasattr(engine, "expiry_backlog")


# ----------------------------------------------------------------- batch rule


@pytest.mark.parametrize("keys", ["abc", b"ab", bytearray(b"ab"), memoryview(b"ab")])
def test_batch_calls_refuse_a_single_key(engine, keys):
    for call in (engine.mget, engine.mdel, engine.mexists):
        with pytest.raises(InvalidArgumentError, match="not a single"):
            call(keys)


@pytest.mark.parametrize("keys", [3, None, 1.5])
def test_batch_calls_refuse_a_non_collection(engine, keys):
    with pytest.raises(InvalidArgumentError, match="collection of keys"):
        engine.mget(keys)


def test_batch_calls_take_any_iterable_of_keys(engine):
    engine.mset({"a": 1, "b": 2})
    assert engine.mget(("a", "b")) == [1, 2]
    assert engine.mget(k for k in "ab") == [1, 2]
    assert engine.mexists({"a": None, "z": None}) == [True, False]
    assert engine.mdel(iter(["a", "b"])) == 2


def test_mset_takes_what_dict_update_takes(engine):
    class Items:
        def items(self):
            return [("a", 1)]

    engine.mset(Items())
    engine.mset([("b", 2), ["c", 3]])
    engine.mset(iter([("d", 4)]))
    assert engine.mget(["a", "b", "c", "d"]) == [1, 2, 3, 4]
    for bad in ("ab", [("a", 1, 2)], [3], [b"ab"], 7):
        with pytest.raises(InvalidArgumentError):
            engine.mset(bad)


def test_codec_batch_helpers_are_the_rule():
    keys = ["a"]
    assert _codec.batch_keys(keys) is keys
    assert _codec.batch_items({"a": 1}) == [("a", 1)]
    assert _codec.batch_items([["a", 1]]) == [("a", 1)]
    with pytest.raises(InvalidArgumentError):
        _codec.batch_keys("a")


# ----------------------------------------------------------------- the mutation point


def test_observer_records(engine, clock):
    log = []
    engine._observe(log.append)
    now = 1000 * 1000
    engine.set("k", 1, ttl=2)
    engine.incr("n", 5)
    engine.expire("n", 1)
    engine.persist("n")
    engine.mset({"x": 1, "y": 2})
    engine.mdel(["x", "missing"])
    engine.namespace("ns").flush()
    engine.delete("y")
    clock.tick(3)
    engine.get("k")                     # lazy reclaim, delivered by the next call
    engine.flush()
    engine._observe(None)
    enc = _codec.encode
    assert log == [
        ("store", b"k", enc(1), now + 2000),
        ("incr", b"n", enc(5)),
        ("expire", b"n", now + 1000),
        ("persist", b"n"),
        ("batch", (("store", b"x", enc(1), None), ("store", b"y", enc(2), None))),
        ("batch", (("remove", b"x"),)),
        ("flush", b"ns:"),
        ("remove", b"y"),
        ("reclaim", b"k", now + 2000),
        ("flush", b""),
    ]


def test_observer_is_not_called_inside_a_table_operation(engine):
    calls = []

    def observer(record):
        # Re-entering the engine from the observer must be safe.
        calls.append((record, len(engine)))

    engine._observe(observer)
    engine.set("a", 1)
    engine.set("b", 2)
    assert [c[0][1] for c in calls] == [b"a", b"b"]
    engine._observe(None)


keys = st.sampled_from([b"a", b"b", b"ns:a", b"ns:b", b"c"])
small_ints = st.integers(-3, 3)


class MutationReplay(RuleBasedStateMachine):
    """Every path that changes the engine, against a dict rebuilt ONLY from
    the observed mutation records."""

    def __init__(self):
        super().__init__()
        self.clock = FakeClock()
        self.engine = kvstore.Engine(clock=self.clock)
        self.view = self.engine.namespace("ns")
        self.replayed = {}      # key -> (encoding, deadline ms or None)
        self.engine._observe(self.apply)

    def apply(self, record):
        kind = record[0]
        if kind == "batch":
            for inner in record[1]:
                self.apply(inner)
        elif kind == "store":
            self.replayed[record[1]] = (record[2], record[3])
        elif kind in ("remove", "reclaim"):
            assert record[1] in self.replayed, record
            del self.replayed[record[1]]
        elif kind == "expire":
            self.replayed[record[1]] = (self.replayed[record[1]][0], record[2])
        elif kind == "persist":
            self.replayed[record[1]] = (self.replayed[record[1]][0], None)
        elif kind == "incr":
            old = self.replayed.get(record[1], (None, None))
            self.replayed[record[1]] = (record[2], old[1])
        elif kind == "flush":
            prefix = record[1]
            for key in [k for k in self.replayed if k.startswith(prefix) and len(k) > len(prefix)]:
                del self.replayed[key]
            if not prefix:
                self.replayed.clear()
        else:
            raise AssertionError(f"unknown record {record!r}")

    @rule(key=keys, value=small_ints, ttl=st.sampled_from([None, 0.5, 2]))
    def set(self, key, value, ttl):
        self.engine.set(key, value, ttl=ttl)

    @rule(key=keys, value=small_ints)
    def setnx_cas(self, key, value):
        self.engine.setnx(key, value)
        self.engine.cas(key, value, value + 1)

    @rule(key=keys)
    def delete(self, key):
        self.engine.delete(key)

    @rule(key=keys, delta=small_ints)
    def incr(self, key, delta):
        try:
            self.engine.incr(key, delta)
        except kvstore.KvError:
            pass

    @rule(key=keys, ttl=st.sampled_from([0.5, 2]))
    def expire(self, key, ttl):
        self.engine.expire(key, ttl)

    @rule(key=keys)
    def persist(self, key):
        self.engine.persist(key)

    @rule(key=keys, value=small_ints)
    def getset_getdel(self, key, value):
        self.engine.getset(key, value)
        self.engine.getdel(key if value % 2 else b"c")

    @rule(key=keys, value=small_ints)
    def delete_if_equal(self, key, value):
        self.engine.delete_if_equal(key, value)

    @rule(pairs=st.dictionaries(keys, small_ints, max_size=3), ttl=st.sampled_from([None, 1]))
    def mset(self, pairs, ttl):
        self.engine.mset(pairs, ttl=ttl)

    @rule(batch=st.lists(keys, max_size=3))
    def mdel(self, batch):
        self.engine.mdel(batch)

    @rule()
    def ns_flush(self):
        self.view.flush()

    @rule()
    def flush_rarely(self):
        if self.clock.now % 7 == 0:
            self.engine.flush()

    @rule(seconds=st.sampled_from([0.25, 1, 3]))
    def time_passes(self, seconds):
        self.clock.tick(seconds)
        self.engine.tick(1.0)

    @rule(n=st.integers(0, 300))
    def bulk(self, n):
        self.engine.mset({b"bulk-%d" % i: i for i in range(n)})
        self.engine.mdel([b"bulk-%d" % i for i in range(n)])

    @invariant()
    def replay_matches_engine(self):
        self.engine.exists(b"-")        # deliver everything recorded so far
        now = round(self.clock.now * 1000)
        live = {k: v for k, (v, d) in self.replayed.items() if d is None or d > now}
        assert sorted(self.engine.scan_iter(count=1000)) == sorted(live)
        for key, encoding in live.items():
            assert _codec.encode(self.engine.get(key)) == encoding

    def teardown(self):
        self.engine._observe(None)


MutationReplay.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
test_every_change_passes_the_mutation_point = MutationReplay.TestCase
