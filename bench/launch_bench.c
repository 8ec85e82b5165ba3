/*
 * launch_bench.c — does launching the workers with OpenMP pay?
 *
 * weir_graph_run starts one worker per physical stage. With the OpenMP
 * launcher the workers are an OpenMP team, which libgomp keeps alive
 * between runs; with the pthread launcher each run creates and joins its
 * threads. The difference matters for short runs repeated many times
 * (weir bench, library users running many small graphs). This program runs
 * the same small graph many times with each launcher, interleaved, and
 * prints runs/s and the ratio; then one long run each, to show that the
 * launcher does not change steady-state throughput.
 *
 *   launch_bench [RUNS [CHANNEL_CAPACITY]]
 */
#include <weir.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Batches per channel (argv[2]; 0: the runtime's default). */
static size_t chan_cap;

static int src_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    long *left = weir_stage_state(s);
    if (!left) {
        left = malloc(sizeof *left);
        if (!left) return WEIR_ENOMEM;
        *left = weir_stage_arg_int(s, "batches");
        weir_stage_set_state(s, left);
    }
    if ((*left)-- <= 0) return WEIR_DONE;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    static const char chunk[4096];
    if ((rc = weir_batch_append(b, chunk, sizeof chunk))) {
        weir_batch_release(b);
        return rc;
    }
    return weir_stage_emit(s, b);
}

static void free_state(weir_stage *s) { free(weir_stage_state(s)); }

static int pass_process(weir_stage *s, weir_batch *in)
{
    unsigned sum = 0; /* touch the data, as a real stage would */
    for (size_t i = 0; i < in->len; i += 64) sum += in->data[i];
    in->data[0] = (unsigned char)sum;
    return weir_stage_emit(s, in);
}

static int sink_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def src_def = {
    .abi = WEIR_ABI_VERSION, .name = "src", .summary = "4 KiB byte batches",
    .args = (const weir_arg_def[]){{"batches", WEIR_ARG_INT, "64", ""}, {NULL}},
    .in_kind = WEIR_KIND_NONE, .out_kind = WEIR_KIND_BYTES,
    .process = src_process, .close = free_state};
static const weir_stage_def pass_def = {
    .abi = WEIR_ABI_VERSION, .name = "pass", .summary = "touch and forward",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES, .out_kind = WEIR_KIND_BYTES,
    .flags = WEIR_STAGE_PARALLEL, .process = pass_process};
static const weir_stage_def sink_def = {
    .abi = WEIR_ABI_VERSION, .name = "sink", .summary = "drop",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES, .out_kind = WEIR_KIND_NONE,
    .process = sink_process};

static weir_graph *make_graph(long batches)
{
    weir_graph *g;
    weir_node *a, *b, *c;
    if (weir_graph_create(&g) || weir_graph_add(g, &src_def, NULL, &a) ||
        weir_node_set_int(a, "batches", batches) ||
        weir_graph_add(g, &pass_def, NULL, &b) || weir_node_set_int(b, "workers", 2) ||
        weir_graph_add(g, &sink_def, NULL, &c) || weir_graph_connect(g, a, b) ||
        weir_graph_connect(g, b, c)) {
        fprintf(stderr, "launch_bench: cannot build the graph\n");
        exit(1);
    }
    return g;
}

static double run_many(weir_graph *g, int launcher, int runs)
{
    weir_run_opts o = {.launcher = launcher, .chan_capacity = chan_cap};
    uint64_t t0 = weir_now_ns();
    for (int i = 0; i < runs; i++) {
        if (weir_graph_run(g, NULL, &o)) {
            fprintf(stderr, "launch_bench: %s\n", weir_graph_errmsg(g));
            exit(1);
        }
    }
    return (double)(weir_now_ns() - t0) / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 500;
    chan_cap = argc > 2 ? (size_t)atoi(argv[2]) : 0;
    int reps = 5;
    weir_graph *small = make_graph(16);
    weir_graph *big = make_graph(200000);
    double omp[5], pth[5];
    run_many(small, WEIR_LAUNCH_OPENMP, 20); /* warm the team */
    for (int r = 0; r < reps; r++) {      /* interleaved: same noise for both */
        omp[r] = (double)runs / run_many(small, WEIR_LAUNCH_OPENMP, runs);
        pth[r] = (double)runs / run_many(small, WEIR_LAUNCH_PTHREAD, runs);
    }
    qsort(omp, (size_t)reps, sizeof *omp, cmp);
    qsort(pth, (size_t)reps, sizeof *pth, cmp);
    printf("launch: short runs (5 workers, 16 x 4 KiB batches), median of %d x %d runs\n",
           reps, runs);
    printf("  openmp launcher   %10.0f runs/s\n", omp[reps / 2]);
    printf("  pthread launcher  %10.0f runs/s\n", pth[reps / 2]);
    printf("  ratio openmp/pthread  %.2fx\n", omp[reps / 2] / pth[reps / 2]);

    double lo = run_many(big, WEIR_LAUNCH_OPENMP, 1);
    double lp = run_many(big, WEIR_LAUNCH_PTHREAD, 1);
    double mb = 200000.0 * 4096 / 1e6;
    printf("launch: one long run (200000 x 4 KiB batches)\n");
    printf("  openmp launcher   %8.0f MB/s\n", mb / lo);
    printf("  pthread launcher  %8.0f MB/s\n", mb / lp);
    printf("  ratio openmp/pthread  %.2fx\n", lp / lo);
    weir_graph_destroy(small);
    weir_graph_destroy(big);
    return 0;
}
