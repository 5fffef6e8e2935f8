# The wire protocol (docs/protocol.md), the contract of one extension built
# from the pieces in kvstore/_wire/ (asyncpg's protocol/ layout):
#
#   _wire/commands.pxi  the command table: op code, name, argument and reply
#                       shape, flags, retry class -- the one place that knows them
#   _wire/executor.pxi  Executor: the one way in for every request, whatever
#                       its framing (stats, gates, the commands' rules, INFO)
#   _wire/binary.pxi    the binary framing: header, limits, held replies,
#                       output cap; it only parses and encodes
#   _wire/client.pxi    RequestWriter and ReplyReader, driven by the table
#
# A second framing (RESP) is one more piece beside binary.pxi that parses its
# requests into the Executor's arguments and encodes its answers.

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from kvstore._codec cimport Reader, WriteBuffer
from kvstore._engine cimport Core, KeySpace, StoreMode


# -- the command table (_wire/commands.pxi) ----------------------------------

cdef enum Op:
    # Binary op codes stay below 0x20: a connection whose first byte is 0x20
    # or above speaks RESP ("*" or an inline command's letter), docs/protocol.md.
    OP_GET = 0x01
    OP_SET = 0x02
    OP_DEL = 0x03
    OP_EXISTS = 0x04
    OP_INCR = 0x05
    OP_DECR = 0x06
    OP_CAS = 0x07
    OP_PING = 0x08
    OP_INFO = 0x09
    OP_SETNX = 0x0A
    OP_FLUSH = 0x0B
    OP_EXPIRE = 0x0C
    OP_TTL = 0x0D
    OP_MGET = 0x0E
    OP_MSET = 0x0F
    OP_MDEL = 0x10
    OP_MEXISTS = 0x11
    OP_PERSIST = 0x12
    OP_GETDEL = 0x13
    OP_GETSET = 0x14
    OP_DELETE_IF_EQUAL = 0x15
    OP_SCAN = 0x16
    OP_SNAPSHOT = 0x17       # -- durability (issue 11)
    OP_CONFIG_GET = 0x18     # -- eviction (issue 12)
    OP_CONFIG_SET = 0x19     # -- eviction (issue 12)
    OP_LIMIT = 0x20          # every binary op code is below this

cdef enum CommandFlag:
    FLAG_READ_BIT = 1                 # reads the keyspace
    FLAG_WRITE_BIT = 2                # may change the keyspace
    FLAG_MAY_GROW_MEMORY_BIT = 4      # may need more memory: refused when memory is full
    FLAG_ALLOWED_BEFORE_AUTH_BIT = 8  # served before a connection authenticates
    FLAG_ADMIN_BIT = 16               # server administration: refused to tenants

# What a request carries after its header, and what an OK reply carries
# (docs/protocol.md, "Ops"). The writer encodes and the reader decodes by them.
cdef enum ArgShape:
    ARGS_NONE = 0             # empty
    ARGS_ANY                  # anything (PING echoes it)
    ARGS_KEY                  # key
    ARGS_KEY_TTL_VALUE        # key, ttl u64, value
    ARGS_KEY_TTL_TWO_VALUES   # key, ttl u64, expected value, new value
    ARGS_KEY_DELTA            # key, delta i64
    ARGS_KEY_TTL              # key, ttl u64 (> 0)
    ARGS_KEY_VALUE            # key, value
    ARGS_KEYS                 # count u16, keys
    ARGS_PAIRS                # count u16, ttl u64, count x (key, value)
    ARGS_PREFIX               # prefix_len u16, prefix
    ARGS_SCAN                 # cursor u64, count u32, prefix, match
    ARGS_MAP                  # one Map value (CONFIG_SET) -- eviction (issue 12)

cdef enum ReplyShape:
    REPLY_EMPTY = 0           # OK, no payload: None
    REPLY_VALUE               # OK + value, or NULL: value or MISSING
    REPLY_FLAG                # OK + u8 0/1: bool
    REPLY_I64                 # OK + i64: int
    REPLY_CAS                 # OK (True) or CAS_FAILED (False)
    REPLY_TTL                 # OK + i64 ms (-1: no expiry) or NULL
    REPLY_VALUES              # OK + count u16 + values: list
    REPLY_U32                 # OK + u32: int
    REPLY_FLAGS               # OK + count u16 + u8 each: list[bool]
    REPLY_ECHO                # OK + the request payload: True
    REPLY_MAP                 # OK + one Map value: dict
    REPLY_U64                 # OK + u64: int
    REPLY_SCAN                # OK + cursor u64 + count u32 + keys: (cursor, list[bytes])

cdef enum:
    # Rows of the command table; index 0 is "UNKNOWN" (a frame no command
    # claims). Statistics are indexed by row, so a command without a binary
    # op code (RESP's own) counts like any other.
    MAX_COMMANDS = 128        # issue 13: RESP-only rows too (was 64)
    CMD_UNKNOWN = 0

ctypedef struct CommandSpec:
    # One row of the command table in C, for the hot paths.
    uint8_t op                # binary op code, 0 for none
    uint8_t args              # ArgShape
    uint8_t reply             # ReplyShape
    uint32_t flags            # CommandFlag bits


@cython.final
cdef class Command:
    # A row of the command table as Python sees it (COMMANDS, command(name)).
    cdef readonly int index          # row, the statistics slot
    cdef readonly str name           # the Python method: "get", "delete_if_equal"
    cdef readonly str wire_name      # "GET", "DELETE_IF_EQUAL": INFO's "calls"
    cdef readonly int op             # binary op code
    cdef readonly int flags          # FLAG_* bits
    cdef readonly bint retry_safe    # a client may resend it after a lost connection
    cdef readonly str arguments      # the request payload, as docs/protocol.md lists it


# -- the executor (_wire/executor.pxi) ----------------------------------------

cdef enum:
    HEADER_BYTES = 5                      # op/status u8 + length u32 BE
    DEFAULT_MAX_PAYLOAD_BYTES = 67108864  # 64 MiB, the server's default frame limit
    MAX_BATCH_KEYS_PER_FRAME = 65535      # batch counts are u16
    SERVER_PORT = 16380                   # the default port
    # Buffers that grew past this for one large frame go back to their inline
    # chunk afterwards, so an idle connection holds no large block.
    KEEP_BUFFER_BYTES = 262144
    # -- limits (issue 10)
    # Work units (requests + keys/buckets touched) one turn of one connection
    # may spend before the rest of its input waits for its next turn: about a
    # millisecond, so other connections get theirs (benchmarks/server.py).
    MAX_TURN_WORK = 16384
    # A FLUSH over several turns takes steps of this many keys (at most ten
    # times as many buckets and entries looked at) and stops a turn after
    # TURN_TIME_US microseconds even with work budget left.
    FLUSH_STEP_KEYS = 64
    TURN_TIME_US = 1000

ctypedef struct Arg:
    # A byte string inside the request, borrowed: valid while its input is.
    const char* ptr
    Py_ssize_t length

cdef enum TtlState:
    # TTL's answer, before a framing encodes it (binary: NULL / -1 / ms).
    TTL_STATE_MISSING = 0
    TTL_STATE_PERSISTENT = 1
    TTL_STATE_EXPIRING = 2


@cython.final
cdef class ServerStats:
    # Figures shared by every connection of one server, for INFO.
    cdef uint64_t calls[MAX_COMMANDS]    # requests handled, per command row (0: unknown)
    cdef readonly uint64_t bytes_in      # request bytes received, all connections
    cdef readonly uint64_t bytes_out     # reply bytes produced, all connections


@cython.final
cdef class Executor:
    # One per connection: the one way from a parsed request to the engine.
    # A framing calls admit(row) for every request, before parsing it, then
    # the command's method with the parsed arguments, and encodes the result.
    # Keys include any namespace prefix the client sent.
    cdef Core core
    cdef object engine                   # the KeySpace that owns core (for INFO)
    cdef ServerStats stats
    cdef uint64_t* calls                 # stats.calls (stats is kept alive by the field above)
    cdef object server_info              # callable -> dict of server figures, or None
    cdef bint authenticated              # issue 14 sets it False until AUTH; always True now
    cdef WriteBuffer args                # Arg arrays of batch commands, reused

    # Counts the request, applies the gates on its flags, starts the engine call.
    cdef int admit(self, int row) except -1
    cdef int _refuse(self, int row, uint32_t flags) except -1
    # A C array of at least n Args, valid until the next call (batch parsing).
    cdef Arg* arg_array(self, Py_ssize_t n) except NULL
    cdef int done_with_args(self) except -1

    # GET: 1 and (*value, *value_length) pointing into the entry until the next
    # engine call, or 0 when missing.
    cdef int get(self, const char* key, Py_ssize_t key_length,
                 const char** value, Py_ssize_t* value_length) except -1
    # SET/SETNX/CAS: 1 stored, 0 the mode's condition failed.
    cdef int store(self, const char* key, Py_ssize_t key_length, const char* value,
                   Py_ssize_t value_length, int64_t ttl_ms, StoreMode mode,
                   const char* expected, Py_ssize_t expected_length) except -1
    cdef int delete(self, const char* key, Py_ssize_t key_length) except -1
    cdef int exists(self, const char* key, Py_ssize_t key_length) except -1
    cdef int64_t add(self, const char* key, Py_ssize_t key_length, int64_t delta,
                     bint subtract) except? -1
    cdef int expire(self, const char* key, Py_ssize_t key_length, int64_t ttl_ms) except -1
    cdef TtlState ttl(self, const char* key, Py_ssize_t key_length, int64_t* ms) except? TTL_STATE_MISSING
    cdef int persist(self, const char* key, Py_ssize_t key_length) except -1
    # GETDEL / GETSET: 1 and the old value's encoding appended to out, else 0.
    cdef int getdel(self, const char* key, Py_ssize_t key_length, WriteBuffer out) except -1
    cdef int getset(self, const char* key, Py_ssize_t key_length, const char* value,
                    Py_ssize_t value_length, int64_t ttl_ms, WriteBuffer out) except -1
    cdef int delete_if_equal(self, const char* key, Py_ssize_t key_length,
                             const char* expected, Py_ssize_t expected_length) except -1
    # MSET: items[2i] is a key, items[2i + 1] its value's encoding; all or nothing.
    cdef int mset(self, const Arg* items, Py_ssize_t count, int64_t ttl_ms) except -1
    # MDEL: how many of the keys existed.
    cdef Py_ssize_t mdel(self, const Arg* keys, Py_ssize_t count) except -1
    cdef Py_ssize_t flush(self, const char* prefix, Py_ssize_t prefix_length) except -1
    # SCAN: appends keys (bytes, the prefix stripped) to out; the next cursor.
    cdef uint64_t scan(self, uint64_t cursor, const char* prefix, Py_ssize_t prefix_length,
                       object pattern, Py_ssize_t count, list out) except? 0xFFFFFFFFFFFFFFFF
    # INFO: the one place its answer is put together.
    cdef dict info(self)
    # -- eviction (issue 12): CONFIG_GET / CONFIG_SET (Engine.configure)
    cdef dict config_get(self)
    cdef int config_set(self, dict settings) except -1
    # -- end eviction

    # -- limits (issue 10): the same for every framing ------------------------
    # Work done in the current turn (a feed): 1 per request plus the keys or
    # buckets it touched. A framing calls new_turn() at the start of each feed
    # and stops running requests once over_budget() (holding the rest, as for
    # its output cap), so one connection's turn stays about a millisecond.
    cdef readonly Py_ssize_t work
    cdef readonly Py_ssize_t max_reply   # largest reply payload, checked before it is built
    # A prefix FLUSH in progress (flush_begin returned 0): the framing stops
    # running requests, and on its next turns calls flush_continue() first
    # until it returns 1; then flush_removed is the reply.
    cdef readonly bint flushing
    cdef bytes flush_prefix
    cdef uint64_t flush_cursor
    cdef Py_ssize_t flush_removed
    cdef int new_turn(self) except -1
    cdef bint over_budget(self) noexcept
    # LimitError unless a reply of `size` payload bytes is within max_reply.
    cdef int check_reply(self, Py_ssize_t size) except -1
    # MGET: looks up count keys, values[i] pointing into the entries (ptr NULL:
    # missing) until the next engine call; the reply's size as fixed +
    # per_item * count + the value bytes, refused (LimitError) over max_reply
    # before the framing commits any memory to it.
    cdef Py_ssize_t mget(self, const Arg* keys, Py_ssize_t count, Arg* values,
                         Py_ssize_t fixed, Py_ssize_t per_item) except -1
    # FLUSH: an empty prefix flushes everything at once (1); a prefix runs in
    # bounded steps: 1 when done within this turn's budget, 0 when still going.
    cdef int flush_begin(self, const char* prefix, Py_ssize_t prefix_length) except -1
    cdef int flush_continue(self) except -1
    cdef int _flush_steps(self) except -1

    # -- RESP (issue 13): the commands of Redis's string and keyspace families.
    # RESP values are strings: text_view (executor.pxi) is how a stored value
    # of any codec type reads as one.
    cdef WriteBuffer text                # the new value APPEND/SETRANGE/INCR build
    # INCR family on a string value holding a canonical decimal integer (or
    # an int value): the result, stored as an int, the ttl kept.
    cdef int64_t add_text(self, const char* key, Py_ssize_t key_length, int64_t delta,
                          bint subtract) except? -1
    # INCRBYFLOAT in long double, printed as Redis prints it; the new text.
    cdef bytes add_float(self, const char* key, Py_ssize_t key_length, const char* increment,
                         Py_ssize_t increment_length)
    # Write a value encoding, keeping the key's ttl (SET KEEPTTL, APPEND, ...).
    cdef int store_keep_ttl(self, const char* key, Py_ssize_t key_length, const char* value,
                            Py_ssize_t value_length) except -1
    cdef Py_ssize_t append(self, const char* key, Py_ssize_t key_length, const char* data,
                           Py_ssize_t length) except -1
    cdef Py_ssize_t set_range(self, const char* key, Py_ssize_t key_length, int64_t offset,
                              const char* data, Py_ssize_t length) except -1
    # 1 renamed, 0 no such source key, 2 only_if_absent and the target exists.
    cdef int rename(self, const char* source, Py_ssize_t source_length, const char* target,
                    Py_ssize_t target_length, bint only_if_absent) except -1
    # EXPIRE with Redis 7's NX/XX/GT/LT condition; ttl_ms <= 0 deletes the key.
    cdef int expire_if(self, const char* key, Py_ssize_t key_length, int64_t ttl_ms,
                       int condition) except -1
    cdef Py_ssize_t dbsize(self) except -1
    cdef object random_key(self)
    # Everything a WATCH compares: the value encoding and the deadline, or None.
    cdef object watch_state(self, const char* key, Py_ssize_t key_length)

    # -- durability (issue 11): SNAPSHOT starts one (BGSAVE); 1 if started, 0 if one runs
    cdef uint64_t snapshot(self) except? 0xFFFFFFFFFFFFFFFF


# -- the binary framing (_wire/binary.pxi) -------------------------------------

cdef enum Status:
    ST_OK = 0x00
    ST_NULL = 0x01           # the key is missing
    ST_ERROR = 0x02          # the engine refused: payload kind + message
    ST_INVALID = 0x03        # bad op or malformed payload: payload kind + message
    ST_CAS_FAILED = 0x04

cdef enum:
    # The fewest payload bytes one batch item takes: a key is u16 length plus
    # at least one byte, an MSET item adds at least a one-byte value. Counts
    # are checked against them before anything is sized from a count.
    MIN_KEY_ITEM_BYTES = 3
    MIN_MSET_ITEM_BYTES = 4
    # Error messages longer than this are cut (they are for people).
    MAX_ERROR_MESSAGE_BYTES = 1024
    # feed() stops running frames once its replies pass this size and keeps
    # the rest for later, so pipelined reads of large values cannot build an
    # output of gigabytes before flow control gets a say.
    MAX_FEED_OUTPUT_BYTES = 1048576
    # -- limits (issue 10)
    # Replies that could not be copied out in one piece (out of memory) go out
    # in chunks of this size, so the frames that ran still get their replies.
    UNSENT_CHUNK_BYTES = 65536


cdef class Framing:
    # What every framing of one connection shares (_wire/framing.pxi): feed()
    # is one turn; it hands out replies left unsent, runs input held from an
    # earlier turn, goes on with an unfinished FLUSH, then gives the new bytes
    # to the framing's _consume. A request cut by the end of the input waits in
    # `pending` (a framing checks its declared size against max_payload
    # first). When the replies pass MAX_FEED_OUTPUT_BYTES or the executor's
    # work budget is spent, the unrun input is held (`_held` from
    # `_held_pos`) for the next feed; pending is then empty.
    cdef Executor ex
    cdef Py_ssize_t max_payload          # largest accepted request payload, bytes
    cdef WriteBuffer pending             # the start of an incomplete request
    cdef WriteBuffer out                 # replies of the current feed()
    cdef readonly bint framing_lost      # the framing cannot go on: close the connection
    cdef readonly uint64_t bytes_received  # by this connection (idle detection)
    cdef bytes _held                     # input with requests not run yet, or None
    cdef Py_ssize_t _held_pos            # where in _held they start
    cdef bint _capped                    # the last run stopped at the output cap or budget
    # The request being run, so that an exception it raises becomes its reply
    # and the requests after it still run.
    cdef Py_ssize_t _next                # input offset just past the request
    cdef Py_ssize_t _reply_at            # where its reply starts in out
    cdef readonly Py_ssize_t last_feed_work  # the Executor's work in the last feed (tests)
    cdef Py_ssize_t _unsent_at           # out could not be copied whole: next chunk, or -1
    cdef bint _fail_output               # test-only: the next copy of out fails

    # Each framing: parse and run data from `used` (requests until the first
    # incomplete one, which goes to pending, or until _capped, then _hold).
    cdef int _consume(self, bytes data, Py_ssize_t used) except -1
    cdef int _flush_reply(self, uint64_t removed) except -1
    cdef int _answer_failure(self, object error) except -1
    cdef int _hold(self, bytes data, Py_ssize_t used) except -1
    cdef object _output(self)
    cdef object _next_unsent(self)


@cython.final
cdef class Processor(Framing):
    # The binary framing of one connection (_wire/binary.pxi).
    cdef Py_ssize_t _process(self, const char* data, Py_ssize_t length) except -1
    cdef Py_ssize_t _run_frames(self, const char* data, Py_ssize_t length,
                                Py_ssize_t pos) except -1
    cdef Py_ssize_t _fill_pending(self, const char* data, Py_ssize_t length) except -1
    cdef int _lose_framing(self, uint32_t length) except -1
    cdef int _lose_framing_oom(self) except -1
    cdef int _dispatch(self, uint8_t op, const char* payload, Py_ssize_t length) except -1
    # One parser per payload layout; `op` picks the command where several
    # share a layout (SET/SETNX, DEL/EXISTS/PERSIST/GETDEL, INCR/DECR).
    cdef int _key_op(self, Reader* rd, uint8_t op) except -1
    cdef int _store(self, Reader* rd, uint8_t op) except -1
    cdef int _cas(self, Reader* rd) except -1
    cdef int _add(self, Reader* rd, uint8_t op) except -1
    cdef int _expire(self, Reader* rd) except -1
    cdef int _getset(self, Reader* rd) except -1
    cdef int _delete_if_equal(self, Reader* rd) except -1
    cdef int _mget(self, Reader* rd) except -1
    cdef int _mset(self, Reader* rd) except -1
    cdef int _mdel(self, Reader* rd) except -1
    cdef int _mexists(self, Reader* rd) except -1
    cdef int _flush(self, Reader* rd) except -1
    cdef int _scan(self, Reader* rd) except -1
    cdef int _info(self, Reader* rd) except -1
    cdef int _config(self, Reader* rd, uint8_t op) except -1    # -- eviction (issue 12)
    # Reply writers: one room check, then the bytes.
    cdef int _reply(self, uint8_t status, const char* data, Py_ssize_t length) except -1
    cdef int _reply_u8(self, uint8_t value) except -1
    cdef int _reply_u64(self, uint64_t value) except -1


# -- the clients' side (_wire/client.pxi) --------------------------------------

@cython.final
cdef class RequestWriter:
    # Frames for the clients. Every public method appends one whole frame or,
    # when it raises, leaves the buffer as it was.
    cdef WriteBuffer buf
    cdef bytes prefix                    # namespace prefix b"ns:" or b""
    cdef Py_ssize_t max_payload          # the server's limit, checked per frame

    cdef Py_ssize_t _open(self, uint8_t op) except -1
    cdef int _close(self, Py_ssize_t length_at) except -1
    cdef int _key(self, object key) except -1
    cdef int _prefix(self) except -1
    cdef int _single(self, uint8_t op, object key) except -1
    cdef int _store(self, uint8_t op, object key, object value, object ttl) except -1
    cdef int _add(self, uint8_t op, object key, object delta) except -1
    cdef int _keys(self, uint8_t op, object keys) except -1


@cython.final
cdef class ReplyReader:
    # Replies from the server, read one at a time by the op they answer.
    cdef WriteBuffer buf
    cdef Py_ssize_t pos                  # start of the first unread reply in buf
    # -- client reply limit (issue 10, client half) --
    cdef Py_ssize_t max_reply            # a reply declaring more payload is refused
    # -- end client reply limit --

    cdef object _decode(self, uint8_t reply, uint8_t status, const char* payload,
                        Py_ssize_t length)
