# The engine: a hash table in C memory whose entries hold encoded values
# (kvstore._codec), with a hierarchical timing wheel for expiry.
#
# Core owns the table and the wheel and speaks raw bytes: keys arrive as
# (pointer, length) with any namespace prefix already applied, values arrive
# and leave in their wire encoding. The Python API (Engine, Namespace) and the
# protocol's request processor are both thin layers over it, so the engine's
# rules (TTL checks, incr overflow, CAS, batch atomicity) exist once.

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from kvstore._codec cimport WriteBuffer

include "_core/consts.pxi"
include "_core/table.pxd"
include "_core/wheel.pxd"


cdef enum StoreMode:
    STORE_ALWAYS = 0      # set / mset
    STORE_IF_ABSENT = 1   # setnx
    STORE_IF_EQUAL = 2    # cas: expected encoding must equal the stored bytes


# ttl argument (None or a positive int/float of seconds) -> milliseconds,
# 0 meaning "no expiry". Rounds up, so any positive ttl lasts at least 1 ms.
# Raises InvalidArgumentError. none_allowed=False is expire()'s rule.
cdef int64_t ttl_to_ms(object ttl, bint none_allowed) except -1

# incr/decr delta argument: an int (not bool) within signed 64 bits, else
# InvalidArgumentError.
cdef int64_t delta_arg(object delta) except? -1


@cython.final
cdef class Core:
    cdef Table table             # where new entries go
    cdef Table old_table         # the table being drained into `table` by a resize
    cdef bint migrating          # a resize is under way (old_table is live)
    cdef size_t migrate_pos      # old_table slots below this have been moved
    cdef Wheel wheel
    cdef object clock            # callable returning seconds, or None for CLOCK_MONOTONIC
    cdef int64_t now_ms          # the clock as last read, in ms (never moves back)
    cdef bint clock_fresh        # now_ms was read during the current call
    cdef bint backlog            # the wheel stopped short of now on its last step
    cdef uint64_t seed0, seed1   # SipHash key, random per Core
    cdef Slab slab               # where entries live (_core/slab.h)
    cdef size_t memory_bytes     # every byte this Core holds: slab pages, slot arrays
    cdef uint64_t hits, misses, expired, evicted_by_flush
    cdef uint32_t write_version  # bumped by every write; stamped on the entry written
    cdef object reclaimer        # background reclaim thread, or None
    cdef WriteBuffer scratch     # encode buffer reused by calls from Python
    cdef bint scratch_busy       # scratch is in use further up the stack
    # Start of every call: read the clock once and take a bounded expiry step.
    cdef int begin(self) except -1

    # Raw operations; the caller has called begin(). Keys include any prefix.
    # lookup: 1 and (*value, *value_length) pointing into the entry, or 0. The
    # pointer is valid until the next call into Core: copy before anything can
    # run Python code.
    cdef int lookup(self, const char* key, Py_ssize_t key_length,
                    const char** value, Py_ssize_t* value_length) except -1
    cdef int contains(self, const char* key, Py_ssize_t key_length) except -1
    # 1 when written, 0 when the mode's condition failed. ttl_ms 0: no expiry.
    cdef int store(self, const char* key, Py_ssize_t key_length,
                   const char* value, Py_ssize_t value_length, int64_t ttl_ms,
                   StoreMode mode, const char* expected, Py_ssize_t expected_length) except -1
    cdef int remove(self, const char* key, Py_ssize_t key_length) except -1
    # Adds delta to an int value (missing: starts at 0, no expiry) and returns
    # the result through *result. WrongTypeError / IntegerOverflowError leave
    # the value as it was.
    cdef int increment(self, const char* key, Py_ssize_t key_length, int64_t delta,
                       int64_t* result) except -1
    # The same, subtracting delta (so decr(-2**63) needs no negation).
    cdef int decrement(self, const char* key, Py_ssize_t key_length, int64_t delta,
                       int64_t* result) except -1
    # 1 when the key existed and now expires in ttl_ms (> 0), else 0.
    cdef int set_expiry(self, const char* key, Py_ssize_t key_length, int64_t ttl_ms) except -1
    # Remaining ms (>= 0); TTL_NO_EXPIRY for a persistent key, TTL_MISSING.
    cdef int64_t remaining_ms(self, const char* key, Py_ssize_t key_length) except -3
    # PERSIST: 1 when a ttl was dropped; 0 for a missing key or one without a ttl.
    cdef int persist(self, const char* key, Py_ssize_t key_length) except -1
    # GETDEL: 1 and the stored value encoding appended to out, key removed; 0
    # when missing. A MemoryError growing out leaves the key in place.
    cdef int take(self, const char* key, Py_ssize_t key_length, WriteBuffer out) except -1
    # GETSET: stores value (ttl_ms 0: no expiry); 1 and the old value's
    # encoding appended to old when there was one, else 0. Must not be given
    # a value that points into old (old may grow).
    cdef int exchange(self, const char* key, Py_ssize_t key_length, const char* value,
                      Py_ssize_t value_length, int64_t ttl_ms, WriteBuffer old) except -1
    # Compare-and-delete: 1 when the stored encoding equals expected and the key
    # was removed, else 0.
    cdef int remove_if_equal(self, const char* key, Py_ssize_t key_length, const char* expected,
                             Py_ssize_t expected_length) except -1
    # SCAN: append to out (bytes, prefix STRIPPED) the live keys that start
    # with prefix, are longer than it and match pattern (None, or a bytes glob:
    # _core/glob.h) and return the next cursor, 0 when the scan is complete.
    # Redis's reverse-binary cursor (see table.pyx, "scanning"): every key
    # present for the whole scan is returned at least once whatever resizes
    # happen in between; a scan of an unchanging table returns each key once.
    # Bounded: about count keys and at most 10 * count buckets + entries
    # looked at per call, so a sparse or filtered scan may return no keys
    # with a non-zero cursor. Any cursor value is safe (garbage in: a partial
    # scan out). UINT64_MAX is never a cursor (the error value).
    cdef uint64_t scan(self, uint64_t cursor, const char* prefix, Py_ssize_t prefix_length,
                       object pattern, Py_ssize_t count, list out) except? 0xFFFFFFFFFFFFFFFF
    # The ONE bounded housekeeping step, for up to budget_us microseconds:
    # expiry reclaim and resize migration (next: log flush, snapshot steps).
    # 1 when work is still pending (call again soon), else 0.
    cdef int tick(self, int64_t budget_us) except -1
    # Remove every key that starts with prefix (all keys for length 0); count removed.
    cdef Py_ssize_t remove_prefixed(self, const char* prefix, Py_ssize_t prefix_length) except -1
    # Live keys, optionally only those starting with prefix (O(n) with a prefix).
    cdef Py_ssize_t count(self, const char* prefix, Py_ssize_t prefix_length) except -1
    # Reclaim expired entries for up to budget_us microseconds; returns how
    # many were reclaimed, and sets *more when expired work is left.
    cdef Py_ssize_t reclaim(self, int64_t budget_us, bint* more) except -1
    cdef dict info(self)
    # Reclaim everything due now, however long it takes (len(), which must be exact).
    cdef int catch_up(self) except -1

    # The clock for this call, read on first use (an engine without ttls never reads it).
    cdef int64_t now(self) except? -1
    # Debug validator; also reachable as Engine._check().
    # (def check(self) in the .pyx)

    # Private helpers.
    cdef int64_t _read_clock_ms(self) except? -1
    cdef Entry* _find_live(self, const char* key, Py_ssize_t key_length, Table** table,
                           Py_ssize_t* index) except? NULL
    cdef int _add(self, const char* key, Py_ssize_t key_length, int64_t delta, bint subtract,
                  int64_t* result) except -1
    cdef Entry* _find(self, const char* key, Py_ssize_t key_length, Table** table,
                      Py_ssize_t* index) noexcept
    cdef void _drop(self, Table* table, Py_ssize_t index) noexcept
    cdef void _reclaim(self, Entry* e) noexcept
    cdef int _insert(self, Entry* e) except -1
    cdef int _start_resize(self, size_t capacity) except -1
    cdef void _migrate(self, Py_ssize_t slots) noexcept
    cdef int _rebuild(self, Entry* homeless) except -1
    cdef void _maybe_shrink(self) noexcept
    cdef void _free_all(self) noexcept
    cdef WriteBuffer _take_scratch(self)
    cdef void _give_back_scratch(self, WriteBuffer buf) noexcept


cdef class KeySpace:
    # The public API, shared by Engine (empty prefix) and its namespace views.
    cdef readonly Core _core
    cdef readonly bytes _prefix  # b"" or b"name:"

    # The one store path behind set/setnx/cas (expected: None or a 1-tuple).
    cdef int _store(self, object key, object value, object ttl, StoreMode mode,
                    object expected) except -1
    # The one path behind incr/decr.
    cdef int64_t _add(self, object key, object delta, bint subtract) except? -1
