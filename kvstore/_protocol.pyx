# The wire protocol, both ends (docs/protocol.md).
#
# Server side: Processor.feed() takes whatever bytes a connection received,
# runs every complete frame against the engine's Core and returns every reply
# in one bytes object for one transport.write. Keys and values stay pointers
# into the input; stored values are copied from the entry straight into the
# output buffer, so GET/SET/DEL/EXISTS/MGET/MSET/MDEL create no Python object
# per request. A frame's length is checked against the limit as soon as its
# 5-byte header is in, before any of its payload is kept.
#
# Client side: RequestWriter encodes requests (the codec's key rule, the
# engine's ttl rule, the frame size limit), ReplyReader decodes replies and
# raises the KvError subclass named by an error reply's kind.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport INT64_MAX, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp

from kvstore._codec cimport (
    TAG_NULL, Reader, WriteBuffer, decode_value, encode_key, encode_value, kv_load_u32,
    kv_load_u64, rd_i64, rd_init, rd_raw, rd_u8, rd_u16, rd_u32, rd_u64, skip_value,
)
from kvstore._engine cimport (
    MAX_TTL_MS, STORE_ALWAYS, STORE_IF_ABSENT, STORE_IF_EQUAL, TTL_MISSING, TTL_NO_EXPIRY,
    Core, KeySpace, StoreMode, delta_arg, ttl_to_ms,
)

from kvstore import errors as _errors

cdef object KvError = _errors.KvError
cdef object ProtocolError = _errors.ProtocolError
cdef object InvalidKeyError = _errors.InvalidKeyError
cdef object InvalidArgumentError = _errors.InvalidArgumentError
cdef object ValueTooLargeError = _errors.ValueTooLargeError
cdef object error_class = _errors.error_class


# Python-visible constants (the clients and tests use plain ints).
globals().update({name: int(member) for name, member in Op.__members__.items()
                  if name != "OP_COUNT"})
DEFAULT_PORT = 16380
DEFAULT_MAX_PAYLOAD = DEFAULT_MAX_PAYLOAD_BYTES
MAX_BATCH_KEYS = MAX_BATCH_KEYS_PER_FRAME

OP_NAMES = {int(member): name[3:] for name, member in Op.__members__.items()
            if name != "OP_COUNT"}


@cython.final
cdef class _Sentinel:
    cdef str name

    def __cinit__(self, str name):
        self.name = name

    def __repr__(self):
        return self.name

    def __reduce__(self):
        return self.name


MISSING = _Sentinel("MISSING")      # a NULL reply to GET or TTL
NEED_MORE = _Sentinel("NEED_MORE")  # ReplyReader.read: the reply is not complete yet


# ------------------------------------------------------------ payload reading

cdef inline const char* read_key(Reader* rd, Py_ssize_t* length) except NULL:
    length[0] = rd_u16(rd)
    if length[0] == 0:
        raise InvalidKeyError("key must not be empty")
    return rd_raw(rd, length[0])


cdef inline int64_t read_ttl(Reader* rd) except -1:
    cdef uint64_t ttl_ms = rd_u64(rd)
    if ttl_ms > <uint64_t>MAX_TTL_MS:
        raise InvalidArgumentError(f"ttl of {ttl_ms} ms is over the limit of {MAX_TTL_MS} ms")
    return <int64_t>ttl_ms


cdef inline int read_end(Reader* rd) except -1:
    if rd.pos != rd.length:
        raise ProtocolError(f"{rd.length - rd.pos} unexpected bytes at the end of the payload")
    return 0


# ------------------------------------------------------------------- server

@cython.final
cdef class ServerStats:
    """Counters shared by the connections of one server."""

    def as_dict(self):
        cdef int op
        calls = {}
        for op in range(<int>OP_COUNT):
            if self.calls[op]:
                calls[OP_NAMES.get(op, "UNKNOWN")] = self.calls[op]
        return {
            "calls": calls,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


@cython.final
cdef class Processor:
    """Runs the frames of one connection against an engine.

    feed(data) returns the replies to every complete frame in data (plus what
    earlier feeds left incomplete), as one bytes object, b"" when there are
    none. After a frame longer than max_payload, framing_lost is True: the
    caller must close the connection; nothing more is parsed or kept.
    """

    def __cinit__(self, KeySpace engine, Py_ssize_t max_payload=DEFAULT_MAX_PAYLOAD_BYTES,
                  ServerStats stats=None, server_info=None):
        if max_payload <= 0:
            raise InvalidArgumentError("max_payload must be positive")
        self.engine = engine
        self.core = engine._core
        self.max_payload = max_payload
        self.pending = WriteBuffer.new()
        self.out = WriteBuffer.new()
        self.stats = stats if stats is not None else ServerStats()
        self.server_info = server_info
        self.framing_lost = False

    @property
    def stats(self):
        return self.stats

    def feed(self, data):
        cdef bytes chunk = data if type(data) is bytes else bytes(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(chunk), used
        cdef bytes replies
        self.stats.bytes_in += n
        if self.framing_lost:
            return b""
        if self.pending._length == 0:
            used = self._run(PyBytes_AS_STRING(chunk), n)
            if used < n and not self.framing_lost:
                self.pending.write_raw(PyBytes_AS_STRING(chunk) + used, n - used)
        else:
            self.pending.write_raw(PyBytes_AS_STRING(chunk), n)
            used = self._run(self.pending._buf, self.pending._length)
            if self.framing_lost:
                self.pending.reset()
            else:
                self.pending.consume(used)
        if self.out._length == 0:
            return b""
        replies = self.out.to_bytes()
        self.stats.bytes_out += self.out._length
        if self.out._size > 1 << 20:
            self.out.reset()
        else:
            self.out.clear()
        return replies

    cdef Py_ssize_t _run(self, const char* data, Py_ssize_t length) except -1:
        """Handle the complete frames at data; how many bytes they took."""
        cdef Py_ssize_t at = 0
        cdef uint32_t payload
        while length - at >= HEADER_BYTES:
            payload = kv_load_u32(data + at + 1)
            if payload > <uint64_t>self.max_payload:
                self.framing_lost = True
                return at
            if length - at - HEADER_BYTES < payload:
                break
            self._frame(<uint8_t>data[at], data + at + HEADER_BYTES, payload)
            at += HEADER_BYTES + payload
        return at

    cdef int _frame(self, uint8_t op, const char* payload, Py_ssize_t length) except -1:
        cdef Py_ssize_t mark = self.out._length
        self.stats.calls[op if op < OP_COUNT else 0] += 1
        try:
            self._dispatch(op, payload, length)
        except ProtocolError as exc:
            self.out._length = mark
            self._refuse(ST_INVALID, exc)
        except Exception as exc:
            # KvErrors carry their kind; anything else is the server's fault
            # and must not end the connection, let alone the server.
            self.out._length = mark
            self._refuse(ST_ERROR, exc)
        return 0

    cdef int _refuse(self, uint8_t status, object error) except -1:
        kind = error.kind if isinstance(error, KvError) else "server"
        message = str(error) if isinstance(error, KvError) else f"{type(error).__name__}: {error}"
        cdef bytes kind_bytes = kind.encode("ascii")
        cdef bytes text = message.encode("utf-8", "replace")
        cdef Py_ssize_t at = self.out.start_frame(status)
        self.out.write_u16(<uint16_t>len(kind_bytes))
        self.out.write_raw(kind_bytes, len(kind_bytes))
        self.out.write_raw(text, len(text))
        self.out.end_frame(at)
        return 0

    cdef int _dispatch(self, uint8_t op, const char* payload, Py_ssize_t length) except -1:
        cdef Py_ssize_t at
        if op == OP_GET:
            return self._get(payload, length)
        if op == OP_SET or op == OP_SETNX:
            return self._store(op, payload, length)
        if op == OP_DEL or op == OP_EXISTS:
            return self._flag(op, payload, length)
        if op == OP_MGET:
            return self._mget(payload, length)
        if op == OP_MSET:
            return self._mset(payload, length)
        if op == OP_MDEL:
            return self._mdel(payload, length, False)
        if op == OP_MEXISTS:
            return self._mdel(payload, length, True)
        if op == OP_INCR or op == OP_DECR:
            return self._add(op, payload, length)
        if op == OP_CAS:
            return self._cas(payload, length)
        if op == OP_EXPIRE:
            return self._expire(payload, length)
        if op == OP_TTL:
            return self._ttl(payload, length)
        if op == OP_PING:
            at = self.out.start_frame(ST_OK)
            self.out.write_raw(payload, length)
            return self.out.end_frame(at)
        if op == OP_INFO:
            return self._info()
        if op == OP_FLUSH:
            return self._flush(payload, length)
        raise ProtocolError(f"unknown op 0x{op:02x}")

    cdef int _get(self, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, value_length, at
        cdef const char* key
        cdef const char* value
        rd_init(&rd, payload, length)
        key = read_key(&rd, &key_length)
        read_end(&rd)
        self.core.begin()
        if not self.core.lookup(key, key_length, &value, &value_length):
            at = self.out.start_frame(ST_NULL)
            return self.out.end_frame(at)
        at = self.out.start_frame(ST_OK)
        self.out.write_raw(value, value_length)
        return self.out.end_frame(at)

    cdef int _store(self, uint8_t op, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, value_length, at
        cdef const char* key
        cdef const char* value
        cdef int64_t ttl_ms
        cdef int stored
        rd_init(&rd, payload, length)
        key = read_key(&rd, &key_length)
        ttl_ms = read_ttl(&rd)
        value = payload + rd.pos
        value_length = skip_value(&rd)
        read_end(&rd)
        self.core.begin()
        stored = self.core.store(key, key_length, value, value_length, ttl_ms,
                                 STORE_ALWAYS if op == OP_SET else STORE_IF_ABSENT, NULL, 0)
        at = self.out.start_frame(ST_OK)
        if op == OP_SETNX:
            self.out.write_u8(<uint8_t>stored)
        return self.out.end_frame(at)

    cdef int _cas(self, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, expected_length, value_length, at
        cdef const char* key
        cdef const char* expected
        cdef const char* value
        cdef int64_t ttl_ms
        rd_init(&rd, payload, length)
        key = read_key(&rd, &key_length)
        ttl_ms = read_ttl(&rd)
        expected = payload + rd.pos
        expected_length = skip_value(&rd)
        value = payload + rd.pos
        value_length = skip_value(&rd)
        read_end(&rd)
        self.core.begin()
        if self.core.store(key, key_length, value, value_length, ttl_ms, STORE_IF_EQUAL,
                           expected, expected_length):
            at = self.out.start_frame(ST_OK)
        else:
            at = self.out.start_frame(ST_CAS_FAILED)
        return self.out.end_frame(at)

    cdef int _flag(self, uint8_t op, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, at
        cdef const char* key
        cdef int answer
        rd_init(&rd, payload, length)
        key = read_key(&rd, &key_length)
        read_end(&rd)
        self.core.begin()
        if op == OP_DEL:
            answer = self.core.remove(key, key_length)
        else:
            answer = self.core.contains(key, key_length)
        at = self.out.start_frame(ST_OK)
        self.out.write_u8(<uint8_t>answer)
        return self.out.end_frame(at)

    cdef int _add(self, uint8_t op, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, at
        cdef const char* key
        cdef int64_t delta, result
        rd_init(&rd, payload, length)
        key = read_key(&rd, &key_length)
        delta = rd_i64(&rd)
        read_end(&rd)
        self.core.begin()
        if op == OP_INCR:
            self.core.increment(key, key_length, delta, &result)
        else:
            self.core.decrement(key, key_length, delta, &result)
        at = self.out.start_frame(ST_OK)
        self.out.write_i64(result)
        return self.out.end_frame(at)

    cdef int _expire(self, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, at
        cdef const char* key
        cdef int64_t ttl_ms
        cdef int found
        rd_init(&rd, payload, length)
        key = read_key(&rd, &key_length)
        ttl_ms = read_ttl(&rd)
        read_end(&rd)
        if ttl_ms == TTL_NONE_MS:
            raise ProtocolError("EXPIRE needs a ttl > 0")
        self.core.begin()
        found = self.core.set_expiry(key, key_length, ttl_ms)
        at = self.out.start_frame(ST_OK)
        self.out.write_u8(<uint8_t>found)
        return self.out.end_frame(at)

    cdef int _ttl(self, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, at
        cdef const char* key
        cdef int64_t remaining
        rd_init(&rd, payload, length)
        key = read_key(&rd, &key_length)
        read_end(&rd)
        self.core.begin()
        remaining = self.core.remaining_ms(key, key_length)
        if remaining == TTL_MISSING:
            at = self.out.start_frame(ST_NULL)
            return self.out.end_frame(at)
        at = self.out.start_frame(ST_OK)
        self.out.write_i64(remaining)
        return self.out.end_frame(at)

    cdef int _mget(self, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, value_length, at
        cdef const char* key
        cdef const char* value
        cdef uint16_t count, i
        rd_init(&rd, payload, length)
        count = rd_u16(&rd)
        self.core.begin()
        at = self.out.start_frame(ST_OK)
        self.out.write_u16(count)
        for i in range(count):
            key = read_key(&rd, &key_length)
            if self.core.lookup(key, key_length, &value, &value_length):
                self.out.write_raw(value, value_length)
            else:
                self.out.write_u8(TAG_NULL)
        read_end(&rd)
        return self.out.end_frame(at)

    cdef int _mset(self, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, value_length, at, body
        cdef const char* key
        cdef const char* value
        cdef uint16_t count, i
        cdef int64_t ttl_ms
        rd_init(&rd, payload, length)
        count = rd_u16(&rd)
        ttl_ms = read_ttl(&rd)
        body = rd.pos
        # Check the whole batch before the first write: all or nothing.
        for i in range(count):
            read_key(&rd, &key_length)
            skip_value(&rd)
        read_end(&rd)
        rd.pos = body
        self.core.begin()
        for i in range(count):
            key = read_key(&rd, &key_length)
            value = payload + rd.pos
            value_length = skip_value(&rd)
            self.core.store(key, key_length, value, value_length, ttl_ms, STORE_ALWAYS, NULL, 0)
        at = self.out.start_frame(ST_OK)
        return self.out.end_frame(at)

    cdef int _mdel(self, const char* payload, Py_ssize_t length, bint exists) except -1:
        cdef Reader rd
        cdef Py_ssize_t key_length, at, body
        cdef const char* key
        cdef uint16_t count, i
        cdef uint32_t removed = 0
        rd_init(&rd, payload, length)
        count = rd_u16(&rd)
        body = rd.pos
        for i in range(count):
            read_key(&rd, &key_length)
        read_end(&rd)
        rd.pos = body
        self.core.begin()
        at = self.out.start_frame(ST_OK)
        if exists:
            self.out.write_u16(count)
        for i in range(count):
            key = read_key(&rd, &key_length)
            if exists:
                self.out.write_u8(<uint8_t>self.core.contains(key, key_length))
            else:
                removed += self.core.remove(key, key_length)
        if not exists:
            self.out.write_u32(removed)
        return self.out.end_frame(at)

    cdef int _flush(self, const char* payload, Py_ssize_t length) except -1:
        cdef Reader rd
        cdef Py_ssize_t prefix_length, at
        cdef const char* prefix = NULL
        cdef Py_ssize_t removed
        rd_init(&rd, payload, length)
        prefix_length = rd_u16(&rd)
        if prefix_length:
            prefix = rd_raw(&rd, prefix_length)
        read_end(&rd)
        self.core.begin()
        removed = self.core.remove_prefixed(prefix, prefix_length)
        at = self.out.start_frame(ST_OK)
        self.out.write_u64(<uint64_t>removed)
        return self.out.end_frame(at)

    cdef int _info(self) except -1:
        figures = self.engine.info()
        if self.server_info is not None:
            figures.update(self.server_info())
        figures.update(self.stats.as_dict())
        cdef Py_ssize_t at = self.out.start_frame(ST_OK)
        encode_value(self.out, figures)
        return self.out.end_frame(at)


# ------------------------------------------------------------------- client

@cython.final
cdef class RequestWriter:
    """Encodes requests for one connection. Each method appends one whole
    frame, or raises and leaves the buffer as it was; take() hands over
    everything appended so far."""

    def __cinit__(self, bytes prefix=b"", Py_ssize_t max_payload=DEFAULT_MAX_PAYLOAD_BYTES):
        self.buf = WriteBuffer.new()
        self.prefix = prefix
        self.max_payload = max_payload
        self._frame_start = 0

    def __len__(self):
        return self.buf._length

    def take(self):
        cdef bytes frames = self.buf.to_bytes()
        if self.buf._size > 1 << 20:
            self.buf.reset()
        else:
            self.buf.clear()
        return frames

    cdef Py_ssize_t _open(self, uint8_t op) except -1:
        self._frame_start = self.buf._length
        return self.buf.start_frame(op)

    cdef int _close(self, Py_ssize_t length_at) except -1:
        cdef Py_ssize_t payload = self.buf._length - length_at - 4
        if payload > self.max_payload:
            raise ValueTooLargeError(
                f"the request is {payload} bytes, over the server's frame limit of "
                f"{self.max_payload} bytes; nothing was sent")
        return self.buf.end_frame(length_at)

    cdef int _key(self, object key) except -1:
        return encode_key(self.buf, PyBytes_AS_STRING(self.prefix),
                          PyBytes_GET_SIZE(self.prefix), key)

    cdef int _keys(self, object keys) except -1:
        cdef Py_ssize_t n = len(keys)
        if n > MAX_BATCH_KEYS_PER_FRAME:
            raise InvalidArgumentError(
                f"{n} keys in one frame; the limit is {MAX_BATCH_KEYS_PER_FRAME}")
        self.buf.write_u16(<uint16_t>n)
        for key in keys:
            self._key(key)
        return 0

    # Every method below: open a frame, write it, close it; on any error roll
    # the buffer back to where the frame began.

    def get(self, key):
        self._single(OP_GET, key)

    def delete(self, key):
        self._single(OP_DEL, key)

    def exists(self, key):
        self._single(OP_EXISTS, key)

    def ttl(self, key):
        self._single(OP_TTL, key)

    def _single(self, uint8_t op, key):
        cdef Py_ssize_t at = self._open(op)
        try:
            self._key(key)
            self._close(at)
        except BaseException:
            self.buf._length = self._frame_start
            raise

    def set(self, key, value, ttl=None):
        self._set(OP_SET, key, value, ttl)

    def setnx(self, key, value, ttl=None):
        self._set(OP_SETNX, key, value, ttl)

    def _set(self, uint8_t op, key, value, ttl):
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef Py_ssize_t at = self._open(op)
        try:
            self._key(key)
            self.buf.write_u64(<uint64_t>ttl_ms)
            encode_value(self.buf, value)
            self._close(at)
        except BaseException:
            self.buf._length = self._frame_start
            raise

    def cas(self, key, expected, new, ttl=None):
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef Py_ssize_t at = self._open(OP_CAS)
        try:
            self._key(key)
            self.buf.write_u64(<uint64_t>ttl_ms)
            encode_value(self.buf, expected)
            encode_value(self.buf, new)
            self._close(at)
        except BaseException:
            self.buf._length = self._frame_start
            raise

    def incr(self, key, delta=1):
        self._add(OP_INCR, key, delta)

    def decr(self, key, delta=1):
        self._add(OP_DECR, key, delta)

    def _add(self, uint8_t op, key, delta):
        cdef int64_t d = delta_arg(delta)
        cdef Py_ssize_t at = self._open(op)
        try:
            self._key(key)
            self.buf.write_i64(d)
            self._close(at)
        except BaseException:
            self.buf._length = self._frame_start
            raise

    def expire(self, key, ttl):
        cdef int64_t ttl_ms = ttl_to_ms(ttl, False)
        cdef Py_ssize_t at = self._open(OP_EXPIRE)
        try:
            self._key(key)
            self.buf.write_u64(<uint64_t>ttl_ms)
            self._close(at)
        except BaseException:
            self.buf._length = self._frame_start
            raise

    def mget(self, keys):
        self._batch(OP_MGET, keys)

    def mdel(self, keys):
        self._batch(OP_MDEL, keys)

    def mexists(self, keys):
        self._batch(OP_MEXISTS, keys)

    def _batch(self, uint8_t op, keys):
        cdef Py_ssize_t at = self._open(op)
        try:
            self._keys(keys)
            self._close(at)
        except BaseException:
            self.buf._length = self._frame_start
            raise

    def mset(self, pairs, ttl=None):
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef Py_ssize_t n = len(pairs)
        cdef Py_ssize_t at = self._open(OP_MSET)
        try:
            if n > MAX_BATCH_KEYS_PER_FRAME:
                raise InvalidArgumentError(
                    f"{n} pairs in one frame; the limit is {MAX_BATCH_KEYS_PER_FRAME}")
            self.buf.write_u16(<uint16_t>n)
            self.buf.write_u64(<uint64_t>ttl_ms)
            for pair in pairs:
                if not isinstance(pair, tuple) or len(pair) != 2:
                    raise InvalidArgumentError(
                        f"mset takes a mapping or (key, value) pairs, not {type(pair).__name__}")
                self._key(pair[0])
                encode_value(self.buf, pair[1])
            self._close(at)
        except BaseException:
            self.buf._length = self._frame_start
            raise

    def ping(self):
        cdef Py_ssize_t at = self._open(OP_PING)
        self._close(at)

    def info(self):
        cdef Py_ssize_t at = self._open(OP_INFO)
        self._close(at)

    def flush(self):
        cdef Py_ssize_t at = self._open(OP_FLUSH)
        self.buf.write_u16(<uint16_t>PyBytes_GET_SIZE(self.prefix))
        self.buf.write_raw(PyBytes_AS_STRING(self.prefix), PyBytes_GET_SIZE(self.prefix))
        self._close(at)


@cython.final
cdef class ReplyReader:
    """Buffers a connection's replies and decodes them one at a time; the
    caller says which op each reply answers (replies come in request order)."""

    def __cinit__(self):
        self.buf = WriteBuffer.new()
        self.pos = 0

    def feed(self, data):
        cdef bytes chunk = data if type(data) is bytes else bytes(data)
        if self.pos:
            # Drop what has been read, now rather than after every reply.
            self.buf.consume(self.pos)
            self.pos = 0
        self.buf.write_raw(PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk))

    def __len__(self):
        return self.buf._length - self.pos

    def read(self, int op):
        """The next reply decoded as the answer to op, or NEED_MORE."""
        cdef Py_ssize_t available = self.buf._length - self.pos
        cdef const char* frame = self.buf._buf + self.pos
        cdef uint32_t length
        if available < HEADER_BYTES:
            return NEED_MORE
        length = kv_load_u32(frame + 1)
        if available - HEADER_BYTES < length:
            return NEED_MORE
        self.pos += HEADER_BYTES + length
        # The reply counts as consumed whatever decoding makes of it, so the
        # next read starts at the next reply.
        return reply_value(op, <uint8_t>frame[0], frame + HEADER_BYTES, length)


cdef object reply_value(int op, uint8_t status, const char* payload, Py_ssize_t length):
    cdef Reader rd
    cdef Py_ssize_t kind_length, count, i
    cdef int64_t remaining
    cdef list items
    rd_init(&rd, payload, length)
    if status == ST_ERROR or status == ST_INVALID:
        kind_length = rd_u16(&rd)
        kind = rd_raw(&rd, kind_length)[:kind_length].decode("ascii", "replace") if kind_length else "error"
        message = payload[rd.pos:length].decode("utf-8", "replace")
        raise error_class(kind)(message)
    if status == ST_NULL:
        if op == OP_GET or op == OP_TTL:
            return MISSING
        raise ProtocolError(f"NULL reply to op 0x{op:02x}")
    if status == ST_CAS_FAILED:
        if op == OP_CAS:
            return False
        raise ProtocolError(f"CAS_FAILED reply to op 0x{op:02x}")
    if status != ST_OK:
        raise ProtocolError(f"unknown reply status 0x{status:02x}")
    if op == OP_GET or op == OP_INFO:
        result = decode_value(&rd)
    elif op == OP_SET or op == OP_MSET:
        result = None
    elif op == OP_SETNX or op == OP_DEL or op == OP_EXISTS or op == OP_EXPIRE:
        result = rd_u8(&rd) == 1
    elif op == OP_INCR or op == OP_DECR:
        result = rd_i64(&rd)
    elif op == OP_CAS or op == OP_PING:
        rd.pos = length   # CAS: empty; PING echoes its payload
        result = True
    elif op == OP_TTL:
        remaining = rd_i64(&rd)
        result = None if remaining == TTL_NO_EXPIRY else remaining / 1000.0
    elif op == OP_MGET:
        count = rd_u16(&rd)
        items = [None] * count
        for i in range(count):
            items[i] = decode_value(&rd)
        result = items
    elif op == OP_MEXISTS:
        count = rd_u16(&rd)
        items = [None] * count
        for i in range(count):
            items[i] = rd_u8(&rd) == 1
        result = items
    elif op == OP_MDEL:
        result = rd_u32(&rd)
    elif op == OP_FLUSH:
        result = rd_u64(&rd)
    else:
        raise ProtocolError(f"reply to unknown op 0x{op:02x}")
    if rd.pos != length:
        raise ProtocolError(f"{length - rd.pos} unexpected bytes at the end of a reply")
    return result
