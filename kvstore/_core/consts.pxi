# Engine limits and tunables, with their units. Tags live in _codec.pxd,
# op and status codes in _protocol.pxd.

cdef enum:
    # Table (table.pyx). Capacity is a power of two, never below this.
    TABLE_MIN_CAPACITY = 16
    # Grow (to double) when count exceeds 3/4 of capacity: with Robin Hood
    # probing the mean probe stays near 2 slots there, and a resize leaves the
    # new table at 3/8 load.
    TABLE_MAX_LOAD_QUARTERS = 3
    # Shrink when count falls below capacity / 8 (to a quarter-full table), so
    # memory comes back after mass deletes or expiry, without flapping.
    TABLE_SHRINK_DIVISOR = 8
    # A slot stores the probe distance in 8 bits; a longer chain forces growth.
    TABLE_MAX_PROBE_DISTANCE = 255
    # Old-table slots moved to the new table by every call while a resize is
    # under way (Redis's dictRehash step). 64 slots cost well under 10 us.
    MIGRATE_SLOTS_PER_CALL = 64

    # Wheel (wheel.pyx): WHEEL_LEVELS levels of 2**WHEEL_SLOT_BITS slots; level
    # L slots are 64**L ms wide, so 8 levels span 2**48 ms (8,900 years).
    WHEEL_SLOT_BITS = 6
    WHEEL_SLOTS = 64
    WHEEL_LEVELS = 8
    # Entries each call may reclaim or re-file on its way in (Redis's lazy +
    # active expiry, bounded): about 1-2 us of work.
    STEP_ENTRIES_PER_CALL = 16
    # purge_expired() works in chunks of this many entries between clock checks.
    PURGE_CHUNK_ENTRIES = 256

    # KVSTORE_DEBUG builds validate on every call up to this many entries,
    # and on every (n / this + 1)-th call above it.
    DEBUG_CHECK_ENTRIES = 2048

    # Largest count a scan() step accepts (a hint; work per step is 10x it).
    SCAN_MAX_COUNT = 1048576
    # -- issue 10: one SCAN step stops once its keys pass this many bytes
    # (bounds the reply and the memory of a step whatever count asks).
    SCAN_STEP_MAX_BYTES = 1048576

    # remaining_ms() answers for keys without a ttl, and for missing keys.
    TTL_NO_EXPIRY = -1
    TTL_MISSING = -2

    # Largest encoded value the engine stores (Redis's proto-max-bulk-len).
    MAX_VALUE_BYTES = 536870912

    # Entry flags.
    ENTRY_HAS_TTL = 1


cdef extern from *:
    """
    /* Longest accepted ttl: 2**40 ms, about 34.8 years (beyond an enum's int). */
    #define KV_MAX_TTL_MS ((int64_t)1 << 40)
    """
    int64_t MAX_TTL_MS "KV_MAX_TTL_MS"
