"""Engine and namespace views as a MutableMapping (issue 15): the interface
cachetools and cachebox users write against."""

from __future__ import annotations

import collections.abc
import threading

import pytest

import kvstore
from kvstore.errors import InvalidKeyError, UnsupportedValueError


@pytest.fixture(params=["engine", "namespace"])
def space(request, engine):
    return engine if request.param == "engine" else engine.namespace("ns")


def test_engine_and_views_are_mutable_mappings(engine):
    assert isinstance(engine, collections.abc.MutableMapping)
    assert isinstance(engine.namespace("x"), collections.abc.MutableMapping)


def test_item_access(space):
    space["a"] = 1
    space[b"b"] = None                      # a stored None is a value, not a miss
    assert space["a"] == 1 and space[b"a"] == 1     # str and bytes name one key
    assert space["b"] is None
    with pytest.raises(KeyError):
        space["missing"]
    del space["a"]
    with pytest.raises(KeyError):
        del space["a"]
    assert "a" not in space and "b" in space


def test_an_expired_key_is_a_key_error(engine, clock):
    engine.set("k", 1, ttl=1)
    clock.tick(2)
    with pytest.raises(KeyError):
        engine["k"]
    assert engine.pop("k", "gone") == "gone"


def test_iteration_and_views_give_bytes_keys(space):
    space.update({"a": 1, "b": [2]}, c="three")
    assert sorted(space) == [b"a", b"b", b"c"]
    assert sorted(space.keys()) == [b"a", b"b", b"c"]
    assert sorted(space.items()) == [(b"a", 1), (b"b", [2]), (b"c", "three")]
    assert sorted(map(str, space.values())) == ["1", "[2]", "three"]
    assert (b"a", 1) in space.items() and (b"a", 2) not in space.items()
    assert len(space.keys()) == 3 and dict(space.items()) == {b"a": 1, b"b": [2], b"c": "three"}


def test_a_namespace_iterates_only_its_own_keys_without_the_prefix(engine):
    engine["outside"] = 0
    view = engine.namespace("ns")
    view["inside"] = 1
    assert list(view) == [b"inside"]
    assert sorted(engine) == [b"ns:inside", b"outside"]


def test_items_skip_keys_removed_while_iterating(engine):
    engine.update((f"k{i}", i) for i in range(1000))
    seen = []
    for key, value in engine.items():
        seen.append(key)
        if len(seen) == 1:
            engine.flush()                 # every later key vanishes mid-iteration
    assert len(seen) == 1                  # no KeyError, and the removed keys are not returned


def test_pop_popitem_clear(space):
    space.update([("a", 1), ("b", 2)])
    assert space.pop("a") == 1
    with pytest.raises(KeyError):
        space.pop("a")
    assert space.pop("a", None) is None
    assert space.popitem() == (b"b", 2)
    with pytest.raises(KeyError):
        space.popitem()
    space["c"] = 3
    assert space.clear() is None and len(space) == 0


def test_setdefault_and_get_or_set(space, clock):
    assert space.setdefault("a", [1]) == [1]
    assert space.setdefault("a", [2]) == [1]
    calls = []

    def factory():
        calls.append(1)
        return "computed"

    assert space.get_or_set("b", factory, ttl=5) == "computed"
    assert space.get_or_set("b", factory) == "computed"
    assert calls == [1] and 0 < space.ttl("b") <= 5
    clock.tick(6)
    assert space.get_or_set("b", factory) == "computed" and calls == [1, 1]


def test_get_or_set_returns_the_value_stored_first(engine):
    def factory():
        engine.set("k", "theirs")          # another caller wins while we compute
        return "ours"

    assert engine.get_or_set("k", factory) == "theirs"
    assert engine["k"] == "theirs"


def test_bad_input_changes_nothing(space):
    space["a"] = 1
    with pytest.raises(InvalidKeyError):
        space[""] = 2
    with pytest.raises(UnsupportedValueError):
        space.update({"a": 2, "b": {1, 2}})        # all or nothing, like mset
    with pytest.raises(UnsupportedValueError):
        space.get_or_set("c", lambda: object())
    assert dict(space.items()) == {b"a": 1}


def test_get_or_set_from_many_threads_stores_one_value(engine):
    results, start = [], threading.Barrier(8)

    def worker(n):
        start.wait()
        results.append(engine.get_or_set("k", lambda: n))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and engine["k"] == results[0]


def test_mapping_methods_exist_on_the_package_types():
    for name in ("__getitem__", "__setitem__", "__delitem__", "__iter__", "keys", "values",
                 "items", "pop", "popitem", "clear", "update", "setdefault", "get_or_set"):
        assert callable(getattr(kvstore.Engine, name)), name
