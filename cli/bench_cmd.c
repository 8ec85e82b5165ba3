/*
 * bench_cmd.c — `weir bench SPEC`: compile once, run the graph K times to
 * warm up and N times measured, and report the median, min and max wall
 * time and throughput, and the per-stage stats of the median run.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static weir_ctx *bench_ctx;
static volatile sig_atomic_t bench_signal;

static void bench_on_signal(int sig)
{
    if (bench_signal && sig == SIGINT) _exit(EXIT_SIGINT);
    bench_signal = sig;
    weir_ctx_cancel_from_signal(bench_ctx, WEIR_EINTERRUPT);
}

static void bench_help(FILE *f)
{
    fprintf(f,
            "usage: weir bench SPEC | -e TEXT [options]\n"
            "\n"
            "Run a pipeline several times and report its speed: the median, min\n"
            "and max wall time, input MB/s and rows/s, then the per-stage stats\n"
            "of the median run (as 'weir run --stats' prints them, with the\n"
            "bottleneck). The spec is compiled once; every run is complete,\n"
            "outputs included. The pipeline's own stdout (write(\"-\"), count(),\n"
            "a one-liner's CSV) goes to /dev/null while it runs.\n"
            "\n"
            "options:\n"
            "  -e, --expr TEXT    the spec as text\n"
            "  --var NAME=VALUE   define $NAME for the spec (repeatable)\n"
            "  --runs N           measured runs (default 10)\n"
            "  --warmup K         runs before those, not measured (default 1)\n"
            "  --threads N        use N CPUs, as for run\n"
            "  --mem SIZE         memory budget of stateful stages (as for run)\n"
            "  --json             one JSON object on stdout instead of the tables\n"
            "                     (schema: docs/stats-schema.md)\n"
            "  -h, --help         this help\n"
            "\n"
            "Input MB/s is the bytes the sources read (on disk: compressed for\n"
            ".zst), or produced when they read nothing (gen); rows/s counts the\n"
            "rows entering the pipeline (out of gen, csv and other stages that\n"
            "make rows from something else); MB = 10^6 bytes.\n"
            "\n"
            "Time one stage alone between a gen() source and a discard() sink:\n"
            "  weir bench --runs 5 -e 'gen(rows=1000000) | filter(fare > 50) | discard()'\n"
            "  weir bench --runs 5 -e 'gen(rows=1000000) | to_csv() | zstd(level=3) | discard()'\n"
            "Subtract the baseline 'gen(rows=1000000) | discard()' to see the stage's\n"
            "own cost.\n");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median (the mean of the middle two for an even count), min and max. */
typedef struct spread {
    double median, min, max;
} spread;

static spread spread_of(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_dbl);
    spread s = {v[n / 2], v[0], v[n - 1]};
    if (n % 2 == 0) s.median = (v[n / 2 - 1] + v[n / 2]) / 2;
    return s;
}

static void json_spread(FILE *f, const char *name, spread s, int prec)
{
    fprintf(f, ",\"%s\":{\"median\":%.*f,\"min\":%.*f,\"max\":%.*f}", name, prec, s.median,
            prec, s.min, prec, s.max);
}

int cmd_bench(int argc, char **argv)
{
    spec_args a;
    int ec = cli_spec_args(argc, argv, "bench", "nmb", &a, bench_help);
    if (ec == 0) ec = cli_limit_cpus(a.threads);
    weir_graph *g = NULL;
    if (ec == 0) ec = cli_compile(&a, &g);
    if (ec) {
        free(a.vars);
        return ec;
    }
    int rc = weir_ctx_create(&bench_ctx, NULL);
    if (rc == 0) rc = weir_ctx_signal_prepare();
    if (rc) {
        cli_error("cannot start: %s", weir_strerror(rc));
        weir_graph_destroy(g);
        free(a.vars);
        return EXIT_RUNTIME;
    }
    struct sigaction sa = {.sa_handler = bench_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    size_t n = (size_t)a.runs, total = (size_t)a.runs + (size_t)a.warmup;
    cli_stats *runs = calloc(n, sizeof *runs);
    uint64_t *walls = calloc(n, sizeof *walls);
    double *v = calloc(n, sizeof *v);
    if (!runs || !walls || !v) {
        cli_error("out of memory");
        ec = EXIT_RUNTIME;
        goto out;
    }
    bool timing = !cli_no_timing();
    weir_run_opts o = {.max_workers = a.threads, .mem_budget = a.mem, .no_timing = !timing};

    /* The pipeline's stdout would mix with the report. */
    fflush(stdout);
    int saved_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved_out >= 0 && devnull >= 0) dup2(devnull, STDOUT_FILENO);
    if (devnull >= 0) close(devnull);
    bool tty = isatty(STDERR_FILENO);
    size_t done = 0;
    for (size_t i = 0; i < total; i++) {
        if (tty) {
            fprintf(stderr, "\rweir bench: %s %zu/%zu\033[K", i < (size_t)a.warmup ? "warm-up" : "run",
                    i < (size_t)a.warmup ? i + 1 : i - (size_t)a.warmup + 1,
                    i < (size_t)a.warmup ? (size_t)a.warmup : n);
        }
        uint64_t t0 = weir_now_ns();
        rc = weir_graph_run(g, bench_ctx, &o);
        uint64_t wall = weir_now_ns() - t0;
        fflush(stdout);
        if (rc || bench_signal) break;
        if (i < (size_t)a.warmup) continue;
        if (cli_stats_collect(g, wall, timing, &runs[done]) != 0) {
            rc = WEIR_ENOMEM;
            break;
        }
        walls[done++] = wall;
    }
    if (tty) fputs("\r\033[K", stderr);
    if (saved_out >= 0) {
        dup2(saved_out, STDOUT_FILENO);
        close(saved_out);
    }
    if (bench_signal) {
        cli_error("interrupted by %s", bench_signal == SIGTERM ? "SIGTERM" : "SIGINT");
        ec = bench_signal == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
        goto out;
    }
    if (rc) {
        cli_error("%s", rc == WEIR_ENOMEM && !weir_graph_errmsg(g)[0] ? "out of memory"
                                                                       : weir_graph_errmsg(g));
        ec = rc == WEIR_ESPEC ? EXIT_USAGE : EXIT_RUNTIME;
        goto out;
    }

    /* The median run: the middle one by wall time (the lower middle for an
     * even count). */
    uint64_t *sorted = calloc(n, sizeof *sorted);
    if (!sorted) {
        cli_error("out of memory");
        ec = EXIT_RUNTIME;
        goto out;
    }
    memcpy(sorted, walls, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    uint64_t mid = sorted[(n - 1) / 2];
    free(sorted);
    size_t med = 0;
    for (size_t i = 0; i < n; i++)
        if (walls[i] == mid) med = i;

    for (size_t i = 0; i < n; i++) v[i] = (double)walls[i] / 1e9;
    spread wall = spread_of(v, n);
    for (size_t i = 0; i < n; i++)
        v[i] = (double)cli_stats_input_bytes(&runs[i]) / 1e6 / ((double)walls[i] / 1e9);
    spread mbs = spread_of(v, n);
    for (size_t i = 0; i < n; i++)
        v[i] = (double)cli_stats_rows(&runs[i]) / ((double)walls[i] / 1e9);
    spread rows = spread_of(v, n);
    const cli_stats *m = &runs[med];
    const char *spec = a.expr ? "<expr>" : a.path;

    if (a.json) {
        printf("{\"weir_bench\":1,\"version\":");
        cli_json_str(stdout, weir_version_string());
        printf(",\"spec\":");
        cli_json_str(stdout, spec);
        printf(",\"runs\":%d,\"warmup\":%d,\"cpus\":%d,\"wall_ns_all\":[", a.runs, a.warmup,
               m->cpus);
        for (size_t i = 0; i < n; i++) printf("%s%llu", i ? "," : "", (unsigned long long)walls[i]);
        printf("]");
        json_spread(stdout, "wall_s", wall, 6);
        json_spread(stdout, "input_mb_per_s", mbs, 3);
        json_spread(stdout, "rows_per_s", rows, 1);
        printf(",\"input_bytes\":%llu,\"rows\":%llu,\"median_run\":",
               (unsigned long long)cli_stats_input_bytes(m), (unsigned long long)cli_stats_rows(m));
        cli_stats_json(stdout, m, "ok", NULL);
        printf("}\n");
    } else {
        char b1[32], b2[32], b3[32];
        printf("weir bench: %s, %d run%s after %d warm-up, %d CPU%s\n", spec, a.runs,
               a.runs == 1 ? "" : "s", a.warmup, m->cpus, m->cpus == 1 ? "" : "s");
        printf("%-12s %12s %12s %12s\n", "", "median", "min", "max");
        cli_fmt_secs(b1, sizeof b1, wall.median);
        cli_fmt_secs(b2, sizeof b2, wall.min);
        cli_fmt_secs(b3, sizeof b3, wall.max);
        printf("%-12s %12s %12s %12s\n", "wall time", b1, b2, b3);
        printf("%-12s %12.1f %12.1f %12.1f\n", "input MB/s", mbs.median, mbs.min, mbs.max);
        cli_fmt_count(b1, sizeof b1, rows.median);
        cli_fmt_count(b2, sizeof b2, rows.min);
        cli_fmt_count(b3, sizeof b3, rows.max);
        printf("%-12s %12s %12s %12s\n", "rows/s", b1, b2, b3);
        printf("per run: %.1f MB of input, %llu rows\n",
               (double)cli_stats_input_bytes(m) / 1e6, (unsigned long long)cli_stats_rows(m));
        printf("\nper stage, median run:\n");
        cli_stats_table(stdout, m, false);
    }
    if (fflush(stdout) != 0 && errno != EPIPE) {
        cli_error("writing to stdout: %s", strerror(errno));
        ec = EXIT_RUNTIME;
    }
out:
    for (size_t i = 0; runs && i < n; i++) cli_stats_free(&runs[i]);
    free(runs);
    free(walls);
    free(v);
    weir_graph_destroy(g);
    free(a.vars);
    return ec;
}
