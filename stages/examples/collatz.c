/*
 * collatz.c — a weir plugin with two stages, used from a spec like the
 * built-in ones:
 *
 *   numbers(count)       source: rows with one column, n = 1..count
 *   collatz(col, as)     append the length of the Collatz sequence of the
 *                        number in column col, as a new column `as`;
 *                        parallel-safe (workers=N)
 *
 * Build it against the installed weir.h alone. Do NOT link libweir: the
 * program that loads the plugin (the weir command) provides the weir_
 * functions, so there is one stage registry and one runtime.
 *
 *   cc -shared -fPIC $(pkg-config --cflags weir) -o collatz.so collatz.c
 *   weir run plugin.weir                      # load("./collatz.so") inside
 *   weir --plugin ./collatz.so stages collatz
 *   weir --plugin ./collatz.so run -e 'numbers(count=10) | collatz(n)'
 *
 * demo.c has the same collatz stage inside a program; this one adds what a
 * spec needs: an argument table (`weir stages collatz` is generated from
 * it) and a plan() callback, so that `weir check` and `weir explain` know
 * the output columns and an unknown column is an error before anything
 * runs.
 */
#include <weir.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows per batch from the source: a few thousand keeps the per-batch costs
 * (a channel hop, a wake-up) small next to the work on the rows. */
#define NUMBERS_BATCH_ROWS 4096

/* ---- numbers(count): the source ------------------------------------------ */

typedef struct numbers_state {
    uint64_t next, last;
    weir_schema *schema;
} numbers_state;

static int numbers_schema(weir_schema **out)
{
    const char *cols[] = {"n"};
    return weir_schema_create(out, cols, 1);
}

static int numbers_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    int64_t count = weir_stage_arg_int(s, "count");
    if (count < 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "count must be 0 or more, not %" PRId64,
                                 count);
    int rc = numbers_schema(out);
    return rc ? weir_stage_errorf(s, rc, "out of memory") : 0;
}

static int numbers_open(weir_stage *s)
{
    numbers_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st); /* close() frees it, whatever happens next */
    st->next = 1;
    st->last = (uint64_t)weir_stage_arg_int(s, "count");
    int rc = numbers_schema(&st->schema);
    return rc ? weir_stage_errorf(s, rc, "out of memory") : 0;
}

/* A source's process() is called again and again until it says WEIR_DONE. */
static int numbers_process(weir_stage *s, weir_batch *in)
{
    (void)in; /* NULL for a source */
    numbers_state *st = weir_stage_state(s);
    if (st->next > st->last) return WEIR_DONE;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc == 0) rc = weir_batch_set_schema(b, st->schema);
    char text[24];
    for (int i = 0; rc == 0 && i < NUMBERS_BATCH_ROWS && st->next <= st->last; i++) {
        int len = snprintf(text, sizeof text, "%" PRIu64, st->next++);
        rc = weir_batch_add_field(b, text, (size_t)len);
        if (rc == 0) rc = weir_batch_end_row(b);
    }
    if (rc) {
        weir_batch_release(b); /* NULL-safe */
        return weir_stage_errorf(s, rc, "out of memory");
    }
    /* emit takes the batch whatever it returns; pass its result on:
     * WEIR_DONE when downstream wants no more (a head()), or a cancel. */
    return weir_stage_emit(s, b);
}

static void numbers_close(weir_stage *s)
{
    numbers_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->schema);
    free(st);
}

static const weir_stage_def numbers_stage = {
    .abi = WEIR_ABI_VERSION,
    .name = "numbers",
    .summary = "rows with one column n = 1..count (a collatz.so plugin stage)",
    .args = (const weir_arg_def[]){
        {"count", WEIR_ARG_INT, "1000", "how many numbers"},
        {NULL},
    },
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = numbers_open,
    .process = numbers_process,
    .close = numbers_close,
    .plan = numbers_plan,
};

/* ---- collatz(col, as): a parallel transform -------------------------------- */

/* Per replica: each replica runs on its own thread with its own state. */
typedef struct collatz_state {
    weir_schema *in;        /* the input schema the fields below are for */
    weir_schema *out;       /* the input's columns, then `as` */
    int col;                /* index of col in the input */
} collatz_state;

/* Steps to reach 1, or -1 when n is not a positive integer or the sequence
 * would overflow. */
static int64_t collatz_steps(const unsigned char *p, size_t len)
{
    weir_value v;
    if (!weir_value_parse(p, len, &v) || !v.is_int || v.i < 1) return -1;
    uint64_t n = (uint64_t)v.i;
    int64_t steps = 0;
    while (n > 1) {
        if (n & 1) {
            if (n > (UINT64_MAX - 1) / 3) return -1;
            n = 3 * n + 1;
        } else {
            n /= 2;
        }
        steps++;
    }
    return steps;
}

/* Resolve col in `in` and make the output schema. Used at plan time and
 * when a batch brings a schema the state was not made for. */
static int collatz_schema(weir_stage *s, const weir_schema *in, int *col,
                          weir_schema **out)
{
    const char *name = weir_stage_arg_str(s, "col");
    const char *as = weir_stage_arg_str(s, "as");
    *col = weir_schema_find(in, name);
    if (*col < 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "unknown column '%s'", name);
    if (weir_schema_find(in, as) >= 0)
        return weir_stage_errorf(s, WEIR_ESPEC, "column '%s' exists already: "
                                 "choose another name with as=", as);
    size_t n = weir_schema_ncols(in);
    const char **names = malloc((n + 1) * sizeof *names);
    if (!names) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) names[i] = weir_schema_name(in, i);
    names[n] = as;
    int rc = weir_schema_create(out, names, n + 1);
    free(names);
    return rc ? weir_stage_errorf(s, rc, "out of memory") : 0;
}

/* Before the run: say what the output looks like. `in` is NULL when the
 * input's columns are not known yet (stdin); then process() checks them
 * when the first batch comes. */
static int collatz_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    int col;
    return in ? collatz_schema(s, in, &col, out) : 0;
}

static int collatz_open(weir_stage *s)
{
    collatz_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    return 0;
}

static int collatz_process(weir_stage *s, weir_batch *in)
{
    collatz_state *st = weir_stage_state(s);
    int rc = 0;
    if (in->schema != st->in) {
        /* A new stream (the first batch, or another input file): the
         * schema is shared by all its batches, so this runs rarely. */
        weir_schema_release(st->out);
        weir_schema_release(st->in);
        st->out = NULL;
        st->in = NULL;
        if (!in->schema) rc = weir_stage_errorf(s, WEIR_EDATA, "rows without columns");
        else rc = collatz_schema(s, in->schema, &st->col, &st->out);
        if (rc) {
            weir_batch_release(in);
            return rc;
        }
        st->in = weir_schema_retain(in->schema); /* so the pointer stays its own */
    }
    weir_batch *out;
    if ((rc = weir_stage_batch(s, &out))) {
        weir_batch_release(in);
        return weir_stage_errorf(s, rc, "out of memory");
    }
    rc = weir_batch_set_schema(out, st->out);
    char text[24];
    for (uint32_t r = 0; rc == 0 && r < in->nrows; r++) {
        for (uint32_t c = 0; rc == 0 && c < in->ncols; c++) {
            size_t len;
            const unsigned char *f = weir_batch_field(in, r, c, &len);
            rc = weir_batch_add_field(out, f, len);
        }
        size_t len;
        const unsigned char *f = weir_batch_field(in, r, (uint32_t)st->col, &len);
        int64_t steps = collatz_steps(f, len);
        /* Not a positive integer: an empty field, which the expression
         * engine reads as null — the same rule as arithmetic on text. */
        int k = steps < 0 ? 0 : snprintf(text, sizeof text, "%" PRId64, steps);
        if (rc == 0) rc = weir_batch_add_field(out, text, (size_t)k);
        if (rc == 0) rc = weir_batch_end_row(out);
    }
    /* Keep the provenance, so errors further down can name the input. */
    out->seq = in->seq;
    out->origin = in->origin;
    out->offset = in->offset;
    out->line = in->line;
    weir_batch_release(in);
    if (rc) {
        weir_batch_release(out);
        return weir_stage_errorf(s, rc, "out of memory");
    }
    return weir_stage_emit(s, out);
}

static void collatz_close(weir_stage *s)
{
    collatz_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->out);
    weir_schema_release(st->in);
    free(st);
}

static const weir_stage_def collatz_stage = {
    .abi = WEIR_ABI_VERSION,
    .name = "collatz",
    .summary = "append the Collatz sequence length of a column (a collatz.so plugin "
               "stage)",
    .args = (const weir_arg_def[]){
        {"col", WEIR_ARG_STRING, "n", "the column holding positive integers"},
        {"as", WEIR_ARG_STRING, "steps", "the name of the new column (empty where "
                                         "col is not a positive integer)"},
        {NULL},
    },
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .open = collatz_open,
    .process = collatz_process,
    .close = collatz_close,
    .plan = collatz_plan,
};

/* ---- the plugin's entry point --------------------------------------------------- */

/* Runs once, when the plugin is loaded: make the stages known by name. */
static int collatz_init(void)
{
    int rc = weir_stage_register(&numbers_stage);
    return rc ? rc : weir_stage_register(&collatz_stage);
}

WEIR_PLUGIN(collatz_init)
