from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec  # -- limits (issue 10)

# The executor: the one way from a parsed request to the engine, whatever
# framing it came in (redis's processCommand and the command procs).
#
# A framing calls admit(row) once per request, before parsing its payload:
# that counts the request by command row and applies the gates that depend on
# the command's flags. Then it calls the command's method with the parsed
# arguments (pointers into its own input) and encodes what comes back. The
# rules of the commands live here or in Core, never in a framing: MSET's all
# or nothing, the TTL states, SCAN's prefix handling, INFO's assembly.


@cython.final
cdef class ServerStats:
    """Counters shared by every connection of one server: requests per
    command and bytes in and out. Read by INFO."""

    def __cinit__(self):
        cdef int i
        for i in range(<int>MAX_COMMANDS):
            self.calls[i] = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def commands(self):
        """Requests handled per command name, for the commands seen so far."""
        cdef int i
        return {_WIRE_NAMES[i]: self.calls[i] for i in range(len(_WIRE_NAMES)) if self.calls[i]}


# -- durability (issue 11)
cdef int _refuse_writes(Core core) except -1:
    why = core.journal.failure if core.journal is not None else None
    raise PersistenceError(f"writes are refused: {why or 'the data directory is not writable'}")
# -- end durability


cdef int _refuse_ttl(uint64_t ms, bint none_allowed) except -1:
    if ms == 0 and not none_allowed:
        raise InvalidArgumentError("ttl must be > 0 ms")
    raise InvalidArgumentError(f"ttl of {ms} ms is over the limit of {MAX_TTL_MS} ms")


cdef inline int64_t _ttl_arg(uint64_t ms, bint none_allowed) except -1:
    # A ttl in ms as a request carries it; 0 is "no expiry" where allowed.
    if ms > <uint64_t>MAX_TTL_MS or (ms == 0 and not none_allowed):
        _refuse_ttl(ms, none_allowed)
    return <int64_t>ms


cdef Py_ssize_t _scan_count(object count) except -1:
    # SCAN's count, from the wire or from a caller: a hint of keys per step.
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= SCAN_MAX_COUNT:
        raise InvalidArgumentError(f"count must be an int from 1 to {SCAN_MAX_COUNT}, got {count!r}")
    return <Py_ssize_t>count


cdef int _refuse_value_size(Py_ssize_t i, Py_ssize_t length) except -1:
    raise ValueTooLargeError(f"value {i} is {length} bytes, the limit is {MAX_VALUE_BYTES}")


# -- eviction (issue 12)
cdef frozenset _CONFIG_SETTINGS = frozenset({"max_memory", "max_keys", "eviction", "eviction_samples"})


cdef int _reserve_batch(Core core, const Arg* items, Py_ssize_t count, bint has_ttl) except -1:
    cdef size_t need = 0
    cdef Py_ssize_t new_keys = 0
    cdef Py_ssize_t i
    for i in range(count):
        core.batch_item(items[2 * i].ptr, items[2 * i].length, items[2 * i + 1].length, has_ttl,
                        &need, &new_keys)
    core.reserve(need, new_keys)
    return 0
# -- end eviction


@cython.final
cdef class Executor:
    """The command executor of one connection (see _wire/executor.pxi)."""

    def __init__(self, KeySpace engine not None, ServerStats stats=None, server_info=None,
                 max_reply=None):
        if engine._prefix:
            raise InvalidArgumentError("a server serves a whole Engine, not a namespace view")
        if server_info is not None and not callable(server_info):
            raise InvalidArgumentError("server_info must be a callable returning a dict")
        self.engine = engine
        self.core = engine._core
        self.stats = stats if stats is not None else ServerStats()
        self.calls = self.stats.calls
        self.server_info = server_info
        self.authenticated = True
        self.args = WriteBuffer.new()
        # -- limits (issue 10)
        self.max_reply = _reply_limit(max_reply)
        self.work = 0
        self.flushing = False
        self.text = WriteBuffer.new()    # RESP (issue 13)

    # -- the gate every request passes ------------------------------------

    cdef inline int admit(self, int row) except -1:
        cdef uint32_t flags = _SPECS[row].flags
        self.calls[row] += 1
        self.work += 1
        if row == CMD_UNKNOWN:
            return 0
        # GATE: the checks on the command's flags. Issue 14 (AUTH) refuses
        # everything but FLAG_ALLOWED_BEFORE_AUTH until the connection has
        # authenticated, and FLAG_ADMIN for tenants; issue 12 (maxmemory)
        # refuses FLAG_MAY_GROW_MEMORY once memory is full and eviction could
        # not make room: that refusal is Core's (OutOfMemoryError, kind
        # "oom"), made before the write changes anything, so Engine and the
        # wire share it; MSET reserves its room in mset() below.
        if not self.authenticated and not (flags & FLAG_ALLOWED_BEFORE_AUTH_BIT):
            self._refuse(row, flags)
        # -- durability (issue 11): the log cannot be written, so no write may run
        if (flags & FLAG_WRITE_BIT) and self.core.writes_refused:
            _refuse_writes(self.core)
        # -- end durability
        # One clock read and one bounded housekeeping step per request.
        self.core.begin()
        return 0

    cdef int _refuse(self, int row, uint32_t flags) except -1:
        # Issue 14 gives this its own error kind (NOAUTH).
        raise ServerError(f"{_WIRE_NAMES[row]} needs an authenticated connection")

    cdef Arg* arg_array(self, Py_ssize_t n) except NULL:
        self.args.clear()
        _room(self.args, (n if n else 1) * <Py_ssize_t>sizeof(Arg))
        return <Arg*>self.args._buf

    cdef int done_with_args(self) except -1:
        if self.args._size > KEEP_BUFFER_BYTES:
            self.args.reset()
        return 0

    # -- one method per command ---------------------------------------------

    cdef int get(self, const char* key, Py_ssize_t key_length,
                 const char** value, Py_ssize_t* value_length) except -1:
        return self.core.lookup(key, key_length, value, value_length)

    cdef int store(self, const char* key, Py_ssize_t key_length, const char* value,
                   Py_ssize_t value_length, int64_t ttl_ms, StoreMode mode,
                   const char* expected, Py_ssize_t expected_length) except -1:
        return self.core.store(key, key_length, value, value_length, ttl_ms, mode,
                               expected, expected_length)

    cdef int delete(self, const char* key, Py_ssize_t key_length) except -1:
        return self.core.remove(key, key_length)

    cdef int exists(self, const char* key, Py_ssize_t key_length) except -1:
        return self.core.contains(key, key_length)

    cdef int64_t add(self, const char* key, Py_ssize_t key_length, int64_t delta,
                     bint subtract) except? -1:
        cdef int64_t result
        if subtract:
            self.core.decrement(key, key_length, delta, &result)
        else:
            self.core.increment(key, key_length, delta, &result)
        return result

    cdef int expire(self, const char* key, Py_ssize_t key_length, int64_t ttl_ms) except -1:
        return self.core.set_expiry(key, key_length, ttl_ms)

    cdef TtlState ttl(self, const char* key, Py_ssize_t key_length,
                      int64_t* ms) except? TTL_STATE_MISSING:
        # Core answers -2 (missing) and -1 (no expiry) in band; a framing is
        # given the state and, when expiring, the milliseconds left.
        cdef int64_t remaining = self.core.remaining_ms(key, key_length)
        ms[0] = remaining
        if remaining == TTL_MISSING:
            return TTL_STATE_MISSING
        if remaining == TTL_NO_EXPIRY:
            return TTL_STATE_PERSISTENT
        return TTL_STATE_EXPIRING

    cdef int persist(self, const char* key, Py_ssize_t key_length) except -1:
        return self.core.persist(key, key_length)

    cdef int getdel(self, const char* key, Py_ssize_t key_length, WriteBuffer out) except -1:
        return self.core.take(key, key_length, out)

    cdef int getset(self, const char* key, Py_ssize_t key_length, const char* value,
                    Py_ssize_t value_length, int64_t ttl_ms, WriteBuffer out) except -1:
        return self.core.exchange(key, key_length, value, value_length, ttl_ms, out)

    cdef int delete_if_equal(self, const char* key, Py_ssize_t key_length,
                             const char* expected, Py_ssize_t expected_length) except -1:
        return self.core.remove_if_equal(key, key_length, expected, expected_length)

    cdef int mset(self, const Arg* items, Py_ssize_t count, int64_t ttl_ms) except -1:
        # All or nothing (redis's msetGenericCommand): every value is checked
        # before the first write, and the writes are one batch for the log.
        cdef Py_ssize_t i
        self.work += count
        for i in range(count):
            if items[2 * i + 1].length > MAX_VALUE_BYTES:
                _refuse_value_size(i, items[2 * i + 1].length)
        # -- eviction (issue 12): room for the whole batch, or OOM before any write
        if self.core.ev.active:
            _reserve_batch(self.core, items, count, ttl_ms > 0)
        # -- end eviction
        self.core.batch_begin()
        try:
            for i in range(count):
                self.core.store(items[2 * i].ptr, items[2 * i].length, items[2 * i + 1].ptr,
                                items[2 * i + 1].length, ttl_ms, STORE_ALWAYS, NULL, 0)
        finally:
            self.core.batch_end()
            self.core.end_reserve()     # -- eviction (issue 12)
        return 0

    cdef Py_ssize_t mdel(self, const Arg* keys, Py_ssize_t count) except -1:
        cdef Py_ssize_t i
        cdef Py_ssize_t removed = 0
        self.work += count
        self.core.batch_begin()
        try:
            for i in range(count):
                removed += self.core.remove(keys[i].ptr, keys[i].length)
        finally:
            self.core.batch_end()
        return removed

    cdef Py_ssize_t flush(self, const char* prefix, Py_ssize_t prefix_length) except -1:
        # An empty prefix flushes everything; a namespaced client sends "ns:".
        return self.core.remove_prefixed(prefix, prefix_length)

    cdef uint64_t scan(self, uint64_t cursor, const char* prefix, Py_ssize_t prefix_length,
                       object pattern, Py_ssize_t count,
                       list out) except? 0xFFFFFFFFFFFFFFFF:
        # The client sends its namespace prefix; Core matches and strips it,
        # as Engine's namespace views do. UINT64_MAX is never a cursor.
        if cursor == 0xFFFFFFFFFFFFFFFF:
            raise InvalidArgumentError("cursor must be one returned by SCAN")
        # A step looks at up to 10 buckets per key asked for: a count of a
        # million would walk the whole table in one request. count is a hint,
        # so a step asks for at most what fits one turn's work budget.
        if count > MAX_TURN_WORK // 10:
            count = MAX_TURN_WORK // 10
        self.work += 10 * count
        # Half the reply limit for the keys: a step may go over by a bucket.
        return self.core.scan_limited(cursor, prefix, prefix_length, pattern, count,
                                      self.max_reply // 2, out)

    # -- eviction (issue 12)
    cdef dict config_get(self):
        info = self.engine.info()
        return {"max_memory": info["max_memory"], "max_keys": info["max_keys"],
                "eviction": info["eviction_policy"], "eviction_samples": info["eviction_samples"]}

    cdef int config_set(self, dict settings) except -1:
        # Engine.configure checks every value before it changes anything.
        unknown = sorted(set(settings) - _CONFIG_SETTINGS)
        if unknown:
            raise InvalidArgumentError(
                f"CONFIG_SET knows {', '.join(sorted(_CONFIG_SETTINGS))}; not {', '.join(unknown)}")
        self.engine.configure(**settings)
        return 0
    # -- end eviction

    cdef dict info(self):
        # Engine figures, then the server's, then the figures of the requests.
        cdef dict info = self.engine.info()
        if self.server_info is not None:
            info.update(self.server_info())
        info["calls"] = self.stats.commands()
        info["bytes_in"] = self.stats.bytes_in
        info["bytes_out"] = self.stats.bytes_out
        return info

    # -- limits (issue 10) ----------------------------------------------------

    cdef int new_turn(self) except -1:
        self.work = 0
        return 0

    cdef bint over_budget(self) noexcept:
        return self.work >= MAX_TURN_WORK or self.flushing

    cdef int check_reply(self, Py_ssize_t size) except -1:
        if size > self.max_reply:
            raise LimitError(f"the reply would be {size} bytes, over the server's reply limit "
                             f"of {self.max_reply} bytes; ask for less at a time")
        return 0

    cdef Py_ssize_t mget(self, const Arg* keys, Py_ssize_t count, Arg* values,
                         Py_ssize_t fixed, Py_ssize_t per_item) except -1:
        # Pointers first, bytes after: the sum is known before any byte of the
        # reply is committed. Looking up other keys never moves or frees a
        # found entry (only an expired one, which was not found), so the
        # pointers stay valid until the framing has copied them.
        cdef Py_ssize_t i
        cdef Py_ssize_t total = fixed + per_item * count
        self.work += count
        for i in range(count):
            if self.core.lookup(keys[i].ptr, keys[i].length, &values[i].ptr, &values[i].length):
                total += values[i].length
            else:
                values[i].ptr = NULL
                values[i].length = 0
        self.check_reply(total)
        return total

    cdef int flush_begin(self, const char* prefix, Py_ssize_t prefix_length) except -1:
        if prefix_length == 0:
            self.flush_removed = self.flush(NULL, 0)
            return 1
        self.flush_prefix = PyBytes_FromStringAndSize(prefix, prefix_length)
        self.flush_cursor = 0
        self.flush_removed = 0
        self.flushing = True
        return self._flush_steps()

    cdef int flush_continue(self) except -1:
        self.core.begin()
        return self._flush_steps()

    cdef int _flush_steps(self) except -1:
        # Small steps until the scan is complete, this turn's work budget is
        # spent or about a millisecond has gone: the scan's cursor jumps
        # across the table, so a step's cost in time varies tenfold with the
        # cache (benchmarks/server.py's flush row), and the clock bounds it.
        cdef Py_ssize_t step_work
        cdef double started = _turn_clock_us()
        try:
            while True:
                step_work = 0
                self.flush_cursor = self.core.remove_prefixed_step(
                    PyBytes_AS_STRING(self.flush_prefix), PyBytes_GET_SIZE(self.flush_prefix),
                    self.flush_cursor, FLUSH_STEP_KEYS, &self.flush_removed, &step_work)
                # A bucket visited costs about twice a small request, so it counts twice.
                self.work += 2 * step_work
                if self.flush_cursor == 0:
                    self.flushing = False
                    self.flush_prefix = None
                    return 1
                if self.work >= MAX_TURN_WORK or _turn_clock_us() - started >= TURN_TIME_US:
                    return 0
        except BaseException:
            self.flushing = False
            self.flush_prefix = None
            raise

    # -- RESP (issue 13): Redis's string and keyspace commands -----------------
    # (helpers: text_view, parse_i64, wall_ms below the class)

    cdef int64_t add_text(self, const char* key, Py_ssize_t key_length, int64_t delta,
                          bint subtract) except? -1:
        cdef const char* value
        cdef const char* text
        cdef Py_ssize_t value_length, text_length
        cdef int64_t current, result
        cdef bint overflow
        if not self.core.lookup(key, key_length, &value, &value_length) or (
                value_length == INT_VALUE_BYTES and <uint8_t>value[0] == TAG_INT):
            return self.add(key, key_length, delta, subtract)
        text_view(value, value_length, self.text, &text, &text_length)
        if not parse_i64(text, text_length, &current):
            raise InvalidArgumentError("value is not an integer or out of range")
        if subtract:
            overflow = (delta < 0 and current > INT64_MAX + delta) or (
                delta > 0 and current < INT64_MIN + delta)
        else:
            overflow = (delta > 0 and current > INT64_MAX - delta) or (
                delta < 0 and current < INT64_MIN - delta)
        if overflow:
            raise _errors.IntegerOverflowError("increment or decrement would overflow")
        result = current - delta if subtract else current + delta
        # Stored as an int from now on, so the next INCR is the engine's in-place one.
        self.text.clear()
        self.text.write_u8(TAG_INT)
        self.text.write_i64(result)
        self.store_keep_ttl(key, key_length, self.text._buf, INT_VALUE_BYTES)
        return result

    cdef bytes add_float(self, const char* key, Py_ssize_t key_length, const char* increment,
                         Py_ssize_t increment_length):
        # Redis's incrbyfloatCommand: long double arithmetic, "%.17Lf" with
        # the trailing zeros dropped (ld2string's human mode), stored as text.
        cdef const char* value
        cdef const char* text
        cdef Py_ssize_t value_length, text_length
        cdef long double current = 0
        cdef long double delta
        cdef long double result
        cdef char digits[MAX_LONG_DOUBLE_CHARS]
        cdef int n
        if not _parse_long_double(increment, increment_length, &delta):
            raise InvalidArgumentError("value is not a valid float")
        if self.core.lookup(key, key_length, &value, &value_length):
            text_view(value, value_length, self.text, &text, &text_length)
            if not _parse_long_double(text, text_length, &current):
                raise InvalidArgumentError("value is not a valid float")
        result = current + delta
        if isnan(result) or isinf(result):
            raise InvalidArgumentError("increment would produce NaN or Infinity")
        n = snprintf(digits, sizeof(digits), "%.17Lf", result)
        if n <= 0 or n >= <int>sizeof(digits):
            raise InvalidArgumentError("increment would produce NaN or Infinity")
        if memchr(digits, c'.', n) != NULL:
            while digits[n - 1] == c'0':
                n -= 1
            if digits[n - 1] == c'.':
                n -= 1
        if n == 2 and digits[0] == c'-' and digits[1] == c'0':
            digits[0] = c'0'
            n = 1
        _text_header(self.text, n)
        self.text.write_raw(digits, n)
        self.store_keep_ttl(key, key_length, self.text._buf, self.text._length)
        return PyBytes_FromStringAndSize(digits, n)

    cdef int store_keep_ttl(self, const char* key, Py_ssize_t key_length, const char* value,
                            Py_ssize_t value_length) except -1:
        # Core's clock is read once per request, so the deadline is unchanged.
        cdef int64_t remaining = self.core.remaining_ms(key, key_length)
        return self.core.store(key, key_length, value, value_length,
                               remaining if remaining > 0 else 0, STORE_ALWAYS, NULL, 0)

    cdef Py_ssize_t append(self, const char* key, Py_ssize_t key_length, const char* data,
                           Py_ssize_t length) except -1:
        cdef const char* value
        cdef const char* text = NULL
        cdef Py_ssize_t value_length
        cdef Py_ssize_t text_length = 0
        cdef WriteBuffer tmp = None
        if self.core.lookup(key, key_length, &value, &value_length):
            tmp = WriteBuffer.new()
            text_view(value, value_length, tmp, &text, &text_length)
        if text_length + length > MAX_TEXT_BYTES:
            _refuse_text_size()
        # Built first: text may point into the entry the store replaces.
        _text_header(self.text, text_length + length)
        self.text.write_raw(text, text_length)
        self.text.write_raw(data, length)
        self.store_keep_ttl(key, key_length, self.text._buf, self.text._length)
        if self.text._size > KEEP_BUFFER_BYTES:
            self.text.reset()
        return text_length + length

    cdef Py_ssize_t set_range(self, const char* key, Py_ssize_t key_length, int64_t offset,
                              const char* data, Py_ssize_t length) except -1:
        cdef const char* value
        cdef const char* text = NULL
        cdef Py_ssize_t value_length, new_length
        cdef Py_ssize_t text_length = 0
        cdef bint found = self.core.lookup(key, key_length, &value, &value_length)
        cdef WriteBuffer tmp = WriteBuffer.new()
        if offset < 0:
            raise InvalidArgumentError("offset is out of range")
        if found:
            text_view(value, value_length, tmp, &text, &text_length)
        if length == 0:
            return text_length
        if offset + length > MAX_TEXT_BYTES:
            _refuse_text_size()
        new_length = max(text_length, <Py_ssize_t>offset + length)
        _text_header(self.text, new_length)
        self.text.write_raw(text, text_length)
        if new_length > text_length:
            memset(self.text._buf + self.text._length, 0, new_length - text_length)
        memcpy(self.text._buf + 5 + offset, data, length)
        self.text._length = 5 + new_length
        self.store_keep_ttl(key, key_length, self.text._buf, self.text._length)
        if self.text._size > KEEP_BUFFER_BYTES:
            self.text.reset()
        return new_length

    cdef int rename(self, const char* source, Py_ssize_t source_length, const char* target,
                    Py_ssize_t target_length, bint only_if_absent) except -1:
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef int64_t remaining
        if not self.core.lookup(source, source_length, &value, &value_length):
            return 0
        if only_if_absent and self.core.contains(target, target_length):
            return 2
        if source_length == target_length and memcmp(source, target, source_length) == 0:
            return 1
        self.text.clear()
        self.text.write_raw(value, value_length)
        remaining = self.core.remaining_ms(source, source_length)
        self.core.batch_begin()
        try:
            self.core.store(target, target_length, self.text._buf, self.text._length,
                            remaining if remaining > 0 else 0, STORE_ALWAYS, NULL, 0)
            self.core.remove(source, source_length)
        finally:
            self.core.batch_end()
        if self.text._size > KEEP_BUFFER_BYTES:
            self.text.reset()
        return 1

    cdef int expire_if(self, const char* key, Py_ssize_t key_length, int64_t ttl_ms,
                       int condition) except -1:
        # Redis's expireGenericCommand: a key without a ttl counts as expiring
        # never, so GT never holds for it and LT always does.
        cdef int64_t remaining = self.core.remaining_ms(key, key_length)
        cdef bint persistent = remaining == TTL_NO_EXPIRY
        if remaining == TTL_MISSING:
            return 0
        if (condition & EXPIRE_NX) and not persistent:
            return 0
        if (condition & EXPIRE_XX) and persistent:
            return 0
        if (condition & EXPIRE_GT) and (persistent or ttl_ms <= remaining):
            return 0
        if (condition & EXPIRE_LT) and not persistent and ttl_ms >= remaining:
            return 0
        if ttl_ms <= 0:
            return self.core.remove(key, key_length)
        return self.core.set_expiry(key, key_length, _ttl_arg(<uint64_t>ttl_ms, False))

    cdef Py_ssize_t dbsize(self) except -1:
        return self.core.count(NULL, 0)

    cdef object random_key(self):
        # A scan step from a random cursor; the table is walked on from there
        # (wrapping once) when that part of it is empty.
        cdef list keys = []
        cdef uint64_t cursor
        cdef bint wrapped = False
        if self.core.count(NULL, 0) == 0:
            return None
        cursor = _random.getrandbits(64) & 0x7FFFFFFFFFFFFFFF
        while True:
            cursor = self.core.scan(cursor, NULL, 0, None, 1, keys)
            if keys:
                return _random.choice(keys)
            if cursor == 0:
                if wrapped:
                    return None
                wrapped = True

    cdef object watch_state(self, const char* key, Py_ssize_t key_length):
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef int64_t remaining
        if not self.core.lookup(key, key_length, &value, &value_length):
            return None
        encoded = PyBytes_FromStringAndSize(value, value_length)
        remaining = self.core.remaining_ms(key, key_length)
        return (encoded, self.core.now() + remaining if remaining >= 0 else -1)

    # -- durability (issue 11)
    cdef uint64_t snapshot(self) except? 0xFFFFFFFFFFFFFFFF:
        # Like BGSAVE: starts one and answers at once; the server's
        # housekeeping tick steps it (the engine's tick) and a thread finishes it.
        journal = self.core.journal
        if journal is None:
            raise PersistenceError("SNAPSHOT needs a server started with --data-dir")
        return 1 if journal.snapshot_begin() else 0
    # -- end durability


cdef inline double _turn_clock_us() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3


cdef object LimitError = _errors.LimitError
cdef object ServerOutOfMemoryError = _errors.ServerOutOfMemoryError
# A reply limit by default as large as the request limit: any value a client
# could store fits in a reply, a batch of them can not amplify past it.
DEFAULT_MAX_REPLY = DEFAULT_MAX_PAYLOAD_BYTES


cdef Py_ssize_t _reply_limit(object max_reply) except -1:
    if max_reply is None:
        return DEFAULT_MAX_PAYLOAD_BYTES
    if isinstance(max_reply, bool) or not isinstance(max_reply, int) or not (
            0 < max_reply <= U32_MAX):
        raise InvalidArgumentError(
            f"max_reply must be an int from 1 to {U32_MAX} bytes, not {max_reply!r}")
    return max_reply


# -- RESP (issue 13) -----------------------------------------------------------
# Redis's string and keyspace commands, for the RESP framing. Their rules
# live here, like every command's; the framing parses words and encodes.

from libc.stdint cimport INT64_MAX, INT64_MIN
from libc.stdio cimport snprintf
from kvstore._codec cimport (
    INT_VALUE_BYTES, TAG_BOOL, TAG_BYTES, TAG_DECIMAL, TAG_FLOAT, TAG_INT, TAG_LIST, TAG_MAP,
    TAG_STRING,
)
from libc.string cimport memchr, memcmp, memset
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from decimal import Decimal as _Decimal
import random as _random

# EXPIRE's conditions (Redis 7).
cdef enum:
    EXPIRE_NX = 1
    EXPIRE_XX = 2
    EXPIRE_GT = 4
    EXPIRE_LT = 8
    # The largest string value: the engine's limit less the bytes tag's header.
    MAX_TEXT_BYTES = MAX_VALUE_BYTES - 5

cdef bytes _BOOL_TEXT = b"01"


cdef int64_t wall_ms() noexcept:
    # Unix time in ms: EXPIREAT, EXPIRETIME and TIME speak it, Core does not.
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000


cdef bint parse_i64(const char* p, Py_ssize_t n, int64_t* out) noexcept:
    # Redis's string2ll: an optional '-', no leading zeros, no '+' or spaces,
    # within signed 64 bits. The canonical text of an integer, nothing else.
    cdef Py_ssize_t i = 0
    cdef bint negative = False
    cdef uint64_t v = 0
    cdef uint64_t limit
    if n <= 0 or n > 20:
        return False
    if n == 1 and p[0] == c'0':
        out[0] = 0
        return True
    if p[0] == c'-':
        negative = True
        i = 1
        if n == 1:
            return False
    if not (c'1' <= p[i] <= c'9'):
        return False
    limit = (<uint64_t>1 << 63) if negative else (<uint64_t>1 << 63) - 1
    while i < n:
        if not (c'0' <= p[i] <= c'9'):
            return False
        if v > (limit - <uint64_t>(p[i] - c'0')) // 10:
            return False
        v = v * 10 + <uint64_t>(p[i] - c'0')
        i += 1
    out[0] = -<int64_t>(v - 1) - 1 if negative else <int64_t>v
    return True


def _float_text(double value):
    # Redis's "human" long double format (ld2string, LD_STR_HUMAN): fixed
    # point, no exponent, trailing zeros dropped; shortest round trip digits.
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(_Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


cdef extern from "<stdlib.h>":
    long double strtold(const char* text, char** end) nogil

cdef extern from "<math.h>":
    bint isnan(long double x) nogil
    bint isinf(long double x) nogil

cdef enum:
    MAX_LONG_DOUBLE_CHARS = 5120     # Redis's MAX_LONG_DOUBLE_CHARS


cdef bint _parse_long_double(const char* text, Py_ssize_t length, long double* out) except -1:
    # Redis's string2ld: the whole text is a number (strtold), no leading
    # space, not NaN; at most MAX_LONG_DOUBLE_CHARS long.
    cdef char buf[MAX_LONG_DOUBLE_CHARS]
    cdef char* end
    if length <= 0 or length >= MAX_LONG_DOUBLE_CHARS:
        return False
    memcpy(buf, text, length)
    buf[length] = 0
    if buf[0] in b" \t\n\r\v\f":
        return False
    out[0] = strtold(buf, &end)
    if end != buf + length or isnan(out[0]):
        return False
    return True


cdef int text_view(const char* enc, Py_ssize_t length, WriteBuffer tmp,
                   const char** text, Py_ssize_t* text_length) except -1:
    # A stored value as a Redis string (docs/resp.md, "Values"): bytes as they
    # are, str as its UTF-8, int as decimal text, float in Redis's format,
    # bool as 1/0, Decimal as its text; (text, text_length) points into the
    # entry or into tmp. None, lists and dicts are WrongTypeError.
    cdef uint8_t tag = <uint8_t>enc[0]
    cdef char digits[24]
    cdef int n
    cdef uint64_t bits
    cdef double number
    if tag == TAG_BYTES or tag == TAG_STRING:
        text[0] = enc + 5
        text_length[0] = kv_load_u32(enc + 1)
        return 1
    if tag == TAG_INT:
        n = snprintf(digits, sizeof(digits), "%lld", <long long><int64_t>kv_load_u64(enc + 1))
        tmp.clear()
        tmp.write_raw(digits, n)
        text[0] = tmp._buf
        text_length[0] = n
        return 1
    if tag == TAG_DECIMAL:
        text[0] = enc + 3
        text_length[0] = kv_load_u16(enc + 1)
        return 1
    if tag == TAG_BOOL:
        text[0] = PyBytes_AS_STRING(_BOOL_TEXT) + (1 if enc[1] else 0)
        text_length[0] = 1
        return 1
    if tag == TAG_FLOAT:
        bits = kv_load_u64(enc + 1)
        memcpy(&number, &bits, 8)
        encoded = _float_text(number).encode("ascii")
        tmp.clear()
        tmp.write_raw(PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded))
        text[0] = tmp._buf
        text_length[0] = PyBytes_GET_SIZE(encoded)
        return 1
    raise _errors.WrongTypeError("the key holds a value that is not a string")


cdef bint is_text(const char* enc) noexcept:
    cdef uint8_t tag = <uint8_t>enc[0]
    return tag != TAG_NULL and tag != TAG_LIST and tag != TAG_MAP


cdef int _refuse_text_size() except -1:
    raise ValueTooLargeError("string exceeds maximum allowed size (proto-max-bulk-len)")


cdef inline int _text_header(WriteBuffer buf, Py_ssize_t length) except -1:
    # The bytes tag and length: a string written over RESP is stored as bytes.
    buf.clear()
    _room(buf, 5 + length)
    buf._buf[0] = <char>TAG_BYTES
    kv_store_u32(buf._buf + 1, <uint32_t>length)
    buf._length = 5
    return 0
