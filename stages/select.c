/*
 * select(cols…) — keep these columns, in this order.
 *
 * Values never move: a row's fields are slices of the batch's arena, so the
 * output is the same arena with a new slice table. An unshared batch is
 * rewritten in place; a shared one (a broadcast) is read-only, so its
 * selected fields are copied into a fresh batch.
 *
 * The output schema is the list of names, known at plan time even when the
 * input's is not; the column indices are resolved against each new input
 * schema as it arrives (a reference is kept, so a schema freed and another
 * allocated at the same address cannot be mistaken for it).
 */
#include "stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct select_state {
    weir_schema *out;  /* the selected names */
    weir_schema *in;   /* the input schema idx belongs to (one reference) */
    uint32_t *idx;     /* input column of each output column */
    weir_field *row;   /* one row's selected slices, while rewriting in place */
    size_t k;
    bool identity;     /* input == output: batches pass untouched */
} select_state;

/* "a, b, c" into buf, cut short with "…" when it does not fit. */
static const char *select_columns(const weir_schema *s, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t c = 0; c < weir_schema_ncols(s); c++) {
        int w = snprintf(buf + n, size - n, "%s%s", c ? ", " : "", weir_schema_name(s, c));
        if (w < 0 || (size_t)w >= size - n) {
            if (size >= 4) snprintf(buf + size - 4, 4, "…");
            break;
        }
        n += (size_t)w;
    }
    return buf;
}

/* Checks that need no input schema: at least one column, none twice. */
static int select_check_args(weir_stage *s, const char *const *cols, size_t k)
{
    if (k == 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "select() needs at least one column");
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cols[i], cols[j]) == 0)
                return weir_stage_errorf(s, WEIR_ESPEC, "column '%s' is selected twice",
                                         cols[i]);
    return 0;
}

/* Resolve every selected name in `in`; idx may be NULL (plan: check only). */
static int select_resolve(weir_stage *s, const weir_schema *in, const char *const *cols,
                          size_t k, uint32_t *idx)
{
    for (size_t i = 0; i < k; i++) {
        int c = weir_schema_find(in, cols[i]);
        if (c < 0) {
            char names[512];
            return weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s' (columns: %s)",
                                     cols[i], select_columns(in, names, sizeof names));
        }
        if (idx) idx[i] = (uint32_t)c;
    }
    return 0;
}

static int select_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    const char *const *cols;
    size_t k = weir_stage_arg_list(s, "columns", &cols);
    int rc = select_check_args(s, cols, k);
    if (rc) return rc;
    if (in && (rc = select_resolve(s, in, cols, k, NULL))) return rc;
    return weir_schema_create(out, cols, k);
}

static int select_open(weir_stage *s)
{
    select_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    const char *const *cols;
    st->k = weir_stage_arg_list(s, "columns", &cols);
    int rc = select_check_args(s, cols, st->k);
    if (rc) return rc;
    st->idx = malloc(st->k * sizeof *st->idx);
    st->row = malloc(st->k * sizeof *st->row);
    if (!st->idx || !st->row) return WEIR_ENOMEM;
    return weir_schema_create(&st->out, cols, st->k);
}

/* Make st->idx describe batches of schema `in`. */
static int select_bind(weir_stage *s, select_state *st, weir_schema *in)
{
    if (in == st->in) return 0;
    if (!in)
        return weir_stage_errorf(s, WEIR_EINVAL, "input rows have no schema");
    if (!st->in || !weir_schema_equal(in, st->in)) {
        const char *const *cols;
        weir_stage_arg_list(s, "columns", &cols);
        int rc = select_resolve(s, in, cols, st->k, st->idx);
        if (rc) return rc;
        st->identity = weir_schema_equal(in, st->out);
    }
    weir_schema_release(st->in);
    st->in = weir_schema_retain(in);
    return 0;
}

/* Copy the selected fields of every row into a fresh batch. */
static int select_copy(weir_stage *s, select_state *st, const weir_batch *in,
                       weir_batch **out)
{
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    rc = weir_batch_set_schema(b, st->out);
    for (uint32_t r = 0; rc == 0 && r < in->nrows; r++) {
        const weir_field *f = &in->fields[(size_t)r * in->ncols];
        for (size_t j = 0; rc == 0 && j < st->k; j++)
            rc = weir_batch_add_field(b, in->data + f[st->idx[j]].off, f[st->idx[j]].len);
        if (rc == 0) rc = weir_batch_end_row(b);
    }
    if (rc) {
        weir_batch_release(b);
        return rc;
    }
    b->origin = in->origin;
    b->offset = in->offset;
    b->line = in->line;
    *out = b;
    return 0;
}

/* Rewrite the slice table in place. Row r's new slices land at r*k, which
 * is at or before its old ones at r*ncols (k <= ncols, no column twice), so
 * only the row being rewritten can be overwritten: it is read first. */
static void select_in_place(select_state *st, weir_batch *b)
{
    const uint32_t ncols = b->ncols, k = (uint32_t)st->k;
    weir_field *f = b->fields;
    for (uint32_t r = 0; r < b->nrows; r++) {
        const weir_field *src = f + (size_t)r * ncols;
        for (uint32_t j = 0; j < k; j++) st->row[j] = src[st->idx[j]];
        memcpy(f + (size_t)r * k, st->row, k * sizeof *f);
    }
    weir_schema_retain(st->out);
    weir_schema_release(b->schema);
    b->schema = st->out;
    b->ncols = k;
}

static int select_process(weir_stage *s, weir_batch *in)
{
    select_state *st = weir_stage_state(s);
    int rc = select_bind(s, st, in->schema);
    if (rc) {
        weir_batch_release(in);
        return rc;
    }
    if (st->identity) return weir_stage_emit(s, in);
    if (!weir_batch_shared(in)) {
        select_in_place(st, in);
        return weir_stage_emit(s, in);
    }
    weir_batch *out;
    rc = select_copy(s, st, in, &out);
    weir_batch_release(in);
    if (rc) return weir_stage_errorf(s, rc, "out of memory copying rows");
    return weir_stage_emit(s, out);
}

static void select_close(weir_stage *s)
{
    select_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->out);
    weir_schema_release(st->in);
    free(st->idx);
    free(st->row);
    free(st);
}

const weir_stage_def weir__stage_select = {
    .abi = WEIR_ABI_VERSION,
    .name = "select",
    .summary = "keep only the named columns, in the order given",
    .args = (const weir_arg_def[]){
        {"columns", WEIR_ARG_COLUMNS, NULL,
         "the columns to keep, in output order: select(id, fare, tip); each at "
         "most once; an unknown column is an error (before the run starts when "
         "the input's columns are known)"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .open = select_open,
    .process = select_process,
    .close = select_close,
    .plan = select_plan,
};
