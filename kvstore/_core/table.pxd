# Types of the engine's hash table; the code is in table.pyx. Both are
# textually included into _engine (never built on their own).

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "_core/siphash.h":
    uint64_t kv_siphash13(uint64_t k0, uint64_t k1, const char* data, size_t length) nogil

cdef extern from "_core/slab.h":
    ctypedef struct Slab:
        pass
    size_t SLAB_PAGE_BYTES
    void slab_init(Slab* slab, size_t* used_bytes) nogil
    void* slab_alloc(Slab* slab, size_t bytes) nogil
    void slab_free(Slab* slab, void* p, size_t bytes) nogil
    void slab_release_spares(Slab* slab) nogil
    void* kv_map(size_t bytes) nogil
    void kv_unmap(void* p, size_t bytes) nogil
    size_t kv_page_round(size_t bytes) nogil

cdef extern from "_core/glob.h":
    # Iterative glob match (see the header); *steps counts the work done.
    bint kv_glob_match(const char* pattern, size_t pattern_length, const char* key,
                       size_t key_length, uint64_t* steps) nogil

cdef extern from "_core/sysutil.h":
    int KVSTORE_DEBUG
    int64_t kv_monotonic_us() nogil
    size_t kv_chunk_size(size_t n) nogil
    int kv_ctz64(uint64_t v) nogil
    int kv_clz64(uint64_t v) nogil
    uint64_t kv_rev64(uint64_t v) nogil
    bint kv_add_overflow(int64_t a, int64_t b, int64_t* r) nogil
    bint kv_sub_overflow(int64_t a, int64_t b, int64_t* r) nogil


# One stored key. Allocated on its own (never moved by a resize: only slots
# move), so the wheel can link entries directly. Private: reach the parts
# through the entry_* accessors in table.pyx.
ctypedef struct Entry:
    uint32_t hash            # low 32 bits of the key's SipHash (home slot, tag)
    uint32_t value_length    # bytes of the encoded value
    uint16_t key_length      # bytes of the key, 1..65535
    uint8_t flags            # ENTRY_HAS_TTL
    uint8_t reserved
    uint32_t spare           # unused, always 0. Kept on purpose (the header stays
                             # 16 bytes either way): eviction (next issue) needs a
                             # per-entry access clock or LFU counter here, and the
                             # snapshot design may need a per-entry epoch.
    # Followed by [TtlBlock when flags & ENTRY_HAS_TTL], key bytes, value bytes.


# Present only in entries with a ttl: entries without one pay nothing for expiry.
ctypedef struct TtlBlock:
    int64_t deadline_ms      # on the Core's clock; expired when now_ms >= deadline_ms
    Entry* next              # next entry in the same wheel slot
    Entry** pprev            # the pointer that points at this entry (slot head or
                             # previous entry's next), so unlinking needs no search


# Open addressing with Robin Hood probing and backward-shift deletion. A slot is
# one 64-bit word: the entry pointer in bits 0-47, the probe distance from the
# home slot in bits 48-55, and an 8-bit hash tag in bits 56-63; 0 is empty.
ctypedef struct Table:
    uint64_t* slots
    size_t mask              # capacity - 1; capacity is a power of two
    size_t count             # entries in this table (expired ones included until reclaimed)
    size_t released          # leading slots already given back to the OS (a draining old table)


# What a scan step keeps while it visits buckets (table.pyx, tbl_scan_bucket).
ctypedef struct ScanFilter:
    const char* prefix           # only keys that start with it (and are longer)
    Py_ssize_t prefix_length
    const char* pattern          # glob over the key without its prefix; NULL: all
    Py_ssize_t pattern_length
    int64_t now_ms               # entries expired at this time are skipped
    Py_ssize_t found             # keys written to the output so far
    Py_ssize_t work              # buckets visited + entries looked at (the step's bound)
    uint64_t glob_steps          # work done by the matcher (tests bound it)
    Py_ssize_t max_bytes         # issue 10: the step stops once its keys pass this many bytes


cdef inline void sf_init(ScanFilter* f, const char* prefix, Py_ssize_t prefix_length,
                         const char* pattern, Py_ssize_t pattern_length, int64_t now_ms,
                         Py_ssize_t max_bytes) noexcept:
    # Every field, every time: a filter on the stack starts as garbage.
    f.prefix = prefix
    f.prefix_length = prefix_length
    f.pattern = pattern
    f.pattern_length = pattern_length
    f.now_ms = now_ms
    f.found = 0
    f.work = 0
    f.glob_steps = 0
    f.max_bytes = max_bytes


# The table pair: the table plus, during an incremental resize, the old table
# being drained into it. table.pyx's tp_* functions are the only code that
# knows there may be two tables: find/insert/delete, resize start/step, scan,
# sampling and full iteration all go through them.
ctypedef struct TablePair:
    Table table              # where new entries go
    Table old                # the table being drained into `table` (live while migrating)
    bint migrating           # a resize is under way
    size_t migrate_pos       # old slots below this have been moved (and may be unmapped)
    size_t* used             # the owner's byte counter (Core.memory_bytes)
    Entry* orphan            # an entry a failed emergency rebuild could not place
                             # (out of memory): in no table now; the owner frees it

# Where an entry sits: which table, which slot, and that table's floor (slots
# below it are migrated away). Valid until the next change to the pair.
ctypedef struct SlotRef:
    Table* table
    size_t index
    size_t floor

# A full walk over both tables (tp_iter_*). Deleting the current entry with
# tp_iter_delete keeps the walk exact: the slot is looked at again, since a
# backward shift moves the next entry into it.
ctypedef struct PairIter:
    int which                # 0: table, 1: old table, 2: done
    size_t index             # slot to look at next
    SlotRef current          # the slot of the entry tp_iter_next returned last
