/*
 * sort(by=[cols…], desc=false) — a stable sort, external when it must be.
 *
 * Order: keys compare left to right. A value that is a number (the
 * expression engine's rule, weir_value_parse: the whole field a decimal
 * integer or float) compares as a number — integers exactly, floats as
 * doubles, an integer against a float exactly too. Numbers sort before
 * every other value; other values (the empty value included, which is the
 * smallest of them) compare as bytes, shorter first on a common prefix.
 * desc=true reverses all of this for every key; desc=[b1, b2, …] gives one
 * direction per key. The sort is stable: rows whose keys compare equal
 * ("1", "1.0" and "01" are equal numbers) keep their input order.
 *
 * Memory: rows are copied into arena chunks that this stage owns (input
 * batches go straight back to their pool), together with a parsed form of
 * each key field so that comparisons never parse. When what is held passes
 * weir_stage_mem_budget() (mem= on the node, else --mem), the rows held are
 * sorted and written to a run file in weir_stage_tmpdir() ("weir-sort-
 * XXXXXX"), and the memory is reused. At the end, with no run written, the
 * rows go out from memory; otherwise the last rows are written as a run too
 * and the runs are merged with a heap, at most SORT_MAX_FANIN at a time
 * (more runs are merged in passes, neighbours together, so that ties still
 * go to the earlier run — that is what keeps the sort stable), and rows
 * stream out in batches of SORT_OUT_ROWS. Run files are deleted as soon as
 * they are merged, and close() deletes whatever is left after a failure or
 * a cancel.
 *
 * Parallel: one instance (a sort sees all rows), but a large run in memory
 * (SORT_PAR_MIN rows or more) uses OpenMP threads (omp_get_max_threads(),
 * so OMP_NUM_THREADS): chunks are merge-sorted side by side, then merged
 * pairwise with the output of each merge split among the threads (merge
 * path); and when the rows go out from memory, each thread gathers one of
 * a group of output batches, which are sent in order.
 */
#include "stages.h"

#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SORT_OUT_ROWS 4096u
#define SORT_MAX_FANIN 64
/* Below this many rows one thread sorts: starting a team costs more. */
#define SORT_PAR_MIN 65536u
/* Runs shorter than this are sorted by insertion before merging. */
#define SORT_INS 24u

typedef enum sort_kind { SORT_INT, SORT_FLT, SORT_TEXT } sort_kind;

/* A key field, parsed once. p/len point at the field's bytes. */
typedef struct sort_key {
    union {
        int64_t i;
        double d;
    } v;
    const unsigned char *p;
    uint32_t len;
    uint8_t kind;
} sort_key;

/* What the in-memory sort moves: the first SORT_INLINE keys boiled down to
 * a class and 64 bits whose unsigned order is the key's order (ties where
 * they cannot tell), and the row. exact[j]: equal (cls, pre) means an
 * equal key j. Sorting these needs the rows themselves only for ties that
 * the prefixes cannot settle, which keeps the merges' memory access
 * sequential. */
#define SORT_INLINE 2
typedef struct sort_ent {
    uint64_t pre[SORT_INLINE];
    uint32_t idx;
    uint8_t cls[SORT_INLINE];
    uint8_t exact[SORT_INLINE];
} sort_ent;

/* Arena chunk for row records. */
typedef struct sort_chunk {
    struct sort_chunk *next;
    size_t cap, used;
    unsigned char data[];
} sort_chunk;

/* A record, in memory and in run files alike:
 *   u32 body length, then per column: u32 field length, field bytes. */

typedef struct sort_reader {
    int fd;
    size_t run; /* position among the runs being merged: ties go to the lower */
    unsigned char *buf;
    size_t cap, pos, len;
    const unsigned char *rec; /* current record (header included) */
    size_t reclen;
    sort_key *keys; /* the current record's keys */
} sort_reader;

typedef struct sort_state {
    const char *const *by;
    size_t nk;
    bool *desc;
    int *key_col;          /* input column of each key */
    weir_schema *schema;   /* the input's (one reference) */
    size_t ncols;
    size_t budget;
    /* the run in memory */
    sort_chunk *chunks;
    size_t chunk_size;
    size_t arena_bytes;
    unsigned char **recs;
    sort_key *keys; /* nrows × nk */
    size_t nrows, cap_rows;
    sort_ent *idx, *tmp;
    size_t cap_idx;
    size_t *fieldpos; /* per column: offset of its bytes in the record */
    /* runs on disk, in input order */
    char **runs;
    size_t nruns, cap_runs;
    unsigned char *wbuf;
    size_t wcap, wlen;
    int wfd;
    const char *tmpdir;
} sort_state;

/* ---- arguments ------------------------------------------------------------------------ */

/* desc: true/false, or a list of them, one per key. */
static int sort_read_desc(weir_stage *s, size_t nk, bool *desc)
{
    const weir_expr *e = weir_stage_arg_expr(s, "desc");
    const weir_expr *const *items = &e;
    size_t n = 1;
    if (e && e->kind == WEIR_EXPR_LIST) {
        items = (const weir_expr *const *)e->args;
        n = e->nargs;
    }
    bool ok = e && (e->kind != WEIR_EXPR_LIST || n == nk);
    for (size_t i = 0; ok && i < n; i++) {
        const weir_expr *x = items[i];
        bool v;
        if (x->kind == WEIR_EXPR_BOOL) v = x->ival != 0;
        else if (x->kind == WEIR_EXPR_STR && strcmp(x->str, "true") == 0) v = true;
        else if (x->kind == WEIR_EXPR_STR && strcmp(x->str, "false") == 0) v = false;
        else {
            ok = false;
            break;
        }
        if (desc) {
            if (e->kind == WEIR_EXPR_LIST) desc[i] = v;
            else
                for (size_t k = 0; k < nk; k++) desc[k] = v;
        }
    }
    if (!ok)
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "desc must be true, false, or a list of them with one per "
                                 "by column (%zu)",
                                 nk);
    return 0;
}

static int sort_resolve(weir_stage *s, const weir_schema *in, const char *const *by,
                        size_t nk, int *cols)
{
    for (size_t k = 0; k < nk; k++) {
        int c = weir_schema_find(in, by[k]);
        if (c < 0) return weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s'", by[k]);
        if (cols) cols[k] = c;
    }
    return 0;
}

static int sort_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    const char *const *by;
    size_t nk = weir_stage_arg_list(s, "by", &by);
    if (nk == 0) return weir_stage_errorf(s, WEIR_ESPEC, "by= needs at least one column");
    int rc = sort_read_desc(s, nk, NULL);
    if (rc == 0 && in) rc = sort_resolve(s, in, by, nk, NULL);
    if (rc == 0 && in) *out = weir_schema_retain(in);
    return rc;
}

/* ---- state ---------------------------------------------------------------------------- */

static size_t sort_clamp(size_t v, size_t lo, size_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void sort_free_chunks(sort_state *st)
{
    for (sort_chunk *c = st->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    st->chunks = NULL;
    st->arena_bytes = 0;
}

static int sort_open(weir_stage *s)
{
    sort_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->wfd = -1;
    st->nk = weir_stage_arg_list(s, "by", &st->by);
    st->desc = calloc(st->nk ? st->nk : 1, sizeof *st->desc);
    st->key_col = calloc(st->nk ? st->nk : 1, sizeof *st->key_col);
    if (!st->desc || !st->key_col) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    int rc = sort_read_desc(s, st->nk, st->desc);
    if (rc) return rc;
    st->budget = weir_stage_mem_budget(s);
    st->tmpdir = weir_stage_tmpdir(s);
    /* Chunks small enough that the last one wastes little of the budget. */
    st->chunk_size = sort_clamp(st->budget / 16, 4096, (size_t)1 << 20);
    st->wcap = sort_clamp(st->budget / 16, (size_t)64 << 10, (size_t)1 << 20);
    return 0;
}

static void sort_close(weir_stage *s)
{
    sort_state *st = weir_stage_state(s);
    if (!st) return;
    if (st->wfd >= 0) close(st->wfd);
    for (size_t i = 0; i < st->nruns; i++) {
        if (st->runs[i]) unlink(st->runs[i]);
        free(st->runs[i]);
    }
    free(st->runs);
    sort_free_chunks(st);
    free(st->recs);
    free(st->keys);
    free(st->idx);
    free(st->tmp);
    free(st->fieldpos);
    free(st->wbuf);
    free(st->desc);
    free(st->key_col);
    weir_schema_release(st->schema);
    free(st);
}

/* What the run in memory holds, as the budget counts it. */
static size_t sort_mem(const sort_state *st)
{
    return st->arena_bytes +
           st->cap_rows * (sizeof *st->recs + st->nk * sizeof *st->keys + 2 * sizeof *st->idx);
}

/* The index arrays are made only to sort, but counted all along. */
static int sort_ensure_idx(weir_stage *s, sort_state *st)
{
    if (st->cap_idx >= st->nrows && st->idx) return 0;
    free(st->idx);
    free(st->tmp);
    st->cap_idx = st->cap_rows ? st->cap_rows : 1;
    st->idx = malloc(st->cap_idx * sizeof *st->idx);
    st->tmp = malloc(st->cap_idx * sizeof *st->tmp);
    if (!st->idx || !st->tmp) {
        st->cap_idx = 0;
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory sorting %zu rows", st->nrows);
    }
    return 0;
}

static unsigned char *sort_alloc(sort_state *st, size_t n)
{
    sort_chunk *c = st->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > st->chunk_size ? n : st->chunk_size;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = st->chunks;
        st->chunks = c;
        st->arena_bytes += sizeof *c + cap;
    }
    unsigned char *p = c->data + c->used;
    c->used += n;
    return p;
}

/* ---- comparing ----------------------------------------------------------------------- */

/* An integer against a float, exactly. */
static int sort_cmp_int_flt(int64_t i, double d)
{
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    int64_t t = (int64_t)d; /* toward zero; exact in this range */
    if (i != t) return i < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int sort_key_cmp(const sort_key *a, const sort_key *b)
{
    if (a->kind == SORT_TEXT || b->kind == SORT_TEXT) {
        if (a->kind != b->kind) return a->kind == SORT_TEXT ? 1 : -1; /* numbers first */
        size_t n = a->len < b->len ? a->len : b->len;
        int c = n ? memcmp(a->p, b->p, n) : 0;
        return c ? c : (a->len > b->len) - (a->len < b->len);
    }
    if (a->kind == SORT_INT && b->kind == SORT_INT)
        return (a->v.i > b->v.i) - (a->v.i < b->v.i);
    if (a->kind == SORT_INT) return sort_cmp_int_flt(a->v.i, b->v.d);
    if (b->kind == SORT_INT) return -sort_cmp_int_flt(b->v.i, a->v.d);
    return (a->v.d > b->v.d) - (a->v.d < b->v.d);
}

static void sort_parse_key(sort_key *k, const unsigned char *p, uint32_t len)
{
    weir_value v;
    k->p = p;
    k->len = len;
    if (!weir_value_parse(p, len, &v)) {
        k->kind = SORT_TEXT;
    } else if (v.is_int) {
        k->kind = SORT_INT;
        k->v.i = v.i;
    } else {
        k->kind = SORT_FLT;
        k->v.d = v.num;
    }
}

/* Keys from `from` on. */
static int sort_keys_cmp_from(const sort_state *st, const sort_key *a, const sort_key *b,
                              size_t from)
{
    for (size_t k = from; k < st->nk; k++) {
        int c = sort_key_cmp(&a[k], &b[k]);
        if (c) return st->desc[k] ? -c : c;
    }
    return 0;
}

/* A key's prefix (see sort_ent). Numbers: class 0 and the double's bits
 * made unsigned-orderable (rounding an integer to a double keeps order, so
 * a strict difference is always right); text: class 1 and the first 8
 * bytes, zero-padded, exact when the text is that short and holds no NUL
 * (then padding cannot make two texts look alike). */
static void sort_prefix(const sort_key *k, bool desc, uint64_t *pre, uint8_t *cls,
                        uint8_t *exact)
{
    if (k->kind == SORT_TEXT) {
        uint64_t p = 0;
        bool nul = false;
        for (size_t j = 0; j < 8; j++) {
            unsigned c = j < k->len ? k->p[j] : 0;
            nul |= j < k->len && c == 0;
            p = p << 8 | c;
        }
        *pre = p;
        *cls = 1;
        *exact = k->len <= 8 && !nul;
    } else {
        double d = k->kind == SORT_INT ? (double)k->v.i : k->v.d;
        if (d == 0) d = 0; /* -0 is 0 */
        uint64_t u;
        memcpy(&u, &d, sizeof u);
        *pre = u >> 63 ? ~u : u | (uint64_t)1 << 63;
        *cls = 0;
        *exact = k->kind == SORT_FLT ||
                 (k->v.i <= ((int64_t)1 << 53) && k->v.i >= -((int64_t)1 << 53));
    }
    if (desc) {
        *pre = ~*pre;
        *cls ^= 1;
    }
}

static sort_ent sort_make_ent(const sort_state *st, uint32_t i)
{
    const sort_key *k = &st->keys[(size_t)i * st->nk];
    sort_ent e = {.idx = i};
    for (size_t j = 0; j < st->nk && j < SORT_INLINE; j++)
        sort_prefix(&k[j], st->desc[j], &e.pre[j], &e.cls[j], &e.exact[j]);
    return e;
}

/* Two rows of the run in memory; equal keys: input order. */
static inline int sort_ent_cmp(const sort_state *st, const sort_ent *a, const sort_ent *b)
{
    size_t j = 0, ni = st->nk < SORT_INLINE ? st->nk : SORT_INLINE;
    for (; j < ni; j++) {
        if (a->cls[j] != b->cls[j]) return a->cls[j] < b->cls[j] ? -1 : 1;
        if (a->pre[j] != b->pre[j]) return a->pre[j] < b->pre[j] ? -1 : 1;
        if (!(a->exact[j] && b->exact[j])) break;
    }
    int c = 0;
    if (j < st->nk)
        c = sort_keys_cmp_from(st, &st->keys[(size_t)a->idx * st->nk],
                               &st->keys[(size_t)b->idx * st->nk], j);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

/* ---- sorting the run in memory --------------------------------------------------------- */

static void sort_insertion(const sort_state *st, sort_ent *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        sort_ent x = a[i];
        size_t j = i;
        for (; j > 0 && sort_ent_cmp(st, &a[j - 1], &x) > 0; j--) a[j] = a[j - 1];
        a[j] = x;
    }
}

static void sort_merge(const sort_state *st, const sort_ent *a, size_t na, const sort_ent *b,
                       size_t nb, sort_ent *out)
{
    size_t i = 0, j = 0, k = 0;
    while (i < na && j < nb) out[k++] = sort_ent_cmp(st, &b[j], &a[i]) < 0 ? b[j++] : a[i++];
    while (i < na) out[k++] = a[i++];
    while (j < nb) out[k++] = b[j++];
}

/* Bottom-up merge sort of a[0..n) using tmp; the result ends in a. */
static void sort_msort(const sort_state *st, sort_ent *a, sort_ent *tmp, size_t n)
{
    for (size_t i = 0; i < n; i += SORT_INS)
        sort_insertion(st, a + i, n - i < SORT_INS ? n - i : SORT_INS);
    sort_ent *src = a, *dst = tmp;
    for (size_t w = SORT_INS; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            sort_merge(st, src + lo, mid - lo, src + mid, hi - mid, dst + lo);
        }
        sort_ent *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

/* How many of the first k merged elements come from a (merge path): the
 * comparison is a strict total order, so the split is unique. */
static size_t sort_corank(const sort_state *st, const sort_ent *a, size_t na, const sort_ent *b,
                          size_t nb, size_t k)
{
    size_t lo = k > nb ? k - nb : 0, hi = k < na ? k : na;
    while (lo < hi) {
        size_t i = lo + (hi - lo) / 2, j = k - i;
        if (sort_ent_cmp(st, &b[j - 1], &a[i]) > 0) lo = i + 1;
        else hi = i;
    }
    return lo;
}

/* Merge a and b into out with T threads, each writing one slice of out. */
static void sort_merge_par(const sort_state *st, const sort_ent *a, size_t na,
                           const sort_ent *b, size_t nb, sort_ent *out, int T)
{
    size_t n = na + nb;
#pragma omp parallel for num_threads(T) schedule(static, 1)
    for (int t = 0; t < T; t++) {
        size_t k0 = n * (size_t)t / (size_t)T, k1 = n * (size_t)(t + 1) / (size_t)T;
        size_t i0 = sort_corank(st, a, na, b, nb, k0), i1 = sort_corank(st, a, na, b, nb, k1);
        sort_merge(st, a + i0, i1 - i0, b + (k0 - i0), (k1 - i1) - (k0 - i0), out + k0);
    }
}

/* The threads worth using on n rows (OMP_NUM_THREADS caps them), with
 * nested parallelism allowed when they are more than one. */
static int sort_threads(size_t n)
{
    if (n < SORT_PAR_MIN) return 1;
    int T = omp_get_max_threads();
    if ((size_t)T > n / (SORT_PAR_MIN / 2)) T = (int)(n / (SORT_PAR_MIN / 2));
    if (T > 64) T = 64;
    if (T <= 1) return 1;
    /* This thread may be a worker of the runtime's own OpenMP team, where
     * a nested region would get one thread; the setting is this thread's
     * (an ICV of its task), so the other workers are not affected. */
    int level = omp_get_active_level();
    if (omp_get_max_active_levels() <= level) omp_set_max_active_levels(level + 1);
    return T;
}

/* Sort the rows held into st->idx: chunks side by side, then pairwise
 * merges. */
static void sort_run(sort_state *st)
{
    size_t n = st->nrows;
    int T = sort_threads(n);
    if (T == 1) {
        for (size_t i = 0; i < n; i++) st->idx[i] = sort_make_ent(st, (uint32_t)i);
        sort_msort(st, st->idx, st->tmp, n);
        return;
    }
    size_t bound[65];
    for (int t = 0; t <= T; t++) bound[t] = n * (size_t)t / (size_t)T;
    sort_ent *idx = st->idx, *tmp = st->tmp;
#pragma omp parallel for num_threads(T) schedule(static, 1)
    for (int t = 0; t < T; t++) {
        for (size_t i = bound[t]; i < bound[t + 1]; i++) idx[i] = sort_make_ent(st, (uint32_t)i);
        sort_msort(st, idx + bound[t], tmp + bound[t], bound[t + 1] - bound[t]);
    }
    sort_ent *src = idx, *dst = tmp;
    for (int w = 1; w < T; w *= 2) {
        for (int t = 0; t < T; t += 2 * w) {
            size_t lo = bound[t], mid = bound[t + w < T ? t + w : T],
                   hi = bound[t + 2 * w < T ? t + 2 * w : T];
            if (mid == hi) memcpy(dst + lo, src + lo, (hi - lo) * sizeof *src);
            else sort_merge_par(st, src + lo, mid - lo, src + mid, hi - mid, dst + lo, T);
        }
        sort_ent *x = src;
        src = dst;
        dst = x;
    }
    if (src != idx) memcpy(idx, src, n * sizeof *idx);
}

/* ---- taking rows ---------------------------------------------------------------------- */

static int sort_grow_rows(sort_state *st)
{
    size_t cap = st->cap_rows ? st->cap_rows * 2 : 256;
    if (cap > UINT32_MAX) return WEIR_ELIMIT;
    unsigned char **nr = realloc(st->recs, cap * sizeof *nr);
    if (!nr) return WEIR_ENOMEM;
    st->recs = nr;
    sort_key *nk = realloc(st->keys, cap * (st->nk ? st->nk : 1) * sizeof *nk);
    if (!nk) return WEIR_ENOMEM;
    st->keys = nk;
    st->cap_rows = cap;
    return 0;
}

static int sort_add_rows(weir_stage *s, sort_state *st, const weir_batch *in)
{
    for (uint32_t r = 0; r < in->nrows; r++) {
        if (st->nrows == st->cap_rows) {
            int rc = sort_grow_rows(st);
            if (rc == WEIR_ELIMIT)
                return weir_stage_errorf(s, rc, "more than %u rows in one sorted run",
                                         UINT32_MAX);
            if (rc) return weir_stage_errorf(s, rc, "out of memory holding %zu rows", st->nrows);
        }
        const weir_field *f = &in->fields[(size_t)r * in->ncols];
        size_t body = 0;
        for (size_t c = 0; c < st->ncols; c++) body += 4 + f[c].len;
        if (body > UINT32_MAX - 4)
            return weir_stage_errorf(s, WEIR_ELIMIT, "a row of more than 4 GiB");
        unsigned char *rec = sort_alloc(st, 4 + body);
        if (!rec) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory holding %zu rows", st->nrows);
        uint32_t b32 = (uint32_t)body;
        memcpy(rec, &b32, 4);
        size_t at = 4;
        for (size_t c = 0; c < st->ncols; c++) {
            uint32_t l = f[c].len;
            memcpy(rec + at, &l, 4);
            if (l) memcpy(rec + at + 4, in->data + f[c].off, l);
            st->fieldpos[c] = at + 4;
            at += 4 + l;
        }
        st->recs[st->nrows] = rec;
        sort_key *k = &st->keys[st->nrows * st->nk];
        for (size_t j = 0; j < st->nk; j++) {
            size_t c = (size_t)st->key_col[j];
            sort_parse_key(&k[j], rec + st->fieldpos[c], f[c].len);
        }
        st->nrows++;
    }
    return 0;
}

/* ---- run files ------------------------------------------------------------------------- */

static int sort_io_error(weir_stage *s, const char *what, const char *path)
{
    return weir_stage_errorf(s, WEIR_EIO, "%s spill file '%s': %s", what, path,
                             strerror(errno));
}

/* A new run file, last in the list (or at `at`); its fd in st->wfd. */
static int sort_new_run(weir_stage *s, sort_state *st, size_t at)
{
    if (st->nruns == st->cap_runs) {
        size_t cap = st->cap_runs ? st->cap_runs * 2 : 16;
        char **nr = realloc(st->runs, cap * sizeof *nr);
        if (!nr) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        st->runs = nr;
        st->cap_runs = cap;
    }
    size_t n = strlen(st->tmpdir) + 32;
    char *path = malloc(n);
    if (!path) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    snprintf(path, n, "%s/weir-sort-XXXXXX", st->tmpdir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        int rc = weir_stage_errorf(s, WEIR_EIO, "cannot create a spill file in '%s': %s",
                                   st->tmpdir, strerror(errno));
        free(path);
        return rc;
    }
    memmove(&st->runs[at + 1], &st->runs[at], (st->nruns - at) * sizeof *st->runs);
    st->runs[at] = path;
    st->nruns++;
    st->wfd = fd;
    st->wlen = 0;
    if (!st->wbuf && !(st->wbuf = malloc(st->wcap)))
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return 0;
}

static int sort_write_all(weir_stage *s, int fd, const unsigned char *p, size_t n,
                          const char *path)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return sort_io_error(s, "writing", path);
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int sort_wflush(weir_stage *s, sort_state *st, const char *path)
{
    int rc = sort_write_all(s, st->wfd, st->wbuf, st->wlen, path);
    st->wlen = 0;
    return rc;
}

static int sort_wrec(weir_stage *s, sort_state *st, const char *path, const unsigned char *rec,
                     size_t len)
{
    if (st->wlen + len > st->wcap) {
        int rc = sort_wflush(s, st, path);
        if (rc) return rc;
        if (len > st->wcap) return sort_write_all(s, st->wfd, rec, len, path); /* a huge row */
    }
    memcpy(st->wbuf + st->wlen, rec, len);
    st->wlen += len;
    return 0;
}

static int sort_wclose(weir_stage *s, sort_state *st, const char *path)
{
    int rc = sort_wflush(s, st, path);
    int fd = st->wfd;
    st->wfd = -1;
    if (close(fd) != 0 && rc == 0) rc = sort_io_error(s, "writing", path);
    return rc;
}

static size_t sort_reclen(const unsigned char *rec)
{
    uint32_t body;
    memcpy(&body, rec, 4);
    return 4 + (size_t)body;
}

/* Rows go out in sorted order, i.e. from random places: fetch the record
 * pointers SORT_AHEAD rows ahead, the records half as far. */
#define SORT_AHEAD 32
static inline void sort_prefetch(const sort_state *st, size_t i)
{
    if (i + SORT_AHEAD < st->nrows) __builtin_prefetch(&st->recs[st->idx[i + SORT_AHEAD].idx]);
    if (i + SORT_AHEAD / 2 < st->nrows) __builtin_prefetch(st->recs[st->idx[i + SORT_AHEAD / 2].idx]);
}

/* Sort the rows held and write them as the next run; memory is reused. */
static int sort_spill(weir_stage *s, sort_state *st)
{
    int rc = sort_ensure_idx(s, st);
    if (rc) return rc;
    sort_run(st);
    rc = sort_new_run(s, st, st->nruns);
    if (rc) return rc;
    const char *path = st->runs[st->nruns - 1];
    weir_ctx *ctx = weir_stage_ctx(s);
    for (size_t i = 0; rc == 0 && i < st->nrows; i++) {
        sort_prefetch(st, i);
        const unsigned char *rec = st->recs[st->idx[i].idx];
        rc = sort_wrec(s, st, path, rec, sort_reclen(rec));
        if (rc == 0 && (i & 4095) == 4095 && weir_ctx_done(ctx)) rc = weir_ctx_err(ctx);
    }
    if (rc == 0) rc = sort_wclose(s, st, path);
    st->nrows = 0;
    /* Arrays that take much of the budget by themselves (rows tiny next to
     * the per-row overhead) would leave no room: start them again. */
    if (sort_mem(st) - st->arena_bytes > st->budget / 2) {
        free(st->recs);
        free(st->keys);
        free(st->idx);
        free(st->tmp);
        st->recs = NULL;
        st->keys = NULL;
        st->idx = st->tmp = NULL;
        st->cap_rows = st->cap_idx = 0;
    }
    /* Keep one chunk for the next run; the budget counts what stays. */
    if (st->chunks) {
        sort_chunk *keep = st->chunks;
        while (keep->next) keep = keep->next; /* the first, of the usual size */
        for (sort_chunk *c = st->chunks, *n; c != keep; c = n) {
            n = c->next;
            free(c);
        }
        keep->used = 0;
        st->chunks = keep;
        st->arena_bytes = sizeof *keep + keep->cap;
    }
    return rc;
}

/* ---- merging runs ---------------------------------------------------------------------- */

/* Make sure n bytes from pos are in the buffer. @return 0, 1 at a clean
 * end of file (nothing left), or a negative code. */
static int sort_rfill(weir_stage *s, sort_reader *r, size_t n, const char *path)
{
    if (r->len - r->pos >= n) return 0;
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (n > r->cap) {
        unsigned char *nb = realloc(r->buf, n);
        if (!nb) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        r->buf = nb;
        r->cap = n;
    }
    while (r->len < n) {
        ssize_t k = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return sort_io_error(s, "reading", path);
        if (k == 0) {
            if (r->len == 0) return 1;
            return weir_stage_errorf(s, WEIR_EIO, "spill file '%s' ends inside a row", path);
        }
        r->len += (size_t)k;
    }
    return 0;
}

/* The next record of r and its keys; r->rec = NULL at the end. */
static int sort_rnext(weir_stage *s, sort_state *st, sort_reader *r, const char *path)
{
    int rc = sort_rfill(s, r, 4, path);
    if (rc == 1) {
        r->rec = NULL;
        return 0;
    }
    if (rc) return rc;
    uint32_t body;
    memcpy(&body, r->buf + r->pos, 4);
    if ((rc = sort_rfill(s, r, 4 + (size_t)body, path))) {
        if (rc == 1) rc = weir_stage_errorf(s, WEIR_EIO, "spill file '%s' ends inside a row", path);
        return rc;
    }
    r->rec = r->buf + r->pos;
    r->reclen = 4 + (size_t)body;
    r->pos += r->reclen;
    size_t at = 4;
    for (size_t c = 0; c < st->ncols; c++) {
        uint32_t l;
        memcpy(&l, r->rec + at, 4);
        st->fieldpos[c] = at + 4;
        at += 4 + l;
    }
    for (size_t k = 0; k < st->nk; k++) {
        size_t c = (size_t)st->key_col[k];
        uint32_t l;
        memcpy(&l, r->rec + st->fieldpos[c] - 4, 4);
        sort_parse_key(&r->keys[k], r->rec + st->fieldpos[c], l);
    }
    return 0;
}

static bool sort_reader_less(const sort_state *st, const sort_reader *a, const sort_reader *b)
{
    int c = sort_keys_cmp_from(st, a->keys, b->keys, 0);
    return c ? c < 0 : a->run < b->run;
}

static void sort_heap_down(const sort_state *st, sort_reader **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && sort_reader_less(st, h[l], h[m])) m = l;
        if (l + 1 < n && sort_reader_less(st, h[l + 1], h[m])) m = l + 1;
        if (m == i) return;
        sort_reader *t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Append a record's fields as one row of *b, emitting full batches. */
static int sort_out_row(weir_stage *s, sort_state *st, weir_batch **b, const unsigned char *rec)
{
    int rc;
    if (!*b) {
        if ((rc = weir_stage_batch(s, b))) return weir_stage_errorf(s, rc, "out of memory");
        weir_batch_set_schema(*b, st->schema);
    }
    size_t at = 4;
    rc = 0;
    for (size_t c = 0; rc == 0 && c < st->ncols; c++) {
        uint32_t l;
        memcpy(&l, rec + at, 4);
        rc = weir_batch_add_field(*b, rec + at + 4, l);
        at += 4 + l;
    }
    if (rc == 0) rc = weir_batch_end_row(*b);
    if (rc) return weir_stage_errorf(s, rc, "out of memory");
    if ((*b)->nrows >= SORT_OUT_ROWS) {
        weir_batch *full = *b;
        *b = NULL;
        return weir_stage_emit(s, full);
    }
    return 0;
}

/* Sorted rows [from, to) of the run in memory into b. @return 0 or a
 * code (no message: this may run on a helper thread). */
static int sort_fill(const sort_state *st, weir_batch *b, size_t from, size_t to)
{
    int rc = 0;
    for (size_t i = from; rc == 0 && i < to; i++) {
        sort_prefetch(st, i);
        const unsigned char *rec = st->recs[st->idx[i].idx];
        size_t at = 4;
        for (size_t c = 0; rc == 0 && c < st->ncols; c++) {
            uint32_t l;
            memcpy(&l, rec + at, 4);
            rc = weir_batch_add_field(b, rec + at + 4, l);
            at += 4 + l;
        }
        if (rc == 0) rc = weir_batch_end_row(b);
    }
    return rc;
}

/* The run in memory goes out in sorted order. Gathering rows from their
 * random places is bound by memory latency, so with several threads each
 * fills one of a group of batches, and the group goes out in order. */
static int sort_emit_memory(weir_stage *s, sort_state *st)
{
    size_t n = st->nrows;
    int T = sort_threads(n), rc = 0;
    weir_batch *bs[64];
    int err[64];
    for (size_t base = 0; rc == 0 && base < n; base += (size_t)T * SORT_OUT_ROWS) {
        int nb = 0;
        for (; nb < T && base + (size_t)nb * SORT_OUT_ROWS < n; nb++) {
            if ((rc = weir_stage_batch(s, &bs[nb]))) break;
            weir_batch_set_schema(bs[nb], st->schema);
            err[nb] = 0;
        }
        if (rc == 0) {
#pragma omp parallel for num_threads(T) schedule(static, 1) if (nb > 1)
            for (int j = 0; j < nb; j++) {
                size_t from = base + (size_t)j * SORT_OUT_ROWS;
                err[j] = sort_fill(st, bs[j], from, n - from < SORT_OUT_ROWS ? n : from + SORT_OUT_ROWS);
            }
        } else {
            rc = weir_stage_errorf(s, rc, "out of memory");
        }
        for (int j = 0; j < nb; j++) {
            if (rc == 0 && err[j]) rc = weir_stage_errorf(s, err[j], "out of memory");
            if (rc == 0) rc = weir_stage_emit(s, bs[j]);
            else weir_batch_release(bs[j]);
        }
    }
    return rc;
}

/* Merge runs [first, first+n): into a new run put at `first` (out_run),
 * or downstream. The merged runs' files are deleted. */
static int sort_merge_runs(weir_stage *s, sort_state *st, size_t first, size_t n, bool out_run)
{
    sort_reader *rd = calloc(n, sizeof *rd);
    sort_reader **heap = calloc(n, sizeof *heap);
    sort_key *keys = calloc(n * (st->nk ? st->nk : 1), sizeof *keys);
    int rc = rd && heap && keys ? 0 : weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    /* Reading buffers share half the budget; the other half is slack for
     * the output and for rows bigger than a buffer. */
    size_t rcap = sort_clamp(st->budget / (2 * n), 4096, (size_t)1 << 20);
    for (size_t i = 0; i < n && rd; i++) rd[i].fd = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sort_reader *r = &rd[i];
        r->run = i;
        r->keys = &keys[i * st->nk];
        r->cap = rcap;
        r->buf = malloc(rcap);
        if (!r->buf) {
            rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
            break;
        }
        r->fd = open(st->runs[first + i], O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) rc = sort_io_error(s, "opening", st->runs[first + i]);
    }
    size_t nh = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = sort_rnext(s, st, &rd[i], st->runs[first + i]);
        if (rc == 0 && rd[i].rec) heap[nh++] = &rd[i];
    }
    for (size_t i = nh / 2; rc == 0 && i-- > 0;) sort_heap_down(st, heap, nh, i);
    const char *opath = NULL;
    if (rc == 0 && out_run) {
        rc = sort_new_run(s, st, first + n);
        opath = rc == 0 ? st->runs[first + n] : NULL;
    }
    weir_batch *b = NULL;
    weir_ctx *ctx = weir_stage_ctx(s);
    for (uint64_t count = 0; rc == 0 && nh > 0; count++) {
        sort_reader *r = heap[0];
        if (out_run) {
            rc = sort_wrec(s, st, opath, r->rec, r->reclen);
            if (rc == 0 && (count & 4095) == 4095 && weir_ctx_done(ctx)) rc = weir_ctx_err(ctx);
        } else {
            rc = sort_out_row(s, st, &b, r->rec);
        }
        if (rc == 0) rc = sort_rnext(s, st, r, st->runs[first + r->run]);
        if (rc == 0 && !r->rec) heap[0] = heap[--nh];
        if (rc == 0 && nh) sort_heap_down(st, heap, nh, 0);
    }
    if (rc == 0 && out_run) rc = sort_wclose(s, st, opath);
    if (rc == 0 && b) {
        weir_batch *last = b;
        b = NULL;
        rc = weir_stage_emit(s, last);
    }
    weir_batch_release(b);
    for (size_t i = 0; rd && i < n; i++) {
        if (rd[i].fd >= 0) close(rd[i].fd);
        free(rd[i].buf);
    }
    free(rd);
    free(heap);
    free(keys);
    if (rc == 0) { /* the inputs are merged: drop them */
        for (size_t i = 0; i < n; i++) {
            unlink(st->runs[first + i]);
            free(st->runs[first + i]);
        }
        memmove(&st->runs[first], &st->runs[first + n],
                (st->nruns - first - n) * sizeof *st->runs);
        st->nruns -= n;
    }
    return rc;
}

/* ---- the stage ------------------------------------------------------------------------ */

static int sort_start(weir_stage *s, sort_state *st, const weir_batch *in)
{
    int rc = sort_resolve(s, in->schema, st->by, st->nk, st->key_col);
    if (rc) return rc;
    st->schema = weir_schema_retain(in->schema);
    st->ncols = weir_schema_ncols(in->schema);
    st->fieldpos = calloc(st->ncols ? st->ncols : 1, sizeof *st->fieldpos);
    if (!st->fieldpos) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return 0;
}

static int sort_process(weir_stage *s, weir_batch *in)
{
    sort_state *st = weir_stage_state(s);
    int rc = 0;
    if (!st->schema) rc = sort_start(s, st, in);
    else if (in->schema != st->schema && !weir_schema_equal(in->schema, st->schema))
        rc = weir_stage_errorf(s, WEIR_EDATA, "rows from %s have other columns than the rows before",
                               in->origin ? in->origin : "a later input");
    if (rc == 0) rc = sort_add_rows(s, st, in);
    weir_batch_release(in);
    if (rc == 0 && st->nrows && sort_mem(st) > st->budget) rc = sort_spill(s, st);
    return rc;
}

static int sort_finish(weir_stage *s)
{
    sort_state *st = weir_stage_state(s);
    if (!st->schema) return 0; /* no input at all */
    int rc = 0;
    if (st->nruns == 0) { /* all in memory */
        if (st->nrows == 0) { /* the columns, with no rows */
            weir_batch *b;
            if ((rc = weir_stage_batch(s, &b))) return weir_stage_errorf(s, rc, "out of memory");
            weir_batch_set_schema(b, st->schema);
            rc = weir_stage_emit(s, b);
            return rc < 0 ? rc : 0;
        }
        if ((rc = sort_ensure_idx(s, st))) return rc;
        sort_run(st);
        rc = sort_emit_memory(s, st);
        return rc < 0 ? rc : 0;
    }
    if (st->nrows) rc = sort_spill(s, st);
    /* The merge needs only its reading buffers. */
    sort_free_chunks(st);
    free(st->recs);
    free(st->keys);
    free(st->idx);
    free(st->tmp);
    st->recs = NULL;
    st->keys = NULL;
    st->idx = st->tmp = NULL;
    st->cap_rows = st->cap_idx = 0;
    /* Passes over the runs, each merging neighbours SORT_MAX_FANIN at a
     * time, until one merge can take them all: a row is read once a pass. */
    while (rc == 0 && st->nruns > SORT_MAX_FANIN)
        for (size_t first = 0; rc == 0 && first + 1 < st->nruns; first++) {
            size_t n = st->nruns - first;
            rc = sort_merge_runs(s, st, first, n < SORT_MAX_FANIN ? n : SORT_MAX_FANIN, true);
        }
    if (rc == 0) rc = sort_merge_runs(s, st, 0, st->nruns, false);
    return rc < 0 ? rc : 0;
}

const weir_stage_def weir__stage_sort = {
    .abi = WEIR_ABI_VERSION,
    .name = "sort",
    .summary = "sort rows by key columns: stable, numbers as numbers, spills to disk past "
               "the memory budget",
    .args = (const weir_arg_def[]){
        {"by", WEIR_ARG_LIST, NULL,
         "key columns, compared left to right: by=col or by=[a, b]. Numbers (the whole "
         "field a decimal integer or float) compare as numbers and come before other "
         "values, which compare as bytes (the empty value first); equal keys keep "
         "their input order"},
        {"desc", WEIR_ARG_EXPR, "false",
         "descending: true/false for every key, or a list with one per key "
         "(desc=[true, false]); descending reverses the whole order above"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = sort_open,
    .process = sort_process,
    .finish = sort_finish,
    .close = sort_close,
    .plan = sort_plan,
};
