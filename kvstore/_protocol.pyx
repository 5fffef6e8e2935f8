# The wire protocol (docs/protocol.md), one extension built from the pieces
# in kvstore/_wire/ (see _protocol.pxd for the contract and the layout):
# the command table, the executor, the binary framing, the clients' writer
# and reader. This file holds what they share: imports, bound globals, the
# Python-level constants and the small inline helpers.

cimport cython
from cpython.bytes cimport (
    PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from kvstore._codec cimport (
    MAX_KEY_BYTES, TAG_NULL,
    Reader, WriteBuffer,
    decode_value, encode_key, encode_value, item_list, key_list, kv_load_u16, kv_load_u32,
    kv_load_u64, kv_store_u16, kv_store_u32, kv_store_u64, rd_i64, rd_raw, rd_u8, rd_u16, rd_u32,
    rd_u64, skip_value,
)
from kvstore._engine cimport (
    MAX_TTL_MS, MAX_VALUE_BYTES, SCAN_MAX_COUNT, STORE_ALWAYS, STORE_IF_ABSENT, STORE_IF_EQUAL,
    TTL_MISSING, TTL_NO_EXPIRY, Core, KeySpace, StoreMode, delta_arg, ttl_to_ms,
)

from kvstore import errors as _errors


# Python globals used on hot or error paths, bound once at import.
cdef object KvError = _errors.KvError
cdef object ProtocolError = _errors.ProtocolError
cdef object InvalidKeyError = _errors.InvalidKeyError
cdef object InvalidArgumentError = _errors.InvalidArgumentError
cdef object ValueTooLargeError = _errors.ValueTooLargeError
cdef object ServerError = _errors.ServerError
cdef object PersistenceError = _errors.PersistenceError   # -- durability (issue 11)
cdef object error_class = _errors.error_class
# Refusals of the request itself get INVALID; everything else is ERROR.
cdef tuple _INVALID_REQUEST = (ProtocolError, InvalidKeyError, InvalidArgumentError)

cdef uint64_t U32_MAX = 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Python-level constants (see _protocol.pyi)
# ---------------------------------------------------------------------------

DEFAULT_PORT = SERVER_PORT
DEFAULT_MAX_PAYLOAD = DEFAULT_MAX_PAYLOAD_BYTES
MAX_BATCH_KEYS = MAX_BATCH_KEYS_PER_FRAME
BINARY_OP_LIMIT = OP_LIMIT


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return f"kvstore._protocol.{self._name}"

    def __reduce__(self):
        return self._name


MISSING = _Sentinel("MISSING")
NEED_MORE = _Sentinel("NEED_MORE")
cdef object _MISSING = MISSING
cdef object _NEED_MORE = NEED_MORE
cdef object _UNEXPECTED = object()     # ReplyReader: the reply lacks its command's shape


cdef inline int _room(WriteBuffer buf, Py_ssize_t extra) except -1:
    # The "is there room?" test inline; WriteBuffer._grow out of line.
    if extra > buf._size - buf._length:
        buf._grow(extra)
    return 0


include "_wire/commands.pxi"
include "_wire/executor.pxi"
include "_wire/framing.pxi"
include "_wire/binary.pxi"
include "_wire/client.pxi"
include "_wire/resp.pxi"            # issue 13


# The framings a server endpoint can speak, by name: each makes the
# processor of one connection from (engine, max_payload, stats, server_info).
FRAMINGS = {"binary": Processor}
FRAMINGS["resp"] = RespProcessor     # issue 13
