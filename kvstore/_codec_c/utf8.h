/* Strict UTF-8 validation, the rule Python's own "strict" decoder applies
 * (Unicode table 3-7): no overlong forms, no surrogates (U+D800..U+DFFF), no
 * code point above U+10FFFF. skip_value uses it to accept exactly the strings
 * that decode_value can turn into str, without creating one.
 *
 * ASCII, the common case for keys and text, is checked eight bytes per step;
 * a multi-byte sequence costs one branch per lead byte plus a mask test per
 * continuation byte. */
#ifndef KVSTORE_UTF8_H
#define KVSTORE_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KV_UTF8_CONT(b) (((b) & 0xC0) == 0x80)

/* 1 when s[0..n) is well-formed UTF-8, else 0. */
static inline int kv_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + n;
    while (p < end) {
        if ((size_t)(end - p) >= 8) {
            uint64_t word;
            memcpy(&word, p, 8);
            if ((word & 0x8080808080808080ULL) == 0) {
                p += 8;
                continue;
            }
        }
        unsigned c = p[0];
        if (c < 0x80) {
            p += 1;
        } else if (c < 0xC2) {
            return 0;  /* a stray continuation byte, or an overlong 2-byte form */
        } else if (c < 0xE0) {
            if (end - p < 2 || !KV_UTF8_CONT(p[1])) return 0;
            p += 2;
        } else if (c < 0xF0) {
            if (end - p < 3 || !KV_UTF8_CONT(p[1]) || !KV_UTF8_CONT(p[2])) return 0;
            if (c == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
            if (c == 0xED && p[1] > 0x9F) return 0;  /* surrogate */
            p += 3;
        } else if (c < 0xF5) {
            if (end - p < 4 || !KV_UTF8_CONT(p[1]) || !KV_UTF8_CONT(p[2])
                    || !KV_UTF8_CONT(p[3])) return 0;
            if (c == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
            if (c == 0xF4 && p[1] > 0x8F) return 0;  /* above U+10FFFF */
            p += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

#undef KV_UTF8_CONT

#endif
