/*
 * spec_cmds.c — the commands that take a spec: run, check, explain.
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- arguments ------------------------------------------------------------------ */

int cli_spec_args(int argc, char **argv, const char *cmd, const char *allow,
                  spec_args *a, void (*help)(FILE *))
{
    memset(a, 0, sizeof *a);
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
    if (got_signal && sig == SIGINT) _exit(EXIT_SIGINT); /* second Ctrl-C: now */
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
            "  --threads N        replicas for parallel stages with workers=auto\n"
            "                     (the default; an explicit workers=N stands)\n"
            "                     (default: the number of CPUs)\n"
            "  --timeout DUR      stop after DUR (500ms, 10s, 2m, 1h): exit 1\n"
            "  --mem SIZE         memory a stateful stage (group, sort, dedup)\n"
            "                     may hold before it spills or fails (default 1G;\n"
            "                     mem= on a stage sets its own)\n"
            "  -h, --help         this help\n"
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

int cmd_run(int argc, char **argv)
{
    spec_args a;
    int ec = cli_spec_args(argc, argv, "run", "tnm", &a, run_help);
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

    weir_run_opts o = {.max_workers = a.threads, .mem_budget = a.mem};
    rc = weir_graph_run(g, root_ctx, &o);
    if (fflush(stdout) != 0 && errno != EPIPE && rc == 0) {
        cli_error("writing to stdout: %s", strerror(errno));
        rc = WEIR_EIO;
    }
    int sig = got_signal;
    if (sig) {
        ec = sig == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
        cli_error("interrupted by %s: outputs were not written", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    } else if (rc == WEIR_EDEADLINE) {
        char d[32];
        snprintf(d, sizeof d, "%g s", a.timeout);
        cli_error("deadline passed: the run did not finish within --timeout (%s); "
                  "outputs were not written", d);
        ec = EXIT_RUNTIME;
    } else if (rc) {
        cli_error("%s", weir_graph_errmsg(g));
        ec = exit_code_for(rc);
    }
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
            "(direct, round-robin or hash split; broadcast), and the channels.\n"
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
