/*
 * stages_cmd.c — `weir stages [NAME]`, generated from the stages' own
 * argument tables, and `weir gen`, which runs gen(...) | write(...).
 */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void stages_help(FILE *f)
{
    fprintf(f,
            "usage: weir stages [NAME]\n"
            "\n"
            "Without NAME, list every stage with what it takes and gives.\n"
            "With NAME, show how to call that stage: its arguments, their\n"
            "types and defaults.\n");
}

static const char *kind_word(weir_kind k, bool in)
{
    switch (k) {
    case WEIR_KIND_NONE: return in ? "source" : "sink";
    case WEIR_KIND_BYTES: return "bytes";
    case WEIR_KIND_ROWS: return "rows";
    case WEIR_KIND_ANY: return "any";
    }
    return "?";
}

/* "name(a, b=1, …)" as a call would be written. */
static void print_call(const weir_stage_def *d)
{
    printf("%s(", d->name);
    int k = 0;
    for (const weir_arg_def *a = d->args; a && a->name; a++, k++) {
        if (k) printf(", ");
        if (a->type == WEIR_ARG_COLUMNS) printf("%s…", a->name);
        else if (a->type == WEIR_ARG_NAMED) printf("name=expr…");
        else if (!a->def) printf("%s", a->name);
        else if (a->type == WEIR_ARG_STRING) printf("%s=\"%s\"", a->name, a->def);
        else if (a->type == WEIR_ARG_LIST) printf("%s=[%s]", a->name, a->def);
        else printf("%s=%s", a->name, a->def);
    }
    printf(")");
}

static void show_stage(const weir_stage_def *d)
{
    print_call(d);
    printf("\n  %s\n\n", d->summary ? d->summary : "");
    printf("  input:  %s\n", kind_word(d->in_kind, true));
    printf("  output: %s\n", kind_word(d->out_kind, false));
    if (d->flags & WEIR_STAGE_MULTI_IN)
        printf("  inputs: several streams named by let (%s)\n",
               d->flags & WEIR_STAGE_SEQ_IN ? "one after another" : "interleaved");
    printf("  parallel: %s\n", d->flags & WEIR_STAGE_PARALLEL
                                   ? "yes (workers=N or auto; ordered=false to skip reordering)"
                                   : "no (one instance)");
    if (d->args && d->args[0].name) {
        printf("\n  arguments:\n");
        for (const weir_arg_def *a = d->args; a->name; a++) {
            const char *t = weir_arg_type_name(a->type);
            printf("    %-12s %-8s %s", a->type == WEIR_ARG_NAMED ? "name=" : a->name, t,
                   a->help ? a->help : "");
            if (a->def && a->type != WEIR_ARG_NAMED && a->type != WEIR_ARG_COLUMNS)
                printf(" (default: %s)", a->def[0] ? a->def : "\"\"");
            else if (!a->def && a->type != WEIR_ARG_NAMED && a->type != WEIR_ARG_COLUMNS)
                printf(" (required)");
            printf("\n");
        }
    }
}

int cmd_stages(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        stages_help(stdout);
        return EXIT_OK;
    }
    if (argc > 2) {
        cli_error("stages: one stage name at most (try 'weir stages --help')");
        return EXIT_USAGE;
    }
    const weir_stage_def *const *defs;
    size_t n = weir_stage_list(&defs);
    if (argc == 2) {
        const weir_stage_def *d = weir_stage_find(argv[1]);
        if (!d) {
            cli_error("stages: no stage named '%s' (see 'weir stages')", argv[1]);
            return EXIT_USAGE;
        }
        show_stage(d);
        return EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        printf("  %-10s %-6s -> %-6s %s%s\n", defs[i]->name, kind_word(defs[i]->in_kind, true),
               kind_word(defs[i]->out_kind, false), defs[i]->summary ? defs[i]->summary : "",
               defs[i]->flags & WEIR_STAGE_PARALLEL ? " [parallel]" : "");
    }
    printf("\n'weir stages NAME' shows a stage's arguments.\n");
    return EXIT_OK;
}

/* ---- gen ---------------------------------------------------------------------------------- */

static void gen_help(FILE *f)
{
    fprintf(f,
            "usage: weir gen KIND [--rows N] [--seed S] [-o FILE]\n"
            "\n"
            "Write a generated dataset as CSV (FILE.csv) or compressed CSV\n"
            "(FILE.csv.zst), or to stdout (the default, or -o -). The same\n"
            "seed always gives the same bytes.\n"
            "\n"
            "kinds:\n"
            "  trips   taxi trips: ids, times, passengers, distances, fares,\n"
            "          tips, payment, zone names with commas and quotes, notes\n"
            "          with the odd embedded newline (see datasets/README.md)\n"
            "\n"
            "options:\n"
            "  --rows N    rows to write (default 1000; 0: endless, to stdout)\n"
            "  --seed S    the generator's seed (default 42)\n"
            "  -o FILE     output file (default: stdout)\n");
}

static void spec_string(char *buf, size_t size, const char *s)
{
    size_t n = 0;
    if (size < 3) return;
    buf[n++] = '"';
    for (; *s && n + 3 < size; s++) {
        if (*s == '"' || *s == '\\') buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n++] = '"';
    buf[n] = '\0';
}

int cmd_gen(int argc, char **argv)
{
    const char *kind = NULL, *out = "-", *rows = "1000", *seed = "42";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            gen_help(stdout);
            return EXIT_OK;
        }
        const char **dst = strcmp(o, "--rows") == 0   ? &rows
                           : strcmp(o, "--seed") == 0 ? &seed
                           : strcmp(o, "-o") == 0 || strcmp(o, "--output") == 0 ? &out
                                                                                 : NULL;
        if (dst) {
            if (i + 1 >= argc) {
                cli_error("gen: option '%s' needs a value", o);
                return EXIT_USAGE;
            }
            *dst = argv[++i];
        } else if (o[0] == '-' && o[1]) {
            cli_error("gen: unknown option '%s' (try 'weir gen --help')", o);
            return EXIT_USAGE;
        } else if (!kind) {
            kind = o;
        } else {
            cli_error("gen: unexpected argument '%s'", o);
            return EXIT_USAGE;
        }
    }
    if (!kind) {
        cli_error("gen: which dataset? (try 'weir gen --help')");
        return EXIT_USAGE;
    }
    for (const char *p = rows; *p; p++)
        if (*p < '0' || *p > '9') {
            cli_error("gen: --rows takes a whole number, not '%s'", rows);
            return EXIT_USAGE;
        }
    for (const char *p = seed; *p; p++)
        if (*p < '0' || *p > '9') {
            cli_error("gen: --seed takes a whole number, not '%s'", seed);
            return EXIT_USAGE;
        }
    char k[256], o[4096], spec[8192];
    spec_string(k, sizeof k, kind);
    spec_string(o, sizeof o, out);
    snprintf(spec, sizeof spec, "gen(kind=%s, rows=%s, seed=%s) | write(%s)", k,
             rows[0] ? rows : "0", seed[0] ? seed : "0", o);
    char run[] = "run", e[] = "-e";
    char *args[] = {run, e, spec, NULL};
    return cmd_run(3, args);
}
