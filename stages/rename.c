/*
 * rename(new = old, …) — give columns new names; values and order stay.
 *
 * Only the schema changes: an unshared batch gets the new schema and keeps
 * its fields; a shared one (a broadcast, read-only) is copied first. All
 * renames apply at once, so rename(a = b, b = a) swaps two columns; a name
 * that would then appear twice is an error.
 */
#include "stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rename_state {
    weir_schema *in;   /* the input schema `out` was derived from */
    weir_schema *out;
} rename_state;

static const char *rename_columns(const weir_schema *s, char *buf, size_t size)
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

/* The old name of pair i: a column reference or a string. */
static const char *rename_old(const weir_expr *e)
{
    return e->kind == WEIR_EXPR_COL || e->kind == WEIR_EXPR_STR ? e->str : NULL;
}

/* Checks that need no input schema. */
static int rename_check_args(weir_stage *s)
{
    const char *const *names;
    const weir_expr *const *exprs;
    size_t n = weir_stage_arg_named(s, "columns", &names, &exprs);
    if (n == 0)
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "rename() needs at least one new = old pair");
    for (size_t i = 0; i < n; i++) {
        const char *old = rename_old(exprs[i]);
        if (!old || (exprs[i]->kind == WEIR_EXPR_STR && strlen(old) != exprs[i]->len))
            return weir_stage_errorf(s, WEIR_ESPEC,
                                     "'%s = …' must name a column on the right "
                                     "(rename(new = old))", names[i]);
        if (!names[i][0] || !old[0])
            return weir_stage_errorf(s, WEIR_ESPEC, "a column name cannot be empty");
        for (size_t j = 0; j < i; j++)
            if (strcmp(rename_old(exprs[j]), old) == 0)
                return weir_stage_errorf(s, WEIR_ESPEC, "column '%s' is renamed twice", old);
    }
    return 0;
}

/* The renamed schema of `in`. */
static int rename_derive(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    const char *const *names;
    const weir_expr *const *exprs;
    size_t n = weir_stage_arg_named(s, "columns", &names, &exprs);
    size_t ncols = weir_schema_ncols(in);
    const char **cols = malloc((ncols ? ncols : 1) * sizeof *cols);
    if (!cols) return WEIR_ENOMEM;
    for (size_t c = 0; c < ncols; c++) cols[c] = weir_schema_name(in, c);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int c = weir_schema_find(in, rename_old(exprs[i]));
        if (c < 0) {
            char buf[512];
            rc = weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s' (columns: %s)",
                                   rename_old(exprs[i]), rename_columns(in, buf, sizeof buf));
        } else {
            cols[c] = names[i];
        }
    }
    for (size_t c = 0; c < ncols && rc == 0; c++)
        for (size_t d = 0; d < c && rc == 0; d++)
            if (strcmp(cols[c], cols[d]) == 0)
                rc = weir_stage_errorf(s, WEIR_ESPEC,
                                       "cannot rename to '%s': the column already exists",
                                       cols[c]);
    if (rc == 0) rc = weir_schema_create(out, cols, ncols);
    free(cols);
    return rc;
}

static int rename_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    int rc = rename_check_args(s);
    if (rc || !in) return rc;
    return rename_derive(s, in, out);
}

static int rename_open(weir_stage *s)
{
    rename_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    return rename_check_args(s);
}

static int rename_process(weir_stage *s, weir_batch *in)
{
    rename_state *st = weir_stage_state(s);
    int rc = 0;
    if (in->schema != st->in) {
        if (!in->schema) rc = weir_stage_errorf(s, WEIR_EINVAL, "input rows have no schema");
        else if (!st->in || !weir_schema_equal(in->schema, st->in)) {
            weir_schema *out;
            rc = rename_derive(s, in->schema, &out);
            if (rc == 0) {
                weir_schema_release(st->out);
                st->out = out;
            }
        }
        if (rc) {
            weir_batch_release(in);
            return rc == WEIR_ENOMEM ? weir_stage_errorf(s, rc, "out of memory") : rc;
        }
        weir_schema_release(st->in);
        st->in = weir_schema_retain(in->schema);
    }
    if (weir_batch_shared(in)) {
        weir_batch *b;
        rc = weir_stage_batch(s, &b);
        if (rc == 0) rc = weir_batch_set_schema(b, st->out);
        if (rc == 0) rc = weir_batch_reserve(b, in->len);
        for (uint32_t r = 0; rc == 0 && r < in->nrows; r++)
            rc = weir_batch_copy_row(b, in, r);
        if (rc == 0) {
            b->origin = in->origin;
            b->offset = in->offset;
            b->line = in->line;
        }
        weir_batch_release(in);
        if (rc) {
            weir_batch_release(b);
            return weir_stage_errorf(s, rc, "out of memory copying rows");
        }
        return weir_stage_emit(s, b);
    }
    weir_schema_retain(st->out);
    weir_schema_release(in->schema);
    in->schema = st->out;
    return weir_stage_emit(s, in);
}

static void rename_close(weir_stage *s)
{
    rename_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->in);
    weir_schema_release(st->out);
    free(st);
}

const weir_stage_def weir__stage_rename = {
    .abi = WEIR_ABI_VERSION,
    .name = "rename",
    .summary = "give columns new names (new = old); values and order unchanged",
    .args = (const weir_arg_def[]){
        {"columns", WEIR_ARG_NAMED, NULL,
         "new = old pairs: rename(total = fare, pickup = `pickup time`); old "
         "is a column name (or a string); all apply at once, so a = b, b = a "
         "swaps; a name may not end up twice"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .open = rename_open,
    .process = rename_process,
    .close = rename_close,
    .plan = rename_plan,
};
