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


@cython.final
cdef class Executor:
    """The command executor of one connection (see _wire/executor.pxi)."""

    def __init__(self, KeySpace engine not None, ServerStats stats=None, server_info=None):
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

    # -- the gate every request passes ------------------------------------

    cdef inline int admit(self, int row) except -1:
        cdef uint32_t flags = _SPECS[row].flags
        self.calls[row] += 1
        if row == CMD_UNKNOWN:
            return 0
        # GATE: the checks on the command's flags. Issue 14 (AUTH) refuses
        # everything but FLAG_ALLOWED_BEFORE_AUTH until the connection has
        # authenticated, and FLAG_ADMIN for tenants; issue 12 (maxmemory)
        # refuses FLAG_MAY_GROW_MEMORY once memory is full and eviction could
        # not make room. Neither condition can hold yet.
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
        for i in range(count):
            if items[2 * i + 1].length > MAX_VALUE_BYTES:
                _refuse_value_size(i, items[2 * i + 1].length)
        self.core.batch_begin()
        try:
            for i in range(count):
                self.core.store(items[2 * i].ptr, items[2 * i].length, items[2 * i + 1].ptr,
                                items[2 * i + 1].length, ttl_ms, STORE_ALWAYS, NULL, 0)
        finally:
            self.core.batch_end()
        return 0

    cdef Py_ssize_t mdel(self, const Arg* keys, Py_ssize_t count) except -1:
        cdef Py_ssize_t i
        cdef Py_ssize_t removed = 0
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
        return self.core.scan(cursor, prefix, prefix_length, pattern, count, out)

    cdef dict info(self):
        # Engine figures, then the server's, then the figures of the requests.
        cdef dict info = self.engine.info()
        if self.server_info is not None:
            info.update(self.server_info())
        info["calls"] = self.stats.commands()
        info["bytes_in"] = self.stats.bytes_in
        info["bytes_out"] = self.stats.bytes_out
        return info

    # -- durability (issue 11)
    cdef uint64_t snapshot(self) except? 0xFFFFFFFFFFFFFFFF:
        # Like BGSAVE: starts one and answers at once; the server's
        # housekeeping tick steps it (the engine's tick) and a thread finishes it.
        journal = self.core.journal
        if journal is None:
            raise PersistenceError("SNAPSHOT needs a server started with --data-dir")
        return 1 if journal.snapshot_begin() else 0
    # -- end durability
