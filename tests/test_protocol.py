"""The compiled protocol without sockets (docs/protocol.md): the Processor on
pre-encoded buffers, and RequestWriter -> Processor -> ReplyReader round trips.

Frames in the byte-level tests are built by hand from the document, not by
RequestWriter, so the layout is checked against the spec rather than against
the writer. Runs under AddressSanitizer in CI (.ci/run).
"""

from __future__ import annotations

import ctypes
import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvstore
from kvstore import _codec
from kvstore._protocol import (
    BINARY_OP_LIMIT,
    COMMANDS,
    DEFAULT_MAX_PAYLOAD,
    FLAG_ALLOWED_BEFORE_AUTH,
    FLAG_MAY_GROW_MEMORY,
    FLAG_READ,
    FLAG_WRITE,
    FRAMINGS,
    MAX_BATCH_KEYS,
    MISSING,
    NEED_MORE,
    OP_CAS,
    OP_DECR,
    OP_DEL,
    OP_EXISTS,
    OP_EXPIRE,
    OP_FLUSH,
    OP_GET,
    OP_INCR,
    OP_INFO,
    OP_MDEL,
    OP_MEXISTS,
    OP_MGET,
    OP_MSET,
    OP_PERSIST,
    OP_PING,
    OP_SCAN,
    OP_SET,
    OP_SETNX,
    OP_TTL,
    Processor,
    ReplyReader,
    RequestWriter,
    ServerStats,
    command,
)
from kvstore.errors import (
    IntegerOverflowError,
    InvalidArgumentError,
    InvalidKeyError,
    KvError,
    ProtocolError,
    UnsupportedValueError,
    ValueTooLargeError,
    WrongTypeError,
    error_class,
)
from tests.conftest import FakeClock
from tests.strategies import INT64_MAX, INT64_MIN, keys, same_value, small_keys, values

OK, NULL, ERROR, INVALID, CAS_FAILED = range(5)
PING = bytes([OP_PING, 0, 0, 0, 0])
MAX_TTL_MS = 2**40


# ---------------------------------------------------------------- frame building


def frame(op: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BI", op, len(payload)) + payload


def key(k: bytes | str) -> bytes:
    data = k.encode() if isinstance(k, str) else k
    return struct.pack(">H", len(data)) + data


def u8(v: int) -> bytes:
    return struct.pack(">B", v)


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def u64(v: int) -> bytes:
    return struct.pack(">Q", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


enc = _codec.encode


def set_frame(k, value, ttl_ms: int = 0, op: int = OP_SET) -> bytes:
    return frame(op, key(k) + u64(ttl_ms) + enc(value))


def replies(data: bytes) -> list[tuple[int, bytes]]:
    """Split reply bytes into (status, payload); every byte must belong to a frame."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 5, f"truncated reply header at {pos}: {data[pos:]!r}"
        status, length = struct.unpack_from(">BI", data, pos)
        assert status <= CAS_FAILED, f"unknown status {status}"
        assert len(data) - pos - 5 >= length, "truncated reply payload"
        out.append((status, data[pos + 5:pos + 5 + length]))
        pos += 5 + length
    return out


def error_of(payload: bytes) -> tuple[str, str]:
    (n,) = struct.unpack_from(">H", payload)
    return payload[2:2 + n].decode("ascii"), payload[2 + n:].decode("utf-8")


def run(processor: Processor, *frames: bytes) -> list[tuple[int, bytes]]:
    return replies(processor.feed(b"".join(frames)))


def one(processor: Processor, data: bytes) -> tuple[int, bytes]:
    (reply,) = run(processor, data)
    return reply


@pytest.fixture
def proc(engine) -> Processor:
    return Processor(engine)


# ---------------------------------------------------------------- the issue's example


def test_set_then_get_answers_the_issue_bytes_exactly(proc):
    out = proc.feed(set_frame("foo", 42) + frame(OP_GET, key("foo")))
    assert out == bytes.fromhex("00 00000000" "00 00000009 01 000000000000002a")


def test_get_of_a_missing_key_answers_null_with_no_payload(proc):
    assert proc.feed(frame(OP_GET, key("missing"))) == bytes.fromhex("01 00000000")


def test_set_request_bytes_match_the_document():
    writer = RequestWriter()
    writer.set("foo", 42)
    assert writer.take() == bytes.fromhex(
        "02 00000016 0003 666f6f 0000000000000000 01 000000000000002a")


# ---------------------------------------------------------------- docs/protocol.md


DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _wire_blocks() -> list[list[tuple[bytes, bytes]]]:
    """Each ```wire block of the document as (requests, expected replies)
    exchanges: consecutive C: lines, then the S: lines answering them."""
    blocks, block, inside = [], [], False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line == "```wire"
            if not inside and block:
                blocks.append(block)
                block = []
            continue
        if not inside or not line.strip():
            continue
        side, _, rest = line.partition(":")
        data = bytes.fromhex(rest.split("#", 1)[0].replace("|", ""))
        if side == "C":
            if not block or block[-1][1]:
                block.append((b"", b""))
            block[-1] = (block[-1][0] + data, block[-1][1])
        else:
            assert side == "S" and block, line
            block[-1] = (block[-1][0], block[-1][1] + data)
    return blocks


@pytest.mark.parametrize("block", _wire_blocks())
def test_every_wire_example_of_the_document_replays_byte_for_byte(block, clock):
    proc = Processor(kvstore.Engine(clock=clock))   # frozen: ttls do not count down
    for requests, expected in block:
        assert proc.feed(requests) == expected


def test_the_document_has_wire_examples():
    assert len(_wire_blocks()) >= 10


# ---------------------------------------------------------------- every op


def test_set_stores_what_engine_reads_and_the_other_way_round(proc, engine):
    assert one(proc, set_frame(b"k", {"a": [1, "x", None]})) == (OK, b"")
    assert engine.get("k") == {"a": [1, "x", None]}
    engine.namespace("ns").set("n", 1.5)
    assert one(proc, frame(OP_GET, key("ns:n"))) == (OK, enc(1.5))


def test_set_with_ttl_expires_on_the_engine_clock(proc, clock):
    run(proc, set_frame("t", "v", ttl_ms=1500))
    status, payload = one(proc, frame(OP_TTL, key("t")))
    assert (status, struct.unpack(">q", payload)[0]) == (OK, 1500)
    clock.tick(1.499)
    assert one(proc, frame(OP_GET, key("t")))[0] == OK
    clock.tick(0.001)
    assert one(proc, frame(OP_GET, key("t"))) == (NULL, b"")


def test_set_without_ttl_clears_an_old_ttl(proc):
    run(proc, set_frame("t", 1, ttl_ms=5000), set_frame("t", 2))
    assert one(proc, frame(OP_TTL, key("t"))) == (OK, i64(-1))


def test_setnx_stores_only_when_absent(proc, engine):
    assert run(proc, set_frame("n", 1, op=OP_SETNX), set_frame("n", 2, op=OP_SETNX)) == [
        (OK, b"\x01"), (OK, b"\x00")]
    assert engine.get("n") == 1


def test_del_and_exists_answer_one_byte(proc):
    run(proc, set_frame("d", 1))
    assert run(proc, frame(OP_EXISTS, key("d")), frame(OP_DEL, key("d")),
               frame(OP_DEL, key("d")), frame(OP_EXISTS, key("d"))) == [
        (OK, b"\x01"), (OK, b"\x01"), (OK, b"\x00"), (OK, b"\x00")]


def test_incr_and_decr_start_at_zero_and_answer_i64(proc, engine):
    assert run(proc, frame(OP_INCR, key("c") + i64(5)), frame(OP_DECR, key("c") + i64(7))) == [
        (OK, i64(5)), (OK, i64(-2))]
    assert engine.get("c") == -2


def test_incr_of_a_non_int_is_an_error_reply_and_changes_nothing(proc, engine):
    engine.set("s", "text")
    status, payload = one(proc, frame(OP_INCR, key("s") + i64(1)))
    assert status == ERROR
    assert error_of(payload)[0] == WrongTypeError.kind
    assert engine.get("s") == "text"


def test_incr_overflow_is_an_error_reply_and_keeps_the_value(proc, engine):
    engine.set("big", INT64_MAX)
    status, payload = one(proc, frame(OP_INCR, key("big") + i64(1)))
    assert (status, error_of(payload)[0]) == (ERROR, IntegerOverflowError.kind)
    assert one(proc, frame(OP_DECR, key("big") + i64(INT64_MIN)))[0] == ERROR
    assert engine.get("big") == INT64_MAX


def test_cas_swaps_only_on_the_exact_encoding(proc, engine):
    engine.set("c", 1)
    cas = lambda expected, new: frame(OP_CAS, key("c") + u64(0) + enc(expected) + enc(new))
    assert run(proc, cas(True, 2), cas(1.0, 2), cas(1, 2), cas(1, 3)) == [
        (CAS_FAILED, b""), (CAS_FAILED, b""), (OK, b""), (CAS_FAILED, b"")]
    assert engine.get("c") == 2
    assert one(proc, frame(OP_CAS, key("none") + u64(0) + enc(None) + enc(1))) == (CAS_FAILED, b"")


def test_expire_sets_a_ttl_on_existing_keys_only(proc, engine, clock):
    engine.set("e", 1)
    assert run(proc, frame(OP_EXPIRE, key("e") + u64(2000)),
               frame(OP_EXPIRE, key("gone") + u64(2000))) == [(OK, b"\x01"), (OK, b"\x00")]
    clock.tick(2)
    assert engine.get("e") is None


def test_expire_with_ttl_zero_is_invalid_argument(proc, engine):
    engine.set("e", 1)
    status, payload = one(proc, frame(OP_EXPIRE, key("e") + u64(0)))
    assert (status, error_of(payload)[0]) == (INVALID, InvalidArgumentError.kind)
    assert engine.ttl("e") is None


@pytest.mark.parametrize("op", [OP_SET, OP_SETNX, OP_EXPIRE])
def test_ttl_over_the_engine_limit_is_invalid_argument(proc, engine, op):
    payload = key("e") + u64(MAX_TTL_MS + 1) + (enc(1) if op != OP_EXPIRE else b"")
    engine.set("e", 0)
    status, reply = one(proc, frame(op, payload))
    assert (status, error_of(reply)[0]) == (INVALID, InvalidArgumentError.kind)
    assert engine.get("e") == 0 and engine.ttl("e") is None


def test_ttl_answers_null_for_missing_minus_one_for_persistent_else_ms(proc, engine, clock):
    engine.set("p", 1)
    engine.set("t", 1, ttl=10)
    clock.tick(2.5)
    assert run(proc, frame(OP_TTL, key("missing")), frame(OP_TTL, key("p")),
               frame(OP_TTL, key("t"))) == [(NULL, b""), (OK, i64(-1)), (OK, i64(7500))]


def test_mget_answers_values_and_null_tags_in_order(proc, engine):
    engine.mset({"a": 1, "b": "two"})
    payload = u16(3) + key("a") + key("zz") + key("b")
    assert one(proc, frame(OP_MGET, payload)) == (OK, u16(3) + enc(1) + b"\x00" + enc("two"))
    assert one(proc, frame(OP_MGET, u16(0))) == (OK, u16(0))


def test_mset_stores_every_pair_with_one_ttl(proc, engine, clock):
    payload = u16(2) + u64(1000) + key("a") + enc(1) + key("b") + enc([2])
    assert one(proc, frame(OP_MSET, payload)) == (OK, b"")
    assert engine.mget(["a", "b"]) == [1, [2]]
    clock.tick(1)
    assert engine.mget(["a", "b"]) == [None, None]


@pytest.mark.parametrize("bad_item, kind", [
    (key("c") + b"\x09", ProtocolError.kind),             # unknown value tag
    (key("c") + b"\x08\x02", ProtocolError.kind),         # bool byte 2
    (key("") + enc(3), InvalidKeyError.kind),            # empty key
    (key("c") + b"\x04\x00\x00\x00\x02\xff\xfe", ProtocolError.kind),  # bad UTF-8
], ids=["tag", "bool", "empty-key", "utf8"])
def test_mset_with_one_bad_item_writes_nothing(proc, engine, bad_item, kind):
    engine.set("a", "old")
    payload = u16(3) + u64(0) + key("a") + enc("new") + key("b") + enc(2) + bad_item
    status, reply = one(proc, frame(OP_MSET, payload))
    assert (status, error_of(reply)[0]) == (INVALID, kind)
    assert engine.get("a") == "old" and not engine.exists("b")


def test_mdel_counts_removed_keys_and_checks_every_key_first(proc, engine):
    engine.mset({"a": 1, "b": 2, "c": 3})
    status, reply = one(proc, frame(OP_MDEL, u16(3) + key("a") + key("bbbb") + key("")))
    assert (status, error_of(reply)[0]) == (INVALID, InvalidKeyError.kind)
    assert engine.exists("a")
    assert one(proc, frame(OP_MDEL, u16(3) + key("a") + key("b") + key("x"))) == (
        OK, struct.pack(">I", 2))
    assert engine.mexists(["a", "b", "c"]) == [False, False, True]


def test_mexists_answers_a_byte_per_key(proc, engine):
    engine.set("a", None)
    assert one(proc, frame(OP_MEXISTS, u16(2) + key("a") + key("b"))) == (OK, u16(2) + b"\x01\x00")


def test_ping_echoes_its_payload(proc):
    assert run(proc, PING, frame(OP_PING, b"hello")) == [(OK, b""), (OK, b"hello")]


def test_flush_removes_the_prefix_only_and_counts(proc, engine):
    engine.mset({"ns:a": 1, "ns:b": 2, "other": 3})
    assert one(proc, frame(OP_FLUSH, key("ns:"))) == (OK, u64(2))
    assert engine.get("other") == 3
    assert one(proc, frame(OP_FLUSH, u16(0))) == (OK, u64(1))
    assert len(engine) == 0


def test_info_is_one_map_with_engine_and_server_figures(engine):
    stats = ServerStats()
    proc = Processor(engine, DEFAULT_MAX_PAYLOAD, stats, lambda: {"uptime_s": 1.5, "connections": 3})
    requests = set_frame("k", 1) + frame(OP_GET, key("k")) + frame(OP_GET, key("k")) + PING
    run(proc, requests)
    status, payload = one(proc, frame(OP_INFO))
    assert status == OK
    info = _codec.decode(payload)
    assert info["keys"] == 1 and info["hits"] == 2
    assert {"memory_bytes", "misses", "expired"} <= set(info)
    assert info["uptime_s"] == 1.5 and info["connections"] == 3
    assert info["calls"] == {"SET": 1, "GET": 2, "PING": 1, "INFO": 1}
    assert info["bytes_in"] == len(requests) + 5
    assert info["bytes_out"] == 5 + 14 + 14 + 5
    assert stats.commands() == info["calls"]


def test_stats_are_shared_by_the_processors_of_one_server(engine):
    stats = ServerStats()
    first, second = Processor(engine, stats=stats), Processor(engine, stats=stats)
    first.feed(PING)
    second.feed(PING + frame(0x7F))
    assert stats.commands() == {"PING": 2, "UNKNOWN": 1}
    assert stats.bytes_in == 15 and first.bytes_received == 5 and second.bytes_received == 10


# ---------------------------------------------------------------- pipelining and splitting


def _mixed_frames() -> list[bytes]:
    return [
        set_frame("a", 1), set_frame("b", "x" * 600), frame(OP_GET, key("a")),
        frame(OP_INCR, key("a") + i64(2)), frame(OP_GET, key("b")), frame(0x7F, b"junk"),
        frame(OP_MGET, u16(2) + key("a") + key("b")), frame(OP_GET, key("")),
        frame(OP_DEL, key("a")), PING, frame(OP_GET, key("a")),
    ]


def _expected_mixed() -> list[tuple[int, bytes]]:
    return [
        (OK, b""), (OK, b""), (OK, enc(1)), (OK, i64(3)), (OK, enc("x" * 600)),
        (INVALID, b""), (OK, u16(2) + enc(3) + enc("x" * 600)), (INVALID, b""),
        (OK, b"\x01"), (OK, b""), (NULL, b""),
    ]


def _without_error_text(reply_list):
    return [(s, b"" if s == INVALID else p) for s, p in reply_list]


def test_pipelined_frames_in_one_feed_answer_in_order_in_one_buffer(proc):
    frames = _mixed_frames()
    assert _without_error_text(run(proc, *frames)) == _expected_mixed()


def test_frames_split_at_every_byte_boundary_answer_the_same(clock):
    data = b"".join(_mixed_frames())
    whole = Processor(kvstore.Engine(clock=clock)).feed(data)
    for cut in range(1, len(data)):
        proc = Processor(kvstore.Engine(clock=clock))
        assert proc.feed(data[:cut]) + proc.feed(data[cut:]) == whole, f"cut at {cut}"


def test_frames_fed_one_byte_at_a_time_answer_the_same(proc, clock):
    data = b"".join(_mixed_frames())
    whole = Processor(kvstore.Engine(clock=clock)).feed(data)
    assert b"".join(proc.feed(data[i:i + 1]) for i in range(len(data))) == whole


def test_feed_accepts_bytearray_and_memoryview(proc):
    assert proc.feed(bytearray(PING)) == frame(OK)
    assert proc.feed(memoryview(PING + PING)[5:]) == frame(OK)


def test_empty_feed_answers_nothing(proc):
    assert proc.feed(b"") == b""
    assert proc.feed(PING[:3]) == b""
    assert proc.feed(b"") == b""
    assert proc.feed(PING[3:]) == frame(OK)


# ---------------------------------------------------------------- bad input


MALFORMED = [
    ("unknown-op-0x00", frame(0x00)),
    ("unknown-op-0x12", frame(0x12, b"abc")),
    ("unknown-op-0xff", frame(0xFF, b"\x00" * 40)),
    ("empty-payload", frame(OP_GET)),
    ("key-longer-than-payload", frame(OP_GET, u16(10) + b"abc")),
    ("trailing-bytes", frame(OP_GET, key("a") + b"!")),
    ("set-without-value", frame(OP_SET, key("a") + u64(0))),
    ("set-bad-tag", frame(OP_SET, key("a") + u64(0) + b"\x42")),
    ("set-two-values", frame(OP_SET, key("a") + u64(0) + enc(1) + enc(2))),
    ("set-truncated-string", frame(OP_SET, key("a") + u64(0) + b"\x04\x00\x00\x00\x09ab")),
    ("set-huge-list-count", frame(OP_SET, key("a") + u64(0) + b"\x06\xff\xff\xff\xff")),
    ("set-bad-decimal", frame(OP_SET, key("a") + u64(0) + b"\x03\x00\x03a.b")),
    ("cas-one-value", frame(OP_CAS, key("a") + u64(0) + enc(1))),
    ("incr-short-delta", frame(OP_INCR, key("a") + b"\x00\x01")),
    ("mget-count-beyond-payload", frame(OP_MGET, u16(65535) + key("a"))),
    ("mget-count-short", frame(OP_MGET, u16(1) + key("a") + key("b"))),
    ("mset-count-beyond-payload", frame(OP_MSET, u16(9) + u64(0) + key("a") + enc(1))),
    ("mdel-truncated", frame(OP_MDEL, u16(2) + key("a") + b"\x00")),
    ("mexists-no-count", frame(OP_MEXISTS, b"\x00")),
    ("flush-truncated-prefix", frame(OP_FLUSH, u16(5) + b"ns")),
    ("info-with-payload", frame(OP_INFO, b"?")),
    ("ttl-empty-key", frame(OP_TTL, u16(0))),
]


@pytest.mark.parametrize("bad", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_frame_is_invalid_and_the_connection_goes_on(proc, engine, bad):
    engine.set("a", "kept")
    (status, payload), *after = run(proc, bad, PING, frame(OP_GET, key("a")))
    assert status == INVALID
    kind, message = error_of(payload)
    assert kind in {ProtocolError.kind, InvalidKeyError.kind} and message
    assert after == [(OK, b""), (OK, enc("kept"))]
    assert not proc.framing_lost
    engine._check()


def test_a_frame_after_a_malformed_one_in_the_same_feed_still_runs(proc):
    assert [s for s, _ in run(proc, frame(0xEE, b"x" * 10), set_frame("k", 1),
                              frame(OP_GET, key("k")))] == [INVALID, OK, OK]


def test_error_reply_message_is_readable(proc):
    status, payload = one(proc, frame(0x7F))
    assert (status, error_of(payload)) == (INVALID, ("protocol", "unknown op 0x7f"))


def test_length_over_the_limit_loses_framing_without_buffering(engine):
    proc = Processor(engine, 64)
    out = proc.feed(PING + b"\x02\xff\xff\xff\xff" + b"x" * 1000)
    (first, second) = replies(out)
    assert first == (OK, b"")
    assert second[0] == INVALID and error_of(second[1])[0] == ValueTooLargeError.kind
    assert proc.framing_lost
    # Nothing after the header is parsed or kept, now or later.
    assert proc.feed(PING) == b""
    assert proc.feed(b"y" * 100_000) == b""


def test_header_over_the_limit_split_across_feeds_is_caught_when_whole(engine):
    proc = Processor(engine, 64)
    assert proc.feed(b"\x01\x00\x00") == b""
    assert not proc.framing_lost
    out = proc.feed(b"\x00\x41" + b"z" * 65)
    assert replies(out)[0][0] == INVALID and proc.framing_lost


def test_payload_of_exactly_max_payload_is_accepted(engine):
    proc = Processor(engine, 64)
    assert proc.feed(frame(OP_PING, b"p" * 64)) == frame(OK, b"p" * 64)
    assert not proc.framing_lost


def test_incomplete_frame_within_the_limit_waits_for_its_rest(engine):
    proc = Processor(engine)
    data = set_frame("big", b"v" * 300_000)
    assert proc.feed(data[:70_000]) == b""
    assert proc.feed(data[70_000:200_000]) == b""
    assert proc.feed(data[200_000:] + PING) == frame(OK) + frame(OK)
    assert engine.get("big") == b"v" * 300_000


def test_processor_refuses_a_namespace_view_and_bad_limits(engine):
    with pytest.raises(InvalidArgumentError):
        Processor(engine.namespace("ns"))
    for bad in (0, -1, 2**32, 1.5, True, "64"):
        with pytest.raises(InvalidArgumentError):
            Processor(engine, bad)


# ---------------------------------------------------------------- fuzz


_sentinel_key = b"\xfe" * 300   # no fuzzed frame names it, short of a FLUSH


def _fuzz_engine():
    engine = kvstore.Engine()
    engine.set(_sentinel_key, {"keep": [1, 2.5, "x"]})
    return engine


def _check_survived(engine: kvstore.Engine, stats: ServerStats, out: bytes) -> None:
    replies(out)   # every reply is a well-formed frame
    engine._check()
    if "FLUSH" not in stats.commands():
        assert engine.get(_sentinel_key) == {"keep": [1, 2.5, "x"]}
    # The engine still serves a fresh connection.
    assert Processor(engine).feed(set_frame("after", 1) + frame(OP_GET, key("after"))) == (
        frame(OK) + frame(OK, enc(1)))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(min_value=0, max_value=300))
def test_random_bytes_never_crash_or_corrupt(data, cut):
    engine, stats = _fuzz_engine(), ServerStats()
    proc = Processor(engine, 4096, stats)
    out = proc.feed(data[:cut]) + proc.feed(data[cut:])
    _check_survived(engine, stats, out)


_request = st.one_of(
    st.builds(lambda k, v: ("set", k, v), small_keys, values),
    st.builds(lambda k: ("get", k), small_keys),
    st.builds(lambda k: ("delete", k), small_keys),
    st.builds(lambda k, d: ("incr", k, d), small_keys, st.integers(-5, 5)),
    st.builds(lambda k, a, b: ("cas", k, a, b), small_keys, values, values),
    st.builds(lambda ks: ("mget", ks), st.lists(small_keys, max_size=5)),
    st.builds(lambda ps: ("mset", ps), st.lists(st.tuples(small_keys, values), max_size=4)),
    st.builds(lambda ks: ("mdel", ks), st.lists(small_keys, max_size=4)),
    st.builds(lambda k, t: ("expire", k, t), small_keys, st.integers(1, 100)),
    st.just(("ping",)),
)


def _encode(requests) -> bytes:
    writer = RequestWriter()
    for name, *args in requests:
        getattr(writer, name)(*args)
    return writer.take()


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)),
    st.tuples(st.just("length"), st.integers(0, 10**6), st.sampled_from(
        [0, 1, 4, 255, 4096, 2**31, 2**32 - 1])),
)


def _mutate(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in mutations:
        if not buf:
            break
        at %= len(buf)
        if kind == "flip":
            buf[at] ^= arg
        elif kind == "insert":
            buf[at:at] = arg
        elif kind == "delete":
            del buf[at:at + arg]
        else:
            buf[at:at + 4] = struct.pack(">I", arg)
    return bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(_request, min_size=1, max_size=8),
       mutations=st.lists(_mutation, min_size=1, max_size=3),
       cut=st.integers(min_value=0, max_value=10**6))
def test_mutated_valid_frames_never_crash_or_corrupt(requests, mutations, cut):
    data = _mutate(_encode(requests), mutations)
    engine, stats = _fuzz_engine(), ServerStats()
    proc = Processor(engine, 4096, stats)
    cut %= len(data) + 1
    out = proc.feed(data[:cut]) + proc.feed(data[cut:])
    _check_survived(engine, stats, out)


# ---------------------------------------------------------------- writer -> processor -> reader


class Remote:
    """The Engine API through RequestWriter, Processor and ReplyReader."""

    def __init__(self, engine: kvstore.Engine, prefix: bytes = b"") -> None:
        self.writer = RequestWriter(prefix)
        self.processor = Processor(engine)
        self.reader = ReplyReader()

    def call(self, name: str, op: int, *args):
        getattr(self.writer, name)(*args)
        self.reader.feed(self.processor.feed(self.writer.take()))
        result = self.reader.read(op)
        assert len(self.reader) == 0
        return result


_OPS = {c.name: c.op for c in COMMANDS}


def _outcome(call):
    try:
        result = call()
    except KvError as exc:
        return type(exc)
    return MISSING if result is None else result


_contract_request = st.one_of(
    _request.filter(lambda request: request[0] != "ping"),   # Engine has no ping()
    st.builds(lambda k: ("exists", k), small_keys),
    st.builds(lambda k: ("ttl", k), small_keys),
    st.builds(lambda k, d: ("decr", k, d), small_keys,
              st.one_of(st.integers(INT64_MIN, INT64_MAX), st.integers(-3, 3))),
    st.builds(lambda k, v: ("setnx", k, v), small_keys, values),
    st.builds(lambda ks: ("mexists", ks), st.lists(small_keys, max_size=4)),
    st.just(("flush",)),
    st.builds(lambda k: ("persist", k), small_keys),
    st.builds(lambda k: ("getdel", k), small_keys),
    st.builds(lambda k, v, t: ("getset", k, v, t), small_keys, values,
              st.sampled_from([None, 0.05, 30])),
    st.builds(lambda k, v: ("delete_if_equal", k, v), small_keys, values),
)


@settings(max_examples=60, deadline=None)
@given(requests=st.lists(_contract_request, max_size=25), namespaced=st.booleans())
def test_round_trips_answer_what_the_engine_answers(requests, namespaced):
    # One frozen clock for both: with real ones, EXPIRE then TTL can straddle a
    # millisecond on one engine and not the other (49.999 against 50.0).
    clock = FakeClock()
    direct_engine, served_engine = kvstore.Engine(clock=clock), kvstore.Engine(clock=clock)
    direct = direct_engine.namespace("ns") if namespaced else direct_engine
    remote = Remote(served_engine, b"ns:" if namespaced else b"")
    for name, *args in requests:
        expected = _outcome(lambda: getattr(direct, name)(*args))
        # None and MISSING both read as MISSING: GET/TTL tell them apart on
        # the wire, the engine answers None for either.
        got = _outcome(lambda: remote.call(name, _OPS[name], *args))
        assert same_value(got, expected), (name, args, got, expected)
    assert len(served_engine) == len(direct_engine)


def test_round_trip_of_every_call(engine, clock):
    remote = Remote(engine)
    assert remote.call("set", OP_SET, "k", [1, {"a": b"b"}], 10) is None
    assert remote.call("get", OP_GET, "k") == [1, {"a": b"b"}]
    assert remote.call("get", OP_GET, "missing") is MISSING
    assert remote.call("ttl", OP_TTL, "k") == 10.0
    assert remote.call("ttl", OP_TTL, "missing") is MISSING
    assert remote.call("expire", OP_EXPIRE, "k", 0.0015) is True
    assert remote.call("ttl", OP_TTL, "k") == 0.002
    assert remote.call("setnx", OP_SETNX, "n", 1) is True
    assert remote.call("setnx", OP_SETNX, "n", 2) is False
    assert remote.call("ttl", OP_TTL, "n") is None
    assert remote.call("incr", OP_INCR, "n", 41) == 42
    assert remote.call("decr", OP_DECR, "n") == 41
    assert remote.call("cas", OP_CAS, "n", 41, "x") is True
    assert remote.call("cas", OP_CAS, "n", 41, "y") is False
    assert remote.call("mset", OP_MSET, {"a": 1, "b": 2}) is None
    assert remote.call("mget", OP_MGET, ("a", "b", "c")) == [1, 2, None]
    assert remote.call("mexists", OP_MEXISTS, iter(["a", "c"])) == [True, False]
    assert remote.call("mdel", OP_MDEL, ["a", "b", "c"]) == 2
    assert remote.call("delete", OP_DEL, "n") is True
    assert remote.call("exists", OP_EXISTS, "n") is False
    assert remote.call("ping", OP_PING) is True
    assert remote.call("info", OP_INFO)["calls"]["SET"] == 1
    assert remote.call("flush", OP_FLUSH) == 1
    assert len(engine) == 0


def test_round_trip_of_the_issue_9_calls(engine, clock):
    remote = Remote(engine)
    remote.call("set", OP_SET, "t", 1, 60)
    assert remote.call("persist", OP_PERSIST, "t") is True
    assert remote.call("persist", OP_PERSIST, "t") is False
    assert remote.call("persist", OP_PERSIST, "missing") is False
    assert engine.ttl("t") is None
    assert remote.call("getdel", _OPS["getdel"], "t") == 1
    assert remote.call("getdel", _OPS["getdel"], "t") is MISSING and "t" not in engine
    assert remote.call("getset", _OPS["getset"], "g", [1, "x"]) is MISSING
    assert remote.call("getset", _OPS["getset"], "g", 2.5, 10) == [1, "x"]
    assert engine.get("g") == 2.5 and engine.ttl("g") == 10.0
    assert remote.call("delete_if_equal", _OPS["delete_if_equal"], "g", 2) is False
    assert remote.call("delete_if_equal", _OPS["delete_if_equal"], "g", 2.5) is True
    assert "g" not in engine
    assert remote.call("scan", OP_SCAN) == (0, [])


# ---------------------------------------------------------------- SCAN


def _scan_all(remote: Remote, **options) -> list[bytes]:
    cursor, seen, steps = 0, [], 0
    while True:
        cursor, keys = remote.call("scan", OP_SCAN, cursor, options.get("match"),
                                   options.get("count", 100))
        seen += keys
        steps += 1
        assert steps < 10_000, "the scan must end"
        if cursor == 0:
            return seen


def test_scan_of_a_namespace_returns_its_keys_once_without_the_prefix(engine):
    engine.mset({f"ns:k{i}": i for i in range(500)})
    engine.mset({f"other{i}": i for i in range(300)})
    engine.set("ns:", "the bare prefix is not a key of the namespace")
    keys = _scan_all(Remote(engine, b"ns:"), count=7)
    assert sorted(keys) == sorted(f"k{i}".encode() for i in range(500))
    assert len(_scan_all(Remote(engine), count=1000)) == 801


def test_scan_matches_the_glob_after_the_prefix_as_engine_scan_does(engine):
    engine.mset({f"ns:{name}": 1 for name in ("a1", "a2", "b1", "ab", "a[")})
    remote = Remote(engine, b"ns:")
    for match in ("a?", "a*", "*1", "[ab]1", "[^a]*", "a\\[", "", b"a2"):
        expected = sorted(k for k in engine.namespace("ns").scan_iter(match=match))
        assert sorted(_scan_all(remote, match=match)) == expected, match
    assert sorted(_scan_all(remote, match="a?")) == [b"a1", b"a2", b"a[", b"ab"]


def test_scan_answers_the_bytes_the_document_shows(proc, engine):
    engine.set("ns:a", 1)
    request = frame(OP_SCAN, u64(0) + struct.pack(">I", 10) + key("ns:") + u8(0))
    assert one(proc, request) == (OK, u64(0) + struct.pack(">I", 1) + key("a"))


@pytest.mark.parametrize("payload", [
    u64(0) + struct.pack(">I", 0) + u16(0) + u8(0),                  # count 0
    u64(0) + struct.pack(">I", 2**20 + 1) + u16(0) + u8(0),          # count over the limit
    u64(2**64 - 1) + struct.pack(">I", 10) + u16(0) + u8(0),         # the one invalid cursor
    u64(0) + struct.pack(">I", 10) + u16(0) + u8(2),                 # has_match neither 0 nor 1
    u64(0) + struct.pack(">I", 10) + u16(0) + u8(1) + u16(3) + b"a",  # match cut short
    u64(0) + struct.pack(">I", 10) + u16(0) + u8(0) + b"!",          # trailing byte
    u64(0) + struct.pack(">I", 10),                                  # no prefix field
], ids=["count-0", "count-big", "cursor-max", "has-match-2", "short-match", "trailing",
        "no-prefix"])
def test_a_malformed_scan_is_invalid_and_the_connection_goes_on(proc, payload):
    assert run(proc, frame(OP_SCAN, payload), PING)[0][0] == INVALID
    assert one(proc, PING) == (OK, b"")


@pytest.mark.parametrize("options", [
    {"cursor": -1}, {"cursor": 2**64 - 1}, {"cursor": True}, {"cursor": "0"},
    {"count": 0}, {"count": 2**20 + 1}, {"count": 1.5}, {"match": 3},
])
def test_writer_refuses_bad_scan_arguments(options):
    writer = RequestWriter()
    with pytest.raises(InvalidArgumentError):
        writer.scan(**options)
    assert len(writer) == 0


# ---------------------------------------------------------------- the command table


def test_command_table_rows_name_their_op_flags_and_retry_class():
    assert [c.index for c in COMMANDS] == list(range(1, len(COMMANDS) + 1))
    assert len({c.op for c in COMMANDS}) == len({c.name for c in COMMANDS}) == len(COMMANDS)
    for c in COMMANDS:
        assert 0 < c.op < BINARY_OP_LIMIT == 0x20, c
        assert command(c.name) is c
        assert c.retry_safe == (not c.flags & FLAG_WRITE), c
        assert not c.flags & FLAG_MAY_GROW_MEMORY or c.flags & FLAG_WRITE, c
        assert hasattr(RequestWriter, c.name), c
    get, scan, ping = command("get"), command("scan"), command("ping")
    assert (get.wire_name, get.op, get.flags) == ("GET", OP_GET, FLAG_READ)
    assert (scan.op, scan.wire_name) == (0x16, "SCAN") and scan.retry_safe
    assert ping.flags & FLAG_ALLOWED_BEFORE_AUTH and not get.flags & FLAG_ALLOWED_BEFORE_AUTH
    assert command("set").flags == FLAG_WRITE | FLAG_MAY_GROW_MEMORY
    assert command("delete").wire_name == "DEL" and not command("delete").retry_safe
    assert sorted((c.op, c.wire_name) for c in COMMANDS if 0x12 <= c.op) == [
        (0x12, "PERSIST"), (0x13, "GETDEL"), (0x14, "GETSET"), (0x15, "DELETE_IF_EQUAL"),
        (0x16, "SCAN"), (0x17, "SNAPSHOT"), (0x18, "CONFIG_GET"), (0x19, "CONFIG_SET")]
    with pytest.raises(InvalidArgumentError):
        command("GET")
    assert FRAMINGS["binary"] is Processor
    # issue 13: RESP is the one other framing, its commands in rows without op codes.
    from kvstore._protocol import RespProcessor
    assert set(FRAMINGS) == {"binary", "resp"} and FRAMINGS["resp"] is RespProcessor


def _documented_ops() -> dict[int, tuple[str, str]]:
    """docs/protocol.md's "Ops" table: code -> (name, request payload)."""
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## Ops"):text.index("### ", text.index("## Ops"))]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("0x"):
            rows[int(cells[0], 16)] = (cells[1], cells[2])
    return rows


def test_command_table_and_the_document_agree():
    documented = _documented_ops()
    assert documented == {c.op: (c.wire_name, c.arguments) for c in COMMANDS}
    text = DOC.read_text(encoding="utf-8")
    for c in COMMANDS:
        # Every op has a section of its own with a byte example.
        assert re.search(rf"^### .*\b{c.wire_name}\b", text, re.M), c.wire_name


def test_every_command_is_counted_by_its_wire_name(engine):
    stats = ServerStats()
    proc = Processor(engine, stats=stats)
    for c in COMMANDS:
        proc.feed(frame(c.op))   # malformed for most: counted all the same
    proc.feed(frame(0x1F))
    assert stats.commands() == {**{c.wire_name: 1 for c in COMMANDS}, "UNKNOWN": 1}


def test_namespaced_writer_prefixes_keys_and_flushes_its_namespace_only(engine):
    engine.set("other", 1)
    remote = Remote(engine, b"ns:")
    remote.call("set", OP_SET, "k", 1)
    assert engine.get("ns:k") == 1
    assert remote.call("flush", OP_FLUSH) == 1
    assert engine.get("other") == 1


def test_error_replies_raise_the_engine_error_classes(engine):
    remote = Remote(engine)
    remote.call("set", OP_SET, "s", "text")
    with pytest.raises(WrongTypeError, match="int"):
        remote.call("incr", OP_INCR, "s", 1)
    remote.call("set", OP_SET, "max", INT64_MAX)
    with pytest.raises(IntegerOverflowError):
        remote.call("incr", OP_INCR, "max", 1)
    assert remote.call("get", OP_GET, "max") == INT64_MAX


# ---------------------------------------------------------------- RequestWriter


@pytest.mark.parametrize("call, error", [
    (lambda w: w.set(b"", 1), InvalidKeyError),
    (lambda w: w.get(1), InvalidKeyError),
    (lambda w: w.get("\ud800"), InvalidKeyError),
    (lambda w: w.set("k", {1, 2}), UnsupportedValueError),
    (lambda w: w.set("k", 2**64), UnsupportedValueError),
    (lambda w: w.set("k", 1, ttl=0), InvalidArgumentError),
    (lambda w: w.set("k", 1, ttl=-1.0), InvalidArgumentError),
    (lambda w: w.expire("k", None), InvalidArgumentError),
    (lambda w: w.incr("k", 1.5), InvalidArgumentError),
    (lambda w: w.incr("k", 2**63), InvalidArgumentError),
    (lambda w: w.cas("k", 1, object()), UnsupportedValueError),
    (lambda w: w.mget(["a", b""]), InvalidKeyError),
    (lambda w: w.mget("abc"), InvalidArgumentError),
    (lambda w: w.mset([("a", 1), ("b", set())]), UnsupportedValueError),
    # Pairs follow dict.update's rule (issue 9): ["b", 2] is a pair, 5 is not.
    (lambda w: w.mset([("a", 1), 5]), InvalidArgumentError),
    (lambda w: w.mset([("a", 1), "b2"]), InvalidArgumentError),
    (lambda w: w.mset([("a", 1, 2)]), InvalidArgumentError),
    (lambda w: w.mdel(["k"] * (MAX_BATCH_KEYS + 1)), InvalidArgumentError),
    (lambda w: w.set("k", b"x" * 200), ValueTooLargeError),
    (lambda w: w.mset([(f"k{i}", b"x" * 20) for i in range(10)]), ValueTooLargeError),
])
def test_writer_refuses_bad_calls_and_leaves_the_buffer_as_it_was(call, error):
    writer = RequestWriter(b"ns:", max_payload=128)
    writer.ping()
    writer.set("kept", 1)
    before = len(writer)
    with pytest.raises(error):
        call(writer)
    assert len(writer) == before
    assert writer.take() == frame(OP_PING) + frame(OP_SET, key("ns:kept") + u64(0) + enc(1))


def test_writer_prefix_counts_toward_the_key_limit():
    writer = RequestWriter(b"ns:")
    writer.get(b"k" * (65535 - 3))
    with pytest.raises(InvalidKeyError):
        writer.get(b"k" * (65535 - 2))


def test_writer_frames_a_payload_of_exactly_max_payload():
    # key 2 + 1, ttl 8, value tag 1 + length 4 + 3: 19 payload bytes.
    writer = RequestWriter(max_payload=19)
    writer.set("k", b"abc")
    assert len(writer) == 5 + 19
    with pytest.raises(ValueTooLargeError):
        writer.set("k", b"abcd")


def test_writer_batch_of_max_keys_fits_one_frame():
    writer = RequestWriter()
    writer.mexists([b"k"] * MAX_BATCH_KEYS)
    data = writer.take()
    assert data[:7] == bytes([OP_MEXISTS]) + struct.pack(">I", 2 + 3 * MAX_BATCH_KEYS) + u16(
        MAX_BATCH_KEYS)


def test_writer_take_empties_it():
    writer = RequestWriter()
    writer.ping()
    assert writer.take() == frame(OP_PING)
    assert len(writer) == 0 and writer.take() == b""


@pytest.mark.parametrize("args", [(b"x" * 65535,), ("ns:",), (b"", 0)])
def test_writer_refuses_bad_options(args):
    with pytest.raises((InvalidArgumentError, TypeError)):
        RequestWriter(*args)


# ---------------------------------------------------------------- ReplyReader


def test_reader_needs_more_until_the_reply_is_whole():
    reader = ReplyReader()
    reply = frame(OK, enc("hello"))
    for i in range(len(reply)):
        assert reader.read(OP_GET) is NEED_MORE
        reader.feed(reply[i:i + 1])
    assert reader.read(OP_GET) == "hello"
    assert reader.read(OP_GET) is NEED_MORE


def test_reader_reads_pipelined_replies_in_order():
    reader = ReplyReader()
    reader.feed(frame(OK) + frame(NULL) + frame(OK, b"\x01") + frame(CAS_FAILED) + frame(OK, i64(-1)))
    assert [reader.read(op) for op in (OP_SET, OP_GET, OP_DEL, OP_CAS, OP_TTL)] == [
        None, MISSING, True, False, None]


def test_reader_consumes_an_error_reply_and_raises_its_class():
    reader = ReplyReader()
    reader.feed(frame(ERROR, u16(10) + b"wrong_type" + b"not an int") + frame(OK, i64(7)))
    with pytest.raises(WrongTypeError, match="not an int"):
        reader.read(OP_INCR)
    assert reader.read(OP_INCR) == 7


def test_reader_maps_an_unknown_kind_to_kv_error():
    reader = ReplyReader()
    reader.feed(frame(INVALID, u16(9) + b"from_2030" + "\u00e9".encode()))
    with pytest.raises(KvError, match="\u00e9") as caught:
        reader.read(OP_GET)
    assert type(caught.value) is KvError


@pytest.mark.parametrize("op, reply", [
    (OP_GET, frame(0x05)),
    (OP_SET, frame(NULL)),
    (OP_SET, frame(OK, b"\x00")),
    (OP_DEL, frame(OK, b"\x02")),
    (OP_DEL, frame(OK)),
    (OP_INCR, frame(OK, b"\x00" * 4)),
    (OP_GET, frame(OK, enc(1) + b"\x00")),
    (OP_GET, frame(OK, b"\x09")),
    (OP_TTL, frame(OK, i64(-5))),
    (OP_MGET, frame(OK, u16(2) + enc(1))),
    (OP_MEXISTS, frame(OK, u16(2) + b"\x01")),
    (OP_INFO, frame(OK, enc([1]))),
    (OP_CAS, frame(NULL)),
    (OP_GET, frame(ERROR, b"\x00")),
], ids=lambda v: v.hex() if isinstance(v, bytes) else str(v))
def test_reader_raises_protocol_error_for_an_unparsable_reply(op, reply):
    reader = ReplyReader()
    reader.feed(reply)
    with pytest.raises(ProtocolError):
        reader.read(op)


def test_reader_refuses_an_unknown_op_without_consuming():
    reader = ReplyReader()
    reader.feed(frame(OK))
    with pytest.raises(InvalidArgumentError):
        reader.read(0x42)
    assert reader.read(OP_SET) is None


@given(value=values)
@settings(max_examples=50, deadline=None)
def test_value_survives_writer_processor_reader(value):
    remote = Remote(kvstore.Engine())
    remote.call("set", OP_SET, "v", value)
    got = remote.call("get", OP_GET, "v")
    assert same_value(got, _codec.decode(_codec.encode(value)))


@given(k=keys)
@settings(max_examples=50, deadline=None)
def test_any_valid_key_round_trips(k):
    engine = kvstore.Engine()
    remote = Remote(engine)
    remote.call("set", OP_SET, k, 1)
    assert engine.get(k) == 1


# ---------------------------------------------------------------- refusals: exact kind, nothing changed


_PRELOAD = {"k": 1, "s": "text", "max": INT64_MAX, "min": INT64_MIN}
_TOO_DEEP = b"\x06\x00\x00\x00\x01" * 129 + b"\x00"

# name: (request, status, kind). Each leaves the engine exactly as it was.
REFUSED = {
    "SET truncated ttl": (frame(OP_SET, key("k") + b"\x00\x00\x00"), INVALID, "protocol"),
    "SET truncated int": (frame(OP_SET, key("k") + u64(0) + b"\x01\x00\x00"), INVALID,
                          "protocol"),
    "SET map key not UTF-8": (frame(OP_SET, key("k") + u64(0) + b"\x07" + struct.pack(">I", 1)
                                    + u16(1) + b"\xff\x00"), INVALID, "protocol"),
    "SET nested 129 deep": (frame(OP_SET, key("k") + u64(0) + _TOO_DEEP), INVALID, "protocol"),
    "SET ttl all ones": (frame(OP_SET, key("k") + b"\xff" * 8 + enc(2)), INVALID,
                         "invalid_argument"),
    "SETNX empty key": (frame(OP_SETNX, u16(0) + u64(0) + enc(2)), INVALID, "invalid_key"),
    "DEL empty key": (frame(OP_DEL, u16(0)), INVALID, "invalid_key"),
    "EXPIRE ttl over the limit": (frame(OP_EXPIRE, key("k") + u64(MAX_TTL_MS + 1)), INVALID,
                                  "invalid_argument"),
    "DECR past INT64_MIN": (frame(OP_DECR, key("min") + i64(1)), ERROR, "overflow"),
    "DECR by INT64_MIN": (frame(OP_DECR, key("k") + i64(INT64_MIN)), ERROR, "overflow"),
    "INCR on a str": (frame(OP_INCR, key("s") + i64(1)), ERROR, "wrong_type"),
    "CAS bad expected value": (frame(OP_CAS, key("k") + u64(0) + b"\x08\x07" + enc(2)), INVALID,
                               "protocol"),
    "CAS ttl over the limit": (frame(OP_CAS, key("k") + u64(MAX_TTL_MS + 1) + enc(1) + enc(2)),
                               INVALID, "invalid_argument"),
    "TTL trailing byte": (frame(OP_TTL, key("k") + b"\x00"), INVALID, "protocol"),
    "MGET empty key last": (frame(OP_MGET, u16(2) + key("kkkk") + u16(0) + b"\x00" * 3),
                            INVALID, "invalid_key"),
    "MSET ttl over the limit": (frame(OP_MSET, u16(1) + u64(MAX_TTL_MS + 1) + key("k") + enc(5)),
                                INVALID, "invalid_argument"),
    "MSET trailing byte": (frame(OP_MSET, u16(1) + u64(0) + key("k") + enc(5) + b"\x00"),
                           INVALID, "protocol"),
    "MSET count under the items": (frame(OP_MSET, u16(1) + u64(0) + key("k") + enc(5)
                                         + key("s") + enc(6)), INVALID, "protocol"),
    "MDEL empty key last": (frame(OP_MDEL, u16(2) + key("k") + u16(0) + b"\x00" * 3), INVALID,
                            "invalid_key"),
    "MEXISTS trailing byte": (frame(OP_MEXISTS, u16(1) + key("k") + b"\x00"), INVALID,
                              "protocol"),
    "FLUSH trailing byte": (frame(OP_FLUSH, u16(0) + b"\x00"), INVALID, "protocol"),
    "FLUSH without payload": (frame(OP_FLUSH), INVALID, "protocol"),
}


def _state(engine: kvstore.Engine) -> tuple:
    names = [*_PRELOAD, "x"]
    return (len(engine), engine.info()["writes"],
            [(enc(engine.get(n)) if engine.exists(n) else None, engine.ttl(n)) for n in names])


@pytest.mark.parametrize("request_bytes, status, kind", REFUSED.values(), ids=REFUSED.keys())
def test_refused_request_names_its_kind_and_changes_nothing(request_bytes, status, kind):
    engine = kvstore.Engine()
    engine.mset(_PRELOAD)
    before = _state(engine)
    (refused, refused_payload), after = run(Processor(engine), request_bytes,
                                            frame(OP_GET, key("k")))
    assert refused == status and error_of(refused_payload)[0] == kind
    assert error_class(kind).kind == kind
    assert after == (OK, enc(1))
    assert _state(engine) == before
    engine._check()


# ---------------------------------------------------------------- fuzz: one reply per frame


def _complete_frames(stream: bytes, max_payload: int) -> tuple[list[int], bool]:
    """Ops of the frames a processor must answer, and whether a header over
    max_payload ends the stream."""
    ops, pos = [], 0
    while len(stream) - pos >= 5:
        op, length = struct.unpack_from(">BI", stream, pos)
        if length > max_payload:
            return ops, True
        if pos + 5 + length > len(stream):
            break
        ops.append(op)
        pos += 5 + length
    return ops, False


# Frames with a true length and a random op and payload reach every payload
# parser, where random bytes mostly stop at the payload limit.
_framed_garbage = st.lists(
    st.tuples(st.integers(0, 0x13), st.binary(max_size=40)), min_size=1, max_size=8,
).map(lambda frames: b"".join(frame(op, payload) for op, payload in frames))

_mutated_stream = st.builds(lambda requests, mutations: _mutate(_encode(requests), mutations),
                            st.lists(_request, min_size=1, max_size=6),
                            st.lists(_mutation, min_size=1, max_size=3))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.one_of(_framed_garbage, _mutated_stream),
       cuts=st.lists(st.integers(0, 400), max_size=3))
def test_every_complete_frame_gets_exactly_one_reply(stream, cuts):
    engine, stats = _fuzz_engine(), ServerStats()
    proc = Processor(engine, 4096, stats)
    bounds = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    out = b"".join(proc.feed(stream[a:b]) for a, b in zip(bounds, bounds[1:]))
    _check_survived(engine, stats, out)
    ops, lost = _complete_frames(stream, 4096)
    answered = replies(out)
    assert proc.framing_lost == lost
    assert len(answered) == len(ops) + lost
    for op, (status, payload) in zip(ops, answered):
        if status in (ERROR, INVALID):
            kind = error_of(payload)[0]
            assert error_class(kind).kind == kind, f"unregistered kind {kind!r}"
        if not OP_GET <= op <= OP_MEXISTS:
            assert status == INVALID
    if lost:
        assert answered[-1][0] == INVALID and error_of(answered[-1][1])[0] == "too_large"


# ---------------------------------------------------------------- over the limit: nothing buffered


def _heap_in_use() -> int:
    """Bytes glibc has handed out, small and mmap'd blocks (0 when unknown)."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return 0

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
                    .split()]

    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def test_payload_after_a_header_over_the_limit_is_not_kept_in_memory(engine):
    header = bytes([OP_SET]) + struct.pack(">I", 2 << 20)
    payload = b"x" * (1 << 20)

    def growth(max_payload: int) -> tuple[int, Processor]:
        proc = Processor(engine, max_payload)
        start = _heap_in_use()
        proc.feed(header)
        proc.feed(payload)
        return _heap_in_use() - start, proc

    # Control: the start of a frame under the limit is kept until it is whole,
    # and the allocator statistics see it.
    kept, proc = growth(4 << 20)
    if kept < len(payload):
        pytest.skip("malloc statistics unavailable (not glibc, or a sanitizer build)")
    assert not proc.framing_lost
    kept, proc = growth(1 << 20)
    assert proc.framing_lost
    assert kept < 64 * 1024


# ---------------------------------------------------------------- wire vs Engine, bad arguments included


# What the Engine refuses, the client side must refuse with the same class
# (before sending, or through the error reply).
_BAD_KEYS = st.sampled_from([b"", "", b"k" * 65536, "\ud800", 5, None, ["a"]])
_BAD_VALUES = st.sampled_from([{1: 2}, {"a": {3}}, 2**63, object(), [1, INT64_MIN - 1]])
_BAD_TTLS = st.sampled_from([0, -1, 0.0, 2**40, float("nan"), float("inf"), "1", True])
_BAD_DELTAS = st.sampled_from([2**63, -(2**63) - 1, 1.0, True, None])
_TTLS = st.one_of(st.none(), st.integers(1, 5000).map(lambda ms: ms / 1000))
_SOME_KEYS = st.lists(small_keys, max_size=4)
_PAIRS = st.lists(st.tuples(small_keys, values), max_size=3)


def _spoiled_list(items, bad):
    return st.tuples(items, bad, st.integers(0, 4)).map(
        lambda t: t[0][:t[2]] + [t[1]] + t[0][t[2]:])


# name: (good argument strategies, {argument index: bad strategy})
_CALLS = {
    "get": ([small_keys], {0: _BAD_KEYS}),
    "exists": ([small_keys], {0: _BAD_KEYS}),
    "delete": ([small_keys], {0: _BAD_KEYS}),
    "ttl": ([small_keys], {0: _BAD_KEYS}),
    "set": ([small_keys, values, _TTLS], {0: _BAD_KEYS, 1: _BAD_VALUES, 2: _BAD_TTLS}),
    "setnx": ([small_keys, values, _TTLS], {0: _BAD_KEYS, 1: _BAD_VALUES, 2: _BAD_TTLS}),
    "cas": ([small_keys, values, values, _TTLS],
            {0: _BAD_KEYS, 1: _BAD_VALUES, 2: _BAD_VALUES, 3: _BAD_TTLS}),
    "incr": ([small_keys, st.one_of(st.integers(-3, 3), st.integers(INT64_MIN, INT64_MAX))],
             {0: _BAD_KEYS, 1: _BAD_DELTAS}),
    "decr": ([small_keys, st.integers(-3, 3)], {0: _BAD_KEYS, 1: _BAD_DELTAS}),
    "expire": ([small_keys, st.integers(1, 5000).map(lambda ms: ms / 1000)],
               {0: _BAD_KEYS, 1: st.one_of(_BAD_TTLS, st.none())}),
    "mget": ([_SOME_KEYS], {0: st.one_of(_spoiled_list(_SOME_KEYS, _BAD_KEYS), st.just("ab"))}),
    "mexists": ([_SOME_KEYS], {0: _spoiled_list(_SOME_KEYS, _BAD_KEYS)}),
    "mdel": ([_SOME_KEYS], {0: _spoiled_list(_SOME_KEYS, _BAD_KEYS)}),
    "mset": ([_PAIRS, _TTLS], {
        0: st.one_of(_spoiled_list(_PAIRS, st.tuples(_BAD_KEYS, values)),
                     _spoiled_list(_PAIRS, st.tuples(small_keys, _BAD_VALUES))),
        1: _BAD_TTLS}),
    "flush": ([], {}),
}


@st.composite
def _engine_call(draw) -> tuple:
    """A call with good arguments, or (one time in three) exactly one bad one:
    with two, Engine and client may legitimately complain about either."""
    name = draw(st.sampled_from(sorted(_CALLS)))
    good, bad = _CALLS[name]
    args = [draw(strategy) for strategy in good]
    if bad and draw(st.integers(0, 2)) == 0:
        index = draw(st.sampled_from(sorted(bad)))
        args[index] = draw(bad[index])
    return (name, *args)


def _engine_answer(engine: kvstore.Engine, name: str, args: list) -> object:
    # ReplyReader tells a missing key (MISSING) from a stored None / no ttl.
    if name == "get":
        return engine.get(args[0], MISSING)
    if name == "ttl":
        remaining = engine.ttl(args[0])
        return MISSING if remaining is None and not engine.exists(args[0]) else remaining
    return getattr(engine, name)(*args)


def _result(call) -> tuple[str, object]:
    try:
        return "returned", call()
    except KvError as exc:
        return "raised", type(exc)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.one_of(_engine_call(), st.sampled_from([0.001, 0.75, 30.0])),
                      min_size=1, max_size=15),
       chunk=st.integers(1, 48))
def test_pipelined_wire_calls_answer_and_refuse_as_the_engine_does(steps, chunk):
    clock = FakeClock()
    direct, served = kvstore.Engine(clock=clock), kvstore.Engine(clock=clock)
    processor, writer, reader = Processor(served), RequestWriter(), ReplyReader()
    in_flight: list[tuple[tuple, tuple[str, object]]] = []

    def exchange() -> None:
        # Everything written so far goes out pipelined, in pieces of `chunk`.
        data = writer.take()
        for at in range(0, len(data), chunk):
            reader.feed(processor.feed(data[at:at + chunk]))
        for call, expected in in_flight:
            got = _result(lambda: reader.read(_OPS[call[0]]))
            assert got[0] == expected[0] and same_value(got[1], expected[1]), (call, got, expected)
        assert len(reader) == 0
        in_flight.clear()

    for step in steps:
        if isinstance(step, float):
            exchange()
            clock.tick(step)
            continue
        name, *args = step
        expected = _result(lambda: _engine_answer(direct, name, args))
        before = len(writer)
        written = _result(lambda: getattr(writer, name)(*args))
        if written[0] == "raised":
            assert written == expected, (step, written, expected)
            assert len(writer) == before, "a refused call leaves nothing to send"
        else:
            in_flight.append((step, expected))
    exchange()
    direct._check()
    served._check()
    assert len(direct) == len(served)


# ---------------------------------------------------------------- the typed stub



# The stub check for all three compiled modules lives in tests/test_stubs.py.


# ---------------------------------------------------------------- the output cap of one feed


_FEED_CAP_BYTES = 1 << 20          # docs/protocol.md, "Connection behaviour"
_LARGE = b"v" * 300_000
_CAPPED_REQUESTS = {
    "get": lambda w: w.get("large"),
    "mget": lambda w: w.mget(["large", "n", "large"]),
    "incr": lambda w: w.incr("n"),
    "ping": lambda w: w.ping(),
}


def _drained(proc: Processor) -> list[bytes]:
    pieces = []
    while proc.has_backlog:
        pieces.append(proc.feed(b""))
    return pieces


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(st.sampled_from(sorted(_CAPPED_REQUESTS)), min_size=1, max_size=24),
       tail=st.sampled_from([b"", frame(0x99, b"?"), b"\x02\xff\xff\xff\xff", PING[:3]]),
       cuts=st.lists(st.integers(0, 1 << 23), max_size=4),
       drain_after=st.lists(st.booleans(), min_size=5, max_size=5))
def test_output_cap_holds_frames_back_without_changing_any_reply(requests, tail, cuts, drain_after):
    writer = RequestWriter()
    for name in requests:
        _CAPPED_REQUESTS[name](writer)
    stream = writer.take() + tail

    def fresh() -> Processor:
        engine = kvstore.Engine()
        engine.set("large", _LARGE)
        return Processor(engine)

    whole = fresh()
    pieces = [whole.feed(stream), *_drained(whole)]
    # The largest single reply is an MGET of two large values.
    assert all(len(piece) < _FEED_CAP_BYTES + 2 * len(_LARGE) + 64 for piece in pieces)
    if sum(map(len, pieces)) > _FEED_CAP_BYTES + 2 * len(_LARGE) + 64:
        assert len(pieces) > 1, "the cap held frames back"

    split = fresh()
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    got = []
    for index, (start, end) in enumerate(zip(bounds, bounds[1:])):
        got.append(split.feed(stream[start:end]))
        if drain_after[index]:
            got += _drained(split)
    got += _drained(split)
    assert b"".join(got) == b"".join(pieces)
    assert split.framing_lost == whole.framing_lost
    assert split.bytes_received == len(stream) or split.framing_lost
    assert split.feed(b"") == b""
