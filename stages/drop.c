/*
 * drop(cols…) — remove these columns; the others keep their order.
 *
 * The complement of select(): the output schema depends on the input's, so
 * it is computed at plan time when the input schema is known, and again
 * for each new input schema at run time. Rows are rewritten as select()
 * does: the slice table in place for an unshared batch, a copy of the kept
 * fields for a shared one.
 */
#include "stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct drop_state {
    weir_schema *in;   /* the input schema the fields below belong to */
    weir_schema *out;  /* the kept columns of `in` */
    uint32_t *idx;     /* input column of each kept column */
    size_t k, idx_cap;
    weir_field *row;   /* one row's kept slices, while rewriting in place */
} drop_state;

/* "a, b, c" into buf, cut short with "…" when it does not fit. */
static const char *drop_columns(const weir_schema *s, char *buf, size_t size)
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

static int drop_check_args(weir_stage *s, const char *const *cols, size_t n)
{
    if (n == 0) return weir_stage_errorf(s, WEIR_ESPEC, "drop() needs at least one column");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cols[i], cols[j]) == 0)
                return weir_stage_errorf(s, WEIR_ESPEC, "column '%s' is dropped twice",
                                         cols[i]);
    return 0;
}

/* The kept columns of `in`: their indices into idx (room for every input
 * column) and, if out is not NULL, a new schema of their names. */
static int drop_derive(weir_stage *s, const weir_schema *in, uint32_t *idx, size_t *k,
                       weir_schema **out)
{
    const char *const *cols;
    size_t n = weir_stage_arg_list(s, "columns", &cols);
    size_t ncols = weir_schema_ncols(in);
    for (size_t i = 0; i < n; i++) {
        if (weir_schema_find(in, cols[i]) < 0) {
            char names[512];
            return weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s' (columns: %s)",
                                     cols[i], drop_columns(in, names, sizeof names));
        }
    }
    if (n >= ncols)
        return weir_stage_errorf(s, WEIR_ESPEC, "drop() would remove every column");
    const char **names = malloc(ncols * sizeof *names);
    if (!names) return WEIR_ENOMEM;
    size_t kept = 0;
    for (size_t c = 0; c < ncols; c++) {
        const char *name = weir_schema_name(in, c);
        bool dropped = false;
        for (size_t i = 0; i < n && !dropped; i++) dropped = strcmp(cols[i], name) == 0;
        if (dropped) continue;
        if (idx) idx[kept] = (uint32_t)c;
        names[kept++] = name;
    }
    int rc = out ? weir_schema_create(out, names, kept) : 0;
    free(names);
    *k = kept;
    return rc;
}

static int drop_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    const char *const *cols;
    size_t n = weir_stage_arg_list(s, "columns", &cols);
    int rc = drop_check_args(s, cols, n);
    if (rc || !in) return rc;
    size_t k;
    return drop_derive(s, in, NULL, &k, out);
}

static int drop_open(weir_stage *s)
{
    drop_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    const char *const *cols;
    size_t n = weir_stage_arg_list(s, "columns", &cols);
    return drop_check_args(s, cols, n);
}

/* Make the state describe batches of schema `in`. */
static int drop_bind(weir_stage *s, drop_state *st, weir_schema *in)
{
    if (in == st->in) return 0;
    if (!in) return weir_stage_errorf(s, WEIR_EINVAL, "input rows have no schema");
    if (!st->in || !weir_schema_equal(in, st->in)) {
        size_t ncols = weir_schema_ncols(in);
        if (ncols > st->idx_cap) {
            uint32_t *idx = realloc(st->idx, ncols * sizeof *idx);
            weir_field *row = realloc(st->row, ncols * sizeof *row);
            if (idx) st->idx = idx;
            if (row) st->row = row;
            if (!idx || !row) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
            st->idx_cap = ncols;
        }
        weir_schema *out;
        int rc = drop_derive(s, in, st->idx, &st->k, &out);
        if (rc) return rc;
        weir_schema_release(st->out);
        st->out = out;
    }
    weir_schema_release(st->in);
    st->in = weir_schema_retain(in);
    return 0;
}

static int drop_copy(weir_stage *s, drop_state *st, const weir_batch *in, weir_batch **out)
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

/* As in select.c: row r's kept slices go to r*k <= r*ncols; only the row
 * being rewritten can be overwritten, and it is read first. */
static void drop_in_place(drop_state *st, weir_batch *b)
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

static int drop_process(weir_stage *s, weir_batch *in)
{
    drop_state *st = weir_stage_state(s);
    int rc = drop_bind(s, st, in->schema);
    if (rc) {
        weir_batch_release(in);
        return rc;
    }
    if (!weir_batch_shared(in)) {
        drop_in_place(st, in);
        return weir_stage_emit(s, in);
    }
    weir_batch *out;
    rc = drop_copy(s, st, in, &out);
    weir_batch_release(in);
    if (rc) return weir_stage_errorf(s, rc, "out of memory copying rows");
    return weir_stage_emit(s, out);
}

static void drop_close(weir_stage *s)
{
    drop_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->in);
    weir_schema_release(st->out);
    free(st->idx);
    free(st->row);
    free(st);
}

const weir_stage_def weir__stage_drop = {
    .abi = WEIR_ABI_VERSION,
    .name = "drop",
    .summary = "remove the named columns; the others keep their order",
    .args = (const weir_arg_def[]){
        {"columns", WEIR_ARG_COLUMNS, NULL,
         "the columns to remove: drop(notes, zone); each at most once; an unknown "
         "column, or removing every column, is an error (before the run starts "
         "when the input's columns are known)"},
        {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .open = drop_open,
    .process = drop_process,
    .close = drop_close,
    .plan = drop_plan,
};
