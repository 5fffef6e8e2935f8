/* Big-endian loads and stores on unaligned memory: the wire format is big
 * endian (docs/protocol.md). memcpy lets the compiler emit one load plus a
 * byte swap, without undefined behaviour on unaligned addresses. */
#ifndef KVSTORE_ENDIAN_H
#define KVSTORE_ENDIAN_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define KV_BE(bits, v) (v)
#else
#define KV_BE(bits, v) __builtin_bswap##bits(v)
#endif

static inline uint16_t kv_load_u16(const char *p) {
    uint16_t v; memcpy(&v, p, 2); return KV_BE(16, v);
}
static inline uint32_t kv_load_u32(const char *p) {
    uint32_t v; memcpy(&v, p, 4); return KV_BE(32, v);
}
static inline uint64_t kv_load_u64(const char *p) {
    uint64_t v; memcpy(&v, p, 8); return KV_BE(64, v);
}
static inline void kv_store_u16(char *p, uint16_t v) {
    v = KV_BE(16, v); memcpy(p, &v, 2);
}
static inline void kv_store_u32(char *p, uint32_t v) {
    v = KV_BE(32, v); memcpy(p, &v, 4);
}
static inline void kv_store_u64(char *p, uint64_t v) {
    v = KV_BE(64, v); memcpy(p, &v, 8);
}

#endif
