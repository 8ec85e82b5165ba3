/*
 * main.c — the weir command: dispatch to subcommands, shared helpers.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("weir: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_duration(const char *s, double *secs)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) return -1;
    double mul;
    if (*end == '\0' || strcmp(end, "s") == 0) mul = 1;
    else if (strcmp(end, "ms") == 0) mul = 1e-3;
    else if (strcmp(end, "m") == 0) mul = 60;
    else if (strcmp(end, "h") == 0) mul = 3600;
    else return -1;
    *secs = v * mul;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weir COMMAND [options]\n"
            "\n"
            "weir runs parallel batch data pipelines described by a spec:\n"
            "stages joined by bounded lock-free channels, run on every core,\n"
            "cancelled cleanly on the first error, Ctrl-C or a timeout.\n"
            "\n"
            "commands:\n"
            "  run SPEC | -e TEXT   run a pipeline\n"
            "  check SPEC           parse and validate; errors as file:line:col\n"
            "  explain SPEC         show the physical graph (--dot for Graphviz)\n"
            "  stages [NAME]        list the stages, or one stage's arguments\n"
            "  gen KIND             write a generated dataset (trips)\n"
            "  bench SPEC | -e TEXT run a pipeline N times: median/min/max speed\n"
            "\n"
            "  weir COMMAND --help  options of a command\n"
            "  weir --version       the version\n"
            "  --plugin FILE        (with any command) load stages from a plugin\n"
            "\n"
            "example:\n"
            "  weir run -e 'read(\"trips.csv\") | csv() | filter(fare > 50) | head(5)'\n"
            "  weir run --stats -e 'read(\"trips.csv\") | csv() | write(\"t.jsonl\")'\n"
            "\n"
            "exit status: 0 success, 1 runtime or data error, 2 usage or spec\n"
            "error, 130/143 interrupted by SIGINT/SIGTERM.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 ||
        strcmp(cmd, "version") == 0) {
        printf("weir %s\n", weir_version_string());
        return EXIT_OK;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    /* --plugin FILE (any command, repeatable): load before anything else,
     * so the command sees the plugin's stages; then drop it from argv. */
    int kept = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *path = NULL;
        if (strcmp(o, "--plugin") == 0) {
            if (i + 1 >= argc) {
                cli_error("option '--plugin' needs a file");
                return EXIT_USAGE;
            }
            path = argv[++i];
        } else if (strncmp(o, "--plugin=", 9) == 0) {
            path = o + 9;
        } else {
            argv[kept++] = argv[i];
            continue;
        }
        char err[1024];
        if (weir_plugin_load(path, err, sizeof err) != 0) {
            cli_error("%s", err);
            return EXIT_USAGE;
        }
    }
    argc = kept;
    argv[argc] = NULL;
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = argv[1];
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"run", cmd_run},         {"check", cmd_check}, {"explain", cmd_explain},
        {"stages", cmd_stages},   {"gen", cmd_gen},     {"bench", cmd_bench},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (strcmp(cmd, cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s' (try 'weir --help')", cmd);
    return EXIT_USAGE;
}
