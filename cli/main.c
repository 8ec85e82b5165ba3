/*
 * weir — the command line. At this stage of the project it answers
 * --version and --help; the spec language and subcommands come next.
 */
#include "weir.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weir [--help] [--version]\n"
            "\n"
            "weir runs parallel batch data pipelines: stages joined by bounded\n"
            "lock-free channels, cancelled cleanly on the first error.\n"
            "\n"
            "This build provides the library (libweir, weir.h) and these options:\n"
            "  -h, --help     show this help and exit\n"
            "  -V, --version  print the version and exit\n"
            "\n"
            "The subcommands run, check, explain, stages, gen and bench are not\n"
            "implemented yet.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("weir %s\n", weir_version_string());
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "weir: unknown command or option '%s' (try 'weir --help')\n",
            argv[1]);
    return 2;
}
