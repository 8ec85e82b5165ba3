/*
 * concat(a, b, …) — ordered fan-in: every batch of the first input, then
 * every batch of the second, and so on. The runtime reads the inputs one
 * after another; the stage passes each batch on. Later inputs wait, bounded
 * by their channels, while earlier ones drain.
 */
#include "stages.h"

static int concat_process(weir_stage *s, weir_batch *in)
{
    return weir_stage_emit(s, in);
}

const weir_stage_def weir__stage_concat = {
    .abi = WEIR_ABI_VERSION,
    .name = "concat",
    .summary = "join several streams of one kind, each input in full, in order",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_ANY,
    .flags = WEIR_STAGE_MULTI_IN | WEIR_STAGE_SEQ_IN,
    .process = concat_process,
};
