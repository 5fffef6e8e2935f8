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
# -- eviction (issue 12)
include "_core/evict.pxd"
# -- end eviction


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


# The mutation point. Every change to the table reaches Core._mutated exactly
# once per operation, after the change, with what an append-only log needs to
# replay it. Keys include any prefix; deadlines are absolute ms on the Core's
# clock (the log will have to turn them into wall-clock time).
cdef enum MutationKind:
    MUT_STORE = 1        # key, value encoding, deadline_ms (0: no ttl): set/setnx/cas/getset/mset
    MUT_REMOVE = 2       # key: delete, getdel, delete_if_equal, mdel
    MUT_EXPIRE = 3       # key, the new deadline_ms
    MUT_PERSIST = 4      # key: its ttl was dropped
    MUT_INCR = 5         # key, the RESULTING int value's encoding; the ttl is unchanged
    MUT_FLUSH = 6        # key = prefix (empty: everything): flush / namespace flush, one record
    MUT_RECLAIM = 7      # key, deadline_ms: an expired entry was reclaimed (lazily or by the wheel)
    MUT_BATCH_BEGIN = 8  # the records up to MUT_BATCH_END are one batch (mset, mdel): log
    MUT_BATCH_END = 9    # them as one record, so replay is all or nothing

# What the append-only log (next issue) installs as Core.hook. Called inside
# the operation, after the change: it must not run Python code (GC, other
# threads) and cannot fail the operation; buffer and report failures itself.
ctypedef void (*MutationHook)(void* context, MutationKind kind, const char* key,
                              Py_ssize_t key_length, const char* value, Py_ssize_t value_length,
                              int64_t deadline_ms) noexcept


@cython.final
cdef class Core:
    cdef TablePair tables        # the table and, during a resize, the old one (table.pyx tp_*)
    cdef Wheel wheel
    cdef object clock            # callable returning seconds, or None for CLOCK_MONOTONIC
    cdef int64_t now_ms          # the clock as last read, in ms (never moves back)
    cdef bint clock_fresh        # now_ms was read during the current call
    cdef bint backlog            # the wheel stopped short of now on its last step
    cdef uint64_t seed0, seed1   # SipHash key, random per Core
    cdef uint64_t rng            # xorshift state for sample() (never 0)
    cdef Slab slab               # where entries live (_core/slab.h)
    cdef size_t memory_bytes     # every byte this Core holds: slab pages, slot arrays
    cdef uint64_t hits, misses, expired
    cdef uint64_t mutations      # records through _mutated ("writes" in info())
    cdef WriteBuffer scratch     # encode buffer reused by calls from Python
    cdef bint scratch_busy       # scratch is in use further up the stack
    cdef MutationHook hook       # NULL, or called by _mutated with every change
    cdef void* hook_context      # the hook's first argument
    cdef int batch_depth         # batch_begin() calls not yet ended
    cdef object observer         # test-only: callable given each record, or None
    cdef WriteBuffer observed    # records the observer has not been given yet
    cdef bint observe_failed     # the observer hook ran out of memory
    cdef bint delivering         # the observer is running (no nested delivery)
    cdef uint64_t debug_calls    # KVSTORE_DEBUG builds: calls seen, to space out checks
    # -- eviction (issue 12): limits, policy state (_core/evict.pyx)
    cdef Evictor ev
    cdef object on_evict         # callable(key, reason) or None
    cdef WriteBuffer evict_log   # (reason u8, key) per eviction not yet given to on_evict
    cdef bint delivering_evictions
    # Before a batch (mset): make room for `need` bytes and `new_keys` keys at
    # once, or raise OutOfMemoryError before any of it is written; the
    # batch's stores then are never refused. end_reserve() closes it.
    cdef int reserve(self, size_t need, Py_ssize_t new_keys) except -1
    cdef void end_reserve(self) noexcept
    # Add one batch item's growth to (*need, *new_keys), for reserve().
    cdef void batch_item(self, const char* key, Py_ssize_t key_length, Py_ssize_t value_length,
                         bint has_ttl, size_t* need, Py_ssize_t* new_keys) noexcept
    # -- end eviction
    # -- durability (issue 11)
    cdef object journal          # the Journal of Engine(path=...) (_core/journal.pyx), or None
    cdef bint writes_refused     # the log cannot be written: write calls raise PersistenceError
    # -- end durability

    # Start of every call: read the clock once and take a bounded step of
    # housekeeping (migration, expiry). Also hands the test observer what the
    # previous call recorded. KVSTORE_DEBUG builds validate here.
    cdef int begin(self) except -1
    # End of a call from Python (optional for other callers: begin() catches up):
    # hands the test observer this call's records; KVSTORE_DEBUG builds validate.
    cdef int end(self) except -1

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
    # -- issue 10: scan() whose step also stops once its keys pass max_bytes
    # (at most SCAN_STEP_MAX_BYTES, scan()'s own bound; a bucket may go over).
    cdef uint64_t scan_limited(self, uint64_t cursor, const char* prefix,
                               Py_ssize_t prefix_length, object pattern, Py_ssize_t count,
                               Py_ssize_t max_bytes, list out) except? 0xFFFFFFFFFFFFFFFF
    # The ONE bounded housekeeping step, for up to budget_us microseconds:
    # expiry reclaim and resize migration (next: log flush, snapshot steps).
    # 1 when work is still pending (call again soon), else 0.
    cdef int tick(self, int64_t budget_us) except -1
    # Remove every key that starts with prefix and is longer than it (all keys
    # for length 0); how many live ones were removed. One MUT_FLUSH record.
    cdef Py_ssize_t remove_prefixed(self, const char* prefix, Py_ssize_t prefix_length) except -1
    # -- bounded prefix flush (issue 10)
    # One step of a prefix flush that does not stall other clients: a SCAN
    # step from cursor (prefix must be non-empty) removing the live keys it
    # finds; adds them to *removed and the step's work (buckets + entries) to
    # *work; returns the next cursor, 0 once complete. Every key present under
    # the prefix for the whole run of steps is removed; keys written meanwhile
    # may survive. One MUT_REMOVE record per key.
    cdef uint64_t remove_prefixed_step(self, const char* prefix, Py_ssize_t prefix_length,
                                       uint64_t cursor, Py_ssize_t count, Py_ssize_t* removed,
                                       Py_ssize_t* work) except? 0xFFFFFFFFFFFFFFFF
    # Live keys, optionally only those starting with (and longer than) prefix
    # (O(n) with a prefix).
    cdef Py_ssize_t count(self, const char* prefix, Py_ssize_t prefix_length) except -1
    # Reclaim expired entries (and step a resize) for up to budget_us
    # microseconds; returns how many were reclaimed, and sets *more when work is left.
    cdef Py_ssize_t reclaim(self, int64_t budget_us, bint* more) except -1
    # Bracket the stores/removes of one batch (mset, mdel) so they make one
    # record; nests. The protocol's MSET/MDEL must call them too.
    cdef int batch_begin(self) except -1
    cdef int batch_end(self) except -1
    # Up to n distinct entries picked at random (expired ones included), for
    # eviction; how many were written to out. Valid until the next change.
    cdef Py_ssize_t sample(self, Entry** out, Py_ssize_t n) noexcept
    cdef dict info(self)
    # Reclaim everything due now, however long it takes (len(), which must be exact).
    cdef int catch_up(self) except -1

    # The clock for this call, read on first use (an engine without ttls never reads it).
    cdef int64_t now(self) except? -1
    # Debug validator; also reachable as Engine._check().
    # (def check(self) in the .pyx)

    # Private helpers.
    cdef int64_t _read_clock_ms(self) except? -1
    # The one mutation point: counts the change and calls the hook.
    cdef void _mutated(self, MutationKind kind, const char* key, Py_ssize_t key_length,
                       const char* value, Py_ssize_t value_length, int64_t deadline_ms) noexcept
    cdef int _deliver(self) except -1
    cdef int _debug_check(self) except -1
    cdef Entry* _find(self, const char* key, Py_ssize_t key_length, SlotRef* ref) noexcept
    cdef Entry* _find_live(self, const char* key, Py_ssize_t key_length,
                           SlotRef* ref) except? NULL
    cdef int _put(self, const char* key, Py_ssize_t key_length, const char* value,
                  Py_ssize_t value_length, bint has_ttl, int64_t deadline_ms,
                  Entry* old, SlotRef* ref) except -1
    cdef int _add(self, const char* key, Py_ssize_t key_length, int64_t delta, bint subtract,
                  int64_t* result) except -1
    cdef void _dispose(self, Entry* e) noexcept
    cdef void _drop(self, SlotRef* ref) noexcept
    cdef void _dispose_orphan(self) noexcept
    cdef void _reclaim(self, Entry* e) noexcept
    cdef void _after_delete(self) noexcept
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


# -- durability (issue 11): the append-only log and snapshots
include "_core/journal.pxd"

# Raises the PersistenceError that keeps write calls out while the log cannot be written.
cdef int refuse_writes(Core core) except -1
# -- end durability
