/*
 * sample(p, seed=42) — keep each row with probability p.
 *
 * Reproducible: row i of the stream (counted from 0 at the first row this
 * stage sees) is kept when a hash of (seed, i) falls below p. The decision
 * depends on nothing else — not on how rows are cut into batches, nor on
 * threads or time — so the same seed and the same input always give the
 * same output. The row index needs one view of the whole stream, so the
 * stage runs as a single instance.
 */
#include "stages.h"

#include <stdlib.h>
#include <string.h>

typedef struct sample_state {
    uint64_t key;    /* the seed, mixed */
    uint64_t row;    /* stream index of the next row */
    uint64_t below;  /* keep when the row's 53-bit hash is below this */
} sample_state;

/* splitmix64's output function: a bijective mix with full avalanche, so
 * consecutive indices give independent-looking values. */
static uint64_t sample_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool sample_keep(const sample_state *st, uint64_t i)
{
    /* The splitmix64 sequence from `key`, read at position i. */
    uint64_t h = sample_mix(st->key + (i + 1) * 0x9e3779b97f4a7c15ull);
    return (h >> 11) < st->below;
}

static int sample_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    double p = weir_stage_arg_float(s, "p");
    if (!(p >= 0.0 && p <= 1.0))
        return weir_stage_errorf(s, WEIR_ESPEC, "p must be between 0 and 1, not %g", p);
    /* Rows pass unchanged; retain takes the schema non-const (refcount). */
    *out = weir_schema_retain((weir_schema *)(uintptr_t)in);
    return 0;
}

static int sample_open(weir_stage *s)
{
    sample_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    double p = weir_stage_arg_float(s, "p");
    if (!(p >= 0.0 && p <= 1.0))
        return weir_stage_errorf(s, WEIR_ESPEC, "p must be between 0 and 1, not %g", p);
    /* 53 bits: p * 2^53 is exact for every double p in [0, 1], so p = 1
     * keeps everything and p = 0 nothing. */
    st->below = (uint64_t)(p * 9007199254740992.0);
    st->key = sample_mix((uint64_t)weir_stage_arg_int(s, "seed"));
    return 0;
}

static int sample_process(weir_stage *s, weir_batch *in)
{
    sample_state *st = weir_stage_state(s);
    const uint32_t n = in->nrows, ncols = in->ncols;
    uint64_t base = st->row;
    st->row += n;
    if (weir_batch_shared(in)) {
        /* Read-only: copy the kept rows. */
        weir_batch *out;
        int rc = weir_stage_batch(s, &out);
        if (rc == 0) rc = weir_batch_set_schema(out, in->schema);
        for (uint32_t r = 0; rc == 0 && r < n; r++)
            if (sample_keep(st, base + r)) rc = weir_batch_copy_row(out, in, r);
        if (rc == 0) {
            out->origin = in->origin;
            out->offset = in->offset;
            out->line = n && sample_keep(st, base) ? in->line : 0;
        }
        weir_batch_release(in);
        if (rc) {
            weir_batch_release(out);
            return weir_stage_errorf(s, rc, "out of memory copying rows");
        }
        return weir_stage_emit(s, out);
    }
    /* In place: kept row j moves to slot j <= r, front to back. */
    uint32_t kept = 0;
    for (uint32_t r = 0; r < n; r++) {
        if (!sample_keep(st, base + r)) continue;
        if (kept != r)
            memcpy(in->fields + (size_t)kept * ncols, in->fields + (size_t)r * ncols,
                   ncols * sizeof *in->fields);
        kept++;
    }
    in->nrows = kept;
    /* The first row's line is known only if the first row stayed. */
    if (n && !sample_keep(st, base)) in->line = 0;
    return weir_stage_emit(s, in); /* an empty batch is released, not sent */
}

static void sample_close(weir_stage *s) { free(weir_stage_state(s)); }

const weir_stage_def weir__stage_sample = {
    .abi = WEIR_ABI_VERSION,
    .name = "sample",
    .summary = "keep each row with probability p; the same seed and input give the same rows",
    .args = (const weir_arg_def[]){
        {"p", WEIR_ARG_FLOAT, NULL, "probability of keeping a row, 0 to 1"},
        {"seed", WEIR_ARG_INT, "42",
         "which rows: row i is kept when hash(seed, i) < p, whatever the batch "
         "boundaries, threads or time"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = sample_open,
    .process = sample_process,
    .close = sample_close,
    .plan = sample_plan,
};
