/* Glob matching for SCAN's match argument, on bytes.
 *
 *   *      any run of bytes, including none
 *   ?      any one byte
 *   [abc]  one byte of the set; [^abc] one byte not in it; [a-z] a range
 *          (a reversed range [z-a] means the same as [a-z]); \ escapes a byte
 *          inside a class too. `]` always closes a class, so [] matches
 *          nothing and [^] any byte. A `[` with no closing `]` is a literal.
 *   \x     the byte x itself; a trailing \ is a literal backslash.
 *
 * Iterative, never recursive: the classic two-pointer walk that remembers
 * only the last `*` and, on a mismatch, lets that star swallow one more byte.
 * Remembering the last star is enough because a star matches anything, so an
 * earlier star never needs to give back what a later one could take. Every
 * step either advances through the key or restarts after the last star with
 * the star's match one byte longer, so the work is at most
 * O(len(key) * len(pattern)): no pattern can take exponential time (redis's
 * CVE-2022-36021 and CVE-2024-31228 were recursive matchers).
 *
 * *steps is incremented once per pattern byte looked at, so tests can bound
 * the work without timing anything. */
#ifndef KVSTORE_GLOB_H
#define KVSTORE_GLOB_H

#include <stddef.h>
#include <stdint.h>

/* Does the pattern element at pat[*p] match byte c? Sets *next past the
 * element either way. */
static inline int kv_glob_element(const unsigned char *pat, size_t plen, size_t p,
                                  unsigned char c, size_t *next, uint64_t *steps) {
    unsigned char pc = pat[p];
    if (pc == '?') {
        *next = p + 1;
        return 1;
    }
    if (pc == '\\') {
        if (p + 1 < plen) {
            *next = p + 2;
            return pat[p + 1] == c;
        }
        *next = p + 1;
        return c == '\\';
    }
    if (pc == '[') {
        size_t q = p + 1;
        int negate = 0, matched = 0;
        if (q < plen && pat[q] == '^') {
            negate = 1;
            q++;
        }
        while (q < plen && pat[q] != ']') {
            unsigned char lo, hi;
            (*steps)++;
            if (pat[q] == '\\' && q + 1 < plen) {
                lo = pat[q + 1];
                q += 2;
            } else {
                lo = pat[q];
                q += 1;
            }
            hi = lo;
            if (q + 1 < plen && pat[q] == '-' && pat[q + 1] != ']') {
                if (pat[q + 1] == '\\' && q + 2 < plen) {
                    hi = pat[q + 2];
                    q += 3;
                } else {
                    hi = pat[q + 1];
                    q += 2;
                }
                if (lo > hi) {
                    unsigned char t = lo;
                    lo = hi;
                    hi = t;
                }
            }
            if (lo <= c && c <= hi)
                matched = 1;
        }
        if (q >= plen) {
            /* No closing bracket: the [ is an ordinary byte. */
            *next = p + 1;
            return c == '[';
        }
        *next = q + 1;
        return matched != negate;
    }
    *next = p + 1;
    return pc == c;
}

static inline int kv_glob_match(const char *pattern, size_t plen, const char *key, size_t klen,
                                uint64_t *steps) {
    const unsigned char *pat = (const unsigned char *)pattern;
    const unsigned char *s = (const unsigned char *)key;
    size_t p = 0, i = 0, next;
    size_t star_p = (size_t)-1, star_i = 0;
    while (i < klen) {
        (*steps)++;
        if (p < plen) {
            if (pat[p] == '*') {
                /* Remember where the star's match starts; it takes nothing yet. */
                star_p = ++p;
                star_i = i;
                continue;
            }
            if (kv_glob_element(pat, plen, p, s[i], &next, steps)) {
                p = next;
                i++;
                continue;
            }
        }
        if (star_p == (size_t)-1)
            return 0;
        /* Mismatch: the last star takes one more byte and we retry after it. */
        p = star_p;
        i = ++star_i;
    }
    while (p < plen && pat[p] == '*') {
        (*steps)++;
        p++;
    }
    return p == plen;
}

#endif
