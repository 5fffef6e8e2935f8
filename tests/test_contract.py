"""The API contract, written once and run on Engine, Client, AsyncClient,
Pool and AsyncPool.

Each test gets ``kv``: a namespace of an Engine, or a Client / AsyncClient /
Pool / AsyncPool connected to the ``server`` fixture with that namespace in
its URL (the async ones driven through looputil.Blocking, AsyncClient on
asyncio and on uvloop). The same call must give the same result, and a bad
call the same KvError subclass, from all of them (cachetools'
CacheTestMixin and uvloop's _TestTCP are the model). ``len`` and ``in`` are
checked through count_of/contains, since an async store can only offer them
as coroutines (count(), exists()). Engine-only behaviour (memory
accounting, expiry with a fake clock) is test_engine's.
"""

from __future__ import annotations

import decimal
import math

import pytest
from hypothesis import HealthCheck, given, settings

import kvstore
from kvstore.errors import (
    IntegerOverflowError,
    InvalidArgumentError,
    InvalidKeyError,
    KvError,
    UnsupportedValueError,
    WrongTypeError,
)
from tests.looputil import CLIENT_KINDS, Blocking, client_factory, guarded_loop
from tests.strategies import INT64_MAX, INT64_MIN, same_value, values

MAX_KEY = 65535
BIG_BATCH = 70_000   # more keys than one frame carries (65,535)


@pytest.fixture(params=["engine", *CLIENT_KINDS, "pool", "async-pool"])
def open_store(request):
    """namespace -> a store with the Engine API; every namespace of one test
    lives in the same backing store."""
    if request.param == "engine":
        engine = kvstore.Engine()
        yield engine.namespace
        return
    server = request.getfixturevalue("server")
    if request.param == "pool":
        pools: list = []
        try:
            yield lambda namespace: pools.append(kvstore.Pool(server.url(namespace))) or pools[-1]
        finally:
            for pool in pools:
                pool.flush()
                pool.close()
        return
    if request.param == "async-pool":
        with guarded_loop() as event_loop:
            apools: list = []
            try:
                yield lambda namespace: apools.append(
                    kvstore.AsyncPool(server.url(namespace))) or Blocking(apools[-1], event_loop)
            finally:
                for apool in apools:
                    event_loop.run_until_complete(apool.flush())
                    event_loop.run_until_complete(apool.close())
        return
    with client_factory(request.param, flush=True) as connect:
        yield lambda namespace: connect(server.url(namespace))


@pytest.fixture
def kv(open_store, namespace):
    return open_store(namespace)


# ---------------------------------------------------------------- values and keys


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_value_round_trips_exactly(kv, value):
    kv.set("v", value)
    assert same_value(kv.get("v"), _stored_form(value))


def _stored_form(value):
    # Tuples are stored as lists, at any depth.
    if isinstance(value, (list, tuple)):
        return [_stored_form(v) for v in value]
    if isinstance(value, dict):
        return {k: _stored_form(v) for k, v in value.items()}
    return value


def test_scalar_types_are_kept(kv):
    stored = {"t": True, "i": 1, "f": 1.0, "d": decimal.Decimal("1.10"), "s": "1", "b": b"1",
              "n": None, "neg0": -0.0, "nan": math.nan, "big": INT64_MAX, "small": INT64_MIN}
    kv.mset(stored)
    for key, value in stored.items():
        assert same_value(kv.get(key), value), key


def test_get_of_missing_key_returns_the_default(kv):
    assert kv.get("missing") is None
    assert kv.get("missing", "fallback") == "fallback"


def test_get_of_stored_none_is_none_not_the_default(kv):
    kv.set("none", None)
    assert kv.get("none", "fallback") is None
    assert kv.exists("none") is True


def test_str_key_and_its_utf8_bytes_are_one_key(kv):
    kv.set("\u00e9", 1)
    assert kv.get(b"\xc3\xa9") == 1
    assert kv.delete(b"\xc3\xa9") is True
    assert kv.exists("\u00e9") is False


@pytest.mark.parametrize(
    "bad_key", [b"", "", 1, None, ["a"], "\ud800"],
    ids=["empty-bytes", "empty-str", "int", "None", "list", "lone-surrogate"])
def test_invalid_key_raises_invalid_key_error_from_every_call(kv, bad_key):
    kv.set("keep", "me")
    calls = [
        lambda: kv.set(bad_key, 1), lambda: kv.get(bad_key), lambda: kv.delete(bad_key),
        lambda: kv.exists(bad_key), lambda: kv.incr(bad_key), lambda: kv.decr(bad_key),
        lambda: kv.setnx(bad_key, 1), lambda: kv.cas(bad_key, 1, 2),
        lambda: kv.expire(bad_key, 10), lambda: kv.ttl(bad_key),
        lambda: kv.mget(["keep", bad_key]), lambda: kv.mset([("keep", 2), (bad_key, 1)]),
        lambda: kv.mdel(["keep", bad_key]), lambda: kv.mexists(["keep", bad_key]),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert kv.get("keep") == "me"


def test_namespace_prefix_counts_toward_the_key_limit(kv, namespace):
    room = MAX_KEY - len(namespace.encode()) - 1
    kv.set(b"k" * room, "fits")
    assert kv.get(b"k" * room) == "fits"
    with pytest.raises(InvalidKeyError):
        kv.set(b"k" * (room + 1), "one byte too long")
    with pytest.raises(InvalidKeyError):
        kv.mset({"ok": 1, b"k" * (room + 1): 1})
    assert kv.exists("ok") is False


@pytest.mark.parametrize(
    "bad_value", [object(), 2**63, {1: "int key"}, [1, {2}], 1j],
    ids=["object", "2**63", "dict-int-key", "set-in-list", "complex"])
def test_unsupported_value_raises_and_stores_nothing(kv, bad_value):
    kv.set("old", "kept")
    for call in (lambda: kv.set("new", bad_value), lambda: kv.set("old", bad_value),
                 lambda: kv.setnx("new", bad_value), lambda: kv.cas("old", "kept", bad_value),
                 lambda: kv.mset({"new": 1, "old": bad_value})):
        with pytest.raises(UnsupportedValueError):
            call()
    assert kv.mget(["old", "new"]) == ["kept", None]


# ---------------------------------------------------------------- single-key calls


def test_delete_and_exists_report_whether_the_key_existed(kv):
    kv.set("k", 0)
    assert kv.exists("k") is True
    assert kv.delete("k") is True
    assert kv.delete("k") is False
    assert kv.exists("k") is False


def test_incr_and_decr(kv):
    assert kv.incr("n") == 1
    assert kv.incr("n", 10) == 11
    assert kv.decr("n") == 10
    assert kv.decr("n", -5) == 15
    assert kv.decr("fresh", 3) == -3
    assert kv.get("n") == 15


def test_incr_reaches_the_int64_bounds_and_refuses_to_pass_them(kv):
    kv.set("hi", INT64_MAX - 1)
    assert kv.incr("hi") == INT64_MAX
    with pytest.raises(IntegerOverflowError):
        kv.incr("hi")
    assert kv.get("hi") == INT64_MAX
    kv.set("lo", INT64_MIN + 1)
    assert kv.decr("lo") == INT64_MIN
    with pytest.raises(IntegerOverflowError):
        kv.decr("lo")
    assert kv.get("lo") == INT64_MIN


@pytest.mark.parametrize("stored", ["1", 1.0, True, None, [1], b"1"], ids=repr)
def test_incr_of_a_non_int_raises_wrong_type_and_keeps_the_value(kv, stored):
    kv.set("k", stored)
    with pytest.raises(WrongTypeError):
        kv.incr("k")
    with pytest.raises(WrongTypeError):
        kv.decr("k", 2)
    assert same_value(kv.get("k"), stored)


@pytest.mark.parametrize("delta", [2**63, 1.5, "1", None], ids=repr)
def test_bad_delta_raises_invalid_argument(kv, delta):
    with pytest.raises(InvalidArgumentError):
        kv.incr("n", delta)
    assert kv.exists("n") is False


def test_setnx_stores_only_when_missing(kv):
    assert kv.setnx("k", "first") is True
    assert kv.setnx("k", "second") is False
    assert kv.get("k") == "first"


def test_cas_swaps_only_on_an_exact_match(kv):
    kv.set("k", 1)
    assert kv.cas("k", True, "no") is False      # bool is not int
    assert kv.cas("k", 1.0, "no") is False       # nor is float
    assert kv.cas("k", 1, "yes") is True
    assert kv.get("k") == "yes"
    assert kv.cas("missing", None, 1) is False
    assert kv.exists("missing") is False


def test_ttl_expire_and_persistence(kv):
    kv.set("forever", 1)
    assert kv.ttl("forever") is None
    assert kv.ttl("missing") is None
    kv.set("brief", 1, ttl=1000)
    assert 990 < kv.ttl("brief") <= 1000
    assert kv.expire("forever", 50) is True
    assert 40 < kv.ttl("forever") <= 50
    assert kv.expire("missing", 10) is False
    kv.set("brief", 2)                            # set without ttl makes it persistent
    assert kv.ttl("brief") is None


def test_ttl_has_millisecond_precision(kv):
    kv.set("k", 1, ttl=100.25)
    remaining = kv.ttl("k")
    assert 99 < remaining <= 100.25
    assert remaining * 1000 == pytest.approx(round(remaining * 1000), abs=1e-6)


@pytest.mark.parametrize("ttl", [0, -1, "10", math.nan, math.inf], ids=repr)
def test_bad_ttl_raises_invalid_argument_and_changes_nothing(kv, ttl):
    kv.set("k", "kept")
    for call in (lambda: kv.set("k", 1, ttl=ttl), lambda: kv.setnx("new", 1, ttl=ttl),
                 lambda: kv.expire("k", ttl), lambda: kv.mset({"k": 1}, ttl=ttl),
                 lambda: kv.cas("k", "kept", 1, ttl=ttl)):
        with pytest.raises(InvalidArgumentError):
            call()
    assert kv.get("k") == "kept"
    assert kv.ttl("k") is None
    assert kv.exists("new") is False


def test_expire_requires_a_ttl(kv):
    kv.set("k", 1)
    with pytest.raises(InvalidArgumentError):
        kv.expire("k", None)


# ---------------------------------------------------------------- batches


def test_mget_mset_mdel_mexists(kv):
    kv.mset({"a": 1, "b": [2]})
    kv.mset([("c", "3"), (b"d", None)], ttl=100)
    assert kv.mget(["a", "b", "missing", "c", "d"]) == [1, [2], None, "3", None]
    assert kv.mget(iter(("a", "b"))) == [1, [2]]
    assert kv.mexists(["a", "missing", "d"]) == [True, False, True]
    assert 90 < kv.ttl("c") <= 100
    assert kv.mdel(["a", "missing", b"b", "a"]) == 2
    assert kv.mget(["a", "b", "c"]) == [None, None, "3"]


def test_empty_batches(kv):
    assert kv.mget([]) == []
    assert kv.mexists([]) == []
    assert kv.mdel([]) == 0
    assert kv.mset({}) is None


def test_mset_later_pair_of_the_same_key_wins(kv):
    kv.mset([("k", 1), ("k", 2)])
    assert kv.get("k") == 2


@pytest.mark.parametrize(
    "batch",
    [[("a", 10), (b"", 1), ("b", 20)], [("a", 10), ("x", {1}), ("b", 20)],
     [("a", 10), ("b", 20), ("x", [1, object()])]],
    ids=["empty-key", "set-value", "last-bad"])
def test_mset_is_all_or_nothing(kv, batch):
    kv.mset({"a": 1, "b": 2})
    with pytest.raises((InvalidKeyError, UnsupportedValueError)):
        kv.mset(batch)
    assert kv.mget(["a", "b", "x"]) == [1, 2, None]


def test_batch_larger_than_one_frame(kv):
    keys = [f"k{i}" for i in range(BIG_BATCH)]
    kv.mset({key: i for i, key in enumerate(keys)})
    values = kv.mget(keys)
    assert len(values) == BIG_BATCH
    assert values == list(range(BIG_BATCH))
    assert kv.mexists(keys[-3:] + ["missing"]) == [True, True, True, False]
    assert sum(kv.mexists(keys)) == BIG_BATCH
    assert kv.mdel(keys + ["missing"]) == BIG_BATCH
    assert kv.mget([keys[0], keys[-1]]) == [None, None]


def test_bad_item_at_the_end_of_a_split_batch_writes_nothing(kv):
    batch = [(f"k{i}", i) for i in range(BIG_BATCH)] + [("bad", object())]
    with pytest.raises(UnsupportedValueError):
        kv.mset(batch)
    assert kv.mexists(["k0", f"k{BIG_BATCH - 1}"]) == [False, False]


# ---------------------------------------------------------------- namespaces


def test_two_namespaces_are_isolated_and_flush_only_their_own(open_store, namespace):
    one, two = open_store(namespace + "-one"), open_store(namespace + "-two")
    one.mset({"k": 1, "only-one": 1})
    two.set("k", 2)
    assert one.get("k") == 1 and two.get("k") == 2
    assert two.exists("only-one") is False
    assert one.delete("k") is True
    assert two.get("k") == 2
    assert one.flush() == 1
    assert two.get("k") == 2
    assert two.flush() == 1


def test_a_namespace_is_a_plain_key_prefix(open_store, namespace):
    # "ns" + key "a:b" and "ns:a" + key "b" are the same key, as with
    # Engine.namespace(); "ns-x" shares nothing with "ns".
    outer, nested, sibling = (open_store(namespace), open_store(namespace + ":a"),
                              open_store(namespace + "-x"))
    outer.set("a:b", 1)
    assert nested.get("b") == 1
    assert sibling.get("a:b") is None
    assert nested.flush() == 1
    assert outer.exists("a:b") is False


# ---------------------------------------------------------------- errors


ERROR_CASES = [
    ("incr-of-str", lambda kv: (kv.set("s", "x"), kv.incr("s")), WrongTypeError),
    ("overflow", lambda kv: (kv.set("n", INT64_MAX), kv.incr("n")), IntegerOverflowError),
    ("empty-key", lambda kv: kv.get(""), InvalidKeyError),
    ("set-value", lambda kv: kv.set("k", {1}), UnsupportedValueError),
    ("zero-ttl", lambda kv: kv.set("k", 1, ttl=0), InvalidArgumentError),
    ("float-delta", lambda kv: kv.incr("k", 0.5), InvalidArgumentError),
]


@pytest.mark.parametrize("case, expected", [(c[1], c[2]) for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_every_implementation_raises_the_same_error_class(kv, case, expected):
    with pytest.raises(KvError) as caught:
        case(kv)
    assert type(caught.value) is expected
    assert str(caught.value)


def test_info_reports_the_engine_figures(kv):
    kv.set("k", 1)
    info = kv.info()
    assert isinstance(info, dict)
    assert info["keys"] >= 1
    assert {"memory_bytes", "hits", "misses"} <= set(info)


# ---------------------------------------------------------------- container habits and batches (issue 8.7, 9)


def count_of(kv):
    """len(kv), or ``count()`` for an async store (len cannot await)."""
    return kv.count() if isinstance(kv, Blocking) else len(kv)


def contains(kv, key):
    return kv.exists(key) if isinstance(kv, Blocking) else key in kv


def view_of(kv, name):
    if isinstance(kv, Blocking):
        return Blocking(kv._target.namespace(name), kv._loop) if hasattr(
            kv._target, "namespace") else None
    return kv.namespace(name) if hasattr(kv, "namespace") else None


def test_len_counts_the_live_keys_of_the_namespace(open_store, namespace):
    kv, other = open_store(namespace), open_store(namespace + "-other")
    assert count_of(kv) == 0
    kv.mset({f"k{i}": i for i in range(2500)})   # several SCAN steps over the network
    other.set("k", 1)
    assert count_of(kv) == 2500
    kv.delete("k0")
    assert count_of(kv) == 2499
    assert count_of(other) == 1


def test_in_is_exists(kv):
    kv.set("a", None)
    assert contains(kv, "a") is True
    assert contains(kv, "b") is False


def test_a_namespace_view_nests_like_engine_namespace(kv):
    view = view_of(kv, "v")
    if view is None:
        pytest.skip("pools offer no namespace view")
    view.set("k", 1)
    assert kv.get("v:k") == 1
    assert view.get("k") == 1
    assert view_of(view, "w").get("k") is None
    view_of(view, "w").set("k", 2)
    assert kv.get("v:w:k") == 2
    assert view.flush() == 2
    assert kv.exists("v:k") is False
    with pytest.raises(InvalidArgumentError):
        view_of(kv, "")


@pytest.mark.parametrize("call", [
    lambda kv: kv.mget("ab"), lambda kv: kv.mdel("ab"), lambda kv: kv.mexists("ab"),
    lambda kv: kv.mget(b"ab"), lambda kv: kv.mset("ab"), lambda kv: kv.mset(b"ab"),
], ids=["mget-str", "mdel-str", "mexists-str", "mget-bytes", "mset-str", "mset-bytes"])
def test_a_str_is_refused_as_a_batch_everywhere(kv, call):
    kv.mset({"a": 1, "b": 2})
    with pytest.raises(InvalidArgumentError):
        call(kv)
    assert kv.mget(["a", "b"]) == [1, 2]


class ItemsOnly:
    """Not a Mapping: only ``.items()``, as dict.update accepts."""

    def items(self):
        return [("x", 1), ("y", 2)]


@pytest.mark.parametrize("batch", [
    ItemsOnly, lambda: iter([("x", 1), ("y", 2)]), lambda: [["x", 1], ["y", 2]],
    lambda: {"x": 1, "y": 2}.items(),
], ids=["items-method", "iterator", "lists", "items-view"])
def test_mset_accepts_the_same_batch_types_everywhere(kv, batch):
    kv.mset(batch())
    assert kv.mget(["x", "y"]) == [1, 2]


def test_persist_getdel_getset_delete_if_equal(kv):
    kv.set("t", 1, ttl=100)
    assert kv.persist("t") is True and kv.ttl("t") is None
    assert kv.getset("t", 2) == 1 and kv.getset("new", 1) is None
    assert kv.getdel("t") == 2 and kv.getdel("t", "gone") == "gone"
    assert kv.delete_if_equal("new", 2) is False and kv.delete_if_equal("new", 1) is True
    assert kv.exists("new") is False


def test_scan_walks_the_namespace_without_its_prefix(open_store, namespace):
    kv, other = open_store(namespace), open_store(namespace + "-other")
    kv.mset({f"k{i}": i for i in range(300)})
    other.set("k0", 1)
    seen: set = set()
    cursor = 0
    while True:
        cursor, keys = kv.scan(cursor, "k1*", 50)
        seen.update(keys)
        if not cursor:
            break
    assert seen == {f"k{i}".encode() for i in range(300) if str(i).startswith("1")}
