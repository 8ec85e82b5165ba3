/*
 * batch.c — schemas, batches and the pools that recycle them.
 *
 * A pool's free list is a weir_chan (MPMC): a batch released on any thread
 * goes back with one non-blocking send, and a stage takes one with one
 * non-blocking receive. When the list is full the batch is freed; when it
 * is empty a new one is allocated. In a steady pipeline every batch comes
 * back, so the hot path allocates nothing.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- schemas ------------------------------------------------------------------ */

struct weir_schema {
    _Atomic int refs;
    size_t ncols;
    char **names;
};

int weir_schema_create(weir_schema **out, const char *const *names, size_t n)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!names[i]) return WEIR_EINVAL;
    weir_schema *s = calloc(1, sizeof *s);
    if (!s) return WEIR_ENOMEM;
    s->names = calloc(n ? n : 1, sizeof *s->names);
    if (!s->names) goto oom;
    for (s->ncols = 0; s->ncols < n; s->ncols++) {
        s->names[s->ncols] = strdup(names[s->ncols]);
        if (!s->names[s->ncols]) goto oom;
    }
    atomic_init(&s->refs, 1);
    *out = s;
    return 0;
oom:
    if (s->names)
        for (size_t i = 0; i < s->ncols; i++) free(s->names[i]);
    free(s->names);
    free(s);
    return WEIR_ENOMEM;
}

weir_schema *weir_schema_retain(const weir_schema *cs)
{
    /* The count is bookkeeping, not the schema's value: like strchr, take
     * const and give back a pointer the holder can release. */
    weir_schema *s = (weir_schema *)(uintptr_t)cs;
    if (s) atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void weir_schema_release(weir_schema *s)
{
    if (!s) return;
    /* acq_rel: every holder's reads happen before the free. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    for (size_t i = 0; i < s->ncols; i++) free(s->names[i]);
    free(s->names);
    free(s);
}

size_t weir_schema_ncols(const weir_schema *s) { return s->ncols; }

const char *weir_schema_name(const weir_schema *s, size_t col)
{
    return col < s->ncols ? s->names[col] : NULL;
}

int weir_schema_find(const weir_schema *s, const char *name)
{
    for (size_t i = 0; i < s->ncols; i++)
        if (strcmp(s->names[i], name) == 0) return (int)i;
    return WEIR_ENOTFOUND;
}

bool weir_schema_equal(const weir_schema *a, const weir_schema *b)
{
    if (a == b) return true;
    if (!a || !b || a->ncols != b->ncols) return false;
    for (size_t i = 0; i < a->ncols; i++)
        if (strcmp(a->names[i], b->names[i]) != 0) return false;
    return true;
}

/* ---- batches -------------------------------------------------------------------- */

struct weir_pool {
    weir_kind kind;
    size_t data_cap;
    weir_chan *free;
};

const char *weir_kind_name(weir_kind k)
{
    switch (k) {
    case WEIR_KIND_NONE: return "none";
    case WEIR_KIND_BYTES: return "bytes";
    case WEIR_KIND_ROWS: return "rows";
    case WEIR_KIND_ANY: return "any";
    }
    return "?";
}

static void batch_free(weir_batch *b)
{
    weir_schema_release(b->schema);
    free(b->data);
    free(b->fields);
    free(b);
}

int weir_batch_create(weir_batch **out, weir_kind kind, size_t data_cap)
{
    *out = NULL;
    if (kind != WEIR_KIND_BYTES && kind != WEIR_KIND_ROWS) return WEIR_EINVAL;
    weir_batch *b = calloc(1, sizeof *b);
    if (!b) return WEIR_ENOMEM;
    b->kind = kind;
    b->refs = 1;
    if (data_cap) {
        b->data = malloc(data_cap);
        if (!b->data) {
            free(b);
            return WEIR_ENOMEM;
        }
        b->cap = data_cap;
    }
    *out = b;
    return 0;
}

weir_batch *weir_batch_retain(weir_batch *b)
{
    __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

bool weir_batch_shared(const weir_batch *b)
{
    return __atomic_load_n(&b->refs, __ATOMIC_ACQUIRE) > 1;
}

void weir_batch_reset(weir_batch *b)
{
    weir_schema_release(b->schema);
    b->schema = NULL;
    b->len = 0;
    b->nrows = 0;
    b->ncols = 0;
    b->row_open = 0;
    b->flags = 0;
    b->seq = 0;
    b->origin = NULL;
    b->offset = 0;
    b->line = 0;
    b->dest = 0;
}

void weir_batch_release(weir_batch *b)
{
    if (!b) return;
    /* acq_rel: the holders' reads happen before the batch is reused. */
    if (__atomic_fetch_sub(&b->refs, 1, __ATOMIC_ACQ_REL) != 1) return;
    weir_pool *p = b->pool;
    if (p) {
        weir_batch_reset(b);
        b->refs = 1;
        if (weir_chan_try_send(p->free, b) == 0) return;
    }
    batch_free(b);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) ncap *= 2;
    void *np = realloc(*p, ncap * elem);
    if (!np) return WEIR_ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

int weir_batch_reserve(weir_batch *b, size_t more)
{
    return grow((void **)&b->data, &b->cap, b->len + more, 1);
}

int weir_batch_append(weir_batch *b, const void *p, size_t n)
{
    WEIR__TRY(weir_batch_reserve(b, n));
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int weir_batch_set_schema(weir_batch *b, weir_schema *s)
{
    if (b->kind != WEIR_KIND_ROWS || b->nrows || b->row_open) return WEIR_EINVAL;
    weir_schema_retain(s);
    weir_schema_release(b->schema);
    b->schema = s;
    b->ncols = s ? (uint32_t)weir_schema_ncols(s) : 0;
    return 0;
}

int weir_batch_add_field(weir_batch *b, const void *p, size_t n)
{
    if (b->row_open >= b->ncols || n > UINT32_MAX) return WEIR_EINVAL;
    if (b->len + n > UINT32_MAX) return WEIR_ENOMEM; /* offsets are 32-bit */
    size_t slot = (size_t)b->nrows * b->ncols + b->row_open;
    WEIR__TRY(grow((void **)&b->fields, &b->fields_cap, slot + 1,
                   sizeof *b->fields));
    WEIR__TRY(weir_batch_reserve(b, n));
    b->fields[slot] = (weir_field){(uint32_t)b->len, (uint32_t)n};
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->row_open++;
    return 0;
}

int weir_batch_end_row(weir_batch *b)
{
    if (b->row_open != b->ncols) return WEIR_EINVAL;
    b->row_open = 0;
    b->nrows++;
    return 0;
}

int weir_batch_copy_row(weir_batch *dst, const weir_batch *src, uint32_t row)
{
    if (dst->ncols != src->ncols || dst->row_open || row >= src->nrows)
        return WEIR_EINVAL;
    uint32_t nc = src->ncols;
    const weir_field *f = &src->fields[(size_t)row * nc];
    /* One reservation for the row's bytes and slices; one copy when the
     * fields lie back to back (as parsers write them), else one each. */
    size_t total = 0;
    bool packed = true;
    for (uint32_t c = 0; c < nc; c++) {
        total += f[c].len;
        if (c && f[c].off != f[c - 1].off + f[c - 1].len) packed = false;
    }
    if (dst->len + total > UINT32_MAX) return WEIR_ENOMEM; /* offsets are 32-bit */
    size_t slot = (size_t)dst->nrows * nc;
    WEIR__TRY(grow((void **)&dst->fields, &dst->fields_cap, slot + nc, sizeof *dst->fields));
    WEIR__TRY(weir_batch_reserve(dst, total));
    weir_field *d = &dst->fields[slot];
    uint32_t at = (uint32_t)dst->len;
    if (packed && nc) {
        if (total) memcpy(dst->data + at, src->data + f[0].off, total);
        for (uint32_t c = 0; c < nc; c++) {
            d[c] = (weir_field){at, f[c].len};
            at += f[c].len;
        }
    } else {
        for (uint32_t c = 0; c < nc; c++) {
            if (f[c].len) memcpy(dst->data + at, src->data + f[c].off, f[c].len);
            d[c] = (weir_field){at, f[c].len};
            at += f[c].len;
        }
    }
    dst->len = at;
    dst->nrows++;
    return 0;
}

int weir__batch_copy_cols(weir_batch *dst, const weir_batch *src, uint32_t row,
                          const uint32_t *cols, uint32_t n)
{
    if (dst->ncols != n || dst->row_open || row >= src->nrows) return WEIR_EINVAL;
    const weir_field *f = &src->fields[(size_t)row * src->ncols];
    size_t total = 0;
    for (uint32_t c = 0; c < n; c++) total += f[cols[c]].len;
    if (dst->len + total > UINT32_MAX) return WEIR_ENOMEM; /* offsets are 32-bit */
    size_t slot = (size_t)dst->nrows * n;
    WEIR__TRY(grow((void **)&dst->fields, &dst->fields_cap, slot + n, sizeof *dst->fields));
    WEIR__TRY(weir_batch_reserve(dst, total));
    weir_field *d = &dst->fields[slot];
    uint32_t at = (uint32_t)dst->len;
    for (uint32_t c = 0; c < n; c++) {
        const weir_field *s = &f[cols[c]];
        if (s->len) memcpy(dst->data + at, src->data + s->off, s->len);
        d[c] = (weir_field){at, s->len};
        at += s->len;
    }
    dst->len = at;
    dst->nrows++;
    return 0;
}

/* ---- pools ---------------------------------------------------------------------------- */

int weir_pool_create(weir_pool **out, weir_kind kind, size_t keep, size_t data_cap)
{
    *out = NULL;
    if ((kind != WEIR_KIND_BYTES && kind != WEIR_KIND_ROWS) || keep == 0)
        return WEIR_EINVAL;
    weir_pool *p = calloc(1, sizeof *p);
    if (!p) return WEIR_ENOMEM;
    p->kind = kind;
    p->data_cap = data_cap;
    int rc = weir_chan_create(&p->free, keep, WEIR_CHAN_MPMC);
    if (rc) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int weir_pool_get(weir_pool *p, weir_batch **out)
{
    void *item;
    if (weir_chan_try_recv(p->free, &item) == 0) {
        *out = item;
        return 0;
    }
    int rc = weir_batch_create(out, p->kind, p->data_cap);
    if (rc == 0) (*out)->pool = p;
    return rc;
}

void weir_pool_destroy(weir_pool *p)
{
    if (!p) return;
    void *item;
    while (weir_chan_try_recv(p->free, &item) == 0) batch_free(item);
    weir_chan_destroy(p->free);
    free(p);
}
