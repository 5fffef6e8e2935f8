"""Engine: every call of the public contract (issue 2) and every error path.

A refused call must change nothing, so most error tests compare a snapshot of
the engine (keys, values, ttls, memory) taken before and after the call.
"""

from __future__ import annotations

import decimal
import gc
import sys

import pytest

import kvstore
from kvstore.errors import (
    IntegerOverflowError,
    InvalidArgumentError,
    InvalidKeyError,
    KvError,
    UnsupportedValueError,
    ValueTooLargeError,
    WrongTypeError,
)
from tests.strategies import INT64_MAX, INT64_MIN, same_value

MAX_KEY = 65535


def snapshot(engine, keys):
    """Everything a refused call could have touched, for the listed keys."""
    return (
        len(engine),
        engine.info()["memory_bytes"],
        [(repr(engine.get(k, "<missing>")), engine.ttl(k)) for k in keys],
    )


def nested(depth):
    value = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# ---------------------------------------------------------------- keys


def test_str_key_and_its_utf8_bytes_are_one_key(engine):
    engine.set("a", 1)
    assert engine.get(b"a") == 1
    engine.set(b"\xc3\xa9", 2)
    assert engine.get("\u00e9") == 2
    assert len(engine) == 2
    assert engine.delete("\u00e9") is True
    assert engine.exists(b"\xc3\xa9") is False


def test_set_with_str_then_bytes_overwrites(engine):
    engine.set("k", "from str")
    engine.set(b"k", "from bytes")
    assert len(engine) == 1
    assert engine.get("k") == "from bytes"


def test_key_of_65535_bytes_is_accepted(engine):
    key = b"k" * MAX_KEY
    engine.set(key, "long")
    assert engine.get(key) == "long"
    assert engine.exists(key) is True
    assert engine.delete(key) is True


def test_key_length_counts_utf8_bytes_not_characters(engine):
    ok = "\u00e9" * (MAX_KEY // 2)            # 65534 bytes
    engine.set(ok, 1)
    assert engine.get(ok) == 1
    with pytest.raises(InvalidKeyError):
        engine.set("\u00e9" * (MAX_KEY // 2 + 1), 1)   # 32768 chars, 65536 bytes


@pytest.mark.parametrize(
    "bad_key",
    [b"", "", b"k" * (MAX_KEY + 1), "k" * (MAX_KEY + 1), 1, None, 1.5,
     bytearray(b"a"), memoryview(b"a"), ["a"], ("a",), "\ud800"],
    ids=["empty-bytes", "empty-str", "65536-bytes", "65536-str", "int", "None", "float",
         "bytearray", "memoryview", "list", "tuple", "lone-surrogate"],
)
def test_invalid_key_is_refused_by_every_single_key_call(engine, bad_key):
    engine.set("keep", "me", ttl=100)
    before = snapshot(engine, ["keep"])
    calls = [
        lambda: engine.set(bad_key, 1),
        lambda: engine.get(bad_key),
        lambda: engine.delete(bad_key),
        lambda: engine.exists(bad_key),
        lambda: engine.incr(bad_key),
        lambda: engine.decr(bad_key),
        lambda: engine.setnx(bad_key, 1),
        lambda: engine.cas(bad_key, 1, 2),
        lambda: engine.expire(bad_key, 10),
        lambda: engine.ttl(bad_key),
        lambda: engine.mget(["keep", bad_key]),
        lambda: engine.mset({"keep": "changed", "new": 1, bad_key: 1}
                            if _hashable(bad_key) else [("keep", "changed"), ("new", 1), (bad_key, 1)]),
        lambda: engine.mdel(["keep", bad_key]),
        lambda: engine.mexists(["keep", bad_key]),
        lambda: bad_key in engine,
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert snapshot(engine, ["keep"]) == before
    assert engine.exists("new") is False


def _hashable(obj):
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def test_invalid_key_error_is_also_a_value_error(engine):
    with pytest.raises(ValueError):
        engine.set(b"", 1)


# ---------------------------------------------------------------- values

ROUND_TRIP = [
    None,
    True,
    False,
    0,
    1,
    -1,
    INT64_MAX,
    INT64_MIN,
    0.0,
    -0.0,
    1.5,
    float("inf"),
    float("-inf"),
    float("nan"),
    5e-324,
    1.7976931348623157e308,
    decimal.Decimal("1.10"),
    decimal.Decimal("-0"),
    decimal.Decimal("NaN"),
    decimal.Decimal("-Infinity"),
    decimal.Decimal("1E+400"),
    decimal.Decimal("3.14159265358979323846264338327950288419716939937510"),
    "",
    "text",
    "\u00e9\u4e2d\U0001f600\x00",
    b"",
    b"\x00\xff" * 100,
    [],
    {},
    [1, "a", None, [2.5, [b"x"]]],
    {"a": 1, "b": {"c": [True, None]}, "": decimal.Decimal("2.50")},
    {"z": 1, "a": 2, "m": 3},
    "s" * 100_000,
    list(range(1000)),
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=lambda v: type(v).__name__ + ":" + repr(v)[:30])
def test_value_round_trips_exactly(engine, value):
    engine.set("k", value)
    got = engine.get("k")
    assert same_value(got, value), (got, value)
    assert engine.mget(["k"])[0] is not None or value is None
    assert same_value(engine.mget(["k"])[0], value)


def test_bool_stays_bool_and_int_stays_int(engine):
    engine.mset({"t": True, "one": 1, "f": False, "zero": 0})
    assert engine.get("t") is True
    assert engine.get("f") is False
    assert type(engine.get("one")) is int and engine.get("one") == 1
    assert type(engine.get("zero")) is int


def test_tuple_is_stored_as_list_everywhere_it_is_nested(engine):
    engine.set("k", (1, (2, 3), {"a": (4,)}))
    assert engine.get("k") == [1, [2, 3], {"a": [4]}]
    assert type(engine.get("k")[1]) is list
    assert type(engine.get("k")[2]["a"]) is list


def test_bytes_like_values_come_back_as_bytes(engine):
    # The codec stores bytearray and memoryview as Bytes, as it stores tuple as List.
    engine.mset({"ba": bytearray(b"\x00x"), "mv": memoryview(b"yz"), "in": [bytearray(b"q")]})
    assert engine.mget(["ba", "mv", "in"]) == [b"\x00x", b"yz", [b"q"]]
    assert type(engine.get("ba")) is bytes


def test_returned_values_are_fresh_copies(engine):
    engine.set("k", {"a": [1]})
    first = engine.get("k")
    first["a"].append(2)
    assert engine.get("k") == {"a": [1]}


def test_deep_nesting_within_limit_round_trips(engine):
    value = nested(100)
    engine.set("deep", value)
    assert engine.get("deep") == value


@pytest.mark.parametrize(
    "bad_value",
    [
        {1, 2},
        frozenset(),
        object(),
        2**63,
        -(2**63) - 1,
        2**200,
        {1: "int key"},
        {b"bytes key": 1},
        {"ok": 1, 2: 3},
        [1, 2, {3}],
        {"a": [1, {"b": object()}]},
        (1, set()),
        1j,
        "\ud800",
        {"\ud800": 1},
        nested(10_000),
        type,
        len,
    ],
    ids=["set", "frozenset", "object", "2**63", "-2**63-1", "2**200", "dict-int-key",
         "dict-bytes-key", "dict-mixed-keys", "set-in-list", "object-deep", "set-in-tuple",
         "complex", "lone-surrogate", "surrogate-dict-key", "too-deep",
         "type", "builtin"],
)
def test_unsupported_value_is_refused_and_nothing_is_stored(engine, bad_value):
    engine.set("old", "kept", ttl=50)
    before = snapshot(engine, ["old", "new"])
    with pytest.raises(UnsupportedValueError):
        engine.set("new", bad_value)
    with pytest.raises(UnsupportedValueError):
        engine.set("old", bad_value)
    with pytest.raises(UnsupportedValueError):
        engine.setnx("new", bad_value)
    with pytest.raises(UnsupportedValueError):
        engine.cas("old", "kept", bad_value)
    with pytest.raises(UnsupportedValueError):
        engine.mset({"new": 1, "old": bad_value})
    assert snapshot(engine, ["old", "new"]) == before


@pytest.mark.parametrize(
    "too_long",
    [decimal.Decimal("1" * 70_000), {"k" * 70_000: 1}],
    ids=["decimal-text-over-u16", "dict-key-over-u16"],
)
def test_value_whose_u16_length_field_would_overflow_is_refused(engine, too_long):
    # The wire format gives Decimal text and map keys a u16 length: a longer
    # one must be refused, never truncated.
    engine.set("old", "kept")
    before = snapshot(engine, ["old", "new"])
    with pytest.raises((UnsupportedValueError, ValueTooLargeError)):
        engine.set("new", too_long)
    with pytest.raises((UnsupportedValueError, ValueTooLargeError)):
        engine.set("old", [too_long])
    assert snapshot(engine, ["old", "new"]) == before


def test_self_referencing_list_is_refused_without_crashing(engine):
    loop = [1]
    loop.append(loop)
    with pytest.raises(UnsupportedValueError):
        engine.set("k", loop)
    assert "k" not in engine


def test_unsupported_value_error_is_also_a_type_error(engine):
    with pytest.raises(TypeError):
        engine.set("k", object())


# ---------------------------------------------------------------- get / delete / exists


def test_get_missing_returns_default(engine):
    assert engine.get("missing") is None
    sentinel = object()
    assert engine.get("missing", sentinel) is sentinel
    assert engine.get("missing", default=5) == 5


def test_get_of_stored_none_is_none_not_the_default(engine):
    engine.set("n", None)
    assert engine.get("n", "default") is None
    assert engine.exists("n") is True


def test_delete_reports_whether_the_key_existed(engine):
    engine.set("k", 1)
    assert engine.delete("k") is True
    assert engine.delete("k") is False
    assert engine.get("k") is None
    assert len(engine) == 0


def test_exists_and_in(engine):
    assert engine.exists("k") is False
    assert ("k" in engine) is False
    engine.set("k", 0)
    assert engine.exists("k") is True
    assert ("k" in engine) is True
    assert (b"k" in engine) is True


def test_set_overwrites_value_of_another_type(engine):
    engine.set("k", [1, 2, 3])
    engine.set("k", "str now")
    assert engine.get("k") == "str now"
    assert len(engine) == 1


# ---------------------------------------------------------------- incr / decr


def test_incr_of_missing_key_starts_at_zero(engine):
    assert engine.incr("c") == 1
    assert engine.get("c") == 1
    assert type(engine.get("c")) is int
    assert engine.ttl("c") is None


def test_decr_of_missing_key_starts_at_zero(engine):
    assert engine.decr("c") == -1
    assert engine.decr("c", 5) == -6
    assert engine.get("c") == -6


def test_incr_and_decr_with_deltas(engine):
    engine.set("c", 10)
    assert engine.incr("c", 5) == 15
    assert engine.incr("c", -20) == -5
    assert engine.decr("c", -7) == 2
    assert engine.incr("c", 0) == 2
    assert engine.decr("c", delta=2) == 0
    assert engine.get("c") == 0


def test_incr_of_an_existing_int_set_by_set(engine):
    engine.set("c", INT64_MIN)
    assert engine.incr("c", INT64_MAX) == -1


@pytest.mark.parametrize("stored", ["5", b"5", 5.0, decimal.Decimal(5), None, [5], {"a": 5}, True, False],
                         ids=repr)
def test_incr_of_non_int_value_raises_wrong_type_and_keeps_value(engine, stored):
    engine.set("c", stored, ttl=30)
    before = snapshot(engine, ["c"])
    with pytest.raises(WrongTypeError):
        engine.incr("c")
    with pytest.raises(WrongTypeError):
        engine.decr("c", 2)
    assert snapshot(engine, ["c"]) == before
    assert same_value(engine.get("c"), stored)


@pytest.mark.parametrize(
    "start, op, delta",
    [
        (INT64_MAX, "incr", 1),
        (INT64_MAX - 4, "incr", 5),
        (1, "incr", INT64_MAX),
        (INT64_MIN, "decr", 1),
        (INT64_MIN, "incr", -1),
        (-2, "decr", INT64_MAX),
        (INT64_MAX, "decr", -1),
        (-1, "incr", INT64_MIN),
        (0, "decr", INT64_MIN),
    ],
)
def test_int64_overflow_raises_and_keeps_value(engine, start, op, delta):
    engine.set("c", start)
    with pytest.raises(IntegerOverflowError):
        getattr(engine, op)("c", delta)
    assert engine.get("c") == start


def test_overflow_error_is_an_overflow_error(engine):
    engine.set("c", INT64_MAX)
    with pytest.raises(OverflowError):
        engine.incr("c")


def test_incr_reaches_both_int64_bounds_exactly(engine):
    engine.set("c", INT64_MAX - 1)
    assert engine.incr("c") == INT64_MAX
    engine.set("d", INT64_MIN + 1)
    assert engine.decr("d") == INT64_MIN
    assert engine.incr("e", INT64_MIN) == INT64_MIN
    assert engine.decr("f", INT64_MAX) == -INT64_MAX


def test_decr_by_int64_min_is_exact_or_refused(engine):
    # -INT64_MIN does not fit in int64: an implementation that negates the
    # delta in C would wrap. Either the exact result or a refusal is fine.
    engine.set("c", -1)
    try:
        result = engine.decr("c", INT64_MIN)
    except (IntegerOverflowError, InvalidArgumentError):
        assert engine.get("c") == -1
    else:
        assert result == INT64_MAX
        assert engine.get("c") == INT64_MAX


@pytest.mark.parametrize("delta", [2**63, -(2**63) - 1, 1.0, 1.5, "1", b"1", None, decimal.Decimal(1), [1]],
                         ids=repr)
def test_bad_delta_raises_invalid_argument_and_changes_nothing(engine, delta):
    engine.set("c", 7)
    before = snapshot(engine, ["c", "missing"])
    with pytest.raises(InvalidArgumentError):
        engine.incr("c", delta)
    with pytest.raises(InvalidArgumentError):
        engine.decr("c", delta)
    with pytest.raises(InvalidArgumentError):
        engine.incr("missing", delta)
    assert snapshot(engine, ["c", "missing"]) == before
    assert engine.exists("missing") is False


# ---------------------------------------------------------------- setnx / cas


def test_setnx_stores_only_when_missing(engine):
    assert engine.setnx("k", 1) is True
    assert engine.setnx("k", 2) is False
    assert engine.setnx(b"k", 3) is False
    assert engine.get("k") == 1


def test_setnx_on_key_holding_none_does_not_overwrite(engine):
    engine.set("k", None)
    assert engine.setnx("k", 1) is False
    assert engine.get("k", "missing") is None


def test_cas_swaps_when_expected_matches(engine):
    engine.set("k", {"v": 1})
    assert engine.cas("k", {"v": 1}, {"v": 2}) is True
    assert engine.get("k") == {"v": 2}


def test_cas_fails_on_mismatch_and_keeps_value(engine):
    engine.set("k", "a")
    assert engine.cas("k", "b", "c") is False
    assert engine.get("k") == "a"


def test_cas_on_missing_key_fails_even_when_expecting_none(engine):
    assert engine.cas("k", None, 1) is False
    assert engine.cas("k", "x", 1) is False
    assert engine.exists("k") is False


@pytest.mark.parametrize(
    "stored, expected",
    [
        (True, 1),
        (1, True),
        (0, False),
        (1, 1.0),
        (0.0, -0.0),
        (-0.0, 0.0),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (decimal.Decimal(1), 1),
        ("1", 1),
        ("a", b"a"),
        (None, 0),
        ([1, 2], [2, 1]),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ([True], [1]),
    ],
    ids=repr,
)
def test_cas_compares_exact_type_and_encoding(engine, stored, expected):
    engine.set("k", stored)
    assert engine.cas("k", expected, "new") is False
    assert same_value(engine.get("k"), stored)


@pytest.mark.parametrize(
    "stored, expected",
    [
        (float("nan"), float("nan")),
        ([1, 2], (1, 2)),
        (decimal.Decimal("1.0"), decimal.Decimal("1.0")),
        (-0.0, -0.0),
        ("\u00e9", "\u00e9"),
        (None, None),
    ],
    ids=repr,
)
def test_cas_matches_equal_encodings(engine, stored, expected):
    engine.set("k", stored)
    assert engine.cas("k", expected, "new") is True
    assert engine.get("k") == "new"


def test_cas_with_unencodable_expected_never_swaps(engine):
    engine.set("k", 1)
    try:
        swapped = engine.cas("k", {1}, 2)
    except UnsupportedValueError:
        pass
    else:
        assert swapped is False
    assert engine.get("k") == 1


# ---------------------------------------------------------------- batches


def test_mget_returns_values_in_order_with_none_for_missing(engine):
    engine.mset({"a": 1, "b": "two", "c": [3]})
    assert engine.mget(["c", "missing", b"a", "b", "a"]) == [[3], None, 1, "two", 1]
    assert engine.mget([]) == []


# Before 3.12 a garbage collection starts inside whatever allocation crosses
# the threshold, so Python code (gc callbacks, finalizers, another thread) can
# run in the middle of the engine's C decoding; these tests force exactly that.
# Since 3.12 the collector runs only at the eval breaker, between bytecodes
# (gh-97922), never inside the engine's C code: the interleaving cannot happen
# there, and a hook could only fire outside the call, proving nothing.
collects_inside_c_code = pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="3.12+ collects only at the eval breaker (gh-97922): no GC inside the C decode")


class CollectionHook:
    """Runs action inside the nth garbage collection that starts while armed,
    with collections made as frequent as possible."""

    def __init__(self, nth, action):
        self.nth, self.action, self.seen = nth, action, 0

    def __call__(self, phase, info):
        if phase == "start":
            self.seen += 1
            if self.seen == self.nth:
                self.action()

    def __enter__(self):
        gc.collect()
        self.threshold = gc.get_threshold()
        gc.callbacks.append(self)
        gc.set_threshold(1)
        return self

    def __exit__(self, *exc):
        gc.set_threshold(*self.threshold)
        gc.callbacks.remove(self)
        assert self.seen >= self.nth, "the hook never ran: the test proves nothing"


@collects_inside_c_code
def test_mget_is_one_snapshot_even_when_python_code_runs_while_it_decodes(engine):
    # Decoding allocates, an allocation can start a garbage collection, and a
    # collection runs Python code (gc callbacks, finalizers; another thread may
    # take the GIL then). None of that may land between two lookups of one mget.
    keys = [f"k{i}" for i in range(50)]
    engine.mset({k: ["old"] for k in keys})
    with CollectionHook(3, lambda: engine.mset({k: ["new"] for k in keys})):
        got = engine.mget(keys)
    assert len({v[0] for v in got}) == 1, [v[0] for v in got]


@collects_inside_c_code
def test_get_survives_the_key_being_rewritten_while_it_decodes(engine):
    value = [[i, "x" * i, {"n": i}] for i in range(200)]
    engine.set("k", value)

    def rewrite():
        engine.set("k", "other")
        engine.flush()
        engine.mset({f"filler{i}": [i] * 10 for i in range(100)})

    with CollectionHook(3, rewrite):
        got = engine.get("k")
    assert got == value
    assert engine.get("k") is None


@collects_inside_c_code
def test_nested_mget_during_mget_decoding_keeps_both_results_right(engine):
    keys = [f"k{i}" for i in range(40)]
    engine.mset({k: [k, i] for i, k in enumerate(keys)})
    inner = []
    with CollectionHook(3, lambda: inner.append(engine.mget(list(reversed(keys))))):
        outer = engine.mget(keys)
    assert outer == [[k, i] for i, k in enumerate(keys)]
    assert inner == [[[k, i] for i, k in reversed(list(enumerate(keys)))]]


def test_mget_accepts_any_iterable_of_keys(engine):
    engine.set("a", 1)
    assert engine.mget(("a", "b")) == [1, None]


def test_mset_with_mapping(engine):
    assert engine.mset({"a": 1, b"b": 2.5, "c": None}) is None
    assert engine.mget(["a", "b", "c"]) == [1, 2.5, None]
    assert len(engine) == 3


def test_mset_with_pairs(engine):
    engine.mset([("a", 1), (b"b", "x")])
    engine.mset((("c", True),))
    assert engine.mget(["a", "b", "c"]) == [1, "x", True]


def test_mset_later_pair_of_same_key_wins(engine):
    engine.mset([("k", 1), (b"k", 2)])
    assert engine.get("k") == 2
    assert len(engine) == 1


def test_mset_of_nothing_is_allowed(engine):
    engine.mset({})
    engine.mset([])
    assert len(engine) == 0


@pytest.mark.parametrize(
    "batch",
    [
        [("a", 10), (b"", 1), ("b", 20)],
        [("a", 10), ("b" * (MAX_KEY + 1), 1), ("b", 20)],
        [("a", 10), (5, 1), ("b", 20)],
        [("a", 10), ("x", {1}), ("b", 20)],
        [("a", 10), ("x", 2**64), ("b", 20)],
        [("a", 10), ("b", 20), ("x", [1, object()])],
        [("x", object()), ("a", 10), ("b", 20)],
    ],
    ids=["empty-key", "long-key", "int-key", "set-value", "big-int", "last-bad", "first-bad"],
)
def test_mset_is_all_or_nothing(engine, batch):
    engine.mset({"a": 1, "b": 2})
    before = snapshot(engine, ["a", "b", "x"])
    with pytest.raises((InvalidKeyError, UnsupportedValueError)):
        engine.mset(batch)
    with pytest.raises((InvalidKeyError, UnsupportedValueError)):
        engine.mset(dict(batch))
    assert snapshot(engine, ["a", "b", "x"]) == before
    assert engine.get("a") == 1 and engine.get("b") == 2


@pytest.mark.parametrize("bad", [[("a",)], [("a", 1, 2)], [1], 5, None],
                         ids=repr)
def test_mset_of_malformed_pairs_raises_and_writes_nothing(engine, bad):
    with pytest.raises((KvError, TypeError, ValueError)):
        engine.mset([("ok", 1)] + bad if isinstance(bad, list) else bad)
    assert len(engine) == 0


def test_mset_bad_ttl_writes_nothing(engine):
    with pytest.raises(InvalidArgumentError):
        engine.mset({"a": 1}, ttl=0)
    assert len(engine) == 0


def test_mdel_counts_keys_that_existed(engine):
    engine.mset({"a": 1, "b": 2, "c": 3})
    assert engine.mdel(["a", "missing", b"b", "a"]) == 2
    assert engine.mget(["a", "b", "c"]) == [None, None, 3]
    assert engine.mdel([]) == 0
    assert len(engine) == 1


def test_mdel_with_a_bad_key_deletes_nothing(engine):
    engine.mset({"a": 1, "b": 2})
    with pytest.raises(InvalidKeyError):
        engine.mdel(["a", b"", "b"])
    assert engine.mget(["a", "b"]) == [1, 2]


def test_mexists(engine):
    engine.mset({"a": 1, "n": None})
    assert engine.mexists(["a", "b", "n", b"a"]) == [True, False, True, True]
    assert engine.mexists([]) == []


# ---------------------------------------------------------------- len / flush / info


def test_len_counts_live_keys(engine):
    assert len(engine) == 0
    for i in range(100):
        engine.set(f"k{i}", i)
    assert len(engine) == 100
    engine.set("k5", "again")
    assert len(engine) == 100
    engine.delete("k5")
    assert len(engine) == 99


def test_flush_returns_how_many_keys_it_removed(engine):
    engine.mset({f"k{i}": i for i in range(50)})
    assert engine.flush() == 50
    assert len(engine) == 0
    assert engine.get("k1") is None
    assert engine.flush() == 0
    engine.set("k1", "after")
    assert engine.get("k1") == "after"


def test_info_has_the_contract_fields(engine):
    info = engine.info()
    assert isinstance(info, dict)
    for field in ("keys", "memory_bytes", "hits", "misses", "expired"):
        assert isinstance(info[field], int), field
    assert info["keys"] == 0
    assert info["hits"] == info["misses"] == info["expired"] == 0
    assert info["memory_bytes"] > 0


def test_info_keys_counts_stored_keys(engine):
    engine.mset({"a": 1, "b": 2, "c": 3})
    assert engine.info()["keys"] == 3
    engine.delete("a")
    assert engine.info()["keys"] == 2


def test_get_counts_hits_and_misses(engine):
    engine.set("a", 1)
    engine.set("n", None)
    base = engine.info()
    engine.get("a")
    engine.get("a")
    engine.get("n")
    engine.get("missing")
    info = engine.info()
    assert info["hits"] - base["hits"] == 3
    assert info["misses"] - base["misses"] == 1


def test_memory_bytes_counts_the_value_bytes(engine):
    empty = engine.info()["memory_bytes"]
    engine.set("big", b"x" * 1_000_000)
    grown = engine.info()["memory_bytes"]
    assert 1_000_000 <= grown - empty < 1_100_000
    engine.set("big", b"x")
    # Freed, give or take a reusable encoding buffer the engine may keep.
    assert grown - engine.info()["memory_bytes"] > 900_000
    engine.delete("big")
    engine.flush()
    assert engine.info()["memory_bytes"] == empty


def test_memory_bytes_returns_to_empty_baseline_after_flush(clock):
    engine = kvstore.Engine(clock=clock)
    empty = engine.info()["memory_bytes"]
    for round_ in range(2):
        engine.mset({f"key-{i}": [i, "v" * (i % 50)] for i in range(20_000)})
        engine.set("with-ttl", 1, ttl=5)
        assert engine.info()["memory_bytes"] > empty + 20_000 * 16
        assert engine.flush() == 20_001
        assert engine.info()["memory_bytes"] == empty, f"round {round_}"


def test_memory_bytes_returns_to_empty_baseline_after_deleting_everything(engine):
    empty = engine.info()["memory_bytes"]
    keys = [f"key-{i}" for i in range(5000)]
    engine.mset({k: k for k in keys})
    assert engine.mdel(keys) == 5000
    assert engine.info()["memory_bytes"] == empty


def test_clock_must_be_callable():
    with pytest.raises(InvalidArgumentError):
        kvstore.Engine(clock=5.0)


def test_engine_without_clock_uses_real_time():
    engine = kvstore.Engine()
    engine.set("k", 1, ttl=1000)
    remaining = engine.ttl("k")
    assert 990 < remaining <= 1000
    assert engine.get("k") == 1


# ---------------------------------------------------------------- namespaces


def test_namespace_prefixes_keys_with_name_and_colon(engine):
    view = engine.namespace("ns")
    assert isinstance(view, kvstore.Namespace)
    view.set("a", 1)
    assert engine.get("ns:a") == 1
    assert engine.get(b"ns:a") == 1
    assert engine.get("a") is None
    engine.set("ns:b", 2)
    assert view.get("b") == 2
    assert view.get(b"b") == 2


def test_namespace_with_non_ascii_name(engine):
    engine.namespace("\u00e9t\u00e9").set("k", 1)
    assert engine.get(b"\xc3\xa9t\xc3\xa9:k") == 1


def test_two_namespaces_are_isolated(engine):
    one, two = engine.namespace("one"), engine.namespace("two")
    one.set("k", 1)
    two.set("k", 2)
    assert one.get("k") == 1
    assert two.get("k") == 2
    assert one.delete("k") is True
    assert two.get("k") == 2
    assert one.exists("k") is False


def test_namespace_view_flush_removes_only_its_keys(engine):
    view = engine.namespace("ns")
    view.mset({"a": 1, "b": 2})
    engine.mset({"ns": 0, "nsx:a": 0, "ns2:a": 0, "other": 0, "n:s:a": 0})
    engine.namespace("ns2").set("b", 0)
    assert view.flush() == 2
    assert len(view) == 0
    assert engine.mexists(["ns:a", "ns:b", "ns", "nsx:a", "ns2:a", "other", "n:s:a", "ns2:b"]) == [
        False, False, True, True, True, True, True, True]
    assert len(engine) == 6


def test_len_of_a_view_counts_only_its_keys(engine):
    view = engine.namespace("ns")
    engine.mset({"a": 1, "ns": 1, "nsa": 1})
    assert len(view) == 0
    view.mset({"a": 1, "b": 2, "c": 3})
    assert len(view) == 3
    assert len(engine) == 6
    view.delete("a")
    assert len(view) == 2


def test_every_view_call_acts_on_the_prefixed_key(engine):
    view = engine.namespace("v")
    view.set("s", "x", ttl=10)
    assert engine.ttl("v:s") == 10.0
    long_key = "L" * 300                        # prefix + key past any inline buffer
    view.mset({long_key: "long"})
    assert engine.get("v:" + long_key) == "long"
    assert view.mget([long_key]) == ["long"]
    assert view.mdel([long_key]) == 1
    assert view.ttl("s") == 10.0
    assert view.exists("s") is True
    assert ("s" in view) is True
    assert ("v:s" in view) is False
    assert view.incr("n", 3) == 3
    assert view.decr("n") == 2
    assert engine.get("v:n") == 2
    assert view.setnx("s", "y") is False
    assert view.setnx("t", "y") is True
    assert engine.get("v:t") == "y"
    assert view.cas("t", "y", "z") is True
    assert engine.get("v:t") == "z"
    assert view.expire("t", 5) is True
    assert engine.ttl("v:t") == 5.0
    assert view.mget(["s", "t", "missing"]) == ["x", "z", None]
    assert view.mexists(["s", "missing"]) == [True, False]
    assert view.mdel(["s", "missing"]) == 1
    assert engine.exists("v:s") is False
    assert view.get("missing", "d") == "d"
    assert view.delete("t") is True
    assert engine.exists("v:t") is False
    assert engine.mexists(["s", "t", "n"]) == [False, False, False]


def test_namespace_prefix_counts_toward_the_key_limit(engine):
    view = engine.namespace("ns")                 # prefix b"ns:" is 3 bytes
    view.set(b"k" * (MAX_KEY - 3), 1)
    assert engine.get(b"ns:" + b"k" * (MAX_KEY - 3)) == 1
    before = snapshot(engine, [])
    with pytest.raises(InvalidKeyError):
        view.set(b"k" * (MAX_KEY - 2), 1)
    with pytest.raises(InvalidKeyError):
        view.mset({"ok": 1, b"k" * (MAX_KEY - 2): 1})
    with pytest.raises(InvalidKeyError):
        view.get(b"k" * (MAX_KEY - 2))
    with pytest.raises(InvalidKeyError):
        view.set(b"", 1)
    assert snapshot(engine, []) == before


def test_namespace_of_a_view_nests_its_prefix(engine):
    inner = engine.namespace("a").namespace("b")
    inner.set("k", 1)
    assert engine.get("a:b:k") == 1
    assert engine.namespace("a").get("b:k") == 1
    assert len(inner) == 1
    engine.namespace("a").set("other", 2)
    assert inner.flush() == 1
    assert engine.get("a:other") == 2


def test_namespace_name_of_bytes_is_its_prefix(engine):
    engine.namespace(b"\xffns").set("k", 1)
    assert engine.get(b"\xffns:k") == 1


@pytest.mark.parametrize("name", ["", b"", None, 5, ["ns"]], ids=repr)
def test_invalid_namespace_name_is_refused(engine, name):
    with pytest.raises(InvalidArgumentError):
        engine.namespace(name)


def test_namespace_whose_prefix_leaves_no_room_for_a_key_is_refused(engine):
    roomy = engine.namespace("x" * (MAX_KEY - 2))          # prefix of 65534 bytes
    roomy.set("k", 1)
    assert engine.get("x" * (MAX_KEY - 2) + ":k") == 1
    with pytest.raises(InvalidKeyError):
        roomy.set("kk", 1)
    with pytest.raises(InvalidArgumentError):
        engine.namespace("x" * (MAX_KEY - 1))


def test_namespace_mset_is_all_or_nothing(engine):
    view = engine.namespace("ns")
    with pytest.raises(UnsupportedValueError):
        view.mset({"a": 1, "b": object()})
    assert len(engine) == 0


def test_memory_bytes_returns_to_baseline_after_view_flush(engine):
    empty = engine.info()["memory_bytes"]
    view = engine.namespace("ns")
    view.mset({f"k{i}": i for i in range(3000)})
    assert view.flush() == 3000
    assert engine.info()["memory_bytes"] == empty
