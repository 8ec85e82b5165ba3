/*
 * filter(expr) — keep the rows for which expr is true.
 *
 * Truth is weir_value_truth(): true, a non-zero number and non-empty text
 * are true; false, 0, "" and null are false. A comparison with a null (an
 * empty or non-numeric field in arithmetic) is false, so such rows go.
 *
 * The expression is compiled against the input schema at plan time when it
 * is known (unknown columns are spec errors before anything runs), and
 * again at run time for each new input schema. Rows are field slices of
 * the batch's arena, so an unshared batch is filtered by compacting its
 * slice table in place: no byte is copied. A shared batch (a broadcast)
 * is read-only: the kept rows are copied into a fresh batch (passing it on
 * untouched when every row is kept would also be sound: the runtime never
 * writes to a shared batch).
 */
#include "stages.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct filter_state {
    weir_eval *ev;
    weir_schema *schema; /* what ev was compiled for (one reference) */
    weir_value *vals;    /* one per row */
    size_t cap;
} filter_state;

static int filter_compile(weir_stage *s, const weir_schema *schema, weir_eval **out)
{
    char err[512];
    int rc = weir_eval_create(out, weir_stage_arg_expr(s, "expr"), schema, err, sizeof err);
    if (rc == WEIR_ESPEC) return weir_stage_errorf(s, WEIR_ESPEC, "%s", err);
    if (rc) return weir_stage_errorf(s, rc, "compiling the expression: %s", weir_strerror(rc));
    return 0;
}

/* Add the names of the columns e reads to names[] (no duplicates). */
static int filter_collect(const weir_expr *e, const char ***names, size_t *n, int depth)
{
    if (e->kind == WEIR_EXPR_COL) {
        for (size_t i = 0; i < *n; i++)
            if (strcmp((*names)[i], e->str) == 0) return 0;
        const char **nn = realloc((void *)*names, (*n + 1) * sizeof *nn);
        if (!nn) return WEIR_ENOMEM;
        nn[(*n)++] = e->str;
        *names = nn;
    }
    if (depth > 1000) return 0; /* the compiler reports it */
    for (size_t i = 0; i < e->nargs; i++) {
        int rc = filter_collect(e->args[i], names, n, depth + 1);
        if (rc) return rc;
    }
    return 0;
}

static int filter_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    weir_eval *ev = NULL;
    if (in) {
        int rc = filter_compile(s, in, &ev);
        weir_eval_destroy(ev);
        if (rc) return rc;
        /* Schemas are immutable: a new reference changes only the count. */
        *out = weir_schema_retain(in);
        return 0;
    }
    /* Input columns unknown until the data comes: check at least functions
     * and argument counts, as if every column named existed. */
    const char **names = NULL;
    size_t n = 0;
    weir_schema *any = NULL;
    int rc = filter_collect(weir_stage_arg_expr(s, "expr"), &names, &n, 0);
    if (rc == 0) rc = weir_schema_create(&any, names, n);
    free((void *)names);
    if (rc) return weir_stage_errorf(s, rc, "%s", weir_strerror(rc));
    rc = filter_compile(s, any, &ev);
    weir_eval_destroy(ev);
    weir_schema_release(any);
    return rc;
}

static int filter_open(weir_stage *s)
{
    filter_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    return 0;
}

/* Make st->ev fit batches of `schema`. */
static int filter_bind(weir_stage *s, filter_state *st, weir_schema *schema)
{
    if (st->ev && schema == st->schema) return 0;
    if (!schema) return weir_stage_errorf(s, WEIR_EINVAL, "input rows have no schema");
    if (!st->ev || !weir_schema_equal(schema, st->schema)) {
        weir_eval *ev;
        int rc = filter_compile(s, schema, &ev);
        if (rc) return rc;
        weir_eval_destroy(st->ev);
        st->ev = ev;
    }
    weir_schema_release(st->schema);
    st->schema = weir_schema_retain(schema);
    return 0;
}

static int filter_process(weir_stage *s, weir_batch *in)
{
    filter_state *st = weir_stage_state(s);
    if (!in->schema && in->nrows == 0) {
        weir_batch_release(in);
        return 0;
    }
    /* Bind even a batch without rows: the first may be only the header,
     * and an unknown column is reported when it arrives. */
    int rc = filter_bind(s, st, in->schema);
    if (rc == 0 && in->nrows > st->cap) {
        weir_value *nv = realloc(st->vals, in->nrows * sizeof *nv);
        if (!nv) rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        else {
            st->vals = nv;
            st->cap = in->nrows;
        }
    }
    if (rc == 0 && (rc = weir_eval_batch(st->ev, in, st->vals)))
        rc = weir_stage_errorf(s, rc, "evaluating the expression: %s", weir_strerror(rc));
    if (rc) {
        weir_batch_release(in);
        return rc;
    }
    const uint32_t n = in->nrows, nc = in->ncols;
    if (!weir_batch_shared(in)) {
        uint32_t k = 0;
        for (uint32_t r = 0; r < n; r++) {
            if (!weir_value_truth(&st->vals[r])) continue;
            if (k != r)
                memcpy(&in->fields[(size_t)k * nc], &in->fields[(size_t)r * nc],
                       nc * sizeof *in->fields);
            k++;
        }
        in->nrows = k;
        /* Emptied, it still goes: the runtime sends a stage's first batch
         * (the columns, when no row passes) and drops the others. */
        return weir_stage_emit(s, in);
    }
    weir_batch *out;
    if ((rc = weir_stage_batch(s, &out))) {
        weir_batch_release(in);
        return weir_stage_errorf(s, rc, "out of memory");
    }
    out->origin = in->origin;
    out->offset = in->offset;
    out->line = in->line;
    rc = weir_batch_set_schema(out, in->schema);
    for (uint32_t r = 0; rc == 0 && r < n; r++)
        if (weir_value_truth(&st->vals[r])) rc = weir_batch_copy_row(out, in, r);
    weir_batch_release(in);
    if (rc) {
        weir_batch_release(out);
        return weir_stage_errorf(s, rc, "copying rows: %s", weir_strerror(rc));
    }
    return weir_stage_emit(s, out);
}

static void filter_close(weir_stage *s)
{
    filter_state *st = weir_stage_state(s);
    if (!st) return;
    weir_eval_destroy(st->ev);
    weir_schema_release(st->schema);
    free(st->vals);
    free(st);
}

const weir_stage_def weir__stage_filter = {
    .abi = WEIR_ABI_VERSION,
    .name = "filter",
    .summary = "keep the rows for which an expression is true",
    .args = (const weir_arg_def[]){
        {"expr", WEIR_ARG_EXPR, NULL,
         "the condition, over the input's columns: fare > 50 && payment == \"card\". "
         "A row is kept when the value is true, a non-zero number or non-empty text; "
         "a comparison with a null (empty or non-numeric text in arithmetic) is false"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .open = filter_open,
    .process = filter_process,
    .close = filter_close,
    .plan = filter_plan,
};
