/*
 * format.c — rows as CSV or JSON Lines (the contract is in format.h).
 *
 * Speed comes from touching each field once on the common path: a CSV
 * field is scanned with a 256-entry table and copied with memcpy; a JSON
 * field is checked for "number" and for bytes needing escapes in one short
 * scan. Room is reserved once per call from an estimate (every field as it
 * is, plus separators), and the estimate is kept as an invariant — the
 * bytes still free in `out` always cover what the estimate counts for the
 * fields not yet written — so only a field that grows (quoted, escaped)
 * ever checks the capacity again.
 */
#include "format.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- CSV ------------------------------------------------------------------------------ */

/* The bytes that force a field into quotes, for one delimiter. */
static void csv_specials(unsigned char t[256], char delim)
{
    memset(t, 0, 256);
    t['"'] = t['\n'] = t['\r'] = t[(unsigned char)delim] = 1;
}

static bool csv_plain(const unsigned char *t, const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        if (t[p[i]] | t[p[i + 1]] | t[p[i + 2]] | t[p[i + 3]]) return false;
    for (; i < n; i++)
        if (t[p[i]]) return false;
    return true;
}

/* One field at w, quoted when it must be; room for 2n + 2 bytes is the
 * caller's. @return the end of what was written. */
static unsigned char *csv_field(unsigned char *w, const unsigned char *p, size_t n,
                                const unsigned char *t)
{
    if (csv_plain(t, p, n)) {
        if (n) memcpy(w, p, n);
        return w + n;
    }
    const unsigned char *end = p + n;
    *w++ = '"';
    while (p < end) {
        const unsigned char *q = memchr(p, '"', (size_t)(end - p));
        size_t k = q ? (size_t)(q - p) + 1 : (size_t)(end - p);
        memcpy(w, p, k);
        w += k;
        p += k;
        if (q) *w++ = '"';
    }
    *w++ = '"';
    return w;
}

int weir__csv_header(weir_batch *out, const weir_schema *s, char delim)
{
    size_t nc = weir_schema_ncols(s), need = 3;
    for (size_t c = 0; c < nc; c++) need += 2 * strlen(weir_schema_name(s, c)) + 3;
    if (weir_batch_reserve(out, need)) return WEIR_ENOMEM;
    unsigned char t[256];
    csv_specials(t, delim);
    unsigned char *w = out->data + out->len;
    if (nc == 1 && weir_schema_name(s, 0)[0] == '\0') {
        *w++ = '"';
        *w++ = '"';
    }
    for (size_t c = 0; c < nc; c++) {
        const char *name = weir_schema_name(s, c);
        if (c) *w++ = (unsigned char)delim;
        w = csv_field(w, (const unsigned char *)name, strlen(name), t);
    }
    *w++ = '\n';
    out->len = (size_t)(w - out->data);
    return 0;
}

int weir__csv_rows(weir_batch *out, const weir_batch *b, uint32_t from, uint32_t to,
                   char delim)
{
    if (from >= to) return 0;
    const size_t nc = b->ncols, start = out->len;
    const weir_field *f = b->fields + (size_t)from * nc;
    const weir_field *fend = b->fields + (size_t)to * nc;
    /* Every field as it is with its separator, and per row 2 bytes more for
     * a lone empty field's `""` (or 1 for the bare LF of a 0-column row). */
    size_t est = 0;
    for (const weir_field *x = f; x < fend; x++) est += x->len;
    est += (size_t)(fend - f) + 2 * (size_t)(to - from);
    if (weir_batch_reserve(out, est)) return WEIR_ENOMEM;
    unsigned char t[256];
    csv_specials(t, delim);
    unsigned char *w = out->data + out->len;
    for (uint32_t r = from; r < to; r++) {
        est -= 2; /* the row's allowance is now slack */
        if (nc == 0) {
            *w++ = '\n';
            continue;
        }
        if (nc == 1 && f->len == 0) {
            memcpy(w, "\"\"\n", 3);
            w += 3;
            est -= 1;
            f++;
            continue;
        }
        for (size_t c = 0; c < nc; c++, f++) {
            const unsigned char *p = b->data + f->off;
            size_t n = f->len;
            est -= n + 1;
            if ((size_t)(out->data + out->cap - w) < est + 2 * n + 3 && !csv_plain(t, p, n)) {
                out->len = (size_t)(w - out->data);
                if (weir_batch_reserve(out, est + 2 * n + 3)) {
                    out->len = start;
                    return WEIR_ENOMEM;
                }
                w = out->data + out->len;
            }
            w = csv_field(w, p, n, t);
            *w++ = c + 1 < nc ? (unsigned char)delim : '\n';
        }
    }
    out->len = (size_t)(w - out->data);
    return 0;
}

/* ---- JSON ----------------------------------------------------------------------------- */

/* Bytes a JSON string cannot carry as they are (non-ASCII is checked as
 * UTF-8 on the slow path). */
static inline bool json_special(unsigned char c)
{
    return c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
}

/* @return the length of the valid UTF-8 sequence at p (2-4), or 0 for an
 * invalid one (stray continuation, overlong, surrogate, above U+10FFFF,
 * truncated). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t k;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < k || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return k;
}

/* The body of a JSON string (no quotes) at w; room for 6n bytes is the
 * caller's. @return the end of what was written. */
static unsigned char *json_escape(unsigned char *w, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && !json_special(p[j])) j++;
        memcpy(w, p + i, j - i);
        w += j - i;
        if ((i = j) == n) break;
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(p + i, n - i);
            if (k) {
                memcpy(w, p + i, k);
                w += k;
                i += k;
                continue;
            }
        }
        i++;
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default: /* another control character, or a byte that is not UTF-8 */
            memcpy(w, "u00", 3);
            w[3] = (unsigned char)hex[c >> 4];
            w[4] = (unsigned char)hex[c & 15];
            w += 5;
        }
    }
    return w;
}

static inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? —
 * every such text is also a decimal number to the expression engine. */
static bool json_number(const unsigned char *p, size_t n)
{
    size_t i = 0;
    if (i < n && p[i] == '-') i++;
    if (i >= n || !is_digit(p[i])) return false;
    if (p[i++] != '0')
        while (i < n && is_digit(p[i])) i++;
    if (i < n && p[i] == '.') {
        size_t d = ++i;
        while (i < n && is_digit(p[i])) i++;
        if (i == d) return false;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        size_t d = i;
        while (i < n && is_digit(p[i])) i++;
        if (i == d) return false;
    }
    return i == n;
}

int weir__json_str(weir_batch *out, const void *p, size_t n)
{
    if (weir_batch_reserve(out, 6 * n + 2)) return WEIR_ENOMEM;
    unsigned char *w = out->data + out->len;
    *w++ = '"';
    w = json_escape(w, p, n);
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return 0;
}

int weir__jsonl_rows(weir_batch *out, const weir_batch *b, uint32_t from, uint32_t to)
{
    if (from >= to) return 0;
    const size_t nc = b->ncols, start = out->len;
    /* Each column's key once per call: `{"name":` for the first, `,"name":`
     * for the rest, back to back in keys, ends in kend. */
    unsigned char kbuf[2048];
    size_t kofs_buf[65];
    size_t ksize = 1;
    for (size_t c = 0; c < nc; c++) ksize += 6 * strlen(weir_schema_name(b->schema, c)) + 4;
    unsigned char *keys = kbuf;
    size_t *kend = kofs_buf;
    void *heap = NULL;
    if (ksize > sizeof kbuf || nc + 1 > sizeof kofs_buf / sizeof *kofs_buf) {
        heap = malloc(ksize + (nc + 1) * sizeof *kend);
        if (!heap) return WEIR_ENOMEM;
        kend = heap;
        keys = (unsigned char *)(kend + nc + 1);
    }
    unsigned char *k = keys;
    for (size_t c = 0; c < nc; c++) {
        const char *name = weir_schema_name(b->schema, c);
        *k++ = c ? ',' : '{';
        *k++ = '"';
        k = json_escape(k, (const unsigned char *)name, strlen(name));
        *k++ = '"';
        *k++ = ':';
        kend[c] = (size_t)(k - keys);
    }
    const size_t klen = (size_t)(k - keys);

    const weir_field *f = b->fields + (size_t)from * nc;
    const weir_field *fend = b->fields + (size_t)to * nc;
    /* Keys, every field quoted as it is, and `}\n` (or `{}\n`) per row. */
    size_t est = 0;
    for (const weir_field *x = f; x < fend; x++) est += x->len + 2;
    est += (size_t)(to - from) * (klen + 3);
    int rc = 0;
    if (weir_batch_reserve(out, est)) {
        rc = WEIR_ENOMEM;
        goto done;
    }
    unsigned char *w = out->data + out->len;
    for (uint32_t r = from; r < to; r++) {
        for (size_t c = 0; c < nc; c++, f++) {
            const unsigned char *p = b->data + f->off;
            size_t n = f->len, kl = kend[c] - (c ? kend[c - 1] : 0);
            est -= kl + n + 2;
            memcpy(w, keys + kend[c] - kl, kl);
            w += kl;
            if (json_number(p, n)) {
                memcpy(w, p, n);
                w += n;
                continue;
            }
            size_t i = 0;
            while (i < n && !json_special(p[i])) i++;
            if (i < n && (size_t)(out->data + out->cap - w) < est + 6 * n + 2) {
                out->len = (size_t)(w - out->data);
                if (weir_batch_reserve(out, est + 6 * n + 2)) {
                    out->len = start;
                    rc = WEIR_ENOMEM;
                    goto done;
                }
                w = out->data + out->len;
            }
            *w++ = '"';
            if (i == n) {
                if (n) memcpy(w, p, n);
                w += n;
            } else {
                w = json_escape(w, p, n);
            }
            *w++ = '"';
        }
        est -= 3;
        if (nc == 0) *w++ = '{';
        *w++ = '}';
        *w++ = '\n';
    }
    out->len = (size_t)(w - out->data);
done:
    free(heap);
    return rc;
}
