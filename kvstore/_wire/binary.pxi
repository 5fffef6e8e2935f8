# The binary framing (docs/protocol.md): `code u8 | length u32 BE | payload`,
# the code being an op in a request and a status in a reply.
#
# The processor is given whatever bytes the connection received; it runs every
# complete frame through the Executor and appends each reply to one output
# buffer, returned in one piece for one transport write. Keys and values are
# read in place from the input and stored values are copied from their entry
# straight into the output, so GET, SET, DEL, EXISTS and the batch ops create
# no Python object per request. This piece only parses and encodes: what a
# command does is the Executor's.
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


# -- payload readers (bounds checks in kvstore._codec's rd_* helpers) ---------

cdef int _refuse_empty_key() except -1:
    raise InvalidKeyError("key must not be empty")


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
    return _ttl_arg(rd_u64(rd), none_allowed)


cdef inline const char* _read_value(Reader* rd, Py_ssize_t* length) except NULL:
    # One value, checked in place (no Python object) and not copied.
    cdef const char* value = rd.buf + rd.pos
    length[0] = skip_value(rd)
    return value


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


@cython.final
cdef class Processor:
    """The binary framing of one connection (docs/protocol.md).

    ``feed(data)`` runs every complete frame in the bytes received so far and
    returns all their replies as one bytes object. When a frame header
    declares a payload over ``max_payload``, ``framing_lost`` becomes true:
    the connection must be closed (the payload is never buffered).
    """

    def error_frame(self, kind, message):
        """One error reply of this framing, for a server refusing the
        connection itself (too many clients, a limit) before closing it."""
        cdef WriteBuffer buf = WriteBuffer.new()
        _error_reply(buf, ST_ERROR, kind, message)
        return buf.to_bytes()

    cdef int _consume(self, bytes data, Py_ssize_t used) except -1:
        cdef const char* p = PyBytes_AS_STRING(data)
        cdef Py_ssize_t length = PyBytes_GET_SIZE(data)
        if self.pending._length:
            used += self._fill_pending(p + used, length - used)
        if used < length and not self.framing_lost:
            if not self._capped:
                used += self._process(p + used, length - used)
            if used < length and not self.framing_lost:
                if self._capped:
                    self._hold(data, used)
                else:
                    # An incomplete frame whose header (if whole) passed the limit.
                    try:
                        self.pending.write_raw(p + used, length - used)
                    except MemoryError:
                        self._lose_framing_oom()
        return 0

    cdef int _flush_reply(self, uint64_t removed) except -1:
        return self._reply_u64(removed)

    cdef int _lose_framing_oom(self) except -1:
        # A frame that cannot be buffered cannot be skipped either: framing is
        # lost, said so with an out-of-memory reply.
        self.framing_lost = True
        self.pending.reset()
        self._reply_at = self.out._length
        return _error_reply(self.out, ST_ERROR, ServerOutOfMemoryError.kind,
                            "out of memory buffering a request; closing the connection")

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
            if self.out._length >= MAX_FEED_OUTPUT_BYTES or self.ex.over_budget():
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
        try:
            pending.write_raw(data + used, take)
        except MemoryError:
            self._lose_framing_oom()
            return used
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
            kind = ServerOutOfMemoryError.kind
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
        self.ex.admit(_ROW_OF_OP[op])
        # The hottest layouts first.
        if op == OP_GET:
            return self._key_op(&rd, op)
        if op == OP_SET or op == OP_SETNX:
            return self._store(&rd, op)
        if op == OP_DEL or op == OP_EXISTS or op == OP_TTL or op == OP_PERSIST \
                or op == OP_GETDEL:
            return self._key_op(&rd, op)
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
        if op == OP_FLUSH:
            return self._flush(&rd)
        if op == OP_PING:
            return self._reply(ST_OK, payload, length)
        if op == OP_INFO:
            return self._info(&rd)
        if op == OP_GETSET:
            return self._getset(&rd)
        if op == OP_DELETE_IF_EQUAL:
            return self._delete_if_equal(&rd)
        if op == OP_SCAN:
            return self._scan(&rd)
        if op == OP_CONFIG_GET or op == OP_CONFIG_SET:     # -- eviction (issue 12)
            return self._config(&rd, op)
        if op == OP_SNAPSHOT:  # -- durability (issue 11)
            _expect_end(&rd)
            return self._reply_u64(self.ex.snapshot())
        raise ProtocolError(f"unknown op 0x{op:02x}")

    # -- one parser per payload layout (docs/protocol.md, "Ops") -------------

    cdef int _key_op(self, Reader* rd, uint8_t op) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef const char* value
        cdef Py_ssize_t value_length, length_at
        cdef int64_t ms
        cdef TtlState state
        _expect_end(rd)
        if op == OP_GET:
            if self.ex.get(key, key_length, &value, &value_length):
                if value_length > self.ex.max_reply:
                    self.ex.check_reply(value_length)
                # Copied now: the pointer lives only until the next Core call.
                return self._reply(ST_OK, value, value_length)
            return self._reply(ST_NULL, NULL, 0)
        if op == OP_DEL:
            return self._reply_u8(self.ex.delete(key, key_length))
        if op == OP_EXISTS:
            return self._reply_u8(self.ex.exists(key, key_length))
        if op == OP_PERSIST:
            return self._reply_u8(self.ex.persist(key, key_length))
        if op == OP_TTL:
            state = self.ex.ttl(key, key_length, &ms)
            if state == TTL_STATE_MISSING:
                return self._reply(ST_NULL, NULL, 0)
            # No expiry is -1 on the wire.
            return self._reply_u64(<uint64_t>(ms if state == TTL_STATE_EXPIRING else -1))
        # GETDEL: the old value's encoding goes straight into the reply.
        length_at = self.out.start_frame(ST_OK)
        if self.ex.getdel(key, key_length, self.out):
            return self.out.end_frame(length_at)
        self.out._length = length_at - 1
        return self._reply(ST_NULL, NULL, 0)

    cdef int _store(self, Reader* rd, uint8_t op) except -1:
        cdef Py_ssize_t key_length, value_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t ttl_ms = _read_ttl(rd, True)
        cdef const char* value = _read_value(rd, &value_length)
        cdef int stored
        _expect_end(rd)
        stored = self.ex.store(key, key_length, value, value_length, ttl_ms,
                               STORE_ALWAYS if op == OP_SET else STORE_IF_ABSENT, NULL, 0)
        if op == OP_SET:
            return self._reply(ST_OK, NULL, 0)
        return self._reply_u8(stored)

    cdef int _cas(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length, expected_length, value_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t ttl_ms = _read_ttl(rd, True)
        cdef const char* expected = _read_value(rd, &expected_length)
        cdef const char* value = _read_value(rd, &value_length)
        _expect_end(rd)
        if self.ex.store(key, key_length, value, value_length, ttl_ms, STORE_IF_EQUAL,
                         expected, expected_length):
            return self._reply(ST_OK, NULL, 0)
        return self._reply(ST_CAS_FAILED, NULL, 0)

    cdef int _add(self, Reader* rd, uint8_t op) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t delta = rd_i64(rd)
        _expect_end(rd)
        return self._reply_u64(<uint64_t>self.ex.add(key, key_length, delta, op == OP_DECR))

    cdef int _expire(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t ttl_ms = _read_ttl(rd, False)
        _expect_end(rd)
        return self._reply_u8(self.ex.expire(key, key_length, ttl_ms))

    cdef int _getset(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length, value_length, length_at
        cdef const char* key = _read_key(rd, &key_length)
        cdef int64_t ttl_ms = _read_ttl(rd, True)
        cdef const char* value = _read_value(rd, &value_length)
        _expect_end(rd)
        length_at = self.out.start_frame(ST_OK)
        if self.ex.getset(key, key_length, value, value_length, ttl_ms, self.out):
            return self.out.end_frame(length_at)
        self.out._length = length_at - 1
        return self._reply(ST_NULL, NULL, 0)

    cdef int _delete_if_equal(self, Reader* rd) except -1:
        cdef Py_ssize_t key_length, expected_length
        cdef const char* key = _read_key(rd, &key_length)
        cdef const char* expected = _read_value(rd, &expected_length)
        _expect_end(rd)
        return self._reply_u8(self.ex.delete_if_equal(key, key_length, expected, expected_length))

    cdef int _mget(self, Reader* rd) except -1:
        # Sized before it is built: the Executor refuses a reply over the
        # limit before any memory is committed to it (a 327-byte MGET naming
        # one 8 MiB key 64 times would otherwise build 512 MiB).
        cdef WriteBuffer out = self.out
        cdef Py_ssize_t count = _read_count(rd, MIN_KEY_ITEM_BYTES)
        cdef Arg* keys = self.ex.arg_array(2 * count)
        cdef Arg* values = keys + count
        cdef Py_ssize_t i, total
        cdef char* p
        for i in range(count):
            keys[i].ptr = _read_key(rd, &keys[i].length)
        _expect_end(rd)
        # 2 for the count; a missing value is one TAG_NULL byte.
        total = self.ex.mget(keys, count, values, 2, 1)
        _room(out, HEADER_BYTES + total)
        p = out._buf + out._length
        p[0] = <char>ST_OK
        p += HEADER_BYTES
        kv_store_u16(p, <uint16_t>count)
        p += 2
        for i in range(count):
            if values[i].ptr != NULL:
                memcpy(p, values[i].ptr, values[i].length)
                p += values[i].length
            else:
                p[0] = <char>TAG_NULL
                p += 1
        kv_store_u32(out._buf + out._length + 1, <uint32_t>(p - out._buf - out._length - HEADER_BYTES))
        out._length = p - out._buf
        self.ex.done_with_args()
        return 0

    cdef int _mset(self, Reader* rd) except -1:
        # The whole payload is parsed (every key and value checked) before
        # the Executor writes anything.
        cdef Py_ssize_t count = rd_u16(rd)
        cdef int64_t ttl_ms = _read_ttl(rd, True)
        cdef Py_ssize_t i
        cdef Arg* items
        if count * MIN_MSET_ITEM_BYTES > rd.length - rd.pos:
            _refuse_count(count, rd)
        items = self.ex.arg_array(2 * count)
        for i in range(count):
            items[2 * i].ptr = _read_key(rd, &items[2 * i].length)
            items[2 * i + 1].ptr = _read_value(rd, &items[2 * i + 1].length)
        _expect_end(rd)
        self.ex.mset(items, count, ttl_ms)
        self.ex.done_with_args()
        return self._reply(ST_OK, NULL, 0)

    cdef int _mdel(self, Reader* rd) except -1:
        cdef Py_ssize_t count = _read_count(rd, MIN_KEY_ITEM_BYTES)
        cdef Arg* keys = self.ex.arg_array(count)
        cdef Py_ssize_t i
        cdef char reply[4]
        for i in range(count):
            keys[i].ptr = _read_key(rd, &keys[i].length)
        _expect_end(rd)
        kv_store_u32(reply, <uint32_t>self.ex.mdel(keys, count))
        self.ex.done_with_args()
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
            out._buf[out._length] = <char>self.ex.exists(key, key_length)
            out._length += 1
        _expect_end(rd)
        return out.end_frame(length_at)

    cdef int _flush(self, Reader* rd) except -1:
        cdef Py_ssize_t prefix_length = rd_u16(rd)
        cdef const char* prefix = rd_raw(rd, prefix_length) if prefix_length else NULL
        _expect_end(rd)
        # A prefix flush runs in bounded steps: when it does not finish in this
        # turn, _run_frames stops (over_budget) and feed() finishes it first
        # in the next turns, then writes this reply.
        if self.ex.flush_begin(prefix, prefix_length):
            return self._reply_u64(<uint64_t>self.ex.flush_removed)
        return 0

    cdef int _scan(self, Reader* rd) except -1:
        # cursor u64 | count u32 | prefix_len u16 + prefix | has_match u8
        # [| match_len u16 + match]; answers cursor u64 | count u32 | keys.
        cdef uint64_t cursor = rd_u64(rd)
        cdef Py_ssize_t count = _scan_count(rd_u32(rd))
        cdef Py_ssize_t prefix_length = rd_u16(rd)
        cdef const char* prefix = rd_raw(rd, prefix_length) if prefix_length else NULL
        cdef uint8_t has_match = rd_u8(rd)
        cdef Py_ssize_t match_length
        cdef object pattern = None
        cdef list keys = []
        cdef WriteBuffer out = self.out
        cdef Py_ssize_t length_at
        cdef Py_ssize_t size
        if has_match > 1:
            raise ProtocolError(f"SCAN's has_match byte 0x{has_match:02x} is neither 0 nor 1")
        if has_match:
            match_length = rd_u16(rd)
            pattern = PyBytes_FromStringAndSize(rd_raw(rd, match_length) if match_length else NULL,
                                                match_length)
        _expect_end(rd)
        cursor = self.ex.scan(cursor, prefix, prefix_length, pattern, count, keys)
        size = 12
        for key in keys:
            size += 2 + PyBytes_GET_SIZE(key)
        self.ex.check_reply(size)
        length_at = out.start_frame(ST_OK)
        out.write_u64(cursor)
        out.write_u32(<uint32_t>len(keys))
        for key in keys:
            out.write_u16(<uint16_t>PyBytes_GET_SIZE(key))
            out.write_raw(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        return out.end_frame(length_at)

    cdef int _info(self, Reader* rd) except -1:
        cdef Py_ssize_t length_at
        _expect_end(rd)
        info = self.ex.info()
        length_at = self.out.start_frame(ST_OK)
        encode_value(self.out, info)
        return self.out.end_frame(length_at)

    # -- eviction (issue 12)
    cdef int _config(self, Reader* rd, uint8_t op) except -1:
        cdef Py_ssize_t length_at
        cdef object settings
        if op == OP_CONFIG_GET:
            _expect_end(rd)
            length_at = self.out.start_frame(ST_OK)
            encode_value(self.out, self.ex.config_get())
            return self.out.end_frame(length_at)
        settings = decode_value(rd)
        _expect_end(rd)
        if type(settings) is not dict:
            raise ProtocolError("CONFIG_SET carries one Map value")
        self.ex.config_set(settings)
        return self._reply(ST_OK, NULL, 0)
    # -- end eviction

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
