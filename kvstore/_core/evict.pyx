# Eviction under max_memory / max_keys (issue 12). Included into _engine.pyx
# after table.pyx and wheel.pyx; types in evict.pxd.
#
# What is bounded. `used memory` = the slab charge of every entry
# (kv_entry_charge: the object or malloc chunk, evict.h) + the slot arrays +
# the S3-FIFO ring and ghost: every byte memory_bytes counts except the slab
# pages' free space (free objects, page headers, spare pages), which the
# next write of the same size reuses. A write that may grow memory first
# evicts until used + its own charge (+ a table growth it would trigger) fits
# max_memory, so after any call used <= max_memory + the entry being written.
# memory_bytes stays within one slab page per size class in use above it in
# steady state (holes are refilled); see docs/eviction.md.
#
# How victims are chosen: no list through the entries. Sampled policies take
# `samples` random entries from the table (tp_sample: consecutive slots from
# a random start) into Redis's 16-entry eviction pool ordered by score
# (evict.c evictionPoolPopulate), and evict the best, re-scored first. The
# random policies take the first eligible sampled entry. S3-FIFO keeps its
# small queue S as a ring of entry pointers and its main queue M as the
# insertion times in the entries, picked through the same pool; its ghost is
# a direct-mapped table of key fingerprints.
#
# Safety: the pool and the ring hold entry pointers only while the entries
# live: _dispose() (every free but the replacing write's) calls ev_forget,
# the replacing write calls ev_replaced, and _free_all() ev_reset.

from libc.stdint cimport UINT64_MAX

EVICTION_POLICIES = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
                     "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "s3fifo")
cdef tuple _EVICT_REASONS = (None, "max_memory", "max_keys")

cdef enum:
    EVICT_MAX_SAMPLES = 64          # largest maxmemory-samples accepted
    S3_GHOST_MIN = 64
    S3_RING_MIN = 64


# ------------------------------------------------------------------ charges

cdef inline size_t ev_charge(Entry* e) noexcept nogil:
    return kv_entry_charge(entry_size(e))


cdef inline size_t slots_charge(size_t bytes) noexcept nogil:
    # What slots_alloc() adds to memory_bytes for a block of `bytes`.
    if bytes >= SLOTS_MMAP_BYTES:
        return kv_page_round(bytes)
    return kv_chunk_size(bytes)


cdef size_t ev_slot_bytes(TablePair* p) noexcept nogil:
    """The slot arrays' share of memory_bytes (a draining table's released
    pages are gone already)."""
    cdef size_t total = 0
    if p.table.slots != NULL:
        total += slots_charge((p.table.mask + 1) * sizeof(uint64_t))
    if p.migrating and p.old.slots != NULL:
        total += slots_charge((p.old.mask + 1) * sizeof(uint64_t)) - p.old.released * sizeof(uint64_t)
    return total


cdef inline size_t ev_used(Core c) noexcept:
    return c.ev.entry_bytes + ev_slot_bytes(&c.tables) + c.ev.struct_bytes


cdef inline size_t ev_growth(Core c, Py_ssize_t new_keys) noexcept:
    """Bytes a table growth triggered by new_keys more entries would add."""
    cdef size_t capacity = c.tables.table.mask + 1
    if new_keys <= 0 or c.tables.migrating:
        return 0
    if (tp_count(&c.tables) + <size_t>new_keys) * 4 <= capacity * TABLE_MAX_LOAD_QUARTERS:
        return 0
    return slots_charge(capacity * 2 * sizeof(uint64_t))


# ------------------------------------------------------------ per-key state

cdef inline bint ev_is_lru(int policy) noexcept nogil:
    return policy == EV_ALLKEYS_LRU or policy == EV_VOLATILE_LRU


cdef inline bint ev_is_lfu(int policy) noexcept nogil:
    return policy == EV_ALLKEYS_LFU or policy == EV_VOLATILE_LFU


cdef inline bint ev_is_volatile(int policy) noexcept nogil:
    return EV_VOLATILE_LRU <= policy <= EV_VOLATILE_TTL


cdef inline uint8_t lfu_decayed(Evictor* ev, Entry* e) noexcept nogil:
    # Redis's LFUDecrAndReturn: one off per elapsed decay period.
    cdef uint32_t periods = <uint32_t>(ev.clock // LFU_DECAY_ACCESSES) - e.spare
    if periods > e.reserved:
        return 0
    return <uint8_t>(e.reserved - periods)


cdef inline uint8_t lfu_incr(uint8_t counter, uint64_t* rng) noexcept nogil:
    # Redis's LFULogIncr: the likelier the smaller the counter.
    cdef double r, p
    cdef int base
    if counter == 255:
        return 255
    r = <double>(tp_random(rng) >> 11) * (1.0 / 9007199254740992.0)
    base = <int>counter - LFU_INIT_VAL
    if base < 0:
        base = 0
    p = 1.0 / (base * LFU_LOG_FACTOR + 1)
    if r < p:
        counter += 1
    return counter


cdef inline void ev_touch(Evictor* ev, Entry* e, uint64_t* rng) noexcept nogil:
    """An access (read or write) to a live entry; only while a limit is set."""
    cdef int policy = ev.policy
    ev.clock += 1
    if ev_is_lru(policy):
        e.spare = ev.clock
    elif ev_is_lfu(policy):
        e.reserved = lfu_incr(lfu_decayed(ev, e), rng)
        e.spare = ev.clock // LFU_DECAY_ACCESSES
    elif policy == EV_S3FIFO and (e.reserved & 3) < S3_FREQ_MAX:
        # Saturating: a hot key's entry is not written again.
        e.reserved = (e.reserved & 3) + 1


cdef inline uint64_t ev_score(Evictor* ev, Entry* e) noexcept nogil:
    """Higher evicts first (Redis's pool `idle`)."""
    cdef int policy = ev.policy
    if policy == EV_VOLATILE_TTL:
        return UINT64_MAX - <uint64_t>entry_ttl(e).deadline_ms
    if ev_is_lfu(policy):
        return 255 - lfu_decayed(ev, e)
    return <uint32_t>(ev.clock - e.spare)      # LRU idle time; S3-FIFO M age


cdef inline bint ev_eligible(int policy, Entry* e) noexcept nogil:
    if ev_is_volatile(policy):
        return (e.flags & ENTRY_HAS_TTL) != 0
    if policy == EV_S3FIFO:
        return (e.flags & ENTRY_IN_SMALL) == 0
    return True


# ------------------------------------------------------------------ the pool

cdef void pool_remove_at(Evictor* ev, int i) noexcept nogil:
    cdef int j
    for j in range(i, ev.pool_n - 1):
        ev.pool[j] = ev.pool[j + 1]
        ev.pool_score[j] = ev.pool_score[j + 1]
    ev.pool_n -= 1


cdef void pool_forget(Evictor* ev, Entry* e) noexcept nogil:
    cdef int i
    for i in range(ev.pool_n):
        if ev.pool[i] == e:
            pool_remove_at(ev, i)
            return


cdef void pool_insert(Evictor* ev, Entry* e, uint64_t score) noexcept nogil:
    """Keep the EVICT_POOL_SIZE best candidates, ascending by score."""
    cdef int i, j
    pool_forget(ev, e)
    if ev.pool_n == EVICT_POOL_SIZE:
        if score <= ev.pool_score[0]:
            return
        pool_remove_at(ev, 0)
    j = ev.pool_n
    while j > 0 and ev.pool_score[j - 1] > score:
        ev.pool[j] = ev.pool[j - 1]
        ev.pool_score[j] = ev.pool_score[j - 1]
        j -= 1
    ev.pool[j] = e
    ev.pool_score[j] = score
    ev.pool_n += 1


cdef Entry* ev_sample_pick(Core c, Entry* keep, bint* expired) noexcept:
    """A victim from sampling: for the random policies the first eligible
    entry sampled, else the pool's best after adding a fresh sample (re-scored:
    an entry touched since it was pooled goes back with its new score). An
    expired entry met on the way is returned at once with *expired set (expired
    keys go before live ones). NULL: no eligible entry found."""
    cdef Evictor* ev = &c.ev
    cdef Entry* picked[EVICT_MAX_SAMPLES]
    cdef Py_ssize_t got, i
    cdef int rounds = EVICT_VOLATILE_ROUNDS if ev_is_volatile(ev.policy) else 1
    cdef int r, tries
    cdef bint random_policy = ev.policy == EV_ALLKEYS_RANDOM or ev.policy == EV_VOLATILE_RANDOM
    cdef Entry* e
    cdef uint64_t score
    expired[0] = False
    for r in range(rounds):
        got = tp_sample(&c.tables, picked, ev.samples, &c.rng)
        for i in range(got):
            e = picked[i]
            if e == keep:
                continue
            if (e.flags & ENTRY_HAS_TTL) and entry_ttl(e).deadline_ms <= c.now_ms:
                expired[0] = True
                return e
            if not ev_eligible(ev.policy, e):
                continue
            if random_policy:
                return e
            pool_insert(ev, e, ev_score(ev, e))
        if ev.pool_n:
            break
    tries = 0
    while ev.pool_n and tries < EVICT_POOL_SIZE:
        tries += 1
        e = ev.pool[ev.pool_n - 1]
        ev.pool_n -= 1
        if e == keep or not ev_eligible(ev.policy, e):
            continue
        score = ev_score(ev, e)
        if score < ev.pool_score[ev.pool_n] and ev.pool_n:
            pool_insert(ev, e, score)
            continue
        return e
    return NULL


# ---------------------------------------------------------------- S3-FIFO

cdef inline size_t s3_small_target(Core c) noexcept:
    cdef size_t target = tp_count(&c.tables) * S3_SMALL_PERCENT // 100
    return target if target > S3_MIN_SMALL else S3_MIN_SMALL


cdef inline void s3_to_main(Evictor* ev, Entry* e, bint hit) noexcept nogil:
    # Into M: a key hit in S starts as M's newest; one never hit is moved on
    # (insert-time cap) as M's oldest, first in line, as S would evict it.
    e.flags &= ~ENTRY_IN_SMALL
    e.reserved = 0
    e.spare = ev.clock if hit else ev.clock - 0x40000000


cdef Entry* ring_pop(Evictor* ev) noexcept nogil:
    """S's oldest live entry, taken out of the ring (flag cleared), or NULL."""
    cdef Entry* e
    while ev.ring_head != ev.ring_tail:
        e = ev.ring[ev.ring_head & ev.ring_mask]
        ev.ring_head += 1
        if e != NULL:
            e.flags &= ~ENTRY_IN_SMALL
            ev.small_count -= 1
            return e
    return NULL


cdef inline uint32_t ghost_print(uint32_t hash) noexcept nogil:
    return hash | 1


cdef inline size_t ghost_slot(Evictor* ev, uint32_t fingerprint) noexcept nogil:
    return (<uint32_t>(fingerprint * <uint32_t>2654435769U)) >> ev.ghost_shift


cdef void s3_inserted(Core c, Entry* e) noexcept:
    cdef Evictor* ev = &c.ev
    cdef uint32_t fp
    cdef size_t slot, cap
    cdef Entry* head
    e.reserved = 0
    if ev.ghost != NULL:
        fp = ghost_print(e.hash)
        slot = ghost_slot(ev, fp)
        if ev.ghost[slot] == fp:
            # Evicted from S recently and back: straight into M.
            ev.ghost[slot] = 0
            e.spare = ev.clock
            return
    if ev.ring == NULL:
        e.spare = ev.clock
        return
    cap = 2 * s3_small_target(c)
    while ev.small_count >= cap or <size_t>(ev.ring_tail - ev.ring_head) > ev.ring_mask:
        head = ring_pop(ev)
        if head == NULL:
            break
        s3_to_main(ev, head, (head.reserved & 3) >= S3_MOVE_THRESHOLD)
    ev.ring[ev.ring_tail & ev.ring_mask] = e
    e.spare = ev.ring_tail
    e.flags |= ENTRY_IN_SMALL
    ev.ring_tail += 1
    ev.small_count += 1


cdef Entry* s3_pick(Core c, Entry* keep, bint* expired, bint* from_small) noexcept:
    """S3-FIFO's victim (Yang et al., SOSP'23, with sampled M): from S while
    it holds its share, moving keys hit there on to M; else M's oldest
    (re)insertion, reinserting keys hit since. Bounded by EVICT_S3_STEPS."""
    cdef Evictor* ev = &c.ev
    cdef int steps = 0
    cdef bint force_small = False
    cdef Entry* e
    expired[0] = False
    while True:
        if ev.small_count and (force_small or ev.small_count >= s3_small_target(c)):
            e = ring_pop(ev)
            if e == NULL:
                return NULL
            if e == keep or ((e.reserved & 3) >= S3_MOVE_THRESHOLD and steps < EVICT_S3_STEPS):
                s3_to_main(ev, e, True)
                steps += 1
                continue
            from_small[0] = True
            return e
        e = ev_sample_pick(c, keep, expired)
        if e == NULL:
            if ev.small_count == 0 or force_small:
                return NULL
            force_small = True      # M has no candidate: S it is
            continue
        if expired[0] or (e.reserved & 3) == 0 or steps >= EVICT_S3_STEPS:
            from_small[0] = False
            return e
        # Hit since its (re)insertion: back to M's head with one hit less.
        e.reserved = (e.reserved & 3) - 1
        e.spare = ev.clock
        steps += 1


cdef void s3_drop(Core c) noexcept:
    """Leave S3-FIFO: every S key joins M, ring and ghost are freed."""
    cdef Evictor* ev = &c.ev
    cdef Entry* e
    if ev.ring != NULL:
        e = ring_pop(ev)
        while e != NULL:
            e.spare = ev.clock
            e = ring_pop(ev)
        slots_free(&c.memory_bytes, ev.ring, (ev.ring_mask + 1) * sizeof(Entry*))
        ev.struct_bytes -= slots_charge((ev.ring_mask + 1) * sizeof(Entry*))
        ev.ring = NULL
        ev.ring_mask = 0
    ev.ring_head = ev.ring_tail = 0
    ev.small_count = 0
    if ev.ghost != NULL:
        slots_free(&c.memory_bytes, ev.ghost, (ev.ghost_mask + 1) * sizeof(uint32_t))
        ev.struct_bytes -= slots_charge((ev.ghost_mask + 1) * sizeof(uint32_t))
        ev.ghost = NULL
        ev.ghost_mask = 0


cdef inline size_t pow2_at_least(size_t n) noexcept nogil:
    cdef size_t p = 1
    while p < n:
        p <<= 1
    return p


cdef void s3_grow(Core c, size_t need, Py_ssize_t new_keys) noexcept:
    """Size the ring (twice S's share) and the ghost (one slot per key) to the
    key count, when the bytes fit under max_memory beside the write: they
    never cause an eviction of their own. A ghost that grows starts empty."""
    cdef Evictor* ev = &c.ev
    cdef size_t keys = tp_count(&c.tables) + <size_t>(new_keys if new_keys > 0 else 0)
    cdef size_t want, old_cap, cost, used
    cdef Entry** ring
    cdef uint32_t* ghost
    cdef uint32_t pos
    used = ev_used(c) + need
    old_cap = ev.ring_mask + 1 if ev.ring != NULL else 0
    want = pow2_at_least(2 * (keys * S3_SMALL_PERCENT // 100) + S3_MIN_SMALL)
    if want < S3_RING_MIN:
        want = S3_RING_MIN
    if want > old_cap:
        cost = slots_charge(want * sizeof(Entry*))
        if ev.max_memory == 0 or used + cost <= ev.max_memory:
            ring = <Entry**>slots_alloc(&c.memory_bytes, want * sizeof(Entry*))
            if ring != NULL:
                pos = ev.ring_head
                while pos != ev.ring_tail:
                    ring[pos & (want - 1)] = ev.ring[pos & ev.ring_mask]
                    pos += 1
                if ev.ring != NULL:
                    slots_free(&c.memory_bytes, ev.ring, old_cap * sizeof(Entry*))
                    ev.struct_bytes -= slots_charge(old_cap * sizeof(Entry*))
                    used -= slots_charge(old_cap * sizeof(Entry*))
                ev.ring = ring
                ev.ring_mask = want - 1
                ev.struct_bytes += cost
                used += cost
    old_cap = ev.ghost_mask + 1 if ev.ghost != NULL else 0
    want = pow2_at_least(keys)
    if want < S3_GHOST_MIN:
        want = S3_GHOST_MIN
    if want > old_cap:
        cost = slots_charge(want * sizeof(uint32_t))
        if ev.max_memory == 0 or used + cost <= ev.max_memory:
            ghost = <uint32_t*>slots_alloc(&c.memory_bytes, want * sizeof(uint32_t))
            if ghost != NULL:
                if ev.ghost != NULL:
                    slots_free(&c.memory_bytes, ev.ghost, old_cap * sizeof(uint32_t))
                    ev.struct_bytes -= slots_charge(old_cap * sizeof(uint32_t))
                ev.ghost = ghost
                ev.ghost_mask = want - 1
                ev.ghost_shift = 32 - kv_ctz64(want)
                ev.struct_bytes += cost


# ------------------------------------------------------- the entry hooks

cdef inline void ev_inserted(Core c, Entry* e) noexcept:
    """A new key's entry was placed (its hash is set; _put charged it)."""
    cdef Evictor* ev = &c.ev
    if not ev.active:
        return
    ev.clock += 1
    if ev.policy == EV_S3FIFO:
        s3_inserted(c, e)
    elif ev_is_lfu(ev.policy):
        e.reserved = LFU_INIT_VAL
        e.spare = ev.clock // LFU_DECAY_ACCESSES
    else:
        e.spare = ev.clock


cdef inline void ev_replaced(Core c, Entry* old, Entry* e) noexcept:
    """e took old's slot (same key; _put charged it, and the lookup that found
    old counted the access); old is freed next without ev_forget."""
    cdef Evictor* ev = &c.ev
    cdef int i
    ev.entry_bytes -= ev_charge(old)
    e.reserved = old.reserved
    e.spare = old.spare
    if (old.flags & ENTRY_IN_SMALL) and ev.ring != NULL:
        e.flags |= ENTRY_IN_SMALL
        ev.ring[old.spare & ev.ring_mask] = e
    for i in range(ev.pool_n):
        if ev.pool[i] == old:
            ev.pool[i] = e


cdef inline void ev_forget(Core c, Entry* e) noexcept:
    """e is about to be freed: drop every pointer to it."""
    cdef Evictor* ev = &c.ev
    ev.entry_bytes -= ev_charge(e)
    if ev.pool_n:
        pool_forget(ev, e)
    if (e.flags & ENTRY_IN_SMALL) and ev.ring != NULL:
        ev.ring[e.spare & ev.ring_mask] = NULL
        ev.small_count -= 1


cdef inline void ev_reset(Evictor* ev) noexcept nogil:
    """Every entry is gone."""
    ev.entry_bytes = 0
    ev.pool_n = 0
    ev.ring_head = ev.ring_tail = 0
    ev.small_count = 0


# ---------------------------------------------------------------- evicting

cdef int ev_over(Core c, size_t need, Py_ssize_t new_keys) noexcept:
    """Which limit a write of `need` bytes and `new_keys` keys would break (0: none)."""
    cdef Evictor* ev = &c.ev
    if ev.max_keys and tp_count(&c.tables) + <size_t>(new_keys if new_keys > 0 else 0) > ev.max_keys:
        return EVICT_FOR_KEYS
    if ev.max_memory and ev_used(c) + need + ev_growth(c, new_keys) > ev.max_memory:
        return EVICT_FOR_MEMORY
    return 0


cdef int ev_remove(Core c, Entry* e, int reason, bint expired) except -1:
    """Take a victim out: a mutation record, the listener's record, the drop."""
    cdef SlotRef ref
    cdef WriteBuffer log
    if not tp_find_entry(&c.tables, e, &ref):
        pool_forget(&c.ev, e)
        return 0
    if expired:
        c._mutated(MUT_RECLAIM, entry_key(e), e.key_length, NULL, 0, entry_ttl(e).deadline_ms)
        c.expired += 1
    else:
        if c.on_evict is not None:
            log = c.evict_log
            log.write_u8(<uint8_t>reason)
            log.write_u32(e.key_length)
            log.write_raw(entry_key(e), e.key_length)
        # Logged as a removal (Redis propagates a DEL for an evicted key).
        c._mutated(MUT_REMOVE, entry_key(e), e.key_length, NULL, 0, 0)
        c.ev.evicted += 1
    c._drop(&ref)
    c._after_delete()
    return 1


cdef Entry* wheel_any(Wheel* w, Entry* keep) noexcept nogil:
    """Some entry with a ttl other than keep, from the wheel's first occupied
    slot (for volatile-* when its sample rounds met no key with a ttl)."""
    cdef int level
    cdef Entry* e
    cdef uint64_t bits
    for level in range(WHEEL_LEVELS):
        bits = w.occupied[level]
        while bits:
            e = w.slots[level][kv_ctz64(bits)]
            while e != NULL:
                if e != keep:
                    return e
                e = entry_ttl(e).next
            bits &= bits - 1
    return NULL


cdef int ev_evict_one(Core c, Entry* keep, int reason) except -1:
    """Evict (or reclaim, when expired) one key by the policy. 1: done; 0:
    nothing is evictable."""
    cdef Evictor* ev = &c.ev
    cdef bint expired = False
    cdef bint from_small = False
    cdef Entry* e
    cdef uint32_t fp
    if ev.policy == EV_NOEVICTION:
        return 0
    if tp_count(&c.tables) - (1 if keep != NULL else 0) == 0:
        return 0
    if ev_is_volatile(ev.policy) and c.wheel.count - (
            1 if keep != NULL and (keep.flags & ENTRY_HAS_TTL) else 0) == 0:
        return 0
    if ev.policy == EV_S3FIFO:
        e = s3_pick(c, keep, &expired, &from_small)
    else:
        e = ev_sample_pick(c, keep, &expired)
    if e == NULL and ev_is_volatile(ev.policy):
        e = wheel_any(&c.wheel, keep)
    if e == NULL:
        return 0
    if from_small and not expired and ev.ghost != NULL:
        fp = ghost_print(e.hash)
        ev.ghost[ghost_slot(ev, fp)] = fp
    ev_remove(c, e, reason, expired)
    return 1


cdef Py_ssize_t ev_make_room(Core c, size_t need, Py_ssize_t new_keys, Entry* keep,
                             bint may_refuse) except -1:
    """Before a write of `need` bytes adding `new_keys` keys (keep: the entry
    it overwrites, never a victim): evict until it fits, at most
    EVICT_MAX_PER_CALL keys. Nothing evictable: OutOfMemoryError when
    may_refuse (nothing written yet). How many entries went (the caller's
    SlotRef is stale when > 0)."""
    cdef Evictor* ev = &c.ev
    cdef Py_ssize_t removed = 0
    cdef Py_ssize_t budget
    cdef int reason, r
    cdef bint reclaimed = False
    if keep != NULL and ev.pool_n:
        pool_forget(ev, keep)
    if c.wheel.count:
        c.now()         # sampling spots expired keys by it (no ttls: no clock read)
    while True:
        reason = ev_over(c, need, new_keys)
        if reason == 0 or removed >= EVICT_MAX_PER_CALL:
            break
        if not reclaimed and c.backlog and c.wheel.count:
            # Expired keys first: catch the wheel up a chunk before evicting.
            reclaimed = True
            budget = PURGE_CHUNK_ENTRIES
            c.backlog = not whl_advance(c, c.now_ms, &budget)
            removed += 1
            continue
        r = ev_evict_one(c, keep, reason)
        if r == 0:
            if may_refuse:
                raise OutOfMemoryError(
                    f"OOM: the write needs room over the {_limit_text(c, reason)} and "
                    f"policy {EVICTION_POLICIES[ev.policy]} has nothing to evict")
            break
        removed += 1
    if ev.policy == EV_S3FIFO:
        s3_grow(c, need, new_keys)
    return removed


cdef inline size_t ev_new_charge(Py_ssize_t key_length, Py_ssize_t value_length,
                                 bint has_ttl) noexcept nogil:
    cdef size_t size = sizeof(Entry) + <size_t>key_length + <size_t>value_length
    if has_ttl:
        size += sizeof(TtlBlock)
    return kv_entry_charge(size)


cdef Py_ssize_t ev_write_room(Core c, Py_ssize_t key_length, Py_ssize_t value_length,
                              bint has_ttl, Entry* old) except -1:
    """ev_make_room for one write over old (NULL: a new key). A write that
    does not grow the entry needs no room and is never refused; nor is a
    write of a batch that reserved its room (its stores still evict, since
    the reservation may have evicted keys the batch then writes again)."""
    cdef bint may_refuse = not c.ev.batch
    cdef size_t charge = ev_new_charge(key_length, value_length, has_ttl)
    cdef size_t old_charge
    if old != NULL:
        old_charge = ev_charge(old)
        if charge <= old_charge:
            return 0
        return ev_make_room(c, charge - old_charge, 0, old, may_refuse)
    return ev_make_room(c, charge, 1, NULL, may_refuse)


cdef int ev_batch_item(Core c, const char* key, Py_ssize_t key_length, Py_ssize_t value_length,
                       bint has_ttl, size_t* need, Py_ssize_t* new_keys) noexcept:
    """Add one batch item's growth to (*need, *new_keys) (before Core.reserve)."""
    cdef SlotRef ref
    cdef Entry* old = c._find(key, key_length, &ref)
    cdef size_t charge = ev_new_charge(key_length, value_length, has_ttl)
    if old == NULL:
        need[0] += charge
        new_keys[0] += 1
    elif charge > ev_charge(old):
        need[0] += charge - ev_charge(old)
    return 0


cdef dict ev_info(Core c):
    cdef uint64_t lookups = c.hits + c.misses
    return {
        "max_memory": c.ev.max_memory,
        "max_keys": c.ev.max_keys,
        "eviction_policy": EVICTION_POLICIES[c.ev.policy],
        "eviction_samples": c.ev.samples,
        "evicted_keys": c.ev.evicted,
        "used_memory": ev_used(c),
        "hit_ratio": c.hits / <double>lookups if lookups else 0.0,
    }


cdef str _limit_text(Core c, int reason):
    if reason == EVICT_FOR_KEYS:
        return f"max_keys limit ({c.ev.max_keys} keys)"
    return f"max_memory limit ({c.ev.max_memory} bytes, {ev_used(c)} used)"


cdef bint ev_step(Core c, int64_t started_us, int64_t budget_us) except -1:
    """tick()'s share: evict down to the limits in chunks until the budget
    is spent (configure() lowering them). True while still over."""
    cdef int reason, i
    if not c.ev.active:
        return False
    while True:
        for i in range(EVICT_TICK_CHUNK):
            reason = ev_over(c, 0, 0)
            if reason == 0:
                return False
            if ev_evict_one(c, NULL, reason) != 1:
                return False
        if kv_monotonic_us() - started_us >= budget_us:
            return ev_over(c, 0, 0) != 0


cdef int ev_deliver(Core c) except -1:
    """Call on_evict(key, reason) for each key evicted since the last delivery,
    in eviction order; outside any table operation."""
    cdef WriteBuffer log = c.evict_log
    cdef Reader rd
    cdef list events = []
    cdef uint8_t reason
    cdef Py_ssize_t n
    if log is None or log._length == 0 or c.delivering_evictions:
        return 0
    rd_init(&rd, log._buf, log._length)
    while rd.pos < rd.length:
        reason = rd_u8(&rd)
        n = rd_u32(&rd)
        events.append((rd_raw(&rd, n)[:n], _EVICT_REASONS[reason]))
    log.clear()
    c.delivering_evictions = True
    try:
        for key, why in events:
            c.on_evict(key, why)
    finally:
        c.delivering_evictions = False
    return 0


# ---------------------------------------------------------- configuration

cdef int ev_configure(Core c, size_t max_memory, size_t max_keys, int policy,
                      int samples) except -1:
    cdef Evictor* ev = &c.ev
    cdef bint active = max_memory != 0 or max_keys != 0
    if ev.policy == EV_S3FIFO and (policy != EV_S3FIFO or not active):
        s3_drop(c)
    if policy != ev.policy:
        ev.pool_n = 0
    ev.policy = policy
    ev.max_memory = max_memory
    ev.max_keys = max_keys
    ev.samples = samples
    ev.active = active
    return 0


cdef void ev_release(Core c) noexcept:
    s3_drop(c)


def parse_memory(value):
    """A byte count from an int or a string: "256M", "2G", "100k", "64mb",
    "1GiB" (case-blind; every multiple binary, as kvstore-server's sizes,
    where Redis reads "1m" as 10**6). None or 0: no limit (returned as 0)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InvalidArgumentError(f"max_memory must be bytes or a size string, not {value!r}")
    if isinstance(value, int):
        if value < 0 or value >= 2**63:
            raise InvalidArgumentError(f"max_memory must be >= 0 bytes, got {value}")
        return value
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"max_memory must be bytes or a size string like '256mb', not {type(value).__name__}")
    text = value.strip().lower()
    units = (("kib", 1024), ("mib", 1024 ** 2), ("gib", 1024 ** 3),
             ("kb", 1024), ("mb", 1024 ** 2), ("gb", 1024 ** 3),
             ("k", 1024), ("m", 1024 ** 2), ("g", 1024 ** 3), ("b", 1))
    factor = 1
    for suffix, f in units:
        if text.endswith(suffix):
            text = text[:-len(suffix)].strip()
            factor = f
            break
    if not text.isdigit():
        raise InvalidArgumentError(f"max_memory {value!r} is not a size like 256mb, 2gb or 1000000")
    result = int(text) * factor
    if result >= 2**63:
        raise InvalidArgumentError(f"max_memory {value!r} is too large")
    return result


def parse_max_keys(value):
    """None or 0: no limit; else a positive int."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidArgumentError(f"max_keys must be an int >= 0 or None, got {value!r}")
    return value


def parse_policy(value):
    """The index of a policy name (EVICTION_POLICIES)."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in EVICTION_POLICIES:
            return EVICTION_POLICIES.index(name)
    raise InvalidArgumentError(
        f"eviction must be one of {', '.join(EVICTION_POLICIES)}; got {value!r}")


def parse_samples(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= EVICT_MAX_SAMPLES:
        raise InvalidArgumentError(
            f"eviction_samples must be an int from 1 to {EVICT_MAX_SAMPLES}, got {value!r}")
    return value
