/*
 * cli.h — shared by the weir command's files.
 */
#ifndef WEIR_CLI_H
#define WEIR_CLI_H

#include "weir.h"

#include <stdio.h>

/* Exit codes (DESIGN.md). */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1, /* runtime or data error */
    EXIT_USAGE = 2,   /* usage or spec error */
    EXIT_SIGINT = 130,
    EXIT_SIGTERM = 143,
};

/* Print "weir: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Options shared by run, check, explain (and bench later). */
typedef struct spec_args {
    const char *path;      /* spec file, or NULL with -e */
    const char *expr;      /* -e TEXT */
    const char **vars;     /* --var k=v, as given */
    size_t nvars;
    int threads;           /* --threads N (0: all CPUs) */
    double timeout;        /* --timeout, seconds (0: none) */
    uint64_t mem;          /* --mem, bytes (0: the library's default) */
    int dot;               /* explain --dot */
} spec_args;

/* Parse argv for a spec command. allow: the option letters this command
 * takes beyond the common ones ("t" timeout, "d" dot, "n" threads).
 * @return 0, or an exit code after printing the error. */
int cli_spec_args(int argc, char **argv, const char *cmd, const char *allow,
                  spec_args *a, void (*help)(FILE *));

/* Compile the spec of a (file or -e). @return 0, or an exit code after
 * printing the error. */
int cli_compile(const spec_args *a, weir_graph **out);

/* Parse "500ms", "1s", "2m", "1h", "1.5s" (a bare number is seconds).
 * @return 0 and *secs, or -1. */
int cli_duration(const char *s, double *secs);

int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_stages(int argc, char **argv);
int cmd_gen(int argc, char **argv);

#endif
