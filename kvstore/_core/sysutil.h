/* Small system helpers the engine needs from C: a monotonic clock without a
 * Python call, the size of a malloc block (so memory_bytes counts what the allocator
 * hands out, as Redis's zmalloc does), and bit scans. */
#ifndef KVSTORE_SYSUTIL_H
#define KVSTORE_SYSUTIL_H

#include <stdint.h>
#include <time.h>
#include <malloc.h>
#include <stddef.h>

#ifndef KVSTORE_DEBUG
#define KVSTORE_DEBUG 0
#endif

static inline int64_t kv_monotonic_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* What a malloc of n bytes costs, header included, the way glibc lays out
 * chunks (8-byte header, 16-byte granularity, 32-byte minimum). Computed from
 * n rather than asked of the allocator, so memory_bytes does not depend on
 * which free chunk malloc happened to reuse. */
static inline size_t kv_chunk_size(size_t n) {
    size_t chunk = (n + 8 + 15) & ~(size_t)15;
    return chunk < 32 ? 32 : chunk;
}

/* Signed 64-bit arithmetic that reports overflow instead of wrapping. */
static inline int kv_add_overflow(int64_t a, int64_t b, int64_t *r) {
    return __builtin_add_overflow(a, b, r);
}
static inline int kv_sub_overflow(int64_t a, int64_t b, int64_t *r) {
    return __builtin_sub_overflow(a, b, r);
}

/* The bits of v in reverse order (SCAN's reverse-binary cursor). */
static inline uint64_t kv_rev64(uint64_t v) {
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
    return __builtin_bswap64(v);
}

static inline int kv_ctz64(uint64_t v) { return __builtin_ctzll(v); }
static inline int kv_clz64(uint64_t v) { return __builtin_clzll(v); }

#endif
