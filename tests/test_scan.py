"""SCAN, its glob matcher and the table's random sampling.

The scan promises (table.pyx, "scanning"): a full scan of a table that does
not change returns each key exactly once; a scan interleaved with writes,
deletes, expiries and resizes returns every key present for the whole scan at
least once; every step does bounded work; a full scan terminates.
"""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvstore
from kvstore._engine import _glob_match
from kvstore.errors import InvalidArgumentError
from tests.conftest import FakeClock


def full_scan(space, match=None, count=10):
    seen = []
    cursor, steps = 0, 0
    while True:
        cursor, keys = space.scan(cursor, match=match, count=count)
        seen.extend(keys)
        steps += 1
        assert steps < 100_000, "scan did not terminate"
        if cursor == 0:
            return seen


key_sets = st.sets(st.binary(min_size=1, max_size=6), max_size=300)


@settings(max_examples=60, deadline=None)
@given(keys=key_sets, count=st.integers(1, 50))
def test_quiet_scan_returns_each_key_exactly_once(keys, count):
    engine = kvstore.Engine()
    for key in keys:
        engine.set(key, 1)
    seen = full_scan(engine, count=count)
    assert sorted(seen) == sorted(keys)


@settings(max_examples=30, deadline=None)
@given(keys=key_sets)
def test_quiet_scan_during_a_resize_returns_each_key_exactly_once(keys):
    engine = kvstore.Engine()
    for key in keys:
        engine.set(key, 1)
    for i in range(2000):           # grow past several doublings...
        engine.set(b"\xff-bulk-%d" % i, i)
    engine.mdel([b"\xff-bulk-%d" % i for i in range(2000)])   # ...then start shrinking
    seen = full_scan(engine, count=7)
    assert sorted(seen) == sorted(keys)


# Operations run between two scan steps. Protected keys are never touched.
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 400)),        # grow
        st.tuples(st.just("delete"), st.integers(1, 400)),     # shrink
        st.tuples(st.just("expire"), st.integers(1, 400)),     # expiry + reclaim
        st.tuples(st.just("tick"), st.just(0)),                # migration steps
        st.tuples(st.just("overwrite"), st.integers(0, 50)),   # in-place writes of protected keys
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(protected=st.sets(st.binary(min_size=1, max_size=5), min_size=1, max_size=120),
       steps=st.lists(ops, min_size=1, max_size=40), count=st.integers(1, 20),
       namespaced=st.booleans())
def test_scan_under_churn_returns_every_key_present_throughout(protected, steps, count, namespaced):
    clock = FakeClock()
    engine = kvstore.Engine(clock=clock)
    space = engine.namespace("p") if namespaced else engine
    for key in protected:
        space.set(key, 0)
    protected_stored = sorted(protected)
    churn = []          # other keys (outside the namespace when there is one)
    serial = 0
    seen = set()
    cursor = 0
    step_iter = iter(steps)
    while True:
        cursor, keys = space.scan(cursor, count=count)
        assert len(keys) <= count * 12      # bounded per step (count hint, a bucket's run over)
        seen.update(keys)
        if cursor == 0:
            break
        for op, n in next(step_iter, []):
            if op == "add":
                for _ in range(n):
                    serial += 1
                    churn.append(b"\x00churn-%d" % serial)
                    engine.set(churn[-1], serial)
            elif op == "delete":
                gone, churn = churn[:n], churn[n:]
                engine.mdel(gone)
            elif op == "expire":
                for _ in range(n):
                    serial += 1
                    engine.set(b"\x00ttl-%d" % serial, serial, ttl=0.5)
                clock.tick(1)
            elif op == "tick":
                engine.tick(1.0)
            else:
                space.set(protected_stored[n % len(protected_stored)], n)
    missing = protected - seen
    assert not missing, f"scan missed {len(missing)} keys present throughout"
    if namespaced:
        assert seen <= protected     # nothing from outside the namespace
    engine._check()


def test_scan_match_and_namespace_strip_the_prefix():
    engine = kvstore.Engine()
    engine.mset({"user:1": 1, "user:2": 2, "job:1": 3, "users": 4})
    view = engine.namespace("user")
    assert sorted(view.scan_iter()) == [b"1", b"2"]
    assert sorted(engine.scan_iter(match="user:*")) == [b"user:1", b"user:2"]
    assert sorted(view.scan_iter(match=b"[2-9]")) == [b"2"]
    assert sorted(engine.scan_iter(match="*1")) == [b"job:1", b"user:1"]
    engine.set("user:", 5)       # the prefix itself is no key of the view
    assert sorted(view.scan_iter()) == [b"1", b"2"]


def test_scan_skips_expired_keys(engine, clock):
    engine.set("old", 1, ttl=1)
    engine.set("new", 2)
    clock.tick(2)
    assert list(engine.scan_iter()) == [b"new"]


def test_scan_of_empty_engine_completes_at_once(engine):
    assert engine.scan() == (0, [])
    assert list(engine.scan_iter()) == []


@pytest.mark.parametrize("kwargs", [
    {"cursor": -1}, {"cursor": 2**64}, {"cursor": "0"}, {"cursor": True},
    {"count": 0}, {"count": -5}, {"count": 1.5}, {"count": True}, {"match": 3},
])
def test_scan_refuses_bad_arguments(engine, kwargs):
    with pytest.raises(InvalidArgumentError):
        engine.scan(**kwargs)


@pytest.mark.parametrize("kwargs", [{"count": 0}, {"match": 3.0}])
def test_scan_iter_refuses_bad_arguments_before_iterating(engine, kwargs):
    with pytest.raises(InvalidArgumentError):
        engine.scan_iter(**kwargs)


def test_scan_step_work_is_bounded_on_a_sparse_table():
    # One key left in a table that was large: a step looks at ~10 * count
    # buckets, so the first steps come back empty with a non-zero cursor.
    engine = kvstore.Engine()
    engine.mset({b"k%d" % i: i for i in range(5000)})
    for _ in range(20):
        engine.tick(100.0)
    engine.mdel([b"k%d" % i for i in range(1, 5000)])
    cursor, keys = engine.scan(0, count=1)
    assert len(keys) <= 1
    assert sorted(full_scan(engine, count=1)) == [b"k0"]


# ----------------------------------------------------------------- glob


def reference_glob(pattern: bytes) -> re.Pattern[bytes]:
    """A regex with the glob rules of _core/glob.h, written independently."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if c == b"*":
            out.append(b".*")
            i += 1
        elif c == b"?":
            out.append(b".")
            i += 1
        elif c == b"\\":
            out.append(re.escape(pattern[i + 1:i + 2] if i + 1 < n else b"\\"))
            i += 2
        elif c == b"[":
            j = i + 1
            negate = j < n and pattern[j:j + 1] == b"^"
            if negate:
                j += 1
            items = []
            while j < n and pattern[j:j + 1] != b"]":
                if pattern[j:j + 1] == b"\\" and j + 1 < n:
                    lo, j = pattern[j + 1], j + 2
                else:
                    lo, j = pattern[j], j + 1
                hi = lo
                if j + 1 < n and pattern[j:j + 1] == b"-" and pattern[j + 1:j + 2] != b"]":
                    if pattern[j + 1:j + 2] == b"\\" and j + 2 < n:
                        hi, j = pattern[j + 2], j + 3
                    else:
                        hi, j = pattern[j + 1], j + 2
                items.append((min(lo, hi), max(lo, hi)))
            if j >= n:
                out.append(re.escape(b"["))
                i += 1
                continue
            if not items:
                out.append(b"[^\\x00-\\xff]" if not negate else b"[\\x00-\\xff]")
            else:
                body = b"".join(b"\\x%02x-\\x%02x" % (lo, hi) for lo, hi in items)
                out.append(b"[" + (b"^" if negate else b"") + body + b"]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile(b"".join(out) + rb"\Z", re.DOTALL)


glob_alphabet = st.sampled_from(list(b"ab*?[]^-\\z"))
key_alphabet = st.sampled_from(list(b"ab-z^[]\\*?"))


@settings(max_examples=2000, deadline=None)
@given(pattern=st.lists(glob_alphabet, max_size=12).map(bytes),
       key=st.lists(key_alphabet, max_size=12).map(bytes))
def test_glob_agrees_with_the_reference(pattern, key):
    matched, _ = _glob_match(pattern, key)
    assert matched == bool(reference_glob(pattern).match(key)), (pattern, key)


@settings(max_examples=500, deadline=None)
@given(pattern=st.text(alphabet="ab*?", max_size=10), key=st.text(alphabet="ab", max_size=12))
def test_glob_agrees_with_fnmatch_on_star_and_question(pattern, key):
    matched, _ = _glob_match(pattern.encode(), key.encode())
    assert matched == fnmatch.fnmatchcase(key, pattern)


@pytest.mark.parametrize("pattern, key, expected", [
    (b"h?llo", b"hello", True), (b"h*llo", b"heeeello", True), (b"h[ae]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False), (b"h[a-b]llo", b"hbllo", True), (b"h[b-a]llo", b"hbllo", True),
    (b"\\*", b"*", True), (b"\\*", b"a", False), (b"a\\", b"a\\", True), (b"[", b"[", True),
    (b"[]", b"a", False), (b"[^]", b"a", True), (b"[\\]]", b"]", True), (b"*", b"", True),
    (b"", b"", True), (b"", b"a", False), (b"[a-]", b"-", True), (b"a*", b"b", False),
])
def test_glob_examples(pattern, key, expected):
    assert _glob_match(pattern, key)[0] is expected


@pytest.mark.parametrize("stars", [10, 50, 200])
def test_glob_work_is_at_most_key_times_pattern(stars):
    # CVE-2022-36021 shape: a recursive matcher takes exponential time here.
    pattern = b"a*" * stars + b"b"
    key = b"a" * 300
    matched, steps = _glob_match(pattern, key)
    assert not matched
    assert steps <= (len(key) + 1) * (len(pattern) + 1)
    pattern = b"*a" * stars + b"*b"
    matched, steps = _glob_match(pattern, key)
    assert not matched
    assert steps <= (len(key) + 1) * (len(pattern) + 1)


def test_glob_class_heavy_pattern_is_bounded():
    # CVE-2024-31228 shape: long classes repeated; still key * pattern.
    pattern = (b"[" + b"a" * 100 + b"]*") * 20 + b"z"
    key = b"a" * 200
    matched, steps = _glob_match(pattern, key)
    assert not matched
    assert steps <= (len(key) + 1) * (len(pattern) + 1)


# ----------------------------------------------------------------- sampling


def test_sample_returns_distinct_entries_of_the_table():
    engine = kvstore.Engine()
    keys = {b"s%d" % i for i in range(500)}
    engine.mset({k: 1 for k in keys})
    # many draws: a sampler that may come back short (Redis's does) fails
    # here from some random start points only
    for n in (0, 1, 5, 50) * 200:
        picked = engine._sample(n)
        assert len(picked) == n
        assert len(set(picked)) == len(picked)
        assert set(picked) <= keys
    assert sorted(kvstore.Engine()._sample(5)) == []
    small = kvstore.Engine()
    small.mset({b"x": 1, b"y": 2})
    assert sorted(small._sample(10)) == [b"x", b"y"]


def test_sample_varies():
    engine = kvstore.Engine()
    engine.mset({b"s%d" % i: 1 for i in range(2000)})
    firsts = {tuple(engine._sample(3)) for _ in range(30)}
    assert len(firsts) > 1
