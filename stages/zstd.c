/*
 * zstd(level) — compress bytes. Each input batch becomes one complete,
 * independent zstd frame (with its content size and a checksum), so
 * replicas can compress side by side: the ordered collector puts the frames
 * back in input order, and their concatenation is a valid multi-frame .zst
 * that `zstd -d` (and read()) turns back into the input bytes exactly.
 * Bigger input batches compress better; read() gives 1 MiB.
 */
#include "stages.h"

#include <stdlib.h>
#include <zstd.h>

#define ZSTD_STAGE_MIN_LEVEL (-7)
#define ZSTD_STAGE_MAX_LEVEL 19

/* One compression context per replica, reused for every frame. */
typedef struct zstd_state {
    ZSTD_CCtx *cctx;
} zstd_state;

static int zstd_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    (void)out;
    int64_t level = weir_stage_arg_int(s, "level");
    if (level < ZSTD_STAGE_MIN_LEVEL || level > ZSTD_STAGE_MAX_LEVEL || level == 0)
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "level must be 1..19 (or -7..-1, faster), not %lld",
                                 (long long)level);
    return 0;
}

static int zstd_open(weir_stage *s)
{
    zstd_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->cctx = ZSTD_createCCtx();
    if (!st->cctx) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    int level = (int)weir_stage_arg_int(s, "level");
    size_t r = ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_contentSizeFlag, 1);
    if (ZSTD_isError(r))
        return weir_stage_errorf(s, WEIR_EINVAL, "cannot set level %d: %s", level,
                                 ZSTD_getErrorName(r));
    return 0;
}

static int zstd_process(weir_stage *s, weir_batch *in)
{
    zstd_state *st = weir_stage_state(s);
    if (in->len == 0) {
        weir_batch_release(in);
        return 0;
    }
    weir_batch *out;
    int rc = weir_stage_batch(s, &out);
    if (rc == 0 && (rc = weir_batch_reserve(out, ZSTD_compressBound(in->len))))
        weir_batch_release(out);
    if (rc) {
        weir_batch_release(in);
        return weir_stage_errorf(s, rc, "out of memory");
    }
    /* compress2 knows the whole source, so the frame records its size. */
    size_t n = ZSTD_compress2(st->cctx, out->data, out->cap, in->data, in->len);
    if (ZSTD_isError(n)) {
        weir_batch_release(in);
        weir_batch_release(out);
        return weir_stage_errorf(s, WEIR_ENOMEM, "compressing: %s", ZSTD_getErrorName(n));
    }
    out->len = n;
    out->origin = in->origin;
    out->offset = in->offset;
    weir_batch_release(in);
    return weir_stage_emit(s, out);
}

static void zstd_close(weir_stage *s)
{
    zstd_state *st = weir_stage_state(s);
    if (!st) return;
    ZSTD_freeCCtx(st->cctx);
    free(st);
}

const weir_stage_def weir__stage_zstd = {
    .abi = WEIR_ABI_VERSION,
    .name = "zstd",
    .summary = "compress bytes with zstd, one frame per batch (parallel; "
               "the frames concatenate into one .zst stream)",
    .args =
        (const weir_arg_def[]){
            {"level", WEIR_ARG_INT, "3",
             "compression level: 1 (fast) to 19 (small), or -7..-1 (faster still)"},
            {NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .flags = WEIR_STAGE_PARALLEL | WEIR_STAGE_KEEP_ORDER,
    .open = zstd_open,
    .process = zstd_process,
    .close = zstd_close,
    .plan = zstd_plan,
};
