/*
 * dedup(cols…) — keep the first row of each key, in input order.
 *
 * The key is the named columns' values (all columns when none are named),
 * compared as bytes: "1" and "1.0" are different keys, and so are "a" and
 * "a " — the values are not parsed or trimmed. Rows that pass keep their
 * order; a batch whose rows all pass goes on untouched, and an unshared
 * batch that loses rows is compacted in place (its arena stays).
 *
 * One instance: order is kept across the whole input, which replicas fed
 * by a hash split could not do (they would each keep their keys' first
 * rows, but the runtime does not carry a row's input position to merge
 * them back in order).
 *
 * Memory: every distinct key is kept (its bytes in arena chunks, a hash
 * table of them). What that holds is counted against
 * weir_stage_mem_budget() (mem= on the node, else --mem); past it the
 * stage stops with an error naming the budget and the keys seen — it does
 * not spill, since a row can only be let through once its key is known to
 * be new.
 */
#include "stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dedup_entry {
    uint64_t hash;
    const unsigned char *key;
    uint32_t len;
} dedup_entry;

typedef struct dedup_chunk {
    struct dedup_chunk *next;
    size_t cap, used;
    unsigned char data[];
} dedup_chunk;

typedef struct dedup_state {
    const char *const *cols;
    size_t ncols_named;
    weir_schema *schema; /* the schema key_idx was resolved for (a reference) */
    uint32_t *key_idx;
    size_t nkey;
    size_t budget;
    uint32_t *slots; /* entry index + 1; 0 is empty */
    size_t nslots;
    dedup_entry *entries;
    size_t nentries, cap_entries;
    dedup_chunk *chunks;
    size_t chunk_size, arena_bytes;
    unsigned char *scratch;
    size_t scratch_cap;
    bool *keep;
    size_t keep_cap;
} dedup_state;

static int dedup_resolve(weir_stage *s, const weir_schema *in, const char *const *cols,
                         size_t n, uint32_t *idx)
{
    for (size_t i = 0; i < n; i++) {
        int c = weir_schema_find(in, cols[i]);
        if (c < 0) return weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s'", cols[i]);
        if (idx) idx[i] = (uint32_t)c;
    }
    return 0;
}

static int dedup_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    const char *const *cols;
    size_t n = weir_stage_arg_list(s, "columns", &cols);
    if (!in) return 0;
    int rc = dedup_resolve(s, in, cols, n, NULL);
    if (rc == 0) *out = weir_schema_retain(in);
    return rc;
}

static int dedup_open(weir_stage *s)
{
    dedup_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->ncols_named = weir_stage_arg_list(s, "columns", &st->cols);
    st->budget = weir_stage_mem_budget(s);
    st->chunk_size = st->budget / 32;
    if (st->chunk_size < 4096) st->chunk_size = 4096;
    if (st->chunk_size > ((size_t)1 << 20)) st->chunk_size = (size_t)1 << 20;
    return 0;
}

static void dedup_close(weir_stage *s)
{
    dedup_state *st = weir_stage_state(s);
    if (!st) return;
    for (dedup_chunk *c = st->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    weir_schema_release(st->schema);
    free(st->key_idx);
    free(st->slots);
    free(st->entries);
    free(st->scratch);
    free(st->keep);
    free(st);
}

/* A new input schema: which columns make the key. */
static int dedup_start(weir_stage *s, dedup_state *st, const weir_schema *in)
{
    size_t n = st->ncols_named ? st->ncols_named : weir_schema_ncols(in);
    uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    int rc = 0;
    if (st->ncols_named) rc = dedup_resolve(s, in, st->cols, n, idx);
    else
        for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
    if (rc) {
        free(idx);
        return rc;
    }
    if (st->schema && st->nkey != n && st->nentries) {
        free(idx);
        return weir_stage_errorf(s, WEIR_EDATA,
                                 "rows with %zu columns after rows with %zu: the keys would "
                                 "not compare",
                                 n, st->nkey);
    }
    free(st->key_idx);
    st->key_idx = idx;
    st->nkey = n;
    weir_schema_release(st->schema);
    st->schema = weir_schema_retain(in);
    return 0;
}

/* 8 bytes at a time, then a final mix (splitmix64's). */
static uint64_t dedup_hash(const unsigned char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    for (size_t k = 0; i < n; i++, k += 8) w |= (uint64_t)p[i] << k;
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static size_t dedup_mem(const dedup_state *st)
{
    return st->nslots * sizeof *st->slots + st->cap_entries * sizeof *st->entries +
           st->arena_bytes;
}

static int dedup_grow(dedup_state *st)
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

static unsigned char *dedup_alloc(dedup_state *st, size_t n)
{
    dedup_chunk *c = st->chunks;
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

/* Is the key in st->scratch[0..len) new? Adds it if so.
 * @return 1 new, 0 seen, or a negative code. */
static int dedup_add(dedup_state *st, size_t len)
{
    uint64_t h = dedup_hash(st->scratch, len);
    if (st->nentries * 2 >= st->nslots && dedup_grow(st)) return WEIR_ENOMEM;
    size_t i = h & (st->nslots - 1);
    for (; st->slots[i]; i = (i + 1) & (st->nslots - 1)) {
        const dedup_entry *e = &st->entries[st->slots[i] - 1];
        if (e->hash == h && e->len == len && memcmp(e->key, st->scratch, len) == 0) return 0;
    }
    if (st->nentries >= UINT32_MAX - 1) return WEIR_ELIMIT;
    if (st->nentries == st->cap_entries) {
        size_t cap = st->cap_entries ? st->cap_entries * 2 : 1024;
        dedup_entry *ne = realloc(st->entries, cap * sizeof *ne);
        if (!ne) return WEIR_ENOMEM;
        st->entries = ne;
        st->cap_entries = cap;
    }
    unsigned char *key = dedup_alloc(st, len);
    if (!key) return WEIR_ENOMEM;
    memcpy(key, st->scratch, len);
    st->entries[st->nentries] = (dedup_entry){h, key, (uint32_t)len};
    st->slots[i] = (uint32_t)st->nentries + 1;
    st->nentries++;
    return 1;
}

static const char *dedup_size_text(size_t n, char *buf, size_t size)
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

/* Mark which rows of in are first of their key; *nkeep counts them. */
static int dedup_mark(weir_stage *s, dedup_state *st, const weir_batch *in, uint32_t *nkeep)
{
    if (in->nrows > st->keep_cap) {
        bool *nk = realloc(st->keep, in->nrows * sizeof *nk);
        if (!nk) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        st->keep = nk;
        st->keep_cap = in->nrows;
    }
    *nkeep = 0;
    for (uint32_t r = 0; r < in->nrows; r++) {
        const weir_field *f = &in->fields[(size_t)r * in->ncols];
        size_t need = 0;
        for (size_t k = 0; k < st->nkey; k++) need += 4 + f[st->key_idx[k]].len;
        if (need > st->scratch_cap) {
            unsigned char *ns = realloc(st->scratch, need * 2);
            if (!ns) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
            st->scratch = ns;
            st->scratch_cap = need * 2;
        }
        size_t len = 0;
        for (size_t k = 0; k < st->nkey; k++) {
            uint32_t l = f[st->key_idx[k]].len;
            memcpy(st->scratch + len, &l, 4);
            if (l) memcpy(st->scratch + len + 4, in->data + f[st->key_idx[k]].off, l);
            len += 4 + l;
        }
        int rc = dedup_add(st, len);
        if (rc == WEIR_ENOMEM)
            return weir_stage_errorf(s, rc, "out of memory holding %zu keys", st->nentries);
        if (rc == WEIR_ELIMIT)
            return weir_stage_errorf(s, rc, "more than %u distinct keys", UINT32_MAX - 2);
        st->keep[r] = rc == 1;
        *nkeep += (uint32_t)rc;
    }
    return 0;
}

static int dedup_process(weir_stage *s, weir_batch *in)
{
    dedup_state *st = weir_stage_state(s);
    int rc = 0;
    if (in->schema != st->schema && (!st->schema || !weir_schema_equal(in->schema, st->schema)))
        rc = dedup_start(s, st, in->schema);
    uint32_t nkeep = 0;
    if (rc == 0) rc = dedup_mark(s, st, in, &nkeep);
    if (rc == 0 && dedup_mem(st) > st->budget) {
        char b[32];
        rc = weir_stage_errorf(s, WEIR_ELIMIT,
                               "more than %s of keys (%zu distinct keys so far); raise mem= "
                               "or --mem",
                               dedup_size_text(st->budget, b, sizeof b), st->nentries);
    }
    if (rc) {
        weir_batch_release(in);
        return rc;
    }
    if (nkeep == in->nrows) return weir_stage_emit(s, in);
    if (!weir_batch_shared(in)) { /* drop rows in place: their slices go */
        uint32_t w = 0;
        for (uint32_t r = 0; r < in->nrows; r++) {
            if (!st->keep[r]) continue;
            if (w != r)
                memmove(&in->fields[(size_t)w * in->ncols], &in->fields[(size_t)r * in->ncols],
                        in->ncols * sizeof *in->fields);
            w++;
        }
        if (!st->keep[0]) in->line = 0; /* the first row is another one now */
        in->nrows = w;
        return weir_stage_emit(s, in);
    }
    weir_batch *b;
    if ((rc = weir_stage_batch(s, &b))) {
        weir_batch_release(in);
        return weir_stage_errorf(s, rc, "out of memory");
    }
    rc = weir_batch_set_schema(b, in->schema);
    for (uint32_t r = 0; rc == 0 && r < in->nrows; r++)
        if (st->keep[r]) rc = weir_batch_copy_row(b, in, r);
    b->seq = in->seq;
    b->origin = in->origin;
    b->offset = in->offset;
    b->line = st->keep[0] ? in->line : 0;
    weir_batch_release(in);
    if (rc) {
        weir_batch_release(b);
        return weir_stage_errorf(s, rc, "out of memory copying rows");
    }
    return weir_stage_emit(s, b);
}

const weir_stage_def weir__stage_dedup = {
    .abi = WEIR_ABI_VERSION,
    .name = "dedup",
    .summary = "keep the first row of each key (all columns, or the ones named), in input "
               "order",
    .args = (const weir_arg_def[]){
        {"columns", WEIR_ARG_COLUMNS, "",
         "the key columns (none: the whole row); values compare as bytes. Every distinct "
         "key is held in memory: past the budget (mem=, --mem) the run stops with an "
         "error"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = dedup_open,
    .process = dedup_process,
    .close = dedup_close,
    .plan = dedup_plan,
};
