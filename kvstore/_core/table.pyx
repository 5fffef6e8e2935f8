# The engine's hash table: open addressing with Robin Hood probing,
# backward-shift deletion and incremental resizing. Included into _engine.pyx.
#
# Layout. The table is an array of 64-bit slots pointing at separately
# allocated entries (types in table.pxd):
#
#     slot word:  | tag (8) | dist (8) |          entry pointer (48)          |
#     entry:      [Entry header 16 B][TtlBlock 24 B, only with a ttl][key][value]
#
# `dist` is how far the slot is from the key's home slot (hash & mask); `tag`
# is 8 more bits of the hash. A lookup stops at an empty slot or at a slot
# whose dist is smaller than the distance walked so far (Robin Hood keeps
# chains sorted by dist), and dereferences an entry only when its tag matches,
# so a miss rarely touches entry memory. Insertion moves the entry further
# from home than the incoming one along (the "rich" give way to the "poor");
# deletion shifts the following run back one slot instead of leaving a
# tombstone, so chains never silt up. Entries themselves never move: only
# slot words do, which is what lets the wheel link entries directly.
#
# Resizing is incremental, as Redis's dict does it: a resize allocates the new
# slot array and keeps the old one beside it; every call moves the next
# MIGRATE_SLOTS_PER_CALL old slots over, lookups consult both tables, and new
# entries go to the new one. Old slots below `migrate_pos` are empty, so a
# lookup in the old table starts at max(home, migrate_pos): every slot from
# there up to the key is still in place. Deleting in the old table only ever
# shifts entries at or above the deleted slot, which keeps that true.
#
# Cost per key (16-byte key, 32-byte bytes value, 64-bit Linux): the entry is
# 16 + 16 + 37 = 69 bytes, a 72-byte slab object; the slot is 8 bytes at a
# load between 3/8 and 3/4, i.e. 11-21 bytes per key. A ttl adds 24 bytes to
# the entry.

from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy


# ---------------------------------------------------------------- allocation
# Every byte the engine holds is counted in one place, so memory_bytes is a
# sum and not a guess (Redis's zmalloc). Entries come from the slab
# (slab.h); slot arrays from malloc when small and straight from mmap when
# large, so neither ever waits on the malloc heap's housekeeping.

cdef enum:
    SLOTS_MMAP_BYTES = 65536
    SLOTS_RELEASE_BYTES = 65536


cdef void* slots_alloc(size_t* used, size_t bytes) noexcept nogil:
    cdef void* p
    if bytes >= SLOTS_MMAP_BYTES:
        p = kv_map(bytes)
        if p != NULL:
            used[0] += kv_page_round(bytes)
        return p
    p = calloc(1, bytes)
    if p != NULL:
        used[0] += kv_chunk_size(bytes)
    return p


cdef void slots_free(size_t* used, void* p, size_t bytes) noexcept nogil:
    if p == NULL:
        return
    if bytes >= SLOTS_MMAP_BYTES:
        used[0] -= kv_page_round(bytes)
        kv_unmap(p, bytes)
    else:
        used[0] -= kv_chunk_size(bytes)
        free(p)


# ------------------------------------------------------------------- entries

cdef inline TtlBlock* entry_ttl(Entry* e) noexcept nogil:
    return <TtlBlock*>(<char*>e + sizeof(Entry))


cdef inline char* entry_key(Entry* e) noexcept nogil:
    if e.flags & ENTRY_HAS_TTL:
        return <char*>e + sizeof(Entry) + sizeof(TtlBlock)
    return <char*>e + sizeof(Entry)


cdef inline char* entry_value(Entry* e) noexcept nogil:
    return entry_key(e) + e.key_length


cdef inline size_t entry_size(Entry* e) noexcept nogil:
    cdef size_t size = sizeof(Entry) + e.key_length + e.value_length
    if e.flags & ENTRY_HAS_TTL:
        size += sizeof(TtlBlock)
    return size


cdef inline void entry_free(Slab* slab, Entry* e) noexcept nogil:
    if e != NULL:
        slab_free(slab, e, entry_size(e))


cdef inline bint entry_expired(Entry* e, int64_t now_ms) noexcept nogil:
    return (e.flags & ENTRY_HAS_TTL) != 0 and entry_ttl(e).deadline_ms <= now_ms


cdef Entry* entry_new(Slab* slab, uint32_t hash, const char* key, Py_ssize_t key_length,
                      const char* value, Py_ssize_t value_length, bint has_ttl) noexcept nogil:
    """A new entry holding copies of key and value, or NULL when out of memory.
    Its TtlBlock (if any) is left for the caller to fill and link."""
    cdef size_t size = sizeof(Entry) + <size_t>key_length + <size_t>value_length
    if has_ttl:
        size += sizeof(TtlBlock)
    cdef Entry* e = <Entry*>slab_alloc(slab, size)
    if e == NULL:
        return NULL
    e.hash = hash
    e.value_length = <uint32_t>value_length
    e.key_length = <uint16_t>key_length
    e.flags = ENTRY_HAS_TTL if has_ttl else 0
    e.reserved = 0
    e.spare = 0
    memcpy(entry_key(e), key, key_length)
    memcpy(entry_value(e), value, value_length)
    return e


# --------------------------------------------------------------------- slots

cdef enum:
    SLOT_POINTER_BITS = 48
    SLOT_DIST_SHIFT = 48
    SLOT_TAG_SHIFT = 56

cdef uint64_t SLOT_POINTER_MASK = (<uint64_t>1 << SLOT_POINTER_BITS) - 1
cdef uint64_t SLOT_DIST_ONE = <uint64_t>1 << SLOT_DIST_SHIFT


cdef inline Entry* slot_entry(uint64_t slot) noexcept nogil:
    return <Entry*><uintptr_t>(slot & SLOT_POINTER_MASK)


cdef inline uint32_t slot_dist(uint64_t slot) noexcept nogil:
    return <uint32_t>((slot >> SLOT_DIST_SHIFT) & 0xFF)


cdef inline uint64_t hash_tag(uint32_t hash) noexcept nogil:
    # Bits 24-31: disjoint from the home-slot bits for tables up to 2**24 slots.
    return (hash >> 24) & 0xFF


cdef inline uint64_t make_slot(Entry* e, uint32_t dist) noexcept nogil:
    return (<uint64_t><uintptr_t>e) | (<uint64_t>dist << SLOT_DIST_SHIFT) | (hash_tag(e.hash) << SLOT_TAG_SHIFT)


cdef inline bint pointer_fits_slot(void* p) noexcept nogil:
    return ((<uint64_t><uintptr_t>p) & ~SLOT_POINTER_MASK) == 0


# ------------------------------------------------------------------- probing

cdef int tbl_init(Table* t, size_t* used, size_t capacity) noexcept nogil:
    """Give t an empty slot array of `capacity` (a power of two); -1 when out of memory."""
    cdef uint64_t* slots = <uint64_t*>slots_alloc(used, capacity * sizeof(uint64_t))
    if slots == NULL:
        return -1
    t.slots = slots
    t.mask = capacity - 1
    t.count = 0
    t.released = 0
    return 0


cdef void tbl_release(Table* t, size_t* used) noexcept nogil:
    cdef size_t bytes = (t.mask + 1) * sizeof(uint64_t)
    cdef size_t gone = t.released * sizeof(uint64_t)
    if t.slots != NULL and gone:
        kv_unmap(<char*>t.slots + gone, bytes - gone)
        used[0] -= kv_page_round(bytes) - gone
    else:
        slots_free(used, t.slots, bytes)
    t.slots = NULL
    t.mask = 0
    t.count = 0
    t.released = 0


cdef void tbl_release_below(Table* t, size_t* used, size_t below) noexcept nogil:
    """Give back the pages of a draining table that hold only slots < below
    (never read again), so a big resize returns memory as it goes instead of
    in one large munmap at the end. Only mmap'd slot arrays do this."""
    cdef size_t bytes = (t.mask + 1) * sizeof(uint64_t)
    cdef size_t upto
    if bytes < SLOTS_MMAP_BYTES:
        return
    upto = (below * sizeof(uint64_t)) & ~(<size_t>SLOTS_RELEASE_BYTES - 1)
    if upto >= t.released * sizeof(uint64_t) + SLOTS_RELEASE_BYTES:
        kv_unmap(<char*>t.slots + t.released * sizeof(uint64_t),
                 upto - t.released * sizeof(uint64_t))
        used[0] -= upto - t.released * sizeof(uint64_t)
        t.released = upto // sizeof(uint64_t)


cdef inline Py_ssize_t tbl_find(Table* t, uint32_t hash, const char* key, Py_ssize_t key_length,
                                size_t floor) noexcept nogil:
    """Slot index of key in t, or -1. Slots below `floor` have been migrated
    away (old table during a resize); pass 0 for the current table."""
    if t.slots == NULL:
        return -1
    cdef size_t mask = t.mask
    cdef size_t i = hash & mask
    cdef uint32_t dist = 0
    cdef uint64_t tag = hash_tag(hash)
    cdef uint64_t slot
    cdef Entry* e
    if i < floor:
        dist = <uint32_t>(floor - i)
        i = floor
    while True:
        slot = t.slots[i]
        if slot == 0 or slot_dist(slot) < dist:
            return -1
        if (slot >> SLOT_TAG_SHIFT) == tag:
            e = slot_entry(slot)
            if (e.hash == hash and e.key_length == key_length
                    and memcmp(entry_key(e), key, key_length) == 0):
                return <Py_ssize_t>i
        dist += 1
        i = (i + 1) & mask
        if i < floor:
            return -1       # wrapped into the migrated (possibly unmapped) part


cdef Py_ssize_t tbl_find_entry(Table* t, Entry* target, size_t floor) noexcept nogil:
    """Slot index holding exactly this entry, or -1 (the wheel knows entries, not slots)."""
    if t.slots == NULL:
        return -1
    cdef size_t mask = t.mask
    cdef size_t i = target.hash & mask
    cdef uint32_t dist = 0
    cdef uint64_t slot
    if i < floor:
        dist = <uint32_t>(floor - i)
        i = floor
    while True:
        slot = t.slots[i]
        if slot == 0 or slot_dist(slot) < dist:
            return -1
        if slot_entry(slot) == target:
            return <Py_ssize_t>i
        dist += 1
        i = (i + 1) & mask
        if i < floor:
            return -1


cdef Entry* tbl_place(Table* t, Entry* e) noexcept nogil:
    """Insert an entry whose key is not in t. Returns NULL when placed; when a
    probe distance would overflow its 8 bits it returns the entry still
    looking for a slot (not necessarily e) and the caller must rebuild bigger."""
    cdef size_t mask = t.mask
    cdef size_t i = e.hash & mask
    cdef uint32_t dist = 0
    cdef uint64_t carried = make_slot(e, 0)
    cdef uint64_t slot
    while True:
        slot = t.slots[i]
        if slot == 0:
            t.slots[i] = carried | (<uint64_t>dist << SLOT_DIST_SHIFT)
            t.count += 1
            return NULL
        if slot_dist(slot) < dist:
            t.slots[i] = carried | (<uint64_t>dist << SLOT_DIST_SHIFT)
            dist = slot_dist(slot)
            carried = slot & ~(<uint64_t>0xFF << SLOT_DIST_SHIFT)
        dist += 1
        if dist > TABLE_MAX_PROBE_DISTANCE:
            return slot_entry(carried)
        i = (i + 1) & mask


cdef void tbl_delete_at(Table* t, size_t i, size_t floor) noexcept nogil:
    """Empty slot i and shift the run after it back by one (no tombstones).
    Slots below floor are migrated away and count as empty."""
    cdef size_t mask = t.mask
    cdef size_t j
    cdef uint64_t slot
    while True:
        j = (i + 1) & mask
        if j < floor:
            break
        slot = t.slots[j]
        if slot == 0 or slot_dist(slot) == 0:
            break
        t.slots[i] = slot - SLOT_DIST_ONE
        i = j
    t.slots[i] = 0
    t.count -= 1


cdef inline size_t capacity_for(size_t count) noexcept nogil:
    """Smallest power-of-two capacity that holds count at no more than 3/8 load."""
    cdef size_t capacity = TABLE_MIN_CAPACITY
    while capacity * 3 < count * 8:
        capacity <<= 1
    return capacity


# ---------------------------------------------------------------- the pair
# Everything below works on a TablePair and is the only code in the engine
# that knows a resize keeps two tables. Core sees entries and SlotRefs.

cdef int tp_init(TablePair* p, size_t* used) noexcept nogil:
    """An empty pair with a minimal table; -1 when out of memory."""
    p.used = used
    p.migrating = False
    p.migrate_pos = 0
    p.orphan = NULL
    p.old.slots = NULL
    p.old.mask = 0
    p.old.count = 0
    p.old.released = 0
    return tbl_init(&p.table, used, TABLE_MIN_CAPACITY)


cdef void tp_release(TablePair* p) noexcept nogil:
    """Give back both slot arrays (the entries are the owner's to free)."""
    tbl_release(&p.old, p.used)
    tbl_release(&p.table, p.used)
    p.migrating = False
    p.migrate_pos = 0


cdef void tp_reset(TablePair* p) noexcept nogil:
    """Back to an empty minimal table, after the owner freed every entry."""
    cdef size_t i
    tbl_release(&p.old, p.used)
    p.migrating = False
    p.migrate_pos = 0
    if p.table.mask + 1 != TABLE_MIN_CAPACITY:
        tbl_release(&p.table, p.used)
        # 128 bytes: cannot fail in practice; a failure leaves a 0-slot table
        # that tbl_find treats as empty and tp_insert grows.
        tbl_init(&p.table, p.used, TABLE_MIN_CAPACITY)
    else:
        for i in range(p.table.mask + 1):
            p.table.slots[i] = 0
        p.table.count = 0


cdef inline size_t tp_count(TablePair* p) noexcept nogil:
    """Entries held (expired ones included until reclaimed)."""
    return p.table.count + p.old.count


cdef inline Entry* tp_find(TablePair* p, uint32_t hash, const char* key, Py_ssize_t key_length,
                           SlotRef* ref) noexcept nogil:
    """The entry for key and where it sits, or NULL."""
    cdef Py_ssize_t i = tbl_find(&p.table, hash, key, key_length, 0)
    if i >= 0:
        ref.table = &p.table
        ref.floor = 0
    elif p.migrating:
        i = tbl_find(&p.old, hash, key, key_length, p.migrate_pos)
        if i < 0:
            return NULL
        ref.table = &p.old
        ref.floor = p.migrate_pos
    else:
        return NULL
    ref.index = <size_t>i
    return slot_entry(ref.table.slots[i])


cdef bint tp_find_entry(TablePair* p, Entry* e, SlotRef* ref) noexcept nogil:
    """Where exactly this entry sits (the wheel knows entries, not slots)."""
    cdef Py_ssize_t i = tbl_find_entry(&p.table, e, 0)
    if i >= 0:
        ref.table = &p.table
        ref.floor = 0
    elif p.migrating:
        i = tbl_find_entry(&p.old, e, p.migrate_pos)
        if i < 0:
            return False
        ref.table = &p.old
        ref.floor = p.migrate_pos
    else:
        return False
    ref.index = <size_t>i
    return True


cdef inline void tp_replace(SlotRef* ref, Entry* e) noexcept nogil:
    """Put e (same key, same hash) in the slot of the entry it replaces."""
    e.hash = slot_entry(ref.table.slots[ref.index]).hash
    ref.table.slots[ref.index] = make_slot(e, slot_dist(ref.table.slots[ref.index]))


cdef inline void tp_delete(SlotRef* ref) noexcept nogil:
    tbl_delete_at(ref.table, ref.index, ref.floor)


cdef int tp_rebuild(TablePair* p, Entry* homeless) noexcept nogil:
    """Move everything into a table twice as big, at once. Only reached when
    a probe chain would exceed 255 slots, which a keyed hash makes
    practically impossible; it keeps the table correct if it happens. Out of
    memory: homeless becomes p.orphan and -1."""
    cdef Table fresh
    cdef PairIter it
    cdef Entry* e
    if tbl_init(&fresh, p.used, (p.table.mask + 1) * 2) < 0:
        p.orphan = homeless
        return -1
    tp_iter_init(&it)
    e = tp_iter_next(p, &it)
    while e != NULL:
        tbl_place(&fresh, e)        # a doubled table cannot overflow again in practice
        e = tp_iter_next(p, &it)
    tbl_place(&fresh, homeless)
    tbl_release(&p.old, p.used)
    tbl_release(&p.table, p.used)
    p.table = fresh
    p.migrating = False
    p.migrate_pos = 0
    return 0


cdef int tp_start_resize(TablePair* p, size_t capacity) noexcept nogil:
    """Begin an incremental resize to `capacity` slots; -1 when out of memory
    (the pair stays as it was, still correct)."""
    cdef Table fresh
    if p.migrating:
        tp_step(p, <Py_ssize_t>(p.old.mask + 1))
    if tbl_init(&fresh, p.used, capacity) < 0:
        return -1
    p.old = p.table
    p.table = fresh
    p.migrating = True
    p.migrate_pos = 0
    return 0


cdef void tp_maybe_shrink(TablePair* p) noexcept nogil:
    """Start a shrink when the table is mostly empty (never below the minimum)."""
    cdef size_t capacity = p.table.mask + 1
    if (not p.migrating and capacity > TABLE_MIN_CAPACITY
            and p.table.count * TABLE_SHRINK_DIVISOR < capacity):
        tp_start_resize(p, capacity_for(p.table.count))   # failing is fine: an economy


cdef void tp_step(TablePair* p, Py_ssize_t slots) noexcept nogil:
    """Move up to `slots` old slots into the table (Redis's dictRehash step)."""
    cdef Table* old = &p.old
    cdef uint64_t slot
    cdef Entry* homeless
    while slots > 0 and p.migrating:
        slot = old.slots[p.migrate_pos]
        if slot != 0:
            old.slots[p.migrate_pos] = 0
            old.count -= 1
            homeless = tbl_place(&p.table, slot_entry(slot))
            if homeless != NULL:
                tp_rebuild(p, homeless)     # ends the migration either way
                return
        p.migrate_pos += 1
        slots -= 1
        if p.migrate_pos > old.mask:
            tbl_release(old, p.used)
            p.migrating = False
            p.migrate_pos = 0
            # Deletes during a shrink may call for a smaller table still.
            tp_maybe_shrink(p)
            return
    if p.migrating:
        tbl_release_below(old, p.used, p.migrate_pos)


cdef int tp_insert(TablePair* p, Entry* e) noexcept nogil:
    """Place a new entry (key known absent), growing first when the load calls
    for it. -1 when out of memory with no room left: e is not placed."""
    cdef size_t capacity = p.table.mask + 1
    cdef size_t total = tp_count(p) + 1
    cdef Entry* homeless
    if total * 4 > capacity * TABLE_MAX_LOAD_QUARTERS:
        if p.migrating:
            # Growing faster than the migration drains: finish it now.
            tp_step(p, <Py_ssize_t>(p.old.mask + 1))
            capacity = p.table.mask + 1
        if (total * 4 > capacity * TABLE_MAX_LOAD_QUARTERS
                and tp_start_resize(p, capacity * 2) < 0 and p.table.count + 1 >= capacity):
            return -1       # (a fuller table still works; growth is retried next insert)
    homeless = tbl_place(&p.table, e)
    if homeless != NULL:
        tp_rebuild(p, homeless)
    return 0


# Full iteration (the validator, flush, teardown). See PairIter in table.pxd.

cdef inline void tp_iter_init(PairIter* it) noexcept nogil:
    it.which = 0
    it.index = 0


cdef Entry* tp_iter_next(TablePair* p, PairIter* it) noexcept nogil:
    """The next entry of the walk, its slot in it.current; NULL at the end."""
    cdef Table* t
    cdef size_t floor
    cdef uint64_t slot
    while it.which < 2:
        if it.which == 0:
            t = &p.table
            floor = 0
        elif p.migrating:
            t = &p.old
            floor = p.migrate_pos
            if it.index < floor:
                it.index = floor
        else:
            break
        while t.slots != NULL and it.index <= t.mask:
            slot = t.slots[it.index]
            if slot != 0:
                it.current.table = t
                it.current.index = it.index
                it.current.floor = floor
                it.index += 1
                return slot_entry(slot)
            it.index += 1
        it.which += 1
        it.index = 0
    it.which = 2
    return NULL


cdef inline void tp_iter_delete(PairIter* it) noexcept nogil:
    """Delete the entry tp_iter_next returned last (the caller frees it) and
    look at its slot again: the backward shift moved the next entry there. A
    shift that wraps from slot 0 to the last slot shows a kept entry twice;
    no entry is ever skipped. Start no resize during the walk."""
    tbl_delete_at(it.current.table, it.current.index, it.current.floor)
    it.index = it.current.index


# Random sampling of entries (eviction), like Redis's dictGetSomeKeys: from a
# random slot, take the entries of consecutive slots in both tables. Not
# uniform (an entry after a long empty stretch is likelier), which is what
# Redis accepts for eviction. Unlike dictGetSomeKeys it returns exactly
# min(n, live entries), never the same slot twice: a caller that asked for 5
# candidates and got 0 would evict nothing and refuse a write it could take.
# The walk stays cheap because a table is at least 1/TABLE_SHRINK_DIVISOR
# full (it shrinks otherwise), so the expected number of slots looked at is
# a small constant per entry asked for, and the worst case is one table.

cdef inline uint64_t tp_random(uint64_t* state) noexcept nogil:
    # xorshift64*: the state must start non-zero.
    cdef uint64_t x = state[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    state[0] = x
    return x * <uint64_t>0x2545F4914F6CDD1D


cdef Py_ssize_t tp_sample(TablePair* p, Entry** out, Py_ssize_t n, uint64_t* rng) noexcept nogil:
    """Up to n distinct entries (expired ones included) into out; how many."""
    cdef size_t maxmask = p.table.mask
    cdef size_t i, steps
    cdef Py_ssize_t stored = 0
    cdef uint64_t slot
    if p.migrating and p.old.mask > maxmask:
        maxmask = p.old.mask
    if n > <Py_ssize_t>tp_count(p):
        n = <Py_ssize_t>tp_count(p)
    steps = maxmask + 1
    i = <size_t>(tp_random(rng) & maxmask)
    while stored < n and steps > 0:
        if i <= p.table.mask:
            slot = p.table.slots[i]
            if slot != 0:
                out[stored] = slot_entry(slot)
                stored += 1
        if p.migrating and i >= p.migrate_pos and i <= p.old.mask and stored < n:
            slot = p.old.slots[i]
            if slot != 0:
                out[stored] = slot_entry(slot)
                stored += 1
        i = (i + 1) & maxmask
        steps -= 1
    return stored


# ------------------------------------------------------------------ scanning
# SCAN visits the table by HOME bucket, not by slot: for cursor bucket b it
# reports the entries whose home is b (hash & mask), wherever Robin Hood
# probing has displaced them. Robin Hood keeps every cluster sorted by home,
# so those entries form one run, found exactly like a lookup walks: start at
# b, skip entries from earlier homes (dist > walked), take those with dist ==
# walked, stop at an empty slot or a later home (dist < walked). Scanning by
# home makes the cursor independent of where entries sit, so insertions and
# backward-shift deletions (which move entries between slots but never change
# their home) cannot make a scan miss a key, and the reverse-binary cursor of
# redis's dictScan carries over unchanged: bucket b of a table of mask m
# covers exactly the buckets b, b + m + 1, ... of any bigger table.

cdef int tbl_scan_bucket(Table* t, size_t floor, size_t bucket, ScanFilter* f,
                         WriteBuffer out) except -1:
    """Write (u16 length + key without prefix) for each live, matching entry
    whose home is `bucket`. Slots below floor are migrated away."""
    cdef size_t mask = t.mask
    cdef size_t i = bucket
    cdef uint32_t walked = 0
    cdef uint64_t slot
    cdef Entry* e
    cdef const char* key
    cdef Py_ssize_t length
    f.work += 1
    if t.slots == NULL:
        return 0
    if i < floor:
        walked = <uint32_t>(floor - i)
        i = floor
    while True:
        slot = t.slots[i]
        if slot == 0 or slot_dist(slot) < walked:
            return 0
        if slot_dist(slot) == walked:
            f.work += 1
            e = slot_entry(slot)
            key = entry_key(e)
            length = e.key_length - f.prefix_length
            if (length > 0 and not entry_expired(e, f.now_ms)
                    and memcmp(key, f.prefix, f.prefix_length) == 0
                    and (f.pattern == NULL
                         or kv_glob_match(f.pattern, f.pattern_length, key + f.prefix_length,
                                          length, &f.glob_steps))):
                out.write_u16(<uint16_t>length)
                out.write_raw(key + f.prefix_length, length)
                f.found += 1
        walked += 1
        i = (i + 1) & mask
        if i < floor:
            return 0


cdef inline uint64_t scan_next_cursor(uint64_t v, uint64_t mask) noexcept nogil:
    """The cursor after v for a table of this mask: increment the reversed
    bits (dictScan), so the buckets sharing low bits come out together."""
    v |= ~mask
    v = kv_rev64(v)
    v += 1
    return kv_rev64(v)


cdef uint64_t tp_scan(TablePair* p, uint64_t cursor, ScanFilter* f, Py_ssize_t count,
                      WriteBuffer out) except? 0xFFFFFFFFFFFFFFFF:
    """One SCAN step from cursor (dictScan): visit the cursor's bucket in the
    smaller table and every bucket of the larger table it expands to, advance
    the cursor, and go on until about count keys were found, the work bound
    (10 per key asked for) is spent, or the scan is complete (0)."""
    cdef Table* small
    cdef Table* large
    cdef size_t small_floor, large_floor
    cdef uint64_t v = cursor
    cdef uint64_t m0, m1
    # Redis's bound: at most ten buckets (here: buckets + entries) per key asked for.
    cdef Py_ssize_t limit = count * 10
    while True:
        if not p.migrating:
            m0 = p.table.mask
            tbl_scan_bucket(&p.table, 0, <size_t>(v & m0), f, out)
            v = scan_next_cursor(v, m0)
        else:
            small = &p.table
            small_floor = 0
            large = &p.old
            large_floor = p.migrate_pos
            if small.mask > large.mask:
                small, large = large, small
                small_floor, large_floor = large_floor, small_floor
            m0 = small.mask
            m1 = large.mask
            tbl_scan_bucket(small, small_floor, <size_t>(v & m0), f, out)
            while True:
                tbl_scan_bucket(large, large_floor, <size_t>(v & m1), f, out)
                v = scan_next_cursor(v, m1)
                if not (v & (m0 ^ m1)):
                    break
        # The byte bound (issue 10): keys are up to 64 KiB each, so a count
        # alone would let one step collect gigabytes.
        if v == 0 or f.found >= count or f.work >= limit or out._length >= f.max_bytes:
            return v


# ---------------------------------------------------------------- validator

cdef Py_ssize_t tp_check(TablePair* p, uint64_t seed0, uint64_t seed1,
                         size_t* with_ttl) except -1:
    """Verify every invariant of both tables; the entry count. O(n): tests
    and KVSTORE_DEBUG builds."""
    cdef Table* tables[2]
    cdef size_t floors[2]
    cdef size_t i, home, mask, counted, entries = 0
    cdef int which
    cdef uint64_t slot, previous
    cdef uint32_t dist
    cdef Entry* e
    tables[0] = &p.table
    floors[0] = 0
    tables[1] = &p.old
    floors[1] = p.migrate_pos
    if not p.migrating and (p.old.slots != NULL or p.old.count != 0):
        raise AssertionError("old table live without a resize under way")
    for which in range(2 if p.migrating else 1):
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
            if e.hash != <uint32_t>kv_siphash13(seed0, seed1, entry_key(e), e.key_length):
                raise AssertionError(f"slot {i}: entry hash is not the key's hash")
            if dist > 0 and i != floors[which]:
                previous = tables[which].slots[(i - 1) & mask]
                if previous == 0 or slot_dist(previous) + 1 < dist:
                    raise AssertionError(f"slot {i}: Robin Hood order broken")
            if e.flags & ENTRY_HAS_TTL:
                with_ttl[0] += 1
        if counted != tables[which].count:
            raise AssertionError(f"table {which}: count {tables[which].count}, slots hold {counted}")
        entries += counted
    if p.orphan != NULL:
        raise AssertionError("an orphaned entry was not disposed of")
    return <Py_ssize_t>entries
