# The wire protocol (docs/protocol.md): frames, the server's request
# processor, and the clients' request writer and reply reader.
#
# A frame is `code u8 | length u32 BE | payload`: the code is an op in a
# request and a status in a reply. The processor is given whatever bytes the
# connection received; it runs every complete frame against the engine's Core
# and appends each reply to one output buffer, returned in one piece for one
# transport write. Keys and values are read in place from the input and stored
# values are copied from their entry straight into the output, so GET, SET,
# DEL, EXISTS and the batch ops create no Python object per request.
#
# Failure modes (docs/protocol.md, "Errors"):
# - a Core error (WrongTypeError, IntegerOverflowError, ...) is the frame's
#   ERROR reply; an unknown op or a malformed payload its INVALID reply. In
#   both cases the frame has been consumed whole, so the next one parses.
# - a header whose length is over max_payload means framing is lost: the
#   payload is never buffered, and the connection must be closed.
# A frame's handler raises as usual; feed() catches the exception once, turns
# it into that frame's reply and resumes after the frame, so the hot loop
# carries no per-frame try block.
#
# Layout of this file: bound globals and constants; small readers; Processor;
# RequestWriter; ReplyReader.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from kvstore._codec cimport (
    MAX_KEY_BYTES, TAG_NULL,
    Reader, WriteBuffer,
    decode_value, encode_key, encode_value, kv_load_u16, kv_load_u32, kv_load_u64,
    kv_store_u16, kv_store_u32, kv_store_u64, rd_i64, rd_raw, rd_u16, rd_u64, skip_value,
)
from kvstore._engine cimport (
    MAX_TTL_MS, MAX_VALUE_BYTES, STORE_ALWAYS, STORE_IF_ABSENT, STORE_IF_EQUAL,
    TTL_MISSING, Core, KeySpace, StoreMode, delta_arg, ttl_to_ms,
)

from kvstore import errors as _errors


# Python globals used on hot or error paths, bound once at import.
cdef object KvError = _errors.KvError
cdef object ProtocolError = _errors.ProtocolError
cdef object InvalidKeyError = _errors.InvalidKeyError
cdef object InvalidArgumentError = _errors.InvalidArgumentError
cdef object ValueTooLargeError = _errors.ValueTooLargeError
cdef object error_class = _errors.error_class
# Refusals of the request itself get INVALID; everything else is ERROR.
cdef tuple _INVALID_REQUEST = (ProtocolError, InvalidKeyError, InvalidArgumentError)

cdef uint64_t U32_MAX = 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Python-level constants (see _protocol.pyi)
# ---------------------------------------------------------------------------

# Index = op code; "UNKNOWN" (index 0) counts frames with an op nobody knows.
_OP_NAMES = (
    "UNKNOWN", "GET", "SET", "DEL", "EXISTS", "INCR", "DECR", "CAS", "PING", "INFO",
    "SETNX", "FLUSH", "EXPIRE", "TTL", "MGET", "MSET", "MDEL", "MEXISTS",
)
assert len(_OP_NAMES) == OP_COUNT
# OP_GET, OP_SET, ...: the C enum names are taken by _protocol.pxd, so the
# Python names are made here from the one table above.
globals().update({f"OP_{name}": code for code, name in enumerate(_OP_NAMES) if code})

DEFAULT_PORT = SERVER_PORT
DEFAULT_MAX_PAYLOAD = DEFAULT_MAX_PAYLOAD_BYTES
MAX_BATCH_KEYS = MAX_BATCH_KEYS_PER_FRAME


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return f"kvstore._protocol.{self._name}"

    def __reduce__(self):
        return self._name


MISSING = _Sentinel("MISSING")
NEED_MORE = _Sentinel("NEED_MORE")
cdef object _MISSING = MISSING
cdef object _NEED_MORE = NEED_MORE


cdef str _op_name(int op):
    return _OP_NAMES[op] if 0 < op < OP_COUNT else f"op 0x{op:02x}"


# ---------------------------------------------------------------------------
# Payload readers (bounds checks in kvstore._codec's rd_* helpers)
# ---------------------------------------------------------------------------

cdef int _refuse_empty_key() except -1:
    raise InvalidKeyError("key must not be empty")


cdef int _refuse_ttl(uint64_t ms, bint none_allowed) except -1:
    if ms == 0 and not none_allowed:
        raise InvalidArgumentError("ttl must be > 0 ms")
    raise InvalidArgumentError(f"ttl of {ms} ms is over the limit of {MAX_TTL_MS} ms")


cdef int _refuse_trailing(Reader* rd) except -1:
    raise ProtocolError(f"{rd.length - rd.pos} unexpected bytes after the payload's last field")


cdef int _refuse_count(Py_ssize_t count, Reader* rd) except -1:
    raise ProtocolError(
        f"count of {count} items cannot fit the {rd.length - rd.pos} payload bytes left")


cdef inline const char* _read_key(Reader* rd, Py_ssize_t* length) except NULL:
    # u16 length + bytes; the wire length already bounds it to MAX_KEY_BYTES.
    length[0] = rd_u16(rd)
    if length[0] == 0:
        _refuse_empty_key()
    return rd_raw(rd, length[0])


cdef inline int64_t _read_ttl(Reader* rd, bint none_allowed) except -1:
    cdef uint64_t ms = rd_u64(rd)
    if ms > <uint64_t>MAX_TTL_MS or (ms == 0 and not none_allowed):
        _refuse_ttl(ms, none_allowed)
    return <int64_t>ms


cdef inline Py_ssize_t _read_count(Reader* rd, Py_ssize_t min_item_bytes) except -1:
    # A forged count must not size anything: every item takes some bytes.
    cdef Py_ssize_t count = rd_u16(rd)
    if count * min_item_bytes > rd.length - rd.pos:
        _refuse_count(count, rd)
    return count


cdef inline int _expect_end(Reader* rd) except -1:
    if rd.pos != rd.length:
        _refuse_trailing(rd)
    return 0


cdef inline int _room(WriteBuffer buf, Py_ssize_t extra) except -1:
    # The "is there room?" test inline; WriteBuffer._grow out of line.
    if extra > buf._size - buf._length:
        buf._grow(extra)
    return 0


# ---------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------

@cython.final
cdef class ServerStats:
    """Counters shared by every connection of one server: frames per command
    and bytes in and out. Read by INFO."""

    def __cinit__(self):
        cdef int i
        for i in range(<int>OP_COUNT):
            self.calls[i] = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def commands(self):
        """Frames handled per command name, for the commands seen so far."""
        cdef int i
        return {_OP_NAMES[i]: self.calls[i] for i in range(<int>OP_COUNT) if self.calls[i]}


@cython.final
cdef class Processor:
    """The request processor of one connection (docs/protocol.md).

    ``feed(data)`` runs every complete frame in the bytes received so far and
    returns all their replies as one bytes object. When a frame header
    declares a payload over ``max_payload``, ``framing_lost`` becomes true:
    the connection must be closed (the payload is never buffered).
    """

    def __init__(self, KeySpace engine not None, max_payload=DEFAULT_MAX_PAYLOAD,
                 ServerStats stats=None, server_info=None):
        if engine._prefix:
            raise InvalidArgumentError("a Processor serves a whole Engine, not a namespace view")
        self.max_payload = _payload_limit(max_payload)
        if server_info is not None and not callable(server_info):
            raise InvalidArgumentError("server_info must be a callable returning a dict")
        self.engine = engine
        self.core = engine._core
        self.stats = stats if stats is not None else ServerStats()
        self.server_info = server_info
        self.pending = WriteBuffer.new()
        self.out = WriteBuffer.new()
        self.lengths = WriteBuffer.new()
        self.framing_lost = False
        self.bytes_received = 0

    @property
    def max_payload(self):
        return self.max_payload

    @property
    def has_backlog(self):
        """feed() stopped at its output cap with frames left to run: call
        feed(b"") again once the replies so far are written."""
        return self._held is not None

    def feed(self, data=b""):
        """Run every complete frame; the replies, to be written in one piece."""
        cdef Py_ssize_t length
        cdef Py_ssize_t used = 0
        cdef const char* p
        cdef WriteBuffer out = self.out
        if self.framing_lost:
            return b""
        if not PyBytes_CheckExact(data):
            data = bytes(data)
        length = PyBytes_GET_SIZE(data)
        self.bytes_received += <uint64_t>length
        self.stats.bytes_in += <uint64_t>length
        if self._held is not None:
            # Frames an earlier feed left unrun go first. Reading is paused
            # meanwhile, so joining them with new bytes is the rare case.
            if length:
                data = self._held[self._held_pos:] + data
            else:
                data, used = self._held, self._held_pos
            self._held = None
        p = PyBytes_AS_STRING(data)
        length = PyBytes_GET_SIZE(data)
        out.clear()
        if self.pending._length:
            used = self._fill_pending(p, length)
        if used < length and not self.framing_lost:
            used += self._process(p + used, length - used)
            if used < length and not self.framing_lost:
                if self._capped:
                    self._held = data
                    self._held_pos = used
                else:
                    # An incomplete frame whose header (if whole) passed the limit.
                    self.pending.write_raw(p + used, length - used)
        self.stats.bytes_out += <uint64_t>out._length
        result = out.to_bytes()
        if out._size > KEEP_BUFFER_BYTES:
            out.reset()
        return result

    cdef Py_ssize_t _process(self, const char* data, Py_ssize_t length) except -1:
        # Frames from data until the first incomplete one; the bytes consumed.
        cdef Py_ssize_t pos = 0
        self._capped = False
        while True:
            try:
                return self._run_frames(data, length, pos)
            except Exception as error:
                self._answer_failure(error)
                pos = self._next

    cdef Py_ssize_t _run_frames(self, const char* data, Py_ssize_t length,
                                Py_ssize_t pos) except -1:
        cdef const char* frame
        cdef uint32_t payload_length
        while length - pos >= HEADER_BYTES:
            frame = data + pos
            payload_length = kv_load_u32(frame + 1)
            # The limit is checked on the header, before any payload is kept.
            if payload_length > self.max_payload:
                self._lose_framing(payload_length)
                return pos
            if payload_length > length - pos - HEADER_BYTES:
                break
            self._next = pos + HEADER_BYTES + payload_length
            self._reply_at = self.out._length
            self._dispatch(<uint8_t>frame[0], frame + HEADER_BYTES, payload_length)
            pos = self._next
            # Checked after a frame, so every call runs at least one.
            if self.out._length >= MAX_FEED_OUTPUT_BYTES:
                self._capped = True
                break
        return pos

    cdef Py_ssize_t _fill_pending(self, const char* data, Py_ssize_t length) except -1:
        # Complete the frame waiting in pending with bytes from data (never
        # more than it needs) and run it once whole; the bytes taken.
        cdef WriteBuffer pending = self.pending
        cdef Py_ssize_t used = 0
        cdef Py_ssize_t take
        cdef uint32_t payload_length
        if pending._length < HEADER_BYTES:
            used = min(HEADER_BYTES - pending._length, length)
            pending.write_raw(data, used)
            if pending._length < HEADER_BYTES:
                return used
        payload_length = kv_load_u32(pending._buf + 1)
        if payload_length > self.max_payload:
            self._lose_framing(payload_length)
            return used
        take = min(HEADER_BYTES + <Py_ssize_t>payload_length - pending._length, length - used)
        pending.write_raw(data + used, take)
        used += take
        if pending._length == HEADER_BYTES + <Py_ssize_t>payload_length:
            self._process(pending._buf, pending._length)
            if pending._size > KEEP_BUFFER_BYTES:
                pending.reset()
            else:
                pending.clear()
        return used

    cdef int _lose_framing(self, uint32_t length) except -1:
        # Answered so the client learns why, then nothing more is read.
        self.framing_lost = True
        self.pending.reset()
        self._reply_at = self.out._length
        return _error_reply(self.out, ST_INVALID, ValueTooLargeError.kind,
                            f"frame payload of {length} bytes is over the server's limit of "
                            f"{self.max_payload} bytes; closing the connection")

    cdef int _answer_failure(self, object error) except -1:
        # The failed frame's partial reply is dropped and replaced.
        cdef uint8_t status = ST_INVALID if isinstance(error, _INVALID_REQUEST) else ST_ERROR
        self.out._length = self._reply_at
        if isinstance(error, KvError):
            kind = error.kind
            message = str(error)
        elif isinstance(error, MemoryError):
            kind = "server"
            message = f"out of memory: {error}" if str(error) else "out of memory"
        else:
            kind = "server"
            message = f"{type(error).__name__}: {error}"
        return _error_reply(self.out, status, kind, message)

    cdef int _dispatch(self, uint8_t op, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        rd.buf = payload
        rd.length = length
        rd.pos = 0
        if op >= OP_COUNT:
            self.stats.calls[0] += 1
            raise ProtocolError(f"unknown op 0x{op:02x}")
        self.stats.calls[op] += 1
        # One clock read and one bounded expiry step per frame, whatever its op.
        self.core.begin()
        if op == OP_GET:
            return self._get(&rd)
        if op == OP_SET or op == OP_SETNX:
            return self._store(&rd, op)
        if op == OP_DEL or op == OP_EXISTS:
            return self._flag(&rd, op)
        if op == OP_MGET:
            return self._mget(&rd)
        if op == OP_MSET:
            return self._mset(&rd)
        if op == OP_MDEL:
            return self._mdel(&rd)
        if op == OP_MEXISTS:
            return self._mexists(&rd)
        if op == OP_INCR or op == OP_DECR:
            return self._add(&rd, op)
        if op == OP_CAS:
            return self._cas(&rd)
        if op == OP_EXPIRE:
            return self._expire(&rd)
        if op == OP_TTL:
            return self._ttl(&rd)
        if op == OP_FLUSH:
            return self._flush(&rd)
        if op == OP_PING:
            return self._reply(ST_OK, payload, length)
        if op == OP_INFO:
            _expect_end(&rd)
            return self._info()
        self.stats.calls[op] -= 1
        self.stats.calls[0] += 1
        raise ProtocolError(f"unknown op 0x{op:02x}")

    # -- one handler per payload layout (docs/protocol.md, "Requests") --------

    cdef int _get(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef const char* value
        cdef Py_ssize_t value_length
        _expect_end(rd)
        if self.core.lookup(key, key_length, &value, &value_length):
            # Copied now: the pointer lives only until the next Core call.
            return self._reply(ST_OK, value, value_length)
        return self._reply(ST_NULL, NULL, 0)

    cdef int _store(self, Reader* rd, uint8_t op) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t ttl_ms = _read_ttl(rd, True)
        cdef const char* value = rd.buf + rd.pos
        cdef Py_ssize_t value_length = skip_value(rd)
        cdef int stored
        _expect_end(rd)
        stored = self.core.store(key, key_length, value, value_length, ttl_ms,
                                 STORE_ALWAYS if op == OP_SET else STORE_IF_ABSENT, NULL, 0)
        if op == OP_SET:
            return self._reply(ST_OK, NULL, 0)
        return self._reply_u8(stored)

    cdef int _cas(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t ttl_ms = _read_ttl(rd, True)
        cdef const char* expected = rd.buf + rd.pos
        cdef Py_ssize_t expected_length = skip_value(rd)
        cdef const char* value = rd.buf + rd.pos
        cdef Py_ssize_t value_length = skip_value(rd)
        _expect_end(rd)
        if self.core.store(key, key_length, value, value_length, ttl_ms, STORE_IF_EQUAL,
                           expected, expected_length):
            return self._reply(ST_OK, NULL, 0)
        return self._reply(ST_CAS_FAILED, NULL, 0)

    cdef int _flag(self, Reader* rd, uint8_t op) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        _expect_end(rd)
        if op == OP_DEL:
            return self._reply_u8(self.core.remove(key, key_length))
        return self._reply_u8(self.core.contains(key, key_length))

    cdef int _add(self, Reader* rd, uint8_t op) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t delta = rd_i64(rd)
        cdef int64_t result
        _expect_end(rd)
        if op == OP_INCR:
            self.core.increment(key, key_length, delta, &result)
        else:
            self.core.decrement(key, key_length, delta, &result)
        return self._reply_u64(<uint64_t>result)

    cdef int _expire(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t ttl_ms = _read_ttl(rd, False)
        _expect_end(rd)
        return self._reply_u8(self.core.set_expiry(key, key_length, ttl_ms))

    cdef int _ttl(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t remaining
        _expect_end(rd)
        remaining = self.core.remaining_ms(key, key_length)
        if remaining == TTL_MISSING:
            return self._reply(ST_NULL, NULL, 0)
        # TTL_NO_EXPIRY is -1 on the wire as in the engine.
        return self._reply_u64(<uint64_t>remaining)

    cdef int _mget(self, Reader* rd) except -1:
        cdef WriteBuffer out = self.out
        cdef Py_ssize_t count = _read_count(rd, MIN_KEY_ITEM_BYTES)
        cdef Py_ssize_t length_at = out.start_frame(ST_OK)
        cdef Py_ssize_t i, key_length, value_length
        cdef const char* key
        cdef const char* value
        out.write_u16(<uint16_t>count)
        for i in range(count):
            key = _read_key(rd, &key_length)
            if self.core.lookup(key, key_length, &value, &value_length):
                if <uint64_t>(out._length - length_at + value_length) > U32_MAX:
                    raise ValueTooLargeError("MGET reply would be over 4 GiB; ask for fewer keys")
                _room(out, value_length)
                memcpy(out._buf + out._length, value, value_length)
                out._length += value_length
            else:
                _room(out, 1)
                out._buf[out._length] = <char>TAG_NULL
                out._length += 1
        _expect_end(rd)
        return out.end_frame(length_at)

    cdef int _mset(self, Reader* rd) except -1:
        # All or nothing: every key and value is checked before the first
        # write, the value lengths found are kept for the second pass.
        cdef Py_ssize_t count = rd_u16(rd)
        cdef int64_t ttl_ms = _read_ttl(rd, True)
        cdef Py_ssize_t i, key_length, start
        cdef Py_ssize_t* value_lengths
        cdef const char* key
        if count * MIN_MSET_ITEM_BYTES > rd.length - rd.pos:
            _refuse_count(count, rd)
        self.lengths.clear()
        _room(self.lengths, count * <Py_ssize_t>sizeof(Py_ssize_t))
        value_lengths = <Py_ssize_t*>self.lengths._buf
        start = rd.pos
        for i in range(count):
            _read_key(rd, &key_length)
            value_lengths[i] = skip_value(rd)
            if value_lengths[i] > MAX_VALUE_BYTES:
                raise ValueTooLargeError(
                    f"value {i} is {value_lengths[i]} bytes, the limit is {MAX_VALUE_BYTES}")
        _expect_end(rd)
        rd.pos = start
        for i in range(count):
            key_length = kv_load_u16(rd.buf + rd.pos)
            key = rd.buf + rd.pos + 2
            self.core.store(key, key_length, key + key_length, value_lengths[i], ttl_ms,
                            STORE_ALWAYS, NULL, 0)
            rd.pos += 2 + key_length + value_lengths[i]
        if self.lengths._size > KEEP_BUFFER_BYTES:
            self.lengths.reset()
        return self._reply(ST_OK, NULL, 0)

    cdef int _mdel(self, Reader* rd) except -1:
        # Every key is checked before the first removal.
        cdef Py_ssize_t count = _read_count(rd, MIN_KEY_ITEM_BYTES)
        cdef Py_ssize_t start = rd.pos
        cdef Py_ssize_t i, key_length
        cdef uint32_t removed = 0
        cdef char reply[4]
        for i in range(count):
            _read_key(rd, &key_length)
        _expect_end(rd)
        rd.pos = start
        for i in range(count):
            key_length = kv_load_u16(rd.buf + rd.pos)
            removed += self.core.remove(rd.buf + rd.pos + 2, key_length)
            rd.pos += 2 + key_length
        kv_store_u32(reply, removed)
        return self._reply(ST_OK, reply, 4)

    cdef int _mexists(self, Reader* rd) except -1:
        cdef WriteBuffer out = self.out
        cdef Py_ssize_t count = _read_count(rd, MIN_KEY_ITEM_BYTES)
        cdef Py_ssize_t length_at = out.start_frame(ST_OK)
        cdef Py_ssize_t i, key_length
        cdef const char* key
        _room(out, 2 + count)
        kv_store_u16(out._buf + out._length, <uint16_t>count)
        out._length += 2
        for i in range(count):
            key = _read_key(rd, &key_length)
            out._buf[out._length] = <char>self.core.contains(key, key_length)
            out._length += 1
        _expect_end(rd)
        return out.end_frame(length_at)

    cdef int _flush(self, Reader* rd) except -1:
        # An empty prefix flushes everything; a namespaced client sends "ns:".
        cdef Py_ssize_t prefix_length = rd_u16(rd)
        cdef const char* prefix = rd_raw(rd, prefix_length) if prefix_length else NULL
        _expect_end(rd)
        return self._reply_u64(<uint64_t>self.core.remove_prefixed(prefix, prefix_length))

    cdef int _info(self) except -1:
        cdef dict info = self.engine.info()
        cdef Py_ssize_t length_at
        if self.server_info is not None:
            info.update(self.server_info())
        info["calls"] = self.stats.commands()
        info["bytes_in"] = self.stats.bytes_in
        info["bytes_out"] = self.stats.bytes_out
        length_at = self.out.start_frame(ST_OK)
        encode_value(self.out, info)
        return self.out.end_frame(length_at)

    # -- replies -------------------------------------------------------------

    cdef int _reply(self, uint8_t status, const char* data, Py_ssize_t length) except -1:
        cdef WriteBuffer out = self.out
        cdef char* p
        _room(out, HEADER_BYTES + length)
        p = out._buf + out._length
        p[0] = <char>status
        kv_store_u32(p + 1, <uint32_t>length)
        if length:
            memcpy(p + HEADER_BYTES, data, length)
        out._length += HEADER_BYTES + length
        return 0

    cdef int _reply_u8(self, uint8_t value) except -1:
        cdef char byte = <char>value
        return self._reply(ST_OK, &byte, 1)

    cdef int _reply_u64(self, uint64_t value) except -1:
        cdef char word[8]
        kv_store_u64(word, value)
        return self._reply(ST_OK, word, 8)


cdef Py_ssize_t _payload_limit(object max_payload) except -1:
    # A u32 length cannot say more than U32_MAX anyway.
    if isinstance(max_payload, bool) or not isinstance(max_payload, int) or not (
            0 < max_payload <= U32_MAX):
        raise InvalidArgumentError(
            f"max_payload must be an int from 1 to {U32_MAX} bytes, not {max_payload!r}")
    return max_payload


cdef int _error_reply(WriteBuffer out, uint8_t status, str kind, str message) except -1:
    # kind_len u16 + kind (ASCII) + message (UTF-8, the rest of the payload).
    cdef bytes kind_bytes = kind.encode("ascii", "replace")
    cdef bytes text = message.encode("utf-8", "replace")[:MAX_ERROR_MESSAGE_BYTES]
    cdef Py_ssize_t length_at = out.start_frame(status)
    out.write_u16(<uint16_t>len(kind_bytes))
    out.write_raw(kind_bytes, len(kind_bytes))
    out.write_raw(text, len(text))
    return out.end_frame(length_at)


# ---------------------------------------------------------------------------
# Client side: requests out
# ---------------------------------------------------------------------------

cdef object _as_items(object items):
    # A list or tuple as given; other iterables are listed once. A lone key is
    # refused, as Engine's batch calls do, rather than read as its letters.
    if type(items) is list or type(items) is tuple:
        return items
    if isinstance(items, (str, bytes)):
        raise InvalidArgumentError("batch calls take an iterable of keys, not a single key")
    return list(items)


cdef int _check_batch(Py_ssize_t count) except -1:
    if count > MAX_BATCH_KEYS_PER_FRAME:
        raise InvalidArgumentError(
            f"one frame carries at most {MAX_BATCH_KEYS_PER_FRAME} keys, got {count}")
    return 0


@cython.final
cdef class RequestWriter:
    """Request frames for one connection (or namespace). Each method appends
    one complete frame, or raises and leaves the buffer as it was:
    InvalidKeyError, UnsupportedValueError, InvalidArgumentError (ttl, delta,
    batch size) or ValueTooLargeError (frame over ``max_payload``)."""

    def __cinit__(self):
        self.buf = WriteBuffer.new()

    def __init__(self, bytes prefix not None=b"", max_payload=DEFAULT_MAX_PAYLOAD):
        if len(prefix) >= MAX_KEY_BYTES:
            raise InvalidArgumentError(
                f"namespace prefix is {len(prefix)} bytes; keys are limited to {MAX_KEY_BYTES}")
        self.prefix = prefix
        self.max_payload = _payload_limit(max_payload)

    def __len__(self):
        return self.buf._length

    def take(self):
        """Everything appended since the last take(), as bytes."""
        cdef bytes data = self.buf.to_bytes()
        if self.buf._size > KEEP_BUFFER_BYTES:
            self.buf.reset()
        else:
            self.buf.clear()
        return data

    # -- frame plumbing ------------------------------------------------------

    cdef Py_ssize_t _open(self, uint8_t op) except -1:
        return self.buf.start_frame(op)

    cdef int _close(self, Py_ssize_t length_at) except -1:
        cdef Py_ssize_t payload = self.buf._length - length_at - 4
        if payload > self.max_payload:
            raise ValueTooLargeError(
                f"request of {payload} bytes is over the server's limit of "
                f"{self.max_payload} bytes")
        return self.buf.end_frame(length_at)

    cdef int _key(self, object key) except -1:
        return encode_key(self.buf, PyBytes_AS_STRING(self.prefix),
                          PyBytes_GET_SIZE(self.prefix), key)

    cdef int _single(self, uint8_t op, object key) except -1:
        cdef Py_ssize_t length_at = self._open(op)
        try:
            self._key(key)
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise
        return 0

    cdef int _store(self, uint8_t op, object key, object value, object ttl) except -1:
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef Py_ssize_t length_at = self._open(op)
        try:
            self._key(key)
            self.buf.write_u64(<uint64_t>ttl_ms)
            encode_value(self.buf, value)
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise
        return 0

    cdef int _add(self, uint8_t op, object key, object delta) except -1:
        cdef int64_t d = delta_arg(delta)
        cdef Py_ssize_t length_at = self._open(op)
        try:
            self._key(key)
            self.buf.write_i64(d)
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise
        return 0

    cdef int _keys(self, uint8_t op, object keys) except -1:
        cdef object items = _as_items(keys)
        cdef Py_ssize_t count = len(items)
        cdef Py_ssize_t length_at
        _check_batch(count)
        length_at = self._open(op)
        try:
            self.buf.write_u16(<uint16_t>count)
            for key in items:
                self._key(key)
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise
        return 0

    # -- one method per request ----------------------------------------------

    def get(self, key):
        self._single(OP_GET, key)

    def set(self, key, value, ttl=None):
        self._store(OP_SET, key, value, ttl)

    def setnx(self, key, value, ttl=None):
        self._store(OP_SETNX, key, value, ttl)

    def delete(self, key):
        self._single(OP_DEL, key)

    def exists(self, key):
        self._single(OP_EXISTS, key)

    def incr(self, key, delta=1):
        self._add(OP_INCR, key, delta)

    def decr(self, key, delta=1):
        self._add(OP_DECR, key, delta)

    def cas(self, key, expected, new, ttl=None):
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef Py_ssize_t length_at = self._open(OP_CAS)
        try:
            self._key(key)
            self.buf.write_u64(<uint64_t>ttl_ms)
            encode_value(self.buf, expected)
            encode_value(self.buf, new)
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise

    def expire(self, key, ttl):
        cdef int64_t ttl_ms = ttl_to_ms(ttl, False)
        cdef Py_ssize_t length_at = self._open(OP_EXPIRE)
        try:
            self._key(key)
            self.buf.write_u64(<uint64_t>ttl_ms)
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise

    def ttl(self, key):
        self._single(OP_TTL, key)

    def mget(self, keys):
        self._keys(OP_MGET, keys)

    def mdel(self, keys):
        self._keys(OP_MDEL, keys)

    def mexists(self, keys):
        self._keys(OP_MEXISTS, keys)

    def mset(self, pairs, ttl=None):
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef object items = list(pairs.items()) if hasattr(pairs, "items") else _as_items(pairs)
        cdef Py_ssize_t count = len(items)
        cdef Py_ssize_t length_at
        cdef Py_ssize_t i = 0
        _check_batch(count)
        length_at = self._open(OP_MSET)
        try:
            self.buf.write_u16(<uint16_t>count)
            self.buf.write_u64(<uint64_t>ttl_ms)
            for pair in items:
                if not isinstance(pair, tuple) or len(pair) != 2:
                    raise InvalidArgumentError(
                        f"mset takes a mapping or (key, value) pairs; item {i} is "
                        f"{type(pair).__name__}")
                self._key(pair[0])
                encode_value(self.buf, pair[1])
                i += 1
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise

    def ping(self):
        self._close(self._open(OP_PING))

    def info(self):
        self._close(self._open(OP_INFO))

    def flush(self):
        cdef Py_ssize_t length_at = self._open(OP_FLUSH)
        self.buf.write_u16(<uint16_t>PyBytes_GET_SIZE(self.prefix))
        self.buf.write_raw(PyBytes_AS_STRING(self.prefix), PyBytes_GET_SIZE(self.prefix))
        self._close(length_at)


# ---------------------------------------------------------------------------
# Client side: replies in
# ---------------------------------------------------------------------------

cdef object _error_from(const char* payload, Py_ssize_t length):
    # The exception an ERROR/INVALID payload names (kind + message).
    cdef Reader rd
    rd.buf = payload
    rd.length = length
    rd.pos = 0
    cdef Py_ssize_t kind_length = rd_u16(&rd)
    cdef const char* kind = rd_raw(&rd, kind_length)
    kind_text = kind[:kind_length].decode("ascii", "replace")
    message = payload[rd.pos:length].decode("utf-8", "replace")
    return error_class(kind_text)(message)


cdef inline bint _flag_byte(const char* payload) except -1:
    cdef uint8_t b = <uint8_t>payload[0]
    if b > 1:
        raise ProtocolError(f"flag byte 0x{b:02x} is neither 0 nor 1")
    return b == 1


@cython.final
cdef class ReplyReader:
    """Replies of one connection. ``feed()`` the bytes received, ``read(op)``
    the next reply as the answer to ``op`` (see _protocol.pyi)."""

    def __cinit__(self):
        self.buf = WriteBuffer.new()
        self.pos = 0

    def __len__(self):
        return self.buf._length - self.pos

    def feed(self, data):
        """Add bytes received from the server."""
        cdef const unsigned char[::1] view
        cdef WriteBuffer buf = self.buf
        if self.pos:
            # Drop what was read before adding more, so the buffer only ever
            # holds the unread replies.
            buf.consume(self.pos)
            self.pos = 0
            if buf._length == 0 and buf._size > KEEP_BUFFER_BYTES:
                buf.reset()
        if PyBytes_CheckExact(data):
            buf.write_raw(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        else:
            view = data
            if view.shape[0]:
                buf.write_raw(<const char*>&view[0], view.shape[0])

    def read(self, int op):
        """The next reply decoded as the answer to ``op``; NEED_MORE when it
        has not fully arrived. An ERROR/INVALID reply is consumed and raised
        as its KvError subclass; a reply that cannot be parsed raises
        ProtocolError (drop the connection)."""
        cdef WriteBuffer buf = self.buf
        cdef Py_ssize_t available = buf._length - self.pos
        cdef const char* frame
        cdef uint32_t length
        if op <= 0 or op >= OP_COUNT:
            raise InvalidArgumentError(f"unknown op {op}")
        if available < HEADER_BYTES:
            return _NEED_MORE
        frame = buf._buf + self.pos
        length = kv_load_u32(frame + 1)
        if length > available - HEADER_BYTES:
            return _NEED_MORE
        # Consumed before decoding: an error reply must not be read twice.
        self.pos += HEADER_BYTES + length
        return self._decode(op, <uint8_t>frame[0], frame + HEADER_BYTES, length)

    cdef object _decode(self, int op, uint8_t status, const char* payload, Py_ssize_t length):
        cdef Reader rd
        cdef Py_ssize_t count, i
        cdef int64_t ms
        cdef list items
        cdef object value
        rd.buf = payload
        rd.length = length
        rd.pos = 0
        if status == ST_ERROR or status == ST_INVALID:
            raise _error_from(payload, length)
        if status == ST_OK:
            if op == OP_GET:
                value = decode_value(&rd)
                _expect_end(&rd)
                return value
            if (op == OP_SET or op == OP_MSET) and length == 0:
                return None
            if (op == OP_SETNX or op == OP_DEL or op == OP_EXISTS or op == OP_EXPIRE) \
                    and length == 1:
                return _flag_byte(payload)
            if (op == OP_INCR or op == OP_DECR) and length == 8:
                return <int64_t>kv_load_u64(payload)
            if op == OP_CAS and length == 0:
                return True
            if op == OP_TTL and length == 8:
                ms = <int64_t>kv_load_u64(payload)
                if ms == -1:
                    return None
                if ms >= 0:
                    return ms / 1000.0
            if op == OP_MGET:
                count = rd_u16(&rd)
                if count > length - 2:
                    _refuse_count(count, &rd)
                items = PyList_New(count)
                for i in range(count):
                    value = decode_value(&rd)
                    Py_INCREF(value)
                    PyList_SET_ITEM(items, i, value)
                _expect_end(&rd)
                return items
            if op == OP_MDEL and length == 4:
                return kv_load_u32(payload)
            if op == OP_MEXISTS and length >= 2:
                count = kv_load_u16(payload)
                if length == 2 + count:
                    return [_flag_byte(payload + 2 + i) for i in range(count)]
            if op == OP_PING:
                return True
            if op == OP_INFO:
                value = decode_value(&rd)
                _expect_end(&rd)
                if type(value) is dict:
                    return value
            if op == OP_FLUSH and length == 8:
                return kv_load_u64(payload)
        elif status == ST_NULL and length == 0 and (op == OP_GET or op == OP_TTL):
            return _MISSING
        elif status == ST_CAS_FAILED and length == 0 and op == OP_CAS:
            return False
        raise ProtocolError(
            f"unexpected reply to {_op_name(op)}: status 0x{status:02x} with {length} payload bytes")
