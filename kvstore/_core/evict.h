/* Eviction helpers that need slab.h's rules (issue 12).
 *
 * What the slab charges memory_bytes for one entry of `bytes` bytes, minus
 * the page it may sit in: its object (rounded to the 8-byte granule) when the
 * slab serves it, or the malloc chunk above SLAB_MAX_OBJECT and in sanitizer
 * builds. The eviction limit counts these charges (Redis's used_memory
 * counts malloc'd sizes the same way), so evicting one entry makes room for
 * one of the same size at once, instead of waiting for a whole 16 KiB page
 * to empty (which random eviction reaches only after evicting nearly every
 * key on it).
 */
#ifndef KVSTORE_EVICT_H
#define KVSTORE_EVICT_H

#include <stddef.h>
#include "slab.h"

static inline size_t kv_entry_charge(size_t bytes) {
#ifdef KV_UNDER_ASAN
    const int use_malloc = 1;
#else
    const int use_malloc = bytes > SLAB_MAX_OBJECT;
#endif
    if (use_malloc) return (bytes + 8 + 15) & ~(size_t)15;
    return slab_class_of(bytes) * SLAB_GRANULE;
}

#endif
