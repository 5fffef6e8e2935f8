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
    # -- eviction (issue 12)
    (OP_CONFIG_GET, "CONFIG_GET", "config_get", ARGS_NONE, REPLY_MAP, FLAG_ADMIN_BIT, _RETRY,
     "empty"),
    (OP_CONFIG_SET, "CONFIG_SET", "config_set", ARGS_MAP, REPLY_EMPTY, _W | FLAG_ADMIN_BIT, _ONCE,
     "one Map value: {setting: new value}"),
    # -- end eviction
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


# -- RESP (issue 13) -----------------------------------------------------------
# Commands only the RESP framing speaks have rows too, so they are counted
# and gated like any other, but no binary op code: their op is OP_NONE (0,
# which no binary frame can carry, since op codes start at 1) and
# _ROW_OF_OP never points at them. A RESP-only name that a later binary row
# already claims (AUTH, once issue 14 gives it op 0x1A) counts on that row.

OP_NONE = 0

# wire name, flags: the RESP-only rows.
_RESP_ONLY_TABLE = (
    ("ECHO", 0), ("QUIT", _NOAUTH), ("HELLO", _NOAUTH), ("AUTH", _NOAUTH), ("SELECT", 0),
    ("CLIENT", 0), ("CONFIG", FLAG_ADMIN_BIT), ("COMMAND", 0), ("DBSIZE", _R),
    ("FLUSHDB", _W), ("FLUSHALL", _W), ("TIME", 0),
    ("SETEX", _W | _GROW), ("PSETEX", _W | _GROW), ("GETEX", _W), ("MSETNX", _W | _GROW),
    ("APPEND", _W | _GROW), ("STRLEN", _R), ("GETRANGE", _R), ("SETRANGE", _W | _GROW),
    ("INCRBY", _W | _GROW), ("DECRBY", _W | _GROW), ("INCRBYFLOAT", _W | _GROW),
    ("UNLINK", _W), ("TOUCH", _R), ("TYPE", _R), ("RENAME", _W), ("RENAMENX", _W),
    ("KEYS", _R), ("RANDOMKEY", _R), ("PEXPIRE", _W), ("EXPIREAT", _W), ("PEXPIREAT", _W),
    ("EXPIRETIME", _R), ("PEXPIRETIME", _R), ("PTTL", _R),
    ("MULTI", 0), ("EXEC", 0), ("DISCARD", 0), ("WATCH", _R), ("UNWATCH", 0),
)

# Every command RESP speaks: its Redis name, the row it counts on, and
# Redis's arity (negative: at least that many words, the name included),
# first key, last key (-1: the last argument) and key step, as COMMAND
# reports them (redis's src/commands.def).
_RESP_TABLE = (
    ("GET", "GET", 2, 1, 1, 1), ("SET", "SET", -3, 1, 1, 1), ("DEL", "DEL", -2, 1, -1, 1),
    ("UNLINK", "UNLINK", -2, 1, -1, 1), ("EXISTS", "EXISTS", -2, 1, -1, 1),
    ("INCR", "INCR", 2, 1, 1, 1), ("DECR", "DECR", 2, 1, 1, 1),
    ("INCRBY", "INCRBY", 3, 1, 1, 1), ("DECRBY", "DECRBY", 3, 1, 1, 1),
    ("INCRBYFLOAT", "INCRBYFLOAT", 3, 1, 1, 1),
    ("MGET", "MGET", -2, 1, -1, 1), ("MSET", "MSET", -3, 1, -1, 2),
    ("MSETNX", "MSETNX", -3, 1, -1, 2), ("SETNX", "SETNX", 3, 1, 1, 1),
    ("SETEX", "SETEX", 4, 1, 1, 1), ("PSETEX", "PSETEX", 4, 1, 1, 1),
    ("GETSET", "GETSET", 3, 1, 1, 1), ("GETDEL", "GETDEL", 2, 1, 1, 1),
    ("GETEX", "GETEX", -2, 1, 1, 1), ("APPEND", "APPEND", 3, 1, 1, 1),
    ("STRLEN", "STRLEN", 2, 1, 1, 1), ("GETRANGE", "GETRANGE", 4, 1, 1, 1),
    ("SUBSTR", "GETRANGE", 4, 1, 1, 1), ("SETRANGE", "SETRANGE", 4, 1, 1, 1),
    ("TOUCH", "TOUCH", -2, 1, -1, 1), ("TYPE", "TYPE", 2, 1, 1, 1),
    ("RENAME", "RENAME", 3, 1, 2, 1), ("RENAMENX", "RENAMENX", 3, 1, 2, 1),
    ("KEYS", "KEYS", 2, 0, 0, 0), ("SCAN", "SCAN", -2, 0, 0, 0),
    ("RANDOMKEY", "RANDOMKEY", 1, 0, 0, 0),
    ("EXPIRE", "EXPIRE", -3, 1, 1, 1), ("PEXPIRE", "PEXPIRE", -3, 1, 1, 1),
    ("EXPIREAT", "EXPIREAT", -3, 1, 1, 1), ("PEXPIREAT", "PEXPIREAT", -3, 1, 1, 1),
    ("EXPIRETIME", "EXPIRETIME", 2, 1, 1, 1), ("PEXPIRETIME", "PEXPIRETIME", 2, 1, 1, 1),
    ("TTL", "TTL", 2, 1, 1, 1), ("PTTL", "PTTL", 2, 1, 1, 1),
    ("PERSIST", "PERSIST", 2, 1, 1, 1),
    ("PING", "PING", -1, 0, 0, 0), ("ECHO", "ECHO", 2, 0, 0, 0), ("QUIT", "QUIT", -1, 0, 0, 0),
    ("HELLO", "HELLO", -1, 0, 0, 0), ("AUTH", "AUTH", -2, 0, 0, 0),
    ("SELECT", "SELECT", 2, 0, 0, 0), ("CLIENT", "CLIENT", -2, 0, 0, 0),
    ("INFO", "INFO", -1, 0, 0, 0), ("CONFIG", "CONFIG", -2, 0, 0, 0),
    ("COMMAND", "COMMAND", -1, 0, 0, 0), ("DBSIZE", "DBSIZE", 1, 0, 0, 0),
    ("FLUSHDB", "FLUSHDB", -1, 0, 0, 0), ("FLUSHALL", "FLUSHALL", -1, 0, 0, 0),
    ("TIME", "TIME", 1, 0, 0, 0),
    ("MULTI", "MULTI", 1, 0, 0, 0), ("EXEC", "EXEC", 1, 0, 0, 0),
    ("DISCARD", "DISCARD", 1, 0, 0, 0), ("WATCH", "WATCH", -2, 1, -1, 1),
    ("UNWATCH", "UNWATCH", 1, 0, 0, 0),
)


cdef tuple _build_resp_table():
    # RESP-only rows after the binary ones, then one entry per RESP name:
    # (name, row, arity, first key, last key, step, flags).
    cdef int row = len(_WIRE_NAMES)
    cdef dict rows = {name: i for i, name in enumerate(_WIRE_NAMES)}
    assert len(_WIRE_NAMES) + len(_RESP_ONLY_TABLE) <= MAX_COMMANDS
    for wire_name, flags in _RESP_ONLY_TABLE:
        if wire_name in rows:
            continue
        _SPECS[row].op = OP_NONE
        _SPECS[row].args = ARGS_NONE
        _SPECS[row].reply = REPLY_EMPTY
        _SPECS[row].flags = flags
        _WIRE_NAMES.append(wire_name)
        rows[wire_name] = row
        row += 1
    return tuple((name, rows[row_name], arity, first, last, step, _SPECS[rows[row_name]].flags)
                 for name, row_name, arity, first, last, step in _RESP_TABLE)


RESP_COMMANDS = _build_resp_table()
