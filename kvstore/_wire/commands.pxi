# The command table: one row per command, the only place that knows a
# command's op code, its names, the shape of its request and reply, its flags
# and whether a client may resend it (redis's src/commands.def in spirit).
#
# Everything else is derived from it: the statistics (by row), the
# executor's gates (by flags), the binary framing's dispatch, the clients'
# writer and reader (by shape), the client API's retry class (_commands.py
# reads COMMANDS), and a test checks docs/protocol.md against it.
#
# Adding a command: a row here, an Executor method if it needs a new engine
# call, its parse/encode in each framing, a RequestWriter method, the docs
# line. Binary op codes stay below 0x20 (OP_LIMIT): see _protocol.pxd.

FLAG_READ = FLAG_READ_BIT
FLAG_WRITE = FLAG_WRITE_BIT
FLAG_MAY_GROW_MEMORY = FLAG_MAY_GROW_MEMORY_BIT
FLAG_ALLOWED_BEFORE_AUTH = FLAG_ALLOWED_BEFORE_AUTH_BIT
FLAG_ADMIN = FLAG_ADMIN_BIT

cdef int _R = FLAG_READ_BIT
cdef int _W = FLAG_WRITE_BIT
cdef int _GROW = FLAG_MAY_GROW_MEMORY_BIT
cdef int _NOAUTH = FLAG_ALLOWED_BEFORE_AUTH_BIT
cdef int _ADMIN = FLAG_ADMIN_BIT   # -- durability (issue 11)
cdef bint _RETRY = True      # safe to resend on a fresh connection: it changes nothing
cdef bint _ONCE = False      # never resent blindly: it may have run already

# op, wire name, Python name, request shape, reply shape, flags, retry class,
# the request payload as docs/protocol.md's "Ops" table spells it.
_TABLE = (
    (OP_GET, "GET", "get", ARGS_KEY, REPLY_VALUE, _R, _RETRY, "key"),
    (OP_SET, "SET", "set", ARGS_KEY_TTL_VALUE, REPLY_EMPTY, _W | _GROW, _ONCE,
     "key, ttl u64, value"),
    (OP_DEL, "DEL", "delete", ARGS_KEY, REPLY_FLAG, _W, _ONCE, "key"),
    (OP_EXISTS, "EXISTS", "exists", ARGS_KEY, REPLY_FLAG, _R, _RETRY, "key"),
    (OP_INCR, "INCR", "incr", ARGS_KEY_DELTA, REPLY_I64, _W | _GROW, _ONCE, "key, delta i64"),
    (OP_DECR, "DECR", "decr", ARGS_KEY_DELTA, REPLY_I64, _W | _GROW, _ONCE, "key, delta i64"),
    (OP_CAS, "CAS", "cas", ARGS_KEY_TTL_TWO_VALUES, REPLY_CAS, _W | _GROW, _ONCE,
     "key, ttl u64, expected value, new value"),
    (OP_PING, "PING", "ping", ARGS_ANY, REPLY_ECHO, _NOAUTH, _RETRY, "anything (normally empty)"),
    (OP_INFO, "INFO", "info", ARGS_NONE, REPLY_MAP, 0, _RETRY, "empty"),
    (OP_SETNX, "SETNX", "setnx", ARGS_KEY_TTL_VALUE, REPLY_FLAG, _W | _GROW, _ONCE,
     "key, ttl u64, value"),
    (OP_FLUSH, "FLUSH", "flush", ARGS_PREFIX, REPLY_U64, _W, _ONCE,
     "prefix_len u16, prefix (empty: everything)"),
    (OP_EXPIRE, "EXPIRE", "expire", ARGS_KEY_TTL, REPLY_FLAG, _W, _ONCE,
     "key, ttl u64 (must not be 0)"),
    (OP_TTL, "TTL", "ttl", ARGS_KEY, REPLY_TTL, _R, _RETRY, "key"),
    (OP_MGET, "MGET", "mget", ARGS_KEYS, REPLY_VALUES, _R, _RETRY, "count u16, count keys"),
    (OP_MSET, "MSET", "mset", ARGS_PAIRS, REPLY_EMPTY, _W | _GROW, _ONCE,
     "count u16, ttl u64, count × (key, value)"),
    (OP_MDEL, "MDEL", "mdel", ARGS_KEYS, REPLY_U32, _W, _ONCE, "count u16, count keys"),
    (OP_MEXISTS, "MEXISTS", "mexists", ARGS_KEYS, REPLY_FLAGS, _R, _RETRY, "count u16, count keys"),
    (OP_PERSIST, "PERSIST", "persist", ARGS_KEY, REPLY_FLAG, _W, _ONCE, "key"),
    (OP_GETDEL, "GETDEL", "getdel", ARGS_KEY, REPLY_VALUE, _W, _ONCE, "key"),
    (OP_GETSET, "GETSET", "getset", ARGS_KEY_TTL_VALUE, REPLY_VALUE, _W | _GROW, _ONCE,
     "key, ttl u64, value"),
    (OP_DELETE_IF_EQUAL, "DELETE_IF_EQUAL", "delete_if_equal", ARGS_KEY_VALUE, REPLY_FLAG, _W,
     _ONCE, "key, expected value"),
    (OP_SCAN, "SCAN", "scan", ARGS_SCAN, REPLY_SCAN, _R, _RETRY,
     "cursor u64, count u32, prefix_len u16, prefix, has_match u8, [match_len u16, match]"),
    # -- durability (issue 11)
    (OP_SNAPSHOT, "SNAPSHOT", "snapshot", ARGS_NONE, REPLY_U64, _ADMIN, _RETRY, "empty"),
    # -- end durability
)


@cython.final
cdef class Command:
    """One row of the command table (read-only)."""

    def __repr__(self):
        return f"<kvstore command {self.wire_name} op=0x{self.op:02x} flags={self.flags}>"


cdef CommandSpec _SPECS[MAX_COMMANDS]      # by row; row 0 is UNKNOWN (all zero)
cdef uint8_t _ROW_OF_OP[256]               # binary op code -> row (0: no command)
cdef list _WIRE_NAMES = ["UNKNOWN"]        # by row, for INFO's "calls"


cdef tuple _build_table():
    cdef Command c
    cdef list commands = []
    cdef int row = 0
    cdef dict seen = {}
    assert len(_TABLE) < MAX_COMMANDS
    for op, wire_name, name, args, reply, flags, retry_safe, arguments in _TABLE:
        row += 1
        assert 0 < op < OP_LIMIT and _ROW_OF_OP[op] == 0, f"op 0x{op:02x} of {wire_name}"
        assert name not in seen and wire_name not in seen, wire_name
        seen[name] = seen[wire_name] = row
        _SPECS[row].op = op
        _SPECS[row].args = args
        _SPECS[row].reply = reply
        _SPECS[row].flags = flags
        _ROW_OF_OP[op] = row
        _WIRE_NAMES.append(wire_name)
        c = Command.__new__(Command)
        c.index, c.name, c.wire_name, c.op = row, name, wire_name, op
        c.flags, c.retry_safe, c.arguments = flags, retry_safe, arguments
        commands.append(c)
    return tuple(commands)


COMMANDS = _build_table()
cdef dict _BY_NAME = {c.name: c for c in COMMANDS}
# OP_GET, OP_SET, ...: the C enum names are taken by _protocol.pxd, so the
# Python names are made here from the table.
globals().update({f"OP_{c.wire_name}": c.op for c in COMMANDS})


def command(name):
    """The command whose Python method is ``name`` ("get", "delete_if_equal")."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(f"no command is named {name!r}") from None


cdef inline int _row_of_op(int op) noexcept:
    return _ROW_OF_OP[op] if 0 <= op < 256 else CMD_UNKNOWN


cdef str _op_name(int op):
    cdef int row = _row_of_op(op)
    return _WIRE_NAMES[row] if row else f"op 0x{op:02x}"
