/*
 * to_jsonl() — rows → JSON Lines: one object per row, keys in column
 * order, numbers bare and everything else a string (format.h).
 *
 * Every row batch is formatted on its own, so replicas may run side by
 * side. A single instance gathers output into bytes batches of 64 KiB or
 * more; replicas must not (the ordered collector restores order per input
 * batch, so output held back past its input would come out of place), so
 * they emit what each input batch gave.
 */
#include "format.h"
#include "stages.h"

#include <stdlib.h>

#define TO_JSONL_MIN ((size_t)64 << 10) /* a single instance emits at this */
#define TO_JSONL_MAX ((size_t)1 << 20)  /* a row batch is cut at about this */
#define TO_JSONL_STEP 256u              /* rows formatted between size checks */

typedef struct to_jsonl_state {
    weir_batch *out;
    bool gather;   /* one instance: output may wait for the next input */
} to_jsonl_state;

static int to_jsonl_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)s;
    (void)in;
    (void)out; /* bytes carry no schema */
    return 0;
}

static int to_jsonl_open(weir_stage *s)
{
    to_jsonl_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    st->gather = weir_stage_replicas(s) == 1;
    weir_stage_set_state(s, st);
    return 0;
}

static int to_jsonl_emit(weir_stage *s, to_jsonl_state *st)
{
    weir_batch *b = st->out;
    st->out = NULL;
    return weir_stage_emit(s, b);
}

static int to_jsonl_process(weir_stage *s, weir_batch *in)
{
    to_jsonl_state *st = weir_stage_state(s);
    int rc = 0;
    for (uint32_t r = 0; r < in->nrows && !rc;) {
        if (!st->out && (rc = weir_stage_batch(s, &st->out))) break;
        uint32_t to = in->nrows - r > TO_JSONL_STEP ? r + TO_JSONL_STEP : in->nrows;
        rc = weir__jsonl_rows(st->out, in, r, to);
        r = to;
        if (!rc && st->out->len >= TO_JSONL_MAX) rc = to_jsonl_emit(s, st);
    }
    weir_batch_release(in);
    if (rc == WEIR_ENOMEM) return weir_stage_errorf(s, rc, "out of memory");
    if (!rc && st->out && (!st->gather || st->out->len >= TO_JSONL_MIN))
        rc = to_jsonl_emit(s, st);
    return rc;
}

static int to_jsonl_finish(weir_stage *s)
{
    to_jsonl_state *st = weir_stage_state(s);
    return st->out ? to_jsonl_emit(s, st) : 0;
}

static void to_jsonl_close(weir_stage *s)
{
    to_jsonl_state *st = weir_stage_state(s);
    if (!st) return;
    weir_batch_release(st->out);
    free(st);
}

const weir_stage_def weir__stage_to_jsonl = {
    .abi = WEIR_ABI_VERSION,
    .name = "to_jsonl",
    .summary = "format rows as JSON Lines (numbers bare, other values as strings)",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_BYTES,
    .flags = WEIR_STAGE_PARALLEL,
    .open = to_jsonl_open,
    .process = to_jsonl_process,
    .finish = to_jsonl_finish,
    .close = to_jsonl_close,
    .plan = to_jsonl_plan,
};
