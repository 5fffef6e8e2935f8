"""Hypothesis strategies shared by the codec, engine and contract tests."""

from __future__ import annotations

import decimal

from hypothesis import strategies as st

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

keys = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda s: 0 < len(s.encode()) <= 65535),
    st.binary(min_size=1, max_size=40),
)

# A few keys only, so the state machine hits the same slots over and over.
small_keys = st.sampled_from([b"a", b"b", "c", "d\u00e9", b"\x00", b"k" * 17, "key-6", b"key-7"])

decimals = st.decimals(allow_nan=True, allow_infinity=True)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.floats(allow_nan=True, allow_infinity=True),
    decimals,
    st.text(max_size=50),
    st.binary(max_size=50),
)

values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=12), children, max_size=6),
    ),
    max_leaves=25,
)


def same_value(a: object, b: object) -> bool:
    """Exact equality as the codec promises it: types kept, NaN equal to NaN,
    -0.0 distinct from 0.0, Decimal compared by its text."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    return a == b
