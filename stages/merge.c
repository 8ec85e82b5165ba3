/*
 * merge(a, b, …) — unordered fan-in: batches from every input, interleaved
 * as they arrive. The runtime feeds all inputs into one MPMC channel that
 * closes when the last input ends; the stage passes each batch on.
 */
#include "stages.h"

static int merge_process(weir_stage *s, weir_batch *in)
{
    return weir_stage_emit(s, in);
}

const weir_stage_def weir__stage_merge = {
    .abi = WEIR_ABI_VERSION,
    .name = "merge",
    .summary = "join several streams of one kind, interleaved as they arrive",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_ANY,
    .flags = WEIR_STAGE_MULTI_IN,
    .process = merge_process,
};
