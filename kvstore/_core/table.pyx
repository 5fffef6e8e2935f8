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
    e.version = 0
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
