# The wire protocol (docs/protocol.md): the one place that knows op and status
# bytes. The server side is Processor, which parses every complete frame of a
# connection's input and runs it against the engine's Core; the client side is
# RequestWriter (frames out) and ReplyReader (replies in).

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from kvstore._codec cimport Reader, WriteBuffer
from kvstore._engine cimport Core


cdef enum Op:
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
    OP_COUNT = 0x12          # one past the highest op: size of per-op tables

cdef enum Status:
    ST_OK = 0x00
    ST_NULL = 0x01           # the key is missing
    ST_ERROR = 0x02          # the engine refused: payload kind + message
    ST_INVALID = 0x03        # bad op or malformed payload: payload kind + message
    ST_CAS_FAILED = 0x04

cdef enum:
    HEADER_BYTES = 5                      # op/status u8 + length u32 BE
    DEFAULT_MAX_PAYLOAD_BYTES = 67108864  # 64 MiB, the server's default frame limit
    MAX_BATCH_KEYS_PER_FRAME = 65535      # batch counts are u16
    SERVER_PORT = 16380                   # the default port
    # The fewest payload bytes one batch item takes: a key is u16 length plus
    # at least one byte, an MSET item adds at least a one-byte value. Counts
    # are checked against them before anything is sized from a count.
    MIN_KEY_ITEM_BYTES = 3
    MIN_MSET_ITEM_BYTES = 4
    # Buffers that grew past this for one large frame go back to their inline
    # chunk afterwards, so an idle connection holds no large block.
    KEEP_BUFFER_BYTES = 262144
    # Error messages longer than this are cut (they are for people).
    MAX_ERROR_MESSAGE_BYTES = 1024
    # feed() stops running frames once its replies pass this size and keeps
    # the rest for later, so pipelined reads of large values cannot build an
    # output of gigabytes before flow control gets a say.
    MAX_FEED_OUTPUT_BYTES = 1048576


@cython.final
cdef class ServerStats:
    # Figures shared by every connection of one server, for INFO.
    cdef uint64_t calls[OP_COUNT]        # frames handled, per op (index 0: unknown ops)
    cdef readonly uint64_t bytes_in      # request bytes received, all connections
    cdef readonly uint64_t bytes_out     # reply bytes produced, all connections


@cython.final
cdef class Processor:
    # One per connection. feed() runs every complete frame of its input and
    # returns all their replies in one piece. A frame cut by the end of the
    # input waits in `pending` (its header already checked against
    # max_payload) until the rest arrives. When the replies pass
    # MAX_FEED_OUTPUT_BYTES, the unrun input is held (`_held` from
    # `_held_pos`) for the next feed; pending is then empty.
    cdef Core core
    cdef object engine                   # the KeySpace that owns core (for info())
    cdef Py_ssize_t max_payload          # largest accepted request payload, bytes
    cdef WriteBuffer pending             # the start of an incomplete frame
    cdef WriteBuffer out                 # replies of the current feed()
    cdef WriteBuffer lengths             # MSET: value lengths found while validating
    cdef ServerStats stats
    cdef object server_info              # callable -> dict of server figures, or None
    cdef readonly bint framing_lost      # a header broke the limit: close the connection
    cdef readonly uint64_t bytes_received  # by this connection (idle detection)
    cdef bytes _held                     # input with frames not run yet, or None
    cdef Py_ssize_t _held_pos            # where in _held they start
    cdef bint _capped                    # the last _run_frames stopped at the output cap
    # The frame being run, so that an exception it raises becomes its reply
    # and the frames after it still run.
    cdef Py_ssize_t _next                # input offset just past the frame
    cdef Py_ssize_t _reply_at            # where its reply starts in out

    cdef Py_ssize_t _process(self, const char* data, Py_ssize_t length) except -1
    cdef Py_ssize_t _run_frames(self, const char* data, Py_ssize_t length,
                                Py_ssize_t pos) except -1
    cdef Py_ssize_t _fill_pending(self, const char* data, Py_ssize_t length) except -1
    cdef int _lose_framing(self, uint32_t length) except -1
    cdef int _answer_failure(self, object error) except -1
    cdef int _dispatch(self, uint8_t op, const char* payload, Py_ssize_t length) except -1
    # One handler per payload layout; `op` picks the variant where several
    # ops share a layout (SET/SETNX, DEL/EXISTS, INCR/DECR).
    cdef int _get(self, Reader* rd) except -1
    cdef int _store(self, Reader* rd, uint8_t op) except -1
    cdef int _cas(self, Reader* rd) except -1
    cdef int _flag(self, Reader* rd, uint8_t op) except -1
    cdef int _add(self, Reader* rd, uint8_t op) except -1
    cdef int _expire(self, Reader* rd) except -1
    cdef int _ttl(self, Reader* rd) except -1
    cdef int _mget(self, Reader* rd) except -1
    cdef int _mset(self, Reader* rd) except -1
    cdef int _mdel(self, Reader* rd) except -1
    cdef int _mexists(self, Reader* rd) except -1
    cdef int _flush(self, Reader* rd) except -1
    cdef int _info(self) except -1
    # Reply writers: one room check, then the bytes.
    cdef int _reply(self, uint8_t status, const char* data, Py_ssize_t length) except -1
    cdef int _reply_u8(self, uint8_t value) except -1
    cdef int _reply_u64(self, uint64_t value) except -1


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
    cdef int _single(self, uint8_t op, object key) except -1
    cdef int _store(self, uint8_t op, object key, object value, object ttl) except -1
    cdef int _add(self, uint8_t op, object key, object delta) except -1
    cdef int _keys(self, uint8_t op, object keys) except -1


@cython.final
cdef class ReplyReader:
    # Replies from the server, read one at a time by the op they answer.
    cdef WriteBuffer buf
    cdef Py_ssize_t pos                  # start of the first unread reply in buf

    cdef object _decode(self, int op, uint8_t status, const char* payload, Py_ssize_t length)
