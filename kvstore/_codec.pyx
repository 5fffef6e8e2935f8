# The value codec (docs/protocol.md, "Values"): Python values <-> tagged
# big-endian bytes, plus the write buffer, the bounds-checked reader and the
# key rule that the engine, the protocol processor and the clients share.
#
# Layout of this file: C declarations and bound globals; WriteBuffer; Reader
# helpers; error paths; one encode/decode pair per value type; the value
# dispatchers and skip_value; keys; the Python-level helpers.
#
# Three invariants hold between the three walkers below:
# - every byte string encode_value writes passes skip_value;
# - skip_value accepts a byte string exactly when decode_value decodes it
#   (same tags, length checks, depth limit, UTF-8 rule and Decimal rule);
# - decode_value(encode_value(v)) is v, types kept (tuple comes back a list,
#   bytearray and memoryview come back bytes).

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Check, PyByteArray_GET_SIZE
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Check, PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check, PyFloat_FromDouble
from cpython.list cimport PyList_Check, PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_Check, PyLong_FromLongLong
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_Check
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove

import decimal as _decimal_module

from kvstore import errors as _errors


cdef extern from "Python.h":
    # Declared here rather than cimported: these return NULL / -1 with an
    # exception set, and the callers turn that into the codec's own errors.
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size)
    object PyUnicode_DecodeUTF8(const char* data, Py_ssize_t size, const char* errors)
    object PyUnicode_DecodeASCII(const char* data, Py_ssize_t size, const char* errors)
    long long PyLong_AsLongLongAndOverflow(object value, int* overflow) except? -1
    int PyMemoryView_Check(object value)
    int PyType_IsSubtype(PyTypeObject* a, PyTypeObject* b)
    PyTypeObject* Py_TYPE(object o)
    Py_ssize_t PySequence_Fast_GET_SIZE(object seq)
    PyObject* PySequence_Fast_GET_ITEM(object seq, Py_ssize_t i)
    void PyErr_Clear()
    bint PyUnicode_IS_COMPACT_ASCII(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    void* PyUnicode_DATA(object text)
    void Py_XDECREF(PyObject* o)
    const Py_ssize_t PY_SSIZE_T_MAX


cdef extern from "_codec_c/utf8.h":
    int kv_utf8_valid(const char* s, size_t n) nogil


cdef extern from "_codec_c/decimal_text.h":
    int kv_decimal_text_valid(const char* s, size_t n) nogil


# Python globals used on hot paths, bound once at import.
cdef object Decimal = _decimal_module.Decimal
cdef object _decimal_str = _decimal_module.Decimal.__str__
# Decimal(text, context) raises instead of returning NaN for bad text even
# when the caller's thread context does not trap InvalidOperation.
cdef object _DECIMAL_CONTEXT = _decimal_module.Context(traps=[_decimal_module.InvalidOperation])

cdef object ProtocolError = _errors.ProtocolError
cdef object UnsupportedValueError = _errors.UnsupportedValueError
cdef object ValueTooLargeError = _errors.ValueTooLargeError
cdef object InvalidKeyError = _errors.InvalidKeyError
cdef object InvalidArgumentError = _errors.InvalidArgumentError

cdef enum:
    U16_MAX = 0xFFFF
    # The least bytes one value takes (Null is its tag alone), and one map
    # entry (u16 key length, empty key, Null): the bounds for forged counts.
    MIN_VALUE_BYTES = 1
    MIN_MAP_ENTRY_BYTES = 3

cdef uint64_t U32_MAX = 0xFFFFFFFF

cdef enum:
    # Decoded map keys: the same few keys come back again and again, so short
    # ASCII ones are kept (msgspec does the same) and reused with their hash
    # already computed. Direct-mapped; a collision replaces the slot.
    KEY_CACHE_SLOTS = 512        # a power of two
    KEY_CACHE_MAX_BYTES = 32

# Owned references (or NULL), kept for the life of the process: at most
# KEY_CACHE_SLOTS strs of KEY_CACHE_MAX_BYTES.
cdef PyObject* _key_cache[KEY_CACHE_SLOTS]


# ---------------------------------------------------------------------------
# WriteBuffer
# ---------------------------------------------------------------------------

@cython.final
@cython.freelist(8)
cdef class WriteBuffer:
    # Invariants: _buf is _inline (capacity sizeof(_inline)) or a malloc'd
    # block of _size bytes; 0 <= _length <= _size.

    def __cinit__(self):
        self._buf = self._inline
        self._size = sizeof(self._inline)
        self._length = 0

    def __dealloc__(self):
        if self._buf is not self._inline:
            free(self._buf)
            self._buf = NULL

    @staticmethod
    cdef WriteBuffer new():
        return WriteBuffer.__new__(WriteBuffer)

    cdef int _grow(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t needed
        cdef Py_ssize_t new_size
        cdef char* block
        if extra > PY_SSIZE_T_MAX - self._length:
            raise MemoryError(f"write buffer cannot grow by {extra} bytes")
        needed = self._length + extra
        new_size = self._size * 2 if self._size <= PY_SSIZE_T_MAX // 2 else PY_SSIZE_T_MAX
        if new_size < needed:
            new_size = needed
        if self._buf is self._inline:
            block = <char*>malloc(<size_t>new_size)
            if block is NULL:
                raise MemoryError(f"cannot allocate a {new_size}-byte write buffer")
            memcpy(block, self._inline, <size_t>self._length)
        else:
            # realloc leaves the old block (and so the contents) alone on failure.
            block = <char*>realloc(self._buf, <size_t>new_size)
            if block is NULL:
                raise MemoryError(f"cannot grow the write buffer to {new_size} bytes")
        self._buf = block
        self._size = new_size
        return 0

    cdef inline int ensure(self, Py_ssize_t extra) except -1:
        if extra > self._size - self._length:
            return self._grow(extra)
        return 0

    cdef int write_u8(self, uint8_t v) except -1:
        self.ensure(1)
        self._buf[self._length] = <char>v
        self._length += 1
        return 0

    cdef int write_u16(self, uint16_t v) except -1:
        self.ensure(2)
        kv_store_u16(self._buf + self._length, v)
        self._length += 2
        return 0

    cdef int write_u32(self, uint32_t v) except -1:
        self.ensure(4)
        kv_store_u32(self._buf + self._length, v)
        self._length += 4
        return 0

    cdef int write_u64(self, uint64_t v) except -1:
        self.ensure(8)
        kv_store_u64(self._buf + self._length, v)
        self._length += 8
        return 0

    cdef int write_i64(self, int64_t v) except -1:
        return self.write_u64(<uint64_t>v)

    cdef int write_raw(self, const char* data, Py_ssize_t n) except -1:
        self.ensure(n)
        memcpy(self._buf + self._length, data, <size_t>n)
        self._length += n
        return 0

    cdef Py_ssize_t start_frame(self, uint8_t code) except -1:
        cdef Py_ssize_t length_at
        self.ensure(5)
        self._buf[self._length] = <char>code
        length_at = self._length + 1
        self._length += 5
        return length_at

    cdef int end_frame(self, Py_ssize_t length_at) except -1:
        cdef Py_ssize_t body = self._length - length_at - 4
        if <uint64_t>body > U32_MAX:
            raise ValueTooLargeError(f"frame body of {body} bytes does not fit a u32 length")
        kv_store_u32(self._buf + length_at, <uint32_t>body)
        return 0

    cdef void clear(self) noexcept:
        self._length = 0

    cdef void reset(self) noexcept:
        if self._buf is not self._inline:
            free(self._buf)
            self._buf = self._inline
            self._size = sizeof(self._inline)
        self._length = 0

    cdef bytes to_bytes(self):
        return PyBytes_FromStringAndSize(self._buf, self._length)

    cdef void consume(self, Py_ssize_t n) noexcept:
        if n <= 0:
            return
        if n >= self._length:
            self._length = 0
            return
        memmove(self._buf, self._buf + n, <size_t>(self._length - n))
        self._length -= n


# ---------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------

cdef int _raise_short_read(Reader* rd, Py_ssize_t n) except -1:
    raise ProtocolError(
        f"truncated data: {n} bytes needed at offset {rd.pos}, "
        f"{rd.length - rd.pos} left")


cdef int rd_init(Reader* rd, const char* buf, Py_ssize_t length) except -1:
    if length < 0:
        raise ValueError("negative reader length")
    rd.buf = buf
    rd.length = length
    rd.pos = 0
    return 0


cdef uint8_t rd_u8(Reader* rd) except? 0xFF:
    if rd.pos >= rd.length:
        _raise_short_read(rd, 1)
    rd.pos += 1
    return <uint8_t>rd.buf[rd.pos - 1]


cdef uint16_t rd_u16(Reader* rd) except? 0xFFFF:
    if 2 > rd.length - rd.pos:
        _raise_short_read(rd, 2)
    rd.pos += 2
    return kv_load_u16(rd.buf + rd.pos - 2)


cdef uint32_t rd_u32(Reader* rd) except? 0xFFFFFFFF:
    if 4 > rd.length - rd.pos:
        _raise_short_read(rd, 4)
    rd.pos += 4
    return kv_load_u32(rd.buf + rd.pos - 4)


cdef uint64_t rd_u64(Reader* rd) except? 0xFFFFFFFFFFFFFFFF:
    if 8 > rd.length - rd.pos:
        _raise_short_read(rd, 8)
    rd.pos += 8
    return kv_load_u64(rd.buf + rd.pos - 8)


cdef int64_t rd_i64(Reader* rd) except? -1:
    return <int64_t>rd_u64(rd)


cdef const char* rd_raw(Reader* rd, Py_ssize_t n) except NULL:
    # n < 0 is refused too: lengths come from the wire.
    if <size_t>n > <size_t>(rd.length - rd.pos):
        _raise_short_read(rd, n)
    rd.pos += n
    return rd.buf + rd.pos - n


# ---------------------------------------------------------------------------
# Error paths (out of line: the hot paths only test and jump)
# ---------------------------------------------------------------------------

ctypedef struct PathNode:
    # Where a value sits, as a chain of C-stack nodes towards the root (the
    # root itself has no node). Formatted only when an error is raised.
    PathNode* parent
    Py_ssize_t index      # position in a list, or -1 for a dict entry
    PyObject* key         # the dict key (borrowed) when index == -1


cdef str _path_text(PathNode* path):
    cdef list parts = []
    while path is not NULL:
        if path.index >= 0:
            parts.append(f"[{path.index}]")
        else:
            parts.append(f"[{str.__repr__(<object>path.key)}]")
        path = path.parent
    parts.append("$")
    parts.reverse()
    return "".join(parts)


cdef int _refuse_value(PathNode* path, str message, object error=UnsupportedValueError) except -1:
    # msgspec style: the path first, omitted for the top-level value.
    if path is not NULL:
        message = f"{_path_text(path)}: {message}"
    raise error(message)


cdef int _refuse_type(PathNode* path, object value) except -1:
    return _refuse_value(path, f"{type(value).__name__} is not a storable value")


cdef int _refuse_surrogates(PathNode* path, str what) except -1:
    PyErr_Clear()
    return _refuse_value(path, f"{what} is not encodable as UTF-8 (it holds a lone surrogate)")


cdef int _refuse_too_deep(PathNode* path) except -1:
    return _refuse_value(path, f"nesting deeper than {MAX_NESTING_DEPTH} levels")


cdef int _refuse_too_long(PathNode* path, str what, Py_ssize_t n, uint64_t limit) except -1:
    return _refuse_value(path, f"{what} of {n} items/bytes is over the limit of {limit}",
                         ValueTooLargeError)


cdef int _bad_data(Reader* rd, Py_ssize_t at, str message) except -1:
    raise ProtocolError(f"malformed value at offset {at}: {message}")


# ---------------------------------------------------------------------------
# Checked payload readers, shared by decode_value and skip_value so that the
# two accept exactly the same bytes. Each is called with rd past the tag.
# ---------------------------------------------------------------------------

cdef inline int _read_bool(Reader* rd) except -1:
    cdef uint8_t b = rd_u8(rd)
    if b > 1:
        _bad_data(rd, rd.pos - 1, f"bool byte 0x{b:02x} is neither 0 nor 1")
    return b


cdef inline const char* _read_utf8(Reader* rd, Py_ssize_t* n, bint short_length) except NULL:
    # u16 (map key) or u32 (str) length, then that many bytes of UTF-8.
    cdef Py_ssize_t at = rd.pos
    n[0] = rd_u16(rd) if short_length else rd_u32(rd)
    cdef const char* data = rd_raw(rd, n[0])
    if not kv_utf8_valid(data, <size_t>n[0]):
        _bad_data(rd, at, "invalid UTF-8")
    return data


cdef inline const char* _read_decimal_text(Reader* rd, Py_ssize_t* n) except NULL:
    cdef Py_ssize_t at = rd.pos
    n[0] = rd_u16(rd)
    cdef const char* data = rd_raw(rd, n[0])
    if not kv_decimal_text_valid(data, <size_t>n[0]):
        _bad_data(rd, at, "invalid Decimal text")
    return data


cdef inline uint32_t _read_count(Reader* rd, uint8_t tag, int depth) except? 0xFFFFFFFF:
    # The u32 count of a list or map whose tag sits at depth. Each item takes
    # at least MIN_VALUE_BYTES (each entry MIN_MAP_ENTRY_BYTES), so a forged
    # count is refused before anything is allocated for it.
    cdef Py_ssize_t at = rd.pos - 1
    cdef uint32_t n = rd_u32(rd)
    cdef Py_ssize_t left = rd.length - rd.pos
    if depth >= MAX_NESTING_DEPTH:
        _bad_data(rd, at, f"nesting deeper than {MAX_NESTING_DEPTH} levels")
    if tag == TAG_LIST:
        if n > <uint64_t>left // MIN_VALUE_BYTES:
            _bad_data(rd, at, f"list of {n} items in {left} bytes")
    elif n > <uint64_t>left // MIN_MAP_ENTRY_BYTES:
        _bad_data(rd, at, f"map of {n} entries in {left} bytes")
    return n


# ---------------------------------------------------------------------------
# One encode/decode pair per value type
#
# Encoders: (buf, value, path, depth) -> 0, appending tag + payload.
# Decoders: (rd, depth) -> value, called with rd just past the tag.
# ---------------------------------------------------------------------------

cdef inline int encode_null(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    return buf.write_u8(TAG_NULL)


cdef inline object decode_null(Reader* rd, int depth):
    return None


cdef inline int encode_bool(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    buf.ensure(2)
    buf._buf[buf._length] = <char>TAG_BOOL
    buf._buf[buf._length + 1] = 1 if value is True else 0
    buf._length += 2
    return 0


cdef inline object decode_bool(Reader* rd, int depth):
    return True if _read_bool(rd) else False


cdef inline int encode_int(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        return _refuse_value(
            path, f"int needs {int.bit_length(value) + 1} bits with its sign, over the 64 stored")
    buf.ensure(9)
    buf._buf[buf._length] = <char>TAG_INT
    kv_store_u64(buf._buf + buf._length + 1, <uint64_t>v)
    buf._length += 9
    return 0


cdef inline object decode_int(Reader* rd, int depth):
    return PyLong_FromLongLong(rd_i64(rd))


cdef inline int encode_float(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    # The bits go over as they are, so -0.0 and NaN payloads survive.
    cdef double d = PyFloat_AS_DOUBLE(value)
    cdef uint64_t bits
    memcpy(&bits, &d, 8)
    buf.ensure(9)
    buf._buf[buf._length] = <char>TAG_FLOAT
    kv_store_u64(buf._buf + buf._length + 1, bits)
    buf._length += 9
    return 0


cdef inline object decode_float(Reader* rd, int depth):
    cdef uint64_t bits = rd_u64(rd)
    cdef double d
    memcpy(&d, &bits, 8)
    return PyFloat_FromDouble(d)


cdef int encode_decimal(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    # Decimal.__str__, not str(): a subclass's __str__ does not decide the
    # stored text (and no user code runs while encoding).
    cdef str text = _decimal_str(value)
    cdef Py_ssize_t n
    cdef const char* data = PyUnicode_AsUTF8AndSize(text, &n)
    if data is NULL:
        return -1
    if n > U16_MAX:
        return _refuse_value(
            path, f"Decimal text of {n} characters is over the limit of {U16_MAX}")
    # str(d) always passes; checked so that encoded bytes always validate.
    if not kv_decimal_text_valid(data, <size_t>n):
        return _refuse_value(path, f"Decimal {text[:40]!r} has no portable text form")
    buf.ensure(3 + n)
    buf._buf[buf._length] = <char>TAG_DECIMAL
    kv_store_u16(buf._buf + buf._length + 1, <uint16_t>n)
    memcpy(buf._buf + buf._length + 3, data, <size_t>n)
    buf._length += 3 + n
    return 0


cdef object decode_decimal(Reader* rd, int depth):
    cdef Py_ssize_t n
    cdef const char* data = _read_decimal_text(rd, &n)
    return Decimal(PyUnicode_DecodeASCII(data, n, NULL), _DECIMAL_CONTEXT)


cdef inline int _write_sized(WriteBuffer buf, uint8_t tag, const char* data, Py_ssize_t n,
                             PathNode* path, str what) except -1:
    # tag + u32 length + bytes, reserved in one step.
    if <uint64_t>n > U32_MAX:
        return _refuse_too_long(path, what, n, U32_MAX)
    buf.ensure(5 + n)
    buf._buf[buf._length] = <char>tag
    kv_store_u32(buf._buf + buf._length + 1, <uint32_t>n)
    memcpy(buf._buf + buf._length + 5, data, <size_t>n)
    buf._length += 5 + n
    return 0


cdef inline int encode_str(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    # PyUnicode_AsUTF8AndSize: no copy for ASCII, and the UTF-8 form is cached
    # on the str for the next time it is stored.
    cdef Py_ssize_t n
    cdef const char* data = PyUnicode_AsUTF8AndSize(value, &n)
    if data is NULL:
        return _refuse_surrogates(path, "str")
    return _write_sized(buf, TAG_STRING, data, n, path, "str")


cdef inline object decode_str(Reader* rd, int depth):
    cdef Py_ssize_t n
    cdef const char* data = _read_utf8(rd, &n, False)
    return PyUnicode_DecodeUTF8(data, n, NULL)


cdef inline int encode_bytes(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    # bytes and its subclasses, bytearray and contiguous memoryviews.
    if PyBytes_Check(value):
        return _write_sized(buf, TAG_BYTES, PyBytes_AS_STRING(value),
                            PyBytes_GET_SIZE(value), path, "bytes")
    if PyByteArray_Check(value):
        return _write_sized(buf, TAG_BYTES, PyByteArray_AS_STRING(value),
                            PyByteArray_GET_SIZE(value), path, "bytearray")
    return _encode_buffer(buf, value, path)


cdef int _encode_buffer(WriteBuffer buf, object value, PathNode* path) except -1:
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(value, &view, PyBUF_SIMPLE)
    except (BufferError, ValueError) as exc:
        # Not C-contiguous, or released.
        return _refuse_value(path, f"memoryview cannot be read as bytes: {exc}")
    try:
        _write_sized(buf, TAG_BYTES, <const char*>view.buf, view.len, path, "memoryview")
    finally:
        PyBuffer_Release(&view)
    return 0


cdef inline object decode_bytes(Reader* rd, int depth):
    cdef uint32_t n = rd_u32(rd)
    return PyBytes_FromStringAndSize(rd_raw(rd, n), n)


cdef int _write_container(WriteBuffer buf, uint8_t tag, Py_ssize_t n, PathNode* path,
                          int depth, str what) except -1:
    # tag + u32 count of a list or map at this depth.
    if depth >= MAX_NESTING_DEPTH:
        return _refuse_too_deep(path)
    if <uint64_t>n > U32_MAX:
        return _refuse_too_long(path, what, n, U32_MAX)
    buf.ensure(5)
    buf._buf[buf._length] = <char>tag
    kv_store_u32(buf._buf + buf._length + 1, <uint32_t>n)
    buf._length += 5
    return 0


cdef int encode_list(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    # list, tuple and their subclasses. Nothing here runs user code, so the
    # sequence cannot change while it is walked.
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(value)
    cdef Py_ssize_t i
    cdef PathNode node
    _write_container(buf, TAG_LIST, n, path, depth, "list")
    node.parent = path
    node.key = NULL
    for i in range(n):
        node.index = i
        _encode(buf, <object>PySequence_Fast_GET_ITEM(value, i), &node, depth + 1)
    return 0


cdef object decode_list(Reader* rd, int depth):
    cdef uint32_t n = _read_count(rd, TAG_LIST, depth)
    cdef uint32_t i
    cdef object item
    cdef list result = PyList_New(n)
    for i in range(n):
        item = _decode(rd, depth + 1)
        Py_INCREF(item)
        PyList_SET_ITEM(result, i, item)
    return result


cdef int encode_dict(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    cdef Py_ssize_t n = len(<dict>value)
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t key_length
    cdef PyObject* borrowed_key
    cdef PyObject* item
    cdef object key
    cdef const char* key_data
    cdef PathNode node
    _write_container(buf, TAG_MAP, n, path, depth, "dict")
    node.parent = path
    node.index = -1
    while PyDict_Next(value, &pos, &borrowed_key, &item):
        # Held, not borrowed: the path may be formatted (allocating, so maybe
        # running a collector) while the key is still referenced from node.
        key = <object>borrowed_key
        node.key = borrowed_key
        if not PyUnicode_Check(key):
            return _refuse_value(path, f"dict keys must be str, not {type(key).__name__}")
        key_data = PyUnicode_AsUTF8AndSize(key, &key_length)
        if key_data is NULL:
            return _refuse_surrogates(&node, "dict key")
        if key_length > U16_MAX:
            return _refuse_value(
                path, f"dict key of {key_length} bytes is over the limit of {U16_MAX}")
        buf.ensure(2 + key_length)
        kv_store_u16(buf._buf + buf._length, <uint16_t>key_length)
        memcpy(buf._buf + buf._length + 2, key_data, <size_t>key_length)
        buf._length += 2 + key_length
        _encode(buf, <object>item, &node, depth + 1)
    return 0


cdef object _decode_key(const char* data, Py_ssize_t n):
    cdef uint32_t h = 2166136261u   # FNV-1a
    cdef Py_ssize_t i
    cdef PyObject* cached
    if n > KEY_CACHE_MAX_BYTES:
        return PyUnicode_DecodeUTF8(data, n, NULL)
    for i in range(n):
        h = (h ^ <uint8_t>data[i]) * 16777619u
    h &= KEY_CACHE_SLOTS - 1
    cached = _key_cache[h]
    if (cached is not NULL and PyUnicode_GET_LENGTH(<object>cached) == n
            and memcmp(PyUnicode_DATA(<object>cached), data, <size_t>n) == 0):
        return <object>cached
    key = PyUnicode_DecodeUTF8(data, n, NULL)
    # Only ASCII keys go in, so a length match above is a byte-length match.
    if PyUnicode_IS_COMPACT_ASCII(key):
        Py_INCREF(key)
        _key_cache[h] = <PyObject*>key
        Py_XDECREF(cached)
    return key


cdef object decode_dict(Reader* rd, int depth):
    cdef uint32_t n = _read_count(rd, TAG_MAP, depth)
    cdef uint32_t i
    cdef Py_ssize_t key_length
    cdef const char* key_data
    cdef object key
    cdef dict result = {}
    for i in range(n):
        key_data = _read_utf8(rd, &key_length, True)
        key = _decode_key(key_data, key_length)
        # A repeated key keeps its last value, as dict(pairs) does.
        result[key] = _decode(rd, depth + 1)
    return result


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------

cdef int _encode(WriteBuffer buf, object value, PathNode* path, int depth) except -1:
    # Exact types first (one pointer compare each), bool before int; then the
    # subclasses, tested with type flags, never with isinstance (which could
    # call a user's __class__ property).
    cdef PyTypeObject* t = Py_TYPE(value)
    if value is None:
        return encode_null(buf, value, path, depth)
    if t is <PyTypeObject*>bool:
        return encode_bool(buf, value, path, depth)
    if t is <PyTypeObject*>int:
        return encode_int(buf, value, path, depth)
    if t is <PyTypeObject*>str:
        return encode_str(buf, value, path, depth)
    if t is <PyTypeObject*>bytes:
        return encode_bytes(buf, value, path, depth)
    if t is <PyTypeObject*>float:
        return encode_float(buf, value, path, depth)
    if t is <PyTypeObject*>list or t is <PyTypeObject*>tuple:
        return encode_list(buf, value, path, depth)
    if t is <PyTypeObject*>dict:
        return encode_dict(buf, value, path, depth)
    if t is <PyTypeObject*>Decimal:
        return encode_decimal(buf, value, path, depth)
    if PyLong_Check(value):
        return encode_int(buf, value, path, depth)
    if PyFloat_Check(value):
        return encode_float(buf, value, path, depth)
    if PyUnicode_Check(value):
        return encode_str(buf, value, path, depth)
    if PyBytes_Check(value) or PyByteArray_Check(value) or PyMemoryView_Check(value):
        return encode_bytes(buf, value, path, depth)
    if PyList_Check(value) or PyTuple_Check(value):
        return encode_list(buf, value, path, depth)
    if PyDict_Check(value):
        return encode_dict(buf, value, path, depth)
    if PyType_IsSubtype(t, <PyTypeObject*>Decimal):
        return encode_decimal(buf, value, path, depth)
    return _refuse_type(path, value)


cdef int encode_value(WriteBuffer buf, object value) except -1:
    cdef Py_ssize_t start = buf._length
    try:
        _encode(buf, value, NULL, 0)
    except BaseException:
        buf._length = start
        raise
    return 0


cdef object _decode(Reader* rd, int depth):
    cdef uint8_t tag = rd_u8(rd)
    if tag == TAG_INT:
        return decode_int(rd, depth)
    elif tag == TAG_STRING:
        return decode_str(rd, depth)
    elif tag == TAG_BYTES:
        return decode_bytes(rd, depth)
    elif tag == TAG_NULL:
        return decode_null(rd, depth)
    elif tag == TAG_BOOL:
        return decode_bool(rd, depth)
    elif tag == TAG_FLOAT:
        return decode_float(rd, depth)
    elif tag == TAG_LIST:
        return decode_list(rd, depth)
    elif tag == TAG_MAP:
        return decode_dict(rd, depth)
    elif tag == TAG_DECIMAL:
        return decode_decimal(rd, depth)
    _bad_data(rd, rd.pos - 1, f"unknown value tag 0x{tag:02x}")


cdef object decode_value(Reader* rd):
    return _decode(rd, 0)


cdef Py_ssize_t skip_value(Reader* rd) except -1:
    # Iterative: pending[d] counts the values still to come in the open
    # container at depth d (depth 0 is the top level, one value), and
    # in_map[d] says whether each of them is preceded by a key.
    cdef uint32_t pending[MAX_NESTING_DEPTH + 1]
    cdef bint in_map[MAX_NESTING_DEPTH + 1]
    cdef int depth = 0
    cdef Py_ssize_t start = rd.pos
    cdef Py_ssize_t n
    cdef uint32_t count
    cdef uint8_t tag
    pending[0] = 1
    in_map[0] = False
    while True:
        pending[depth] -= 1
        if in_map[depth]:
            _read_utf8(rd, &n, True)
        tag = rd_u8(rd)
        if tag == TAG_INT or tag == TAG_FLOAT:
            rd_raw(rd, 8)
        elif tag == TAG_STRING:
            _read_utf8(rd, &n, False)
        elif tag == TAG_BYTES:
            rd_raw(rd, rd_u32(rd))
        elif tag == TAG_NULL:
            pass
        elif tag == TAG_BOOL:
            _read_bool(rd)
        elif tag == TAG_DECIMAL:
            _read_decimal_text(rd, &n)
        elif tag == TAG_LIST or tag == TAG_MAP:
            count = _read_count(rd, tag, depth)
            if count:
                depth += 1
                pending[depth] = count
                in_map[depth] = tag == TAG_MAP
                continue
        else:
            _bad_data(rd, rd.pos - 1, f"unknown value tag 0x{tag:02x}")
        while pending[depth] == 0:
            if depth == 0:
                return rd.pos - start
            depth -= 1


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------

cdef int key_ref(KeyRef* ref, const char* prefix, Py_ssize_t prefix_length, object key) except -1:
    cdef const char* data
    cdef Py_ssize_t n
    cdef Py_ssize_t total
    cdef char* joined
    ref.heap = NULL
    ref.ptr = NULL
    ref.length = 0
    if PyUnicode_Check(key):
        data = PyUnicode_AsUTF8AndSize(key, &n)
        if data is NULL:
            PyErr_Clear()
            raise InvalidKeyError("key is not encodable as UTF-8 (it holds a lone surrogate)")
    elif PyBytes_Check(key):
        data = PyBytes_AS_STRING(key)
        n = PyBytes_GET_SIZE(key)
    else:
        raise InvalidKeyError(f"key must be str or bytes, not {type(key).__name__}")
    if n == 0:
        raise InvalidKeyError("key must not be empty")
    total = prefix_length + n
    if total > MAX_KEY_BYTES:
        if prefix_length:
            raise InvalidKeyError(
                f"key is {total} bytes encoded with its {prefix_length}-byte namespace "
                f"prefix, over the limit of {MAX_KEY_BYTES}")
        raise InvalidKeyError(f"key is {total} bytes encoded, over the limit of {MAX_KEY_BYTES}")
    if prefix_length == 0:
        ref.ptr = data
        ref.length = n
        return 0
    if total <= KEY_INLINE_BYTES:
        joined = ref.inline_
    else:
        joined = <char*>malloc(<size_t>total)
        if joined is NULL:
            raise MemoryError(f"cannot allocate a {total}-byte key")
        ref.heap = joined
    memcpy(joined, prefix, <size_t>prefix_length)
    memcpy(joined + prefix_length, data, <size_t>n)
    ref.ptr = joined
    ref.length = total
    return 0


cdef void key_release(KeyRef* ref) noexcept:
    if ref.heap is not NULL:
        free(ref.heap)
        ref.heap = NULL
    ref.ptr = NULL
    ref.length = 0


cdef int encode_key(WriteBuffer buf, const char* prefix, Py_ssize_t prefix_length, object key) except -1:
    cdef KeyRef ref
    key_ref(&ref, prefix, prefix_length, key)
    try:
        buf.ensure(2 + ref.length)
        kv_store_u16(buf._buf + buf._length, <uint16_t>ref.length)
        memcpy(buf._buf + buf._length + 2, ref.ptr, <size_t>ref.length)
        buf._length += 2 + ref.length
    finally:
        key_release(&ref)
    return 0


# ---------------------------------------------------------------------------
# Batch arguments: the one rule for mget/mdel/mexists and mset, shared by the
# engine and the protocol writer (and so by every client).
# ---------------------------------------------------------------------------

cdef list key_list(object keys):
    # A list is taken as it is (the hot path: no copy). A str or bytes is one
    # key, and iterating it would silently make one key per character.
    if type(keys) is list:
        return <list>keys
    if isinstance(keys, (str, bytes, bytearray, memoryview)):
        raise InvalidArgumentError(
            f"expected a collection of keys, not a single {type(keys).__name__}")
    try:
        return list(keys)
    except TypeError:
        if not hasattr(keys, "__iter__"):
            raise InvalidArgumentError(
                f"expected a collection of keys, not {type(keys).__name__}") from None
        raise


cdef list item_list(object items):
    # dict.update's rule: an object with .items(), else an iterable of pairs.
    cdef list pairs
    cdef list result
    cdef Py_ssize_t i
    if isinstance(items, (str, bytes, bytearray, memoryview)):
        raise InvalidArgumentError(
            f"expected a mapping or (key, value) pairs, not a single {type(items).__name__}")
    if hasattr(items, "items"):
        pairs = list(items.items())
    else:
        try:
            pairs = list(items)
        except TypeError:
            if not hasattr(items, "__iter__"):
                raise InvalidArgumentError(
                    f"expected a mapping or (key, value) pairs, not {type(items).__name__}") from None
            raise
    for i in range(len(pairs)):
        pair = pairs[i]
        if type(pair) is tuple and len(<tuple>pair) == 2:
            continue
        if isinstance(pair, (str, bytes, bytearray, memoryview)) or not hasattr(pair, "__iter__"):
            raise InvalidArgumentError(
                f"expected (key, value) pairs; item {i} is {type(pair).__name__}")
        pair = tuple(pair)
        if len(<tuple>pair) != 2:
            raise InvalidArgumentError(
                f"expected (key, value) pairs; item {i} has {len(<tuple>pair)} elements")
        pairs[i] = pair
    return pairs


def batch_keys(keys):
    """Test helper: key_list(keys)."""
    return key_list(keys)


def batch_items(items):
    """Test helper: item_list(items)."""
    return item_list(items)


# ---------------------------------------------------------------------------
# Python-level helpers (tests, benchmarks, debugging); see _codec.pyi
# ---------------------------------------------------------------------------

cdef bint _get_data(object data, Py_buffer* view) except -1:
    # bytes directly, anything else through the buffer protocol; True when a
    # buffer was acquired and must be released.
    if PyBytes_CheckExact(data):
        view.buf = <void*>PyBytes_AS_STRING(data)
        view.len = PyBytes_GET_SIZE(data)
        return False
    PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    return True


def encode(value):
    cdef WriteBuffer buf = WriteBuffer.new()
    encode_value(buf, value)
    return buf.to_bytes()


def decode(data):
    cdef Py_buffer view
    cdef Reader rd
    cdef bint acquired = _get_data(data, &view)
    try:
        rd_init(&rd, <const char*>view.buf, view.len)
        value = decode_value(&rd)
        if rd.pos != rd.length:
            raise ProtocolError(f"trailing bytes after the value: {rd.length - rd.pos}")
        return value
    finally:
        if acquired:
            PyBuffer_Release(&view)


def validate(data):
    cdef Py_buffer view
    cdef Reader rd
    cdef Py_ssize_t n
    cdef bint acquired = _get_data(data, &view)
    try:
        rd_init(&rd, <const char*>view.buf, view.len)
        n = skip_value(&rd)
        if rd.pos != rd.length:
            raise ProtocolError(f"trailing bytes after the value: {rd.length - rd.pos}")
        return n
    finally:
        if acquired:
            PyBuffer_Release(&view)


def key_bytes(key, bytes prefix=b""):
    cdef KeyRef ref
    key_ref(&ref, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix), key)
    try:
        return PyBytes_FromStringAndSize(ref.ptr, ref.length)
    finally:
        key_release(&ref)


def key_frame(key, bytes prefix=b""):
    cdef WriteBuffer buf = WriteBuffer.new()
    encode_key(buf, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix), key)
    return buf.to_bytes()
