# The RESP framing (docs/resp.md): Redis's protocol, RESP2 and RESP3, in
# front of the same Executor as the binary framing.
#
# Like the binary Processor, feed() runs every complete command in the bytes
# received so far and returns all their replies in one piece. A command is
# parsed in place: its words are (pointer, length) pairs into the input, the
# command is found by name in a small C hash table, and GET/SET/MGET/MSET/
# DEL/INCR create no Python object (a value is copied from its entry straight
# into the output). This piece only parses and encodes: what a command does
# is the Executor's, and which commands exist is the command table's
# (RESP_COMMANDS in commands.pxi).
#
# Redis's parser defences (networking.c, and CVE-2021-32675's): a count line
# or an inline line without CRLF within 64 KB is a protocol error; a
# multibulk count must be an integer <= 1048576 here (Redis: INT_MAX; the
# argument array grows with the words actually received, never from the
# count); a bulk length must follow '$' and be 0..max_payload; one command's
# words total at most max_payload bytes. A protocol error is answered
# ("-ERR Protocol error: ...") and closes the connection (framing_lost).

cdef enum:
    RESP_INLINE_MAX = 65536          # PROTO_INLINE_MAX_SIZE
    RESP_MAX_ARGS = 1048576          # words in one multibulk command
    RESP_NAME_MAX = 24               # longest command name in the table, with room
    RESP_SLOTS = 512                 # the name hash table (power of two)
    RESP_MAX_COMMANDS = 128

# The command a name resolves to: each has one handler below.
cdef enum RespCommand:
    RC_GET = 1
    RC_SET
    RC_DEL
    RC_EXISTS
    RC_INCR
    RC_DECR
    RC_INCRBY
    RC_DECRBY
    RC_INCRBYFLOAT
    RC_MGET
    RC_MSET
    RC_MSETNX
    RC_SETNX
    RC_SETEX
    RC_PSETEX
    RC_GETSET
    RC_GETDEL
    RC_GETEX
    RC_APPEND
    RC_STRLEN
    RC_GETRANGE
    RC_SETRANGE
    RC_TOUCH
    RC_TYPE
    RC_RENAME
    RC_RENAMENX
    RC_KEYS
    RC_SCAN
    RC_RANDOMKEY
    RC_EXPIRE
    RC_PEXPIRE
    RC_EXPIREAT
    RC_PEXPIREAT
    RC_EXPIRETIME
    RC_PEXPIRETIME
    RC_TTL
    RC_PTTL
    RC_PERSIST
    RC_PING
    RC_ECHO
    RC_QUIT
    RC_HELLO
    RC_AUTH
    RC_SELECT
    RC_CLIENT
    RC_INFO
    RC_CONFIG
    RC_COMMAND
    RC_DBSIZE
    RC_FLUSHDB
    RC_FLUSHALL
    RC_TIME
    RC_MULTI
    RC_EXEC
    RC_DISCARD
    RC_WATCH
    RC_UNWATCH

cdef dict _RESP_HANDLERS = {
    "GET": RC_GET, "SET": RC_SET, "DEL": RC_DEL, "UNLINK": RC_DEL, "EXISTS": RC_EXISTS,
    "INCR": RC_INCR, "DECR": RC_DECR, "INCRBY": RC_INCRBY, "DECRBY": RC_DECRBY,
    "INCRBYFLOAT": RC_INCRBYFLOAT, "MGET": RC_MGET, "MSET": RC_MSET, "MSETNX": RC_MSETNX,
    "SETNX": RC_SETNX, "SETEX": RC_SETEX, "PSETEX": RC_PSETEX, "GETSET": RC_GETSET,
    "GETDEL": RC_GETDEL, "GETEX": RC_GETEX, "APPEND": RC_APPEND, "STRLEN": RC_STRLEN,
    "GETRANGE": RC_GETRANGE, "SUBSTR": RC_GETRANGE, "SETRANGE": RC_SETRANGE,
    "TOUCH": RC_TOUCH, "TYPE": RC_TYPE, "RENAME": RC_RENAME, "RENAMENX": RC_RENAMENX,
    "KEYS": RC_KEYS, "SCAN": RC_SCAN, "RANDOMKEY": RC_RANDOMKEY, "EXPIRE": RC_EXPIRE,
    "PEXPIRE": RC_PEXPIRE, "EXPIREAT": RC_EXPIREAT, "PEXPIREAT": RC_PEXPIREAT,
    "EXPIRETIME": RC_EXPIRETIME, "PEXPIRETIME": RC_PEXPIRETIME, "TTL": RC_TTL,
    "PTTL": RC_PTTL, "PERSIST": RC_PERSIST, "PING": RC_PING, "ECHO": RC_ECHO,
    "QUIT": RC_QUIT, "HELLO": RC_HELLO, "AUTH": RC_AUTH, "SELECT": RC_SELECT,
    "CLIENT": RC_CLIENT, "INFO": RC_INFO, "CONFIG": RC_CONFIG, "COMMAND": RC_COMMAND,
    "DBSIZE": RC_DBSIZE, "FLUSHDB": RC_FLUSHDB, "FLUSHALL": RC_FLUSHALL, "TIME": RC_TIME,
    "MULTI": RC_MULTI, "EXEC": RC_EXEC, "DISCARD": RC_DISCARD, "WATCH": RC_WATCH,
    "UNWATCH": RC_UNWATCH,
}

# The name table, in C: RESP_COMMANDS row i is entry i.
cdef char _RC_NAME[RESP_MAX_COMMANDS][RESP_NAME_MAX]
cdef uint8_t _RC_NAME_LENGTH[RESP_MAX_COMMANDS]
cdef uint8_t _RC_HANDLER[RESP_MAX_COMMANDS]
cdef uint8_t _RC_ROW[RESP_MAX_COMMANDS]
cdef int _RC_ARITY[RESP_MAX_COMMANDS]
cdef int _RC_SLOT[RESP_SLOTS]          # name hash -> entry + 1 (0: free)
cdef list _RC_LOWER_NAMES = []         # for "wrong number of arguments for 'get'"

cdef inline char _upper(char c) noexcept:
    return c - 32 if c'a' <= c <= c'z' else c


cdef inline uint32_t _name_hash(const char* name, Py_ssize_t length) noexcept:
    cdef uint32_t h = <uint32_t>length
    cdef Py_ssize_t i
    for i in range(length):
        h = h * 31 + <uint8_t>_upper(name[i])
    return h & (RESP_SLOTS - 1)


cdef int _build_names() except -1:
    cdef int i = 0
    cdef uint32_t h
    cdef bytes encoded
    assert len(RESP_COMMANDS) <= RESP_MAX_COMMANDS
    for name, row, arity, first, last, step, flags in RESP_COMMANDS:
        encoded = name.encode("ascii")
        assert len(encoded) < RESP_NAME_MAX and name in _RESP_HANDLERS, name
        memcpy(_RC_NAME[i], PyBytes_AS_STRING(encoded), len(encoded))
        _RC_NAME_LENGTH[i] = len(encoded)
        _RC_HANDLER[i] = _RESP_HANDLERS[name]
        _RC_ROW[i] = row
        _RC_ARITY[i] = arity
        _RC_LOWER_NAMES.append(name.lower())
        h = _name_hash(PyBytes_AS_STRING(encoded), len(encoded))
        while _RC_SLOT[h]:
            h = (h + 1) & (RESP_SLOTS - 1)
        _RC_SLOT[h] = i + 1
        i += 1
    return 0


_build_names()


cdef inline int _find_command(const char* name, Py_ssize_t length) noexcept:
    # The RESP_COMMANDS index of a name, any case; -1 when there is none.
    cdef uint32_t h
    cdef int entry
    cdef Py_ssize_t i
    if length <= 0 or length >= RESP_NAME_MAX:
        return -1
    h = _name_hash(name, length)
    while True:
        entry = _RC_SLOT[h]
        if entry == 0:
            return -1
        entry -= 1
        if _RC_NAME_LENGTH[entry] == length:
            for i in range(length):
                if _RC_NAME[entry][i] != _upper(name[i]):
                    break
            else:
                return entry
        h = (h + 1) & (RESP_SLOTS - 1)


cdef inline bint _word_is(const Arg* arg, const char* upper) noexcept:
    # Case-insensitive match of a word against an upper-case option name.
    cdef Py_ssize_t i
    for i in range(arg.length):
        if upper[i] == 0 or _upper(arg.ptr[i]) != upper[i]:
            return False
    return upper[arg.length] == 0


# Redis's error texts for the engine's error classes.
cdef bytes _WRONGTYPE = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
cdef str _NOT_INTEGER = "value is not an integer or out of range"
cdef str _SYNTAX = "syntax error"
cdef int64_t _client_ids = 0


class _RespProtocolError(Exception):
    # Framing is lost: answered, then the connection is closed.
    pass


cdef int _refuse_syntax() except -1:
    raise InvalidArgumentError(_SYNTAX)


cdef int _refuse_integer() except -1:
    raise InvalidArgumentError(_NOT_INTEGER)


cdef inline int64_t _int_arg(const Arg* arg) except? -1:
    cdef int64_t value
    if not parse_i64(arg.ptr, arg.length, &value):
        _refuse_integer()
    return value


cdef inline bytes _arg_bytes(const Arg* arg):
    return PyBytes_FromStringAndSize(arg.ptr, arg.length)


cdef str _arg_text(const Arg* arg):
    return PyBytes_FromStringAndSize(arg.ptr, arg.length).decode("utf-8", "replace")


@cython.final
cdef class RespProcessor(Framing):
    """The RESP framing of one connection (docs/resp.md): the same contract
    as ``Processor`` (``feed``, ``framing_lost``, ``has_backlog``), Redis's
    protocol on the wire. ``framing_lost`` also becomes true after QUIT.
    The turn, the held input and the output are Framing's (framing.pxi)."""

    cdef WriteBuffer argv                # Arg array of the command being run
    cdef WriteBuffer enc                 # value encodings SET and MSET build
    cdef WriteBuffer tmp                 # text of a non-bytes value (text_view)
    cdef WriteBuffer words               # unquoted words of an inline command
    cdef WriteBuffer queue               # MULTI's queued commands
    cdef Py_ssize_t _need                # pending must reach this before a retry
    cdef Py_ssize_t _command_at
    cdef Py_ssize_t argc
    cdef readonly int protocol           # 2 or 3 (HELLO)
    cdef object client_name
    cdef int64_t client_id
    cdef bint in_multi
    cdef bint multi_failed               # a queued command was refused: EXECABORT
    cdef Py_ssize_t queued
    cdef dict watched                    # key -> Executor.snapshot at WATCH time
    cdef uint64_t watch_mark             # Core's mutation count at the last WATCH

    def __init__(self, KeySpace engine not None, max_payload=DEFAULT_MAX_PAYLOAD,
                 ServerStats stats=None, server_info=None, max_reply=None):
        global _client_ids
        Framing.__init__(self, engine, max_payload, stats, server_info, max_reply)
        self.argv = WriteBuffer.new()
        self.enc = WriteBuffer.new()
        self.tmp = WriteBuffer.new()
        self.words = WriteBuffer.new()
        self.queue = WriteBuffer.new()
        self.protocol = 2
        _client_ids += 1
        self.client_id = _client_ids

    def error_frame(self, kind, message):
        """One error line, for a server refusing the connection itself (too
        many clients, a limit) before closing it; RESP has no kinds, so the
        text says it (Redis: "-ERR max number of clients reached")."""
        return b"-ERR " + str(message).replace("\r", " ").replace("\n", " ").encode(
            "utf-8", "replace")[:MAX_ERROR_MESSAGE_BYTES] + b"\r\n"

    cdef int _consume(self, bytes data, Py_ssize_t used) except -1:
        cdef Py_ssize_t length = PyBytes_GET_SIZE(data) - used
        cdef const char* p = PyBytes_AS_STRING(data) + used
        cdef Py_ssize_t done
        cdef WriteBuffer pending = self.pending
        if pending._length:
            # The rest of a cut command: parsed again once there can be enough.
            pending.write_raw(p, length)
            if pending._length >= self._need:
                done = self._process(pending._buf, pending._length)
                if done < pending._length and self._capped and not self.framing_lost:
                    self._hold(PyBytes_FromStringAndSize(pending._buf + done,
                                                         pending._length - done), 0)
                    pending.clear()
                else:
                    pending.consume(done)
                if pending._size > KEEP_BUFFER_BYTES and pending._length < KEEP_BUFFER_BYTES:
                    tail = pending.to_bytes()
                    pending.reset()
                    pending.write_raw(tail, len(tail))
        else:
            done = self._process(p, length)
            if done < length and not self.framing_lost:
                if self._capped:
                    self._hold(data, used + done)
                else:
                    pending.write_raw(p + done, length - done)
        if self.framing_lost:
            pending.reset()
            self._held = None
        return 0

    cdef int _flush_reply(self, uint64_t removed) except -1:
        return self._ok()

    cdef Py_ssize_t _process(self, const char* data, Py_ssize_t length) except -1:
        # Commands from data until the first incomplete one; the bytes consumed.
        cdef Py_ssize_t pos = 0
        self._capped = False
        while True:
            try:
                return self._run(data, length, pos)
            except _RespProtocolError as error:
                self.out._length = self._reply_at
                self._error_line(f"ERR Protocol error: {error}")
                self.framing_lost = True
                return length
            except Exception as error:
                self.out._length = self._reply_at
                self._answer_failure(error)
                if self._next == self._command_at:
                    # The parser itself failed (out of memory): nothing to resume after.
                    self.framing_lost = True
                pos = self._next
                if self.framing_lost:
                    return length

    cdef Py_ssize_t _run(self, const char* data, Py_ssize_t length, Py_ssize_t pos) except -1:
        cdef Py_ssize_t used
        while pos < length:
            self._reply_at = self.out._length
            self._next = self._command_at = pos
            used = self._parse(data + pos, length - pos)
            if used == 0:
                break
            self._need = 0
            self._next = pos + used
            if self.argc:
                self._execute()
            pos = self._next
            if self.framing_lost:
                return length
            # Checked after a command, so every turn runs at least one; the
            # executor counts the work (keys, buckets) and holds a FLUSH's turns.
            if self.out._length >= MAX_FEED_OUTPUT_BYTES or self.ex.over_budget():
                self._capped = True
                break
        return pos

    # -- parsing ---------------------------------------------------------------

    cdef inline Arg* _arg(self, Py_ssize_t i) except NULL:
        _room(self.argv, (i + 1) * <Py_ssize_t>sizeof(Arg) - self.argv._length)
        if self.argv._length < (i + 1) * <Py_ssize_t>sizeof(Arg):
            self.argv._length = (i + 1) * <Py_ssize_t>sizeof(Arg)
        return (<Arg*>self.argv._buf) + i

    cdef Py_ssize_t _parse(self, const char* d, Py_ssize_t n) except -1:
        # One command at d: the bytes it takes (argc words in argv), or 0 when
        # it is not complete yet (_need: the fewest bytes worth a retry).
        cdef const char* cr
        cdef Py_ssize_t pos, line_end, i
        cdef int64_t count, bulk
        cdef Py_ssize_t total = 0
        cdef Arg* arg
        self.argc = 0
        if d[0] != c'*':
            return self._parse_inline(d, n)
        cr = <const char*>memchr(d, c'\r', min(n, <Py_ssize_t>RESP_INLINE_MAX))
        if cr == NULL:
            if n > RESP_INLINE_MAX:
                raise _RespProtocolError("too big mbulk count string")
            self._need = n + 1
            return 0
        line_end = cr - d
        if line_end + 2 > n:
            self._need = line_end + 2
            return 0
        if not parse_i64(d + 1, line_end - 1, &count) or count > 0x7FFFFFFF:
            raise _RespProtocolError("invalid multibulk length")
        pos = line_end + 2
        if count <= 0:
            return pos
        if count > RESP_MAX_ARGS:
            raise _RespProtocolError("invalid multibulk length")
        self.argv._length = 0
        for i in range(count):
            if pos >= n:
                self._need = pos + 1
                return 0
            if d[pos] != c'$':
                raise _RespProtocolError(f"expected '$', got '{chr(<uint8_t>d[pos])}'")
            cr = <const char*>memchr(d + pos, c'\r', min(n - pos, <Py_ssize_t>RESP_INLINE_MAX))
            if cr == NULL:
                if n - pos > RESP_INLINE_MAX:
                    raise _RespProtocolError("too big bulk count string")
                self._need = n + 1
                return 0
            line_end = cr - d
            if line_end + 2 > n:
                self._need = line_end + 2
                return 0
            if not parse_i64(d + pos + 1, line_end - pos - 1, &bulk) or bulk < 0 \
                    or bulk > self.max_payload:
                raise _RespProtocolError("invalid bulk length")
            total += bulk
            if total > self.max_payload:
                raise _RespProtocolError(
                    f"command of more than {self.max_payload} bytes is over the server's limit")
            pos = line_end + 2
            if bulk + 2 > n - pos:
                self._need = pos + bulk + 2
                return 0
            arg = self._arg(i)
            arg.ptr = d + pos
            arg.length = bulk
            pos += bulk + 2
        self.argc = count
        return pos

    cdef Py_ssize_t _parse_inline(self, const char* d, Py_ssize_t n) except -1:
        # A line of words (telnet, redis-benchmark's inline PING), split as
        # Redis's sdssplitargs does: "..." with \n \r \t \b \a \\ \xHH escapes,
        # '...' with \', a closing quote followed by a space or the end.
        cdef const char* nl = <const char*>memchr(d, c'\n', min(n, <Py_ssize_t>RESP_INLINE_MAX))
        cdef Py_ssize_t end, i, start
        cdef char* w
        cdef char c
        cdef bint in_double, in_single, done
        cdef Py_ssize_t count = 0
        cdef Arg* arg
        if nl == NULL:
            if n > RESP_INLINE_MAX:
                raise _RespProtocolError("too big inline request")
            self._need = n + 1
            return 0
        end = nl - d
        if end > 0 and d[end - 1] == c'\r':
            end -= 1
        self.words.clear()
        _room(self.words, end + 1)
        w = self.words._buf
        self.argv._length = 0
        i = 0
        while True:
            while i < end and d[i] in b" \t\n\r\v\f":
                i += 1
            if i >= end:
                break
            start = w - self.words._buf
            in_double = in_single = done = False
            while not done:
                if in_double:
                    if i >= end:
                        raise _RespProtocolError("unbalanced quotes in request")
                    c = d[i]
                    if c == c'\\' and i + 3 < end and d[i + 1] == c'x' \
                            and _hex(d[i + 2]) >= 0 and _hex(d[i + 3]) >= 0:
                        w[0] = <char>(_hex(d[i + 2]) * 16 + _hex(d[i + 3]))
                        i += 3
                    elif c == c'\\' and i + 1 < end:
                        i += 1
                        c = d[i]
                        w[0] = (c'\n' if c == c'n' else c'\r' if c == c'r' else c'\t' if c == c't'
                                else c'\b' if c == c'b' else c'\a' if c == c'a' else c)
                    elif c == c'"':
                        if i + 1 < end and d[i + 1] not in b" \t\n\r\v\f":
                            raise _RespProtocolError("unbalanced quotes in request")
                        done = True
                        i += 1
                        continue
                    else:
                        w[0] = c
                    w += 1
                    i += 1
                elif in_single:
                    if i >= end:
                        raise _RespProtocolError("unbalanced quotes in request")
                    c = d[i]
                    if c == c'\\' and i + 1 < end and d[i + 1] == c"'":
                        w[0] = c"'"
                        i += 1
                    elif c == c"'":
                        if i + 1 < end and d[i + 1] not in b" \t\n\r\v\f":
                            raise _RespProtocolError("unbalanced quotes in request")
                        done = True
                        i += 1
                        continue
                    else:
                        w[0] = c
                    w += 1
                    i += 1
                else:
                    if i >= end or d[i] in b" \t\n\r\v\f":
                        done = True
                        continue
                    c = d[i]
                    if c == c'"':
                        in_double = True
                    elif c == c"'":
                        in_single = True
                    else:
                        w[0] = c
                        w += 1
                    i += 1
            arg = self._arg(count)
            arg.ptr = self.words._buf + start
            arg.length = (w - self.words._buf) - start
            count += 1
        self.argc = count
        return (nl - d) + 1

    # -- running one command ---------------------------------------------------

    cdef int _execute(self) except -1:
        cdef Arg* argv = <Arg*>self.argv._buf
        cdef int entry = _find_command(argv[0].ptr, argv[0].length)
        cdef int handler, arity
        if entry < 0:
            self.ex.admit(CMD_UNKNOWN)
            if self.in_multi:
                self.multi_failed = True
            return self._unknown_command()
        handler = _RC_HANDLER[entry]
        arity = _RC_ARITY[entry]
        if (arity > 0 and self.argc != arity) or (arity < 0 and self.argc < -arity):
            if self.in_multi:
                self.multi_failed = True
            return self._error_line(
                f"ERR wrong number of arguments for '{_RC_LOWER_NAMES[entry]}' command")
        if self.in_multi and handler != RC_EXEC and handler != RC_DISCARD \
                and handler != RC_MULTI and handler != RC_WATCH and handler != RC_QUIT:
            return self._queue_command()
        self.ex.admit(_RC_ROW[entry])
        return self._dispatch(handler, argv)

    cdef int _dispatch(self, int handler, Arg* argv) except -1:
        # The hottest first.
        cdef const char* value
        cdef Py_ssize_t value_length
        if handler == RC_GET:
            if self.ex.get(argv[1].ptr, argv[1].length, &value, &value_length):
                return self._value_reply(value, value_length)
            return self._null()
        if handler == RC_SET:
            if self.argc == 3:
                self._store_text(argv + 1, argv + 2, 0, STORE_ALWAYS)
                return self._ok()
            return self._set(argv)
        if handler == RC_MGET:
            return self._mget(argv)
        if handler == RC_MSET or handler == RC_MSETNX:
            return self._mset(argv, handler == RC_MSETNX)
        if handler == RC_DEL:
            return self._integer(self.ex.mdel(argv + 1, self.argc - 1))
        if handler == RC_INCR or handler == RC_DECR:
            return self._integer(self.ex.add_text(argv[1].ptr, argv[1].length, 1,
                                                  handler == RC_DECR))
        if handler == RC_INCRBY or handler == RC_DECRBY:
            return self._incrby(argv, handler == RC_DECRBY)
        if handler == RC_EXISTS or handler == RC_TOUCH:
            return self._exists(argv)
        if handler == RC_PING:
            return self._ping(argv)
        return self._dispatch_rest(handler, argv)

    cdef int _dispatch_rest(self, int handler, Arg* argv) except -1:
        if handler == RC_SETNX:
            return self._integer(self._store_text(argv + 1, argv + 2, 0, STORE_IF_ABSENT))
        if handler == RC_SETEX or handler == RC_PSETEX:
            return self._setex(argv, handler == RC_SETEX)
        if handler == RC_GETSET or handler == RC_GETDEL or handler == RC_GETEX:
            return self._get_and(handler, argv)
        if handler == RC_INCRBYFLOAT:
            return self._incrbyfloat(argv)
        if handler == RC_APPEND:
            return self._integer(self.ex.append(argv[1].ptr, argv[1].length, argv[2].ptr,
                                                argv[2].length))
        if handler == RC_STRLEN or handler == RC_GETRANGE:
            return self._read_text(handler, argv)
        if handler == RC_SETRANGE:
            return self._integer(self.ex.set_range(argv[1].ptr, argv[1].length,
                                                   _int_arg(argv + 2), argv[3].ptr,
                                                   argv[3].length))
        if handler == RC_TYPE:
            return self._type(argv)
        if handler == RC_RENAME or handler == RC_RENAMENX:
            return self._rename(argv, handler == RC_RENAMENX)
        if handler == RC_KEYS:
            return self._keys(argv)
        if handler == RC_SCAN:
            return self._scan(argv)
        if handler == RC_RANDOMKEY:
            key = self.ex.random_key()
            if key is None:
                return self._null()
            return self._bulk(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        if handler == RC_EXPIRE or handler == RC_PEXPIRE or handler == RC_EXPIREAT \
                or handler == RC_PEXPIREAT:
            return self._expire(handler, argv)
        if handler == RC_TTL or handler == RC_PTTL or handler == RC_EXPIRETIME \
                or handler == RC_PEXPIRETIME:
            return self._ttl(handler, argv)
        if handler == RC_PERSIST:
            return self._integer(self.ex.persist(argv[1].ptr, argv[1].length))
        if handler == RC_DBSIZE:
            return self._integer(self.ex.dbsize())
        if handler == RC_FLUSHDB or handler == RC_FLUSHALL:
            if self.argc > 2 or (self.argc == 2 and not (_word_is(argv + 1, "ASYNC")
                                                         or _word_is(argv + 1, "SYNC"))):
                _refuse_syntax()
            # Everything goes in one pass (as Redis's FLUSHALL SYNC); a
            # prefixed flush (a tenant's namespace) runs in bounded turns.
            if self.ex.flush_begin(NULL, 0):
                return self._ok()
            return 0
        if handler == RC_MULTI or handler == RC_EXEC or handler == RC_DISCARD \
                or handler == RC_WATCH or handler == RC_UNWATCH:
            return self._transaction(handler, argv)
        return self._connection_command(handler, argv)

    # -- the string commands -----------------------------------------------------

    cdef int _store_text(self, const Arg* key, const Arg* value, int64_t ttl_ms,
                         StoreMode mode) except -1:
        # A RESP value is stored as bytes (docs/resp.md, "Values").
        cdef int stored
        _text_header(self.enc, value.length)
        memcpy(self.enc._buf + 5, value.ptr, value.length)
        self.enc._length = 5 + value.length
        stored = self.ex.store(key.ptr, key.length, self.enc._buf, self.enc._length, ttl_ms,
                               mode, NULL, 0)
        if self.enc._size > KEEP_BUFFER_BYTES:
            self.enc.reset()
        return stored

    cdef int64_t _expiry_arg(self, const Arg* arg, int unit_ms, bint absolute,
                             str command) except? -1:
        # EX/PX/EXAT/PXAT (and SETEX/GETEX): a relative ttl in ms, which may be
        # <= 0 for an absolute time in the past (the key is then deleted).
        cdef int64_t number = _int_arg(arg)
        cdef int64_t ms
        if number <= 0 or number > INT64_MAX // unit_ms:
            raise InvalidArgumentError(f"invalid expire time in '{command}' command")
        ms = number * unit_ms
        if absolute:
            ms -= wall_ms()
        if ms > MAX_TTL_MS:
            raise InvalidArgumentError(f"invalid expire time in '{command}' command")
        return ms

    cdef int _set(self, Arg* argv) except -1:
        # SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
        cdef bint nx = False, xx = False, get = False, keep_ttl = False
        cdef Py_ssize_t i = 3
        cdef Py_ssize_t expiry_at = 0
        cdef int unit = 0
        cdef bint absolute = False
        cdef int64_t ttl_ms = 0
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef bint exists
        while i < self.argc:
            if _word_is(argv + i, "NX") and not xx:
                nx = True
            elif _word_is(argv + i, "XX") and not nx:
                xx = True
            elif _word_is(argv + i, "GET"):
                get = True
            elif _word_is(argv + i, "KEEPTTL") and not expiry_at:
                keep_ttl = True
            elif not keep_ttl and not expiry_at and i + 1 < self.argc and (
                    _word_is(argv + i, "EX") or _word_is(argv + i, "PX")
                    or _word_is(argv + i, "EXAT") or _word_is(argv + i, "PXAT")):
                unit = 1 if _upper(argv[i].ptr[0]) == c'P' else 1000
                absolute = argv[i].length == 4
                i += 1
                expiry_at = i
            else:
                _refuse_syntax()
            i += 1
        if expiry_at:
            ttl_ms = self._expiry_arg(argv + expiry_at, unit, absolute, "set")
        exists = self.ex.get(argv[1].ptr, argv[1].length, &value, &value_length)
        if get:
            # The old value is the reply (WRONGTYPE, changing nothing, when not a string).
            if exists:
                self._value_reply(value, value_length)
            else:
                self._null()
        if (nx and exists) or (xx and not exists):
            return 0 if get else self._null()
        if keep_ttl:
            _text_header(self.enc, argv[2].length)
            self.enc.write_raw(argv[2].ptr, argv[2].length)
            self.ex.store_keep_ttl(argv[1].ptr, argv[1].length, self.enc._buf,
                                   self.enc._length)
        elif expiry_at and ttl_ms <= 0:
            self.ex.delete(argv[1].ptr, argv[1].length)
        else:
            self._store_text(argv + 1, argv + 2, ttl_ms, STORE_ALWAYS)
        return 0 if get else self._ok()

    cdef int _setex(self, Arg* argv, bint seconds) except -1:
        cdef int64_t ttl_ms = self._expiry_arg(argv + 2, 1000 if seconds else 1, False,
                                               "setex" if seconds else "psetex")
        self._store_text(argv + 1, argv + 3, ttl_ms, STORE_ALWAYS)
        return self._ok()

    cdef int _get_and(self, int handler, Arg* argv) except -1:
        # GETSET / GETDEL / GETEX: the old value is the reply; a value that
        # is not a string is WRONGTYPE and nothing changes.
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef int64_t ttl_ms = 0
        cdef bint persist = False
        cdef bint expiry = False
        cdef int unit
        if handler == RC_GETEX and self.argc > 2:
            if self.argc == 3 and _word_is(argv + 2, "PERSIST"):
                persist = True
            elif self.argc == 4 and (_word_is(argv + 2, "EX") or _word_is(argv + 2, "PX")
                                     or _word_is(argv + 2, "EXAT")
                                     or _word_is(argv + 2, "PXAT")):
                unit = 1 if _upper(argv[2].ptr[0]) == c'P' else 1000
                ttl_ms = self._expiry_arg(argv + 3, unit, argv[2].length == 4, "getex")
                expiry = True
            else:
                _refuse_syntax()
        if not self.ex.get(argv[1].ptr, argv[1].length, &value, &value_length):
            if handler == RC_GETSET:
                self._store_text(argv + 1, argv + 2, 0, STORE_ALWAYS)
            return self._null()
        self._value_reply(value, value_length)
        if handler == RC_GETSET:
            self._store_text(argv + 1, argv + 2, 0, STORE_ALWAYS)
        elif handler == RC_GETDEL or (expiry and ttl_ms <= 0):
            self.ex.delete(argv[1].ptr, argv[1].length)
        elif expiry:
            self.ex.expire(argv[1].ptr, argv[1].length, ttl_ms)
        elif persist:
            self.ex.persist(argv[1].ptr, argv[1].length)
        return 0

    cdef int _incrby(self, Arg* argv, bint subtract) except -1:
        cdef int64_t delta = _int_arg(argv + 2)
        if subtract and delta == INT64_MIN:
            raise InvalidArgumentError("decrement would overflow")
        return self._integer(self.ex.add_text(argv[1].ptr, argv[1].length, delta, subtract))

    cdef int _incrbyfloat(self, Arg* argv) except -1:
        result = self.ex.add_float(argv[1].ptr, argv[1].length, argv[2].ptr, argv[2].length)
        return self._bulk(PyBytes_AS_STRING(result), PyBytes_GET_SIZE(result))

    cdef int _read_text(self, int handler, Arg* argv) except -1:
        # STRLEN / GETRANGE, with Redis's range rules (negative from the end).
        cdef const char* value
        cdef const char* text = NULL
        cdef Py_ssize_t value_length
        cdef Py_ssize_t text_length = 0
        cdef int64_t start = 0, end = 0
        if handler == RC_GETRANGE:
            start = _int_arg(argv + 2)
            end = _int_arg(argv + 3)
        if self.ex.get(argv[1].ptr, argv[1].length, &value, &value_length):
            text_view(value, value_length, self.tmp, &text, &text_length)
        if handler == RC_STRLEN:
            return self._integer(text_length)
        if start < 0 and end < 0 and start > end:
            return self._bulk(NULL, 0)
        if start < 0:
            start += text_length
        if end < 0:
            end += text_length
        if start < 0:
            start = 0
        if end < 0:
            end = 0
        if end >= text_length:
            end = text_length - 1
        if start > end or text_length == 0:
            return self._bulk(NULL, 0)
        return self._bulk(text + start, end - start + 1)

    cdef int _mget(self, Arg* argv) except -1:
        cdef Py_ssize_t i
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef Py_ssize_t total = 16
        # The reply's size first, against the reply limit (issue 10): a short
        # MGET naming one large key many times must not commit memory first.
        for i in range(1, self.argc):
            total += 16
            if self.ex.get(argv[i].ptr, argv[i].length, &value, &value_length):
                total += value_length
        self.ex.check_reply(total)
        self._array(self.argc - 1)
        for i in range(1, self.argc):
            # Like Redis, a value that is not a string is nil here, not an error.
            if self.ex.get(argv[i].ptr, argv[i].length, &value, &value_length) \
                    and is_text(value):
                self._value_reply(value, value_length)
            else:
                self._null()
        return 0

    cdef int _mset(self, Arg* argv, bint only_if_none) except -1:
        # Every value's encoding is built in enc first (one allocation), then
        # the Executor writes them all or nothing.
        cdef Py_ssize_t count = (self.argc - 1) // 2
        cdef Py_ssize_t i, total = 0
        cdef Arg* items
        cdef char* p
        if (self.argc - 1) % 2:
            raise InvalidArgumentError(
                f"wrong number of arguments for '{'msetnx' if only_if_none else 'mset'}' command")
        if only_if_none:
            for i in range(count):
                if self.ex.exists(argv[1 + 2 * i].ptr, argv[1 + 2 * i].length):
                    return self._integer(0)
        for i in range(count):
            total += 5 + argv[2 + 2 * i].length
        self.enc.clear()
        _room(self.enc, total)
        items = self.ex.arg_array(2 * count)
        p = self.enc._buf
        for i in range(count):
            items[2 * i] = argv[1 + 2 * i]
            p[0] = <char>TAG_BYTES
            kv_store_u32(p + 1, <uint32_t>argv[2 + 2 * i].length)
            memcpy(p + 5, argv[2 + 2 * i].ptr, argv[2 + 2 * i].length)
            items[2 * i + 1].ptr = p
            items[2 * i + 1].length = 5 + argv[2 + 2 * i].length
            p += items[2 * i + 1].length
        self.ex.mset(items, count, 0)
        self.ex.done_with_args()
        if self.enc._size > KEEP_BUFFER_BYTES:
            self.enc.reset()
        return self._integer(1) if only_if_none else self._ok()

    cdef int _exists(self, Arg* argv) except -1:
        cdef Py_ssize_t i
        cdef int64_t found = 0
        for i in range(1, self.argc):
            found += self.ex.exists(argv[i].ptr, argv[i].length)
        return self._integer(found)

    # -- the keyspace commands -----------------------------------------------------

    cdef int _type(self, Arg* argv) except -1:
        cdef const char* value
        cdef Py_ssize_t value_length
        if not self.ex.get(argv[1].ptr, argv[1].length, &value, &value_length):
            return self._simple(b"none")
        return self._simple(b"string" if is_text(value) else b"kvstore-value")

    cdef int _rename(self, Arg* argv, bint only_if_absent) except -1:
        cdef int done = self.ex.rename(argv[1].ptr, argv[1].length, argv[2].ptr,
                                       argv[2].length, only_if_absent)
        if done == 0:
            raise InvalidArgumentError("no such key")
        if only_if_absent:
            return self._integer(1 if done == 1 else 0)
        return self._ok()

    cdef int _keys(self, Arg* argv) except -1:
        # The whole keyspace in one reply, as Redis does (SCAN is the polite way).
        cdef list keys = []
        cdef uint64_t cursor = 0
        pattern = _arg_bytes(argv + 1)
        if pattern == b"*":
            pattern = None
        while True:
            cursor = self.ex.scan(cursor, NULL, 0, pattern, 1000, keys)
            if cursor == 0:
                break
        return self._key_array(keys)

    cdef int _scan(self, Arg* argv) except -1:
        # SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]
        cdef uint64_t cursor = 0
        cdef Py_ssize_t i = 2
        cdef Py_ssize_t count = 10
        cdef int64_t number
        cdef list keys = []
        cdef list kept
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef char digits[24]
        cdef int n
        pattern = None
        wanted = None
        text = _arg_bytes(argv + 1)
        if not text.isdigit() or int(text) > 0xFFFFFFFFFFFFFFFE:
            raise InvalidArgumentError("invalid cursor")
        cursor = int(text)
        while i < self.argc:
            if i + 1 >= self.argc:
                _refuse_syntax()
            if _word_is(argv + i, "COUNT"):
                number = _int_arg(argv + i + 1)
                if number < 1:
                    _refuse_syntax()
                count = min(number, SCAN_MAX_COUNT)
            elif _word_is(argv + i, "MATCH"):
                pattern = _arg_bytes(argv + i + 1)
                if pattern == b"*":
                    pattern = None
            elif _word_is(argv + i, "TYPE"):
                wanted = _arg_bytes(argv + i + 1).lower()
            else:
                _refuse_syntax()
            i += 2
        cursor = self.ex.scan(cursor, NULL, 0, pattern, count, keys)
        if wanted is not None:
            kept = []
            for key in keys:
                if self.ex.get(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), &value,
                               &value_length):
                    if (b"string" if is_text(value) else b"kvstore-value") == wanted:
                        kept.append(key)
            keys = kept
        self._array(2)
        n = snprintf(digits, sizeof(digits), "%llu", <unsigned long long>cursor)
        self._bulk(digits, n)
        return self._key_array(keys)

    cdef int _expire(self, int handler, Arg* argv) except -1:
        # EXPIRE key n [NX|XX|GT|LT] and its ms and absolute forms.
        cdef int64_t number = _int_arg(argv + 2)
        cdef bint ms = handler == RC_PEXPIRE or handler == RC_PEXPIREAT
        cdef bint absolute = handler == RC_EXPIREAT or handler == RC_PEXPIREAT
        cdef int condition = 0
        cdef Py_ssize_t i
        cdef int64_t ttl_ms
        for i in range(3, self.argc):
            if _word_is(argv + i, "NX"):
                condition |= EXPIRE_NX
            elif _word_is(argv + i, "XX"):
                condition |= EXPIRE_XX
            elif _word_is(argv + i, "GT"):
                condition |= EXPIRE_GT
            elif _word_is(argv + i, "LT"):
                condition |= EXPIRE_LT
            else:
                raise InvalidArgumentError(f"Unsupported option {_arg_text(argv + i)}")
        if (condition & EXPIRE_NX) and (condition & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT)):
            raise InvalidArgumentError(
                "NX and XX, GT or LT options at the same time are not compatible")
        if (condition & EXPIRE_GT) and (condition & EXPIRE_LT):
            raise InvalidArgumentError("GT and LT options at the same time are not compatible")
        if not ms and (number > INT64_MAX // 1000 or number < INT64_MIN // 1000):
            raise InvalidArgumentError(
                f"invalid expire time in '{_RC_LOWER_NAMES[_find_command(argv[0].ptr, argv[0].length)]}' command")
        ttl_ms = number if ms else number * 1000
        if absolute:
            ttl_ms -= wall_ms()
        if ttl_ms > MAX_TTL_MS:
            raise InvalidArgumentError(
                f"invalid expire time in '{_RC_LOWER_NAMES[_find_command(argv[0].ptr, argv[0].length)]}' command")
        return self._integer(self.ex.expire_if(argv[1].ptr, argv[1].length, ttl_ms, condition))

    cdef int _ttl(self, int handler, Arg* argv) except -1:
        cdef int64_t ms
        cdef TtlState state = self.ex.ttl(argv[1].ptr, argv[1].length, &ms)
        if state == TTL_STATE_MISSING:
            return self._integer(-2)
        if state == TTL_STATE_PERSISTENT:
            return self._integer(-1)
        if handler == RC_TTL:
            return self._integer((ms + 500) // 1000)
        if handler == RC_PTTL:
            return self._integer(ms)
        ms += wall_ms()
        return self._integer(ms // 1000 if handler == RC_EXPIRETIME else ms)

    # -- transactions ----------------------------------------------------------------

    cdef int _queue_command(self) except -1:
        # Each word as u32 length + bytes, after the word count.
        cdef Arg* argv = <Arg*>self.argv._buf
        cdef Py_ssize_t i
        self.queue.write_u32(<uint32_t>self.argc)
        for i in range(self.argc):
            self.queue.write_u32(<uint32_t>argv[i].length)
            self.queue.write_raw(argv[i].ptr, argv[i].length)
        self.queued += 1
        return self._simple(b"QUEUED")

    cdef int _end_multi(self) except -1:
        self.in_multi = False
        self.multi_failed = False
        self.queued = 0
        self.queue.reset()
        self.watched = None
        return 0

    cdef bint _watch_holds(self) except -1:
        # Nothing changed at all since WATCH, or every watched key reads as it did.
        cdef bytes key
        if not self.watched or self.ex.core.mutations == self.watch_mark:
            return True
        for key, seen in self.watched.items():
            if self.ex.watch_state(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)) != seen:
                return False
        return True

    cdef int _transaction(self, int handler, Arg* argv) except -1:
        cdef Py_ssize_t i, j, count, pos, reply_at
        cdef uint32_t words, length
        cdef WriteBuffer queue
        cdef Arg* arg
        if handler == RC_MULTI:
            if self.in_multi:
                raise InvalidArgumentError("MULTI calls can not be nested")
            self.in_multi = True
            return self._ok()
        if handler == RC_WATCH:
            if self.in_multi:
                raise InvalidArgumentError("WATCH inside MULTI is not allowed")
            if self.watched is None:
                self.watched = {}
            for i in range(1, self.argc):
                key = _arg_bytes(argv + i)
                if key not in self.watched:
                    self.watched[key] = self.ex.watch_state(argv[i].ptr, argv[i].length)
            self.watch_mark = self.ex.core.mutations
            return self._ok()
        if handler == RC_UNWATCH:
            self.watched = None
            return self._ok()
        if not self.in_multi:
            raise InvalidArgumentError(f"{'EXEC' if handler == RC_EXEC else 'DISCARD'} without MULTI")
        if handler == RC_DISCARD:
            self._end_multi()
            return self._ok()
        # EXEC
        if self.multi_failed:
            self._end_multi()
            return self._error_line("EXECABORT Transaction discarded because of previous errors.")
        if not self._watch_holds():
            self._end_multi()
            return self._null_array()
        queue = self.queue
        count = self.queued
        self.queue = WriteBuffer.new()
        self.in_multi = False
        self.multi_failed = False
        self.queued = 0
        self.watched = None
        self._array(count)
        pos = 0
        for i in range(count):
            words = kv_load_u32(queue._buf + pos)
            pos += 4
            for j in range(words):
                length = kv_load_u32(queue._buf + pos)
                pos += 4
                arg = self._arg(j)
                arg.ptr = queue._buf + pos
                arg.length = length
                pos += length
            self.argc = words
            reply_at = self.out._length
            try:
                self._execute()
            except Exception as error:
                self.out._length = reply_at
                self._answer_failure(error)
        return 0

    # -- connection and server commands -------------------------------------------------

    cdef int _ping(self, Arg* argv) except -1:
        if self.argc > 2:
            raise InvalidArgumentError("wrong number of arguments for 'ping' command")
        if self.argc == 2:
            return self._bulk(argv[1].ptr, argv[1].length)
        return self._simple(b"PONG")

    cdef int _connection_command(self, int handler, Arg* argv) except -1:
        cdef int64_t number
        cdef int64_t now
        cdef char digits[24]
        cdef int n
        if handler == RC_ECHO:
            return self._bulk(argv[1].ptr, argv[1].length)
        if handler == RC_QUIT:
            self._ok()
            self.framing_lost = True
            return 0
        if handler == RC_SELECT:
            number = _int_arg(argv + 1)
            if number != 0:
                raise InvalidArgumentError("DB index is out of range")
            return self._ok()
        if handler == RC_TIME:
            now = wall_us()
            self._array(2)
            n = snprintf(digits, sizeof(digits), "%lld", <long long>(now // 1000000))
            self._bulk(digits, n)
            n = snprintf(digits, sizeof(digits), "%lld", <long long>(now % 1000000))
            return self._bulk(digits, n)
        if handler == RC_HELLO:
            return self._hello(argv)
        if handler == RC_AUTH:
            return 0 if self._auth(argv + 1, self.argc - 1) else self._ok()
        if handler == RC_CLIENT:
            return self._client(argv)
        if handler == RC_INFO:
            return self._info(argv)
        if handler == RC_CONFIG:
            return self._config(argv)
        if handler == RC_COMMAND:
            return self._command(argv)
        raise ServerError(f"RESP handler {handler} has no body")

    cdef int _auth(self, Arg* args, Py_ssize_t count) except -1:
        # No password is set (issue 14 gives AUTH its teeth): Redis's answers
        # for the default user without one.
        if count == 1:
            raise InvalidArgumentError(
                "AUTH <password> called without any password configured for the default user. "
                "Are you sure your configuration is correct?")
        if count != 2:
            _refuse_syntax()
        if args[0].length != 7 or memcmp(args[0].ptr, b"default", 7) != 0:
            self._error_line("WRONGPASS invalid username-password pair or user is disabled.")
            return 1
        return 0

    cdef int _hello(self, Arg* argv) except -1:
        # HELLO [protover [AUTH user pass] [SETNAME name]]
        cdef int64_t version = self.protocol
        cdef Py_ssize_t i = 2
        name = None
        if self.argc >= 2:
            if not parse_i64(argv[1].ptr, argv[1].length, &version):
                raise InvalidArgumentError("Protocol version is not an integer or out of range")
            if version != 2 and version != 3:
                return self._error_line("NOPROTO unsupported protocol version")
        while i < self.argc:
            if _word_is(argv + i, "AUTH") and i + 2 < self.argc:
                if self._auth(argv + i + 1, 2):
                    return 0
                i += 3
            elif _word_is(argv + i, "SETNAME") and i + 1 < self.argc:
                name = _client_name(argv + i + 1)
                i += 2
            else:
                raise InvalidArgumentError(
                    f"Syntax error in HELLO option '{_arg_text(argv + i)}'")
        if name is not None:
            self.client_name = name
        self.protocol = <int>version
        self._map(7)
        self._bulk(b"server", 6)
        self._bulk(b"redis", 5)
        self._bulk(b"version", 7)
        server_version = _REDIS_VERSION
        self._bulk(PyBytes_AS_STRING(server_version), PyBytes_GET_SIZE(server_version))
        self._bulk(b"proto", 5)
        self._integer(self.protocol)
        self._bulk(b"id", 2)
        self._integer(self.client_id)
        self._bulk(b"mode", 4)
        self._bulk(b"standalone", 10)
        self._bulk(b"role", 4)
        self._bulk(b"master", 6)
        self._bulk(b"modules", 7)
        return self._array(0)

    cdef int _client(self, Arg* argv) except -1:
        if _word_is(argv + 1, "SETNAME") and self.argc == 3:
            self.client_name = _client_name(argv + 2)
            return self._ok()
        if _word_is(argv + 1, "GETNAME") and self.argc == 2:
            if self.client_name is None:
                return self._null()
            return self._bulk(PyBytes_AS_STRING(self.client_name),
                              PyBytes_GET_SIZE(self.client_name))
        if _word_is(argv + 1, "ID") and self.argc == 2:
            return self._integer(self.client_id)
        if _word_is(argv + 1, "SETINFO") and self.argc == 4:
            if not (_word_is(argv + 2, "LIB-NAME") or _word_is(argv + 2, "LIB-VER")):
                raise InvalidArgumentError(f"Unrecognized option '{_arg_text(argv + 2)}'")
            return self._ok()
        raise InvalidArgumentError(
            f"unknown subcommand '{_arg_text(argv + 1)}'. Try CLIENT HELP.")

    cdef int _info(self, Arg* argv) except -1:
        sections = [_arg_text(argv + i).lower() for i in range(1, self.argc)]
        text = _resp_info_text(self.ex.info(), sections).encode("utf-8")
        if self.protocol == 3:
            # A verbatim string, as Redis 7 answers INFO in RESP3.
            return self._verbatim(text)
        return self._bulk(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))

    cdef int _config(self, Arg* argv) except -1:
        cdef Py_ssize_t i
        if _word_is(argv + 1, "GET") and self.argc >= 3:
            settings = _resp_config(self.ex.info())
            found = {}
            for i in range(2, self.argc):
                pattern = _arg_bytes(argv + i)
                for name, value in settings.items():
                    if _glob(pattern.lower(), name) and name not in found:
                        found[name] = value
            self._map(len(found))
            for name, value in found.items():
                self._bulk(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
                self._bulk(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
            return 0
        if _word_is(argv + 1, "RESETSTAT") and self.argc == 2:
            return self._ok()
        if _word_is(argv + 1, "SET") and self.argc >= 4:
            raise InvalidArgumentError(
                f"Unknown option or number of arguments for CONFIG SET - '{_arg_text(argv + 2)}'")
        raise InvalidArgumentError(
            f"unknown subcommand '{_arg_text(argv + 1)}'. Try CONFIG HELP.")

    cdef int _command(self, Arg* argv) except -1:
        # COMMAND / COUNT / INFO / DOCS: enough for redis-cli and client libraries.
        cdef Py_ssize_t i
        if self.argc == 1:
            self._array(len(RESP_COMMANDS))
            for entry in RESP_COMMANDS:
                self._command_info(entry)
            return 0
        if _word_is(argv + 1, "COUNT") and self.argc == 2:
            return self._integer(len(RESP_COMMANDS))
        if _word_is(argv + 1, "INFO"):
            self._array(self.argc - 2)
            for i in range(2, self.argc):
                entry = _resp_entry(_find_command(argv[i].ptr, argv[i].length))
                if entry is None:
                    self._null()
                else:
                    self._command_info(entry)
            return 0
        if _word_is(argv + 1, "DOCS"):
            # Names with empty docs: redis-cli falls back to its own hints.
            names = [e[0].lower() for e in RESP_COMMANDS] if self.argc == 2 else [
                _resp_entry(_find_command(argv[i].ptr, argv[i].length))[0].lower()
                for i in range(2, self.argc)
                if _find_command(argv[i].ptr, argv[i].length) >= 0]
            self._map(len(names))
            for name in names:
                encoded = name.encode("ascii")
                self._bulk(PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded))
                self._map(0)
            return 0
        raise InvalidArgumentError(
            f"unknown subcommand '{_arg_text(argv + 1)}'. Try COMMAND HELP.")

    cdef int _command_info(self, tuple entry) except -1:
        name, row, arity, first, last, step, flags = entry
        encoded = name.lower().encode("ascii")
        self._array(10)
        self._bulk(PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded))
        self._integer(arity)
        words = ([b"write"] if flags & FLAG_WRITE_BIT else []) + (
            [b"readonly"] if flags & FLAG_READ_BIT and not flags & FLAG_WRITE_BIT else []) + (
            [b"denyoom"] if flags & FLAG_MAY_GROW_MEMORY_BIT else [])
        self._array(len(words))
        for word in words:
            self._simple(word)
        self._integer(first)
        self._integer(last)
        self._integer(step)
        for i in range(4):
            self._array(0)
        return 0

    # -- replies -------------------------------------------------------------------------

    cdef int _answer_failure(self, object error) except -1:
        # Redis's error lines: its texts for the engine's error classes.
        if isinstance(error, _errors.WrongTypeError):
            _room(self.out, len(_WRONGTYPE))
            return self._raw(PyBytes_AS_STRING(_WRONGTYPE), PyBytes_GET_SIZE(_WRONGTYPE))
        if isinstance(error, _errors.IntegerOverflowError):
            return self._error_line("ERR increment or decrement would overflow")
        if isinstance(error, ValueTooLargeError):
            return self._error_line("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
        if isinstance(error, KvError):
            kind = getattr(error, "redis_prefix", None) or (
                "OOM" if error.kind == "oom" else "NOAUTH" if error.kind == "noauth" else "ERR")
            return self._error_line(f"{kind} {error}")
        if isinstance(error, MemoryError):
            return self._error_line("ERR out of memory")
        return self._error_line(f"ERR {type(error).__name__}: {error}")

    cdef int _unknown_command(self) except -1:
        # Redis's text: the name, then the first arguments up to 128 bytes.
        cdef Arg* argv = <Arg*>self.argv._buf
        cdef Py_ssize_t i
        args = ""
        for i in range(1, self.argc):
            if len(args) >= 128:
                break
            args += f"'{_arg_text(argv + i)[:128 - len(args)]}' "
        return self._error_line(
            f"ERR unknown command '{_arg_text(argv)[:128]}', with args beginning with: {args}")

    cdef int _error_line(self, str message) except -1:
        # One line: CR and LF would break the framing (Redis replaces them too).
        cdef bytes text = message.replace("\r", " ").replace("\n", " ").encode(
            "utf-8", "replace")[:MAX_ERROR_MESSAGE_BYTES]
        _room(self.out, PyBytes_GET_SIZE(text) + 3)
        self.out._buf[self.out._length] = c'-'
        self.out._length += 1
        self._raw(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
        return self._raw(b"\r\n", 2)

    cdef inline int _raw(self, const char* data, Py_ssize_t length) except -1:
        _room(self.out, length)
        memcpy(self.out._buf + self.out._length, data, length)
        self.out._length += length
        return 0

    cdef inline int _line(self, char kind, int64_t number) except -1:
        # ":12\r\n", "$5\r\n", "*3\r\n", "%2\r\n".
        cdef int n
        _room(self.out, 24)
        n = snprintf(self.out._buf + self.out._length, 24, "%c%lld\r\n", kind,
                     <long long>number)
        self.out._length += n
        return 0

    cdef inline int _ok(self) except -1:
        return self._raw(b"+OK\r\n", 5)

    cdef inline int _simple(self, bytes text) except -1:
        _room(self.out, PyBytes_GET_SIZE(text) + 3)
        self._raw(b"+", 1)
        self._raw(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
        return self._raw(b"\r\n", 2)

    cdef inline int _integer(self, int64_t value) except -1:
        return self._line(c':', value)

    cdef inline int _array(self, Py_ssize_t count) except -1:
        return self._line(c'*', count)

    cdef inline int _map(self, Py_ssize_t count) except -1:
        # RESP3 has maps; RESP2 sends the pairs as one flat array.
        if self.protocol == 3:
            return self._line(c'%', count)
        return self._line(c'*', 2 * count)

    cdef inline int _null(self) except -1:
        if self.protocol == 3:
            return self._raw(b"_\r\n", 3)
        return self._raw(b"$-1\r\n", 5)

    cdef inline int _null_array(self) except -1:
        if self.protocol == 3:
            return self._raw(b"_\r\n", 3)
        return self._raw(b"*-1\r\n", 5)

    cdef inline int _bulk(self, const char* data, Py_ssize_t length) except -1:
        cdef int n
        _room(self.out, length + 24)
        n = snprintf(self.out._buf + self.out._length, 24, "$%lld\r\n", <long long>length)
        self.out._length += n
        if length:
            memcpy(self.out._buf + self.out._length, data, length)
            self.out._length += length
        self.out._buf[self.out._length] = c'\r'
        self.out._buf[self.out._length + 1] = c'\n'
        self.out._length += 2
        return 0

    cdef int _verbatim(self, bytes text) except -1:
        self._line(c'=', PyBytes_GET_SIZE(text) + 4)
        self._raw(b"txt:", 4)
        self._raw(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
        return self._raw(b"\r\n", 2)

    cdef inline int _value_reply(self, const char* value, Py_ssize_t value_length) except -1:
        # A stored value as a bulk string, copied from its entry (text_view).
        cdef const char* text
        cdef Py_ssize_t text_length
        text_view(value, value_length, self.tmp, &text, &text_length)
        return self._bulk(text, text_length)

    cdef int _key_array(self, list keys) except -1:
        self._array(len(keys))
        for key in keys:
            self._bulk(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        return 0


# -- helpers of the slow commands ---------------------------------------------------

cdef int _hex(char c) noexcept:
    if c'0' <= c <= c'9':
        return c - c'0'
    if c'a' <= c <= c'f':
        return c - c'a' + 10
    if c'A' <= c <= c'F':
        return c - c'A' + 10
    return -1


cdef int64_t wall_us() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


cdef bytes _client_name(const Arg* arg):
    # Redis: printable ASCII without spaces.
    cdef Py_ssize_t i
    for i in range(arg.length):
        if not (c'!' <= arg.ptr[i] <= c'~'):
            raise InvalidArgumentError(
                "Client names cannot contain spaces, newlines or special characters.")
    return _arg_bytes(arg)


cdef object _resp_entry(int index):
    return RESP_COMMANDS[index] if index >= 0 else None


cdef bint _glob(bytes pattern, bytes name):
    # CONFIG GET's parameter patterns are few and short: fnmatch-style is enough.
    import fnmatch
    return fnmatch.fnmatchcase(name.decode("ascii"), pattern.decode("utf-8", "replace"))


# The Redis version kvstore answers as: the command set and replies of 7.2
# (clients gate features on it).
_REDIS_VERSION = b"7.2.0"


def _resp_config(dict info):
    """CONFIG GET's parameters, answered truthfully from INFO's figures:
    nothing is saved (no snapshots, no append-only file yet) and memory is
    unlimited unless the engine reports a limit."""
    return {
        b"save": b"",
        b"appendonly": b"no",
        b"maxmemory": str(info.get("maxmemory", 0) or 0).encode(),
        b"maxmemory-policy": str(info.get("maxmemory_policy", "noeviction")).encode(),
        b"databases": b"1",
        b"proto-max-bulk-len": str(info.get("max_payload", DEFAULT_MAX_PAYLOAD)).encode(),
    }


def _resp_info_text(dict info, list sections):
    """INFO's Redis-style text: the sections clients and tools read, then
    kvstore's own figures under "# Kvstore"."""
    import os
    import platform
    calls = info.get("calls", {})
    keys = info.get("keys", 0)
    wanted = set(sections) or {"default"}
    everything = bool(wanted & {"all", "everything"})
    parts = {
        "server": [
            ("redis_version", _REDIS_VERSION.decode()), ("redis_mode", "standalone"),
            ("kvstore", "1"), ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
            ("arch_bits", 64 if _sys_maxsize > 2 ** 32 else 32), ("process_id", os.getpid()),
            ("uptime_in_seconds", int(info.get("uptime_s", 0))),
        ],
        "clients": [("connected_clients", info.get("connections", 0))],
        "memory": [
            ("used_memory", info.get("memory_bytes", 0)),
            ("maxmemory", info.get("maxmemory", 0) or 0),
            ("maxmemory_policy", info.get("maxmemory_policy", "noeviction")),
        ],
        "persistence": [("loading", 0), ("rdb_changes_since_last_save", info.get("writes", 0)),
                        ("aof_enabled", 0)],
        "stats": [
            ("total_connections_received", info.get("connections_total", 0)),
            ("total_commands_processed", sum(calls.values())),
            ("total_net_input_bytes", info.get("bytes_in", 0)),
            ("total_net_output_bytes", info.get("bytes_out", 0)),
            ("expired_keys", info.get("expired", 0)),
            ("keyspace_hits", info.get("hits", 0)), ("keyspace_misses", info.get("misses", 0)),
        ],
        "replication": [("role", "master"), ("connected_slaves", 0)],
        "cluster": [("cluster_enabled", 0)],
        "keyspace": [("db0", f"keys={keys},expires={info.get('keys_with_ttl', 0)},avg_ttl=0")]
        if keys else [],
        "kvstore": [(name, value) for name, value in info.items()
                    if not isinstance(value, (dict, list))],
    }
    lines = []
    for name, fields in parts.items():
        if not (everything or name in wanted or (
                "default" in wanted and name != "kvstore")):
            continue
        if lines:
            lines.append("")
        lines.append(f"# {name.capitalize()}")
        lines.extend(f"{key}:{value}" for key, value in fields)
    return "\r\n".join(lines) + "\r\n"


from sys import maxsize as _sys_maxsize
