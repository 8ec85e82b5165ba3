/*
 * compute(name = expr, …) — add columns, or replace them, from expressions.
 *
 * Definitions apply in order, each seeing the row as the ones before it
 * left it: compute(total = fare + tip, share = tip / total) works, and
 * compute(fare = fare * 2, big = fare > 100) tests the doubled fare. A
 * name that is already a column replaces its values in place (the column
 * keeps its position); a new name is appended, in definition order. A
 * definition cannot see a column defined after it (an unknown column, at
 * plan time). Values are written as weir_value_format() gives them:
 * integers without a point, floats in the shortest form that reads back,
 * true/false, and null as an empty field.
 *
 * How: the output schema is the input's columns followed by the new ones,
 * so the columns definition j may see are a prefix of the output. Each
 * definition is compiled against that prefix (for the errors) and then
 * against the whole output schema (the same column indices) to run. A
 * batch is built once per input batch: the input's arena is copied in one
 * piece and its slices reused; then each definition is evaluated over the
 * output batch itself and its values written into their column. A value
 * that is already a slice of the output's arena (a column, or substr() of
 * one) is referenced, not copied.
 */
#include "stages.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text of a number or bool, with its NUL: what weir_value_format needs. */
#define COMPUTE_NUM_MAX 32

typedef struct compute_state {
    size_t n;           /* definitions */
    weir_schema *in;    /* the input schema bound below (one reference) */
    weir_schema *out;   /* the output schema */
    weir_eval **ev;     /* per definition, compiled against out */
    uint32_t *pos;      /* per definition: the output column it writes */
    size_t nin, nout;
    weir_value *vals;   /* one per row */
    size_t cap;
} compute_state;

/* Add the names of the columns e reads to names[] (no duplicates). */
static int compute_collect(const weir_expr *e, const char ***names, size_t *n, int depth)
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
        int rc = compute_collect(e->args[i], names, n, depth + 1);
        if (rc) return rc;
    }
    return 0;
}

static int compute_compile(weir_stage *s, const weir_expr *e, const weir_schema *schema,
                           weir_eval **out)
{
    char err[512];
    int rc = weir_eval_create(out, e, schema, err, sizeof err);
    if (rc == WEIR_ESPEC) return weir_stage_errorf(s, WEIR_ESPEC, "%s", err);
    if (rc) return weir_stage_errorf(s, rc, "compiling an expression: %s", weir_strerror(rc));
    return 0;
}

/* Compile every definition as if it ran on columns `in` (see the top).
 * Sets *out to the output schema; fills ev[] and pos[] unless NULL (plan
 * checks only). On failure nothing is left allocated. */
static int compute_layout(weir_stage *s, const weir_schema *in, weir_schema **out,
                          weir_eval **ev, uint32_t *pos)
{
    const char *const *names;
    const weir_expr *const *exprs;
    size_t n = weir_stage_arg_named(s, "columns", &names, &exprs);
    size_t nin = weir_schema_ncols(in), cur = nin;
    const char **cols = malloc((nin + n + 1) * sizeof *cols);
    if (!cols) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    for (size_t c = 0; c < nin; c++) cols[c] = weir_schema_name(in, c);
    int rc = 0;
    *out = NULL;
    for (size_t j = 0; j < n && rc == 0; j++) {
        weir_schema *seen;
        weir_eval *e = NULL;
        if ((rc = weir_schema_create(&seen, cols, cur))) {
            rc = weir_stage_errorf(s, rc, "out of memory");
            break;
        }
        rc = compute_compile(s, exprs[j], seen, &e);
        weir_eval_destroy(e);
        weir_schema_release(seen);
        size_t k = 0;
        while (k < cur && strcmp(cols[k], names[j]) != 0) k++;
        if (k == cur) cols[cur++] = names[j];
        if (pos) pos[j] = (uint32_t)k;
    }
    if (rc == 0 && (rc = weir_schema_create(out, cols, cur)))
        rc = weir_stage_errorf(s, rc, "out of memory");
    free((void *)cols);
    for (size_t j = 0; ev && j < n && rc == 0; j++)
        rc = compute_compile(s, exprs[j], *out, &ev[j]);
    if (rc) {
        for (size_t j = 0; ev && j < n; j++) {
            weir_eval_destroy(ev[j]);
            ev[j] = NULL;
        }
        weir_schema_release(*out);
        *out = NULL;
    }
    return rc;
}

/* The check that needs no input schema. */
static int compute_check_args(weir_stage *s)
{
    const char *const *names;
    const weir_expr *const *exprs;
    if (weir_stage_arg_named(s, "columns", &names, &exprs) == 0)
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "compute() needs at least one name = expression");
    return 0;
}

static int compute_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    int rc = compute_check_args(s);
    if (rc) return rc;
    if (in) return compute_layout(s, in, out, NULL, NULL);
    /* Input columns unknown until the data comes: check at least functions
     * and argument counts, as if every column named existed. */
    const char *const *names;
    const weir_expr *const *exprs;
    size_t n = weir_stage_arg_named(s, "columns", &names, &exprs);
    const char **cols = NULL;
    size_t ncols = 0;
    for (size_t j = 0; j < n && rc == 0; j++) rc = compute_collect(exprs[j], &cols, &ncols, 0);
    weir_schema *any = NULL;
    if (rc == 0) rc = weir_schema_create(&any, cols, ncols);
    free((void *)cols);
    if (rc) return weir_stage_errorf(s, rc, "%s", weir_strerror(rc));
    for (size_t j = 0; j < n && rc == 0; j++) {
        weir_eval *e = NULL;
        rc = compute_compile(s, exprs[j], any, &e);
        weir_eval_destroy(e);
    }
    weir_schema_release(any);
    return rc;
}

static int compute_open(weir_stage *s)
{
    compute_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    int rc = compute_check_args(s);
    if (rc) return rc;
    const char *const *names;
    const weir_expr *const *exprs;
    st->n = weir_stage_arg_named(s, "columns", &names, &exprs);
    st->ev = calloc(st->n ? st->n : 1, sizeof *st->ev);
    st->pos = calloc(st->n ? st->n : 1, sizeof *st->pos);
    if (!st->ev || !st->pos) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return 0;
}

static void compute_unbind(compute_state *st)
{
    for (size_t j = 0; j < st->n; j++) {
        weir_eval_destroy(st->ev[j]);
        st->ev[j] = NULL;
    }
    weir_schema_release(st->in);
    weir_schema_release(st->out);
    st->in = st->out = NULL;
}

/* Make the compiled definitions fit batches of `schema`. */
static int compute_bind(weir_stage *s, compute_state *st, weir_schema *schema)
{
    if (st->in && schema == st->in) return 0;
    if (!schema) return weir_stage_errorf(s, WEIR_EINVAL, "input rows have no schema");
    if (!st->in || !weir_schema_equal(schema, st->in)) {
        compute_unbind(st);
        int rc = compute_layout(s, schema, &st->out, st->ev, st->pos);
        if (rc) return rc;
        st->nin = weir_schema_ncols(schema);
        st->nout = weir_schema_ncols(st->out);
    }
    weir_schema_release(st->in);
    st->in = weir_schema_retain(schema);
    return 0;
}

/* The output rows: the input's fields, and empty new columns. */
static int compute_start(compute_state *st, const weir_batch *in, weir_batch *out)
{
    size_t base = out->len;
    if (base + in->len > UINT32_MAX) return WEIR_ELIMIT;
    int rc = weir_batch_append(out, in->data, in->len);
    const uint32_t nin = (uint32_t)st->nin, nout = (uint32_t)st->nout;
    for (uint32_t r = 0; rc == 0 && r < in->nrows; r++) {
        for (uint32_t c = 0; rc == 0 && c < nout; c++) rc = weir_batch_add_field(out, "", 0);
        if (rc) break;
        rc = weir_batch_end_row(out);
        weir_field *dst = &out->fields[(size_t)r * nout];
        const weir_field *src = &in->fields[(size_t)r * nin];
        for (uint32_t c = 0; c < nin; c++)
            dst[c] = (weir_field){(uint32_t)base + src[c].off, src[c].len};
    }
    return rc;
}

/* Write vals[] into column col of out. */
static int compute_store(weir_value *vals, weir_batch *out, uint32_t col)
{
    const uint32_t nrows = out->nrows, nc = out->ncols;
    /* First the room the copies need. A value already in out's arena is
     * noted as an offset (str NULL) before reserving may move the arena. */
    const uintptr_t lo = (uintptr_t)out->data, hi = lo + out->len;
    size_t need = 0;
    for (uint32_t r = 0; r < nrows; r++) {
        weir_value *v = &vals[r];
        if (v->type == WEIR_VAL_STR) {
            uintptr_t p = (uintptr_t)v->str;
            if (p >= lo && p + v->len <= hi) {
                v->i = (int64_t)(p - lo);
                v->str = NULL;
            } else {
                need += v->len;
            }
        } else if (v->type != WEIR_VAL_NULL) {
            need += COMPUTE_NUM_MAX;
        }
    }
    if (out->len + need > UINT32_MAX) return WEIR_ELIMIT;
    int rc = weir_batch_reserve(out, need);
    if (rc) return rc;
    for (uint32_t r = 0; r < nrows; r++) {
        const weir_value *v = &vals[r];
        weir_field *f = &out->fields[(size_t)r * nc + col];
        size_t len = 0;
        if (v->type == WEIR_VAL_STR && !v->str) {
            *f = (weir_field){(uint32_t)v->i, (uint32_t)v->len};
            continue;
        }
        if (v->type == WEIR_VAL_STR) {
            len = v->len;
            if (len) memcpy(out->data + out->len, v->str, len);
        } else if (v->type != WEIR_VAL_NULL) {
            len = weir_value_format(v, (char *)out->data + out->len, COMPUTE_NUM_MAX);
        }
        *f = (weir_field){(uint32_t)out->len, (uint32_t)len};
        out->len += len;
    }
    return 0;
}

static int compute_process(weir_stage *s, weir_batch *in)
{
    compute_state *st = weir_stage_state(s);
    if (!in->schema && in->nrows == 0) {
        weir_batch_release(in);
        return 0;
    }
    /* A batch without rows still becomes one with the output's columns:
     * the first may be only the header (and errors come when it does). */
    weir_batch *out = NULL;
    int rc = compute_bind(s, st, in->schema);
    if (rc) goto fail;
    if (in->nrows > st->cap) {
        weir_value *nv = realloc(st->vals, in->nrows * sizeof *nv);
        if (!nv) {
            rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
            goto fail;
        }
        st->vals = nv;
        st->cap = in->nrows;
    }
    if ((rc = weir_stage_batch(s, &out)) || (rc = weir_batch_set_schema(out, st->out)) ||
        (rc = compute_start(st, in, out)))
        goto fail_data;
    out->origin = in->origin;
    out->offset = in->offset;
    out->line = in->line;
    for (size_t j = 0; j < st->n; j++) {
        if ((rc = weir_eval_batch(st->ev[j], out, st->vals)) ||
            (rc = compute_store(st->vals, out, st->pos[j])))
            goto fail_data;
    }
    weir_batch_release(in);
    return weir_stage_emit(s, out);
fail_data:
    if (rc == WEIR_ELIMIT)
        rc = weir_stage_errorf(s, rc, "%s%soutput batch over 4 GiB (%u rows)",
                               in->origin ? in->origin : "", in->origin ? ": " : "",
                               in->nrows);
    else
        rc = weir_stage_errorf(s, rc, "%s", weir_strerror(rc));
fail:
    weir_batch_release(out);
    weir_batch_release(in);
    return rc;
}

static void compute_close(weir_stage *s)
{
    compute_state *st = weir_stage_state(s);
    if (!st) return;
    if (st->ev) compute_unbind(st);
    free(st->ev);
    free(st->pos);
    free(st->vals);
    free(st);
}

const weir_stage_def weir__stage_compute = {
    .abi = WEIR_ABI_VERSION,
    .name = "compute",
    .summary = "add or replace columns computed from expressions",
    .args = (const weir_arg_def[]){
        {"columns", WEIR_ARG_NAMED, NULL,
         "name = expression, one or more: compute(total = fare + tip, big = total > 50). "
         "Applied in order, each seeing the columns the earlier ones made; an existing "
         "name is replaced in place, a new one appended. Null is written as an empty "
         "field"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .open = compute_open,
    .process = compute_process,
    .close = compute_close,
    .plan = compute_plan,
};
