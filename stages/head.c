/*
 * head(n=10) — the first n rows, then stop.
 *
 * Once it has passed n rows it returns WEIR_DONE: the runtime closes its
 * input, upstream stages see that nobody wants more and stop in turn, and
 * the run still succeeds. That is what makes `gen(rows=0) | head(n=5)`
 * finish. One instance only: "first" needs a single view of the stream.
 */
#include "stages.h"

#include <stdlib.h>

typedef struct head_state {
    uint64_t left; /* rows still to pass */
} head_state;

static int head_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    int64_t n = weir_stage_arg_int(s, "n");
    if (n < 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "n must be 0 or more, not %lld",
                                 (long long)n);
    /* Rows pass unchanged. The reference count is the one mutable part of
     * a schema; retain takes it non-const. */
    *out = weir_schema_retain((weir_schema *)(uintptr_t)in);
    return 0;
}

static int head_open(weir_stage *s)
{
    head_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    int64_t n = weir_stage_arg_int(s, "n");
    st->left = n > 0 ? (uint64_t)n : 0;
    return 0;
}

/* head(n=0) still takes one batch: cut to no rows, it carries the columns
 * downstream (a CSV of just a header), then upstream is stopped. */
static int head_process(weir_stage *s, weir_batch *in)
{
    head_state *st = weir_stage_state(s);
    if (in->nrows <= st->left) {
        st->left -= in->nrows;
        int rc = weir_stage_emit(s, in);
        return rc ? rc : st->left ? 0 : WEIR_DONE;
    }
    uint32_t keep = (uint32_t)st->left;
    st->left = 0;
    weir_batch *out = in;
    if (weir_batch_shared(in)) {
        /* Read-only: copy the rows we keep. */
        int rc = weir_stage_batch(s, &out);
        if (rc == 0) rc = weir_batch_set_schema(out, in->schema);
        for (uint32_t r = 0; rc == 0 && r < keep; r++) rc = weir_batch_copy_row(out, in, r);
        if (rc == 0) {
            out->origin = in->origin;
            out->offset = in->offset;
            out->line = in->line;
        }
        weir_batch_release(in);
        if (rc) {
            weir_batch_release(out);
            return weir_stage_errorf(s, rc, "out of memory copying rows");
        }
    } else {
        /* The arena may keep the dropped rows' bytes: nothing points there. */
        in->nrows = keep;
    }
    int rc = weir_stage_emit(s, out);
    return rc ? rc : WEIR_DONE;
}

static void head_close(weir_stage *s) { free(weir_stage_state(s)); }

const weir_stage_def weir__stage_head = {
    .abi = WEIR_ABI_VERSION,
    .name = "head",
    .summary = "pass the first n rows, then stop everything upstream (the run succeeds)",
    .args = (const weir_arg_def[]){
        {"n", WEIR_ARG_INT, "10", "how many rows to pass (0 or more)"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = head_open,
    .process = head_process,
    .close = head_close,
    .plan = head_plan,
};
