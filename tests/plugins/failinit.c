/* failinit.c — a test plugin whose init fails: it registers a stage under
 * a name a built-in already has, which weir_stage_register refuses. */
#include <weir.h>

static int failinit_process(weir_stage *s, weir_batch *in)
{
    return weir_stage_emit(s, in);
}

static const weir_stage_def clash = {
    .abi = WEIR_ABI_VERSION,
    .name = "csv",
    .summary = "a second csv",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .process = failinit_process,
};

static int failinit_init(void) { return weir_stage_register(&clash); }

WEIR_PLUGIN(failinit_init)
