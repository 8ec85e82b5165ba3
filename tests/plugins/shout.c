/*
 * shout.c — a test plugin: shout(), bytes → bytes, upper-cases ASCII
 * letters; parallel-safe, so workers=N makes replicas. It works on the
 * batch in place when it holds the only reference, and copies otherwise
 * (a broadcast shares one batch between consumers, read-only).
 *
 *   cc -shared -fPIC -I pipeline -o shout.so tests/plugins/shout.c
 */
#include <weir.h>

static int shout_process(weir_stage *s, weir_batch *in)
{
    weir_batch *out = in;
    if (weir_batch_shared(in)) {
        int rc = weir_stage_batch(s, &out);
        if (rc == 0) rc = weir_batch_append(out, in->data, in->len);
        if (rc) {
            weir_batch_release(in);
            weir_batch_release(out);
            return weir_stage_errorf(s, rc, "out of memory");
        }
        out->seq = in->seq;
        out->origin = in->origin;
        out->offset = in->offset;
        weir_batch_release(in);
    }
    for (size_t i = 0; i < out->len; i++)
        if (out->data[i] >= 'a' && out->data[i] <= 'z') out->data[i] -= 'a' - 'A';
    return weir_stage_emit(s, out);
}

static const weir_stage_def shout_stage = {
    .abi = WEIR_ABI_VERSION,
    .name = "shout",
    .summary = "upper-case ASCII letters (a test plugin)",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .flags = WEIR_STAGE_PARALLEL,
    .process = shout_process,
};

static int shout_init(void) { return weir_stage_register(&shout_stage); }

WEIR_PLUGIN(shout_init)
