# Types of eviction under a memory or key limit (issue 12); the code is in
# evict.pyx. Both are textually included into _engine (never built alone).
#
# Nothing here is per key beyond the entry's two spare fields: `reserved`
# (u8) and `spare` (u32), whose meaning depends on the policy:
#
#   policy              reserved                      spare
#   *-lru               -                             last access (logical clock)
#   *-lfu               LOG_C counter (Redis)         last decrement period
#   s3fifo              2-bit frequency               M: (re)insertion time
#                                                     S: position in the S ring
#   *-random, *-ttl     -                             -
#
# plus one flag bit, ENTRY_IN_SMALL, for S3-FIFO's small queue.

cdef extern from "_core/evict.h":
    size_t kv_entry_charge(size_t bytes) nogil

cdef enum:
    # Redis's EVPOOL_SIZE and its default maxmemory-samples.
    EVICT_POOL_SIZE = 16
    EVICT_DEFAULT_SAMPLES = 5
    # Victims one write may evict to make room for itself. One is the norm
    # (same-sized entries); a value 64x the typical entry leaves the rest of
    # its excess to the following calls and tick() (Redis's performEvictions
    # stops on a time limit the same way).
    EVICT_MAX_PER_CALL = 64
    # Sample rounds a volatile-* policy tries before it gives up on finding a
    # key with a ttl this call (the keys with one are rare in the table).
    EVICT_VOLATILE_ROUNDS = 8
    # S3-FIFO steps (promotions, reinsertions) one eviction may take before it
    # evicts its current candidate regardless.
    EVICT_S3_STEPS = 32
    # Victims tick() evicts between clock checks while over the limit.
    EVICT_TICK_CHUNK = 64

    # Redis's LFU: LFU_INIT_VAL, lfu-log-factor 10, lfu-decay-time 1. A
    # decay "minute" is this many accesses of the logical clock: the engine
    # never reads the wall clock for a key without a ttl.
    LFU_INIT_VAL = 5
    LFU_LOG_FACTOR = 10
    LFU_DECAY_ACCESSES = 100000

    # S3-FIFO (SOSP'23): the small queue holds 10% of the keys (never fewer
    # than S3_MIN_SMALL); a key hit once in S moves to M (the "t1" variant
    # docs/eviction.md measured best); the ring is capped at twice its share
    # by moving its oldest keys on to M at insert time.
    S3_SMALL_PERCENT = 10
    S3_MIN_SMALL = 16
    S3_MOVE_THRESHOLD = 1
    S3_FREQ_MAX = 3

    # Entry flag (beside consts.pxi's ENTRY_HAS_TTL = 1): in S3-FIFO's S ring.
    ENTRY_IN_SMALL = 2


# Redis's maxmemory-policy values, plus s3fifo. The order is the wire's
# (CONFIG) and info()'s name table (evict.pyx, EVICTION_POLICIES).
cdef enum EvictPolicy:
    EV_NOEVICTION = 0
    EV_ALLKEYS_LRU = 1
    EV_ALLKEYS_LFU = 2
    EV_ALLKEYS_RANDOM = 3
    EV_VOLATILE_LRU = 4
    EV_VOLATILE_LFU = 5
    EV_VOLATILE_RANDOM = 6
    EV_VOLATILE_TTL = 7
    EV_S3FIFO = 8

cdef enum EvictReason:
    EVICT_FOR_MEMORY = 1
    EVICT_FOR_KEYS = 2


ctypedef struct Evictor:
    int policy                   # EvictPolicy
    bint active                  # a limit is set: metadata kept, limits enforced
    size_t max_memory            # bytes of used memory (ev_used); 0: no limit
    size_t max_keys              # 0: no limit
    size_t entry_bytes           # kv_entry_charge of every entry held (always kept)
    size_t struct_bytes          # the S ring and the ghost (counted in memory_bytes too)
    uint32_t clock               # logical clock: one tick per access
    uint64_t evicted             # keys evicted so far
    int samples                  # maxmemory-samples
    int pool_n                   # entries in the pool, sorted by score, best last
    Entry* pool[EVICT_POOL_SIZE]
    uint64_t pool_score[EVICT_POOL_SIZE]
    # S3-FIFO's small queue: a ring of entry pointers, positions counted up
    # from 0 (an entry's `spare` holds its position; slot = position & mask);
    # removed entries leave NULL until the head passes them.
    Entry** ring
    size_t ring_mask             # capacity - 1 (0: no ring)
    uint32_t ring_head
    uint32_t ring_tail
    size_t small_count           # live entries in the ring
    # S3-FIFO's ghost: a direct-mapped table of 32-bit fingerprints of keys
    # evicted from S (a fingerprint is lost to age or to a colliding key).
    uint32_t* ghost
    size_t ghost_mask            # capacity - 1 (0: no ghost)
    int ghost_shift              # 32 - log2(capacity)
    bint batch                   # a batch reserved its room (mset): its stores are not refused
