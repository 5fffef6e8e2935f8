# The engine: Core (table + wheel, raw bytes) and the Python API over it.
#
# Core is the only owner of engine state; every rule about keys in the table,
# TTLs, incr overflow, CAS and batch atomicity is written here once. Engine
# and its namespace views (KeySpace subclasses) turn Python arguments into
# bytes with kvstore._codec and hand off; the protocol processor calls Core
# directly with bytes from the wire.
#
# Atomicity: every public call does its Python work (encoding values, reading
# an injected clock, building keys) before it touches the table, and none
# after, so no Python code - and so no other thread - ever runs in the middle
# of a table operation. Decoding a stored list or dict allocates containers,
# which can run the garbage collector and arbitrary finalizers; such values
# are copied out of the entry before decoding.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.math cimport ceil, isfinite, llround
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memmove

from kvstore._codec cimport (
    INT_VALUE_BYTES, MAX_KEY_BYTES, TAG_INT, TAG_LIST, TAG_MAP,
    KeyRef, Reader, WriteBuffer,
    decode_value, encode_value, item_list, key_list, key_ref, key_release, kv_load_u16,
    kv_load_u64, kv_store_u64, rd_i64, rd_init, rd_raw, rd_u8, rd_u32,
)

import collections.abc as _abc
import os as _os
import threading as _threading
import weakref as _weakref

from kvstore.errors import (
    IntegerOverflowError, InvalidArgumentError, InvalidKeyError, ValueTooLargeError,
    WrongTypeError,
)
# -- eviction (issue 12)
from kvstore.errors import OutOfMemoryError
# -- end eviction
# -- durability (issue 11)
from kvstore._codec cimport kv_load_u32, kv_store_u32, rd_u64
from kvstore.errors import PersistenceError as _PersistenceError
# -- end durability

include "_core/table.pyx"
include "_core/wheel.pyx"
# -- eviction (issue 12)
include "_core/evict.pyx"
# -- end eviction
# -- durability (issue 11)
include "_core/journal.pyx"
# -- end durability


# ---------------------------------------------------------------- arguments

cdef int64_t ttl_to_ms(object ttl, bint none_allowed) except -1:
    cdef double seconds
    cdef int64_t ms
    if ttl is None:
        if none_allowed:
            return 0
        raise InvalidArgumentError("ttl is required: a positive number of seconds")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise InvalidArgumentError(
            f"ttl must be a positive number of seconds, not {type(ttl).__name__}")
    if isinstance(ttl, int):
        if ttl <= 0 or ttl > MAX_TTL_MS // 1000:
            raise InvalidArgumentError(
                f"ttl must be > 0 and at most {MAX_TTL_MS // 1000} seconds, got {ttl}")
        return <int64_t>ttl * 1000
    seconds = ttl
    if not isfinite(seconds) or seconds <= 0.0 or seconds * 1000.0 > <double>MAX_TTL_MS:
        raise InvalidArgumentError(
            f"ttl must be > 0 and at most {MAX_TTL_MS // 1000} seconds, got {ttl!r}")
    # Round up: any positive ttl keeps the key for at least a millisecond.
    ms = <int64_t>ceil(seconds * 1000.0 - 1e-6)
    return ms if ms > 0 else 1


cdef int64_t delta_arg(object delta) except? -1:
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise InvalidArgumentError(f"delta must be an int, not {type(delta).__name__}")
    if not (INT64_MIN <= delta <= INT64_MAX):
        raise InvalidArgumentError(f"delta {delta} is outside signed 64 bits")
    return delta


# --------------------------------------------------------------------- Core

@cython.final
cdef class Core:
    """Engine state: the table pair, the wheel, the clock and the counters."""

    def __cinit__(self, clock=None):
        seed = _os.urandom(16)
        self.seed0 = int.from_bytes(seed[:8], "little")
        self.seed1 = int.from_bytes(seed[8:], "little")
        self.rng = self.seed0 | 1
        self.clock = clock
        self.memory_bytes = 0
        slab_init(&self.slab, &self.memory_bytes)
        if tp_init(&self.tables, &self.memory_bytes) < 0:
            raise MemoryError()
        self.now_ms = self._read_clock_ms()
        self.clock_fresh = False
        whl_reset(&self.wheel, self.now_ms)
        self.scratch = WriteBuffer.new()
        self.scratch_busy = False
        self.backlog = False
        self.hook = NULL
        self.hook_context = NULL
        self.batch_depth = 0
        self.debug_calls = 0
        # -- eviction (issue 12): no limit until configured (ev is zeroed)
        self.ev.samples = EVICT_DEFAULT_SAMPLES
        # -- end eviction

    def __dealloc__(self):
        self._free_all()
        tp_release(&self.tables)
        ev_release(self)     # -- eviction (issue 12)

    # ----------------------------------------------------------- the clock

    cdef int64_t _read_clock_ms(self) except? -1:
        cdef double seconds
        if self.clock is None:
            return kv_monotonic_us() // 1000
        seconds = self.clock()
        # Through microseconds, so 1000.999 s is 1000999 ms and not ...998.
        return llround(seconds * 1e6) // 1000

    cdef int64_t now(self) except? -1:
        """The clock, read at most once per call (begin() resets it)."""
        cdef int64_t t
        if not self.clock_fresh:
            t = self._read_clock_ms()
            # A clock that steps back never un-expires anything.
            if t > self.now_ms:
                self.now_ms = t
            self.clock_fresh = True
        return self.now_ms

    cdef int begin(self) except -1:
        cdef Py_ssize_t budget = STEP_ENTRIES_PER_CALL
        if self.observer is not None:
            self._deliver()
        # -- eviction (issue 12): the previous call's evictions, before this one
        if self.evict_log is not None and self.evict_log._length:
            ev_deliver(self)
        # -- end eviction
        if KVSTORE_DEBUG:
            self._debug_check()
        self.clock_fresh = False
        if self.clock is not None:
            # An injected clock is Python code: run it now, never in the middle
            # of a table operation (it could switch threads).
            self.now()
        if self.tables.migrating:
            tp_step(&self.tables, MIGRATE_SLOTS_PER_CALL)
            self._dispose_orphan()
        # An engine without ttls never needs the time.
        if self.wheel.count != 0:
            self.backlog = not whl_advance(self, self.now(), &budget)
        return 0

    cdef int end(self) except -1:
        if self.observer is not None:
            self._deliver()
        # -- eviction (issue 12): on_evict after the call that evicted
        if self.evict_log is not None and self.evict_log._length:
            ev_deliver(self)
        # -- end eviction
        # -- durability (issue 11): the embedded engine's commit point
        if self.journal is not None:
            (<Journal>self.journal).after_call()
        # -- end durability
        if KVSTORE_DEBUG:
            self._debug_check()
        return 0

    # ----------------------------------------------------------- the mutation point

    cdef inline void _mutated(self, MutationKind kind, const char* key, Py_ssize_t key_length,
                              const char* value, Py_ssize_t value_length,
                              int64_t deadline_ms) noexcept:
        self.mutations += 1
        if self.hook != NULL:
            self.hook(self.hook_context, kind, key, key_length, value, value_length, deadline_ms)

    cdef int batch_begin(self) except -1:
        self.batch_depth += 1
        if self.batch_depth == 1:
            self._mutated(MUT_BATCH_BEGIN, NULL, 0, NULL, 0, 0)
        return 0

    cdef int batch_end(self) except -1:
        self.batch_depth -= 1
        if self.batch_depth == 0:
            self._mutated(MUT_BATCH_END, NULL, 0, NULL, 0, 0)
        return 0

    cdef int _deliver(self) except -1:
        """Hand the test observer the records of finished calls, as tuples."""
        cdef WriteBuffer records = self.observed
        cdef Reader rd
        cdef list batch = None
        cdef list out = []
        cdef uint8_t kind
        cdef bytes key, value
        cdef int64_t deadline
        cdef Py_ssize_t n
        if records is None or records._length == 0 or self.delivering:
            return 0
        self.observed = WriteBuffer.new()
        if self.observe_failed:
            self.observe_failed = False
            raise MemoryError("the mutation observer lost records")
        rd_init(&rd, records._buf, records._length)
        while rd.pos < rd.length:
            kind = rd_u8(&rd)
            n = rd_u32(&rd)
            key = rd_raw(&rd, n)[:n]
            n = rd_u32(&rd)
            value = rd_raw(&rd, n)[:n]
            deadline = rd_i64(&rd)
            if kind == MUT_BATCH_BEGIN:
                batch = []
                continue
            if kind == MUT_BATCH_END:
                if batch:
                    out.append(("batch", tuple(batch)))
                batch = None
                continue
            record = _mutation_record(kind, key, value, deadline)
            (batch if batch is not None else out).append(record)
        if batch:
            # A batch still open (the observer was installed mid-batch or a
            # call failed half-way): hand over what it holds.
            out.append(("batch", tuple(batch)))
        self.delivering = True
        try:
            for record in out:
                self.observer(record)
        finally:
            self.delivering = False
        return 0

    cdef int _debug_check(self) except -1:
        # KVSTORE_DEBUG builds: every call validates what the last one left.
        # Full O(n) checks on every call would make big tests quadratic, so
        # above DEBUG_CHECK_ENTRIES entries only every n/DEBUG_CHECK_ENTRIES-th
        # call checks.
        cdef size_t n = tp_count(&self.tables)
        self.debug_calls += 1
        if n > DEBUG_CHECK_ENTRIES and self.debug_calls % (n // DEBUG_CHECK_ENTRIES + 1) != 0:
            return 0
        self.check()
        return 0

    # ----------------------------------------------------------- lookups

    cdef inline Entry* _find(self, const char* key, Py_ssize_t key_length, SlotRef* ref) noexcept:
        cdef uint32_t hash = <uint32_t>kv_siphash13(self.seed0, self.seed1, key, key_length)
        return tp_find(&self.tables, hash, key, key_length, ref)

    cdef inline Entry* _find_live(self, const char* key, Py_ssize_t key_length,
                                  SlotRef* ref) except? NULL:
        """_find, reclaiming the entry instead when it has expired."""
        cdef Entry* e = self._find(key, key_length, ref)
        if e != NULL and (e.flags & ENTRY_HAS_TTL) and entry_ttl(e).deadline_ms <= self.now():
            self._mutated(MUT_RECLAIM, key, key_length, NULL, 0, entry_ttl(e).deadline_ms)
            self._drop(ref)
            self.expired += 1
            return NULL
        # -- eviction (issue 12): recency / frequency in the entry's spare bytes
        if e != NULL and self.ev.active:
            ev_touch(&self.ev, e, &self.rng)
        # -- end eviction
        return e

    cdef int lookup(self, const char* key, Py_ssize_t key_length,
                    const char** value, Py_ssize_t* value_length) except -1:
        cdef SlotRef ref
        cdef Entry* e = self._find_live(key, key_length, &ref)
        if e == NULL:
            self.misses += 1
            return 0
        self.hits += 1
        value[0] = entry_value(e)
        value_length[0] = e.value_length
        return 1

    cdef int contains(self, const char* key, Py_ssize_t key_length) except -1:
        cdef SlotRef ref
        return self._find_live(key, key_length, &ref) != NULL

    cdef int64_t remaining_ms(self, const char* key, Py_ssize_t key_length) except -3:
        cdef SlotRef ref
        cdef Entry* e = self._find_live(key, key_length, &ref)
        if e == NULL:
            return TTL_MISSING
        if not (e.flags & ENTRY_HAS_TTL):
            return TTL_NO_EXPIRY
        return entry_ttl(e).deadline_ms - self.now()

    # ----------------------------------------------------------- writes

    cdef int _put(self, const char* key, Py_ssize_t key_length, const char* value,
                  Py_ssize_t value_length, bint has_ttl, int64_t deadline_ms,
                  Entry* old, SlotRef* ref) except -1:
        """Write value (and the ttl) over old at ref, or as a new entry when old
        is NULL. No mutation record: the caller makes the one for its op."""
        cdef Entry* e
        if old != NULL and old.value_length == value_length and (
                (old.flags & ENTRY_HAS_TTL) != 0) == has_ttl:
            # Same shape: overwrite in place, no allocator round trip.
            memmove(entry_value(old), value, value_length)
            if has_ttl:
                whl_unlink(&self.wheel, old)
                entry_ttl(old).deadline_ms = deadline_ms
                whl_link(&self.wheel, old)
            return 0
        e = entry_new(&self.slab, 0, key, key_length, value, value_length, has_ttl)
        if e == NULL or not pointer_fits_slot(e):
            entry_free(&self.slab, e)
            raise MemoryError()
        self.ev.entry_bytes += ev_charge(e)     # -- eviction (issue 12)
        if has_ttl:
            entry_ttl(e).deadline_ms = deadline_ms
            whl_link(&self.wheel, e)
        if old != NULL:
            # Same key, same hash: the new entry takes the old one's slot word
            # (entry_new copied value first, so it may point into old).
            tp_replace(ref, e)
            ev_replaced(self, old, e)           # -- eviction (issue 12)
            if old.flags & ENTRY_HAS_TTL:
                whl_unlink(&self.wheel, old)
            entry_free(&self.slab, old)
            return 0
        e.hash = <uint32_t>kv_siphash13(self.seed0, self.seed1, key, key_length)
        if tp_insert(&self.tables, e) < 0:
            self._dispose(e)
            self._dispose_orphan()
            raise MemoryError()
        ev_inserted(self, e)                    # -- eviction (issue 12)
        self._dispose_orphan()
        return 0

    cdef int store(self, const char* key, Py_ssize_t key_length,
                   const char* value, Py_ssize_t value_length, int64_t ttl_ms,
                   StoreMode mode, const char* expected, Py_ssize_t expected_length) except -1:
        cdef SlotRef ref
        cdef Entry* old
        cdef int64_t deadline = 0
        if value_length > MAX_VALUE_BYTES:
            raise ValueTooLargeError(
                f"encoded value is {value_length} bytes, the limit is {MAX_VALUE_BYTES}")
        old = self._find_live(key, key_length, &ref)
        if mode == STORE_IF_ABSENT and old != NULL:
            return 0
        if mode == STORE_IF_EQUAL and (
                old == NULL or old.value_length != expected_length
                or memcmp(entry_value(old), expected, expected_length) != 0):
            return 0
        if ttl_ms > 0:
            deadline = self.now() + ttl_ms
        # -- eviction (issue 12): room first, or OutOfMemoryError with nothing written
        if self.ev.active:
            if ev_write_room(self, key_length, value_length, ttl_ms > 0, old) and old != NULL:
                old = self._find(key, key_length, &ref)
        # -- end eviction
        self._put(key, key_length, value, value_length, ttl_ms > 0, deadline, old, &ref)
        self._mutated(MUT_STORE, key, key_length, value, value_length, deadline)
        return 1

    cdef int remove(self, const char* key, Py_ssize_t key_length) except -1:
        cdef SlotRef ref
        if self._find_live(key, key_length, &ref) == NULL:
            return 0
        self._mutated(MUT_REMOVE, key, key_length, NULL, 0, 0)
        self._drop(&ref)
        self._after_delete()
        return 1

    cdef int increment(self, const char* key, Py_ssize_t key_length, int64_t delta,
                       int64_t* result) except -1:
        return self._add(key, key_length, delta, False, result)

    cdef int decrement(self, const char* key, Py_ssize_t key_length, int64_t delta,
                       int64_t* result) except -1:
        return self._add(key, key_length, delta, True, result)

    cdef int _add(self, const char* key, Py_ssize_t key_length, int64_t delta, bint subtract,
                  int64_t* result) except -1:
        cdef SlotRef ref
        cdef Entry* e = self._find_live(key, key_length, &ref)
        cdef char encoded[INT_VALUE_BYTES]
        cdef char* value
        cdef int64_t current = 0
        cdef bint overflow
        if e != NULL:
            value = entry_value(e)
            if e.value_length != INT_VALUE_BYTES or <unsigned char>value[0] != TAG_INT:
                raise WrongTypeError("incr/decr needs an int value; the key holds another type")
            current = <int64_t>kv_load_u64(value + 1)
        if subtract:
            overflow = kv_sub_overflow(current, delta, result)
        else:
            overflow = kv_add_overflow(current, delta, result)
        if overflow:
            raise IntegerOverflowError(
                f"{current} {'-' if subtract else '+'} {delta} leaves signed 64 bits")
        if e != NULL:
            # In place: the ttl and the entry's place in the wheel stay as they are.
            kv_store_u64(value + 1, <uint64_t>result[0])
            self._mutated(MUT_INCR, key, key_length, value, INT_VALUE_BYTES, 0)
            return 0
        encoded[0] = <char>TAG_INT
        kv_store_u64(encoded + 1, <uint64_t>result[0])
        if self.ev.active:      # -- eviction (issue 12)
            ev_write_room(self, key_length, INT_VALUE_BYTES, False, NULL)
        self._put(key, key_length, encoded, INT_VALUE_BYTES, False, 0, NULL, &ref)
        self._mutated(MUT_INCR, key, key_length, encoded, INT_VALUE_BYTES, 0)
        return 0

    cdef int set_expiry(self, const char* key, Py_ssize_t key_length, int64_t ttl_ms) except -1:
        cdef SlotRef ref
        cdef Entry* e = self._find_live(key, key_length, &ref)
        cdef int64_t deadline
        if e == NULL:
            return 0
        deadline = self.now() + ttl_ms
        if e.flags & ENTRY_HAS_TTL:
            whl_unlink(&self.wheel, e)
            entry_ttl(e).deadline_ms = deadline
            whl_link(&self.wheel, e)
        else:
            # Entries without a ttl carry no TtlBlock: rewrite the entry with one.
            self._put(key, key_length, entry_value(e), e.value_length, True, deadline, e, &ref)
        self._mutated(MUT_EXPIRE, key, key_length, NULL, 0, deadline)
        return 1

    cdef int persist(self, const char* key, Py_ssize_t key_length) except -1:
        cdef SlotRef ref
        cdef Entry* e = self._find_live(key, key_length, &ref)
        if e == NULL or not (e.flags & ENTRY_HAS_TTL):
            return 0
        # The TtlBlock is part of the entry: rewrite the entry without one.
        self._put(key, key_length, entry_value(e), e.value_length, False, 0, e, &ref)
        self._mutated(MUT_PERSIST, key, key_length, NULL, 0, 0)
        return 1

    cdef int take(self, const char* key, Py_ssize_t key_length, WriteBuffer out) except -1:
        cdef SlotRef ref
        cdef Entry* e = self._find_live(key, key_length, &ref)
        if e == NULL:
            self.misses += 1
            return 0
        self.hits += 1
        # Copy first: a MemoryError here leaves the key in place.
        out.write_raw(entry_value(e), e.value_length)
        self._mutated(MUT_REMOVE, key, key_length, NULL, 0, 0)
        self._drop(&ref)
        self._after_delete()
        return 1

    cdef int exchange(self, const char* key, Py_ssize_t key_length, const char* value,
                      Py_ssize_t value_length, int64_t ttl_ms, WriteBuffer old) except -1:
        cdef SlotRef ref
        cdef Entry* e
        cdef Py_ssize_t old_length = old._length
        cdef int64_t deadline = 0
        if value_length > MAX_VALUE_BYTES:
            raise ValueTooLargeError(
                f"encoded value is {value_length} bytes, the limit is {MAX_VALUE_BYTES}")
        e = self._find_live(key, key_length, &ref)
        # -- eviction (issue 12): room first, or OutOfMemoryError with nothing written
        if self.ev.active:
            if ev_write_room(self, key_length, value_length, ttl_ms > 0, e) and e != NULL:
                e = self._find(key, key_length, &ref)
        # -- end eviction
        if e != NULL:
            old.write_raw(entry_value(e), e.value_length)
        if ttl_ms > 0:
            deadline = self.now() + ttl_ms
        try:
            self._put(key, key_length, value, value_length, ttl_ms > 0, deadline, e, &ref)
        except MemoryError:
            old._length = old_length
            raise
        self._mutated(MUT_STORE, key, key_length, value, value_length, deadline)
        return e != NULL

    cdef int remove_if_equal(self, const char* key, Py_ssize_t key_length, const char* expected,
                             Py_ssize_t expected_length) except -1:
        cdef SlotRef ref
        cdef Entry* e = self._find_live(key, key_length, &ref)
        if (e == NULL or e.value_length != expected_length
                or memcmp(entry_value(e), expected, expected_length) != 0):
            return 0
        self._mutated(MUT_REMOVE, key, key_length, NULL, 0, 0)
        self._drop(&ref)
        self._after_delete()
        return 1

    # ----------------------------------------------------------- removal

    cdef void _dispose(self, Entry* e) noexcept:
        """Free an entry that is in no table."""
        ev_forget(self, e)                      # -- eviction (issue 12)
        if e.flags & ENTRY_HAS_TTL:
            whl_unlink(&self.wheel, e)
        entry_free(&self.slab, e)

    cdef void _drop(self, SlotRef* ref) noexcept:
        cdef Entry* e = slot_entry(ref.table.slots[ref.index])
        tp_delete(ref)
        self._dispose(e)

    cdef void _dispose_orphan(self) noexcept:
        # Only after an emergency rebuild ran out of memory: that key is lost.
        cdef Entry* e = self.tables.orphan
        if e != NULL:
            self.tables.orphan = NULL
            self._mutated(MUT_REMOVE, entry_key(e), e.key_length, NULL, 0, 0)
            self._dispose(e)

    cdef void _reclaim(self, Entry* e) noexcept:
        """Remove an entry the wheel found due."""
        cdef SlotRef ref
        if not tp_find_entry(&self.tables, e, &ref):
            # Not in the table: the structures disagree. Unlink so the wheel
            # cannot loop on it; check() reports such corruption.
            whl_unlink(&self.wheel, e)
            return
        self._mutated(MUT_RECLAIM, entry_key(e), e.key_length, NULL, 0, entry_ttl(e).deadline_ms)
        self._drop(&ref)
        self.expired += 1
        self._after_delete()

    cdef void _after_delete(self) noexcept:
        if tp_count(&self.tables) == 0:
            # Empty: drop straight to the minimal table and no slab pages, so
            # memory_bytes returns exactly to an empty engine's.
            if self.tables.migrating or self.tables.table.mask + 1 != TABLE_MIN_CAPACITY:
                self._free_all()
            else:
                slab_release_spares(&self.slab)
            return
        tp_maybe_shrink(&self.tables)

    cdef Py_ssize_t remove_prefixed(self, const char* prefix, Py_ssize_t prefix_length) except -1:
        cdef Py_ssize_t removed = 0
        cdef PairIter it
        cdef Entry* e
        cdef int64_t now
        if prefix_length == 0:
            removed = self.count(NULL, 0)
            self._free_all()
            self._mutated(MUT_FLUSH, NULL, 0, NULL, 0, 0)
            return removed
        now = self.now()
        tp_iter_init(&it)
        e = tp_iter_next(&self.tables, &it)
        while e != NULL:
            if e.key_length > prefix_length and memcmp(entry_key(e), prefix, prefix_length) == 0:
                if entry_expired(e, now):
                    self.expired += 1
                else:
                    removed += 1
                tp_iter_delete(&it)
                self._dispose(e)
            e = tp_iter_next(&self.tables, &it)
        # One record for the whole namespace (the entries need no records).
        self._mutated(MUT_FLUSH, prefix, prefix_length, NULL, 0, 0)
        self._after_delete()
        return removed

    # -- bounded prefix flush (issue 10) -----------------------------------
    cdef uint64_t remove_prefixed_step(self, const char* prefix, Py_ssize_t prefix_length,
                                       uint64_t cursor, Py_ssize_t count, Py_ssize_t* removed,
                                       Py_ssize_t* work) except? 0xFFFFFFFFFFFFFFFF:
        # One SCAN step (same cursor and guarantees) that removes what it finds,
        # so a server can flush a namespace in bounded steps between other
        # clients' requests instead of walking the table in one go. Each key
        # gets its own MUT_REMOVE record: keys written under the prefix while
        # the steps run may survive, so a MUT_FLUSH record would replay wrong.
        cdef ScanFilter f
        cdef WriteBuffer found = WriteBuffer.new()
        cdef WriteBuffer key = WriteBuffer.new()
        cdef uint64_t v
        cdef Py_ssize_t at = 0
        cdef Py_ssize_t length
        if count < 1:
            count = 1
        sf_init(&f, prefix, prefix_length, NULL, 0, self.now(), SCAN_STEP_MAX_BYTES)
        # Collected first, removed after: removing while walking a bucket
        # would shift the slots under the walk.
        v = tp_scan(&self.tables, cursor, &f, count, found)
        while at < found._length:
            length = kv_load_u16(found._buf + at)
            key.clear()
            key.write_raw(prefix, prefix_length)
            key.write_raw(found._buf + at + 2, length)
            removed[0] += self.remove(key._buf, key._length)
            at += 2 + length
        work[0] += f.work + f.found
        return v

    cdef void _free_all(self) noexcept:
        """Free every entry and go back to an empty minimal table."""
        cdef PairIter it
        cdef Entry* e
        if tp_count(&self.tables) != 0:
            tp_iter_init(&it)
            e = tp_iter_next(&self.tables, &it)
            while e != NULL:
                entry_free(&self.slab, e)
                e = tp_iter_next(&self.tables, &it)
        slab_release_spares(&self.slab)
        tp_reset(&self.tables)
        whl_reset(&self.wheel, self.wheel.cursor_ms)
        ev_reset(&self.ev)                      # -- eviction (issue 12)

    # ----------------------------------------------------------- scanning, sampling

    cdef uint64_t scan(self, uint64_t cursor, const char* prefix, Py_ssize_t prefix_length,
                       object pattern, Py_ssize_t count, list out) except? 0xFFFFFFFFFFFFFFFF:
        return self.scan_limited(cursor, prefix, prefix_length, pattern, count,
                                 SCAN_STEP_MAX_BYTES, out)

    # -- issue 10: a step's keys bounded in bytes as well (a server's reply limit)
    cdef uint64_t scan_limited(self, uint64_t cursor, const char* prefix,
                               Py_ssize_t prefix_length, object pattern, Py_ssize_t count,
                               Py_ssize_t max_bytes, list out) except? 0xFFFFFFFFFFFFFFFF:
        cdef ScanFilter f
        cdef WriteBuffer found = WriteBuffer.new()
        cdef uint64_t v
        cdef Py_ssize_t at, length
        if count < 1:
            count = 1
        elif count > SCAN_MAX_COUNT:
            count = SCAN_MAX_COUNT
        sf_init(&f, prefix, prefix_length,
                NULL if pattern is None else PyBytes_AS_STRING(pattern),
                0 if pattern is None else PyBytes_GET_SIZE(pattern), self.now(),
                max_bytes if max_bytes < SCAN_STEP_MAX_BYTES else SCAN_STEP_MAX_BYTES)
        # Collect into C memory first, build bytes after: creating Python
        # objects can run the GC (and finalizers) in the middle of the walk.
        v = tp_scan(&self.tables, cursor, &f, count, found)
        at = 0
        while at < found._length:
            length = kv_load_u16(found._buf + at)
            out.append(found._buf[at + 2:at + 2 + length])
            at += 2 + length
        return v

    cdef Py_ssize_t sample(self, Entry** out, Py_ssize_t n) noexcept:
        return tp_sample(&self.tables, out, n, &self.rng)

    # ----------------------------------------------------------- expiry

    cdef int catch_up(self) except -1:
        cdef Py_ssize_t budget = <Py_ssize_t>1 << 62
        self.clock_fresh = False
        if self.wheel.count != 0:
            whl_advance(self, self.now(), &budget)
        self.backlog = False
        return 0

    cdef Py_ssize_t reclaim(self, int64_t budget_us, bint* more) except -1:
        cdef int64_t started = kv_monotonic_us()
        cdef uint64_t expired_before = self.expired
        cdef Py_ssize_t budget
        cdef bint done = False
        self.clock_fresh = False
        while True:
            if self.tables.migrating:
                tp_step(&self.tables, PURGE_CHUNK_ENTRIES * 4)
                self._dispose_orphan()
            budget = PURGE_CHUNK_ENTRIES
            done = self.wheel.count == 0 or whl_advance(self, self.now(), &budget)
            if (done and not self.tables.migrating) or kv_monotonic_us() - started >= budget_us:
                break
        self.backlog = not done
        more[0] = self.backlog or self.tables.migrating
        return <Py_ssize_t>(self.expired - expired_before)

    cdef int tick(self, int64_t budget_us) except -1:
        cdef bint more
        cdef int64_t started = kv_monotonic_us()    # -- eviction (issue 12)
        self.reclaim(budget_us, &more)
        # -- eviction (issue 12): down to lowered limits, in bounded steps
        if ev_step(self, started, budget_us):
            more = True
        # -- end eviction
        # -- durability (issue 11): snapshot steps and triggers
        if self.journal is not None and (<Journal>self.journal).tick(budget_us):
            more = True
        # -- end durability
        return 1 if more else 0

    # ----------------------------------------------------------- counting

    cdef Py_ssize_t count(self, const char* prefix, Py_ssize_t prefix_length) except -1:
        cdef Py_ssize_t live = 0
        cdef PairIter it
        cdef Entry* e
        cdef int64_t now
        if prefix_length == 0:
            self.catch_up()
            return <Py_ssize_t>tp_count(&self.tables)
        now = self.now()
        tp_iter_init(&it)
        e = tp_iter_next(&self.tables, &it)
        while e != NULL:
            if (e.key_length > prefix_length
                    and memcmp(entry_key(e), prefix, prefix_length) == 0
                    and not entry_expired(e, now)):
                live += 1
            e = tp_iter_next(&self.tables, &it)
        return live

    cdef dict info(self):
        # Bounded like every call: "keys" counts the entries held, expired ones
        # not yet reclaimed included (as Redis's INFO keyspace does); len() is
        # the exact live count.
        cdef size_t keys = tp_count(&self.tables)
        cdef size_t capacity = self.tables.table.mask + 1
        cdef dict result = {
            "keys": keys,
            "expiry_backlog": bool(self.backlog),
            "memory_bytes": self.memory_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "expired": self.expired,
            "keys_with_ttl": self.wheel.count,
            "capacity": capacity,
            "load_factor": keys / <double>capacity,
            "resizing": bool(self.tables.migrating),
            "writes": self.mutations,
        }
        # -- eviction (issue 12)
        result.update(ev_info(self))
        # -- end eviction
        return result

    # -- eviction (issue 12) ---------------------------------------------

    cdef int reserve(self, size_t need, Py_ssize_t new_keys) except -1:
        if self.ev.active:
            ev_make_room(self, need, new_keys, NULL, True)
            self.ev.batch = True
        return 0

    cdef void end_reserve(self) noexcept:
        self.ev.batch = False

    cdef void batch_item(self, const char* key, Py_ssize_t key_length, Py_ssize_t value_length,
                         bint has_ttl, size_t* need, Py_ssize_t* new_keys) noexcept:
        ev_batch_item(self, key, key_length, value_length, has_ttl, need, new_keys)

    # -- end eviction

    # ----------------------------------------------------------- scratch

    cdef WriteBuffer _take_scratch(self):
        # A value's __str__ (Decimal subclasses) can re-enter the engine while
        # the scratch buffer is in use: such a call gets a buffer of its own.
        if self.scratch_busy:
            return WriteBuffer.new()
        self.scratch_busy = True
        self.scratch.clear()
        return self.scratch

    cdef void _give_back_scratch(self, WriteBuffer buf) noexcept:
        if buf is self.scratch:
            self.scratch_busy = False
            if buf._size > 65536:
                buf.reset()

    # ----------------------------------------------------------- debugging

    def check(self):
        """Verify every structural invariant of the table pair and the wheel;
        raise AssertionError naming the first one broken. O(n): for tests."""
        cdef size_t with_ttl = 0
        cdef Py_ssize_t entries = tp_check(&self.tables, self.seed0, self.seed1, &with_ttl)
        whl_check(&self.wheel, &self.tables, with_ttl)
        return entries


cdef void observe_hook(void* context, MutationKind kind, const char* key, Py_ssize_t key_length,
                       const char* value, Py_ssize_t value_length, int64_t deadline_ms) noexcept:
    """The test observer's hook: append the record to Core.observed (C memory
    only: no Python code runs inside the operation); delivered by end()."""
    cdef Core core = <Core>context
    cdef WriteBuffer buf = core.observed
    try:
        buf.write_u8(<uint8_t>kind)
        buf.write_u32(<uint32_t>key_length)
        buf.write_raw(key, key_length)
        buf.write_u32(<uint32_t>value_length)
        buf.write_raw(value, value_length)
        buf.write_i64(deadline_ms)
    except MemoryError:
        core.observe_failed = True


cdef object _MUTATION_NAMES = {
    MUT_STORE: "store", MUT_REMOVE: "remove", MUT_EXPIRE: "expire", MUT_PERSIST: "persist",
    MUT_INCR: "incr", MUT_FLUSH: "flush", MUT_RECLAIM: "reclaim",
}


cdef tuple _mutation_record(uint8_t kind, bytes key, bytes value, int64_t deadline):
    name = _MUTATION_NAMES[kind]
    if kind == MUT_STORE:
        return (name, key, value, deadline if deadline else None)
    if kind == MUT_INCR:
        return (name, key, value)
    if kind == MUT_EXPIRE or kind == MUT_RECLAIM:
        return (name, key, deadline)
    return (name, key)


# -- durability (issue 11)
cdef int refuse_writes(Core core) except -1:
    journal = core.journal
    why = journal.failure if journal is not None else None
    raise _PersistenceError(f"writes are refused: {why or 'the data directory is not writable'}")
# -- end durability


# ----------------------------------------------------------------- helpers

cdef object decode_stored(const char* value, Py_ssize_t value_length):
    """Decode a value that lives in an entry."""
    cdef Reader rd
    cdef char* copy
    cdef unsigned char tag = <unsigned char>value[0]
    if tag != TAG_LIST and tag != TAG_MAP:
        # Scalars allocate one object, after the last read of entry memory.
        rd_init(&rd, value, value_length)
        return decode_value(&rd)
    copy = <char*>malloc(value_length)
    if copy == NULL:
        raise MemoryError()
    memcpy(copy, value, value_length)
    try:
        rd_init(&rd, copy, value_length)
        return decode_value(&rd)
    finally:
        free(copy)


cdef inline int ref_key(KeySpace space, KeyRef* ref, object key) except -1:
    ref.heap = NULL
    return key_ref(ref, PyBytes_AS_STRING(space._prefix), PyBytes_GET_SIZE(space._prefix), key)


cdef object scan_pattern(object match):
    if match is None:
        return None
    if isinstance(match, str):
        return (<str>match).encode("utf-8", "surrogatepass")
    if isinstance(match, bytes):
        return bytes(match)
    raise InvalidArgumentError(f"match must be a str or bytes glob, not {type(match).__name__}")


cdef Py_ssize_t scan_count(object count) except -1:
    if isinstance(count, bool) or not isinstance(count, int) or not (1 <= count <= SCAN_MAX_COUNT):
        raise InvalidArgumentError(f"count must be an int from 1 to {SCAN_MAX_COUNT}, got {count!r}")
    return count


def _scan_keys(KeySpace space, object pattern, Py_ssize_t count):
    """scan_iter's generator: the arguments are checked before it starts."""
    cdef uint64_t cursor = 0
    cdef list keys
    while True:
        keys = []
        space._core.begin()
        cursor = space._core.scan(cursor, PyBytes_AS_STRING(space._prefix),
                                  PyBytes_GET_SIZE(space._prefix), pattern, count, keys)
        yield from keys
        if cursor == 0:
            return


# What the mapping interface returns for "no entry": a stored None is a value.
cdef object _ABSENT = object()


class _ValuesView(_abc.ValuesView):
    __slots__ = ()

    def __iter__(self):
        for _, value in _scan_items(self._mapping):
            yield value


class _ItemsView(_abc.ItemsView):
    __slots__ = ()

    def __iter__(self):
        return _scan_items(self._mapping)


def _scan_items(KeySpace space):
    # A key the scan returned may be gone by the time it is read: skip it.
    for key in space.scan_iter(count=256):
        value = space.get(key, _ABSENT)
        if value is not _ABSENT:
            yield key, value


def _glob_match(pattern, key):
    """Test helper: (does the glob pattern match key, steps of work taken)."""
    cdef bytes p = bytes(pattern)
    cdef bytes k = bytes(key)
    cdef uint64_t steps = 0
    cdef bint matched = kv_glob_match(p, len(p), k, len(k), &steps)
    return matched, steps


def _reclaim_forever(engine_ref, stop, double interval, double budget_ms):
    """Body of the optional background reclaimer thread. Holds the engine only
    weakly, so dropping the engine ends the thread."""
    cdef double wait = interval
    while not stop.wait(wait):
        engine = engine_ref()
        if engine is None:
            return
        wait = 0.001 if engine.tick(budget_ms) else interval
        engine = None


# ----------------------------------------------------------------- the API

cdef class KeySpace:
    """The key-value API shared by Engine and its namespace views."""

    def __init__(self):
        raise TypeError("use Engine() or Engine.namespace(name)")

    # single keys

    def get(self, key, default=None):
        """The value stored at key, or default when missing or expired."""
        cdef Core core = self._core
        cdef KeyRef ref
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef int found
        core.begin()
        ref_key(self, &ref, key)
        found = core.lookup(ref.ptr, ref.length, &value, &value_length)
        key_release(&ref)
        if not found:
            return default
        return decode_stored(value, value_length)

    def set(self, key, value, ttl=None):
        """Store value at key; ttl in seconds, None for no expiry (clears an old ttl)."""
        self._store(key, value, ttl, STORE_ALWAYS, None)

    def setnx(self, key, value, ttl=None):
        """Store only if key is missing; True when stored."""
        return self._store(key, value, ttl, STORE_IF_ABSENT, None) == 1

    def cas(self, key, expected, new, ttl=None):
        """Replace the value with new if it is exactly expected (same type and
        encoding: 1 does not match True, dicts compare in key order); True when swapped."""
        return self._store(key, new, ttl, STORE_IF_EQUAL, (expected,)) == 1

    cdef int _store(self, object key, object value, object ttl, StoreMode mode,
                    object expected) except -1:
        cdef Core core = self._core
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef WriteBuffer buf = core._take_scratch()
        cdef KeyRef ref
        cdef Py_ssize_t value_length
        ref.heap = NULL
        try:
            encode_value(buf, value)
            value_length = buf._length
            if expected is not None:
                encode_value(buf, expected[0])
            ref_key(self, &ref, key)
            if core.writes_refused:  # -- durability (issue 11)
                refuse_writes(core)
            core.begin()
            return core.store(ref.ptr, ref.length, buf._buf, value_length, ttl_ms, mode,
                              buf._buf + value_length, buf._length - value_length)
        finally:
            key_release(&ref)
            core.end()
            core._give_back_scratch(buf)

    def delete(self, key):
        """Remove key; True when it existed."""
        cdef Core core = self._core
        cdef KeyRef ref
        if core.writes_refused:  # -- durability (issue 11)
            refuse_writes(core)
        core.begin()
        ref_key(self, &ref, key)
        try:
            return core.remove(ref.ptr, ref.length) == 1
        finally:
            key_release(&ref)
            core.end()

    def exists(self, key):
        """True when key holds a live value."""
        cdef Core core = self._core
        cdef KeyRef ref
        cdef int found
        core.begin()
        ref_key(self, &ref, key)
        found = core.contains(ref.ptr, ref.length)
        key_release(&ref)
        return found == 1

    def __contains__(self, key):
        return self.exists(key)

    def incr(self, key, delta=1):
        """Add delta to the int at key (a missing key counts as 0); the new value."""
        return self._add(key, delta, False)

    def decr(self, key, delta=1):
        """Subtract delta from the int at key (a missing key counts as 0); the new value."""
        return self._add(key, delta, True)

    cdef int64_t _add(self, object key, object delta, bint subtract) except? -1:
        cdef Core core = self._core
        cdef int64_t d = delta_arg(delta)
        cdef int64_t result
        cdef KeyRef ref
        if core.writes_refused:  # -- durability (issue 11)
            refuse_writes(core)
        core.begin()
        ref_key(self, &ref, key)
        try:
            if subtract:
                core.decrement(ref.ptr, ref.length, d, &result)
            else:
                core.increment(ref.ptr, ref.length, d, &result)
        finally:
            key_release(&ref)
            core.end()
        return result

    def expire(self, key, ttl):
        """Make key expire ttl seconds from now; True when the key exists."""
        cdef Core core = self._core
        cdef int64_t ttl_ms = ttl_to_ms(ttl, False)
        cdef KeyRef ref
        if core.writes_refused:  # -- durability (issue 11)
            refuse_writes(core)
        core.begin()
        ref_key(self, &ref, key)
        try:
            return core.set_expiry(ref.ptr, ref.length, ttl_ms) == 1
        finally:
            key_release(&ref)
            core.end()

    def persist(self, key):
        """Drop key's ttl; True when it had one (False: missing or no ttl)."""
        cdef Core core = self._core
        cdef KeyRef ref
        if core.writes_refused:  # -- durability (issue 11)
            refuse_writes(core)
        core.begin()
        ref_key(self, &ref, key)
        try:
            return core.persist(ref.ptr, ref.length) == 1
        finally:
            key_release(&ref)
            core.end()

    def getdel(self, key, default=None):
        """Remove key and return the value it held, or default when missing."""
        cdef Core core = self._core
        cdef WriteBuffer buf = core._take_scratch()
        cdef KeyRef ref
        cdef Reader rd
        cdef int found
        ref.heap = NULL
        try:
            ref_key(self, &ref, key)
            if core.writes_refused:  # -- durability (issue 11)
                refuse_writes(core)
            core.begin()
            found = core.take(ref.ptr, ref.length, buf)
            key_release(&ref)
            if not found:
                return default
            # Decoded from the copy: the entry is gone already.
            rd_init(&rd, buf._buf, buf._length)
            return decode_value(&rd)
        finally:
            key_release(&ref)
            core.end()
            core._give_back_scratch(buf)

    def getset(self, key, value, ttl=None):
        """Store value at key (ttl as set()) and return the value it replaced,
        or None when the key was missing."""
        cdef Core core = self._core
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef WriteBuffer buf = core._take_scratch()
        cdef WriteBuffer old = WriteBuffer.new()
        cdef KeyRef ref
        cdef Reader rd
        cdef int had
        ref.heap = NULL
        try:
            encode_value(buf, value)
            ref_key(self, &ref, key)
            if core.writes_refused:  # -- durability (issue 11)
                refuse_writes(core)
            core.begin()
            had = core.exchange(ref.ptr, ref.length, buf._buf, buf._length, ttl_ms, old)
        finally:
            key_release(&ref)
            core.end()
            core._give_back_scratch(buf)
        if not had:
            return None
        rd_init(&rd, old._buf, old._length)
        return decode_value(&rd)

    def delete_if_equal(self, key, expected):
        """Remove key only if its value is exactly expected (cas()'s rule of
        equality); True when removed."""
        cdef Core core = self._core
        cdef WriteBuffer buf = core._take_scratch()
        cdef KeyRef ref
        ref.heap = NULL
        try:
            encode_value(buf, expected)
            ref_key(self, &ref, key)
            if core.writes_refused:  # -- durability (issue 11)
                refuse_writes(core)
            core.begin()
            return core.remove_if_equal(ref.ptr, ref.length, buf._buf, buf._length) == 1
        finally:
            key_release(&ref)
            core.end()
            core._give_back_scratch(buf)

    def ttl(self, key):
        """Seconds left before key expires (millisecond precision); None for a
        key without expiry and for a missing key (exists() tells them apart)."""
        cdef Core core = self._core
        cdef KeyRef ref
        cdef int64_t remaining
        core.begin()
        ref_key(self, &ref, key)
        remaining = core.remaining_ms(ref.ptr, ref.length)
        key_release(&ref)
        if remaining < 0:
            return None
        return remaining / 1000.0

    # batches

    def mget(self, keys):
        """Values for keys, in order, None where missing: one call for N lookups."""
        cdef Core core = self._core
        cdef list items = key_list(keys)
        cdef Py_ssize_t n = len(items), i, at = 0
        cdef list result = PyList_New(n)
        cdef WriteBuffer buf = core._take_scratch()
        cdef Py_ssize_t* ends = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
        cdef KeyRef ref
        cdef const char* value
        cdef Py_ssize_t value_length
        cdef Reader rd
        cdef object decoded
        if ends == NULL:
            core._give_back_scratch(buf)
            raise MemoryError()
        try:
            # Every lookup first, copying the values out, and only then decode:
            # decoding runs Python code (Decimal, containers and the GC), which
            # may switch threads, and a batch must not see a half-done write.
            core.begin()
            for i in range(n):
                ref_key(self, &ref, items[i])
                if core.lookup(ref.ptr, ref.length, &value, &value_length):
                    buf.write_raw(value, value_length)
                    ends[i] = buf._length
                else:
                    ends[i] = -1
                key_release(&ref)
            for i in range(n):
                if ends[i] < 0:
                    decoded = None
                else:
                    rd_init(&rd, buf._buf + at, ends[i] - at)
                    decoded = decode_value(&rd)
                    at = ends[i]
                Py_INCREF(decoded)
                PyList_SET_ITEM(result, i, decoded)
        finally:
            free(ends)
            core._give_back_scratch(buf)
        return result

    def mset(self, items, ttl=None):
        """Store every (key, value) of a mapping or an iterable of pairs, with
        one ttl. All or nothing: a bad key or value raises before any write."""
        cdef Core core = self._core
        cdef int64_t ttl_ms = ttl_to_ms(ttl, True)
        cdef list pairs = item_list(items)
        cdef Py_ssize_t n = len(pairs), i
        cdef WriteBuffer buf = WriteBuffer.new()
        cdef Py_ssize_t* spans = <Py_ssize_t*>malloc((n * 2 + 1) * sizeof(Py_ssize_t))
        cdef KeyRef ref
        cdef Py_ssize_t at
        cdef size_t need = 0             # -- eviction (issue 12)
        cdef Py_ssize_t new_keys = 0     # -- eviction (issue 12)
        if spans == NULL:
            raise MemoryError()
        try:
            # Encode everything first: spans[2i] ends key i, spans[2i+1] value i.
            for i in range(n):
                pair = pairs[i]
                ref_key(self, &ref, pair[0])
                try:
                    buf.write_raw(ref.ptr, ref.length)
                finally:
                    key_release(&ref)
                spans[2 * i] = buf._length
                encode_value(buf, pair[1])
                spans[2 * i + 1] = buf._length
                if spans[2 * i + 1] - spans[2 * i] > MAX_VALUE_BYTES:
                    raise ValueTooLargeError(
                        f"value {i} encodes to {spans[2 * i + 1] - spans[2 * i]} bytes, "
                        f"the limit is {MAX_VALUE_BYTES}")
            if core.writes_refused:  # -- durability (issue 11)
                refuse_writes(core)
            core.begin()
            # -- eviction (issue 12): room for the whole batch, or nothing written
            if core.ev.active:
                at = 0
                for i in range(n):
                    core.batch_item(buf._buf + at, spans[2 * i] - at,
                                    spans[2 * i + 1] - spans[2 * i], ttl_ms > 0, &need, &new_keys)
                    at = spans[2 * i + 1]
                core.reserve(need, new_keys)
            # -- end eviction
            at = 0
            core.batch_begin()
            try:
                for i in range(n):
                    core.store(buf._buf + at, spans[2 * i] - at,
                               buf._buf + spans[2 * i], spans[2 * i + 1] - spans[2 * i],
                               ttl_ms, STORE_ALWAYS, NULL, 0)
                    at = spans[2 * i + 1]
            finally:
                core.batch_end()
                core.end_reserve()               # -- eviction (issue 12)
        finally:
            free(spans)
            core.end()

    def mdel(self, keys):
        """Remove keys; how many existed. A bad key raises before any removal."""
        cdef Core core = self._core
        cdef list items = key_list(keys)
        cdef Py_ssize_t n = len(items), i, removed = 0, at = 0
        cdef WriteBuffer buf = WriteBuffer.new()
        cdef Py_ssize_t* ends = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
        cdef KeyRef ref
        if ends == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                ref_key(self, &ref, items[i])
                try:
                    buf.write_raw(ref.ptr, ref.length)
                finally:
                    key_release(&ref)
                ends[i] = buf._length
            if core.writes_refused:  # -- durability (issue 11)
                refuse_writes(core)
            core.begin()
            core.batch_begin()
            try:
                for i in range(n):
                    removed += core.remove(buf._buf + at, ends[i] - at)
                    at = ends[i]
            finally:
                core.batch_end()
        finally:
            free(ends)
            core.end()
        return removed

    def mexists(self, keys):
        """For each key, whether it holds a live value."""
        cdef Core core = self._core
        cdef list items = key_list(keys)
        cdef Py_ssize_t n = len(items), i
        cdef list result = PyList_New(n)
        cdef KeyRef ref
        cdef object found
        core.begin()
        for i in range(n):
            ref_key(self, &ref, items[i])
            found = core.contains(ref.ptr, ref.length) == 1
            key_release(&ref)
            Py_INCREF(found)
            PyList_SET_ITEM(result, i, found)
        return result

    # whole key space

    def scan(self, cursor=0, match=None, count=100):
        """One step of a cursor scan: (next_cursor, keys). Start at 0 and pass
        each next_cursor back until it is 0. Keys are bytes, without the
        namespace prefix; match is a glob (*, ?, [abc], [^a], [a-z], \\
        escapes) over them. A key present for the whole scan is returned at
        least once (possibly more, if the table resizes); a step may return no
        keys before the end. count is a hint of keys per step."""
        cdef Py_ssize_t n = scan_count(count)
        cdef object pattern = scan_pattern(match)
        cdef uint64_t start
        cdef uint64_t next_cursor
        cdef list keys = []
        if isinstance(cursor, bool) or not isinstance(cursor, int) or not (0 <= cursor < 2**64 - 1):
            raise InvalidArgumentError(f"cursor must be an int returned by scan(), got {cursor!r}")
        start = cursor
        self._core.begin()
        next_cursor = self._core.scan(start, PyBytes_AS_STRING(self._prefix),
                                      PyBytes_GET_SIZE(self._prefix), pattern, n, keys)
        return next_cursor, keys

    def scan_iter(self, match=None, count=100):
        """Iterate over scan() steps: every key present throughout at least once."""
        return _scan_keys(self, scan_pattern(match), scan_count(count))

    # -- the mapping interface (issue 15): what cachetools and cachebox users
    # write. Every method is built from the single-key and scan calls above,
    # so each step is as atomic as they are; iteration is the scan's (a key
    # present throughout is seen, keys come back as bytes, and a key removed
    # while iterating is skipped, never a KeyError).

    def __getitem__(self, key):
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        self.set(key, value)

    def __delitem__(self, key):
        if not self.delete(key):
            raise KeyError(key)

    def __iter__(self):
        return self.scan_iter()

    def keys(self):
        """A view of the live keys (bytes), iterated by scan."""
        return _abc.KeysView(self)

    def values(self):
        """A view of the values of the live keys, iterated by scan."""
        return _ValuesView(self)

    def items(self):
        """A view of (key, value) pairs of the live keys, iterated by scan."""
        return _ItemsView(self)

    def pop(self, key, default=_ABSENT):
        """Remove key and return its value (one atomic getdel); default, or
        KeyError without one, when missing."""
        value = self.getdel(key, _ABSENT)
        if value is _ABSENT:
            if default is _ABSENT:
                raise KeyError(key)
            return default
        return value

    def popitem(self):
        """Remove and return some (key, value) pair; KeyError when empty."""
        for key in self.scan_iter():
            value = self.getdel(key, _ABSENT)
            if value is not _ABSENT:
                return key, value
        raise KeyError("popitem(): the key space is empty")

    def clear(self):
        """Remove every key (of this namespace, for a view): flush()."""
        self.flush()

    def update(self, other=(), /, **kwargs):
        """Store every pair of a mapping or iterable of pairs, then of
        kwargs; each batch all or nothing, like mset (no TTL)."""
        self.mset(other)
        if kwargs:
            self.mset(kwargs)

    def setdefault(self, key, default=None):
        """The value at key; when missing, store default first (no TTL)."""
        return self.get_or_set(key, lambda: default)

    def get_or_set(self, key, factory, ttl=None):
        """The value at key; when missing, store factory() (with ttl) and
        return it. factory runs outside the engine, so another caller may
        store first: then its value is returned and factory's is dropped
        (kvstore.cached adds single-flight on top when the work is costly)."""
        while True:
            value = self.get(key, _ABSENT)
            if value is not _ABSENT:
                return value
            value = factory()
            if self.setnx(key, value, ttl):
                return value
            # Someone stored first; read theirs (it may expire or go again).

    def __len__(self):
        """Live keys (in this namespace); never counts an expired key."""
        self._core.begin()
        return self._core.count(PyBytes_AS_STRING(self._prefix), PyBytes_GET_SIZE(self._prefix))

    def flush(self):
        """Remove every key (of this namespace only, for a view); how many."""
        if self._core.writes_refused:  # -- durability (issue 11)
            refuse_writes(self._core)
        self._core.begin()
        try:
            return self._core.remove_prefixed(PyBytes_AS_STRING(self._prefix),
                                              PyBytes_GET_SIZE(self._prefix))
        finally:
            self._core.end()

    def purge_expired(self, budget_ms=1.0):
        """Reclaim expired keys for up to budget_ms milliseconds; how many were
        reclaimed. The whole engine's, also when called on a view."""
        cdef bint more
        cdef double budget = budget_ms
        if not isfinite(budget) or budget < 0:
            raise InvalidArgumentError(f"budget_ms must be >= 0, got {budget_ms!r}")
        try:
            return self._core.reclaim(<int64_t>(budget * 1000.0), &more)
        finally:
            self._core.end()

    def tick(self, budget_ms=1.0):
        """The engine's one housekeeping step (expiry reclaim, resize
        migration), for up to budget_ms milliseconds; True while work is
        pending (call again soon). The whole engine's, also on a view."""
        cdef double budget = budget_ms
        if not isfinite(budget) or budget < 0:
            raise InvalidArgumentError(f"budget_ms must be >= 0, got {budget_ms!r}")
        try:
            return self._core.tick(<int64_t>(budget * 1000.0)) == 1
        finally:
            self._core.end()

    def info(self):
        """Figures about the engine: keys (entries held, including expired ones
        not reclaimed yet: len() is the exact live count), memory_bytes, hits,
        misses, expired (reclaimed so far), keys_with_ttl, capacity, ..."""
        self._core.begin()
        result = self._core.info()
        if self._core.journal is not None:  # -- durability (issue 11)
            result.update(self._core.journal.figures())
        if self._prefix:
            result["namespace"] = self._prefix[:len(self._prefix) - 1].decode("utf-8", "replace")
            result["namespace_keys"] = len(self)
        return result

    def namespace(self, name):
        """A view whose keys are prefixed "name:" (nested under this one's prefix)."""
        cdef bytes part
        if isinstance(name, str):
            part = (<str>name).encode("utf-8")
        elif isinstance(name, bytes):
            part = bytes(name)
        else:
            raise InvalidArgumentError(f"namespace name must be str or bytes, not {type(name).__name__}")
        if not part:
            raise InvalidArgumentError("namespace name must not be empty")
        prefix = self._prefix + part + b":"
        if len(prefix) >= MAX_KEY_BYTES:
            raise InvalidArgumentError(
                f"namespace prefix is {len(prefix)} bytes; keys are limited to {MAX_KEY_BYTES}")
        return Namespace._new(self._core, prefix)

    def _check(self):
        """Verify the table and wheel invariants (tests call it after each step)."""
        return self._core.check()

    def _observe(self, observer):
        """Test-only: call observer(record) with every mutation record, after
        the call that made it (never inside a table operation); None stops.
        Records: ("store", key, value_encoding, deadline_ms | None),
        ("remove", key), ("expire", key, deadline_ms), ("persist", key),
        ("incr", key, result_encoding), ("flush", prefix), ("reclaim", key,
        deadline_ms), ("batch", (records...)). Keys carry any prefix;
        deadlines are ms on the engine's clock. The whole engine's."""
        cdef Core core = self._core
        if observer is None:
            core._deliver()
            if core.hook == observe_hook:
                core.hook = NULL
                core.hook_context = NULL
            core.observer = None
            core.observed = None
            return
        if not callable(observer):
            raise InvalidArgumentError("observer must be callable or None")
        if core.hook != NULL and core.hook != observe_hook:
            raise InvalidArgumentError("another mutation hook is installed")
        core.observed = WriteBuffer.new()
        core.observer = observer
        core.hook_context = <void*>core
        core.hook = observe_hook

    def _sample(self, n):
        """Test-only: keys of up to n entries picked by Core.sample()."""
        cdef Core core = self._core
        cdef Py_ssize_t want = n
        cdef Entry** picked
        cdef Py_ssize_t got, i
        cdef list keys = []
        if want < 0:
            raise InvalidArgumentError("n must be >= 0")
        picked = <Entry**>malloc((want + 1) * sizeof(Entry*))
        if picked == NULL:
            raise MemoryError()
        try:
            core.begin()
            got = core.sample(picked, want)
            for i in range(got):
                keys.append(entry_key(picked[i])[:picked[i].key_length])
        finally:
            free(picked)
        return keys


cdef object _UNSET = object()    # -- eviction (issue 12): configure()'s "not given"


cdef class Engine(KeySpace):
    """An in-process key-value store: a hash table in C memory with typed
    values, TTLs, counters, CAS and batch calls.

    clock: a callable returning seconds (default: the monotonic clock); tests
    pass a fake one. reclaim_interval: seconds between background reclaim
    passes in a daemon thread, or None (the default) to reclaim only as calls
    come in and when purge_expired() is called.
    """

    cdef object __weakref__
    cdef object _reclaim_stop
    cdef bint _eviction_chosen   # -- eviction (issue 12): eviction= was given once

    def __init__(self, clock=None, *, reclaim_interval=None,
                 max_memory=None, max_keys=None, eviction=None, on_evict=None,
                 path=None, fsync="everysec", snapshot_every=None, snapshot_log_growth=None,
                 _files=None):
        if clock is not None and not callable(clock):
            raise InvalidArgumentError("clock must be a callable returning seconds")
        self._core = Core(clock)
        self._prefix = b""
        # -- durability (issue 11): recover from the data directory, then log every change
        if path is not None:
            Journal.open(self._core, path, fsync, _files, snapshot_every, snapshot_log_growth)
        elif fsync != "everysec" or snapshot_every is not None or snapshot_log_growth is not None:
            raise InvalidArgumentError("fsync and the snapshot triggers need path=DIR")
        # -- end durability
        # -- eviction (issue 12)
        self.configure(max_memory=max_memory, max_keys=max_keys,
                       eviction=eviction if eviction is not None else _UNSET,
                       on_evict=on_evict)
        # -- end eviction
        if reclaim_interval is not None:
            self.start_reclaimer(reclaim_interval)

    # -- eviction (issue 12) ---------------------------------------------

    def configure(self, *, max_memory=_UNSET, max_keys=_UNSET, eviction=_UNSET,
                  eviction_samples=_UNSET, on_evict=_UNSET):
        """Change the limits at runtime; arguments left out keep their value.

        max_memory: bytes (int) or a size string ("256mb", "2gb", "100k" as
        Redis reads them), None or 0 for no limit. max_keys: an int, None or
        0 for no limit. eviction: a policy name (Redis's: noeviction,
        allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu,
        volatile-random, volatile-ttl; or s3fifo, the default once a limit is
        set unless a policy was chosen). eviction_samples: Redis's
        maxmemory-samples (1-64, default 5). on_evict: callable(key, reason)
        or None, called after the call that evicted with the full key (bytes)
        and "max_memory" or "max_keys". Lowering a limit evicts down to it in
        bounded steps: in tick() and in the writes that follow.
        """
        cdef Core core = self._core
        memory = parse_memory(max_memory) if max_memory is not _UNSET else core.ev.max_memory
        keys = parse_max_keys(max_keys) if max_keys is not _UNSET else core.ev.max_keys
        samples = (parse_samples(eviction_samples) if eviction_samples is not _UNSET
                   else core.ev.samples)
        if eviction is not _UNSET:
            policy = parse_policy(eviction)
        elif self._eviction_chosen:
            policy = core.ev.policy
        else:
            policy = EV_S3FIFO if (memory or keys) else EV_NOEVICTION
        if on_evict is not _UNSET and on_evict is not None and not callable(on_evict):
            raise InvalidArgumentError("on_evict must be callable(key, reason) or None")
        if eviction is not _UNSET:
            self._eviction_chosen = True
        ev_configure(core, memory, keys, policy, samples)
        if on_evict is not _UNSET:
            core.on_evict = on_evict
            core.evict_log = WriteBuffer.new() if on_evict is not None else None

    def _seed(self, seed):
        """Test-only: make hashing and sampling deterministic (empty engine only)."""
        cdef Core core = self._core
        if tp_count(&core.tables) != 0:
            raise InvalidArgumentError("_seed needs an empty engine")
        core.seed0 = (seed * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF
        core.seed1 = (seed * 0xC2B2AE3D27D4EB4F + 7) & 0xFFFFFFFFFFFFFFFF
        core.rng = core.seed0 | 1

    # -- end eviction

    # -- durability (issue 11)
    @property
    def journal(self):
        """The Journal of an engine opened with path=..., else None."""
        return self._core.journal

    def snapshot(self, wait=True):
        """Write a snapshot of the whole engine and restart the log after it.
        wait=True: here and now, returning its figures (time, duration_s,
        bytes, entries, result). wait=False: start one and return None; tick()
        (a server's housekeeping) steps it while calls go on."""
        journal = self._core.journal
        if journal is None:
            raise InvalidArgumentError("snapshot() needs an engine opened with path=DIR")
        self._core.begin()
        return journal.run_snapshot(wait)

    def close(self):
        """Write and fdatasync the log, finish a snapshot under way and release
        the data directory (its lock). The data stays readable in memory;
        writes are refused. No-op without path=."""
        if self._core.journal is not None:
            self.stop_reclaimer()
            self._core.journal.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
    # -- end durability

    def start_reclaimer(self, interval=0.05, budget_ms=1.0):
        """Reclaim expired keys in a background daemon thread every interval
        seconds, at most budget_ms per pass (sooner while there is a backlog)."""
        if self._reclaim_stop is not None:
            return
        if not (isinstance(interval, (int, float)) and interval > 0):
            raise InvalidArgumentError(f"interval must be > 0 seconds, got {interval!r}")
        stop = _threading.Event()
        thread = _threading.Thread(
            target=_reclaim_forever, args=(_weakref.ref(self), stop, float(interval), float(budget_ms)),
            name="kvstore-reclaimer", daemon=True)
        self._reclaim_stop = stop
        thread.start()

    def stop_reclaimer(self):
        """Stop the background reclaimer, if one runs."""
        if self._reclaim_stop is not None:
            self._reclaim_stop.set()
            self._reclaim_stop = None

    def __dealloc__(self):
        if self._reclaim_stop is not None:
            self._reclaim_stop.set()

    def __repr__(self):
        return f"<kvstore.Engine keys={tp_count(&self._core.tables)}>"


cdef class Namespace(KeySpace):
    """A view of an Engine whose keys are all prefixed "name:"."""

    @staticmethod
    cdef Namespace _new(Core core, bytes prefix):
        cdef Namespace view = Namespace.__new__(Namespace)
        view._core = core
        view._prefix = prefix
        return view

    def __repr__(self):
        return f"<kvstore.Namespace {self._prefix[:len(self._prefix) - 1]!r}>"


# Engine and its namespace views are mappings (issue 15): isinstance checks
# and code written against collections.abc accept them.
_abc.MutableMapping.register(KeySpace)
