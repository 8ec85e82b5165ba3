/*
 * test_stateful.c — the stages that hold state: sort (in memory, spilled,
 * merged in passes), group (new aggregates, workers, spilling), dedup and
 * split (escaping, temporaries, reopening), driven through specs with the
 * harness's stages and two local ones:
 *
 *   t_probe(dir, prefix, stop)  rows pass through; at the first batch with
 *                               rows it counts the files in `dir` whose
 *                               names start with `prefix` (a stage's spill
 *                               files, while it merges) into t_seen; with
 *                               stop="fail" it then fails the run, with
 *                               stop="cancel" it cancels t_ctx
 *   t_order(cols…)               rows pass through; checks that they come
 *                               sorted by sort()'s order on `cols` with
 *                               ties in ascending "id" (input order), and
 *                               counts violations into t_bad
 */
#include <criterion/criterion.h>

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <omp.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* ---- t_probe ----------------------------------------------------------------------------- */

static int t_seen = -1;
static weir_ctx *t_ctx;

static int t_count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static int t_probe_process(weir_stage *s, weir_batch *in)
{
    int *done = weir_stage_state(s);
    if (in->nrows && !*done) {
        *done = 1;
        t_seen = t_count_files(weir_stage_arg_str(s, "dir"), weir_stage_arg_str(s, "prefix"));
        const char *stop = weir_stage_arg_str(s, "stop");
        if (strcmp(stop, "fail") == 0) {
            weir_batch_release(in);
            return weir_stage_errorf(s, WEIR_EDATA, "probe: failing on purpose");
        }
        if (strcmp(stop, "cancel") == 0) weir_ctx_cancel(t_ctx, WEIR_ECANCELED);
    }
    return weir_stage_emit(s, in);
}

static int t_probe_open(weir_stage *s)
{
    int *done = calloc(1, sizeof *done);
    weir_stage_set_state(s, done);
    return done ? 0 : WEIR_ENOMEM;
}

static void t_free_state(weir_stage *s) { free(weir_stage_state(s)); }

static const weir_stage_def t_probe_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_probe",
    .summary = "test: count spill files at the first output batch",
    .args = (const weir_arg_def[]){{"dir", WEIR_ARG_STRING, NULL, "directory"},
                                   {"prefix", WEIR_ARG_STRING, "weir-", "name prefix"},
                                   {"stop", WEIR_ARG_STRING, "", "\"fail\" or \"cancel\""},
                                   {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = t_probe_open,
    .process = t_probe_process,
    .close = t_free_state,
};

/* ---- t_order ------------------------------------------------------------------------------ */

static long t_bad, t_checked;

typedef struct t_order_state {
    char **prev; /* previous row's key values */
    size_t *prevlen;
    long prev_id;
    bool have;
} t_order_state;

/* sort()'s documented order, written out independently of sort.c:
 * numbers (by value) before text (by bytes). Values that are exact in a
 * double are all the test uses. */
static int t_val_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    weir_value va, vb;
    bool na = weir_value_parse(a, la, &va), nb = weir_value_parse(b, lb, &vb);
    if (na && nb) return (va.num > vb.num) - (va.num < vb.num);
    if (na != nb) return na ? -1 : 1;
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int t_order_process(weir_stage *s, weir_batch *in)
{
    t_order_state *st = weir_stage_state(s);
    const char *const *cols;
    size_t nk = weir_stage_arg_list(s, "columns", &cols);
    if (!st->prev) {
        st->prev = calloc(nk, sizeof *st->prev);
        st->prevlen = calloc(nk, sizeof *st->prevlen);
    }
    int idc = weir_schema_find(in->schema, "id");
    for (uint32_t r = 0; r < in->nrows; r++) {
        size_t l;
        const unsigned char *f = weir_batch_field(in, r, (uint32_t)idc, &l);
        char idb[32];
        snprintf(idb, sizeof idb, "%.*s", (int)l, f); /* fields are not NUL-terminated */
        long id = strtol(idb, NULL, 10);
        int c = 0;
        for (size_t k = 0; k < nk && st->have && c == 0; k++) {
            int col = weir_schema_find(in->schema, cols[k]);
            const unsigned char *v = weir_batch_field(in, r, (uint32_t)col, &l);
            c = t_val_cmp(st->prev[k], st->prevlen[k], (const char *)v, l);
        }
        if (st->have && (c > 0 || (c == 0 && st->prev_id >= id))) t_bad++;
        for (size_t k = 0; k < nk; k++) {
            int col = weir_schema_find(in->schema, cols[k]);
            const unsigned char *v = weir_batch_field(in, r, (uint32_t)col, &l);
            free(st->prev[k]);
            st->prev[k] = strndup((const char *)v, l);
            st->prevlen[k] = l;
        }
        st->prev_id = id;
        st->have = true;
        t_checked++;
    }
    return weir_stage_emit(s, in);
}

static int t_order_open(weir_stage *s)
{
    t_order_state *st = calloc(1, sizeof *st);
    weir_stage_set_state(s, st);
    return st ? 0 : WEIR_ENOMEM;
}

static void t_order_close(weir_stage *s)
{
    t_order_state *st = weir_stage_state(s);
    if (!st) return;
    const char *const *cols;
    size_t nk = weir_stage_arg_list(s, "columns", &cols);
    for (size_t k = 0; st->prev && k < nk; k++) free(st->prev[k]);
    free(st->prev);
    free(st->prevlen);
    free(st);
}

static const weir_stage_def t_order_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "t_order",
    .summary = "test: check rows come in sort()'s order",
    .args = (const weir_arg_def[]){{"columns", WEIR_ARG_COLUMNS, NULL, "keys"}, {NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .open = t_order_open,
    .process = t_order_process,
    .close = t_order_close,
};

/* ---- running ------------------------------------------------------------------------------ */

static void t_register(void)
{
    static int done;
    if (done) return;
    done = 1;
    h_register();
    weir_stage_register(&t_probe_def);
    weir_stage_register(&t_order_def);
}

/* Like h_runv, with run options (mem budget, spill directory) and a
 * context (t_ctx, which t_probe can cancel). */
static int t_run(const char *spec, const char *input, size_t mem, const char *tmpdir,
                 h_result *r)
{
    t_register();
    memset(r, 0, sizeof *r);
    h_len = 0;
    h_header_done = 0;
    char *var = malloc(strlen(input ? input : "") + 4);
    sprintf(var, "in=%s", input ? input : "");
    const char *vars[] = {var};
    weir_spec_opts o = {.vars = vars, .nvars = 1};
    weir_graph *g;
    r->rc = weir_spec_compile(&g, spec, strlen(spec), "<test>", &o, r->err, sizeof r->err);
    if (r->rc == 0) {
        /* Short channels: a stage that emits more than a few batches is
         * still working when the first reaches the end (t_probe relies on
         * it). */
        weir_run_opts ro = {.mem_budget = mem, .tmpdir = tmpdir, .chan_capacity = 2};
        cr_assert_eq(weir_ctx_create(&t_ctx, NULL), 0);
        r->rc = weir_graph_run(g, t_ctx, &ro);
        if (r->rc) snprintf(r->err, sizeof r->err, "%s", weir_graph_errmsg(g));
        weir_graph_destroy(g);
        weir_ctx_destroy(t_ctx);
        t_ctx = NULL;
    }
    free(var);
    r->out = malloc(h_len + 1);
    memcpy(r->out, h_buf ? h_buf : "", h_len);
    r->out[h_len] = '\0';
    r->len = h_len;
    return r->rc;
}

/* Run; assert success; @return the output (the caller frees). */
static char *ok(const char *spec, const char *input)
{
    h_result r;
    t_run(spec, input, 0, NULL, &r);
    cr_assert_eq(r.rc, 0, "%s: rc %d: %s", spec, r.rc, r.err);
    return r.out;
}

static void expect(const char *spec, const char *input, const char *want)
{
    char *got = ok(spec, input);
    cr_assert_str_eq(got, want, "%s:\n--- got\n%s--- want\n%s", spec, got, want);
    free(got);
}

/* Run; assert it fails with code and a message holding `part`. */
static void fails(const char *spec, const char *input, int code, const char *part)
{
    h_result r;
    t_run(spec, input, 0, NULL, &r);
    cr_assert_eq(r.rc, code, "%s: rc %d (%s), want %d", spec, r.rc, r.err, code);
    cr_assert(strstr(r.err, part), "%s: message '%s' lacks '%s'", spec, r.err, part);
    h_free(&r);
}

static char *t_mkdtemp(void)
{
    char *d = strdup("/tmp/weir-test-stateful-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static int t_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void t_rmtree(char *dir)
{
    nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* Every path under dir (relative, sorted, one per line; directories end
 * in '/'). */
static char t_tree_buf[1 << 16];
static size_t t_tree_len;
static size_t t_tree_root;

static int t_tree_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (strlen(p) <= t_tree_root) return 0;
    t_tree_len += (size_t)snprintf(t_tree_buf + t_tree_len, sizeof t_tree_buf - t_tree_len,
                                   "%s%s\n", p + t_tree_root + 1, flag == FTW_D ? "/" : "");
    return 0;
}

static int t_line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *t_tree(const char *dir)
{
    t_tree_len = 0;
    t_tree_root = strlen(dir);
    t_tree_buf[0] = '\0';
    nftw(dir, t_tree_one, 16, FTW_PHYS);
    char *lines[4096];
    size_t n = 0;
    for (char *p = t_tree_buf, *l; n < 4096 && (l = strsep(&p, "\n"));)
        if (*l) lines[n++] = l;
    qsort(lines, n, sizeof *lines, t_line_cmp);
    char *out = calloc(1, 1 << 16);
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
    }
    return out;
}

static char *t_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(1 << 22);
    size_t n = fread(buf, 1, (1 << 22) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* ---- sort ----------------------------------------------------------------------------------- */

#define KEYS_IN                                                                               \
    "k|i\nb|1\n10|2\n|3\n9|4\n1.0|5\n1|6\n-0|7\n0|8\n-1e3|9\na|10\n01|11\n9007199254740993|12\n" \
    "9007199254740992.5|13\nB|14\n|15\n1e2|16"

Test(sort, numbers_before_text_stable, .timeout = 30)
{
    /* Numbers by value (integers exactly, 1.0 = 1 = 01 keep input order),
     * then text by bytes with the empty value first. */
    expect("h_rows(text=$in) | sort(by=k) | h_sink()", KEYS_IN,
           "k|i\n-1e3|9\n-0|7\n0|8\n1.0|5\n1|6\n01|11\n9|4\n10|2\n1e2|16\n"
           "9007199254740992.5|13\n9007199254740993|12\n|3\n|15\nB|14\na|10\nb|1\n");
}

Test(sort, desc_reverses_ties_keep_order, .timeout = 30)
{
    expect("h_rows(text=$in) | sort(by=k, desc=true) | h_sink()", KEYS_IN,
           "k|i\nb|1\na|10\nB|14\n|3\n|15\n9007199254740993|12\n9007199254740992.5|13\n"
           "1e2|16\n10|2\n9|4\n1.0|5\n1|6\n01|11\n-0|7\n0|8\n-1e3|9\n");
}

Test(sort, several_keys_desc_list, .timeout = 30)
{
    const char *in = "a|b|n\nx|2|1\ny|1|2\nx|10|3\ny|1|4\nx|2|5\n|3|6";
    expect("h_rows(text=$in) | sort(by=[a, b], desc=[false, true]) | h_sink()", in,
           "a|b|n\n|3|6\nx|10|3\nx|2|1\nx|2|5\ny|1|2\ny|1|4\n");
    expect("h_rows(text=$in) | sort(by=[b, a], desc=[true, true]) | h_sink()", in,
           "a|b|n\nx|10|3\n|3|6\nx|2|1\nx|2|5\ny|1|2\ny|1|4\n");
    expect("h_rows(text=$in) | sort(by=[b], desc=\"true\") | h_sink()", in,
           "a|b|n\nx|10|3\n|3|6\nx|2|1\nx|2|5\ny|1|2\ny|1|4\n");
}

Test(sort, long_text_and_nul_free_prefixes, .timeout = 30)
{
    /* Texts longer than the 8-byte prefix, and texts equal in their first
     * 8 bytes, settle on the full bytes. */
    expect("h_rows(text=$in) | sort(by=k) | h_sink()",
           "k|n\nabcdefghZ|1\nabcdefgh|2\nabcdefghA|3\nabcdefg|4\nabcdefghA|5\nabcdefgh|6",
           "k|n\nabcdefg|4\nabcdefgh|2\nabcdefgh|6\nabcdefghA|3\nabcdefghA|5\nabcdefghZ|1\n");
}

Test(sort, empty_input_keeps_columns, .timeout = 30)
{
    expect("h_src(text=$in) | csv() | sort(by=b) | h_sink()", "a,b\n", "a|b\n");
}

Test(sort, plan_errors, .timeout = 30)
{
    fails("h_rows(text=$in) | sort(by=z) | h_sink()", "a|b\n1|2", WEIR_ESPEC,
          "unknown column 'z'");
    fails("h_rows(text=$in) | sort(by=[a, b], desc=[true]) | h_sink()", "a|b\n1|2", WEIR_ESPEC,
          "desc must be true, false, or a list of them");
    fails("h_rows(text=$in) | sort(by=a, desc=3) | h_sink()", "a|b\n1|2", WEIR_ESPEC,
          "desc must be");
    fails("h_rows(text=$in) | sort(by=a, workers=2) | h_sink()", "a|b\n1|2", WEIR_ESPEC,
          "");
}

/* Big enough for the parallel in-memory sort (>= 65536 rows); checked
 * row by row against the documented order, then compared with the
 * external sort of the same rows (runs of a few hundred rows, merged in
 * passes since there are more than 64 of them). */
Test(sort, parallel_memory_and_external_agree, .timeout = 60)
{
    const char *spec = "gen(rows=150000) | select(id, payment, fare, zone) | "
                       "sort(by=[payment, fare, zone]) | t_order(payment, fare, zone) | h_sink()";
    t_bad = t_checked = 0;
    char *mem = ok(spec, "");
    cr_assert_eq(t_checked, 150000);
    cr_assert_eq(t_bad, 0, "%ld rows out of order", t_bad);
    char *dir = t_mkdtemp();
    h_result r;
    t_bad = t_checked = 0;
    t_run("gen(rows=150000) | select(id, payment, fare, zone) | "
          "sort(by=[payment, fare, zone], mem=\"64K\") | t_order(payment, fare, zone) | "
          "h_sink()",
          "", 0, dir, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_eq(t_bad, 0);
    cr_assert_eq(r.len, strlen(mem));
    cr_assert(memcmp(r.out, mem, r.len) == 0, "external sort differs from in-memory sort");
    cr_assert_eq(t_count_files(dir, ""), 0, "spill files left behind");
    h_free(&r);
    free(mem);
    t_rmtree(dir);
}

/* Three and five threads: merge trees with an odd chunk out, and group
 * of output batches that do not divide the rows. The runtime's workers
 * take the calling thread's OpenMP settings. */
Test(sort, odd_thread_counts_agree, .timeout = 60)
{
    const char *spec = "gen(rows=140000) | select(id, passenger_count, fare) | "
                       "sort(by=[passenger_count, fare], desc=[true, false]) | h_sink()";
    char *dir = t_mkdtemp();
    h_result r;
    t_run(spec, "", 256 << 10, dir, &r); /* external: the reference */
    cr_assert_eq(r.rc, 0, "%s", r.err);
    for (int t = 1; t <= 5; t += 2) {
        omp_set_num_threads(t);
        char *mem = ok(spec, "");
        cr_assert_str_eq(mem, r.out, "%d threads", t);
        free(mem);
    }
    omp_set_num_threads(omp_get_num_procs());
    h_free(&r);
    t_rmtree(dir);
}

Test(sort, desc_many_rows_agree, .timeout = 60)
{
    const char *a = "gen(rows=80000) | select(id, fare, tip) | sort(by=[tip, fare], desc=[true, "
                    "false]) | h_sink()";
    char *mem = ok(a, "");
    char *dir = t_mkdtemp();
    h_result r;
    t_run(a, "", 100 << 10, dir, &r); /* --mem 100K */
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_str_eq(r.out, mem);
    cr_assert_eq(t_count_files(dir, ""), 0);
    h_free(&r);
    free(mem);
    t_rmtree(dir);
}

Test(sort, spill_files_exist_while_merging_and_go_after, .timeout = 60)
{
    char *dir = t_mkdtemp();
    char spec[512];
    snprintf(spec, sizeof spec,
             "gen(rows=20000) | select(id, fare) | sort(by=fare, mem=\"32K\") | "
             "t_probe(dir=\"%s\", prefix=\"weir-sort-\") | h_sink()",
             dir);
    h_result r;
    t_seen = -1;
    t_run(spec, "", 0, dir, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_gt(t_seen, 0, "no spill file while merging");
    cr_assert_eq(t_count_files(dir, ""), 0, "spill files left after success");
    h_free(&r);
    t_rmtree(dir);
}

Test(sort, spill_files_go_after_failure_and_cancel, .timeout = 60)
{
    char *dir = t_mkdtemp();
    const char *stops[] = {"fail", "cancel"};
    int codes[] = {WEIR_EDATA, WEIR_ECANCELED};
    for (int i = 0; i < 2; i++) {
        char spec[512];
        snprintf(spec, sizeof spec,
                 "gen(rows=20000) | select(id, fare) | sort(by=fare, mem=\"32K\") | "
                 "t_probe(dir=\"%s\", prefix=\"weir-sort-\", stop=\"%s\") | h_sink()",
                 dir, stops[i]);
        h_result r;
        t_seen = -1;
        t_run(spec, "", 0, dir, &r);
        cr_assert_eq(r.rc, codes[i], "%s: rc %d %s", stops[i], r.rc, r.err);
        cr_assert_gt(t_seen, 0);
        cr_assert_eq(t_count_files(dir, ""), 0, "%s: spill files left", stops[i]);
        h_free(&r);
    }
    /* An upstream failure after the sort has spilled (a ragged last row). */
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text + n, cap - n, "a,b\n");
    for (int i = 0; i < 20000; i++) n += (size_t)snprintf(text + n, cap - n, "%d,x%d\n", i % 97, i);
    snprintf(text + n, cap - n, "1,2,3\n");
    h_result r;
    t_run("h_src(text=$in, chunk=4096) | csv() | sort(by=a, mem=\"16K\") | h_sink()", text, 0,
          dir, &r);
    cr_assert_eq(r.rc, WEIR_EDATA, "%s", r.err);
    cr_assert_eq(t_count_files(dir, ""), 0, "spill files left after an upstream failure");
    h_free(&r);
    free(text);
    t_rmtree(dir);
}

/* ---- group ---------------------------------------------------------------------------------- */

static const char *group_in = "k|v|w\n"
                              "x|1|b\n"
                              "y|2|\n"
                              "x|3|a\n"
                              "z||\n"
                              "y|abc|c\n"
                              "x|4.5|b\n"
                              "x|1|\n";

Test(group, distinct_first_last, .timeout = 30)
{
    expect("h_rows(text=$in) | group(by=k, n=count(), d=count_distinct(v), dw=count_distinct(w), "
           "f=first(w), l=last(w), fv=first(v), lv=last(v), workers=1) | h_sink()",
           group_in,
           "k|n|d|dw|f|l|fv|lv\n"
           "x|4|3|2|b|b|1|1\n"
           "y|2|2|1|c|c|2|abc\n"
           "z|1|0|0||||\n");
}

Test(group, key_order_numbers_first_total, .timeout = 30)
{
    /* Equal numbers written differently are different keys, ordered by
     * their bytes; then text, the empty value first. */
    expect("h_rows(text=$in) | group(by=k, n=count()) | h_sink()",
           "k\n10\n9\nb\n1.0\n\n1\n-2\n01\nB\n1\n1e1",
           "k|n\n-2|1\n01|1\n1|2\n1.0|1\n9|1\n10|1\n1e1|1\n|1\nB|1\nb|1\n");
}

Test(group, unsorted_first_seen_with_one_worker, .timeout = 30)
{
    expect("h_rows(text=$in) | group(by=k, sort=false, n=count(), workers=1) | h_sink()",
           group_in, "k|n\nx|4\ny|2\nz|1\n");
}

Test(group, empty_input_keeps_columns, .timeout = 30)
{
    expect("h_src(text=$in) | csv() | group(by=a, n=count(), workers=1) | h_sink()", "a,b\n",
           "a|n\n");
    expect("h_src(text=$in) | csv() | group(by=a, n=count(), workers=3) | h_sink()", "a,b\n",
           "a|n\n");
}

Test(group, aggregate_errors, .timeout = 30)
{
    fails("h_rows(text=$in) | group(by=k, f=first()) | h_sink()", group_in, WEIR_ESPEC,
          "first() takes one column");
    fails("h_rows(text=$in) | group(by=k, f=median(v)) | h_sink()", group_in, WEIR_ESPEC,
          "count_distinct(col)");
}

static const char *group_big =
    "gen(rows=60000) | compute(k=id % 1009) | group(by=[k, payment], n=count(), "
    "nv=count(notes), d=count_distinct(zone), dp=count_distinct(passenger_count), s=sum(fare), "
    "m=mean(tip), lo=min(fare), hi=max(distance), f=first(zone), l=last(notes)";

Test(group, workers_give_identical_bytes, .timeout = 60)
{
    char spec[1024];
    snprintf(spec, sizeof spec, "%s, workers=1) | h_sink()", group_big);
    char *one = ok(spec, "");
    cr_assert_gt(strlen(one), 100000);
    for (int w = 2; w <= 4; w++) {
        snprintf(spec, sizeof spec, "%s, workers=%d) | h_sink()", group_big, w);
        char *many = ok(spec, "");
        cr_assert_str_eq(many, one, "workers=%d differs from workers=1", w);
        free(many);
    }
    free(one);
}

Test(group, spilled_equals_in_memory, .timeout = 60)
{
    char spec[1024];
    snprintf(spec, sizeof spec, "%s, workers=1) | h_sink()", group_big);
    char *mem = ok(spec, "");
    char *dir = t_mkdtemp();
    /* 48K per replica: dozens of runs, so the merge goes in passes. */
    for (int w = 1; w <= 3; w += 2) {
        snprintf(spec, sizeof spec, "%s, workers=%d, mem=\"%dK\") | h_sink()", group_big, w,
                 48 * w);
        h_result r;
        t_run(spec, "", 0, dir, &r);
        cr_assert_eq(r.rc, 0, "%s", r.err);
        cr_assert_str_eq(r.out, mem, "workers=%d: spilled output differs", w);
        cr_assert_eq(t_count_files(dir, ""), 0, "spill files left");
        h_free(&r);
    }
    free(mem);
    t_rmtree(dir);
}

Test(group, exact_sums_survive_spilling, .timeout = 60)
{
    /* 3000 rows of 0.1 per key: exactly 300 each, spilled or not. */
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text + n, cap - n, "k,v\n");
    for (int i = 0; i < 30000; i++)
        n += (size_t)snprintf(text + n, cap - n, "%d,%s\n", i % 10, i % 3 ? "0.1" : "0.10");
    char *dir = t_mkdtemp();
    h_result r;
    t_run("h_src(text=$in) | csv() | group(by=k, s=sum(v), m=mean(v), mem=\"2K\", workers=1) | "
          "h_sink()",
          text, 0, dir, &r);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    char want[512] = "k|s|m\n";
    for (int k = 0; k < 10; k++) sprintf(want + strlen(want), "%d|300|0.1\n", k);
    cr_assert_str_eq(r.out, want);
    h_free(&r);
    free(text);
    t_rmtree(dir);
}

Test(group, unsorted_past_budget_is_an_error, .timeout = 60)
{
    fails("gen(rows=50000) | group(by=id, sort=false, n=count(), mem=\"64K\", workers=1) | "
          "h_sink()",
          "", WEIR_ELIMIT, "more than 64K of groups (");
    fails("gen(rows=50000) | group(by=id, sort=false, n=count(), mem=\"64K\", workers=2) | "
          "h_sink()",
          "", WEIR_ELIMIT, "more than 32K of groups (");
}

/* 40 000 groups: ten output batches, so the merge is still on (and its
 * run files there) when the first reaches t_probe. */
Test(group, spill_files_exist_while_merging_and_go_after, .timeout = 60)
{
    char *dir = t_mkdtemp();
    const char *stops[] = {"", "fail", "cancel"};
    int codes[] = {0, WEIR_EDATA, WEIR_ECANCELED};
    for (int i = 0; i < 3; i++) {
        char spec[1024];
        snprintf(spec, sizeof spec,
                 "gen(rows=40000) | group(by=id, n=count(), s=sum(fare), d=count_distinct(zone), "
                 "f=first(zone), workers=1, mem=\"64K\") | t_probe(dir=\"%s\", "
                 "prefix=\"weir-group-\", stop=\"%s\") | h_sink()",
                 dir, stops[i]);
        h_result r;
        t_seen = -1;
        t_run(spec, "", 0, dir, &r);
        cr_assert_eq(r.rc, codes[i], "stop='%s': rc %d %s", stops[i], r.rc, r.err);
        cr_assert_gt(t_seen, 0, "stop='%s': no spill file while merging", stops[i]);
        cr_assert_eq(t_count_files(dir, ""), 0, "stop='%s': spill files left", stops[i]);
        h_free(&r);
    }
    t_rmtree(dir);
}

/* ---- dedup -------------------------------------------------------------------------------- */

Test(dedup, first_of_each_key_in_order, .timeout = 30)
{
    const char *in = "a|b\nx|1\ny|1\nx|1\nx|2\n|1\ny|1\n|1\nx|1.0";
    expect("h_rows(text=$in) | dedup() | h_sink()", in, "a|b\nx|1\ny|1\nx|2\n|1\nx|1.0\n");
    expect("h_rows(text=$in) | dedup(a) | h_sink()", in, "a|b\nx|1\ny|1\n|1\n");
    expect("h_rows(text=$in) | dedup(b, a) | h_sink()", in,
           "a|b\nx|1\ny|1\nx|2\n|1\nx|1.0\n");
    expect("h_rows(text=$in) | dedup(b) | h_sink()", in, "a|b\nx|1\nx|2\nx|1.0\n");
}

Test(dedup, shared_batches_are_copied, .timeout = 30)
{
    /* A broadcast shares each batch: dedup must not compact it in place. */
    expect("let t = h_rows(text=$in)\nt | dedup(a) | h_sink()\nt | discard()",
           "a|b\nx|1\ny|2\nx|3", "a|b\nx|1\ny|2\n");
}

Test(dedup, matches_an_independent_first_seen_filter, .timeout = 60)
{
    char *all = ok("gen(rows=30000) | select(payment, passenger_count, vendor) | h_sink()", "");
    char *got = ok("gen(rows=30000) | select(payment, passenger_count, vendor) | "
                   "dedup(vendor, payment) | h_sink()",
                   "");
    /* First line of each (vendor, payment), by string search. */
    size_t cap = strlen(all) + 1, n = 0;
    char *want = calloc(cap, 1);
    char **seen = calloc(30001, sizeof *seen);
    size_t nseen = 0;
    char *copy = strdup(all);
    char *p = copy, *line = strsep(&p, "\n");
    n += (size_t)sprintf(want, "%s\n", line);
    while ((line = strsep(&p, "\n")) && *line) {
        char key[256], pay[128], pc[32], ven[64];
        sscanf(line, "%127[^|]|%31[^|]|%63s", pay, pc, ven);
        snprintf(key, sizeof key, "%s|%s", ven, pay);
        size_t i = 0;
        while (i < nseen && strcmp(seen[i], key)) i++;
        if (i < nseen) continue;
        seen[nseen++] = strdup(key);
        n += (size_t)sprintf(want + n, "%s\n", line);
    }
    cr_assert_str_eq(got, want);
    cr_assert_gt(nseen, 3);
    for (size_t i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
    free(copy);
    free(want);
    free(all);
    free(got);
}

Test(dedup, past_budget_is_an_error, .timeout = 60)
{
    fails("gen(rows=50000) | dedup(id, mem=\"256K\") | h_sink()", "", WEIR_ELIMIT,
          "more than 256K of keys (");
    fails("h_rows(text=$in) | dedup(z) | h_sink()", "a\n1", WEIR_ESPEC, "unknown column 'z'");
}

/* ---- split ---------------------------------------------------------------------------------- */

Test(split, one_csv_per_key_with_header, .timeout = 30)
{
    char *dir = t_mkdtemp();
    char spec[512];
    snprintf(spec, sizeof spec, "h_rows(text=$in) | split(\"%s/{p}/part-{q}.csv\")", dir);
    char *o = ok(spec, "p|q|v\ncard|1|a\ncash|1|b\ncard|2|c\ncard|1|d,e\ncash|1|\"q\"");
    free(o);
    char *tree = t_tree(dir);
    cr_assert_str_eq(tree, "card/\ncard/part-1.csv\ncard/part-2.csv\ncash/\ncash/part-1.csv\n");
    free(tree);
    char path[512];
    snprintf(path, sizeof path, "%s/card/part-1.csv", dir);
    char *txt = t_slurp(path, NULL);
    cr_assert_str_eq(txt, "p,q,v\ncard,1,a\ncard,1,\"d,e\"\n");
    free(txt);
    snprintf(path, sizeof path, "%s/cash/part-1.csv", dir);
    txt = t_slurp(path, NULL);
    cr_assert_str_eq(txt, "p,q,v\ncash,1,b\ncash,1,\"\"\"q\"\"\"\n");
    free(txt);
    t_rmtree(dir);
}

Test(split, values_cannot_leave_the_directory, .timeout = 30)
{
    char *dir = t_mkdtemp();
    char out[512], spec[768];
    snprintf(out, sizeof out, "%s/out", dir);
    mkdir(out, 0777);
    snprintf(spec, sizeof spec, "h_rows(text=$in) | split(\"%s/{k}/f.csv\", by=k)", out);
    char *o = ok(spec, "k|n\n../x|1\n/etc/passwd|2\na/b|3\n..|4\n.|5\n|6\n\001ctl|7\n"
                       "back\\slash|8\n.hidden|9\n%41|10\nA|11\nsp ace|12\nnl\tx|13\n~|14\n"
                       "\xc3\xa9|15\nok.v-1_2|16");
    free(o);
    char *tree = t_tree(out);
    cr_assert_str_eq(tree, "%01ctl/\n%01ctl/f.csv\n"
                           "%2541/\n%2541/f.csv\n"
                           "%2E.%2Fx/\n%2E.%2Fx/f.csv\n"
                           "%2E./\n%2E./f.csv\n"
                           "%2E/\n%2E/f.csv\n"
                           "%2Ehidden/\n%2Ehidden/f.csv\n"
                           "%2Fetc%2Fpasswd/\n%2Fetc%2Fpasswd/f.csv\n"
                           "%7E/\n%7E/f.csv\n"
                           "%C3%A9/\n%C3%A9/f.csv\n"
                           "%empty/\n%empty/f.csv\n"
                           "A/\nA/f.csv\n"
                           "a%2Fb/\na%2Fb/f.csv\n"
                           "back%5Cslash/\nback%5Cslash/f.csv\n"
                           "nl%09x/\nnl%09x/f.csv\n"
                           "ok.v-1_2/\nok.v-1_2/f.csv\n"
                           "sp%20ace/\nsp%20ace/f.csv\n");
    free(tree);
    /* Nothing beside out/ */
    tree = t_tree(dir);
    cr_assert(strncmp(tree, "out/\n", 5) == 0);
    free(tree);
    char path[1024];
    snprintf(path, sizeof path, "%s/%%2E./f.csv", out);
    char *txt = t_slurp(path, NULL);
    cr_assert_str_eq(txt, "k,n\n..,4\n");
    free(txt);
    t_rmtree(dir);
}

Test(split, jsonl_zst_reopened_files_are_complete, .timeout = 30)
{
    /* max_open=1 with alternating keys: every row closes one file and
     * reopens the other, each time appending a new zstd frame. */
    char *dir = t_mkdtemp();
    char spec[512];
    snprintf(spec, sizeof spec,
             "h_rows(text=$in) | split(\"%s/{k}.jsonl.zst\", max_open=1)", dir);
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text, cap, "k|v");
    for (int i = 0; i < 500; i++) n += (size_t)snprintf(text + n, cap - n, "\n%c|%d", "ab"[i % 2], i);
    char *o = ok(spec, text);
    free(o);
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%c.jsonl.zst", dir, "ab"[k]);
        size_t zlen;
        char *z = t_slurp(path, &zlen);
        char *plain = malloc(1 << 20);
        size_t got = ZSTD_decompress(plain, 1 << 20, z, zlen);
        cr_assert(!ZSTD_isError(got), "%s", ZSTD_getErrorName(got));
        plain[got] = '\0';
        char *want = malloc(1 << 16);
        size_t w = 0;
        for (int i = k; i < 500; i += 2)
            w += (size_t)sprintf(want + w, "{\"k\":\"%c\",\"v\":%d}\n", "ab"[k], i);
        cr_assert_str_eq(plain, want);
        free(z);
        free(plain);
        free(want);
    }
    free(text);
    t_rmtree(dir);
}

Test(split, failure_leaves_nothing, .timeout = 30)
{
    char *dir = t_mkdtemp();
    char spec[512];
    snprintf(spec, sizeof spec,
             "h_src(text=$in, chunk=64) | csv() | split(\"%s/{a}/x/{b}.csv\", max_open=3)", dir);
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text, cap, "a,b\n");
    for (int i = 0; i < 300; i++) n += (size_t)snprintf(text + n, cap - n, "%d,%d\n", i % 7, i % 11);
    snprintf(text + n, cap - n, "1,2,3\n");
    fails(spec, text, WEIR_EDATA, "expected 2 fields");
    char *tree = t_tree(dir);
    cr_assert_str_eq(tree, "", "left behind:\n%s", tree);
    free(tree);
    free(text);
    t_rmtree(dir);
}

Test(split, existing_directories_stay_after_failure, .timeout = 30)
{
    char *dir = t_mkdtemp();
    char sub[512], spec[512];
    snprintf(sub, sizeof sub, "%s/1", dir);
    mkdir(sub, 0777);
    snprintf(spec, sizeof spec, "h_src(text=$in) | csv() | split(\"%s/{a}/{b}.csv\")", dir);
    fails(spec, "a,b\n1,x\n2,y\n3\n", WEIR_EDATA, "expected 2 fields");
    char *tree = t_tree(dir);
    cr_assert_str_eq(tree, "1/\n");
    free(tree);
    t_rmtree(dir);
}

Test(split, template_errors, .timeout = 30)
{
    const char *in = "a|b\n1|2";
    fails("h_rows(text=$in) | split(\"out/x.csv\")", in, WEIR_ESPEC, "has no {column}");
    fails("h_rows(text=$in) | split(\"out/{a}.txt\")", in, WEIR_ESPEC,
          "cannot tell the format");
    fails("h_rows(text=$in) | split(\"out/{a}\")", in, WEIR_ESPEC, "cannot tell the format");
    fails("h_rows(text=$in) | split(\"out/{a}/../{b}.csv\")", in, WEIR_ESPEC, "no '..'");
    fails("h_rows(text=$in) | split(\"out/{a}.csv\", by=[a, b])", in, WEIR_ESPEC,
          "by column 'b' is not in the template");
    fails("h_rows(text=$in) | split(\"out/{a}.csv\", by=b)", in, WEIR_ESPEC,
          "{a} is not one of the by columns");
    fails("h_rows(text=$in) | split(\"out/{z}.csv\")", in, WEIR_ESPEC, "unknown column 'z'");
    fails("h_rows(text=$in) | split(\"out/{a.csv\")", in, WEIR_ESPEC, "'{' without '}'");
    fails("h_rows(text=$in) | split(\"out/{a}}.csv\")", in, WEIR_ESPEC, "'}' without '{'");
    fails("h_rows(text=$in) | split(\"out/{a}.csv\", max_open=0)", in, WEIR_ESPEC,
          "max_open must be between 1 and");
    fails("h_rows(text=$in) | split(\"/nonexistent-weir-dir/{a}.csv\")", in, WEIR_EIO,
          "cannot write into '/nonexistent-weir-dir': No such file or directory");
}

Test(split, braces_and_two_keys_one_path, .timeout = 30)
{
    char *dir = t_mkdtemp();
    char spec[512];
    snprintf(spec, sizeof spec, "h_rows(text=$in) | split(\"%s/{{{a}}}.csv\")", dir);
    char *o = ok(spec, "a\nx");
    free(o);
    char *tree = t_tree(dir);
    cr_assert_str_eq(tree, "{x}.csv\n");
    free(tree);
    snprintf(spec, sizeof spec, "h_rows(text=$in) | split(\"%s/t/{a}{b}.csv\")", dir);
    char t[512];
    snprintf(t, sizeof t, "%s/t", dir);
    mkdir(t, 0777);
    fails(spec, "a|b\nx|yz\nxy|z", WEIR_EDATA, "two different keys make the same file");
    tree = t_tree(t);
    cr_assert_str_eq(tree, "");
    free(tree);
    t_rmtree(dir);
}
