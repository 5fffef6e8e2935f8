# Types of the hierarchical timing wheel; the code is in wheel.pyx.

# WHEEL_LEVELS levels of WHEEL_SLOTS slots, each slot the head of an
# intrusive list of entries (TtlBlock.next/pprev). Level L slot s holds the
# entries whose deadline first differs from `cursor_ms` in base-64 digit L and
# has digit value s there.
ctypedef struct Wheel:
    int64_t cursor_ms                        # next ms to process: every entry with a
                                             # deadline < cursor_ms has been reclaimed
    size_t count                             # entries linked into the wheel
    uint64_t occupied[WHEEL_LEVELS]          # bit s set when slot s of that level is non-empty
    Entry* slots[WHEEL_LEVELS][WHEEL_SLOTS]
