/*
 * spec_cmds.c — the commands that take a spec: run, check, explain.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- arguments ------------------------------------------------------------------ */

int cli_spec_args(int argc, char **argv, const char *cmd, const char *allow,
                  spec_args *a, void (*help)(FILE *))
{
    memset(a, 0, sizeof *a);
    a->progress = -1;
    a->runs = 10;
    a->warmup = 1;
    a->vars = calloc((size_t)argc + 1, sizeof *a->vars);
    if (!a->vars) {
        cli_error("out of memory");
        return EXIT_RUNTIME;
    }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *val = NULL;
        /* --opt=value and --opt value both work. */
        const char *eq = strncmp(o, "--", 2) == 0 ? strchr(o, '=') : NULL;
        size_t olen = eq ? (size_t)(eq - o) : strlen(o);
#define IS(s) (olen == strlen(s) && strncmp(o, s, olen) == 0)
#define VALUE()                                                                  \
    do {                                                                         \
        if (eq) val = eq + 1;                                                    \
        else if (i + 1 < argc) val = argv[++i];                                  \
        else {                                                                   \
            cli_error("%s: option '%s' needs a value", cmd, o);                  \
            return EXIT_USAGE;                                                   \
        }                                                                        \
    } while (0)
        if (IS("--help") || IS("-h")) {
            help(stdout);
            exit(EXIT_OK);
        } else if (IS("-e") || IS("--expr")) {
            VALUE();
            a->expr = val;
        } else if (IS("--var")) {
            VALUE();
            if (!strchr(val, '=') || val[0] == '=') {
                cli_error("%s: --var takes NAME=VALUE, not '%s'", cmd, val);
                return EXIT_USAGE;
            }
            a->vars[a->nvars++] = val;
        } else if (IS("--threads") && strchr(allow, 'n')) {
            VALUE();
            char *end;
            long n = strtol(val, &end, 10);
            if (*end || n < 1 || n > 4096) {
                cli_error("%s: --threads takes a number from 1 to 4096, not '%s'", cmd, val);
                return EXIT_USAGE;
            }
            a->threads = (int)n;
        } else if (IS("--timeout") && strchr(allow, 't')) {
            VALUE();
            if (cli_duration(val, &a->timeout) || a->timeout <= 0) {
                cli_error("%s: --timeout takes a duration like 500ms, 10s, 2m, 1h, not '%s'",
                          cmd, val);
                return EXIT_USAGE;
            }
        } else if (IS("--mem") && strchr(allow, 'm')) {
            VALUE();
            if (weir_parse_size(val, &a->mem) != 0) {
                cli_error("%s: --mem takes a size like 512M or 2G, not '%s'", cmd, val);
                return EXIT_USAGE;
            }
        } else if (IS("--dot") && strchr(allow, 'd')) {
            a->dot = 1;
        } else if (IS("--stats") && strchr(allow, 's')) {
            /* The value is optional, so it comes only after '='. */
            const char *m = eq ? eq + 1 : "table";
            if (strcmp(m, "table") == 0) a->stats = CLI_STATS_TABLE;
            else if (strcmp(m, "replicas") == 0) a->stats = CLI_STATS_REPLICAS;
            else if (strcmp(m, "json") == 0) a->stats = CLI_STATS_JSON;
            else {
                cli_error("%s: --stats takes table, replicas or json, not '%s'", cmd, m);
                return EXIT_USAGE;
            }
        } else if (IS("--progress") && !eq && strchr(allow, 's')) {
            a->progress = 1;
        } else if (IS("--no-progress") && !eq && strchr(allow, 's')) {
            a->progress = 0;
        } else if (IS("--trace") && strchr(allow, 's')) {
            VALUE();
            if (!val[0]) {
                cli_error("%s: --trace needs a file name", cmd);
                return EXIT_USAGE;
            }
            a->trace = val;
        } else if ((IS("--runs") || IS("--warmup")) && strchr(allow, 'b')) {
            bool runs = IS("--runs");
            VALUE();
            char *end;
            errno = 0;
            long n = strtol(val, &end, 10);
            if (*end || !val[0] || errno || n < (runs ? 1 : 0) || n > 100000) {
                cli_error("%s: %s takes a number from %d to 100000, not '%s'", cmd,
                          runs ? "--runs" : "--warmup", runs ? 1 : 0, val);
                return EXIT_USAGE;
            }
            if (runs) a->runs = (int)n;
            else a->warmup = (int)n;
        } else if (IS("--json") && !eq && strchr(allow, 'b')) {
            a->json = 1;
        } else if (o[0] == '-' && o[1] != '\0') {
            cli_error("%s: unknown option '%s' (try 'weir %s --help')", cmd, o, cmd);
            return EXIT_USAGE;
        } else if (!a->path && !a->expr) {
            a->path = o;
        } else {
            cli_error("%s: unexpected argument '%s'", cmd, o);
            return EXIT_USAGE;
        }
#undef IS
#undef VALUE
    }
    if (!a->path && !a->expr) {
        cli_error("%s: no spec: give a file or -e TEXT (try 'weir %s --help')", cmd, cmd);
        return EXIT_USAGE;
    }
    if (a->path && a->expr) {
        cli_error("%s: give a spec file or -e TEXT, not both", cmd);
        return EXIT_USAGE;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    int saved = errno;
    bool bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        free(buf);
        errno = saved;
        return NULL;
    }
    *len = n;
    return buf;
}

int cli_compile(const spec_args *a, weir_graph **out)
{
    size_t len;
    char *text;
    const char *file;
    if (a->expr) {
        text = strdup(a->expr);
        len = strlen(a->expr);
        file = "<expr>";
    } else {
        text = read_file(a->path, &len);
        file = strcmp(a->path, "-") == 0 ? "<stdin>" : a->path;
        if (!text) {
            cli_error("cannot read spec '%s': %s", a->path, strerror(errno));
            return EXIT_USAGE;
        }
    }
    if (!text) {
        cli_error("out of memory");
        return EXIT_RUNTIME;
    }
    if (memchr(text, '\0', len)) {
        cli_error("%s: the spec holds a NUL byte", file);
        free(text);
        return EXIT_USAGE;
    }
    weir_spec_opts o = {.vars = a->vars, .nvars = a->nvars, .oneliner = a->expr != NULL};
    char err[2048];
    int rc = weir_spec_compile(out, text, len, file, &o, err, sizeof err);
    free(text);
    if (rc) {
        cli_error("%s", err);
        return rc == WEIR_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE;
    }
    return 0;
}

/* ---- run --------------------------------------------------------------------------- */

static weir_ctx *root_ctx;
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    if (got_signal && sig == SIGINT) { /* second Ctrl-C: now */
        cli_progress_erase_from_signal();
        _exit(EXIT_SIGINT);
    }
    got_signal = sig;
    weir_ctx_cancel_from_signal(root_ctx, WEIR_EINTERRUPT);
}

static void run_help(FILE *f)
{
    fprintf(f,
            "usage: weir run SPEC | -e TEXT [options]\n"
            "\n"
            "Run the pipeline a spec describes, on every core. With -e, a last\n"
            "chain that does not end in a sink writes CSV to stdout.\n"
            "\n"
            "options:\n"
            "  -e, --expr TEXT    the spec as text (its positions say <expr>)\n"
            "  --var NAME=VALUE   define $NAME for the spec (repeatable)\n"
            "  --threads N        use N CPUs: replicas for parallel stages with\n"
            "                     workers=auto (the default; an explicit workers=N\n"
            "                     stands), and, when the process may use more\n"
            "                     than N CPUs, its threads are kept to the first N\n"
            "                     (default: every CPU the process may use)\n"
            "  --timeout DUR      stop after DUR (500ms, 10s, 2m, 1h): exit 1\n"
            "  --mem SIZE         memory a stateful stage (group, sort, dedup)\n"
            "                     may hold before it spills or fails (default 1G;\n"
            "                     mem= on a stage sets its own)\n"
            "  --stats[=MODE]     at the end, what each stage did, on stderr:\n"
            "                     table (the default), replicas (the table with a\n"
            "                     row per replica too), or json (one JSON object on\n"
            "                     one line; schema: docs/stats-schema.md)\n"
            "  --progress         show live progress on stderr even when it is not\n"
            "                     a terminal\n"
            "  --no-progress      never show it (the default shows it when stderr\n"
            "                     is a terminal, from half a second into the run)\n"
            "  --trace FILE       write a Chrome trace-event JSON file (open it in\n"
            "                     ui.perfetto.dev or chrome://tracing): a track per\n"
            "                     worker, spans for each batch processed and each\n"
            "                     wait on a channel; written even when the run fails\n"
            "  -h, --help         this help\n"
            "\n"
            "Stats: per stage (label and spec position), its replicas, rows and MB\n"
            "(10^6 bytes) in and out, and the share of the run's wall time x its\n"
            "replicas it spent busy in its own code, waiting for input (upstream is\n"
            "slower) and waiting to send (downstream is slower, its channels are\n"
            "full); rows/s and MB/s: its input over the wall time (a source: its\n"
            "output; rows/s of gen or csv: the rows made). A stage whose input a\n"
            "splitter cuts on one thread in front of its replicas (csv) has a\n"
            "'split' row below it. The last line names the bottleneck: the stage\n"
            "(or splitter) with the highest busy share per replica, with the\n"
            "evidence (its upstream waiting to send, its downstream waiting for\n"
            "input) and what to try: more workers for a parallel stage while CPUs\n"
            "are idle, less work for a stage that is not parallel-safe; a busy\n"
            "source is called input-bound (I/O, decompression), a busy sink\n"
            "output-bound. When no stage is busy half the time, none is named.\n"
            "\n"
            "Progress: elapsed time, input read of the total (compressed bytes for\n"
            ".zst) with ETA, rows/s and input MB/s; then each stage's busy share\n"
            "(* the busiest) and its input channels' fill [queued/capacity]. The\n"
            "lines are erased at the end. NO_COLOR turns colour off.\n"
            "\n"
            "Outputs are written to temporary files and renamed only when the\n"
            "whole run succeeds. Ctrl-C stops the run (exit 130; twice: at once).\n");
}

static int exit_code_for(int rc)
{
    if (rc == 0) return EXIT_OK;
    if (rc == WEIR_ESPEC) return EXIT_USAGE;
    return EXIT_RUNTIME;
}

/* Write g's trace to path through a temporary beside it and a rename, so a
 * failed write leaves no half file. @return 0, or -1 with msg set. */
static int write_trace(weir_graph *g, const char *path, char *msg, size_t size)
{
    char *tmp = malloc(strlen(path) + 16);
    if (!tmp) {
        snprintf(msg, size, "cannot write trace '%s': out of memory", path);
        return -1;
    }
    sprintf(tmp, "%s.tmp-XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, size, "cannot write trace '%s': %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um);
    int rc = weir_graph_trace_write(g, fd);
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = WEIR_EIO;
        saved = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = WEIR_EIO;
        saved = errno;
    }
    if (rc) {
        unlink(tmp);
        if (rc == WEIR_EIO) snprintf(msg, size, "cannot write trace '%s': %s", path, strerror(saved));
        else snprintf(msg, size, "cannot write trace '%s': %s", path, weir_strerror(rc));
    }
    free(tmp);
    return rc ? -1 : 0;
}

bool cli_no_timing(void)
{
    const char *v = getenv("WEIR_NO_TIMING");
    return v && strcmp(v, "1") == 0;
}

int cli_limit_cpus(int n)
{
    cpu_set_t set;
    if (n <= 0 || sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) <= n)
        return 0;
    cpu_set_t keep;
    CPU_ZERO(&keep);
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < n; c++) {
        if (!CPU_ISSET(c, &set)) continue;
        CPU_SET(c, &keep);
        k++;
    }
    if (sched_setaffinity(0, sizeof keep, &keep) != 0) {
        cli_error("--threads %d: cannot keep to %d CPUs: %s", n, n, strerror(errno));
        return EXIT_RUNTIME;
    }
    return 0;
}

int cmd_run(int argc, char **argv)
{
    spec_args a;
    int ec = cli_spec_args(argc, argv, "run", "tnms", &a, run_help);
    if (ec == 0) ec = cli_limit_cpus(a.threads);
    weir_graph *g = NULL;
    if (ec == 0) ec = cli_compile(&a, &g);
    if (ec) {
        free(a.vars);
        return ec;
    }
    int rc = a.timeout > 0
                 ? weir_ctx_create_timeout(&root_ctx, NULL, (uint64_t)(a.timeout * 1e9))
                 : weir_ctx_create(&root_ctx, NULL);
    if (rc == 0) rc = weir_ctx_signal_prepare();
    if (rc) {
        cli_error("cannot start: %s", weir_strerror(rc));
        weir_graph_destroy(g);
        free(a.vars);
        return EXIT_RUNTIME;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is EPIPE: write() ends quietly */

    bool timing = !cli_no_timing();
    weir_run_opts o = {.max_workers = a.threads, .mem_budget = a.mem,
                       .trace = a.trace != NULL, .no_timing = !timing};
    const char *term = getenv("TERM");
    bool show = a.progress == 1 ||
                (a.progress == -1 && isatty(STDERR_FILENO) && !(term && strcmp(term, "dumb") == 0));
    cli_progress *pg = show ? cli_progress_start(g) : NULL;
    uint64_t t0 = weir_now_ns();
    rc = weir_graph_run(g, root_ctx, &o);
    uint64_t wall = weir_now_ns() - t0;
    int flush_errno = 0;
    if (fflush(stdout) != 0 && errno != EPIPE && rc == 0) {
        flush_errno = errno;
        rc = WEIR_EIO;
    }
    /* From here on the display is gone: stats and errors follow. */
    cli_progress_stop(pg);

    char msg[4200] = "";
    const char *status = "ok";
    int sig = got_signal;
    if (sig) {
        ec = sig == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
        status = "interrupted";
        snprintf(msg, sizeof msg, "interrupted by %s: outputs were not written",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    } else if (rc == WEIR_EDEADLINE) {
        status = "deadline";
        snprintf(msg, sizeof msg,
                 "deadline passed: the run did not finish within --timeout (%g s); "
                 "outputs were not written", a.timeout);
        ec = EXIT_RUNTIME;
    } else if (flush_errno) {
        status = "error";
        snprintf(msg, sizeof msg, "writing to stdout: %s", strerror(flush_errno));
        ec = EXIT_RUNTIME;
    } else if (rc) {
        status = "error";
        snprintf(msg, sizeof msg, "%s", weir_graph_errmsg(g));
        ec = exit_code_for(rc);
    }
    /* A run that failed validation never started (its nodes have no
     * replicas yet): no stats, no trace. */
    bool ran = false;
    weir_node *const *nodes;
    size_t nn = weir_graph_nodes(g, &nodes);
    for (size_t i = 0; i < nn && !ran; i++) {
        weir_node_stats ns;
        weir_node_get_stats(nodes[i], &ns);
        ran = ns.replicas > 0;
    }
    char tmsg[PATH_MAX + 128] = "";
    if (a.trace && ran && write_trace(g, a.trace, tmsg, sizeof tmsg) != 0 && ec == EXIT_OK)
        ec = EXIT_RUNTIME;
    if (a.stats && ran) {
        cli_stats st;
        if (cli_stats_collect(g, wall, timing, &st) == 0) {
            if (a.stats == CLI_STATS_JSON) {
                cli_stats_json(stderr, &st, status, msg[0] ? msg : NULL);
                fputc('\n', stderr);
            } else {
                cli_stats_table(stderr, &st, a.stats == CLI_STATS_REPLICAS);
            }
            cli_stats_free(&st);
        }
    }
    if (msg[0]) cli_error("%s", msg);
    if (tmsg[0]) cli_error("%s", tmsg);
    weir_graph_destroy(g);
    free(a.vars);
    /* root_ctx stays: the signal helper may still hold it. The process ends. */
    return ec;
}

/* ---- check ----------------------------------------------------------------------------- */

static void check_help(FILE *f)
{
    fprintf(f,
            "usage: weir check SPEC | -e TEXT [--var NAME=VALUE]...\n"
            "\n"
            "Parse and validate a spec without running it: syntax, stages and\n"
            "their arguments, stream kinds, and column names (read from the\n"
            "input files' headers). Prints 'ok' and exits 0, or prints each\n"
            "error as file:line:col and exits 2.\n");
}

int cmd_check(int argc, char **argv)
{
    spec_args a;
    int ec = cli_spec_args(argc, argv, "check", "n", &a, check_help);
    weir_graph *g = NULL;
    if (ec == 0) ec = cli_compile(&a, &g);
    if (ec == 0) {
        weir_run_opts o = {.max_workers = a.threads};
        int rc = weir_graph_check(g, &o);
        if (rc) {
            cli_error("%s", weir_graph_errmsg(g));
            ec = exit_code_for(rc);
        } else {
            printf("ok\n");
        }
    }
    weir_graph_destroy(g);
    free(a.vars);
    return ec;
}

/* ---- explain --------------------------------------------------------------------------- */

static void explain_help(FILE *f)
{
    fprintf(f,
            "usage: weir explain SPEC | -e TEXT [--var NAME=VALUE]... [--dot]\n"
            "                    [--threads N]\n"
            "\n"
            "Show the physical graph a run would build: each stage with its\n"
            "kinds, columns and replicas, how its output reaches each consumer\n"
            "(direct, round-robin, hash split or chained replica to replica;\n"
            "broadcast), the channels, and\n"
            "an estimate of the memory the channels hold when all are full.\n"
            "With --dot, the same graph in Graphviz's language: pipe it to\n"
            "'dot -Tsvg > graph.svg'.\n");
}

int cmd_explain(int argc, char **argv)
{
    spec_args a;
    int ec = cli_spec_args(argc, argv, "explain", "dn", &a, explain_help);
    weir_graph *g = NULL;
    if (ec == 0) ec = cli_compile(&a, &g);
    if (ec == 0) {
        weir_run_opts o = {.max_workers = a.threads};
        int rc = weir_graph_check(g, &o);
        if (rc) {
            cli_error("%s", weir_graph_errmsg(g));
            ec = exit_code_for(rc);
        } else {
            size_t (*fn)(weir_graph *, const weir_run_opts *, char *, size_t) =
                a.dot ? weir_graph_dot : weir_graph_describe;
            size_t n = fn(g, &o, NULL, 0);
            char *buf = malloc(n + 1);
            if (!buf) {
                cli_error("out of memory");
                ec = EXIT_RUNTIME;
            } else {
                fn(g, &o, buf, n + 1);
                fputs(buf, stdout);
                free(buf);
            }
        }
    }
    weir_graph_destroy(g);
    free(a.vars);
    return ec;
}
