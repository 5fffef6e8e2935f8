"""The value codec: byte vectors from issue 2, round trips, validation, the
key rule. kvstore/_codec.pxd is the contract; encode/decode/validate and the
key helpers are its Python-visible face."""

from __future__ import annotations

import collections
import decimal
import enum
import math
import struct
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from kvstore import _codec
from kvstore.errors import (
    InvalidKeyError,
    KvError,
    ProtocolError,
    UnsupportedValueError,
)
from tests.strategies import INT64_MAX, INT64_MIN, same_value, values

# kvstore/_codec.pxd: MAX_NESTING_DEPTH, MAX_KEY_BYTES, and the inline chunk of
# WriteBuffer.
MAX_NESTING_DEPTH = 128
MAX_KEY_BYTES = 65535
INLINE_BUFFER_BYTES = 512

NAN_BITS = struct.unpack(">d", b"\x7f\xf8\x00\x00\x00\x00\x00\x00")[0]


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def accepted(check, data: bytes) -> bool:
    try:
        check(data)
    except ProtocolError:
        return False
    return True


# --- byte vectors ----------------------------------------------------------

VECTORS = [
    (None, b"\x00"),
    (42, b"\x01\x00\x00\x00\x00\x00\x00\x00\x2a"),
    (-1, b"\x01" + b"\xff" * 8),
    (INT64_MIN, b"\x01\x80" + b"\x00" * 7),
    (INT64_MAX, b"\x01\x7f" + b"\xff" * 7),
    (1.5, b"\x02\x3f\xf8\x00\x00\x00\x00\x00\x00"),
    (-0.0, b"\x02\x80\x00\x00\x00\x00\x00\x00\x00"),
    (NAN_BITS, b"\x02\x7f\xf8\x00\x00\x00\x00\x00\x00"),
    (math.inf, b"\x02\x7f\xf0\x00\x00\x00\x00\x00\x00"),
    (Decimal("1.10"), b"\x03\x00\x041.10"),
    (Decimal("-0"), b"\x03\x00\x02-0"),
    (Decimal("1E+3"), b"\x03\x00\x041E+3"),
    (Decimal("NaN"), b"\x03\x00\x03NaN"),
    (Decimal("-sNaN7"), b"\x03\x00\x06-sNaN7"),
    (Decimal("-Infinity"), b"\x03\x00\x09-Infinity"),
    ("", b"\x04" + u32(0)),
    ("é", b"\x04\x00\x00\x00\x02\xc3\xa9"),
    ("a\U0001f600", b"\x04" + u32(5) + b"a\xf0\x9f\x98\x80"),
    (b"", b"\x05" + u32(0)),
    (b"\x00\xff", b"\x05" + u32(2) + b"\x00\xff"),
    ([], b"\x06" + u32(0)),
    ([1, [2]], b"\x06" + u32(2) + b"\x01" + (1).to_bytes(8, "big")
     + b"\x06" + u32(1) + b"\x01" + (2).to_bytes(8, "big")),
    ({}, b"\x07" + u32(0)),
    ({"a": None}, b"\x07" + u32(1) + u16(1) + b"a\x00"),
    ({"é": True, "b": [None]}, b"\x07" + u32(2) + u16(2) + b"\xc3\xa9\x08\x01"
     + u16(1) + b"b\x06" + u32(1) + b"\x00"),
    (True, b"\x08\x01"),
    (False, b"\x08\x00"),
]


@pytest.mark.parametrize(("value", "encoded"), VECTORS, ids=[repr(v) for v, _ in VECTORS])
def test_encoding_matches_the_issue_vectors(value, encoded):
    assert _codec.encode(value) == encoded
    assert same_value(_codec.decode(encoded), value)
    assert _codec.validate(encoded) == len(encoded)


def test_decode_returns_exact_types_for_bool_and_int():
    assert _codec.decode(b"\x08\x01") is True
    assert _codec.decode(b"\x08\x00") is False
    assert type(_codec.decode(_codec.encode(1))) is int


def test_nan_payload_bits_survive():
    quiet_nan_with_payload = struct.unpack(">d", b"\x7f\xf8\x00\x00\x00\x00\xbe\xef")[0]
    encoded = _codec.encode(quiet_nan_with_payload)
    assert encoded == b"\x02\x7f\xf8\x00\x00\x00\x00\xbe\xef"
    assert struct.pack(">d", _codec.decode(encoded)) == encoded[1:]


# --- types stored as another type --------------------------------------------


class MyInt(int):
    pass


class Colour(enum.IntEnum):
    RED = 3


class MyFloat(float):
    pass


class MyStr(str):
    def __str__(self) -> str:
        return "not the value"


class MyBytes(bytes):
    pass


class MyDecimal(Decimal):
    def __str__(self) -> str:
        return "999"


class MyList(list):
    pass


class MyDict(dict):
    pass


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ((1, "a"), [1, "a"]),
        (((),), [[]]),
        (MyInt(7), 7),
        (Colour.RED, 3),
        (MyFloat(-0.0), -0.0),
        (MyStr("é"), "é"),
        (MyBytes(b"x"), b"x"),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"abc")[1:], b"bc"),
        (MyDecimal("1.50"), Decimal("1.50")),
        (MyList([1]), [1]),
        (MyDict(a=1), {"a": 1}),
        (collections.OrderedDict([("b", 1), ("a", 2)]), {"b": 1, "a": 2}),
        (collections.namedtuple("P", "x y")(1, 2), [1, 2]),
    ],
    ids=repr,
)
def test_subclasses_and_aliases_are_stored_as_their_base_type(value, stored):
    decoded = _codec.decode(_codec.encode(value))
    assert same_value(decoded, stored)
    assert _codec.encode(value) == _codec.encode(stored)


# --- round trips ---------------------------------------------------------------


@given(values)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_every_value_round_trips_exactly(value):
    encoded = _codec.encode(value)
    assert same_value(_codec.decode(encoded), value)
    assert _codec.validate(encoded) == len(encoded)


@given(st.decimals(allow_nan=True, allow_infinity=True))
@settings(max_examples=300)
def test_decimal_keeps_its_text(value):
    decoded = _codec.decode(_codec.encode(value))
    assert type(decoded) is Decimal
    assert str(decoded) == str(value)
    assert decoded.as_tuple() == value.as_tuple()


@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_float_keeps_its_bits(value):
    decoded = _codec.decode(_codec.encode(value))
    assert struct.pack(">d", decoded) == struct.pack(">d", value)


@given(st.text())
def test_str_round_trips_through_utf8(value):
    encoded = _codec.encode(value)
    assert encoded[5:] == value.encode("utf-8")
    assert _codec.decode(encoded) == value


def test_decimal_decode_ignores_a_lenient_thread_context():
    # Under a context that does not trap InvalidOperation, Decimal("junk") is
    # NaN; the codec must refuse the text instead.
    junk = b"\x03" + u16(4) + b"junk"
    with decimal.localcontext() as ctx:
        ctx.traps[decimal.InvalidOperation] = False
        with pytest.raises(ProtocolError):
            _codec.decode(junk)


def test_large_values_grow_the_buffer_past_its_inline_chunk():
    big = bytes(range(256)) * 40
    text = "é" * 3000
    value = [big, {"t": text}, list(range(200))]
    encoded = _codec.encode(value)
    assert len(encoded) > INLINE_BUFFER_BYTES * 4
    assert same_value(_codec.decode(encoded), value)
    assert encoded[:5] == b"\x06" + u32(3)
    assert encoded[5:10] == b"\x05" + u32(len(big))
    assert encoded[10:10 + len(big)] == big


def test_a_value_just_over_the_inline_chunk():
    for size in range(INLINE_BUFFER_BYTES - 8, INLINE_BUFFER_BYTES + 8):
        value = b"x" * size
        assert _codec.encode(value) == b"\x05" + u32(size) + value


# --- nesting depth ---------------------------------------------------------------


def test_nesting_at_the_limit_round_trips():
    value = nested_lists(MAX_NESTING_DEPTH)
    encoded = _codec.encode(value)
    assert _codec.decode(encoded) == value
    assert _codec.validate(encoded) == len(encoded)


@pytest.mark.parametrize("container", ["list", "dict"])
def test_nesting_one_level_too_deep_is_refused(container):
    value: object = [] if container == "list" else {}
    for _ in range(MAX_NESTING_DEPTH):
        value = [value] if container == "list" else {"k": value}
    with pytest.raises(UnsupportedValueError, match="nesting deeper than 128"):
        _codec.encode(value)


def test_decoding_refuses_nesting_one_level_too_deep():
    too_deep = (b"\x06" + u32(1)) * MAX_NESTING_DEPTH + b"\x06" + u32(0)
    for check in (_codec.decode, _codec.validate):
        with pytest.raises(ProtocolError, match="nesting"):
            check(too_deep)
    at_limit = (b"\x06" + u32(1)) * (MAX_NESTING_DEPTH - 1) + b"\x06" + u32(0)
    assert _codec.validate(at_limit) == len(at_limit)
    assert _codec.decode(at_limit) == nested_lists(MAX_NESTING_DEPTH)


def test_deep_input_far_past_the_limit_does_not_recurse():
    hostile = (b"\x06" + u32(1)) * 100_000 + b"\x00"
    for check in (_codec.decode, _codec.validate):
        with pytest.raises(ProtocolError):
            check(hostile)


# --- unsupported values ------------------------------------------------------------


class Weird:
    # isinstance() would consult this; the codec must not run user code.
    @property
    def __class__(self):  # type: ignore[override]
        raise AssertionError("the codec ran user code")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "^set is not a storable value$"),
        (object(), "^object is not a storable value$"),
        (Weird(), "^Weird is not a storable value$"),
        (2**63, "^int needs 65 bits with its sign, over the 64 stored$"),
        (INT64_MIN - 1, "^int needs 65 bits"),
        (10**30, "^int needs 101 bits"),
        (complex(1, 2), "^complex is not"),
        ([1, 2, {"a": {3}}], r"^\$\[2\]\['a'\]: set is not a storable value$"),
        ({"x": [0, frozenset()]}, r"^\$\['x'\]\[1\]: frozenset is not"),
        ({1: "a"}, "^dict keys must be str, not int$"),
        ([{"a": {b"k": 1}}], r"^\$\[0\]\['a'\]: dict keys must be str, not bytes$"),
        ("a\udc80", "^str is not encodable as UTF-8"),
        ([("x", "\ud800")], r"^\$\[0\]\[1\]: str is not encodable"),
        ({"k\udc80": 1}, r"^\$\['k\\udc80'\]: dict key is not encodable"),
        (Decimal("1" * 65536), "Decimal text of 65536 characters"),
        ({"k" * 65536: 1}, "dict key of 65536 bytes is over the limit"),
        (memoryview(b"abcd")[::2], "memoryview cannot be read as bytes: .*contiguous"),
        (type, "^type is not a storable value$"),
    ],
    ids=lambda v: v[:20] if type(v) is str else type(v).__name__,
)
def test_unsupported_values_are_refused_with_type_and_path(value, message):
    with pytest.raises(UnsupportedValueError, match=message) as info:
        _codec.encode(value)
    assert isinstance(info.value, KvError)
    assert isinstance(info.value, TypeError)


def test_decimal_text_at_the_limit_is_stored():
    value = Decimal("1" * 65535)
    assert _codec.decode(_codec.encode(value)) == value


def test_a_huge_int_is_refused_without_formatting_it():
    # str() of an int this large is itself an error in Python 3.11+.
    with pytest.raises(UnsupportedValueError, match="int needs 33221 bits"):
        _codec.encode(1 << 33219)


# --- malformed input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x09", "unknown value tag 0x09"),
        (b"\xff", "unknown value tag 0xff"),
        (b"\x01\x00", "truncated"),
        (b"\x02" + b"\x00" * 7, "truncated"),
        (b"\x03\x00\x05" + b"1.2", "truncated"),
        (b"\x03\x00\x03" + b"1.x", "invalid Decimal text"),
        (b"\x03\x00\x00", "invalid Decimal text"),
        (b"\x03\x00\x03 12", "invalid Decimal text"),
        (b"\x03\x00\x031_0", "invalid Decimal text"),
        (b"\x03\x00\x171e999999999999999999999", "invalid Decimal text"),
        (b"\x04" + u32(2) + b"\xc3", "truncated"),
        (b"\x04" + u32(1) + b"\xc3", "invalid UTF-8"),
        (b"\x04" + u32(3) + b"\xed\xa0\x80", "invalid UTF-8"),
        (b"\x04" + u32(2) + b"\xc0\x80", "invalid UTF-8"),
        (b"\x04" + u32(4) + b"\xf4\x90\x80\x80", "invalid UTF-8"),
        (b"\x05" + u32(0xFFFFFFFF), "truncated"),
        (b"\x06" + u32(0xFFFFFFFF), "list of 4294967295 items in 0 bytes"),
        (b"\x06" + u32(2) + b"\x00", "list of 2 items in 1 bytes"),
        (b"\x06" + u32(2) + b"\x00\x01", "truncated"),
        (b"\x07" + u32(1) + u16(1) + b"a", "truncated"),
        (b"\x07" + u32(1) + u16(1) + b"\xff\x00", "invalid UTF-8"),
        (b"\x07" + u32(1000) + b"\x00" * 100, "map of 1000 entries in 100 bytes"),
        (b"\x08\x02", "bool byte 0x02"),
        (b"\x08", "truncated"),
        (b"\x00\x00", "trailing bytes after the value: 1$"),
    ],
    ids=repr,
)
def test_malformed_input_raises_protocol_error(data, message):
    for check in (_codec.decode, _codec.validate):
        with pytest.raises(ProtocolError, match=message):
            check(data)


def test_decode_and_validate_take_any_bytes_like_object():
    encoded = _codec.encode({"a": [1, "b"]})
    for data in (bytearray(encoded), memoryview(encoded)):
        assert _codec.decode(data) == {"a": [1, "b"]}
        assert _codec.validate(data) == len(encoded)


def test_a_repeated_map_key_keeps_its_last_value():
    data = b"\x07" + u32(2) + u16(1) + b"a\x08\x00" + u16(1) + b"a\x08\x01"
    assert _codec.validate(data) == len(data)
    assert _codec.decode(data) == {"a": True}


def test_map_keys_survive_the_decoded_key_cache():
    # Far more keys than cache slots, ASCII and not, both sides of the
    # cached-length limit, each decoded twice so later ones evict earlier.
    keys = [f"k{i}" for i in range(3000)] + ["x" * 32, "y" * 33, "é", "ü" * 16, "", "\x00"]
    value = {k: i for i, k in enumerate(keys)}
    encoded = _codec.encode(value)
    for _ in range(2):
        decoded = _codec.decode(encoded)
        assert list(decoded) == keys
        assert list(decoded.values()) == list(range(len(keys)))


@st.composite
def mutated_encodings(draw):
    data = bytearray(_codec.encode(draw(values)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "truncate", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@given(mutated_encodings())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_encodings_never_crash_and_validate_agrees_with_decode(data):
    decoded_ok = accepted(_codec.decode, data)
    validated_ok = accepted(_codec.validate, data)
    assert decoded_ok == validated_ok
    if decoded_ok:
        # Whatever is accepted re-encodes to something equally valid.
        assert _codec.validate(_codec.encode(_codec.decode(data))) > 0


@given(st.binary(max_size=64))
@settings(max_examples=500)
def test_random_bytes_never_crash_and_validate_agrees_with_decode(data):
    assert accepted(_codec.decode, data) == accepted(_codec.validate, data)


@given(values, st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_every_truncation_is_refused(value, data):
    encoded = _codec.encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    for check in (_codec.decode, _codec.validate):
        with pytest.raises(ProtocolError):
            check(encoded[:cut])


# --- the UTF-8 and Decimal rules of validate() match Python's own -------------------------------


def python_accepts_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


utf8_like = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=4),
        st.sampled_from([b"\xed\xa0\x80", b"\xed\x9f\xbf", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80",
                         b"\xe0\x9f\xbf", b"\xe0\xa0\x80", b"\xf0\x8f\xbf\xbf", b"\xf0\x90\x80\x80",
                         b"\xc1\xbf", b"\xc2\x80", b"\xef\xbf\xbf", b"\xf5\x80\x80\x80"]),
        st.text(max_size=10).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.just(b"abcdefgh" * 2),
    ),
    max_size=8,
).map(b"".join)


@given(utf8_like)
@settings(max_examples=500)
@example(b"abcdefg\xc3")
@example(b"abcdefgh\xe2\x82")
def test_utf8_rule_is_pythons(raw):
    for data in (b"\x04" + u32(len(raw)) + raw,
                 b"\x07" + u32(1) + u16(len(raw)) + raw + b"\x00"):
        assert accepted(_codec.validate, data) == python_accepts_utf8(raw)
        assert accepted(_codec.decode, data) == python_accepts_utf8(raw)


def python_accepts_decimal(text: str) -> bool:
    try:
        Decimal(text)
    except decimal.InvalidOperation:
        return False
    return True


EMAX = 999999999999999999
decimal_like = st.one_of(
    st.text(alphabet="0123456789+-.eE", max_size=12),
    st.text(alphabet="0123456789+-.eEinfatyINFATYsS", max_size=10),
    st.builds(
        lambda sign, coefficient, point, exponent: f"{sign}{coefficient[:point]}.{coefficient[point:]}E{exponent}",
        st.sampled_from(["", "-", "+"]),
        st.text(alphabet="0123456789", min_size=1, max_size=6),
        st.integers(0, 6),
        st.integers(-2 * EMAX - 10, EMAX + 10) | st.sampled_from(
            [EMAX, EMAX + 1, -2 * EMAX + 1, -2 * EMAX, -2 * EMAX + 2, 2**63 - 1, -(2**63), 2**64, -(2**64)]
        ),
    ),
    st.sampled_from(["Infinity", "inf", "INFINITY", "Infinit", "infinityy", "nan", "sNaN",
                     "NaN0012", "snan1", "nan-1", "sna", "-inf", "+NaN", "1e", "1e+",
                     ".", "-.", ".5", "5.", "00e1", "0e-1999999999999999997",
                     "0e-1999999999999999998", "1" * 30 + "e999999999999999970"]),
)


@given(decimal_like)
@settings(max_examples=1000)
def test_decimal_rule_is_pythons_on_its_alphabet(text):
    raw = text.encode("ascii")
    assume(len(raw) <= 0xFFFF)
    data = b"\x03" + u16(len(raw)) + raw
    expected = python_accepts_decimal(text)
    assert accepted(_codec.validate, data) == expected
    assert accepted(_codec.decode, data) == expected
    if expected:
        assert str(_codec.decode(data)) == str(Decimal(text))


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "prefix", "stored"),
    [
        ("a", b"", b"a"),
        (b"a", b"", b"a"),
        ("é", b"", b"\xc3\xa9"),
        (b"\x00\xff", b"", b"\x00\xff"),
        ("k", b"ns:", b"ns:k"),
        (b"k", b"ns:", b"ns:k"),
        (MyStr("s"), b"", b"s"),
        (MyBytes(b"b"), b"p:", b"p:b"),
        ("x" * (MAX_KEY_BYTES - 3), b"ns:", b"ns:" + b"x" * (MAX_KEY_BYTES - 3)),
        ("y" * 300, b"ns:", b"ns:" + b"y" * 300),
        ("z" * 253, b"ns:", b"ns:" + b"z" * 253),
        ("x" * MAX_KEY_BYTES, b"", b"x" * MAX_KEY_BYTES),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_key_rule_joins_prefix_and_utf8(key, prefix, stored):
    assert _codec.key_bytes(key, prefix) == stored
    assert _codec.key_frame(key, prefix) == u16(len(stored)) + stored


@pytest.mark.parametrize(
    ("key", "prefix", "message"),
    [
        ("", b"", "^key must not be empty$"),
        (b"", b"", "^key must not be empty$"),
        ("", b"ns:", "^key must not be empty$"),
        (1, b"", "^key must be str or bytes, not int$"),
        (None, b"", "^key must be str or bytes, not NoneType$"),
        (bytearray(b"a"), b"", "^key must be str or bytes, not bytearray$"),
        (memoryview(b"a"), b"", "^key must be str or bytes, not memoryview$"),
        (("a",), b"", "^key must be str or bytes, not tuple$"),
        ("\udc80", b"", "^key is not encodable as UTF-8"),
        ("x" * (MAX_KEY_BYTES + 1), b"", "^key is 65536 bytes encoded, over the limit of 65535$"),
        ("é" * 32768, b"", "^key is 65536 bytes encoded"),
        ("x" * (MAX_KEY_BYTES - 2), b"ns:",
         "^key is 65536 bytes encoded with its 3-byte namespace prefix, over the limit of 65535$"),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_key_rule_refuses_bad_keys(key, prefix, message):
    for helper in (_codec.key_bytes, _codec.key_frame):
        with pytest.raises(InvalidKeyError, match=message):
            helper(key, prefix)


def test_str_and_bytes_keys_are_one_key():
    assert _codec.key_bytes("dé") == _codec.key_bytes("dé".encode())


@given(st.one_of(st.text(min_size=1, max_size=300), st.binary(min_size=1, max_size=300)),
       st.binary(max_size=300))
def test_key_bytes_is_prefix_plus_utf8(key, prefix):
    raw = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    if isinstance(key, str) and not python_accepts_utf8(raw):
        with pytest.raises(InvalidKeyError):
            _codec.key_bytes(key, prefix)
        return
    assert _codec.key_bytes(key, prefix) == prefix + raw


# --- the cdef API, through a helper module compiled against _codec.pxd -------------------------
#
# WriteBuffer and the Reader helpers have no Python face; _engine and
# _protocol cimport them. This small module does the same, so the tests reach
# them exactly as those modules do.

CDEF_API_PYX = r'''
from libc.stdint cimport int64_t
from kvstore._codec cimport (
    WriteBuffer, Reader, KeyRef, rd_init, rd_u8, rd_u16, rd_u32, rd_u64, rd_i64, rd_raw,
    encode_value, decode_value, skip_value, key_ref, key_release, encode_key,
)

def frame(int code, values):
    cdef WriteBuffer buf = WriteBuffer.new()
    cdef Py_ssize_t at = buf.start_frame(code)
    for value in values:
        encode_value(buf, value)
    buf.end_frame(at)
    return buf.to_bytes()

def encode_each(values):
    # One buffer for all; a value that fails must leave no bytes behind.
    cdef WriteBuffer buf = WriteBuffer.new()
    errors = []
    for value in values:
        try:
            encode_value(buf, value)
        except Exception as exc:
            errors.append(type(exc).__name__)
    return buf.to_bytes(), errors

def writes():
    cdef WriteBuffer buf = WriteBuffer.new()
    buf.write_u8(0xAB)
    buf.write_u16(0x0102)
    buf.write_u32(0x03040506)
    buf.write_u64(0x0708090A0B0C0D0E)
    buf.write_i64(-2)
    buf.write_raw(b"xyz", 3)
    return buf.to_bytes()

def consume_then_write(bytes data, Py_ssize_t n, bytes more):
    cdef WriteBuffer buf = WriteBuffer.new()
    buf.write_raw(data, len(data))
    buf.consume(n)
    buf.write_raw(more, len(more))
    return buf.to_bytes()

def clear_and_reset(bytes data):
    cdef WriteBuffer buf = WriteBuffer.new()
    buf.write_raw(data, len(data))
    buf.clear()
    buf.write_raw(b"a", 1)
    after_clear = buf.to_bytes()
    buf.write_raw(data, len(data))
    buf.reset()
    buf.write_raw(b"b", 1)
    return after_clear, buf.to_bytes()

def grow_refused(bytes data, Py_ssize_t extra):
    cdef WriteBuffer buf = WriteBuffer.new()
    buf.write_raw(data, len(data))
    try:
        buf.ensure(extra)
    except MemoryError:
        buf.write_raw(b"!", 1)
        return buf.to_bytes()
    raise AssertionError("ensure did not refuse")

def read_fields(bytes data):
    cdef Reader rd
    rd_init(&rd, data, len(data))
    fields = [rd_u8(&rd), rd_u16(&rd), rd_u32(&rd), rd_u64(&rd), rd_i64(&rd)]
    fields.append(rd_raw(&rd, 3)[:3])
    return fields, rd.pos

def read_u32_at_end(bytes data):
    cdef Reader rd
    rd_init(&rd, data, len(data))
    rd_raw(&rd, len(data) - 3)
    return rd_u32(&rd)

def decode_stream(bytes data):
    # Back-to-back values in one Reader, the way a frame carries them.
    cdef Reader rd
    cdef Reader skipper
    rd_init(&rd, data, len(data))
    rd_init(&skipper, data, len(data))
    out = []
    while rd.pos < rd.length:
        start = rd.pos
        out.append(decode_value(&rd))
        if skip_value(&skipper) != rd.pos - start or skipper.pos != rd.pos:
            raise AssertionError("skip_value and decode_value disagree")
    return out

def key_roundtrip(bytes prefix, key):
    cdef KeyRef ref
    cdef WriteBuffer buf = WriteBuffer.new()
    key_ref(&ref, prefix, len(prefix), key)
    try:
        joined = ref.ptr[:ref.length]
        heap = ref.heap != NULL
    finally:
        key_release(&ref)
    encode_key(buf, prefix, len(prefix), key)
    return joined, heap, buf.to_bytes()
'''


@pytest.fixture(scope="module")
def cdef_api(tmp_path_factory):
    import importlib.util
    import pathlib

    from Cython.Build import cythonize
    from setuptools import Extension
    from setuptools.dist import Distribution

    package_dir = pathlib.Path(_codec.__file__).parent
    work = tmp_path_factory.mktemp("cdef_api")
    source = work / "codec_cdef_api.pyx"
    source.write_text(CDEF_API_PYX)
    extension = Extension("codec_cdef_api", [str(source)], include_dirs=[str(package_dir)],
                          extra_compile_args=["-O0"])
    modules = cythonize([extension], include_path=[str(package_dir.parent)], quiet=True,
                        compiler_directives={"language_level": 3})
    dist = Distribution({"ext_modules": modules, "script_args": [
        "build_ext", "--build-lib", str(work), "--build-temp", str(work / "tmp"), "-q"]})
    dist.parse_command_line()
    dist.run_commands()
    (built,) = work.glob("codec_cdef_api*.so")
    spec = importlib.util.spec_from_file_location("codec_cdef_api", built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frame_length_is_back_patched(cdef_api):
    data = cdef_api.frame(0x07, [42, "é"])
    body = _codec.encode(42) + _codec.encode("é")
    assert data == b"\x07" + u32(len(body)) + body
    assert cdef_api.frame(0x01, []) == b"\x01" + u32(0)


def test_frame_larger_than_the_inline_chunk(cdef_api):
    values = [b"x" * 700, list(range(100))]
    body = b"".join(_codec.encode(v) for v in values)
    assert cdef_api.frame(0x02, values) == b"\x02" + u32(len(body)) + body


def test_a_failed_encode_leaves_the_buffer_as_it_was(cdef_api):
    big = b"y" * 2000
    data, errors = cdef_api.encode_each(
        [1, [2, "x" * 600, {3}], "two", {"a": big, "b": object()}, 2**64, [big, [set()]], None])
    assert errors == ["UnsupportedValueError"] * 4
    assert data == _codec.encode(1) + _codec.encode("two") + _codec.encode(None)


def test_write_helpers_are_big_endian(cdef_api):
    assert cdef_api.writes() == (b"\xab\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e"
                                 + b"\xff" * 7 + b"\xfe" + b"xyz")


@pytest.mark.parametrize(("n", "left"), [(0, b"abcdef"), (2, b"cdef"), (6, b""), (9, b""), (-1, b"abcdef")])
def test_consume_drops_a_sent_prefix(cdef_api, n, left):
    assert cdef_api.consume_then_write(b"abcdef", n, b"+") == left + b"+"


def test_consume_in_a_grown_buffer(cdef_api):
    data = bytes(range(256)) * 5
    assert cdef_api.consume_then_write(data, 1000, b"end") == data[1000:] + b"end"


def test_clear_and_reset_empty_the_buffer(cdef_api):
    assert cdef_api.clear_and_reset(b"q" * 10) == (b"a", b"b")
    assert cdef_api.clear_and_reset(b"q" * 5000) == (b"a", b"b")


@pytest.mark.parametrize("size", [10, 5000])
def test_an_impossible_growth_raises_memory_error_and_keeps_the_contents(cdef_api, size):
    data = b"k" * size
    assert cdef_api.grow_refused(data, 2**63 - 1) == data + b"!"


def test_reader_helpers_are_big_endian_and_bounds_checked(cdef_api):
    data = (b"\xab\x01\x02\x03\x04\x05\x06" + b"\x07\x08\x09\x0a\x0b\x0c\x0d\x0e"
            + b"\xff" * 7 + b"\xfe" + b"xyz")
    fields, pos = cdef_api.read_fields(data)
    assert fields == [0xAB, 0x0102, 0x03040506, 0x0708090A0B0C0D0E, -2, b"xyz"]
    assert pos == len(data)
    for cut in range(len(data)):
        with pytest.raises(ProtocolError, match="truncated"):
            cdef_api.read_fields(data[:cut])
    with pytest.raises(ProtocolError, match="4 bytes needed at offset 2, 3 left"):
        cdef_api.read_u32_at_end(b"\x00\x00abc")


@given(st.lists(values, max_size=5))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_values_decode_back_to_back_from_one_reader(cdef_api, items):
    data = b"".join(_codec.encode(v) for v in items)
    decoded = cdef_api.decode_stream(data)
    assert len(decoded) == len(items)
    assert all(same_value(d, v) for d, v in zip(decoded, items))


@pytest.mark.parametrize(
    ("prefix", "key", "heap"),
    [(b"", "k", False), (b"ns:", "k", False), (b"ns:", "x" * 253, False),
     (b"ns:", "x" * 254, True), (b"p" * 300, b"k", True)],
    ids=["borrowed", "inline", "inline-full", "heap", "long-prefix"],
)
def test_key_ref_joins_inline_or_on_the_heap(cdef_api, prefix, key, heap):
    raw = key.encode() if isinstance(key, str) else key
    assert cdef_api.key_roundtrip(prefix, key) == (prefix + raw, heap, u16(len(prefix + raw)) + prefix + raw)
