/*
 * unzstd() — decompress a zstd stream: bytes in, bytes out. Frames may
 * follow one another (and skippable frames are skipped), as `zstd -d`
 * accepts. A frame cut short at the end of an input, or damaged data, is an
 * error naming the input and the compressed byte offset.
 *
 * An input is what one origin covers: when batches with a new origin
 * arrive, the previous input must have ended on a frame boundary, and
 * offsets start again at 0. Output batches are about 1 MiB.
 */
#include "stages.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define UNZSTD_CHUNK ((size_t)1 << 20)

typedef struct unzstd_state {
    ZSTD_DCtx *dctx;
    weir_batch *out;    /* being filled; NULL when none */
    const char *origin; /* of the input being decoded */
    bool started;       /* some input of this origin has been seen */
    size_t last_ret;    /* ZSTD_decompressStream's last hint; 0 = between frames */
    uint64_t coff;      /* compressed bytes of this input consumed */
    uint64_t uoff;      /* uncompressed bytes of this input emitted so far */
} unzstd_state;

static const char *unzstd_shown(const char *origin)
{
    if (!origin) return "input";
    return strcmp(origin, "-") == 0 ? "stdin" : origin;
}

/* Send the batch being filled, if it holds anything. */
static int unzstd_emit(weir_stage *s, unzstd_state *st)
{
    weir_batch *b = st->out;
    st->out = NULL;
    if (!b) return 0;
    st->uoff += b->len;
    return weir_stage_emit(s, b);
}

/* Make sure a batch with free room is being filled. */
static int unzstd_room(weir_stage *s, unzstd_state *st)
{
    if (st->out) return 0;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc == 0 && (rc = weir_batch_reserve(b, UNZSTD_CHUNK))) weir_batch_release(b);
    if (rc) return weir_stage_errorf(s, rc, "out of memory");
    b->origin = st->origin;
    b->offset = st->uoff;
    st->out = b;
    return 0;
}

/* Run src through the decoder. With src NULL: the input has ended — flush
 * what the decoder holds and check that the last frame was complete. */
static int unzstd_feed(weir_stage *s, unzstd_state *st, const void *src, size_t n)
{
    ZSTD_inBuffer zin = {src, n, 0};
    for (;;) {
        if (src && zin.pos == zin.size) break;
        if (!src && st->last_ret == 0) break;
        int rc = unzstd_room(s, st);
        if (rc) return rc;
        weir_batch *b = st->out;
        size_t size = b->cap < UNZSTD_CHUNK ? b->cap : UNZSTD_CHUNK;
        ZSTD_outBuffer out = {b->data, size, b->len};
        size_t before = out.pos;
        size_t ret = ZSTD_decompressStream(st->dctx, &out, &zin);
        b->len = out.pos;
        if (ZSTD_isError(ret))
            return weir_stage_errorf(
                s, WEIR_EDATA, "%s: corrupt zstd data at byte %" PRIu64 ": %s",
                unzstd_shown(st->origin), st->coff + zin.pos, ZSTD_getErrorName(ret));
        st->last_ret = ret;
        if (out.pos == out.size) {
            if ((rc = unzstd_emit(s, st))) return rc;
        } else if (!src && ret != 0 && out.pos == before) {
            /* Nothing more will come, and the frame is not complete. */
            return weir_stage_errorf(s, WEIR_EDATA,
                                     "%s: truncated zstd frame at end of input "
                                     "(byte %" PRIu64 ")",
                                     unzstd_shown(st->origin), st->coff);
        }
    }
    st->coff += n;
    return 0;
}

/* The current input has ended: flush, check, and send the rest. */
static int unzstd_end_input(weir_stage *s, unzstd_state *st)
{
    if (!st->started) return 0;
    int rc = unzstd_feed(s, st, NULL, 0);
    if (rc == 0) rc = unzstd_emit(s, st);
    return rc;
}

static int unzstd_open(weir_stage *s)
{
    unzstd_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->dctx = ZSTD_createDCtx();
    if (!st->dctx) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return 0;
}

static int unzstd_process(weir_stage *s, weir_batch *in)
{
    unzstd_state *st = weir_stage_state(s);
    int rc = 0;
    if (st->started && in->origin != st->origin) {
        rc = unzstd_end_input(s, st);
        ZSTD_DCtx_reset(st->dctx, ZSTD_reset_session_only);
        st->started = false;
    }
    if (rc == 0 && !st->started) {
        st->started = true;
        st->origin = in->origin;
        st->last_ret = 0;
        st->coff = st->uoff = 0;
    }
    if (rc == 0) rc = unzstd_feed(s, st, in->data, in->len);
    weir_batch_release(in);
    return rc;
}

static int unzstd_finish(weir_stage *s)
{
    return unzstd_end_input(s, weir_stage_state(s));
}

static void unzstd_close(weir_stage *s)
{
    unzstd_state *st = weir_stage_state(s);
    if (!st) return;
    weir_batch_release(st->out);
    ZSTD_freeDCtx(st->dctx);
    free(st);
}

const weir_stage_def weir__stage_unzstd = {
    .abi = WEIR_ABI_VERSION,
    .name = "unzstd",
    .summary = "decompress zstd (one or several frames) into the original bytes",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .open = unzstd_open,
    .process = unzstd_process,
    .finish = unzstd_finish,
    .close = unzstd_close,
};
