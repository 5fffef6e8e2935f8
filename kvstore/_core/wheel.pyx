# The expiry wheel: a hierarchical timing wheel over entries with a ttl.
# Included into _engine.pyx; types in wheel.pxd.
#
# Time is in milliseconds on the Core's clock. The wheel has WHEEL_LEVELS
# levels of 64 slots. Read a deadline as base-64 digits; an entry lives at the
# level of the highest digit in which its deadline differs from the cursor,
# in the slot named by that digit:
#
#     cursor   = ... 07 | 12 | 40      (digits, level 2 | 1 | 0)
#     deadline = ... 07 | 15 | 03  ->  level 1, slot 15  (fires in 3*64-37 ms)
#     deadline = ... 07 | 12 | 45  ->  level 0, slot 45  (fires in 5 ms)
#
# Level 0 slots are 1 ms wide and hold entries that expire exactly then;
# level L slots are 64**L ms wide. When the cursor's digit L moves onto a
# non-empty slot, that slot is "cascaded": its entries are filed again
# relative to the new cursor, which puts each at a lower level. Every
# non-empty slot of level L therefore has a digit above the cursor's digit L,
# and a 64-bit occupancy word per level finds the next slot with work by a
# bit scan, so idle stretches of any length cost a handful of operations.
#
# Work is bounded per call: whl_advance() stops after `budget` entries
# (reclaimed or re-filed) and resumes where it stopped on the next call; a
# half-cascaded slot simply stays the cursor's current slot. While the cursor
# lags behind the clock, a cascade reclaims the entries already due instead
# of re-filing them, so a backlog costs one step per entry. Each entry is
# re-filed at most WHEEL_LEVELS-1 times over its life, so the total cost is
# O(levels) per entry, paid in small pieces.
#
# Unlinking is O(1) with no search: TtlBlock.pprev points at whatever points
# at the entry (a slot head or the previous entry's `next`), as in the Linux
# kernel's hlist. Cost per entry with a ttl: its 24-byte TtlBlock.


cdef inline int whl_digit(int64_t t, int level) noexcept nogil:
    return <int>((t >> (WHEEL_SLOT_BITS * level)) & (WHEEL_SLOTS - 1))


cdef void whl_link(Wheel* w, Entry* e) noexcept nogil:
    """File e (which has a ttl) in the slot its deadline maps to from the cursor."""
    cdef TtlBlock* tb = entry_ttl(e)
    cdef int64_t deadline = tb.deadline_ms
    if deadline < w.cursor_ms:
        # Already due but the cursor has not reached it: the next slot processed.
        deadline = w.cursor_ms
    cdef uint64_t differs = <uint64_t>(deadline ^ w.cursor_ms)
    cdef int level = 0
    if differs != 0:
        level = (63 - kv_clz64(differs)) // WHEEL_SLOT_BITS
        if level >= WHEEL_LEVELS:
            # Beyond the wheel's span (a clock past 2**48 ms); MAX_TTL_MS keeps
            # real deadlines far from here. Park it on the top level's last slot.
            level = WHEEL_LEVELS - 1
    cdef int slot = whl_digit(deadline, level)
    if level == WHEEL_LEVELS - 1 and differs >> (WHEEL_SLOT_BITS * WHEEL_LEVELS):
        slot = WHEEL_SLOTS - 1
    cdef Entry** head = &w.slots[level][slot]
    tb.next = head[0]
    tb.pprev = head
    if head[0] != NULL:
        entry_ttl(head[0]).pprev = &tb.next
    head[0] = e
    w.occupied[level] |= (<uint64_t>1) << slot
    w.count += 1


cdef void whl_unlink(Wheel* w, Entry* e) noexcept nogil:
    cdef TtlBlock* tb = entry_ttl(e)
    cdef Entry** first = &w.slots[0][0]
    cdef Py_ssize_t index
    tb.pprev[0] = tb.next
    if tb.next != NULL:
        entry_ttl(tb.next).pprev = tb.pprev
    elif tb.pprev >= first and tb.pprev < first + WHEEL_LEVELS * WHEEL_SLOTS:
        # e was alone in its slot: the slot is empty now.
        index = tb.pprev - first
        w.occupied[index // WHEEL_SLOTS] &= ~((<uint64_t>1) << (index % WHEEL_SLOTS))
    tb.next = NULL
    tb.pprev = NULL
    w.count -= 1


cdef int64_t whl_next_event(Wheel* w) noexcept nogil:
    """The earliest time after the cursor at which a slot needs processing
    (a level-0 slot to reclaim or a higher slot to cascade); INT64_MAX if none."""
    cdef int64_t cursor = w.cursor_ms
    cdef int level, shift, digit
    cdef uint64_t later
    for level in range(WHEEL_LEVELS):
        shift = WHEEL_SLOT_BITS * level
        digit = whl_digit(cursor, level)
        # Slots strictly after the cursor's digit (2 << 63 wraps to 0: none).
        later = w.occupied[level] & ~(((<uint64_t>2) << digit) - 1)
        if later:
            return (((cursor >> (shift + WHEEL_SLOT_BITS)) << (shift + WHEEL_SLOT_BITS))
                    | (<int64_t>kv_ctz64(later) << shift))
    return INT64_MAX


cdef bint whl_advance(Core core, int64_t now_ms, Py_ssize_t* budget) noexcept:
    """Reclaim entries due at or before now_ms, at most budget[0] of them
    (re-filed entries and slot jumps count too). True when the wheel is
    caught up with now_ms; False when the budget ran out first."""
    cdef Wheel* w = &core.wheel
    cdef int level, digit
    cdef Entry* e
    cdef int64_t next_event
    while True:
        # Cascade the cursor's current slot on every level above 0, highest
        # first: re-filed entries only ever land on lower levels.
        for level in range(WHEEL_LEVELS - 1, 0, -1):
            digit = whl_digit(w.cursor_ms, level)
            while (w.occupied[level] >> digit) & 1:
                if budget[0] <= 0:
                    return False
                e = w.slots[level][digit]
                if entry_ttl(e).deadline_ms <= now_ms:
                    # Due already (the cursor is catching up): reclaim it now
                    # rather than walk it down the levels first.
                    core._reclaim(e)
                else:
                    whl_unlink(w, e)
                    whl_link(w, e)
                budget[0] -= 1
        if w.cursor_ms > now_ms:
            return True
        digit = whl_digit(w.cursor_ms, 0)
        while (w.occupied[0] >> digit) & 1:
            if budget[0] <= 0:
                return False
            core._reclaim(w.slots[0][digit])
            budget[0] -= 1
        next_event = whl_next_event(w)
        w.cursor_ms = next_event if next_event <= now_ms + 1 else now_ms + 1
        budget[0] -= 1


cdef void whl_reset(Wheel* w, int64_t cursor_ms) noexcept nogil:
    """Forget every link (the caller frees the entries)."""
    cdef int level, slot
    for level in range(WHEEL_LEVELS):
        w.occupied[level] = 0
        for slot in range(WHEEL_SLOTS):
            w.slots[level][slot] = NULL
    w.count = 0
    w.cursor_ms = cursor_ms


cdef int whl_check(Wheel* w, TablePair* tables, size_t with_ttl) except -1:
    """Verify the wheel's invariants against the table pair (with_ttl: the
    entries with a ttl the tables hold). O(n): tests and KVSTORE_DEBUG builds."""
    cdef int level, slot_index
    cdef size_t linked = 0
    cdef Entry* link
    cdef Entry** expected_pprev
    cdef int64_t deadline
    cdef SlotRef ref
    for level in range(WHEEL_LEVELS):
        for slot_index in range(WHEEL_SLOTS):
            link = w.slots[level][slot_index]
            if (link != NULL) != (((w.occupied[level] >> slot_index) & 1) == 1):
                raise AssertionError(f"wheel level {level} slot {slot_index}: occupancy bit wrong")
            expected_pprev = &w.slots[level][slot_index]
            while link != NULL:
                linked += 1
                if not (link.flags & ENTRY_HAS_TTL):
                    raise AssertionError("wheel links an entry without a ttl")
                if entry_ttl(link).pprev != expected_pprev:
                    raise AssertionError("wheel back-link broken")
                deadline = entry_ttl(link).deadline_ms
                if deadline < w.cursor_ms:
                    # Overdue: only the level-0 slot the cursor is on may hold it.
                    if level != 0 or slot_index != whl_digit(w.cursor_ms, 0):
                        raise AssertionError(f"overdue entry filed at level {level} slot {slot_index}")
                elif (whl_digit(deadline, level) != slot_index
                        or (deadline >> (WHEEL_SLOT_BITS * (level + 1)))
                        != (w.cursor_ms >> (WHEEL_SLOT_BITS * (level + 1)))):
                    raise AssertionError(f"entry filed at level {level} slot {slot_index} "
                                         f"does not match its deadline {deadline}")
                elif slot_index < whl_digit(w.cursor_ms, level):
                    # (== is a cascade the budget interrupted, resumed next call)
                    raise AssertionError(f"wheel level {level} slot {slot_index} is behind the cursor")
                if not tp_find_entry(tables, link, &ref):
                    raise AssertionError("wheel links an entry the table does not hold")
                expected_pprev = &entry_ttl(link).next
                link = entry_ttl(link).next
    if linked != w.count or linked != with_ttl:
        raise AssertionError(f"wheel count {w.count}, linked {linked}, entries with ttl {with_ttl}")
    return 0
