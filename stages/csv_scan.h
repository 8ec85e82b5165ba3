/*
 * csv_scan.h — the byte-scanning kernels of csv(): internal to stages/.
 *
 * Two jobs, both on the hot path:
 *   - the splitter copies every input byte once into the chunk it builds
 *     and, in the same pass, counts quotes (their parity says whether a
 *     byte is inside a quoted field) and line breaks (LF, CR, and CR LF
 *     pairs: a chunk's first line is the sum of the breaks before it);
 *   - the parser finds the next delimiter, quote, CR or LF: a 64-bit mask
 *     of those bytes per 64-byte block, consumed bit by bit, so a field
 *     costs a count-trailing-zeros rather than a loop over its bytes.
 *
 * SSE2 (every x86-64) does 16 bytes per compare; other targets get the
 * same results from plain loops.
 */
#ifndef WEIR_CSV_SCAN_H
#define WEIR_CSV_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define CSV_SCAN_SSE2 1
#else
#define CSV_SCAN_SSE2 0
#endif

/* Counts over a range of bytes. */
typedef struct csv_counts {
    uint64_t quotes; /* the quote byte */
    uint64_t lf;     /* '\n' */
    uint64_t cr;     /* '\r' */
    uint64_t crlf;   /* '\r' immediately followed by '\n', both in the range */
} csv_counts;

/* Line breaks in counted bytes: LF, CR LF and lone CR each end one line. */
static inline uint64_t csv_counts_lines(const csv_counts *c) { return c->lf + c->cr - c->crlf; }

#if CSV_SCAN_SSE2
/* Sum the 16 byte lanes of a (each 0..255). */
static inline uint64_t csv_hsum8(__m128i a)
{
    __m128i s = _mm_sad_epu8(a, _mm_setzero_si128());
    return (uint64_t)_mm_cvtsi128_si64(s) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
}
#endif

/*
 * Copy n bytes from src to dst (dst may be NULL: count only) and add their
 * counts to *c. A CR LF pair is counted when both bytes lie in src[0..n);
 * the caller joins pairs that straddle two calls.
 */
static inline void csv_copy_count(unsigned char *dst, const unsigned char *src, size_t n,
                                  unsigned char quote, csv_counts *c)
{
    size_t i = 0;
#if CSV_SCAN_SSE2
    const __m128i vq = _mm_set1_epi8((char)quote), vlf = _mm_set1_epi8('\n'),
                  vcr = _mm_set1_epi8('\r');
    /* Byte lanes count down from 0 by one per match (a match compares to
     * -1); 255 blocks at most before they are summed, so none wraps. */
    while (n - i >= 17) {
        __m128i aq = _mm_setzero_si128(), alf = aq, acr = aq, apair = aq;
        size_t blocks = (n - i - 1) / 16;
        if (blocks > 255) blocks = 255;
        for (size_t k = 0; k < blocks; k++, i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
            if (dst) _mm_storeu_si128((__m128i *)(void *)(dst + i), v);
            __m128i mcr = _mm_cmpeq_epi8(v, vcr);
            aq = _mm_sub_epi8(aq, _mm_cmpeq_epi8(v, vq));
            alf = _mm_sub_epi8(alf, _mm_cmpeq_epi8(v, vlf));
            acr = _mm_sub_epi8(acr, mcr);
            if (_mm_movemask_epi8(mcr)) {
                /* The byte after each lane: src[i + 16] exists (n - i >= 17). */
                __m128i next = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 1));
                apair = _mm_sub_epi8(apair, _mm_and_si128(mcr, _mm_cmpeq_epi8(next, vlf)));
            }
        }
        c->quotes += csv_hsum8(aq);
        c->lf += csv_hsum8(alf);
        c->cr += csv_hsum8(acr);
        c->crlf += csv_hsum8(apair);
    }
#endif
    for (; i < n; i++) {
        unsigned char b = src[i];
        if (dst) dst[i] = b;
        c->quotes += b == quote;
        c->lf += b == '\n';
        if (b == '\r') {
            c->cr++;
            c->crlf += i + 1 < n && src[i + 1] == '\n';
        }
    }
}

/* Bytes of p[0..64) equal to delim, quote, CR or LF, as a bit mask (bit k:
 * p[k]). All 64 bytes must be readable. */
static inline uint64_t csv_mask64(const unsigned char *p, unsigned char delim,
                                  unsigned char quote)
{
#if CSV_SCAN_SSE2
    const __m128i vd = _mm_set1_epi8((char)delim), vq = _mm_set1_epi8((char)quote),
                  vlf = _mm_set1_epi8('\n'), vcr = _mm_set1_epi8('\r');
    uint64_t m = 0;
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
        __m128i x = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, vd), _mm_cmpeq_epi8(v, vq)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, vlf), _mm_cmpeq_epi8(v, vcr)));
        m |= (uint64_t)(uint32_t)_mm_movemask_epi8(x) << (16 * k);
    }
    return m;
#else
    uint64_t m = 0;
    for (int k = 0; k < 64; k++) {
        unsigned char b = p[k];
        if (b == delim || b == quote || b == '\n' || b == '\r') m |= (uint64_t)1 << k;
    }
    return m;
#endif
}

/*
 * A cursor over p[0..n) that finds the next special byte (delimiter,
 * quote, CR, LF). It keeps the mask of one 64-byte block; the last,
 * partial block is read from a zero-padded copy (a zero byte is never
 * special: delim and quote come from non-empty C strings).
 */
typedef struct csv_cursor {
    const unsigned char *p;
    size_t n;
    size_t blk;    /* start of the block whose mask is cached */
    uint64_t mask; /* its special bytes; bits past n are clear */
    unsigned char delim, quote;
} csv_cursor;

static inline void csv_cursor_load(csv_cursor *c, size_t blk)
{
    c->blk = blk;
    if (c->n - blk >= 64) {
        c->mask = csv_mask64(c->p + blk, c->delim, c->quote);
    } else {
        unsigned char pad[64] = {0};
        memcpy(pad, c->p + blk, c->n - blk);
        c->mask = csv_mask64(pad, c->delim, c->quote) &
                  (((uint64_t)1 << (c->n - blk)) - 1);
    }
}

static inline void csv_cursor_init(csv_cursor *c, const unsigned char *p, size_t n,
                                   unsigned char delim, unsigned char quote)
{
    c->p = p;
    c->n = n;
    c->delim = delim;
    c->quote = quote;
    c->blk = (size_t)-1 - 64; /* no block yet: the first lookup loads one */
    c->mask = 0;
}

/* The position of the first special byte at or after i, or n. */
static inline __attribute__((always_inline)) size_t csv_cursor_next(csv_cursor *c, size_t i)
{
    for (;;) {
        size_t rel = i - c->blk;
        if (rel < 64) {
            uint64_t m = c->mask >> rel;
            if (m) return i + (size_t)__builtin_ctzll(m);
            i = c->blk + 64;
        }
        if (i >= c->n) return c->n;
        csv_cursor_load(c, i & ~(size_t)63);
    }
}

#endif
