/*
 * demo.c — a small pipeline built on libweir, what `make demo-lib` runs.
 *
 *   numbers (source) ──> collatz (workers=N, ordered) ──> summary (sink)
 *
 * The source emits rows (n) for n = 1..COUNT in batches; the collatz stage,
 * replicated across the CPUs, appends the length of each number's Collatz
 * sequence; the sink checks that rows arrive in source order and reports
 * the longest sequence found. Every stage is a plain weir_stage_def, the
 * same API a user's own stage gets; collatz.c is the same idea as a plugin
 * for specs.
 *
 *   cc -o demo demo.c $(pkg-config --cflags --libs weir)
 *   ./demo [COUNT [WORKERS]]      (default: 2000000 numbers, one collatz
 *                                  replica per CPU)
 */
#include <weir.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- source: numbers ------------------------------------------------------------ */

typedef struct numbers {
    uint64_t next, last;
    weir_schema *schema;
} numbers;

static int numbers_open(weir_stage *s)
{
    numbers *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    st->next = 1;
    st->last = (uint64_t)weir_stage_arg_int(s, "count");
    const char *cols[] = {"n"};
    int rc = weir_schema_create(&st->schema, cols, 1);
    weir_stage_set_state(s, st);
    return rc;
}

static int numbers_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    numbers *st = weir_stage_state(s);
    if (st->next > st->last) return WEIR_DONE;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    weir_batch_set_schema(b, st->schema);
    char buf[24];
    for (int i = 0; i < 4096 && st->next <= st->last; i++, st->next++) {
        int len = snprintf(buf, sizeof buf, "%" PRIu64, st->next);
        if ((rc = weir_batch_add_field(b, buf, (size_t)len)) ||
            (rc = weir_batch_end_row(b))) {
            weir_batch_release(b);
            return rc;
        }
    }
    return weir_stage_emit(s, b);
}

static void numbers_close(weir_stage *s)
{
    numbers *st = weir_stage_state(s);
    if (st) weir_schema_release(st->schema);
    free(st);
}

static const weir_stage_def numbers_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "numbers",
    .summary = "rows n = 1..count",
    .args = (const weir_arg_def[]){{"count", WEIR_ARG_INT, "1000000", "how many"},
                                   {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_ROWS,
    .open = numbers_open,
    .process = numbers_process,
    .close = numbers_close,
};

/* ---- transform: collatz (parallel-safe) ------------------------------------------- */

static int collatz_open(weir_stage *s)
{
    const char *cols[] = {"n", "steps"};
    weir_schema *schema;
    int rc = weir_schema_create(&schema, cols, 2);
    weir_stage_set_state(s, schema);
    return rc;
}

static int collatz_process(weir_stage *s, weir_batch *in)
{
    weir_batch *out;
    int rc = weir_stage_batch(s, &out);
    if (rc) {
        weir_batch_release(in);
        return rc;
    }
    weir_batch_set_schema(out, weir_stage_state(s));
    char buf[24];
    for (uint32_t r = 0; r < in->nrows && rc == 0; r++) {
        size_t len;
        const unsigned char *f = weir_batch_field(in, r, 0, &len);
        memcpy(buf, f, len < 23 ? len : 23);
        buf[len < 23 ? len : 23] = '\0';
        uint64_t n = strtoull(buf, NULL, 10);
        unsigned steps = 0;
        while (n > 1) {
            n = (n & 1) ? 3 * n + 1 : n / 2;
            steps++;
        }
        int k = snprintf(buf, sizeof buf, "%u", steps);
        if (!(rc = weir_batch_add_field(out, f, len)) &&
            !(rc = weir_batch_add_field(out, buf, (size_t)k)))
            rc = weir_batch_end_row(out);
    }
    weir_batch_release(in);
    if (rc) {
        weir_batch_release(out);
        return rc;
    }
    return weir_stage_emit(s, out);
}

static void collatz_close(weir_stage *s) { weir_schema_release(weir_stage_state(s)); }

static const weir_stage_def collatz_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "collatz",
    .summary = "append the Collatz sequence length of column n",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_ROWS,
    .flags = WEIR_STAGE_PARALLEL,
    .open = collatz_open,
    .process = collatz_process,
    .close = collatz_close,
};

/* ---- sink: summary ----------------------------------------------------------------- */

typedef struct summary {
    uint64_t rows, expect, best_n, best_steps;
    bool in_order;
} summary;

static int summary_open(weir_stage *s)
{
    summary *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    st->expect = 1;
    st->in_order = true;
    weir_stage_set_state(s, st);
    return 0;
}

static int summary_process(weir_stage *s, weir_batch *in)
{
    summary *st = weir_stage_state(s);
    char buf[24];
    for (uint32_t r = 0; r < in->nrows; r++) {
        size_t len;
        const unsigned char *f = weir_batch_field(in, r, 0, &len);
        memcpy(buf, f, len < 23 ? len : 23);
        buf[len < 23 ? len : 23] = '\0';
        uint64_t n = strtoull(buf, NULL, 10);
        f = weir_batch_field(in, r, 1, &len);
        memcpy(buf, f, len < 23 ? len : 23);
        buf[len < 23 ? len : 23] = '\0';
        uint64_t steps = strtoull(buf, NULL, 10);
        if (n != st->expect++) st->in_order = false;
        if (steps > st->best_steps) {
            st->best_steps = steps;
            st->best_n = n;
        }
        st->rows++;
    }
    weir_batch_release(in);
    return 0;
}

static void summary_close(weir_stage *s) { free(weir_stage_state(s)); }

static summary result; /* copied out by finish, read by main */

static int summary_finish(weir_stage *s)
{
    result = *(summary *)weir_stage_state(s);
    return 0;
}

static const weir_stage_def summary_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "summary",
    .summary = "count rows, check order, keep the longest sequence",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .open = summary_open,
    .process = summary_process,
    .finish = summary_finish,
    .close = summary_close,
};

/* ---- main ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    long long count = argc > 1 ? atoll(argv[1]) : 2000000;
    long long workers = argc > 2 ? atoll(argv[2]) : 0; /* 0: auto, one per CPU */
    weir_graph *g;
    weir_node *src, *work, *sink;
    int rc = weir_graph_create(&g);
    if (rc) {
        fprintf(stderr, "demo: %s\n", weir_strerror(rc));
        return 1;
    }
    rc = weir_graph_add(g, &numbers_def, NULL, &src);
    if (!rc) rc = weir_node_set_int(src, "count", count);
    if (!rc) rc = weir_graph_add(g, &collatz_def, NULL, &work);
    if (!rc && workers > 0) rc = weir_node_set_int(work, "workers", workers);
    if (!rc) rc = weir_graph_add(g, &summary_def, NULL, &sink);
    if (!rc) rc = weir_graph_connect(g, src, work);
    if (!rc) rc = weir_graph_connect(g, work, sink);
    if (rc) {
        fprintf(stderr, "demo: building the graph: %s (%s)\n", weir_strerror(rc),
                weir_graph_errmsg(g));
        weir_graph_destroy(g);
        return 1;
    }
    char plan[2048];
    weir_graph_describe(g, NULL, plan, sizeof plan);
    printf("weir %s demo — the physical graph:\n%s\n", weir_version_string(), plan);

    uint64_t t0 = weir_now_ns();
    rc = weir_graph_run(g, NULL, NULL);
    double secs = (double)(weir_now_ns() - t0) / 1e9;
    if (rc) {
        fprintf(stderr, "demo: %s\n", weir_graph_errmsg(g));
        weir_graph_destroy(g);
        return 1;
    }
    weir_node_stats st;
    weir_node_get_stats(work, &st);
    printf("rows processed:   %" PRIu64 " by %d collatz replicas\n", result.rows,
           st.replicas);
    printf("rows in order:    %s\n", result.in_order ? "yes" : "NO");
    printf("longest sequence: n = %" PRIu64 " takes %" PRIu64 " steps\n",
           result.best_n, result.best_steps);
    printf("throughput:       %.2f M rows/s (%.3f s)\n", (double)result.rows / secs / 1e6,
           secs);
    weir_graph_destroy(g);
    return result.in_order && result.rows == (uint64_t)count ? 0 : 1;
}
