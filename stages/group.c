/*
 * group(by=[cols…], sort=true, name=agg(col)…) — hash aggregation that
 * spills to disk past its memory budget.
 *
 * Output columns: the keys, then the aggregates in spec order. With
 * sort=true (the default) rows come in key order: keys compare left to
 * right; a value that is a number (weir_value_parse) compares as a number
 * and sorts before every other value, which compare as bytes (the empty
 * value first); numbers that are equal but written differently ("1",
 * "1.0") are ordered by their bytes, so that no two keys tie and the order
 * is total. With sort=false rows come in the order keys were first seen —
 * in each replica: with workers=N > 1 the replicas' outputs follow one
 * another (replica 0's keys first), which is deterministic for a given N
 * but not the same as workers=1.
 *
 * Aggregates: count() counts rows; count(col) counts non-empty values;
 * count_distinct(col) counts distinct non-empty values, exactly (the values
 * are kept); sum, mean, min and max read numbers and skip empty and
 * non-numeric values (with none, the result is empty); first(col) and
 * last(col) are the first and last non-empty values in input order, as
 * text. Sums are exact while every value is a plain decimal (digits,
 * optional fraction, no exponent): they are kept as a 128-bit integer
 * scaled by the most fraction digits seen, so 0.1 + 0.2 is 0.3 and cents
 * add up to the cent. A value with an exponent, or a sum beyond 38 digits,
 * switches that sum to floating point with Neumaier's compensated
 * summation.
 *
 * Parallel: with workers=N the runtime hash-partitions rows on the by
 * columns (each key lives in one replica, and reaches it in input order,
 * so first/last stay right), each replica emits its groups sorted, and the
 * collector merges the replicas by the same order (group_compare): the
 * output is byte for byte that of workers=1.
 *
 * Memory: the table (key bytes, entries, aggregate states, first/last
 * texts, count_distinct values) is counted against weir_stage_mem_budget().
 * Past it, with sort=true, the groups held are written in key order to a
 * run file in weir_stage_tmpdir() ("weir-group-XXXXXX") with their partial
 * states, and the table starts afresh; at the end the runs are merged with
 * a heap (at most GROUP_MAX_FANIN at a time, in passes, neighbours
 * together, so that earlier input stays first for first/last), combining
 * the states of equal keys: counts add, exact sums add exactly, min/max
 * compare, first keeps the earlier and last the later, and count_distinct
 * merges the sorted value lists. A floating-point sum (see above) may then
 * differ in its last bits from the unspilled run, as the additions group
 * differently. With sort=false there is no spilling: past the budget the
 * stage stops with an error naming it. Run files go away as soon as they
 * are merged, and close() removes any left after a failure or a cancel.
 */
#include "stages.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GROUP_OUT_ROWS 4096u
#define GROUP_MAX_FANIN 64

typedef enum group_fn {
    AGG_COUNT_ROWS,
    AGG_COUNT,
    AGG_SUM,
    AGG_MEAN,
    AGG_MIN,
    AGG_MAX,
    AGG_COUNT_DISTINCT,
    AGG_FIRST,
    AGG_LAST,
} group_fn;

typedef struct group_agg {
    group_fn fn;
    const char *name; /* output column */
    const char *col;  /* input column, NULL for count() */
    int idx;          /* resolved input column */
} group_agg;

/* One aggregate's state for one group. n: rows, values, or distinct values
 * counted (for min/max/first/last: values seen, so n > 0 means "has"). */
typedef struct group_acc {
    int64_t n;
    union {
        struct { /* sum, mean */
            __int128 dsum; /* exact decimal sum × 10^scale, while !flt */
            double fsum, comp;
            int32_t scale;
            bool flt;
        } s;
        struct { /* min, max: the exact number for output */
            double num;
            int64_t i;
            bool is_int;
        } m;
        struct { /* first, last: text in the texts arena */
            unsigned char *p;
            uint32_t len, cap;
        } t;
    };
} group_acc;

typedef struct group_entry {
    uint64_t hash;
    const unsigned char *key; /* nby × (u32 length, bytes), in the keys arena */
    uint32_t key_len;
} group_entry;

/* A count_distinct value of one group and aggregate. */
typedef struct group_dent {
    uint64_t hash;
    const unsigned char *p;
    uint32_t len;
    uint32_t group;
    uint32_t agg;
} group_dent;

typedef struct group_chunk {
    struct group_chunk *next;
    size_t cap, used;
    unsigned char data[];
} group_chunk;

/* Bytes that never move once placed (entries point at them). */
typedef struct group_arena {
    group_chunk *head;
    size_t bytes; /* allocated, as the budget counts it */
    size_t chunk;
} group_arena;

typedef struct group_reader {
    int fd;
    size_t run; /* position among the runs merged: lower is earlier input */
    unsigned char *buf;
    size_t cap, pos, len;
    const unsigned char *key; /* current key; NULL at the end */
    uint32_t key_len;
    /* count_distinct merging: the current value of this reader's list */
    const unsigned char *val;
    uint32_t val_len;
    bool val_end;
} group_reader;

typedef struct group_state {
    const char *const *by;
    size_t nby;
    int *key_idx;
    group_agg *aggs;
    size_t nagg;
    bool sort;
    bool has_distinct;
    bool has_text;
    weir_schema *in_schema; /* the schema indices were resolved for (a reference) */
    weir_schema *out_schema;
    size_t budget;
    const char *tmpdir;
    bool emitted;
    /* table */
    uint32_t *slots; /* entry index + 1; 0 is empty */
    size_t nslots;
    group_entry *entries;
    size_t nentries, cap_entries;
    group_acc *accs; /* nentries × nagg */
    group_arena keys, texts, dvals;
    /* count_distinct values: one table for every group and aggregate */
    uint32_t *dslots;
    size_t ndslots;
    group_dent *dents;
    size_t ndents, cap_dents;
    unsigned char *scratch; /* the key being looked up */
    size_t scratch_cap;
    /* runs on disk, in input order */
    char **runs;
    size_t nruns, cap_runs;
    int wfd;
    const char *wpath;
    unsigned char *wbuf;
    size_t wlen, wcap;
    uint64_t groups_spilled;
} group_state;

static const struct {
    const char *name;
    group_fn fn;
} group_fns[] = {
    {"count", AGG_COUNT}, {"sum", AGG_SUM},     {"mean", AGG_MEAN},
    {"min", AGG_MIN},     {"max", AGG_MAX},     {"count_distinct", AGG_COUNT_DISTINCT},
    {"first", AGG_FIRST}, {"last", AGG_LAST},
};

/* ---- arguments and schemas -------------------------------------------------------------- */

/* Read the aggregate arguments into st->aggs (positions kept for errors). */
static int group_parse_aggs(weir_stage *s, group_state *st)
{
    const char *const *names;
    const weir_expr *const *exprs;
    size_t n = weir_stage_arg_named(s, "aggregates", &names, &exprs);
    st->aggs = calloc(n ? n : 1, sizeof *st->aggs);
    if (!st->aggs) return WEIR_ENOMEM;
    st->nagg = n;
    for (size_t i = 0; i < n; i++) {
        const weir_expr *e = exprs[i];
        group_agg *a = &st->aggs[i];
        a->name = names[i];
        size_t k = 0;
        if (e->kind == WEIR_EXPR_CALL)
            while (k < sizeof group_fns / sizeof *group_fns && strcmp(group_fns[k].name, e->str))
                k++;
        if (e->kind != WEIR_EXPR_CALL || k == sizeof group_fns / sizeof *group_fns)
            return weir_stage_errorf(s, WEIR_ESPEC,
                                     "%s:%u:%u: '%s' must be an aggregate: count(), "
                                     "count(col), count_distinct(col), sum(col), mean(col), "
                                     "min(col), max(col), first(col) or last(col)",
                                     e->pos.file, e->pos.line, e->pos.col, names[i]);
        a->fn = group_fns[k].fn;
        if (e->nargs == 0 && a->fn == AGG_COUNT) {
            a->fn = AGG_COUNT_ROWS;
        } else if (e->nargs != 1 || (e->args[0]->kind != WEIR_EXPR_COL &&
                                     e->args[0]->kind != WEIR_EXPR_STR)) {
            return weir_stage_errorf(s, WEIR_ESPEC, "%s:%u:%u: %s() takes one column",
                                     e->pos.file, e->pos.line, e->pos.col, e->str);
        } else {
            a->col = e->args[0]->str;
        }
        st->has_distinct |= a->fn == AGG_COUNT_DISTINCT;
        st->has_text |= a->fn == AGG_FIRST || a->fn == AGG_LAST;
    }
    return 0;
}

/* Resolve column names against schema; build the output schema. */
static int group_resolve(weir_stage *s, group_state *st, const weir_schema *in)
{
    free(st->key_idx);
    st->key_idx = malloc((st->nby ? st->nby : 1) * sizeof *st->key_idx);
    if (!st->key_idx) return WEIR_ENOMEM;
    for (size_t k = 0; k < st->nby + st->nagg; k++) {
        const char *col = k < st->nby ? st->by[k] : st->aggs[k - st->nby].col;
        if (!col) continue;
        int idx = weir_schema_find(in, col);
        if (idx < 0)
            return weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s'", col);
        if (k < st->nby) st->key_idx[k] = idx;
        else st->aggs[k - st->nby].idx = idx;
    }
    size_t n = st->nby + st->nagg;
    const char **names = malloc(n * sizeof *names);
    if (!names) return WEIR_ENOMEM;
    for (size_t k = 0; k < n; k++)
        names[k] = k < st->nby ? st->by[k] : st->aggs[k - st->nby].name;
    for (size_t k = 0; k < n; k++)
        for (size_t j = 0; j < k; j++)
            if (strcmp(names[k], names[j]) == 0) {
                const char *twice = names[k]; /* a by or aggregate name: it stays */
                free(names);
                return weir_stage_errorf(s, WEIR_ESPEC, "output column '%s' appears twice",
                                         twice);
            }
    weir_schema_release(st->out_schema);
    st->out_schema = NULL;
    int rc = weir_schema_create(&st->out_schema, names, n);
    free(names);
    weir_schema_release(st->in_schema);
    st->in_schema = weir_schema_retain(in);
    return rc;
}

static void group_arena_free(group_arena *a)
{
    for (group_chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
    a->bytes = 0;
}

static unsigned char *group_arena_alloc(group_arena *a, size_t n)
{
    group_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > a->chunk ? n : a->chunk;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->bytes += sizeof *c + cap;
    }
    unsigned char *p = c->data + c->used;
    c->used += n;
    return p;
}

/* Empty the table (after a spill): everything goes, so that what the next
 * run holds starts from nothing. */
static void group_clear(group_state *st)
{
    free(st->slots);
    free(st->entries);
    free(st->accs);
    free(st->dslots);
    free(st->dents);
    st->slots = NULL;
    st->entries = NULL;
    st->accs = NULL;
    st->dslots = NULL;
    st->dents = NULL;
    st->nslots = st->nentries = st->cap_entries = 0;
    st->ndslots = st->ndents = st->cap_dents = 0;
    group_arena_free(&st->keys);
    group_arena_free(&st->texts);
    group_arena_free(&st->dvals);
}

static void group_free(group_state *st)
{
    if (!st) return;
    if (st->wfd >= 0) close(st->wfd);
    for (size_t i = 0; i < st->nruns; i++) {
        unlink(st->runs[i]);
        free(st->runs[i]);
    }
    free(st->runs);
    free(st->wbuf);
    group_clear(st);
    free(st->key_idx);
    free(st->aggs);
    weir_schema_release(st->out_schema);
    weir_schema_release(st->in_schema);
    free(st->scratch);
    free(st);
}

static int group_setup(weir_stage *s, group_state **out)
{
    group_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    *out = st;
    st->wfd = -1;
    st->nby = weir_stage_arg_list(s, "by", &st->by);
    st->sort = weir_stage_arg_bool(s, "sort");
    if (st->nby == 0) return weir_stage_errorf(s, WEIR_ESPEC, "by= needs at least one column");
    return group_parse_aggs(s, st);
}

static int group_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    group_state *st;
    int rc = group_setup(s, &st);
    if (rc == 0 && in) {
        rc = group_resolve(s, st, in);
        if (rc == 0) *out = weir_schema_retain(st->out_schema);
    }
    if (rc == 0) {
        /* It reads only its keys and its aggregates' columns: a split by
         * key (workers=N) copies just those. */
        const char **cols = malloc((st->nby + st->nagg + 1) * sizeof *cols);
        size_t n = 0;
        for (size_t k = 0; cols && k < st->nby + st->nagg; k++) {
            const char *c = k < st->nby ? st->by[k] : st->aggs[k - st->nby].col;
            bool seen = !c;
            for (size_t j = 0; j < n && !seen; j++) seen = strcmp(cols[j], c) == 0;
            if (!seen) cols[n++] = c;
        }
        rc = cols ? weir_stage_reads(s, cols, n) : WEIR_ENOMEM;
        free(cols);
    }
    group_free(st);
    return rc;
}

static size_t group_clamp(size_t v, size_t lo, size_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int group_open(weir_stage *s)
{
    group_state *st;
    int rc = group_setup(s, &st);
    weir_stage_set_state(s, st);
    if (rc) return rc;
    st->budget = weir_stage_mem_budget(s);
    st->tmpdir = weir_stage_tmpdir(s);
    st->keys.chunk = st->texts.chunk = st->dvals.chunk =
        group_clamp(st->budget / 32, 4096, (size_t)1 << 20);
    st->wcap = group_clamp(st->budget / 16, (size_t)64 << 10, (size_t)1 << 20);
    return 0;
}

static void group_close(weir_stage *s) { group_free(weir_stage_state(s)); }

/* ---- comparing keys ------------------------------------------------------------------ */

/* An integer against a float, exactly. */
static int group_cmp_int_flt(int64_t i, double d)
{
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    int64_t t = (int64_t)d; /* toward zero; exact in this range */
    if (i != t) return i < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int group_bytes_cmp(const unsigned char *a, size_t la, const unsigned char *b, size_t lb)
{
    int c = la && lb ? memcmp(a, b, la < lb ? la : lb) : 0;
    return c ? c : (la > lb) - (la < lb);
}

/* One key value against another: numbers first, by value (then bytes, so
 * that only identical values tie), other values by bytes. */
static int group_val_cmp(const unsigned char *a, size_t la, const unsigned char *b, size_t lb)
{
    weir_value va, vb;
    bool na = weir_value_parse(a, la, &va), nb = weir_value_parse(b, lb, &vb);
    if (na != nb) return na ? -1 : 1;
    if (na) {
        int c;
        if (va.is_int && vb.is_int) c = (va.i > vb.i) - (va.i < vb.i);
        else if (va.is_int) c = group_cmp_int_flt(va.i, vb.num);
        else if (vb.is_int) c = -group_cmp_int_flt(vb.i, va.num);
        else c = (va.num > vb.num) - (va.num < vb.num);
        if (c) return c;
    }
    return group_bytes_cmp(a, la, b, lb);
}

/* Compare two encoded keys field by field. */
static int group_key_cmp(const unsigned char *a, const unsigned char *b, size_t nby)
{
    for (size_t k = 0; k < nby; k++) {
        uint32_t la, lb;
        memcpy(&la, a, 4);
        memcpy(&lb, b, 4);
        int c = group_val_cmp(a + 4, la, b + 4, lb);
        if (c) return c;
        a += 4 + la;
        b += 4 + lb;
    }
    return 0;
}

static int group_order_cmp(const void *x, const void *y, void *ctx)
{
    const group_state *st = ctx;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    return group_key_cmp(st->entries[i].key, st->entries[j].key, st->nby);
}

/* The collector's order for replicas' output rows: the same as the sort
 * of each replica's groups. With sort=false replicas follow one another. */
static int group_compare(const weir_stage *s, const weir_batch *a, uint32_t ra,
                         const weir_batch *b, uint32_t rb)
{
    if (!weir_stage_arg_bool(s, "sort")) return 0;
    const char *const *by;
    size_t nby = weir_stage_arg_list(s, "by", &by);
    for (uint32_t k = 0; k < nby; k++) {
        size_t la, lb;
        const unsigned char *fa = weir_batch_field(a, ra, k, &la);
        const unsigned char *fb = weir_batch_field(b, rb, k, &lb);
        int c = group_val_cmp(fa, la, fb, lb);
        if (c) return c;
    }
    return 0;
}

/* ---- the table ------------------------------------------------------------------------ */

static uint64_t group_hash(const unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 31;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* What the table holds, as the budget counts it. */
static size_t group_mem(const group_state *st)
{
    return st->nslots * sizeof *st->slots +
           st->cap_entries * (sizeof *st->entries + st->nagg * sizeof *st->accs) +
           st->keys.bytes + st->texts.bytes + st->ndslots * sizeof *st->dslots +
           st->cap_dents * sizeof *st->dents + st->dvals.bytes;
}

static int group_grow_table(group_state *st)
{
    size_t n = st->nslots ? st->nslots * 2 : 1024;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots) return WEIR_ENOMEM;
    for (size_t e = 0; e < st->nentries; e++) {
        size_t i = st->entries[e].hash & (n - 1);
        while (slots[i]) i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)e + 1;
    }
    free(st->slots);
    st->slots = slots;
    st->nslots = n;
    return 0;
}

/* Find or add the group whose encoded key is st->scratch[0..len). */
static int group_lookup(group_state *st, size_t len, size_t *entry)
{
    uint64_t h = group_hash(st->scratch, len, 0);
    if (st->nentries * 2 >= st->nslots && group_grow_table(st)) return WEIR_ENOMEM;
    size_t i = h & (st->nslots - 1);
    for (; st->slots[i]; i = (i + 1) & (st->nslots - 1)) {
        group_entry *g = &st->entries[st->slots[i] - 1];
        if (g->hash == h && g->key_len == len && memcmp(g->key, st->scratch, len) == 0) {
            *entry = st->slots[i] - 1;
            return 0;
        }
    }
    if (st->nentries >= UINT32_MAX - 1) return WEIR_ELIMIT;
    if (st->nentries == st->cap_entries) {
        size_t cap = st->cap_entries ? st->cap_entries * 2 : 256;
        group_entry *ne = realloc(st->entries, cap * sizeof *ne);
        if (!ne) return WEIR_ENOMEM;
        st->entries = ne;
        group_acc *na = realloc(st->accs, cap * (st->nagg ? st->nagg : 1) * sizeof *na);
        if (!na) return WEIR_ENOMEM;
        st->accs = na;
        st->cap_entries = cap;
    }
    unsigned char *key = group_arena_alloc(&st->keys, len ? len : 1);
    if (!key) return WEIR_ENOMEM;
    memcpy(key, st->scratch, len);
    st->entries[st->nentries] = (group_entry){h, key, (uint32_t)len};
    memset(&st->accs[st->nentries * st->nagg], 0, st->nagg * sizeof *st->accs);
    st->slots[i] = (uint32_t)st->nentries + 1;
    *entry = st->nentries++;
    return 0;
}

static int group_grow_distinct(group_state *st)
{
    size_t n = st->ndslots ? st->ndslots * 2 : 1024;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots) return WEIR_ENOMEM;
    for (size_t e = 0; e < st->ndents; e++) {
        size_t i = st->dents[e].hash & (n - 1);
        while (slots[i]) i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)e + 1;
    }
    free(st->dslots);
    st->dslots = slots;
    st->ndslots = n;
    return 0;
}

/* Add value f to the set of (group g, aggregate k). @return 1 if it is
 * new, 0 if it was there, or a negative code. */
static int group_distinct_add(group_state *st, size_t g, size_t k, const unsigned char *f,
                              size_t len)
{
    uint64_t h = group_hash(f, len, ((uint64_t)g << 8 | k) * 0x9e3779b97f4a7c15ull);
    if (st->ndents * 2 >= st->ndslots && group_grow_distinct(st)) return WEIR_ENOMEM;
    size_t i = h & (st->ndslots - 1);
    for (; st->dslots[i]; i = (i + 1) & (st->ndslots - 1)) {
        const group_dent *d = &st->dents[st->dslots[i] - 1];
        if (d->hash == h && d->group == g && d->agg == k && d->len == len &&
            memcmp(d->p, f, len) == 0)
            return 0;
    }
    if (st->ndents >= UINT32_MAX - 1) return WEIR_ELIMIT;
    if (st->ndents == st->cap_dents) {
        size_t cap = st->cap_dents ? st->cap_dents * 2 : 1024;
        group_dent *nd = realloc(st->dents, cap * sizeof *nd);
        if (!nd) return WEIR_ENOMEM;
        st->dents = nd;
        st->cap_dents = cap;
    }
    unsigned char *p = group_arena_alloc(&st->dvals, len);
    if (!p) return WEIR_ENOMEM;
    memcpy(p, f, len);
    st->dents[st->ndents] = (group_dent){h, p, (uint32_t)len, (uint32_t)g, (uint32_t)k};
    st->dslots[i] = (uint32_t)st->ndents + 1;
    st->ndents++;
    return 1;
}

/* Keep f as the text of a first/last state; room grows by doubling, so
 * a `last` rewritten on every row costs no allocation per row. */
static int group_set_text(group_arena *ar, group_acc *a, const unsigned char *f, size_t len)
{
    if (len > UINT32_MAX) return WEIR_ELIMIT;
    if (len > a->t.cap) {
        size_t cap = len > 2 * (size_t)a->t.cap ? len : 2 * (size_t)a->t.cap;
        if (cap > UINT32_MAX) cap = len;
        unsigned char *p = group_arena_alloc(ar, cap);
        if (!p) return WEIR_ENOMEM;
        a->t.p = p;
        a->t.cap = (uint32_t)cap;
    }
    memcpy(a->t.p, f, len);
    a->t.len = (uint32_t)len;
    return 0;
}

/* ---- sums ------------------------------------------------------------------------------ */

static const __int128 group_pow10[] = {
    1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
    10000000000, 100000000000, 1000000000000, 10000000000000, 100000000000000,
    1000000000000000, 10000000000000000, 100000000000000000, 1000000000000000000};
#define GROUP_MAX_SCALE 18

/* A plain decimal ([+-]digits[.digits], at most 36 digits and 18 after the
 * point) as mantissa and scale. @return false for anything else. */
static bool group_decimal(const unsigned char *p, size_t n, __int128 *m, int *scale)
{
    size_t i = 0;
    bool neg = false;
    if (n && (p[0] == '+' || p[0] == '-')) neg = p[i++] == '-';
    __int128 v = 0;
    int digits = 0, frac = -1;
    for (; i < n; i++) {
        if (p[i] == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (p[i] < '0' || p[i] > '9' || ++digits > 36) return false;
        v = v * 10 + (p[i] - '0');
        if (frac >= 0 && ++frac > GROUP_MAX_SCALE) return false;
    }
    if (digits == 0) return false;
    *m = neg ? -v : v;
    *scale = frac < 0 ? 0 : frac;
    return true;
}

static double group_dsum_double(const group_acc *a)
{
    return (double)a->s.dsum / (double)group_pow10[a->s.scale];
}

/* Neumaier's compensated addition of x into (sum, comp). */
static void group_fadd(group_acc *a, double x)
{
    double t = a->s.fsum + x;
    if ((a->s.fsum >= 0 ? a->s.fsum : -a->s.fsum) >= (x >= 0 ? x : -x))
        a->s.comp += (a->s.fsum - t) + x;
    else
        a->s.comp += (x - t) + a->s.fsum;
    a->s.fsum = t;
}

/* Add m × 10^-sc to an exact sum. @return false if it does not fit (the
 * sum is unchanged). */
static bool group_dadd(group_acc *a, __int128 m, int sc)
{
    __int128 sum = a->s.dsum;
    bool ok = true;
    if (sc > a->s.scale) ok = !__builtin_mul_overflow(sum, group_pow10[sc - a->s.scale], &sum);
    if (ok && sc < a->s.scale) ok = !__builtin_mul_overflow(m, group_pow10[a->s.scale - sc], &m);
    if (ok) ok = !__builtin_add_overflow(sum, m, &sum);
    if (!ok) return false;
    a->s.dsum = sum;
    if (sc > a->s.scale) a->s.scale = sc;
    return true;
}

/* Switch a sum to floating point, carrying the exact part over. */
static void group_to_float(group_acc *a)
{
    if (a->s.flt) return;
    a->s.flt = true;
    a->s.fsum = group_dsum_double(a);
    a->s.comp = 0;
}

/* ---- taking rows ------------------------------------------------------------------------ */

static int group_accumulate(group_state *st, size_t g, size_t k, const unsigned char *f,
                            size_t len)
{
    group_acc *a = &st->accs[g * st->nagg + k];
    group_fn fn = st->aggs[k].fn;
    int rc;
    switch (fn) {
    case AGG_COUNT_ROWS:
        a->n++;
        return 0;
    case AGG_COUNT:
        a->n += len > 0;
        return 0;
    case AGG_COUNT_DISTINCT:
        if (len == 0) return 0;
        rc = group_distinct_add(st, g, k, f, len);
        if (rc > 0) a->n++;
        return rc < 0 ? rc : 0;
    case AGG_FIRST:
        if (len == 0 || a->n++ > 0) return 0;
        return group_set_text(&st->texts, a, f, len);
    case AGG_LAST:
        if (len == 0) return 0;
        a->n++;
        return group_set_text(&st->texts, a, f, len);
    default:
        break;
    }
    weir_value v;
    if (!weir_value_parse(f, len, &v)) return 0;
    a->n++;
    if (fn == AGG_SUM || fn == AGG_MEAN) {
        __int128 m;
        int sc;
        if (!a->s.flt && group_decimal(f, len, &m, &sc) && group_dadd(a, m, sc)) return 0;
        group_to_float(a);
        group_fadd(a, v.num);
        return 0;
    }
    if (a->n == 1 || (fn == AGG_MIN ? v.num < a->m.num : v.num > a->m.num)) {
        a->m.num = v.num;
        a->m.i = v.i;
        a->m.is_int = v.is_int;
    }
    return 0;
}

static const char *group_size_text(size_t n, char *buf, size_t size)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (u < 3 && n >= 1024 && n % 1024 == 0) {
        n /= 1024;
        u++;
    }
    if (u < 0) snprintf(buf, size, "%zu bytes", n);
    else snprintf(buf, size, "%zu%c", n, units[u]);
    return buf;
}

static int group_spill(weir_stage *s, group_state *st);

static int group_process(weir_stage *s, weir_batch *in)
{
    group_state *st = weir_stage_state(s);
    int rc = 0;
    if (st->in_schema != in->schema &&
        (!st->in_schema || !weir_schema_equal(st->in_schema, in->schema)))
        rc = group_resolve(s, st, in->schema);
    for (uint32_t r = 0; rc == 0 && r < in->nrows; r++) {
        /* Encode the key: (length, bytes) per key field. */
        size_t need = 0;
        for (size_t k = 0; k < st->nby; k++)
            need += 4 + in->fields[(size_t)r * in->ncols + (size_t)st->key_idx[k]].len;
        if (need > st->scratch_cap) {
            unsigned char *ns = realloc(st->scratch, need * 2);
            if (!ns) {
                rc = WEIR_ENOMEM;
                break;
            }
            st->scratch = ns;
            st->scratch_cap = need * 2;
        }
        size_t len = 0;
        for (size_t k = 0; k < st->nby; k++) {
            size_t fl;
            const unsigned char *f = weir_batch_field(in, r, (uint32_t)st->key_idx[k], &fl);
            uint32_t l32 = (uint32_t)fl;
            memcpy(st->scratch + len, &l32, 4);
            if (fl) memcpy(st->scratch + len + 4, f, fl);
            len += 4 + fl;
        }
        size_t e;
        if ((rc = group_lookup(st, len, &e))) break;
        for (size_t k = 0; rc == 0 && k < st->nagg; k++) {
            size_t fl = 0;
            const unsigned char *f = NULL;
            if (st->aggs[k].col) f = weir_batch_field(in, r, (uint32_t)st->aggs[k].idx, &fl);
            rc = group_accumulate(st, e, k, f, fl);
        }
    }
    weir_batch_release(in);
    if (rc == WEIR_ENOMEM)
        return weir_stage_errorf(s, rc, "out of memory holding %zu groups", st->nentries);
    if (rc == WEIR_ELIMIT)
        return weir_stage_errorf(s, rc, "more than %u groups or distinct values in memory",
                                 UINT32_MAX - 2);
    if (rc) return rc;
    if (st->nentries && group_mem(st) > st->budget) {
        if (st->sort) return group_spill(s, st);
        char b[32], share[64] = "";
        int nrep = weir_stage_replicas(s);
        if (nrep > 1)
            snprintf(share, sizeof share, ", this replica's share of %d", nrep);
        return weir_stage_errorf(s, WEIR_ELIMIT,
                                 "more than %s of groups (%zu groups so far%s); raise mem= or "
                                 "--mem, or leave sort=true, which spills to disk",
                                 group_size_text(st->budget, b, sizeof b), st->nentries, share);
    }
    return 0;
}

/* ---- output ---------------------------------------------------------------------------- */

/* The exact decimal dsum / 10^scale, trailing fraction zeros trimmed. */
static size_t group_format_decimal(const group_acc *a, char *buf, size_t size)
{
    char tmp[64];
    size_t n = 0;
    unsigned __int128 u =
        a->s.dsum < 0 ? -(unsigned __int128)a->s.dsum : (unsigned __int128)a->s.dsum;
    do { /* digits, least significant first */
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u || n <= (size_t)a->s.scale);
    size_t k = 0;
    char out[80];
    if (a->s.dsum < 0) out[k++] = '-';
    for (size_t i = n; i-- > 0;) {
        out[k++] = tmp[i];
        if (i == (size_t)a->s.scale && a->s.scale > 0) out[k++] = '.';
    }
    if (a->s.scale > 0) {
        while (out[k - 1] == '0') k--;
        if (out[k - 1] == '.') k--;
    }
    if (k == 2 && out[0] == '-' && out[1] == '0') k = 0, out[k++] = '0'; /* -0 */
    if (size) {
        size_t c = k < size - 1 ? k : size - 1;
        memcpy(buf, out, c);
        buf[c] = '\0';
    }
    return k;
}

/* A numeric aggregate as text. */
static size_t group_format_acc(const group_acc *a, group_fn fn, char *buf, size_t size)
{
    weir_value v = {.type = WEIR_VAL_NULL};
    switch (fn) {
    case AGG_COUNT_ROWS:
    case AGG_COUNT:
    case AGG_COUNT_DISTINCT:
        v = (weir_value){.type = WEIR_VAL_NUM, .is_int = true, .i = a->n, .num = (double)a->n};
        break;
    case AGG_SUM:
        if (!a->n) break;
        if (!a->s.flt) return group_format_decimal(a, buf, size);
        v = (weir_value){.type = WEIR_VAL_NUM, .num = a->s.fsum + a->s.comp};
        break;
    case AGG_MEAN:
        if (!a->n) break;
        v = (weir_value){.type = WEIR_VAL_NUM,
                         .num = (a->s.flt ? a->s.fsum + a->s.comp : group_dsum_double(a)) /
                                (double)a->n};
        break;
    case AGG_MIN:
    case AGG_MAX:
        if (a->n)
            v = (weir_value){
                .type = WEIR_VAL_NUM, .is_int = a->m.is_int, .i = a->m.i, .num = a->m.num};
        break;
    case AGG_FIRST:
    case AGG_LAST:
        break;
    }
    return weir_value_format(&v, buf, size);
}

/* Append one output row: the key fields, then each aggregate. texts[k]
 * (may be NULL) overrides where a first/last text lives. */
static int group_out_row(weir_stage *s, group_state *st, weir_batch **b,
                         const unsigned char *key, const group_acc *acc)
{
    int rc;
    if (!*b) {
        if ((rc = weir_stage_batch(s, b))) return rc;
        if ((rc = weir_batch_set_schema(*b, st->out_schema))) return rc;
    }
    rc = 0;
    for (size_t j = 0; rc == 0 && j < st->nby; j++) {
        uint32_t l;
        memcpy(&l, key, 4);
        rc = weir_batch_add_field(*b, key + 4, l);
        key += 4 + l;
    }
    char num[64];
    for (size_t j = 0; rc == 0 && j < st->nagg; j++) {
        group_fn fn = st->aggs[j].fn;
        if (fn == AGG_FIRST || fn == AGG_LAST) {
            rc = acc[j].n ? weir_batch_add_field(*b, acc[j].t.p, acc[j].t.len)
                         : weir_batch_add_field(*b, "", 0);
        } else {
            size_t len = group_format_acc(&acc[j], fn, num, sizeof num);
            rc = weir_batch_add_field(*b, num, len < sizeof num ? len : sizeof num - 1);
        }
    }
    if (rc == 0) rc = weir_batch_end_row(*b);
    if (rc == 0 && (*b)->nrows >= GROUP_OUT_ROWS) {
        weir_batch *full = *b;
        *b = NULL;
        st->emitted = true;
        rc = weir_stage_emit(s, full);
    }
    return rc;
}

static int group_out_end(weir_stage *s, group_state *st, weir_batch *b)
{
    int rc;
    if (!b && !st->emitted) { /* no groups: the columns still go out */
        if ((rc = weir_stage_batch(s, &b))) return rc;
        weir_batch_set_schema(b, st->out_schema);
    }
    if (!b) return 0;
    st->emitted = true;
    return weir_stage_emit(s, b);
}

/* The groups in output order (key order, or first seen). */
static size_t *group_order(group_state *st)
{
    size_t n = st->nentries;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return NULL;
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (st->sort) qsort_r(order, n, sizeof *order, group_order_cmp, st);
    return order;
}

/* ---- run files ----------------------------------------------------------------------- */

/* Record of one group in a run file:
 *   u32 key length, key bytes (as encoded in the table), then per aggregate:
 *   count, count(col):  i64 n
 *   sum, mean:          i64 n, i128 dsum, i32 scale, u8 flt, f64 fsum, f64 comp
 *   min, max:           i64 n, f64 num, i64 i, u8 is_int
 *   first, last:        i64 n, u32 length, bytes
 *   count_distinct:     values in byte order, each u32 (length + 1) and
 *                       bytes; then u32 0
 * Runs are in key order. */

static int group_io_error(weir_stage *s, const char *what, const char *path)
{
    return weir_stage_errorf(s, WEIR_EIO, "%s spill file '%s': %s", what, path,
                             strerror(errno));
}

static int group_write_all(weir_stage *s, int fd, const void *p, size_t n, const char *path)
{
    const unsigned char *q = p;
    while (n > 0) {
        ssize_t k = write(fd, q, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return group_io_error(s, "writing", path);
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

static int group_w(weir_stage *s, group_state *st, const void *p, size_t n)
{
    if (st->wlen + n > st->wcap) {
        int rc = group_write_all(s, st->wfd, st->wbuf, st->wlen, st->wpath);
        st->wlen = 0;
        if (rc) return rc;
        if (n > st->wcap) return group_write_all(s, st->wfd, p, n, st->wpath);
    }
    memcpy(st->wbuf + st->wlen, p, n);
    st->wlen += n;
    return 0;
}

/* A new run file at position `at` among the runs; it becomes the output. */
static int group_new_run(weir_stage *s, group_state *st, size_t at)
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
    snprintf(path, n, "%s/weir-group-XXXXXX", st->tmpdir);
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
    st->wpath = path;
    st->wlen = 0;
    if (!st->wbuf && !(st->wbuf = malloc(st->wcap)))
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return 0;
}

static int group_end_run(weir_stage *s, group_state *st)
{
    int rc = group_write_all(s, st->wfd, st->wbuf, st->wlen, st->wpath);
    st->wlen = 0;
    int fd = st->wfd;
    st->wfd = -1;
    if (close(fd) != 0 && rc == 0) rc = group_io_error(s, "writing", st->wpath);
    return rc;
}

/* One aggregate's state, except count_distinct's values. */
static int group_write_acc(weir_stage *s, group_state *st, group_fn fn, const group_acc *a)
{
    int rc = group_w(s, st, &a->n, 8);
    switch (fn) {
    case AGG_SUM:
    case AGG_MEAN: {
        uint8_t flt = a->s.flt;
        if (rc == 0) rc = group_w(s, st, &a->s.dsum, 16);
        if (rc == 0) rc = group_w(s, st, &a->s.scale, 4);
        if (rc == 0) rc = group_w(s, st, &flt, 1);
        if (rc == 0) rc = group_w(s, st, &a->s.fsum, 8);
        if (rc == 0) rc = group_w(s, st, &a->s.comp, 8);
        break;
    }
    case AGG_MIN:
    case AGG_MAX: {
        uint8_t is_int = a->m.is_int;
        if (rc == 0) rc = group_w(s, st, &a->m.num, 8);
        if (rc == 0) rc = group_w(s, st, &a->m.i, 8);
        if (rc == 0) rc = group_w(s, st, &is_int, 1);
        break;
    }
    case AGG_FIRST:
    case AGG_LAST: {
        uint32_t l = a->n ? a->t.len : 0;
        if (rc == 0) rc = group_w(s, st, &l, 4);
        if (rc == 0 && l) rc = group_w(s, st, a->t.p, l);
        break;
    }
    default:
        break;
    }
    return rc;
}

static int group_write_val(weir_stage *s, group_state *st, const unsigned char *p, uint32_t len)
{
    uint32_t l1 = len + 1;
    int rc = group_w(s, st, &l1, 4);
    return rc == 0 && len ? group_w(s, st, p, len) : rc;
}

typedef struct group_dsort {
    const group_state *st;
    const uint32_t *rank;
} group_dsort;

static int group_dent_cmp(const void *x, const void *y, void *ctx)
{
    const group_dsort *c = ctx;
    const group_dent *a = &c->st->dents[*(const uint32_t *)x];
    const group_dent *b = &c->st->dents[*(const uint32_t *)y];
    uint32_t ra = c->rank[a->group], rb = c->rank[b->group];
    if (ra != rb) return ra < rb ? -1 : 1;
    if (a->agg != b->agg) return a->agg < b->agg ? -1 : 1;
    return group_bytes_cmp(a->p, a->len, b->p, b->len);
}

/* Write the groups held, in key order, as the next run; empty the table. */
static int group_spill(weir_stage *s, group_state *st)
{
    size_t *order = group_order(st);
    uint32_t *rank = NULL, *dorder = NULL;
    int rc = order ? 0 : WEIR_ENOMEM;
    if (rc == 0 && st->has_distinct) {
        rank = malloc((st->nentries ? st->nentries : 1) * sizeof *rank);
        dorder = malloc((st->ndents ? st->ndents : 1) * sizeof *dorder);
        if (!rank || !dorder) rc = WEIR_ENOMEM;
        for (size_t i = 0; rc == 0 && i < st->nentries; i++) rank[order[i]] = (uint32_t)i;
        for (size_t i = 0; rc == 0 && i < st->ndents; i++) dorder[i] = (uint32_t)i;
        if (rc == 0) {
            group_dsort c = {st, rank};
            qsort_r(dorder, st->ndents, sizeof *dorder, group_dent_cmp, &c);
        }
    }
    if (rc == WEIR_ENOMEM) rc = weir_stage_errorf(s, rc, "out of memory spilling groups");
    if (rc == 0) rc = group_new_run(s, st, st->nruns);
    weir_ctx *ctx = weir_stage_ctx(s);
    size_t d = 0;
    for (size_t i = 0; rc == 0 && i < st->nentries; i++) {
        const group_entry *g = &st->entries[order[i]];
        rc = group_w(s, st, &g->key_len, 4);
        if (rc == 0) rc = group_w(s, st, g->key, g->key_len);
        const group_acc *acc = &st->accs[order[i] * st->nagg];
        for (size_t k = 0; rc == 0 && k < st->nagg; k++) {
            if (st->aggs[k].fn != AGG_COUNT_DISTINCT) {
                rc = group_write_acc(s, st, st->aggs[k].fn, &acc[k]);
                continue;
            }
            for (; rc == 0 && d < st->ndents && st->dents[dorder[d]].group == order[i] &&
                   st->dents[dorder[d]].agg == k;
                 d++)
                rc = group_write_val(s, st, st->dents[dorder[d]].p, st->dents[dorder[d]].len);
            uint32_t end = 0;
            if (rc == 0) rc = group_w(s, st, &end, 4);
        }
        if (rc == 0 && (i & 4095) == 4095 && weir_ctx_done(ctx)) rc = weir_ctx_err(ctx);
    }
    if (rc == 0) rc = group_end_run(s, st);
    st->groups_spilled += st->nentries;
    free(order);
    free(rank);
    free(dorder);
    group_clear(st);
    return rc;
}

/* ---- merging runs ----------------------------------------------------------------------- */

/* n bytes of r at *p (valid until r's next read). @return 0, 1 at a clean
 * end of file (only when allowed: at a record's start), or an error. */
static int group_rneed(weir_stage *s, group_reader *r, size_t n, const unsigned char **p,
                       const char *path, bool eof_ok)
{
    if (r->len - r->pos < n) {
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
            if (k < 0) return group_io_error(s, "reading", path);
            if (k == 0) {
                if (eof_ok && r->len == 0) return 1;
                return weir_stage_errorf(s, WEIR_EIO, "spill file '%s' is cut short", path);
            }
            r->len += (size_t)k;
        }
    }
    *p = r->buf + r->pos;
    r->pos += n;
    return 0;
}

static int group_rget(weir_stage *s, group_reader *r, void *dst, size_t n, const char *path)
{
    const unsigned char *p;
    int rc = group_rneed(s, r, n, &p, path, false);
    if (rc == 0) memcpy(dst, p, n);
    return rc;
}

/* The next key of r (r->key NULL at the end). */
static int group_rkey(weir_stage *s, group_reader *r, const char *path)
{
    const unsigned char *p;
    int rc = group_rneed(s, r, 4, &p, path, true);
    if (rc == 1) {
        r->key = NULL;
        return 0;
    }
    if (rc) return rc;
    memcpy(&r->key_len, p, 4);
    return group_rneed(s, r, r->key_len, &r->key, path, false);
}

/* The next value of r's current count_distinct list. */
static int group_rval(weir_stage *s, group_reader *r, const char *path)
{
    uint32_t l1;
    int rc = group_rget(s, r, &l1, 4, path);
    if (rc) return rc;
    r->val_end = l1 == 0;
    r->val_len = l1 ? l1 - 1 : 0;
    return l1 > 1 ? group_rneed(s, r, r->val_len, &r->val, path, false) : 0;
}

/* Read r's state of aggregate fn and fold it into m (r is the later
 * input). First/last texts are copied into *tb (grown as needed). */
static int group_rmerge(weir_stage *s, group_reader *r, const char *path, group_fn fn,
                        group_acc *m, unsigned char **tb, size_t *tcap)
{
    group_acc a = {0};
    int rc = group_rget(s, r, &a.n, 8, path);
    if (rc) return rc;
    switch (fn) {
    case AGG_SUM:
    case AGG_MEAN: {
        uint8_t flt;
        if ((rc = group_rget(s, r, &a.s.dsum, 16, path)) ||
            (rc = group_rget(s, r, &a.s.scale, 4, path)) ||
            (rc = group_rget(s, r, &flt, 1, path)) ||
            (rc = group_rget(s, r, &a.s.fsum, 8, path)) ||
            (rc = group_rget(s, r, &a.s.comp, 8, path)))
            return rc;
        if (a.s.scale < 0 || a.s.scale > GROUP_MAX_SCALE)
            return weir_stage_errorf(s, WEIR_EIO, "spill file '%s' is damaged", path);
        a.s.flt = flt;
        if (!a.n) break;
        if (!m->n) {
            int64_t n = m->n;
            *m = a;
            m->n = n;
            break;
        }
        if (!m->s.flt && !a.s.flt && group_dadd(m, a.s.dsum, a.s.scale)) break;
        group_to_float(m);
        if (a.s.flt) {
            group_fadd(m, a.s.fsum);
            m->s.comp += a.s.comp;
        } else {
            group_fadd(m, group_dsum_double(&a));
        }
        break;
    }
    case AGG_MIN:
    case AGG_MAX: {
        uint8_t is_int;
        if ((rc = group_rget(s, r, &a.m.num, 8, path)) ||
            (rc = group_rget(s, r, &a.m.i, 8, path)) || (rc = group_rget(s, r, &is_int, 1, path)))
            return rc;
        a.m.is_int = is_int;
        if (a.n && (!m->n || (fn == AGG_MIN ? a.m.num < m->m.num : a.m.num > m->m.num)))
            m->m = a.m;
        break;
    }
    case AGG_FIRST:
    case AGG_LAST: {
        uint32_t l;
        const unsigned char *p = NULL;
        if ((rc = group_rget(s, r, &l, 4, path))) return rc;
        if (l && (rc = group_rneed(s, r, l, &p, path, false))) return rc;
        if (a.n && (fn == AGG_LAST || !m->n)) {
            if (l > *tcap) {
                unsigned char *nb = realloc(*tb, l);
                if (!nb) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
                *tb = nb;
                *tcap = l;
            }
            if (l) memcpy(*tb, p, l);
            m->t.p = *tb;
            m->t.len = l;
        }
        break;
    }
    default:
        break;
    }
    m->n += a.n;
    return 0;
}

/* Merge the count_distinct lists of the readers in set[0..ns) (all at the
 * same key): count the distinct values, and write them if out_run. */
static int group_merge_distinct(weir_stage *s, group_state *st, group_reader **set, size_t ns,
                                size_t first, bool out_run, int64_t *count)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ns; i++)
        rc = group_rval(s, set[i], st->runs[first + set[i]->run]);
    *count = 0;
    while (rc == 0) {
        group_reader *mn = NULL;
        for (size_t i = 0; i < ns; i++)
            if (!set[i]->val_end &&
                (!mn || group_bytes_cmp(set[i]->val, set[i]->val_len, mn->val, mn->val_len) < 0))
                mn = set[i];
        if (!mn) break;
        ++*count;
        if (out_run) rc = group_write_val(s, st, mn->val, mn->val_len);
        /* Advance every list at this value, mn last: its value is the one
         * the others are compared with. */
        for (size_t i = 0; rc == 0 && i < ns; i++)
            if (set[i] != mn && !set[i]->val_end &&
                group_bytes_cmp(set[i]->val, set[i]->val_len, mn->val, mn->val_len) == 0)
                rc = group_rval(s, set[i], st->runs[first + set[i]->run]);
        if (rc == 0) rc = group_rval(s, mn, st->runs[first + mn->run]);
    }
    if (rc == 0 && out_run) {
        uint32_t end = 0;
        rc = group_w(s, st, &end, 4);
    }
    return rc;
}

static bool group_reader_less(const group_state *st, const group_reader *a,
                              const group_reader *b)
{
    int c = group_key_cmp(a->key, b->key, st->nby);
    return c ? c < 0 : a->run < b->run;
}

static void group_heap_down(const group_state *st, group_reader **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && group_reader_less(st, h[l], h[m])) m = l;
        if (l + 1 < n && group_reader_less(st, h[l + 1], h[m])) m = l + 1;
        if (m == i) return;
        group_reader *t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void group_heap_up(const group_state *st, group_reader **h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!group_reader_less(st, h[i], h[p])) return;
        group_reader *t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Merge runs [first, first+n): into a new run that takes their place
 * (out_run), or downstream as rows. The merged runs' files are deleted. */
static int group_merge_runs(weir_stage *s, group_state *st, size_t first, size_t n,
                            bool out_run)
{
    size_t na = st->nagg ? st->nagg : 1;
    group_reader *rd = calloc(n, sizeof *rd);
    group_reader **heap = calloc(n, sizeof *heap), **set = calloc(n, sizeof *set);
    group_acc *macc = calloc(na, sizeof *macc);
    unsigned char **tb = calloc(na, sizeof *tb);
    size_t *tcap = calloc(na, sizeof *tcap);
    unsigned char *kbuf = NULL;
    size_t kcap = 0;
    int rc = rd && heap && set && macc && tb && tcap
                 ? 0
                 : weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    size_t rcap = group_clamp(st->budget / (2 * n), 4096, (size_t)1 << 20);
    for (size_t i = 0; rd && i < n; i++) rd[i].fd = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rd[i].run = i;
        rd[i].cap = rcap;
        if (!(rd[i].buf = malloc(rcap))) {
            rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
            break;
        }
        rd[i].fd = open(st->runs[first + i], O_RDONLY | O_CLOEXEC);
        if (rd[i].fd < 0) rc = group_io_error(s, "opening", st->runs[first + i]);
    }
    size_t nh = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = group_rkey(s, &rd[i], st->runs[first + i]);
        if (rc == 0 && rd[i].key) heap[nh++] = &rd[i];
    }
    for (size_t i = nh / 2; rc == 0 && i-- > 0;) group_heap_down(st, heap, nh, i);
    if (rc == 0 && out_run) rc = group_new_run(s, st, first + n);
    weir_batch *b = NULL;
    weir_ctx *ctx = weir_stage_ctx(s);
    for (uint64_t count = 0; rc == 0 && nh > 0; count++) {
        /* Every reader at the smallest key, in run order (the heap breaks
         * ties by run). Keys compare equal only when their bytes do. */
        size_t ns = 0;
        set[ns++] = heap[0];
        heap[0] = heap[--nh];
        group_heap_down(st, heap, nh, 0);
        while (nh && group_key_cmp(heap[0]->key, set[0]->key, st->nby) == 0) {
            set[ns++] = heap[0];
            heap[0] = heap[--nh];
            group_heap_down(st, heap, nh, 0);
        }
        uint32_t klen = set[0]->key_len;
        if (klen > kcap) {
            unsigned char *nk = realloc(kbuf, klen);
            if (!nk) {
                rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
                break;
            }
            kbuf = nk;
            kcap = klen;
        }
        if (klen) memcpy(kbuf, set[0]->key, klen);
        if (out_run) {
            rc = group_w(s, st, &klen, 4);
            if (rc == 0) rc = group_w(s, st, kbuf, klen);
        }
        for (size_t k = 0; rc == 0 && k < st->nagg; k++) {
            group_fn fn = st->aggs[k].fn;
            memset(&macc[k], 0, sizeof macc[k]);
            if (fn == AGG_COUNT_DISTINCT) {
                rc = group_merge_distinct(s, st, set, ns, first, out_run, &macc[k].n);
                continue;
            }
            for (size_t i = 0; rc == 0 && i < ns; i++)
                rc = group_rmerge(s, set[i], st->runs[first + set[i]->run], fn, &macc[k],
                                  &tb[k], &tcap[k]);
            if (rc == 0 && out_run) rc = group_write_acc(s, st, fn, &macc[k]);
        }
        if (rc == 0 && !out_run) rc = group_out_row(s, st, &b, kbuf, macc);
        for (size_t i = 0; rc == 0 && i < ns; i++) {
            rc = group_rkey(s, set[i], st->runs[first + set[i]->run]);
            if (rc == 0 && set[i]->key) {
                heap[nh++] = set[i];
                group_heap_up(st, heap, nh - 1);
            }
        }
        if (rc == 0 && out_run && (count & 4095) == 4095 && weir_ctx_done(ctx))
            rc = weir_ctx_err(ctx);
    }
    if (rc == 0 && out_run) rc = group_end_run(s, st);
    if (rc == 0 && !out_run) {
        weir_batch *last = b;
        b = NULL;
        rc = group_out_end(s, st, last);
    }
    weir_batch_release(b);
    for (size_t i = 0; rd && i < n; i++) {
        if (rd[i].fd >= 0) close(rd[i].fd);
        free(rd[i].buf);
    }
    for (size_t k = 0; tb && k < na; k++) free(tb[k]);
    free(rd);
    free(heap);
    free(set);
    free(macc);
    free(tb);
    free(tcap);
    free(kbuf);
    if (rc == 0) { /* merged: the inputs go */
        for (size_t i = 0; i < n; i++) {
            unlink(st->runs[first + i]);
            free(st->runs[first + i]);
        }
        memmove(&st->runs[first], &st->runs[first + n],
                (st->nruns - first - n) * sizeof *st->runs);
        st->nruns -= n;
    }
    if (rc == WEIR_ENOMEM) return weir_stage_errorf(s, rc, "out of memory merging groups");
    return rc;
}

/* ---- the end ---------------------------------------------------------------------------- */

static int group_finish(weir_stage *s)
{
    group_state *st = weir_stage_state(s);
    if (!st->out_schema) return 0; /* no input at all */
    int rc = 0;
    if (st->nruns) {
        if (st->nentries) rc = group_spill(s, st);
        /* Passes over the runs, each merging neighbours GROUP_MAX_FANIN at
         * a time, until one merge can take them all. */
        while (rc == 0 && st->nruns > GROUP_MAX_FANIN)
            for (size_t first = 0; rc == 0 && first + 1 < st->nruns; first++) {
                size_t n = st->nruns - first;
                rc = group_merge_runs(s, st, first, n < GROUP_MAX_FANIN ? n : GROUP_MAX_FANIN,
                                      true);
            }
        if (rc == 0) rc = group_merge_runs(s, st, 0, st->nruns, false);
        return rc < 0 ? rc : 0;
    }
    size_t *order = group_order(st);
    if (!order) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory sorting groups");
    weir_batch *b = NULL;
    for (size_t i = 0; rc == 0 && i < st->nentries; i++)
        rc = group_out_row(s, st, &b, st->entries[order[i]].key,
                           &st->accs[order[i] * st->nagg]);
    free(order);
    if (rc == 0) {
        weir_batch *last = b;
        b = NULL;
        rc = group_out_end(s, st, last);
    }
    weir_batch_release(b);
    if (rc == WEIR_ENOMEM) return weir_stage_errorf(s, rc, "out of memory writing groups");
    return rc < 0 ? rc : 0;
}

const weir_stage_def weir__stage_group = {
    .abi = WEIR_ABI_VERSION,
    .name = "group",
    .summary = "aggregate rows by key: count, count_distinct, sum, mean, min, max, first, "
               "last; spills to disk past the memory budget",
    .args = (const weir_arg_def[]){
        {"by", WEIR_ARG_LIST, NULL,
         "key columns: by=col or by=[a, b]; with workers=N rows are split among the "
         "replicas by these columns"},
        {"sort", WEIR_ARG_BOOL, "true",
         "rows in key order: numbers by value before other values by bytes (the result "
         "does not depend on workers); false: the order keys were first seen, per replica "
         "with workers=N > 1, and no spilling past the memory budget (an error instead)"},
        {"aggregates", WEIR_ARG_NAMED, NULL,
         "name=count() | count(col) (non-empty values) | count_distinct(col) (distinct "
         "non-empty values, exact) | sum(col) | mean(col) | min(col) | max(col) (numbers "
         "only; exact decimal sums) | first(col) | last(col) (first/last non-empty value in "
         "input order)"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL | WEIR_STAGE_KEYED | WEIR_STAGE_SORTED_OUT,
    .open = group_open,
    .process = group_process,
    .finish = group_finish,
    .close = group_close,
    .plan = group_plan,
    .partition_arg = "by",
    .compare = group_compare,
};
