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
from libc.string cimport memcmp, memcpy

from kvstore._codec cimport (
    INT_VALUE_BYTES, MAX_KEY_BYTES, TAG_INT, TAG_LIST, TAG_MAP,
    KeyRef, Reader, WriteBuffer,
    decode_value, encode_value, item_list, key_list, key_ref, key_release, kv_load_u16,
    kv_load_u64, kv_store_u64, rd_init,
)

import os as _os
import threading as _threading
import weakref as _weakref

from kvstore.errors import (
    IntegerOverflowError, InvalidArgumentError, InvalidKeyError, ValueTooLargeError,
    WrongTypeError,
)

include "_core/table.pyx"
include "_core/wheel.pyx"


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
    """Engine state: the table, the wheel, the clock and the counters."""

    def __cinit__(self, clock=None):
        seed = _os.urandom(16)
        self.seed0 = int.from_bytes(seed[:8], "little")
        self.seed1 = int.from_bytes(seed[8:], "little")
        self.clock = clock
        self.memory_bytes = 0
        slab_init(&self.slab, &self.memory_bytes)
        self.migrating = False
        self.old_table.slots = NULL
        self.old_table.mask = 0
        self.old_table.count = 0
        if tbl_init(&self.table, &self.memory_bytes, TABLE_MIN_CAPACITY) < 0:
            raise MemoryError()
        self.now_ms = self._read_clock_ms()
        self.clock_fresh = False
        whl_reset(&self.wheel, self.now_ms)
        self.scratch = WriteBuffer.new()
        self.scratch_busy = False
        self.backlog = False

    def __dealloc__(self):
        self._free_all()
        tbl_release(&self.table, &self.memory_bytes)

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
        self.clock_fresh = False
        if self.clock is not None:
            # An injected clock is Python code: run it now, never in the middle
            # of a table operation (it could switch threads).
            self.now()
        if self.migrating:
            self._migrate(MIGRATE_SLOTS_PER_CALL)
        # An engine without ttls never needs the time.
        if self.wheel.count != 0:
            self.backlog = not whl_advance(self, self.now(), &budget)
        return 0

    # ----------------------------------------------------------- lookups

    cdef Entry* _find(self, const char* key, Py_ssize_t key_length, Table** table,
                      Py_ssize_t* index) noexcept:
        cdef uint32_t hash = <uint32_t>kv_siphash13(self.seed0, self.seed1, key, key_length)
        cdef Py_ssize_t i = tbl_find(&self.table, hash, key, key_length, 0)
        if i >= 0:
            table[0] = &self.table
        elif self.migrating:
            i = tbl_find(&self.old_table, hash, key, key_length, self.migrate_pos)
            if i < 0:
                return NULL
            table[0] = &self.old_table
        else:
            return NULL
        index[0] = i
        return slot_entry(table[0].slots[i])

    cdef inline Entry* _find_live(self, const char* key, Py_ssize_t key_length, Table** table,
                                  Py_ssize_t* index) except? NULL:
        """_find, reclaiming the entry instead when it has expired."""
        cdef Entry* e = self._find(key, key_length, table, index)
        if e != NULL and (e.flags & ENTRY_HAS_TTL) and entry_ttl(e).deadline_ms <= self.now():
            self._drop(table[0], index[0])
            self.expired += 1
            return NULL
        return e

    cdef int lookup(self, const char* key, Py_ssize_t key_length,
                    const char** value, Py_ssize_t* value_length) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e = self._find_live(key, key_length, &table, &index)
        if e == NULL:
            self.misses += 1
            return 0
        self.hits += 1
        value[0] = entry_value(e)
        value_length[0] = e.value_length
        return 1

    cdef int contains(self, const char* key, Py_ssize_t key_length) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        return self._find_live(key, key_length, &table, &index) != NULL

    cdef int64_t remaining_ms(self, const char* key, Py_ssize_t key_length) except -3:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e = self._find_live(key, key_length, &table, &index)
        if e == NULL:
            return TTL_MISSING
        if not (e.flags & ENTRY_HAS_TTL):
            return TTL_NO_EXPIRY
        return entry_ttl(e).deadline_ms - self.now()

    # ----------------------------------------------------------- writes

    cdef int store(self, const char* key, Py_ssize_t key_length,
                   const char* value, Py_ssize_t value_length, int64_t ttl_ms,
                   StoreMode mode, const char* expected, Py_ssize_t expected_length) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* old
        cdef Entry* e
        cdef bint has_ttl = ttl_ms > 0
        if value_length > MAX_VALUE_BYTES:
            raise ValueTooLargeError(
                f"encoded value is {value_length} bytes, the limit is {MAX_VALUE_BYTES}")
        old = self._find_live(key, key_length, &table, &index)
        if mode == STORE_IF_ABSENT and old != NULL:
            return 0
        if mode == STORE_IF_EQUAL and (
                old == NULL or old.value_length != expected_length
                or memcmp(entry_value(old), expected, expected_length) != 0):
            return 0
        self.write_version += 1
        if old != NULL and old.value_length == value_length and (
                (old.flags & ENTRY_HAS_TTL) != 0) == has_ttl:
            # Same shape: overwrite in place, no allocator round trip.
            memcpy(entry_value(old), value, value_length)
            old.version = self.write_version
            if has_ttl:
                whl_unlink(&self.wheel, old)
                entry_ttl(old).deadline_ms = self.now() + ttl_ms
                whl_link(&self.wheel, old)
            return 1
        e = entry_new(&self.slab, 0, key, key_length, value, value_length, has_ttl)
        if e == NULL or not pointer_fits_slot(e):
            entry_free(&self.slab, e)
            raise MemoryError()
        e.version = self.write_version
        if has_ttl:
            entry_ttl(e).deadline_ms = self.now() + ttl_ms
            whl_link(&self.wheel, e)
        if old != NULL:
            # Same key, same hash: the new entry takes the old one's slot word.
            e.hash = old.hash
            table.slots[index] = make_slot(e, slot_dist(table.slots[index]))
            if old.flags & ENTRY_HAS_TTL:
                whl_unlink(&self.wheel, old)
            entry_free(&self.slab, old)
            return 1
        e.hash = <uint32_t>kv_siphash13(self.seed0, self.seed1, key, key_length)
        self._insert(e)
        return 1

    cdef int _insert(self, Entry* e) except -1:
        """Place a new entry (key known absent), growing the table first if needed."""
        cdef size_t capacity = self.table.mask + 1
        cdef size_t total = self.table.count + self.old_table.count + 1
        cdef Entry* homeless
        if total * 4 > capacity * TABLE_MAX_LOAD_QUARTERS:
            if self.migrating:
                # Growing faster than the migration drains: finish it now.
                self._migrate(<Py_ssize_t>(self.old_table.mask + 1))
            if total * 4 > capacity * TABLE_MAX_LOAD_QUARTERS:
                try:
                    self._start_resize(capacity * 2)
                except MemoryError:
                    if self.table.count + 1 >= capacity:
                        if e.flags & ENTRY_HAS_TTL:
                            whl_unlink(&self.wheel, e)
                        entry_free(&self.slab, e)
                        raise
                    # A fuller table still works; try to grow again next time.
        homeless = tbl_place(&self.table, e)
        if homeless != NULL:
            self._rebuild(homeless)
        return 0

    cdef int remove(self, const char* key, Py_ssize_t key_length) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        if self._find_live(key, key_length, &table, &index) == NULL:
            return 0
        self._drop(table, index)
        self._maybe_shrink()
        return 1

    cdef int increment(self, const char* key, Py_ssize_t key_length, int64_t delta,
                       int64_t* result) except -1:
        return self._add(key, key_length, delta, False, result)

    cdef int decrement(self, const char* key, Py_ssize_t key_length, int64_t delta,
                       int64_t* result) except -1:
        return self._add(key, key_length, delta, True, result)

    cdef int _add(self, const char* key, Py_ssize_t key_length, int64_t delta, bint subtract,
                  int64_t* result) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e = self._find_live(key, key_length, &table, &index)
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
            self.write_version += 1
            e.version = self.write_version
            return 0
        encoded[0] = <char>TAG_INT
        kv_store_u64(encoded + 1, <uint64_t>result[0])
        self.store(key, key_length, encoded, INT_VALUE_BYTES, 0, STORE_ALWAYS, NULL, 0)
        return 0

    cdef int set_expiry(self, const char* key, Py_ssize_t key_length, int64_t ttl_ms) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e = self._find_live(key, key_length, &table, &index)
        if e == NULL:
            return 0
        if e.flags & ENTRY_HAS_TTL:
            whl_unlink(&self.wheel, e)
            entry_ttl(e).deadline_ms = self.now() + ttl_ms
            whl_link(&self.wheel, e)
            return 1
        # Entries without a ttl carry no TtlBlock: rewrite the entry with one.
        return self.store(key, key_length, entry_value(e), e.value_length, ttl_ms,
                          STORE_ALWAYS, NULL, 0)

    cdef int persist(self, const char* key, Py_ssize_t key_length) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e = self._find_live(key, key_length, &table, &index)
        if e == NULL or not (e.flags & ENTRY_HAS_TTL):
            return 0
        # The TtlBlock is part of the entry: rewrite the entry without one
        # (store copies the value out of the old entry before freeing it).
        return self.store(key, key_length, entry_value(e), e.value_length, 0,
                          STORE_ALWAYS, NULL, 0)

    cdef int take(self, const char* key, Py_ssize_t key_length, WriteBuffer out) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e = self._find_live(key, key_length, &table, &index)
        if e == NULL:
            self.misses += 1
            return 0
        self.hits += 1
        # Copy first: a MemoryError here leaves the key in place.
        out.write_raw(entry_value(e), e.value_length)
        self._drop(table, index)
        self._maybe_shrink()
        return 1

    cdef int exchange(self, const char* key, Py_ssize_t key_length, const char* value,
                      Py_ssize_t value_length, int64_t ttl_ms, WriteBuffer old) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e
        cdef Py_ssize_t old_length = old._length
        if value_length > MAX_VALUE_BYTES:
            raise ValueTooLargeError(
                f"encoded value is {value_length} bytes, the limit is {MAX_VALUE_BYTES}")
        e = self._find_live(key, key_length, &table, &index)
        if e != NULL:
            old.write_raw(entry_value(e), e.value_length)
        try:
            self.store(key, key_length, value, value_length, ttl_ms, STORE_ALWAYS, NULL, 0)
        except MemoryError:
            old._length = old_length
            raise
        return e != NULL

    cdef int remove_if_equal(self, const char* key, Py_ssize_t key_length, const char* expected,
                             Py_ssize_t expected_length) except -1:
        cdef Table* table
        cdef Py_ssize_t index
        cdef Entry* e = self._find_live(key, key_length, &table, &index)
        if (e == NULL or e.value_length != expected_length
                or memcmp(entry_value(e), expected, expected_length) != 0):
            return 0
        self._drop(table, index)
        self._maybe_shrink()
        return 1

    cdef uint64_t scan(self, uint64_t cursor, const char* prefix, Py_ssize_t prefix_length,
                       object pattern, Py_ssize_t count, list out) except? 0xFFFFFFFFFFFFFFFF:
        cdef ScanFilter f
        cdef WriteBuffer found = WriteBuffer.new()
        cdef Table* small
        cdef Table* large
        cdef size_t small_floor, large_floor
        cdef uint64_t v = cursor
        cdef uint64_t m0, m1
        cdef Py_ssize_t limit, at, length
        if count < 1:
            count = 1
        # Redis's bound: at most ten buckets (here: buckets + entries) per key asked for.
        limit = count * 10 if count < (<Py_ssize_t>1 << 40) else (<Py_ssize_t>1 << 44)
        f.prefix = prefix
        f.prefix_length = prefix_length
        f.pattern = NULL
        f.pattern_length = 0
        if pattern is not None:
            f.pattern = PyBytes_AS_STRING(pattern)
            f.pattern_length = PyBytes_GET_SIZE(pattern)
        f.now_ms = self.now()
        f.found = 0
        f.work = 0
        f.glob_steps = 0
        # Collect into C memory first, build bytes after: creating Python
        # objects can run the GC (and finalizers) in the middle of the walk.
        while True:
            if not self.migrating:
                m0 = self.table.mask
                tbl_scan_bucket(&self.table, 0, <size_t>(v & m0), &f, found)
                v = scan_next_cursor(v, m0)
            else:
                small = &self.table
                small_floor = 0
                large = &self.old_table
                large_floor = self.migrate_pos
                if small.mask > large.mask:
                    small, large = large, small
                    small_floor, large_floor = large_floor, small_floor
                m0 = small.mask
                m1 = large.mask
                tbl_scan_bucket(small, small_floor, <size_t>(v & m0), &f, found)
                # Every bucket of the larger table that the small bucket expands to.
                while True:
                    tbl_scan_bucket(large, large_floor, <size_t>(v & m1), &f, found)
                    v = scan_next_cursor(v, m1)
                    if not (v & (m0 ^ m1)):
                        break
            if v == 0 or f.found >= count or f.work >= limit:
                break
        at = 0
        while at < found._length:
            length = kv_load_u16(found._buf + at)
            out.append(found._buf[at + 2:at + 2 + length])
            at += 2 + length
        return v

    # ----------------------------------------------------------- removal

    cdef void _drop(self, Table* table, Py_ssize_t index) noexcept:
        cdef Entry* e = slot_entry(table.slots[index])
        tbl_delete_at(table, <size_t>index, self.migrate_pos if table == &self.old_table else 0)
        if e.flags & ENTRY_HAS_TTL:
            whl_unlink(&self.wheel, e)
        entry_free(&self.slab, e)

    cdef void _reclaim(self, Entry* e) noexcept:
        """Remove an entry the wheel found due."""
        cdef Py_ssize_t index = tbl_find_entry(&self.table, e, 0)
        if index >= 0:
            self._drop(&self.table, index)
        else:
            index = tbl_find_entry(&self.old_table, e, self.migrate_pos)
            if index < 0:
                # Not in either table: the structures disagree. Unlink so the
                # wheel cannot loop on it; _check() reports such corruption.
                whl_unlink(&self.wheel, e)
                return
            self._drop(&self.old_table, index)
        self.expired += 1
        self._maybe_shrink()

    cdef void _maybe_shrink(self) noexcept:
        cdef size_t capacity = self.table.mask + 1
        if self.table.count + self.old_table.count == 0:
            # Empty: drop straight to the minimal table and no slab pages, so
            # memory_bytes returns exactly to an empty engine's.
            if self.migrating or capacity != TABLE_MIN_CAPACITY:
                self._free_all()
            else:
                slab_release_spares(&self.slab)
            return
        if (not self.migrating and capacity > TABLE_MIN_CAPACITY
                and self.table.count * TABLE_SHRINK_DIVISOR < capacity):
            try:
                self._start_resize(capacity_for(self.table.count))
            except MemoryError:
                pass    # keep the bigger table; shrinking is only an economy

    cdef Py_ssize_t remove_prefixed(self, const char* prefix, Py_ssize_t prefix_length) except -1:
        cdef Py_ssize_t removed = 0
        cdef Table* tables[2]
        cdef size_t floors[2]
        cdef Table* t
        cdef size_t i
        cdef Entry* e
        cdef int which
        if prefix_length == 0:
            removed = self.count(NULL, 0)
            self._free_all()
            return removed
        tables[0] = &self.table
        floors[0] = 0
        tables[1] = &self.old_table
        floors[1] = self.migrate_pos
        for which in range(2 if self.migrating else 1):
            t = tables[which]
            i = floors[which]
            while i <= t.mask:
                # Deleting shifts the next entry into slot i: look at i again.
                while t.slots[i] != 0:
                    e = slot_entry(t.slots[i])
                    if e.key_length < prefix_length or memcmp(entry_key(e), prefix, prefix_length) != 0:
                        break
                    if not entry_expired(e, self.now()):
                        removed += 1
                    else:
                        self.expired += 1
                    self._drop(t, <Py_ssize_t>i)
                i += 1
        self._maybe_shrink()
        return removed

    cdef void _free_all(self) noexcept:
        """Free every entry and go back to an empty minimal table."""
        cdef Table* tables[2]
        cdef size_t i
        cdef int which
        cdef size_t floors[2]
        tables[0] = &self.table
        floors[0] = 0
        tables[1] = &self.old_table
        floors[1] = self.migrate_pos
        for which in range(2):
            if tables[which].slots == NULL or tables[which].count == 0:
                continue
            for i in range(floors[which], tables[which].mask + 1):
                if tables[which].slots[i] != 0:
                    entry_free(&self.slab, slot_entry(tables[which].slots[i]))
        slab_release_spares(&self.slab)
        tbl_release(&self.old_table, &self.memory_bytes)
        self.migrating = False
        self.migrate_pos = 0
        if self.table.mask + 1 != TABLE_MIN_CAPACITY:
            tbl_release(&self.table, &self.memory_bytes)
            if tbl_init(&self.table, &self.memory_bytes, TABLE_MIN_CAPACITY) < 0:
                # Cannot fail in practice (128 bytes); leave a usable 0-slot state out.
                pass
        else:
            for i in range(self.table.mask + 1):
                self.table.slots[i] = 0
            self.table.count = 0
        whl_reset(&self.wheel, self.wheel.cursor_ms)

    # ----------------------------------------------------------- resizing

    cdef int _start_resize(self, size_t capacity) except -1:
        cdef Table fresh
        if self.migrating:
            self._migrate(<Py_ssize_t>(self.old_table.mask + 1))
        if tbl_init(&fresh, &self.memory_bytes, capacity) < 0:
            raise MemoryError()
        self.old_table = self.table
        self.table = fresh
        self.migrating = True
        self.migrate_pos = 0
        return 0

    cdef void _migrate(self, Py_ssize_t slots) noexcept:
        cdef Table* old = &self.old_table
        cdef uint64_t slot
        cdef Entry* homeless
        while slots > 0 and self.migrating:
            slot = old.slots[self.migrate_pos]
            if slot != 0:
                old.slots[self.migrate_pos] = 0
                old.count -= 1
                homeless = tbl_place(&self.table, slot_entry(slot))
                if homeless != NULL:
                    try:
                        self._rebuild(homeless)
                    except MemoryError:
                        pass    # _rebuild already dropped the homeless entry
                    return
            self.migrate_pos += 1
            slots -= 1
            if self.migrate_pos > old.mask:
                tbl_release(old, &self.memory_bytes)
                self.migrating = False
                self.migrate_pos = 0
                # Deletes during a shrink may call for a smaller table still.
                self._maybe_shrink()
                return
        if self.migrating:
            tbl_release_below(old, &self.memory_bytes, self.migrate_pos)

    cdef int _rebuild(self, Entry* homeless) except -1:
        """Move everything into a table twice as big, at once. Only reached when
        a probe chain would exceed 255 slots, which a keyed hash makes
        practically impossible; it keeps the table correct if it happens."""
        cdef Table fresh
        cdef Table* tables[2]
        cdef size_t i
        cdef int which
        cdef Entry* e
        if tbl_init(&fresh, &self.memory_bytes, (self.table.mask + 1) * 2) < 0:
            if homeless.flags & ENTRY_HAS_TTL:
                whl_unlink(&self.wheel, homeless)
            entry_free(&self.slab, homeless)
            raise MemoryError()
        tables[0] = &self.table
        tables[1] = &self.old_table
        for which in range(2):
            if tables[which].slots == NULL:
                continue
            for i in range(0 if which == 0 else self.migrate_pos, tables[which].mask + 1):
                if tables[which].slots[i] != 0:
                    e = tbl_place(&fresh, slot_entry(tables[which].slots[i]))
                    # A doubled table cannot overflow again in practice.
        tbl_place(&fresh, homeless)
        tbl_release(&self.old_table, &self.memory_bytes)
        tbl_release(&self.table, &self.memory_bytes)
        self.table = fresh
        self.migrating = False
        self.migrate_pos = 0
        return 0

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
            if self.migrating:
                self._migrate(PURGE_CHUNK_ENTRIES * 4)
            budget = PURGE_CHUNK_ENTRIES
            done = self.wheel.count == 0 or whl_advance(self, self.now(), &budget)
            if (done and not self.migrating) or kv_monotonic_us() - started >= budget_us:
                break
        self.backlog = not done
        more[0] = self.backlog or self.migrating
        return <Py_ssize_t>(self.expired - expired_before)

    cdef int tick(self, int64_t budget_us) except -1:
        cdef bint more
        self.reclaim(budget_us, &more)
        return 1 if more else 0

    # ----------------------------------------------------------- counting

    cdef Py_ssize_t count(self, const char* prefix, Py_ssize_t prefix_length) except -1:
        cdef Py_ssize_t live = 0
        cdef Table* tables[2]
        cdef size_t floors[2]
        cdef size_t i
        cdef int which
        cdef uint64_t slot
        cdef Entry* e
        cdef int64_t now
        if prefix_length == 0:
            self.catch_up()
            return <Py_ssize_t>(self.table.count + self.old_table.count)
        now = self.now()
        tables[0] = &self.table
        floors[0] = 0
        tables[1] = &self.old_table
        floors[1] = self.migrate_pos
        for which in range(2 if self.migrating else 1):
            for i in range(floors[which], tables[which].mask + 1):
                slot = tables[which].slots[i]
                if slot == 0:
                    continue
                e = slot_entry(slot)
                if (e.key_length >= prefix_length
                        and memcmp(entry_key(e), prefix, prefix_length) == 0
                        and not entry_expired(e, now)):
                    live += 1
        return live

    cdef dict info(self):
        # Bounded like every call: "keys" counts the entries held, expired ones
        # not yet reclaimed included (as Redis's INFO keyspace does); len() is
        # the exact live count.
        cdef size_t keys = self.table.count + self.old_table.count
        return {
            "keys": keys,
            "expiry_backlog": bool(self.backlog),
            "memory_bytes": self.memory_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "expired": self.expired,
            "keys_with_ttl": self.wheel.count,
            "capacity": self.table.mask + 1,
            "load_factor": keys / <double>(self.table.mask + 1),
            "resizing": bool(self.migrating),
            "writes": self.write_version,
        }

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
        """Verify every structural invariant of the table and the wheel;
        raise AssertionError naming the first one broken. O(n): for tests."""
        cdef Table* tables[2]
        cdef size_t floors[2]
        cdef size_t i, home, mask, entries = 0, with_ttl = 0
        cdef int which, level, slot_index
        cdef uint64_t slot, previous
        cdef Entry* e
        cdef Entry* link
        cdef Entry** expected_pprev
        cdef uint32_t dist
        cdef int64_t deadline
        tables[0] = &self.table
        floors[0] = 0
        tables[1] = &self.old_table
        floors[1] = self.migrate_pos
        for which in range(2 if self.migrating else 1):
            mask = tables[which].mask
            counted = 0
            for i in range(floors[which], mask + 1):
                slot = tables[which].slots[i]
                if slot == 0:
                    continue
                counted += 1
                e = slot_entry(slot)
                home = e.hash & mask
                dist = slot_dist(slot)
                if ((i - home) & mask) != dist:
                    raise AssertionError(f"slot {i}: stored distance {dist}, real {(i - home) & mask}")
                if (slot >> SLOT_TAG_SHIFT) != hash_tag(e.hash):
                    raise AssertionError(f"slot {i}: tag does not match the entry's hash")
                if e.hash != <uint32_t>kv_siphash13(self.seed0, self.seed1, entry_key(e), e.key_length):
                    raise AssertionError(f"slot {i}: entry hash is not the key's hash")
                if dist > 0 and i != floors[which]:
                    previous = tables[which].slots[(i - 1) & mask]
                    if previous == 0 or slot_dist(previous) + 1 < dist:
                        raise AssertionError(f"slot {i}: Robin Hood order broken")
                if e.flags & ENTRY_HAS_TTL:
                    with_ttl += 1
            if counted != tables[which].count:
                raise AssertionError(f"table {which}: count {tables[which].count}, slots hold {counted}")
            entries += counted
        linked = 0
        for level in range(WHEEL_LEVELS):
            for slot_index in range(WHEEL_SLOTS):
                link = self.wheel.slots[level][slot_index]
                if (link != NULL) != (((self.wheel.occupied[level] >> slot_index) & 1) == 1):
                    raise AssertionError(f"wheel level {level} slot {slot_index}: occupancy bit wrong")
                expected_pprev = &self.wheel.slots[level][slot_index]
                while link != NULL:
                    linked += 1
                    if not (link.flags & ENTRY_HAS_TTL):
                        raise AssertionError("wheel links an entry without a ttl")
                    if entry_ttl(link).pprev != expected_pprev:
                        raise AssertionError("wheel back-link broken")
                    deadline = entry_ttl(link).deadline_ms
                    if deadline < self.wheel.cursor_ms:
                        # Overdue: only the level-0 slot the cursor is on may hold it.
                        if level != 0 or slot_index != whl_digit(self.wheel.cursor_ms, 0):
                            raise AssertionError(f"overdue entry filed at level {level} slot {slot_index}")
                    elif (whl_digit(deadline, level) != slot_index
                            or (deadline >> (WHEEL_SLOT_BITS * (level + 1)))
                            != (self.wheel.cursor_ms >> (WHEEL_SLOT_BITS * (level + 1)))):
                        raise AssertionError(f"entry filed at level {level} slot {slot_index} "
                                             f"does not match its deadline {deadline}")
                    elif slot_index < whl_digit(self.wheel.cursor_ms, level):
                        # (== is a cascade the budget interrupted, resumed next call)
                        raise AssertionError(f"wheel level {level} slot {slot_index} is behind the cursor")
                    if tbl_find_entry(&self.table, link, 0) < 0 and (
                            not self.migrating or tbl_find_entry(&self.old_table, link, self.migrate_pos) < 0):
                        raise AssertionError("wheel links an entry the table does not hold")
                    expected_pprev = &entry_ttl(link).next
                    link = entry_ttl(link).next
        if linked != self.wheel.count or linked != with_ttl:
            raise AssertionError(
                f"wheel count {self.wheel.count}, linked {linked}, entries with ttl {with_ttl}")
        return entries


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
            core.begin()
            return core.store(ref.ptr, ref.length, buf._buf, value_length, ttl_ms, mode,
                              buf._buf + value_length, buf._length - value_length)
        finally:
            key_release(&ref)
            core._give_back_scratch(buf)

    def delete(self, key):
        """Remove key; True when it existed."""
        cdef Core core = self._core
        cdef KeyRef ref
        core.begin()
        ref_key(self, &ref, key)
        try:
            return core.remove(ref.ptr, ref.length) == 1
        finally:
            key_release(&ref)

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
        core.begin()
        ref_key(self, &ref, key)
        try:
            if subtract:
                core.decrement(ref.ptr, ref.length, d, &result)
            else:
                core.increment(ref.ptr, ref.length, d, &result)
        finally:
            key_release(&ref)
        return result

    def expire(self, key, ttl):
        """Make key expire ttl seconds from now; True when the key exists."""
        cdef Core core = self._core
        cdef int64_t ttl_ms = ttl_to_ms(ttl, False)
        cdef KeyRef ref
        core.begin()
        ref_key(self, &ref, key)
        try:
            return core.set_expiry(ref.ptr, ref.length, ttl_ms) == 1
        finally:
            key_release(&ref)

    def persist(self, key):
        """Drop key's ttl; True when it had one (False: missing or no ttl)."""
        cdef Core core = self._core
        cdef KeyRef ref
        core.begin()
        ref_key(self, &ref, key)
        try:
            return core.persist(ref.ptr, ref.length) == 1
        finally:
            key_release(&ref)

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
            core.begin()
            had = core.exchange(ref.ptr, ref.length, buf._buf, buf._length, ttl_ms, old)
        finally:
            key_release(&ref)
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
            core.begin()
            return core.remove_if_equal(ref.ptr, ref.length, buf._buf, buf._length) == 1
        finally:
            key_release(&ref)
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
            core.begin()
            at = 0
            for i in range(n):
                core.store(buf._buf + at, spans[2 * i] - at,
                           buf._buf + spans[2 * i], spans[2 * i + 1] - spans[2 * i],
                           ttl_ms, STORE_ALWAYS, NULL, 0)
                at = spans[2 * i + 1]
        finally:
            free(spans)

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
            core.begin()
            for i in range(n):
                removed += core.remove(buf._buf + at, ends[i] - at)
                at = ends[i]
        finally:
            free(ends)
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

    def __len__(self):
        """Live keys (in this namespace); never counts an expired key."""
        self._core.begin()
        return self._core.count(PyBytes_AS_STRING(self._prefix), PyBytes_GET_SIZE(self._prefix))

    def flush(self):
        """Remove every key (of this namespace only, for a view); how many."""
        self._core.begin()
        return self._core.remove_prefixed(PyBytes_AS_STRING(self._prefix),
                                          PyBytes_GET_SIZE(self._prefix))

    def purge_expired(self, budget_ms=1.0):
        """Reclaim expired keys for up to budget_ms milliseconds; how many were
        reclaimed. The whole engine's, also when called on a view."""
        cdef bint more
        cdef double budget = budget_ms
        if not isfinite(budget) or budget < 0:
            raise InvalidArgumentError(f"budget_ms must be >= 0, got {budget_ms!r}")
        return self._core.reclaim(<int64_t>(budget * 1000.0), &more)

    def tick(self, budget_ms=1.0):
        """The engine's one housekeeping step (expiry reclaim, resize
        migration), for up to budget_ms milliseconds; True while work is
        pending (call again soon). The whole engine's, also on a view."""
        cdef double budget = budget_ms
        if not isfinite(budget) or budget < 0:
            raise InvalidArgumentError(f"budget_ms must be >= 0, got {budget_ms!r}")
        return self._core.tick(<int64_t>(budget * 1000.0)) == 1

    def info(self):
        """Figures about the engine: keys (entries held, including expired ones
        not reclaimed yet: len() is the exact live count), memory_bytes, hits,
        misses, expired (reclaimed so far), keys_with_ttl, capacity, ..."""
        self._core.begin()
        result = self._core.info()
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

    def __init__(self, clock=None, *, reclaim_interval=None):
        if clock is not None and not callable(clock):
            raise InvalidArgumentError("clock must be a callable returning seconds")
        self._core = Core(clock)
        self._prefix = b""
        if reclaim_interval is not None:
            self.start_reclaimer(reclaim_interval)

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
        return f"<kvstore.Engine keys={self._core.table.count + self._core.old_table.count}>"


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
