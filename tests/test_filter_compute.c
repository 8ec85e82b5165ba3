/*
 * test_filter_compute.c — filter() and compute() driven through specs, with
 * the harness's h_rows/h_sink and two local test stages:
 *
 *   t_rows(text, per, known)  rows source like h_rows, but in batches of
 *                             `per` rows, with provenance (origin
 *                             "mem.txt", line, offset); known=false hides
 *                             the schema from plan (as stdin would); a
 *                             header alone gives one empty batch
 *   t_prov()                  sink that records each non-empty batch's
 *                             provenance
 */
#include <criterion/criterion.h>

#include "harness.h"

#include <stdint.h>

/* ---- t_rows ------------------------------------------------------------------------------- */

typedef struct t_rows_state {
    char *text, *p;
    weir_schema *schema;
    uint64_t line;
    bool sent;
} t_rows_state;

static int t_rows_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    if (!weir_stage_arg_bool(s, "known")) return 0;
    return h_rows_schema(weir_stage_arg_str(s, "text"), out);
}

static int t_rows_open(weir_stage *s)
{
    t_rows_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    st->text = strdup(weir_stage_arg_str(s, "text"));
    char *nl = strchr(st->text, '\n');
    st->p = nl ? nl + 1 : st->text + strlen(st->text);
    st->line = 2;
    return h_rows_schema(st->text, &st->schema);
}

static int t_rows_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    t_rows_state *st = weir_stage_state(s);
    if (!*st->p && st->sent) return WEIR_DONE;
    st->sent = true; /* with no rows, one empty batch brings the columns */
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    weir_batch_set_schema(b, st->schema);
    b->origin = "mem.txt";
    b->offset = (uint64_t)(st->p - st->text);
    b->line = st->line;
    int64_t per = weir_stage_arg_int(s, "per");
    for (int64_t k = 0; k < per && *st->p && rc == 0; k++, st->line++) {
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

static const weir_stage_def t_rows_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_rows",
    .summary = "test: rows from '|'-separated lines, in batches",
    .args = (const weir_arg_def[]){{"text", WEIR_ARG_STRING, NULL, "the rows"},
                                   {"per", WEIR_ARG_INT, "100", "rows per batch"},
                                   {"known", WEIR_ARG_BOOL, "true", "schema known at plan"},
                                   {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = t_rows_open,
    .process = t_rows_process,
    .close = t_rows_close,
    .plan = t_rows_plan,
};

/* ---- t_prov ------------------------------------------------------------------------------- */

typedef struct prov {
    const char *origin;
    uint64_t line, offset;
    uint32_t nrows;
} prov;
static prov provs[256];
static size_t nprovs;

static int t_prov_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    /* Schema-only empty batches may or may not get through a merge,
     * depending on timing: only batches with rows count. */
    if (in->nrows && nprovs < 256)
        provs[nprovs++] = (prov){in->origin, in->line, in->offset, in->nrows};
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def t_prov_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_prov",
    .summary = "test: record each batch's provenance",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .process = t_prov_process,
};

static void t_register(void)
{
    weir_stage_register(&t_rows_def);
    weir_stage_register(&t_prov_def);
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* Run spec on input; assert success; @return the captured output (static). */
static const char *run_ok(const char *spec, const char *input)
{
    static char *last;
    t_register();
    h_result r;
    h_run(spec, input, &r);
    cr_assert_eq(r.rc, 0, "%s: rc %d: %s", spec, r.rc, r.err);
    free(last);
    last = r.out;
    return last;
}

/* Run spec on input; assert it fails with code; @return the message (static). */
static const char *run_err(const char *spec, const char *input, int code)
{
    static h_result r;
    t_register();
    h_run(spec, input, &r);
    cr_assert_eq(r.rc, code, "%s: rc %d (%s), want %d", spec, r.rc, r.err, code);
    h_free(&r);
    return r.err;
}

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of text, sorted, joined again (merge interleaves freely). */
static char *sorted_lines(const char *text)
{
    char *copy = strdup(text), *lines[4096];
    size_t n = 0;
    for (char *p = copy, *l; (l = strsep(&p, "\n"));)
        if (*l) lines[n++] = l;
    qsort(lines, n, sizeof *lines, cmp_lines);
    char *out = malloc(strlen(text) + 2);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) strcat(strcat(out, lines[i]), "\n");
    free(copy);
    return out;
}

static const char *trips = "id|fare|payment\n1|60|card\n2|40|card\n3|70|cash\n4||card\n5|abc|card";

/* ---- filter ----------------------------------------------------------------------------------- */

Test(filter, keeps_true_rows, .timeout = 30)
{
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(fare > 50 && payment == \"card\") | h_sink()",
                            trips),
                     "id|fare|payment\n1|60|card\n");
    /* Empty and non-numeric fares are null: they fail both ways. */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(fare <= 50) | h_sink()", trips),
                     "id|fare|payment\n2|40|card\n");
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(!(fare > 50)) | h_sink()", trips),
                     "id|fare|payment\n2|40|card\n4||card\n5|abc|card\n");
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(fare == \"\" || payment != \"card\") | h_sink()",
                            trips),
                     "id|fare|payment\n3|70|cash\n4||card\n");
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(expr = starts_with(payment, \"ca\") && "
                            "id % 2 == 1) | h_sink()", trips),
                     "id|fare|payment\n1|60|card\n3|70|cash\n5|abc|card\n");
}

Test(filter, truth_of_values, .timeout = 30)
{
    const char *in = "k|flag\na|1\nb|0\nc|\nd|x\ne|true\nf|0.0";
    /* A field is text: non-empty text is true, even "0". */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(flag) | h_sink()", in),
                     "k|flag\na|1\nb|0\nd|x\ne|true\nf|0.0\n");
    /* As a number: 0 is false, and text that is not a number is null. */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(flag * 1) | h_sink()", in),
                     "k|flag\na|1\n");
    /* A bool against text compares with the text "true"/"false". */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(flag == true) | h_sink()", in),
                     "k|flag\ne|true\n");
    /* No row passes: the columns still go on (a CSV keeps its header). */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(false) | h_sink()", in), "k|flag\n");
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(1) | h_sink()", in),
                     "k|flag\na|1\nb|0\nc|\nd|x\ne|true\nf|0.0\n");
}

Test(filter, unknown_column_at_plan, .timeout = 30)
{
    /* col 40 is where 'paymnt' starts in the spec text. */
    const char *err = run_err("h_rows(text=$in) | filter(fare > 50 && paymnt == \"card\") | h_sink()",
                              trips, WEIR_ESPEC);
    cr_assert(strstr(err, "<test>:1:40: unknown column 'paymnt' (did you mean 'payment'?)"),
              "%s", err);
    cr_assert(strstr(err, "stage 'filter'"), "%s", err);
    err = run_err("h_rows(text=$in)\n  | filter(lowr(payment) == \"card\") | h_sink()", trips,
                  WEIR_ESPEC);
    cr_assert(strstr(err, "<test>:2:12: unknown function 'lowr' (did you mean 'lower'?)"),
              "%s", err);
    err = run_err("h_rows(text=$in) | filter(substr(payment)) | h_sink()", trips, WEIR_ESPEC);
    cr_assert(strstr(err, "<test>:1:27: substr() takes 2 to 3 arguments, not 1"), "%s", err);
}

Test(filter, unknown_schema_until_run, .timeout = 30)
{
    /* With no schema at plan, functions are still checked there… */
    const char *err = run_err("t_rows(text=$in, known=false) | filter(lowr(payment) == \"x\") "
                              "| h_sink()", trips, WEIR_ESPEC);
    cr_assert(strstr(err, "unknown function 'lowr'"), "%s", err);
    /* …and columns when the first batch brings the schema. */
    err = run_err("t_rows(text=$in, known=false) | filter(paymnt == \"card\") | h_sink()", trips,
                  WEIR_ESPEC);
    cr_assert(strstr(err, "<test>:1:40: unknown column 'paymnt' (did you mean 'payment'?)"),
              "%s", err);
    cr_assert_str_eq(run_ok("t_rows(text=$in, known=false, per=2) | filter(fare > 50) | h_sink()",
                            trips),
                     "id|fare|payment\n1|60|card\n3|70|cash\n");
}

Test(filter, shared_batches_are_copied, .timeout = 30)
{
    /* A stream with two consumers is a broadcast: both filters get the
     * same batches, shared and read-only. */
    const char *spec =
        "let t = h_rows(text=$in)\n"
        "let even = t | filter(id % 2 == 0)\n"
        "let odd = t | filter(id % 2 == 1 && fare > 0)\n"
        "merge(even, odd) | h_sink()\n";
    char *got = sorted_lines(run_ok(spec, trips));
    cr_assert_str_eq(got, "1|60|card\n2|40|card\n3|70|cash\n4||card\nid|fare|payment\n");
    free(got);
    /* Every row kept, and none kept, from shared batches. */
    spec = "let t = t_rows(text=$in, per=2)\n"
           "let all = t | filter(true)\n"
           "let none = t | filter(false)\n"
           "merge(all, none) | h_sink()\n";
    got = sorted_lines(run_ok(spec, trips));
    cr_assert_str_eq(got, "1|60|card\n2|40|card\n3|70|cash\n4||card\n5|abc|card\nid|fare|payment\n");
    free(got);
}

Test(filter, provenance_kept, .timeout = 30)
{
    nprovs = 0;
    run_ok("t_rows(text=$in, per=2) | filter(id != 3, workers=1) | t_prov()", trips);
    cr_assert_eq(nprovs, 3);
    uint32_t want_rows[] = {2, 1, 1};
    uint64_t want_line[] = {2, 4, 6};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_str_eq(provs[i].origin, "mem.txt");
        cr_assert_eq(provs[i].nrows, want_rows[i], "batch %zu", i);
        cr_assert_eq(provs[i].line, want_line[i], "batch %zu", i);
    }
    cr_assert_eq(provs[1].offset, strlen("id|fare|payment\n1|60|card\n2|40|card\n"));
    /* Through the copying path too. */
    nprovs = 0;
    run_ok("let t = t_rows(text=$in, per=2)\n"
           "let a = t | filter(id != 3)\n"
           "let b = t | filter(false)\n"
           "merge(a, b) | t_prov()", trips);
    cr_assert_eq(nprovs, 3);
    for (size_t i = 0; i < 3; i++) cr_assert_str_eq(provs[i].origin, "mem.txt");
}

Test(filter, header_only_input, .timeout = 30)
{
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(fare > 1) | h_sink()", "id|fare"),
                     "id|fare\n");
    cr_assert_str_eq(run_ok("t_rows(text=$in, known=false) | filter(fare > 1, workers=2) "
                            "| h_sink()", "id|fare"),
                     "id|fare\n");
    /* Columns are checked when the header comes, even without rows. */
    const char *err = run_err("t_rows(text=$in, known=false) | filter(fair > 1) | h_sink()",
                              "id|fare", WEIR_ESPEC);
    cr_assert(strstr(err, "<test>:1:40: unknown column 'fair'"), "%s", err);
    /* Shared, with no row kept: the columns still go on. */
    cr_assert_str_eq(run_ok("let t = t_rows(text=$in, per=2)\n"
                            "let a = t | filter(false)\n"
                            "let b = t | filter(id > 100)\n"
                            "merge(a, b) | h_sink()", trips),
                     "id|fare|payment\n");
}

/* ---- compute ---------------------------------------------------------------------------------- */

Test(compute, adds_and_replaces, .timeout = 30)
{
    const char *in = "id|fare|tip\n1|5|1.5\n2|10|\n3|x|2";
    /* total is new (appended); fare is replaced in place; big sees both. */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | compute(total = fare + tip, fare = fare * 2, "
                            "big = total > 10) | h_sink()", in),
                     "id|fare|tip|total|big\n"
                     "1|10|1.5|6.5|false\n"
                     "2|20|||false\n"
                     "3||2||false\n");
    /* Sequential: each definition sees the ones before it. */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | compute(a = id * 10, b = a + 1, id = b * 2) "
                            "| h_sink()", "id\n1\n2"),
                     "id|a|b\n22|10|11\n42|20|21\n");
}

Test(compute, sequential_definitions, .timeout = 30)
{
    const char *in = "id|name\n1|Ada\n2|bob";
    cr_assert_str_eq(run_ok("h_rows(text=$in) | compute(a = id * 10, b = a + 1, "
                            "name = upper(name), first = substr(name, 0, 1)) | h_sink()", in),
                     "id|name|a|b|first\n1|ADA|10|11|A\n2|BOB|20|21|B\n");
    /* A definition cannot see a later one. */
    const char *err = run_err("h_rows(text=$in) | compute(b = a + 1, a = id) | h_sink()", in,
                              WEIR_ESPEC);
    cr_assert(strstr(err, "<test>:1:32: unknown column 'a'"), "%s", err);
    /* A name given twice is refused when the spec is compiled. */
    err = run_err("h_rows(text=$in) | compute(a = 1, a = 2) | h_sink()", in, WEIR_ESPEC);
    cr_assert(strstr(err, "given twice"), "%s", err);
}

Test(compute, value_formats, .timeout = 30)
{
    const char *in = "x|s\n7|Hello\n|\n2.5|a,b";
    cr_assert_str_eq(run_ok("h_rows(text=$in) | compute(half = x / 2, sq = x * x, ok = x > 3, "
                            "t = concat(s, \"!\"), n = len(s), c = coalesce(x, \"none\"), "
                            "r = round(x / 3, 2), k = \"lit\", z = 0.1 + 0.2) | h_sink()", in),
                     "x|s|half|sq|ok|t|n|c|r|k|z\n"
                     "7|Hello|3.5|49|true|Hello!|5|7|2.33|lit|0.30000000000000004\n"
                     "||||false|!|0|none||lit|0.30000000000000004\n"
                     "2.5|a,b|1.25|6.25|false|a,b!|3|2.5|0.83|lit|0.30000000000000004\n");
    /* Columns and slices of them are referenced; replacing a column by a
     * slice of itself or copying it keeps the right bytes. */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | compute(s = substr(s, 1), copy = s, x = s) "
                            "| h_sink()", in),
                     "x|s|copy\nello|ello|ello\n||\n,b|,b|,b\n");
}

Test(compute, plan_gives_schema_downstream, .timeout = 30)
{
    cr_assert_str_eq(run_ok("h_rows(text=$in) | compute(double = fare * 2) | "
                            "filter(double > 100) | h_sink()", trips),
                     "id|fare|payment|double\n1|60|card|120\n3|70|cash|140\n");
    const char *err = run_err("h_rows(text=$in) | compute(double = fare * 2) | filter(dbl > 1) "
                              "| h_sink()", trips, WEIR_ESPEC);
    cr_assert(strstr(err, "stage 'filter'"), "%s", err);
    cr_assert(strstr(err, "unknown column 'dbl'"), "%s", err);
    /* Unknown input schema: functions checked at plan, columns at run. */
    err = run_err("t_rows(text=$in, known=false) | compute(a = lowerr(fare)) | h_sink()", trips,
                  WEIR_ESPEC);
    cr_assert(strstr(err, "unknown function 'lowerr' (did you mean 'lower'?)"), "%s", err);
    err = run_err("t_rows(text=$in, known=false) | compute(a = fre) | h_sink()", trips,
                  WEIR_ESPEC);
    cr_assert(strstr(err, "<test>:1:45: unknown column 'fre' (did you mean 'fare'?)"), "%s", err);
    cr_assert_str_eq(run_ok("t_rows(text=$in, known=false, per=2) | compute(p = fare + 1) "
                            "| filter(p > 50) | h_sink()", trips),
                     "id|fare|payment|p\n1|60|card|61\n3|70|cash|71\n");
    /* compute needs at least one definition. */
    err = run_err("h_rows(text=$in) | compute() | h_sink()", trips, WEIR_ESPEC);
    cr_assert(strstr(err, "compute() needs at least one name = expression"), "%s", err);
}

Test(compute, header_only_input, .timeout = 30)
{
    /* The columns downstream are the output's, even with no rows. */
    cr_assert_str_eq(run_ok("h_rows(text=$in) | compute(x = 1, id = 2) | h_sink()", "id|fare"),
                     "id|fare|x\n");
    cr_assert_str_eq(run_ok("t_rows(text=$in, known=false) | compute(x = 1) | h_sink()",
                            "id|fare"),
                     "id|fare|x\n");
    const char *err = run_err("t_rows(text=$in, known=false) | compute(x = fair) | h_sink()",
                              "id|fare", WEIR_ESPEC);
    cr_assert(strstr(err, "unknown column 'fair'"), "%s", err);
    cr_assert_str_eq(run_ok("h_rows(text=$in) | filter(false) | compute(x = 1) | h_sink()",
                            trips),
                     "id|fare|payment|x\n");
}

Test(compute, shared_input, .timeout = 30)
{
    const char *spec = "let t = t_rows(text=$in, per=2)\n"
                       "let a = t | compute(id = id * 100)\n"
                       "let b = t | filter(id == 2)\n"
                       "merge(a, b) | h_sink()\n";
    char *got = sorted_lines(run_ok(spec, trips));
    cr_assert_str_eq(got, "100|60|card\n200|40|card\n2|40|card\n300|70|cash\n400||card\n"
                          "500|abc|card\nid|fare|payment\n");
    free(got);
}

/* ---- parallel = sequential --------------------------------------------------------------------- */

static char *big_input(int n)
{
    size_t cap = (size_t)n * 48 + 64, len = 0;
    char *t = malloc(cap);
    len += (size_t)sprintf(t, "id|v|name|note");
    for (int i = 0; i < n; i++) {
        /* Some empty and non-numeric values, some long text. */
        const char *v = i % 11 == 0 ? "" : i % 13 == 0 ? "n/a" : NULL;
        char vbuf[32];
        if (!v) {
            snprintf(vbuf, sizeof vbuf, "%d.%d", (i * 7919) % 1000, i % 10);
            v = vbuf;
        }
        len += (size_t)sprintf(t + len, "\n%d|%s|%s|%s", i, v, i % 5 ? "Card" : "cash",
                               i % 17 ? "x" : "a longer note, with a comma");
    }
    return t;
}

Test(parallel, filter_workers_equal_sequential, .timeout = 30)
{
    char *in = big_input(10000);
    char spec[512];
    char *outs[3];
    int workers[] = {1, 2, 4};
    for (int w = 0; w < 3; w++) {
        snprintf(spec, sizeof spec,
                 "t_rows(text=$in, per=97) | filter(v > 300 && lower(name) == \"card\" || "
                 "v == \"\", workers=%d) | h_sink()", workers[w]);
        outs[w] = strdup(run_ok(spec, in));
    }
    /* The expected rows, computed here. */
    size_t n = 0, kept = 0;
    for (char *p = strchr(outs[0], '\n'); p && p[1]; p = strchr(p + 1, '\n')) n++;
    for (int i = 0; i < 10000; i++) {
        bool empty = i % 11 == 0, na = !empty && i % 13 == 0;
        double v = (i * 7919) % 1000 + (i % 10) / 10.0;
        if (empty || (!na && v > 300 && i % 5)) kept++;
    }
    cr_assert_eq(n, kept);
    cr_assert_str_eq(outs[1], outs[0]);
    cr_assert_str_eq(outs[2], outs[0]);
    for (int w = 0; w < 3; w++) free(outs[w]);
    free(in);
}

Test(parallel, compute_workers_equal_sequential, .timeout = 30)
{
    char *in = big_input(10000);
    char spec[512];
    char *outs[2];
    for (int w = 0; w < 2; w++) {
        snprintf(spec, sizeof spec,
                 "t_rows(text=$in, per=50) | compute(w = v * 3 / 7, name = upper(name), "
                 "tag = concat(id, \":\", coalesce(v, \"-\")), workers=%d) | h_sink()", w + 1);
        outs[w] = strdup(run_ok(spec, in));
    }
    cr_assert_str_eq(outs[1], outs[0]);
    cr_assert(strstr(outs[0], "\n22||CARD|x||22:-\n"), "row 22");
    cr_assert(strstr(outs[0], "\n26|n/a|CARD|x||26:n/a\n"), "row 26");
    cr_assert(strstr(outs[0], "\n1|919.1|CARD|x|393.90000000000003|1:919.1\n"), "row 1");
    for (int w = 0; w < 2; w++) free(outs[w]);
    free(in);
}
