/*
 * count() — a sink that prints the number of rows it got, as one line on
 * stdout (DESIGN.md, "Semantics pinned down").
 *
 * The line is printed by commit(), which runs only after the whole run has
 * succeeded: a failed or cancelled run prints no count, so a number on
 * stdout is always a complete one. One instance, so one line.
 */
#include "stages.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct count_state {
    uint64_t rows;
} count_state;

static int count_open(weir_stage *s)
{
    count_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    weir_stage_set_state(s, st);
    return 0;
}

static int count_process(weir_stage *s, weir_batch *in)
{
    count_state *st = weir_stage_state(s);
    st->rows += in->nrows;
    weir_batch_release(in);
    return 0;
}

static int count_commit(weir_stage *s)
{
    count_state *st = weir_stage_state(s);
    errno = 0;
    printf("%" PRIu64 "\n", st->rows);
    if (fflush(stdout) == 0 || errno == EPIPE) return 0; /* a closed pipe ends quietly */
    return weir_stage_errorf(s, WEIR_EIO, "cannot write the count to stdout");
}

static void count_close(weir_stage *s) { free(weir_stage_state(s)); }

const weir_stage_def weir__stage_count = {
    .abi = WEIR_ABI_VERSION,
    .name = "count",
    .summary = "sink: print the number of rows as one line on stdout, once the run succeeded",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ROWS,
    .out_kind = WEIR_KIND_NONE,
    .open = count_open,
    .process = count_process,
    .close = count_close,
    .commit = count_commit,
};
