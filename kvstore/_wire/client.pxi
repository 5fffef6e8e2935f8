# The clients' side: RequestWriter encodes request frames, ReplyReader
# decodes replies. Both follow the command table: a writer method encodes
# its command's argument shape under the command's op code, and the reader
# decodes a reply by the reply shape of the op it answers.


cdef int _check_batch(Py_ssize_t count) except -1:
    if count > MAX_BATCH_KEYS_PER_FRAME:
        raise InvalidArgumentError(
            f"one frame carries at most {MAX_BATCH_KEYS_PER_FRAME} keys, got {count}")
    return 0


cdef uint64_t _scan_cursor(object cursor) except? 0xFFFFFFFFFFFFFFFF:
    if isinstance(cursor, bool) or not isinstance(cursor, int) or not (
            0 <= cursor < 0xFFFFFFFFFFFFFFFF):
        raise InvalidArgumentError(f"cursor must be an int returned by scan(), got {cursor!r}")
    return cursor


cdef bytes _scan_match(object match):
    # The glob as bytes (a str as its UTF-8), or None for "every key".
    if match is None or type(match) is bytes:
        return match
    if isinstance(match, str):
        return (<str>match).encode("utf-8", "surrogatepass")
    if isinstance(match, bytes):
        return bytes(match)
    raise InvalidArgumentError(f"match must be a str or bytes glob, not {type(match).__name__}")


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

    def truncate(self, Py_ssize_t length):
        """Drop what was appended after the first ``length`` bytes (a
        pipeline undoing the frames of a batch that failed half-way)."""
        if not 0 <= length <= self.buf._length:
            raise InvalidArgumentError(f"cannot truncate {self.buf._length} bytes to {length}")
        self.buf._length = length

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

    cdef int _prefix(self) except -1:
        # prefix_len u16 + prefix: FLUSH and SCAN name the writer's namespace.
        self.buf.write_u16(<uint16_t>PyBytes_GET_SIZE(self.prefix))
        return self.buf.write_raw(PyBytes_AS_STRING(self.prefix), PyBytes_GET_SIZE(self.prefix))

    # One encoder per argument shape (ARGS_* in _protocol.pxd).

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
        cdef list items = key_list(keys)
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

    # -- one method per command ------------------------------------------------

    def get(self, key):
        self._single(OP_GET, key)

    def set(self, key, value, ttl=None):
        self._store(OP_SET, key, value, ttl)

    def setnx(self, key, value, ttl=None):
        self._store(OP_SETNX, key, value, ttl)

    def getset(self, key, value, ttl=None):
        self._store(OP_GETSET, key, value, ttl)

    def delete(self, key):
        self._single(OP_DEL, key)

    def exists(self, key):
        self._single(OP_EXISTS, key)

    def persist(self, key):
        self._single(OP_PERSIST, key)

    def getdel(self, key):
        self._single(OP_GETDEL, key)

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

    def delete_if_equal(self, key, expected):
        cdef Py_ssize_t length_at = self._open(OP_DELETE_IF_EQUAL)
        try:
            self._key(key)
            encode_value(self.buf, expected)
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
        cdef list items = item_list(pairs)
        cdef Py_ssize_t count = len(items)
        cdef Py_ssize_t length_at
        _check_batch(count)
        length_at = self._open(OP_MSET)
        try:
            self.buf.write_u16(<uint16_t>count)
            self.buf.write_u64(<uint64_t>ttl_ms)
            for pair in items:
                self._key((<tuple>pair)[0])
                encode_value(self.buf, (<tuple>pair)[1])
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise

    def scan(self, cursor=0, match=None, count=100):
        cdef uint64_t c = _scan_cursor(cursor)
        cdef bytes pattern = _scan_match(match)
        cdef Py_ssize_t n = _scan_count(count)
        cdef Py_ssize_t length_at
        if pattern is not None and len(pattern) > 0xFFFF:
            raise InvalidArgumentError(f"match is {len(pattern)} bytes, the limit is 65535")
        length_at = self._open(OP_SCAN)
        try:
            self.buf.write_u64(c)
            self.buf.write_u32(<uint32_t>n)
            self._prefix()
            if pattern is None:
                self.buf.write_u8(0)
            else:
                self.buf.write_u8(1)
                self.buf.write_u16(<uint16_t>len(pattern))
                self.buf.write_raw(PyBytes_AS_STRING(pattern), len(pattern))
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise

    def ping(self):
        self._close(self._open(OP_PING))

    def info(self):
        self._close(self._open(OP_INFO))

    # -- eviction (issue 12)
    def config_get(self):
        self._close(self._open(OP_CONFIG_GET))

    def config_set(self, settings):
        cdef Py_ssize_t length_at
        if not hasattr(settings, "keys") or not settings:
            raise InvalidArgumentError("config_set takes a non-empty mapping of settings")
        length_at = self._open(OP_CONFIG_SET)
        try:
            encode_value(self.buf, dict(settings))
            self._close(length_at)
        except BaseException:
            self.buf._length = length_at - 1
            raise
    # -- end eviction

    def flush(self):
        cdef Py_ssize_t length_at = self._open(OP_FLUSH)
        self._prefix()
        self._close(length_at)

    def snapshot(self):  # -- durability (issue 11)
        self._close(self._open(OP_SNAPSHOT))


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


cdef object _scan_reply(Reader* rd):
    cdef uint64_t cursor = rd_u64(rd)
    cdef Py_ssize_t count = rd_u32(rd)
    cdef Py_ssize_t i, key_length
    cdef const char* key
    cdef list keys
    if count * MIN_KEY_ITEM_BYTES > rd.length - rd.pos:
        _refuse_count(count, rd)
    keys = PyList_New(count)
    for i in range(count):
        key_length = rd_u16(rd)
        key = rd_raw(rd, key_length) if key_length else NULL
        value = PyBytes_FromStringAndSize(key, key_length)
        Py_INCREF(value)
        PyList_SET_ITEM(keys, i, value)
    _expect_end(rd)
    return (cursor, keys)


cdef int _refuse_reply(int op, uint32_t length, Py_ssize_t limit) except -1:
    # From the header alone: nothing of the reply is kept or allocated.
    raise _errors.ReplyTooLargeError(
        f"reply to {_op_name(op)} declares {length} payload bytes, over this client's "
        f"max_reply of {limit} bytes")


@cython.final
cdef class ReplyReader:
    """Replies of one connection. ``feed()`` the bytes received, ``read(op)``
    the next reply as the answer to ``op`` (see _protocol.pyi)."""

    def __cinit__(self):
        self.buf = WriteBuffer.new()
        self.pos = 0
        self.max_reply = U32_MAX

    def __init__(self, max_reply=None):
        # None: any size the 32-bit length can declare.
        if max_reply is not None:
            if isinstance(max_reply, bool) or not isinstance(max_reply, int) or max_reply < 0:
                raise InvalidArgumentError(
                    f"max_reply must be an int >= 0 (bytes), not {max_reply!r}")
            self.max_reply = min(max_reply, U32_MAX)

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
        cdef int row = _row_of_op(op)
        if row == CMD_UNKNOWN:
            raise InvalidArgumentError(f"unknown op {op}")
        if available < HEADER_BYTES:
            return _NEED_MORE
        frame = buf._buf + self.pos
        length = kv_load_u32(frame + 1)
        if length > self.max_reply:
            _refuse_reply(op, length, self.max_reply)
        if length > available - HEADER_BYTES:
            return _NEED_MORE
        # Consumed before decoding: an error reply must not be read twice.
        self.pos += HEADER_BYTES + length
        result = self._decode(_SPECS[row].reply, <uint8_t>frame[0], frame + HEADER_BYTES, length)
        if result is _UNEXPECTED:
            raise ProtocolError(
                f"unexpected reply to {_op_name(op)}: status 0x{<uint8_t>frame[0]:02x} with "
                f"{length} payload bytes")
        return result

    cdef object _decode(self, uint8_t reply, uint8_t status, const char* payload,
                        Py_ssize_t length):
        # By the command's reply shape (REPLY_* in _protocol.pxd); _UNEXPECTED
        # when the reply does not have it.
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
            if reply == REPLY_VALUE:
                value = decode_value(&rd)
                _expect_end(&rd)
                return value
            if reply == REPLY_EMPTY and length == 0:
                return None
            if reply == REPLY_FLAG and length == 1:
                return _flag_byte(payload)
            if reply == REPLY_I64 and length == 8:
                return <int64_t>kv_load_u64(payload)
            if reply == REPLY_CAS and length == 0:
                return True
            if reply == REPLY_TTL and length == 8:
                ms = <int64_t>kv_load_u64(payload)
                if ms == -1:
                    return None
                if ms >= 0:
                    return ms / 1000.0
            if reply == REPLY_VALUES:
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
            if reply == REPLY_U32 and length == 4:
                return kv_load_u32(payload)
            if reply == REPLY_FLAGS and length >= 2:
                count = kv_load_u16(payload)
                if length == 2 + count:
                    return [_flag_byte(payload + 2 + i) for i in range(count)]
            if reply == REPLY_ECHO:
                return True
            if reply == REPLY_MAP:
                value = decode_value(&rd)
                _expect_end(&rd)
                if type(value) is dict:
                    return value
            if reply == REPLY_U64 and length == 8:
                return kv_load_u64(payload)
            if reply == REPLY_SCAN:
                return _scan_reply(&rd)
        elif status == ST_NULL and length == 0 and (reply == REPLY_VALUE or reply == REPLY_TTL):
            return _MISSING
        elif status == ST_CAS_FAILED and length == 0 and reply == REPLY_CAS:
            return False
        return _UNEXPECTED

    # -- pipelines (issue 9) ---------------------------------------------------

    def read_batch(self, bytes ops not None, list results not None, dict defaults=None):
        """Decode the buffered replies to ``ops[len(results):]`` (one op code per
        byte) onto ``results``; how many of them were error replies. An error
        reply is put in place as its KvError; a MISSING answer becomes
        ``defaults.get(index)`` (None without one). Stops at the first reply not
        fully received: the caller feeds more and calls again until
        ``len(results) == len(ops)``. A reply that cannot be parsed raises
        ProtocolError (drop the connection)."""
        cdef WriteBuffer buf = self.buf
        cdef Py_ssize_t n = PyBytes_GET_SIZE(ops)
        cdef const unsigned char* op_codes = <const unsigned char*>PyBytes_AS_STRING(ops)
        cdef Py_ssize_t i = len(results)
        cdef Py_ssize_t available
        cdef Py_ssize_t errors = 0
        cdef const char* frame
        cdef uint32_t length
        cdef int row
        cdef uint8_t op, status
        while i < n:
            op = op_codes[i]
            row = _row_of_op(op)
            if row == CMD_UNKNOWN:
                raise InvalidArgumentError(f"unknown op {op}")
            available = buf._length - self.pos
            if available < HEADER_BYTES:
                break
            frame = buf._buf + self.pos
            length = kv_load_u32(frame + 1)
            if length > self.max_reply:
                _refuse_reply(op, length, self.max_reply)
            if length > available - HEADER_BYTES:
                break
            self.pos += HEADER_BYTES + length
            status = <uint8_t>frame[0]
            if status == ST_ERROR or status == ST_INVALID:
                # Put in place, not raised: the pipeline's caller decides.
                result = _error_from(frame + HEADER_BYTES, length)
                errors += 1
            else:
                result = self._decode(_SPECS[row].reply, status, frame + HEADER_BYTES, length)
                if result is _UNEXPECTED:
                    raise ProtocolError(
                        f"unexpected reply to {_op_name(op)}: status 0x{status:02x} with "
                        f"{length} payload bytes")
                if result is _MISSING:
                    result = None if defaults is None else defaults.get(i)
            results.append(result)
            i += 1
        return errors


# -- pipelines and the batch-argument rule (issue 9, client half) ------------

def batch_keys(keys):
    """``keys`` as a list, by the rule Engine and RequestWriter apply: any
    iterable of keys, but a str or bytes (one key) is refused with
    InvalidArgumentError instead of read as one key per character."""
    return key_list(keys)


def batch_pairs(items):
    """``items`` as a list of (key, value) tuples, by dict.update's rule as
    Engine.mset applies it: an object with ``.items()``, else an iterable of
    pairs; a str or bytes is refused."""
    return item_list(items)
