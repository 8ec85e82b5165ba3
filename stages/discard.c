/*
 * discard() — a sink that releases everything it gets.
 *
 * For benchmarks: `read("x.csv") | csv() | discard()` times the
 * stages in front of it with no output cost. Bytes or rows alike.
 */
#include "stages.h"

static int discard_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    weir_batch_release(in);
    return 0;
}

const weir_stage_def weir__stage_discard = {
    .abi = WEIR_ABI_VERSION,
    .name = "discard",
    .summary = "sink that throws everything away (to time the stages before it)",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_NONE,
    .process = discard_process,
};
