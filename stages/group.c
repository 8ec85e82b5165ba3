/*
 * group(by=[cols…], sort=true, name=agg(col)…) — hash aggregation.
 *
 * Output columns: the keys, then the aggregates in spec order. Rows come
 * in key order (numbers compare as numbers, other text as bytes; several
 * keys compare left to right) unless sort=false, which keeps the order in
 * which keys were first seen.
 *
 * Aggregates: count() counts rows; count(col) counts non-empty values;
 * sum, mean, min and max read numbers and skip empty and non-numeric
 * values (with none, the result is empty). Sums are exact while every value
 * is a plain decimal (digits, optional fraction, no exponent): they are kept
 * as a 128-bit integer scaled by the most fraction digits seen, so 0.1 + 0.2
 * is 0.3 and cents add up to the cent. A value with an exponent, or a sum
 * beyond 38 digits, switches that sum to floating point with Neumaier's
 * compensated summation.
 *
 * State: an open-addressing table of group indices; each group's key fields
 * live in one byte arena, its aggregate states in one array. Nothing is
 * allocated per row except when a new group appears (amortised growth).
 */
#include "stages.h"

#include <stdlib.h>
#include <string.h>

typedef enum group_fn { AGG_COUNT_ROWS, AGG_COUNT, AGG_SUM, AGG_MEAN, AGG_MIN, AGG_MAX } group_fn;

typedef struct group_agg {
    group_fn fn;
    const char *name; /* output column */
    const char *col;  /* input column, NULL for count() */
    int idx;          /* resolved input column */
} group_agg;

typedef struct group_acc {
    int64_t n;     /* rows or values counted */
    __int128 dsum; /* exact decimal sum × 10^scale, while !flt */
    int scale;
    double fsum, comp;
    bool flt;
    bool has;      /* min/max seen a number */
    double min, max;
    weir_value vmin, vmax; /* exact forms of min and max for output */
} group_acc;

typedef struct group_entry {
    uint64_t hash;
    size_t key_off; /* in keys: nkeys × (uint32 length, bytes) */
    uint32_t key_len;
} group_entry;

typedef struct group_state {
    const char *const *by;
    size_t nby;
    int *key_idx;
    group_agg *aggs;
    size_t nagg;
    bool sort;
    const weir_schema *in_schema; /* the schema indices were resolved for */
    weir_schema *out_schema;
    /* table */
    uint32_t *slots; /* entry index + 1; 0 is empty */
    size_t nslots;
    group_entry *entries;
    size_t nentries, cap_entries;
    group_acc *accs; /* nentries × nagg */
    unsigned char *keys;
    size_t keys_len, keys_cap;
    unsigned char *scratch; /* the key being looked up */
    size_t scratch_cap;
} group_state;

static const struct {
    const char *name;
    group_fn fn;
} group_fns[] = {
    {"count", AGG_COUNT}, {"sum", AGG_SUM}, {"mean", AGG_MEAN},
    {"min", AGG_MIN},     {"max", AGG_MAX},
};

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
                                     "count(col), sum(col), mean(col), min(col) or max(col)",
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
                free(names);
                return weir_stage_errorf(s, WEIR_ESPEC, "output column '%s' appears twice",
                                         names[k]);
            }
    weir_schema_release(st->out_schema);
    st->out_schema = NULL;
    int rc = weir_schema_create(&st->out_schema, names, n);
    free(names);
    st->in_schema = in;
    return rc;
}

static void group_free(group_state *st)
{
    if (!st) return;
    free(st->key_idx);
    free(st->aggs);
    weir_schema_release(st->out_schema);
    free(st->slots);
    free(st->entries);
    free(st->accs);
    free(st->keys);
    free(st->scratch);
    free(st);
}

static int group_setup(weir_stage *s, group_state **out)
{
    group_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    *out = st;
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
    group_free(st);
    return rc;
}

static int group_open(weir_stage *s)
{
    group_state *st;
    int rc = group_setup(s, &st);
    weir_stage_set_state(s, st);
    return rc;
}

static void group_close(weir_stage *s) { group_free(weir_stage_state(s)); }

static uint64_t group_hash(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 31;
    return h * 0x9e3779b97f4a7c15ull;
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
    uint64_t h = group_hash(st->scratch, len);
    if (st->nentries * 2 >= st->nslots && group_grow_table(st)) return WEIR_ENOMEM;
    size_t i = h & (st->nslots - 1);
    for (; st->slots[i]; i = (i + 1) & (st->nslots - 1)) {
        group_entry *g = &st->entries[st->slots[i] - 1];
        if (g->hash == h && g->key_len == len &&
            memcmp(st->keys + g->key_off, st->scratch, len) == 0) {
            *entry = st->slots[i] - 1;
            return 0;
        }
    }
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
    if (st->keys_len + len > st->keys_cap) {
        size_t cap = st->keys_cap ? st->keys_cap * 2 : 65536;
        while (cap < st->keys_len + len) cap *= 2;
        unsigned char *nk = realloc(st->keys, cap);
        if (!nk) return WEIR_ENOMEM;
        st->keys = nk;
        st->keys_cap = cap;
    }
    memcpy(st->keys + st->keys_len, st->scratch, len);
    st->entries[st->nentries] = (group_entry){h, st->keys_len, (uint32_t)len};
    memset(&st->accs[st->nentries * st->nagg], 0, st->nagg * sizeof *st->accs);
    st->keys_len += len;
    st->slots[i] = (uint32_t)st->nentries + 1;
    *entry = st->nentries++;
    return 0;
}

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
    return (double)a->dsum / (double)group_pow10[a->scale];
}

/* Neumaier's compensated addition of x into (sum, comp). */
static void group_fadd(group_acc *a, double x)
{
    double t = a->fsum + x;
    if ((a->fsum >= 0 ? a->fsum : -a->fsum) >= (x >= 0 ? x : -x)) a->comp += (a->fsum - t) + x;
    else a->comp += (x - t) + a->fsum;
    a->fsum = t;
}

static void group_accumulate(group_acc *a, group_fn fn, const unsigned char *f, size_t len)
{
    if (fn == AGG_COUNT_ROWS) {
        a->n++;
        return;
    }
    if (fn == AGG_COUNT) {
        a->n += len > 0;
        return;
    }
    weir_value v;
    if (!weir_value_parse(f, len, &v)) return;
    a->n++;
    if (fn == AGG_SUM || fn == AGG_MEAN) {
        __int128 m, sum = a->dsum;
        int sc;
        bool exact = !a->flt && group_decimal(f, len, &m, &sc);
        if (exact && sc > a->scale)
            exact = !__builtin_mul_overflow(sum, group_pow10[sc - a->scale], &sum);
        if (exact && sc < a->scale)
            exact = !__builtin_mul_overflow(m, group_pow10[a->scale - sc], &m);
        if (exact) exact = !__builtin_add_overflow(sum, m, &sum);
        if (exact) {
            a->dsum = sum;
            if (sc > a->scale) a->scale = sc;
            return;
        }
        if (!a->flt) { /* switch, carrying the exact part over */
            a->flt = true;
            a->fsum = group_dsum_double(a);
            a->comp = 0;
        }
        group_fadd(a, v.num);
        return;
    }
    if (!a->has || (fn == AGG_MIN ? v.num < a->min : v.num > a->max)) {
        if (fn == AGG_MIN) {
            a->min = v.num;
            a->vmin = v;
        } else {
            a->max = v.num;
            a->vmax = v;
        }
        a->has = true;
    }
}

static int group_process(weir_stage *s, weir_batch *in)
{
    group_state *st = weir_stage_state(s);
    int rc = 0;
    if (st->in_schema != in->schema &&
        (!st->in_schema || !weir_schema_equal(st->in_schema, in->schema)))
        rc = group_resolve(s, st, in->schema);
    st->in_schema = in->schema;
    for (uint32_t r = 0; rc == 0 && r < in->nrows; r++) {
        /* Encode the key: (length, bytes) per key field. */
        size_t need = 0;
        for (size_t k = 0; k < st->nby; k++) need += 4 + in->fields[(size_t)r * in->ncols + (size_t)st->key_idx[k]].len;
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
            memcpy(st->scratch + len + 4, f, fl);
            len += 4 + fl;
        }
        size_t e;
        if ((rc = group_lookup(st, len, &e))) break;
        group_acc *acc = &st->accs[e * st->nagg];
        for (size_t k = 0; k < st->nagg; k++) {
            size_t fl = 0;
            const unsigned char *f = NULL;
            if (st->aggs[k].col) f = weir_batch_field(in, r, (uint32_t)st->aggs[k].idx, &fl);
            group_accumulate(&acc[k], st->aggs[k].fn, f, fl);
        }
    }
    weir_batch_release(in);
    if (rc == WEIR_ENOMEM)
        return weir_stage_errorf(s, rc, "out of memory holding %zu groups", st->nentries);
    return rc;
}

/* ---- output ---------------------------------------------------------------------------- */

static group_state *sort_st; /* qsort has no context argument; one sort at a time */

/* Compare two encoded keys field by field: numbers as numbers, else bytes. */
static int group_key_cmp(const unsigned char *a, const unsigned char *b, size_t nby)
{
    for (size_t k = 0; k < nby; k++) {
        uint32_t la, lb;
        memcpy(&la, a, 4);
        memcpy(&lb, b, 4);
        weir_value va, vb;
        int c;
        if (weir_value_parse(a + 4, la, &va) && weir_value_parse(b + 4, lb, &vb)) {
            if (va.is_int && vb.is_int) c = (va.i > vb.i) - (va.i < vb.i);
            else c = (va.num > vb.num) - (va.num < vb.num);
        } else {
            c = memcmp(a + 4, b + 4, la < lb ? la : lb);
            if (c == 0) c = (la > lb) - (la < lb);
        }
        if (c) return c;
        a += 4 + la;
        b += 4 + lb;
    }
    return 0;
}

static int group_order_cmp(const void *x, const void *y)
{
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    int c = group_key_cmp(sort_st->keys + sort_st->entries[i].key_off,
                          sort_st->keys + sort_st->entries[j].key_off, sort_st->nby);
    return c ? c : (i > j) - (i < j); /* first seen first: a stable order */
}

/* The exact decimal dsum / 10^scale, trailing fraction zeros trimmed. */
static size_t group_format_decimal(const group_acc *a, char *buf, size_t size)
{
    char tmp[64];
    size_t n = 0;
    unsigned __int128 u = a->dsum < 0 ? -(unsigned __int128)a->dsum : (unsigned __int128)a->dsum;
    do { /* digits, least significant first */
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u || n <= (size_t)a->scale);
    size_t k = 0;
    char out[80];
    if (a->dsum < 0) out[k++] = '-';
    for (size_t i = n; i-- > 0;) {
        out[k++] = tmp[i];
        if (i == (size_t)a->scale && a->scale > 0) out[k++] = '.';
    }
    if (a->scale > 0) {
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

static size_t group_format_acc(const group_acc *a, group_fn fn, char *buf, size_t size)
{
    weir_value v = {.type = WEIR_VAL_NULL};
    switch (fn) {
    case AGG_COUNT_ROWS:
    case AGG_COUNT:
        v = (weir_value){.type = WEIR_VAL_NUM, .is_int = true, .i = a->n, .num = (double)a->n};
        break;
    case AGG_SUM:
        if (!a->n) break;
        if (!a->flt) return group_format_decimal(a, buf, size);
        v = (weir_value){.type = WEIR_VAL_NUM, .num = a->fsum + a->comp};
        break;
    case AGG_MEAN:
        if (!a->n) break;
        v = (weir_value){.type = WEIR_VAL_NUM,
                         .num = (a->flt ? a->fsum + a->comp : group_dsum_double(a)) /
                                (double)a->n};
        break;
    case AGG_MIN:
        if (a->has) v = a->vmin;
        break;
    case AGG_MAX:
        if (a->has) v = a->vmax;
        break;
    }
    return weir_value_format(&v, buf, size);
}

static int group_finish(weir_stage *s)
{
    group_state *st = weir_stage_state(s);
    if (!st->out_schema) return 0; /* no input at all */
    size_t n = st->nentries;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory sorting groups");
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (st->sort) {
        sort_st = st;
        qsort(order, n, sizeof *order, group_order_cmp);
        sort_st = NULL;
    }
    int rc = 0;
    weir_batch *b = NULL;
    char num[64];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!b) {
            if ((rc = weir_stage_batch(s, &b))) break;
            weir_batch_set_schema(b, st->out_schema);
        }
        const group_entry *g = &st->entries[order[i]];
        const unsigned char *k = st->keys + g->key_off;
        for (size_t j = 0; rc == 0 && j < st->nby; j++) {
            uint32_t l;
            memcpy(&l, k, 4);
            rc = weir_batch_add_field(b, k + 4, l);
            k += 4 + l;
        }
        const group_acc *acc = &st->accs[order[i] * st->nagg];
        for (size_t j = 0; rc == 0 && j < st->nagg; j++) {
            size_t len = group_format_acc(&acc[j], st->aggs[j].fn, num, sizeof num);
            rc = weir_batch_add_field(b, num, len < sizeof num ? len : sizeof num - 1);
        }
        if (rc == 0) rc = weir_batch_end_row(b);
        if (rc == 0 && b->nrows == 4096) {
            rc = weir_stage_emit(s, b);
            b = NULL;
        }
    }
    free(order);
    if (rc == 0 && b) {
        rc = weir_stage_emit(s, b);
        b = NULL;
    }
    weir_batch_release(b);
    if (rc == WEIR_ENOMEM) return weir_stage_errorf(s, rc, "out of memory writing groups");
    return rc < 0 ? rc : 0;
}

const weir_stage_def weir__stage_group = {
    .abi = WEIR_ABI_VERSION,
    .name = "group",
    .summary = "aggregate rows by key: count, sum, mean, min, max",
    .args = (const weir_arg_def[]){
        {"by", WEIR_ARG_LIST, NULL, "key columns: by=col or by=[a, b]"},
        {"sort", WEIR_ARG_BOOL, "true", "rows in key order (false: first seen first)"},
        {"aggregates", WEIR_ARG_NAMED, NULL,
         "name=count() | count(col) | sum(col) | mean(col) | min(col) | max(col)"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = group_open,
    .process = group_process,
    .finish = group_finish,
    .close = group_close,
    .plan = group_plan,
};
