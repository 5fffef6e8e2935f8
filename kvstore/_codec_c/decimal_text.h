/* The Decimal text rule of the value codec (tag 0x03, docs/protocol.md).
 *
 * The encoder writes str(d); the decoder calls Decimal(text). skip_value must
 * accept exactly the texts Decimal() accepts, or a server would store bytes
 * that no client can read back. Decimal() (libmpdec's exact string
 * conversion) accepts:
 *
 *     [sign] digits ['.' [digits]] [('e'|'E') [sign] digits]     (also '.' digits)
 *     [sign] ('Inf' | 'Infinity')                                (any case)
 *     [sign] ('NaN' | 'sNaN') [digits]                           (any case)
 *
 * and refuses a finite number whose exponent leaves libmpdec's range: the
 * exponent of the last digit must be >= MPD_MIN_ETINY and the adjusted
 * exponent (that of the first significant digit) <= MPD_MAX_EMAX. The
 * constants below are libmpdec's on 64-bit platforms.
 *
 * Python also accepts surrounding whitespace, underscores between digits and
 * non-ASCII digits; str(d) never produces them, so this rule refuses them. It
 * is therefore a subset of what Decimal() accepts, and equal to it on the
 * ASCII alphabet above. */
#ifndef KVSTORE_CODEC_DECIMAL_H
#define KVSTORE_CODEC_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

#define KV_DEC_MAX_EMAX 999999999999999999LL      /* MPD_MAX_EMAX */
#define KV_DEC_MIN_ETINY (-1999999999999999997LL) /* MPD_MIN_EMIN - (MPD_MAX_PREC - 1) */
/* Exponent literals saturate at this magnitude: anything that large fails the
 * range checks whatever the coefficient (at most 65535 digits). */
#define KV_DEC_EXP_SATURATE 4000000000000000000LL

#define KV_DEC_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* 1 when p[0..n) equals the lowercase ASCII word w, ignoring case. */
static inline int kv_dec_word(const char *p, size_t n, const char *w) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (w[i] == '\0' || (p[i] | 0x20) != w[i]) return 0;
    }
    return w[n] == '\0';
}

/* 1 when s[0..n) is a Decimal text that Decimal() accepts exactly, else 0. */
static inline int kv_decimal_text_valid(const char *s, size_t n) {
    const char *p = s, *end = s + n;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p == end) return 0;

    if (!KV_DEC_DIGIT(*p) && *p != '.') {
        size_t rest = (size_t)(end - p);
        if (kv_dec_word(p, rest, "inf") || kv_dec_word(p, rest, "infinity")) return 1;
        if (rest >= 4 && kv_dec_word(p, 4, "snan")) p += 4;
        else if (rest >= 3 && kv_dec_word(p, 3, "nan")) p += 3;
        else return 0;
        for (; p < end; p++) {      /* the diagnostic payload */
            if (!KV_DEC_DIGIT(*p)) return 0;
        }
        return 1;
    }

    int64_t digits = 0, fraction_digits = 0, significant = 0;
    for (; p < end && KV_DEC_DIGIT(*p); p++) {
        digits++;
        if (significant || *p != '0') significant++;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && KV_DEC_DIGIT(*p); p++) {
            digits++;
            fraction_digits++;
            if (significant || *p != '0') significant++;
        }
    }
    if (digits == 0) return 0;

    int64_t exponent = 0;
    if (p < end) {
        if (*p != 'e' && *p != 'E') return 0;
        p++;
        int negative = 0;
        if (p < end && (*p == '+' || *p == '-')) negative = *p++ == '-';
        if (p == end) return 0;
        for (; p < end; p++) {
            if (!KV_DEC_DIGIT(*p)) return 0;
            if (exponent > KV_DEC_EXP_SATURATE / 10) exponent = KV_DEC_EXP_SATURATE;
            else exponent = exponent * 10 + (*p - '0');
        }
        if (negative) exponent = -exponent;
    }

    /* A zero coefficient counts as one digit, as libmpdec stores it. */
    int64_t last = exponent - fraction_digits;
    int64_t adjusted = last + (significant ? significant : 1) - 1;
    return last >= KV_DEC_MIN_ETINY && adjusted <= KV_DEC_MAX_EMAX;
}

#undef KV_DEC_DIGIT

#endif
