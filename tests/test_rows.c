/*
 * test_rows.c — the simple rows stages (select, drop, rename, head, sample,
 * discard, count) and the gen() source, driven through specs.
 *
 * Besides the harness's h_rows/h_sink, two test stages defined here:
 *   t_rows(text, chunk=N)  like h_rows, but N rows per batch, so results can
 *                          be compared across batch boundaries; t_rows_np is
 *                          the same without a plan callback (the schema is
 *                          unknown until the first batch);
 *   t_sink(slot=K)         captures rows into slot K as '|'-joined lines,
 *                          with '\n', '|' and '\' in fields escaped as
 *                          \n, \| and \\ — one line per row, even for gen's
 *                          notes — so several sinks in one run (broadcasts)
 *                          do not mix.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define RTEST(name) Test(rows, name, .timeout = 30, .init = slots_reset, .fini = slots_free)

/* ---- t_sink --------------------------------------------------------------------- */

#define NSLOT 4
typedef struct slot {
    char *p;
    size_t len, cap;
    bool header;
} slot;
static slot slots[NSLOT];
static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;

static void slot_put(slot *s, const void *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (s->len + n + 1 > cap) cap *= 2;
        s->p = realloc(s->p, cap);
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void slot_field(slot *s, const unsigned char *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i] == '\n') slot_put(s, "\\n", 2);
        else if (f[i] == '|') slot_put(s, "\\|", 2);
        else if (f[i] == '\\') slot_put(s, "\\\\", 2);
        else slot_put(s, f + i, 1);
    }
}

static void slots_reset(void)
{
    for (int i = 0; i < NSLOT; i++) {
        free(slots[i].p);
        slots[i] = (slot){0};
        slot_put(&slots[i], "", 0);
    }
}

static void slots_free(void)
{
    for (int i = 0; i < NSLOT; i++) {
        free(slots[i].p);
        slots[i] = (slot){0};
    }
}

static int t_sink_process(weir_stage *s, weir_batch *in)
{
    int64_t k = weir_stage_arg_int(s, "slot");
    pthread_mutex_lock(&slots_mu);
    slot *sl = &slots[k];
    if (!sl->header) {
        sl->header = true;
        for (size_t c = 0; c < weir_schema_ncols(in->schema); c++) {
            if (c) slot_put(sl, "|", 1);
            const char *nm = weir_schema_name(in->schema, c);
            slot_field(sl, (const unsigned char *)nm, strlen(nm));
        }
        slot_put(sl, "\n", 1);
    }
    for (uint32_t r = 0; r < in->nrows; r++) {
        for (uint32_t c = 0; c < in->ncols; c++) {
            size_t len;
            const unsigned char *f = weir_batch_field(in, r, c, &len);
            if (c) slot_put(sl, "|", 1);
            slot_field(sl, f, len);
        }
        slot_put(sl, "\n", 1);
    }
    pthread_mutex_unlock(&slots_mu);
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def t_sink_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_sink",
    .summary = "test: capture rows, one escaped line per row, into a slot",
    .args = (const weir_arg_def[]){{"slot", WEIR_ARG_INT, "0", "0..3"}, {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .process = t_sink_process,
};

/* ---- t_rows ---------------------------------------------------------------------- */

typedef struct t_rows_state {
    char *text, *p; /* header split off; p: the next row */
    weir_schema *schema;
    int64_t chunk;
} t_rows_state;

static int t_rows_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    return h_rows_schema(weir_stage_arg_str(s, "text"), out);
}

static int t_rows_open(weir_stage *s)
{
    t_rows_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    st->text = strdup(weir_stage_arg_str(s, "text"));
    st->chunk = weir_stage_arg_int(s, "chunk");
    char *nl = strchr(st->text, '\n');
    st->p = nl ? nl + 1 : st->text + strlen(st->text);
    return h_rows_schema(st->text, &st->schema);
}

static int t_rows_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    t_rows_state *st = weir_stage_state(s);
    if (!*st->p) return WEIR_DONE;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    weir_batch_set_schema(b, st->schema);
    for (int64_t k = 0; rc == 0 && k < st->chunk && *st->p; k++) {
        char *nl = strchr(st->p, '\n');
        if (nl) *nl = '\0';
        for (char *q = st->p, *f; rc == 0 && (f = strsep(&q, "|"));)
            rc = weir_batch_add_field(b, f, strlen(f));
        if (rc == 0) rc = weir_batch_end_row(b);
        st->p = nl ? nl + 1 : st->p + strlen(st->p);
    }
    if (rc) {
        weir_batch_release(b);
        return rc;
    }
    return weir_stage_emit(s, b);
}

static void t_rows_close(weir_stage *s)
{
    t_rows_state *st = weir_stage_state(s);
    if (!st) return;
    weir_schema_release(st->schema);
    free(st->text);
    free(st);
}

#define T_ROWS_ARGS                                                                   \
    (const weir_arg_def[]){{"text", WEIR_ARG_STRING, NULL, "the rows"},               \
                           {"chunk", WEIR_ARG_INT, "1", "rows per batch"},            \
                           {NULL}}

static const weir_stage_def t_rows_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_rows",
    .summary = "test: rows from '|'-separated lines, chunk rows per batch",
    .args = T_ROWS_ARGS,
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = t_rows_open,
    .process = t_rows_process,
    .close = t_rows_close,
    .plan = t_rows_plan,
};

static const weir_stage_def t_rows_np_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_rows_np",
    .summary = "test: t_rows whose schema is unknown before running",
    .args = T_ROWS_ARGS,
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = t_rows_open,
    .process = t_rows_process,
    .close = t_rows_close,
};

/* ---- helpers ------------------------------------------------------------------------ */

static void t_register(void)
{
    static int done;
    if (done) return;
    done = 1;
    weir_stage_register(&t_sink_def);
    weir_stage_register(&t_rows_def);
    weir_stage_register(&t_rows_np_def);
}

/* Run spec with $in = input; every slot starts empty. */
static int run(const char *spec, const char *input, h_result *r)
{
    t_register();
    slots_reset();
    return h_run(spec, input, r);
}

/* Run and expect success with h_sink output `want`. */
static void expect_out(const char *spec, const char *input, const char *want)
{
    h_result r;
    run(spec, input, &r);
    cr_assert_eq(r.rc, 0, "%s: rc %d: %s", spec, r.rc, r.err);
    cr_assert_str_eq(r.out, want, "%s", spec);
    h_free(&r);
}

/* Run and expect a spec error whose message holds every `needles` string. */
static void expect_err(const char *spec, const char *input, int code,
                       const char *const *needles, size_t n)
{
    h_result r;
    run(spec, input, &r);
    cr_assert_eq(r.rc, code, "%s: rc %d (%s), wanted %d", spec, r.rc, r.err, code);
    for (size_t i = 0; i < n; i++)
        cr_assert(strstr(r.err, needles[i]), "%s: message '%s' lacks '%s'", spec, r.err,
                  needles[i]);
    h_free(&r);
}
#define EXPECT_ERR(spec, input, code, ...)                                            \
    do {                                                                              \
        const char *needles_[] = {__VA_ARGS__};                                       \
        expect_err(spec, input, code, needles_, sizeof needles_ / sizeof *needles_);  \
    } while (0)

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* A copy of slot k's text (tests compare runs). */
static char *slot_dup(int k) { return strdup(slots[k].p ? slots[k].p : ""); }

static const char *ABC = "a|b|c\n1|2|3\n4|5|6\n7|8|9\n";

/* n rows "i|k<i%7>|v<i*3>" for i in 0..n-1, header "i|k|v". */
static char *numbered(int n)
{
    size_t cap = 32 + (size_t)n * 40, len = 0;
    char *t = malloc(cap);
    len += (size_t)snprintf(t, cap, "i|k|v\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(t + len, cap - len, "%d|k%d|v%d\n", i, i % 7, i * 3);
    return t;
}

/* ---- select ---------------------------------------------------------------------------- */

RTEST(select_reorders)
{
    expect_out("h_rows(text=$in) | select(c, a) | h_sink()", ABC, "c|a\n3|1\n6|4\n9|7\n");
}

RTEST(select_subset_and_all)
{
    expect_out("h_rows(text=$in) | select(b) | h_sink()", ABC, "b\n2\n5\n8\n");
    expect_out("h_rows(text=$in) | select(a, b, c) | h_sink()", ABC, ABC);
    expect_out("h_rows(text=$in) | select(c, b, a) | h_sink()", ABC,
               "c|b|a\n3|2|1\n6|5|4\n9|8|7\n");
}

RTEST(header_only_input_keeps_its_columns)
{
    expect_out("h_rows(text=$in) | select(c, a) | h_sink()", "a|b|c\n", "c|a\n");
    expect_out("h_rows(text=$in) | drop(b) | h_sink()", "a|b|c\n", "a|c\n");
    expect_out("h_rows(text=$in) | rename(x = b) | h_sink()", "a|b|c\n", "a|x|c\n");
    expect_out("h_rows(text=$in) | head(n=3) | h_sink()", "a|b|c\n", "a|b|c\n");
    expect_out("h_rows(text=$in) | sample(p=0.5) | h_sink()", "a|b|c\n", "a|b|c\n");
}

RTEST(select_quoted_names_and_empty_fields)
{
    expect_out("h_rows(text=$in) | select(`x y`, z) | h_sink()", "z|x y\n|1\n2|\n",
               "x y|z\n1|\n|2\n");
}

RTEST(select_unknown_column_is_a_plan_error)
{
    EXPECT_ERR("h_rows(text=$in) | select(a, nope) | h_sink()", ABC, WEIR_ESPEC,
               "unknown column 'nope'", "<test>:1:", "(columns: a, b, c)", "select");
    cr_assert_eq(slots[0].len, 0);
}

RTEST(select_error_lists_many_columns_cut_short)
{
    /* 120 long names do not fit in the message: the list ends in "…". */
    char in[8192];
    size_t n = 0;
    for (int c = 0; c < 120; c++)
        n += (size_t)snprintf(in + n, sizeof in - n, "%scolumn_number_%03d", c ? "|" : "", c);
    snprintf(in + n, sizeof in - n, "\n");
    EXPECT_ERR("h_rows(text=$in) | select(nope) | h_sink()", in, WEIR_ESPEC,
               "unknown column 'nope' (columns: column_number_000, column_number_001, ",
               "…");
}

RTEST(select_rejects_duplicates_and_nothing)
{
    EXPECT_ERR("h_rows(text=$in) | select(a, b, a) | h_sink()", ABC, WEIR_ESPEC,
               "column 'a' is selected twice", "<test>:1:");
    EXPECT_ERR("h_rows(text=$in) | select() | h_sink()", ABC, WEIR_ESPEC,
               "at least one column");
}

RTEST(select_resolves_at_run_time_when_schema_unknown)
{
    expect_out("t_rows_np(text=$in, chunk=2) | select(c, a) | h_sink()", ABC,
               "c|a\n3|1\n6|4\n9|7\n");
    /* The same error, when the first batch shows the columns. */
    EXPECT_ERR("t_rows_np(text=$in) | select(zz) | h_sink()", ABC, WEIR_ESPEC,
               "unknown column 'zz'", "(columns: a, b, c)", "<test>:1:");
}

RTEST(select_downstream_sees_the_planned_schema)
{
    /* select makes the schema known even when its input's is not: a
     * second select is checked at plan time. */
    EXPECT_ERR("t_rows_np(text=$in) | select(a, b) | select(c) | h_sink()", ABC,
               WEIR_ESPEC, "unknown column 'c'", "(columns: a, b)");
}

RTEST(select_parallel_equals_sequential)
{
    char *in = numbered(5000);
    h_result r;
    run("t_rows(text=$in, chunk=37) | select(v, i, workers=1) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    char *seq = slot_dup(0);
    h_free(&r);
    run("t_rows(text=$in, chunk=37) | select(v, i, workers=3) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_eq(slots[0].p, seq);
    cr_assert_eq(count_lines(seq), 5001);
    cr_assert(strncmp(seq, "v|i\nv0|0\nv3|1\n", 14) == 0);
    h_free(&r);
    free(seq);
    free(in);
}

RTEST(select_drop_rename_on_a_broadcast_leave_the_other_branch_intact)
{
    /* Both consumers get the same batches, shared read-only: each must
     * copy, never rewrite what the other reads. */
    const char *spec = "let t = t_rows(text=$in, chunk=3)\n"
                       "t | select(v, i, workers=1) | t_sink(slot=0)\n"
                       "t | t_sink(slot=1)\n"
                       "t | drop(k, workers=1) | t_sink(slot=2)\n"
                       "t | rename(x = k, workers=1) | head(n=2) | t_sink(slot=3)\n";
    char *in = numbered(200);
    for (int round = 0; round < 5; round++) {
        h_result r;
        run(spec, in, &r);
        cr_assert_eq(r.rc, 0, "%s", r.err);
        cr_assert_str_eq(slots[1].p, in);
        cr_assert(strncmp(slots[0].p, "v|i\nv0|0\nv3|1\n", 14) == 0, "%.40s", slots[0].p);
        cr_assert_eq(count_lines(slots[0].p), 201);
        cr_assert(strstr(slots[0].p, "v597|199\n"));
        cr_assert(strncmp(slots[2].p, "i|v\n0|v0\n1|v3\n", 14) == 0, "%.40s", slots[2].p);
        cr_assert_eq(count_lines(slots[2].p), 201);
        cr_assert_str_eq(slots[3].p, "i|x|v\n0|k0|v0\n1|k1|v3\n");
        h_free(&r);
    }
    free(in);
}

/* ---- drop -------------------------------------------------------------------------------- */

RTEST(drop_removes_and_keeps_order)
{
    expect_out("h_rows(text=$in) | drop(b) | h_sink()", ABC, "a|c\n1|3\n4|6\n7|9\n");
    expect_out("h_rows(text=$in) | drop(c, a) | h_sink()", ABC, "b\n2\n5\n8\n");
    expect_out("t_rows_np(text=$in, chunk=2) | drop(a) | h_sink()", ABC,
               "b|c\n2|3\n5|6\n8|9\n");
}

RTEST(drop_errors)
{
    EXPECT_ERR("h_rows(text=$in) | drop(x) | h_sink()", ABC, WEIR_ESPEC,
               "unknown column 'x'", "(columns: a, b, c)", "<test>:1:");
    EXPECT_ERR("h_rows(text=$in) | drop(a, b, c) | h_sink()", ABC, WEIR_ESPEC,
               "every column");
    EXPECT_ERR("h_rows(text=$in) | drop(b, b) | h_sink()", ABC, WEIR_ESPEC,
               "dropped twice");
    EXPECT_ERR("t_rows_np(text=$in) | drop(x) | h_sink()", ABC, WEIR_ESPEC,
               "unknown column 'x'", "(columns: a, b, c)");
}

RTEST(drop_parallel_equals_sequential)
{
    char *in = numbered(3000);
    h_result r;
    run("t_rows(text=$in, chunk=11) | drop(k, workers=1) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    char *seq = slot_dup(0);
    h_free(&r);
    run("t_rows(text=$in, chunk=11) | drop(k, workers=4) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_eq(slots[0].p, seq);
    cr_assert(strncmp(seq, "i|v\n0|v0\n", 9) == 0);
    h_free(&r);
    free(seq);
    free(in);
}

/* ---- rename ------------------------------------------------------------------------------ */

RTEST(rename_changes_names_only)
{
    expect_out("h_rows(text=$in) | rename(x = a) | h_sink()", ABC,
               "x|b|c\n1|2|3\n4|5|6\n7|8|9\n");
    expect_out("h_rows(text=$in) | rename(x = \"c\", y = b) | h_sink()", ABC,
               "a|y|x\n1|2|3\n4|5|6\n7|8|9\n");
    /* All at once: a swap is fine. */
    expect_out("h_rows(text=$in) | rename(a = b, b = a) | h_sink()", ABC,
               "b|a|c\n1|2|3\n4|5|6\n7|8|9\n");
    expect_out("t_rows_np(text=$in, chunk=2) | rename(z = a) | select(z, c) | h_sink()",
               ABC, "z|c\n1|3\n4|6\n7|9\n");
}

RTEST(rename_errors)
{
    EXPECT_ERR("h_rows(text=$in) | rename(x = nope) | h_sink()", ABC, WEIR_ESPEC,
               "unknown column 'nope'", "(columns: a, b, c)", "<test>:1:");
    EXPECT_ERR("h_rows(text=$in) | rename(b = a) | h_sink()", ABC, WEIR_ESPEC,
               "'b'", "already exists");
    EXPECT_ERR("h_rows(text=$in) | rename(x = a, y = a) | h_sink()", ABC, WEIR_ESPEC,
               "renamed twice");
    EXPECT_ERR("h_rows(text=$in) | rename(x = 1 + 2) | h_sink()", ABC, WEIR_ESPEC,
               "must name a column");
    EXPECT_ERR("h_rows(text=$in) | rename() | h_sink()", ABC, WEIR_ESPEC,
               "at least one");
    EXPECT_ERR("t_rows_np(text=$in) | rename(c = a) | h_sink()", ABC, WEIR_ESPEC,
               "already exists");
}

RTEST(rename_parallel)
{
    char *in = numbered(2000);
    h_result r;
    run("t_rows(text=$in, chunk=13) | rename(key = k, workers=3) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strncmp(slots[0].p, "i|key|v\n0|k0|v0\n", 16) == 0);
    cr_assert_str_eq(slots[0].p + strlen("i|key|v\n"), in + strlen("i|k|v\n"));
    h_free(&r);
    free(in);
}

/* ---- head ---------------------------------------------------------------------------------- */

RTEST(head_less_equal_more)
{
    expect_out("h_rows(text=$in) | head(n=2) | h_sink()", ABC, "a|b|c\n1|2|3\n4|5|6\n");
    expect_out("h_rows(text=$in) | head(n=3) | h_sink()", ABC, ABC);
    expect_out("h_rows(text=$in) | head(n=50) | h_sink()", ABC, ABC);
    expect_out("h_rows(text=$in) | head() | h_sink()", ABC, ABC); /* n=10 */
    /* No rows, but the columns still reach the sink. */
    expect_out("h_rows(text=$in) | head(n=0) | h_sink()", ABC, "a|b|c\n");
    expect_out("t_rows(text=$in, chunk=2) | head(n=0) | h_sink()", ABC, "a|b|c\n");
}

RTEST(head_across_batches)
{
    /* 2 rows per batch: n=3 ends inside the second batch. */
    expect_out("t_rows(text=$in, chunk=2) | head(n=3) | h_sink()", ABC, ABC);
    expect_out("t_rows(text=$in, chunk=2) | head(n=1) | h_sink()", ABC, "a|b|c\n1|2|3\n");
    char *in = numbered(1000);
    h_result r;
    run("t_rows(text=$in, chunk=7) | head(n=500) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(count_lines(slots[0].p), 501);
    cr_assert(strstr(slots[0].p, "\n499|k2|v1497\n"));
    cr_assert_null(strstr(slots[0].p, "\n500|"));
    h_free(&r);
    free(in);
}

RTEST(head_stops_an_endless_gen)
{
    h_result r;
    run("gen(rows=0) | head(n=5) | h_sink()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    char *endless = strdup(r.out);
    h_free(&r);
    run("gen(rows=5) | h_sink()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_eq(endless, r.out);
    h_free(&r);
    run("gen(rows=0) | head(n=5) | t_sink()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(count_lines(slots[0].p), 6); /* header + 5 */
    cr_assert(strncmp(slots[0].p, "id|vendor|", 10) == 0);
    h_free(&r);
    free(endless);
    /* A large n, ending mid-batch of an endless source. */
    run("gen(rows=0) | head(n=10000) | select(id) | t_sink()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(count_lines(slots[0].p), 10001);
    cr_assert(strstr(slots[0].p, "\n10000\n"));
    h_free(&r);
}

RTEST(head_on_a_broadcast_branch)
{
    /* The head branch stops early; the other branch still gets everything. */
    char *in = numbered(300);
    h_result r;
    run("let t = t_rows(text=$in, chunk=4)\nt | head(n=6) | t_sink(slot=0)\nt | t_sink(slot=1)\n",
        in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(count_lines(slots[0].p), 7);
    cr_assert_str_eq(slots[1].p, in);
    h_free(&r);
    free(in);
}

RTEST(head_negative_n)
{
    EXPECT_ERR("h_rows(text=$in) | head(n=-1) | h_sink()", ABC, WEIR_ESPEC, "n must be",
               "<test>:1:");
}

/* ---- sample ---------------------------------------------------------------------------------- */

RTEST(sample_zero_and_one)
{
    /* No rows, but the columns still reach the sink (a header-only CSV). */
    expect_out("h_rows(text=$in) | sample(p=0) | h_sink()", ABC, "a|b|c\n");
    expect_out("t_rows(text=$in, chunk=1) | sample(p=0) | h_sink()", ABC, "a|b|c\n");
    expect_out("h_rows(text=$in) | sample(p=1) | h_sink()", ABC, ABC);
    expect_out("h_rows(text=$in) | sample(1.0, seed=7) | h_sink()", ABC, ABC);
}

RTEST(sample_reproducible_across_runs_and_chunkings)
{
    char *in = numbered(2000);
    char *first = NULL;
    const char *specs[] = {
        "t_rows(text=$in, chunk=1) | sample(p=0.5) | t_sink()",
        "t_rows(text=$in, chunk=7) | sample(p=0.5) | t_sink()",
        "t_rows(text=$in, chunk=2000) | sample(p=0.5, seed=42) | t_sink()",
        "h_rows(text=$in) | sample(p=0.5) | t_sink()",
        "t_rows(text=$in, chunk=7) | sample(p=0.5) | t_sink()",
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        h_result r;
        run(specs[i], in, &r);
        cr_assert_eq(r.rc, 0, "%s", r.err);
        if (!first) first = slot_dup(0);
        else cr_assert_str_eq(slots[0].p, first, "%s", specs[i]);
        h_free(&r);
    }
    size_t n = count_lines(first) - 1;
    cr_assert(n > 850 && n < 1150, "kept %zu of 2000", n);
    /* Another seed picks other rows. */
    h_result r;
    run("t_rows(text=$in, chunk=7) | sample(p=0.5, seed=43) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_neq(slots[0].p, first);
    h_free(&r);
    free(first);
    free(in);
}

RTEST(sample_fraction)
{
    h_result r;
    run("gen(rows=10000) | select(id) | sample(p=0.5) | t_sink()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    size_t n = count_lines(slots[0].p) - 1;
    cr_assert(n >= 4500 && n <= 5500, "kept %zu of 10000", n);
    h_free(&r);
    run("gen(rows=10000) | select(id) | sample(p=0.1, seed=1) | t_sink()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    n = count_lines(slots[0].p) - 1;
    cr_assert(n >= 900 && n <= 1100, "kept %zu of 10000", n);
    /* Ids come out in order. */
    long prev = 0;
    for (const char *p = strchr(slots[0].p, '\n') + 1; *p; p = strchr(p, '\n') + 1) {
        long id = atol(p);
        cr_assert_gt(id, prev);
        prev = id;
    }
    h_free(&r);
}

RTEST(sample_on_a_broadcast)
{
    char *in = numbered(500);
    h_result r;
    run("t_rows(text=$in, chunk=9) | sample(p=0.3) | t_sink()", in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    char *alone = slot_dup(0);
    h_free(&r);
    run("let t = t_rows(text=$in, chunk=9)\nt | sample(p=0.3) | t_sink(slot=0)\n"
        "t | t_sink(slot=1)\n",
        in, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_eq(slots[0].p, alone);
    cr_assert_str_eq(slots[1].p, in);
    h_free(&r);
    free(alone);
    free(in);
}

RTEST(sample_bad_p)
{
    EXPECT_ERR("h_rows(text=$in) | sample(p=1.5) | h_sink()", ABC, WEIR_ESPEC,
               "p must be between 0 and 1", "<test>:1:");
    EXPECT_ERR("h_rows(text=$in) | sample(p=-0.1) | h_sink()", ABC, WEIR_ESPEC,
               "p must be between 0 and 1");
    EXPECT_ERR("h_rows(text=$in) | sample() | h_sink()", ABC, WEIR_ESPEC, "'p'");
}

/* ---- discard and count ----------------------------------------------------------------------- */

RTEST(discard_takes_rows_and_bytes)
{
    h_result r;
    run("gen(rows=10000) | discard()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    h_free(&r);
    run("h_src(text=$in, chunk=3) | discard()", "some bytes\n", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    h_free(&r);
}

/* Run spec with fd 1 sent to a temporary file; returns what was printed. */
static char *run_stdout(const char *spec, const char *input, int *rc)
{
    char path[] = "/tmp/weir_test_rows_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    h_result r;
    *rc = run(spec, input, &r);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    h_free(&r);
    off_t n = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)n + 1);
    cr_assert_eq(pread(fd, out, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return out;
}

RTEST(count_prints_one_line)
{
    int rc;
    char *out = run_stdout("gen(rows=12345) | count()", "", &rc);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(out, "12345\n");
    free(out);
    out = run_stdout("h_rows(text=$in) | count()", ABC, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(out, "3\n");
    free(out);
    out = run_stdout("gen(rows=0) | head(n=777) | count()", "", &rc);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(out, "777\n");
    free(out);
    out = run_stdout("h_rows(text=$in) | sample(p=0) | count()", ABC, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(out, "0\n");
    free(out);
}

RTEST(count_prints_nothing_when_the_run_fails)
{
    int rc;
    char *out = run_stdout("t_rows_np(text=$in) | select(zz) | count()", ABC, &rc);
    cr_assert_eq(rc, WEIR_ESPEC);
    cr_assert_str_eq(out, "");
    free(out);
}

/* ---- gen ------------------------------------------------------------------------------------- */

static char *gen_text(const char *spec)
{
    h_result r;
    run(spec, "", &r);
    cr_assert_eq(r.rc, 0, "%s: %s", spec, r.err);
    h_free(&r);
    return slot_dup(0);
}

RTEST(gen_columns)
{
    char *t = gen_text("gen(rows=1) | t_sink()");
    const char *want = "id|vendor|pickup_at|dropoff_at|passenger_count|distance|fare|tip|"
                       "payment|zone|notes\n1|";
    cr_assert(strncmp(t, want, strlen(want)) == 0, "%s", t);
    cr_assert_eq(count_lines(t), 2);
    free(t);
}

RTEST(gen_is_deterministic)
{
    char *a = gen_text("gen(rows=9000, seed=5) | t_sink()");
    char *b = gen_text("gen(kind=\"trips\", rows=9000, seed=5) | t_sink()");
    char *c = gen_text("gen(rows=9000, seed=6) | t_sink()");
    char *d = gen_text("gen(rows=5000, seed=5) | t_sink()");
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    /* rows=5000 is a prefix of rows=9000 (across the 4096-row batch edge). */
    cr_assert(strncmp(a, d, strlen(d)) == 0);
    cr_assert_eq(count_lines(a), 9001);
    cr_assert_eq(count_lines(d), 5001);
    free(a);
    free(b);
    free(c);
    free(d);
    /* The default seed is fixed. */
    a = gen_text("gen(rows=100) | t_sink()");
    b = gen_text("gen(rows=100, seed=42) | t_sink()");
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
}

/* Split an escaped t_sink line into its fields (in place); @return count. */
static int split_fields(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n <= max; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (*p == '|') {
            *p = '\0';
            if (n < max) f[n] = p + 1;
            n++;
        }
    }
    return n;
}

RTEST(gen_values_are_plausible)
{
    char *t = gen_text("gen(rows=10000) | t_sink()");
    int newline_notes = 0, notes = 0, comma_zones = 0, quote_zones = 0, cash = 0, card = 0,
        card_tipped = 0;
    char prev_pickup[32] = "";
    long id = 0;
    char *save = NULL;
    strtok_r(t, "\n", &save); /* header */
    for (char *line; (line = strtok_r(NULL, "\n", &save));) {
        char *f[12];
        cr_assert_eq(split_fields(line, f, 12), 11, "row %ld", id + 1);
        cr_assert_eq(atol(f[0]), ++id);
        cr_assert(!strcmp(f[1], "VTS") || !strcmp(f[1], "CMT") || !strcmp(f[1], "DDS") ||
                  !strcmp(f[1], "MYC"), "%s", f[1]);
        cr_assert_eq(strlen(f[2]), 19);
        cr_assert_eq(strlen(f[3]), 19);
        cr_assert(strncmp(f[2], "2024-03-", 8) == 0, "%s", f[2]);
        cr_assert_geq(strcmp(f[2], prev_pickup), 0, "pickups in order");
        cr_assert_gt(strcmp(f[3], f[2]), 0, "dropoff after pickup");
        snprintf(prev_pickup, sizeof prev_pickup, "%s", f[2]);
        int pc = atoi(f[4]);
        cr_assert(pc >= 1 && pc <= 6);
        double dist = atof(f[5]), fare = atof(f[6]), tip = atof(f[7]);
        cr_assert(dist >= 0.30 && dist <= 30.0, "%s", f[5]);
        cr_assert(strchr(f[5], '.') && strlen(strchr(f[5], '.')) == 3, "%s", f[5]);
        cr_assert(fare >= 3.0, "%s", f[6]);
        cr_assert(strlen(strchr(f[6], '.')) == 3 && strlen(strchr(f[7], '.')) == 3);
        if (!strcmp(f[8], "cash")) {
            cash++;
            cr_assert_eq(tip, 0.0);
        } else if (!strcmp(f[8], "card")) {
            card++;
            if (tip > 0) {
                card_tipped++;
                /* 15-25%, rounded to the cent */
                cr_assert(tip >= fare * 0.15 - 0.0051 && tip <= fare * 0.25 + 0.0051,
                          "%s of %s", f[7], f[6]);
            }
        } else {
            cr_assert(!strcmp(f[8], "dispute") || !strcmp(f[8], "no_charge"), "%s", f[8]);
            cr_assert_eq(tip, 0.0);
        }
        comma_zones += strchr(f[9], ',') != NULL;
        quote_zones += strchr(f[9], '"') != NULL;
        notes += f[10][0] != '\0';
        newline_notes += strstr(f[10], "\\n") != NULL;
    }
    cr_assert_eq(id, 10000);
    cr_assert(newline_notes >= 50 && newline_notes <= 200, "%d notes with a newline",
              newline_notes);
    cr_assert(notes >= 800 && notes <= 1200, "%d notes", notes);
    cr_assert_gt(comma_zones, 100);
    cr_assert_gt(quote_zones, 10);
    cr_assert(card > 6500 && card < 7500, "%d card", card);
    cr_assert(cash > 2200 && cash < 2800, "%d cash", cash);
    cr_assert(card_tipped > card * 3 / 4 - 300 && card_tipped < card * 3 / 4 + 500);
    free(t);
}

RTEST(gen_errors)
{
    EXPECT_ERR("gen(kind=\"planes\") | h_sink()", "", WEIR_ESPEC, "unknown kind 'planes'",
               "trips", "<test>:1:");
    EXPECT_ERR("gen(rows=-3) | h_sink()", "", WEIR_ESPEC, "rows must be");
}

RTEST(gen_feeds_parallel_stages_in_order)
{
    char *seq = gen_text("gen(rows=20000, seed=3) | select(zone, id, workers=1) | t_sink()");
    char *par = gen_text("gen(rows=20000, seed=3) | select(zone, id, workers=4) | t_sink()");
    cr_assert_str_eq(seq, par);
    free(par);
    par = gen_text("gen(rows=20000, seed=3) | drop(notes, workers=3) | "
                   "rename(where = zone, workers=2) | select(where, id) | t_sink()");
    cr_assert_str_eq(strchr(seq, '\n'), strchr(par, '\n'));
    cr_assert(strncmp(par, "where|id\n", 9) == 0);
    free(par);
    free(seq);
}

RTEST(gen_matches_the_committed_sample)
{
    /* datasets/sample/trips-1k.csv is documented as the output of
     * `weir gen trips --rows 1000 --seed 42`: a changed generator must
     * change the sample (and its checksum in datasets/README.md) too. */
    FILE *f = fopen("datasets/sample/trips-1k.csv", "rb");
    if (!f) cr_skip_test("run from the repository root to compare with the sample");
    char *want = malloc(1 << 20);
    size_t n = fread(want, 1, (1 << 20) - 1, f);
    fclose(f);
    want[n] = '\0';
    h_result r;
    run("gen(kind=\"trips\", rows=1000, seed=42) | to_csv() | h_sink()", "", &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, want, n) == 0, "generated CSV differs from the sample");
    h_free(&r);
    free(want);
}
