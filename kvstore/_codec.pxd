# The value codec: the one place that knows value tags (docs/protocol.md,
# "Values"). The engine stores values in exactly this encoding and the
# protocol copies stored bytes to the wire, so this module is shared by
# _engine and _protocol through cimport.

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "_core/endian.h":
    # Big-endian loads and stores on unaligned memory.
    uint16_t kv_load_u16(const char* p) nogil
    uint32_t kv_load_u32(const char* p) nogil
    uint64_t kv_load_u64(const char* p) nogil
    void kv_store_u16(char* p, uint16_t v) nogil
    void kv_store_u32(char* p, uint32_t v) nogil
    void kv_store_u64(char* p, uint64_t v) nogil


cdef enum:
    TAG_NULL = 0x00
    TAG_INT = 0x01       # i64 BE
    TAG_FLOAT = 0x02     # f64 BE
    TAG_DECIMAL = 0x03   # u16 len + ASCII text as str(Decimal) gives it
    TAG_STRING = 0x04    # u32 len + UTF-8
    TAG_BYTES = 0x05     # u32 len + raw
    TAG_LIST = 0x06      # u32 count + values
    TAG_MAP = 0x07       # u32 count + (u16 key_len + UTF-8 key + value)...
    TAG_BOOL = 0x08      # u8, 0 or 1

    # Deepest list/dict nesting accepted, in both directions; deeper input is
    # refused instead of recursing without bound on the C stack.
    MAX_NESTING_DEPTH = 128

    # Encoded size of the int value that incr/decr read and write in place.
    INT_VALUE_BYTES = 9


@cython.final
cdef class WriteBuffer:
    # A growable byte buffer in C memory. Small messages stay in the inline
    # chunk; the grow path is out of line so the room check stays cheap.
    cdef char* _buf             # current storage: _inline or a malloc'd block
    cdef Py_ssize_t _size       # capacity of _buf, bytes
    cdef Py_ssize_t _length     # bytes written so far
    cdef char _inline[512]

    @staticmethod
    cdef WriteBuffer new()

    cdef int _grow(self, Py_ssize_t extra) except -1   # MemoryError leaves contents intact
    cdef inline int ensure(self, Py_ssize_t extra) except -1
    cdef int write_u8(self, uint8_t v) except -1
    cdef int write_u16(self, uint16_t v) except -1
    cdef int write_u32(self, uint32_t v) except -1
    cdef int write_u64(self, uint64_t v) except -1
    cdef int write_i64(self, int64_t v) except -1
    cdef int write_raw(self, const char* data, Py_ssize_t n) except -1
    # Frames: start_frame writes the code byte and a placeholder u32 length and
    # returns where the length sits; end_frame back-patches it with the number
    # of bytes written since.
    cdef Py_ssize_t start_frame(self, uint8_t code) except -1
    cdef int end_frame(self, Py_ssize_t length_at) except -1
    cdef void clear(self) noexcept           # keeps the capacity
    cdef void reset(self) noexcept           # drops a large block, back to inline
    cdef bytes to_bytes(self)                # copy of the contents
    # Cut the first n bytes (used once a prefix has been sent).
    cdef void consume(self, Py_ssize_t n) noexcept


ctypedef struct Reader:
    # A bounds-checked cursor over memory someone else owns; no copies until
    # a value leaves for Python.
    const char* buf
    Py_ssize_t length
    Py_ssize_t pos


# Reader helpers: each checks bounds once and raises ProtocolError (from
# kvstore.errors) on a short read.
cdef int rd_init(Reader* rd, const char* buf, Py_ssize_t length) except -1
cdef uint8_t rd_u8(Reader* rd) except? 0xFF
cdef uint16_t rd_u16(Reader* rd) except? 0xFFFF
cdef uint32_t rd_u32(Reader* rd) except? 0xFFFFFFFF
cdef uint64_t rd_u64(Reader* rd) except? 0xFFFFFFFFFFFFFFFF
cdef int64_t rd_i64(Reader* rd) except? -1
cdef const char* rd_raw(Reader* rd, Py_ssize_t n) except NULL   # pointer to n bytes, advanced past


# Append the wire encoding of a Python value. Raises UnsupportedValueError
# naming the type and where it sits (e.g. "$[3]['a']: set is not storable")
# and leaves buf's length where it was.
cdef int encode_value(WriteBuffer buf, object value) except -1

# Decode one value at rd's cursor and advance past it. Raises ProtocolError on
# malformed bytes.
cdef object decode_value(Reader* rd)

# Validate the encoded value starting at rd's cursor without creating any
# Python object, advance past it and return its length in bytes. Checks tags,
# lengths, nesting depth, bool bytes, UTF-8 of strings and map keys and the
# Decimal text alphabet. Raises ProtocolError on malformed bytes.
cdef Py_ssize_t skip_value(Reader* rd) except -1

# Keys: the one place the key rule lives. A key is str (its UTF-8 bytes) or
# bytes, 1..MAX_KEY_BYTES long including a namespace prefix.
cdef enum:
    MAX_KEY_BYTES = 65535
    KEY_INLINE_BYTES = 256

ctypedef struct KeyRef:
    # A borrowed view of a key's bytes. Without a prefix it points into the
    # str's cached UTF-8 or the bytes object (no copy); with one, prefix+key
    # are joined in inline_ or, when longer, in heap (freed by key_release).
    const char* ptr
    Py_ssize_t length
    char* heap
    char inline_[KEY_INLINE_BYTES]

# Fill ref for prefix + key; raises InvalidKeyError for a key that is not
# str/bytes, is empty, or is longer than MAX_KEY_BYTES with the prefix. The
# caller must keep key alive while ref is used and call key_release after.
cdef int key_ref(KeyRef* ref, const char* prefix, Py_ssize_t prefix_length, object key) except -1
cdef void key_release(KeyRef* ref) noexcept

# Append u16 length + prefix + key, with the same checks (clients building frames).
cdef int encode_key(WriteBuffer buf, const char* prefix, Py_ssize_t prefix_length, object key) except -1


# The batch-argument rule, shared by Engine and the protocol writer (so every
# client): key_list takes any iterable of keys EXCEPT a str, bytes, bytearray
# or memoryview itself (that is one key, not a collection: InvalidArgumentError
# "expected a collection of keys, not a single str"); a list comes back as
# the same object. item_list takes what dict.update takes: an object with
# .items(), or an iterable of (key, value) pairs (any 2-element iterable);
# it returns a list of 2-tuples. Anything else is InvalidArgumentError.
# Neither checks the keys themselves (key_ref / encode_key do).
cdef list key_list(object keys)
cdef list item_list(object items)
