/*
 * unzstd() — decompress a zstd stream: bytes in, bytes out, in parallel
 * when it holds several frames. Frames may follow one another (and
 * skippable frames are skipped), as `zstd -d` accepts. A frame cut short
 * at the end of an input, or damaged data, is an error naming the input
 * and the compressed byte offset.
 *
 * The node runs as a splitter in front of N replicas (workers=auto):
 *
 *   The splitter (unz_split_*) finds whole frames in the compressed bytes
 *   (ZSTD_findFrameCompressedSize) and sends each, with its content size,
 *   to the next replica, which decodes it in one call into one batch
 *   (ZSTD_decompressDCtx, checksum checked); the ordered collector puts
 *   the batches back in order. This is how the frames zstd() writes (one
 *   per batch) decode on every core.
 *   A frame the splitter cannot hand out whole it decodes itself, by
 *   streaming, and sends the bytes for the replicas to pass on: a frame
 *   that does not say its content size, or says more than
 *   UNZSTD_FRAME_MAX (`zstd` writes one frame per file: that is libzstd's
 *   one-core speed), a damaged frame header, and a frame still
 *   incomplete at the end of an input (truncated): their messages are the
 *   streaming decoder's, as before. A whole frame that does not decode is
 *   reported at its first byte, which is where the streaming decoder
 *   reports it too when it holds the whole frame. Errors are reported in
 *   input order (inorder.h): the first one in the input, whatever the
 *   timing.
 *
 * An input is what one origin covers: when batches with a new origin
 * arrive, the previous input must have ended on a frame boundary, and
 * offsets start again at 0. Output batches: one per frame (as big as the
 * frame's content), or UNZSTD_CHUNK from the streaming decoder.
 */
#include "inorder.h"
#include "stages.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#define UNZSTD_CHUNK ((size_t)1 << 18)
/* The longest frame header (zstd format: magic, descriptor, window,
 * dictionary id, content size). */
#define UNZSTD_HEADER_MAX 18
/* The largest frame content a replica decodes whole (its one batch). */
#define UNZSTD_FRAME_MAX ((uint64_t)8 << 20)
/* Compressed bytes held looking for a frame's end before the splitter
 * streams it instead (a frame within UNZSTD_FRAME_MAX compresses to
 * less, unless it is damaged). */
#define UNZSTD_HOLD_MAX ((size_t)9 << 20)
/* Chunks in flight per replica. */
#define UNZSTD_AHEAD 2

/* What the splitter puts after each chunk's bytes (only unzstd's replicas
 * read chunks): a trailer, so a replica passes decoded bytes on without
 * moving them. */
typedef struct unz_tail {
    uint64_t magic;
    inorder *o;
    uint64_t index; /* 0, 1, 2, … in input order */
    uint64_t coff;  /* UNZ_FRAME: the frame's compressed offset in its input */
    uint64_t usize; /* UNZ_FRAME: its content size */
    uint32_t flags; /* UNZ_* */
    uint32_t unused;
} unz_tail;

#define UNZ_MAGIC UINT64_C(0x6c6961747a6e75fe) /* "\xfeunztail" */
#define UNZ_TAIL sizeof(unz_tail)

enum {
    UNZ_FRAME = 0x1, /* one whole frame: decode it */
    UNZ_PLAIN = 0x2, /* bytes the splitter decoded: pass them on */
};

static const char *unzstd_shown(const char *origin)
{
    if (!origin) return "input";
    return strcmp(origin, "-") == 0 ? "stdin" : origin;
}

/* ---- the splitter ------------------------------------------------------------------------- */

typedef struct unz_split {
    weir_stage *s;
    inorder *o;
    int guess;   /* replicas to plan for until they say */
    bool dead;   /* it failed: the run is ending */
    int ecode;   /* an error found here, kept until its turn (inorder.h) */
    char emsg[768];
    uint64_t next_index;
    /* the input */
    const char *origin;
    bool started;
    unsigned char *buf; /* compressed bytes not yet cut or decoded */
    size_t len, cap;
    uint64_t buf_off;   /* compressed offset of buf[0] */
    uint64_t uoff;      /* uncompressed offset of the next output byte */
    /* the streaming decoder, for what cannot be handed out whole */
    bool streaming;
    ZSTD_DCtx *dctx;
    weir_batch *out;
    size_t last_ret;    /* ZSTD_decompressStream's last hint; 0 = between frames */
    /* The frame being decoded: its first bytes and its output so far, to
     * hold it to the content size its header declares. libzstd's
     * streaming decoder does not when a frame ends in an empty last block
     * (found by tests/fuzz/fuzz_zstd.c): damage there would be a silently
     * short result. */
    unsigned char fhead[UNZSTD_HEADER_MAX];
    size_t fhead_len;
    uint64_t fout;
} unz_split;

static int unz_failf(unz_split *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int unz_failf(unz_split *st, const char *fmt, ...)
{
    if (!st->ecode) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->emsg, sizeof st->emsg, fmt, ap);
        va_end(ap);
        st->ecode = WEIR_EDATA;
    }
    return WEIR_EDATA;
}

/* Send b (its bytes, then room for the trailer) as the next chunk. */
static int unz_send(unz_split *st, weir_batch *b, uint32_t flags, uint64_t coff, uint64_t usize)
{
    int rc = inorder_throttle(st->o, st->next_index, st->guess, UNZSTD_AHEAD, st->s);
    if (rc == 0 && b->cap - b->len < UNZ_TAIL && weir_batch_reserve(b, UNZ_TAIL))
        rc = weir_stage_errorf(st->s, WEIR_ENOMEM, "out of memory");
    if (rc) {
        weir_batch_release(b);
        return rc;
    }
    unz_tail t = {.magic = UNZ_MAGIC, .o = st->o, .index = st->next_index++, .coff = coff,
                  .usize = usize, .flags = flags};
    memcpy(b->data + b->len, &t, UNZ_TAIL);
    b->len += UNZ_TAIL;
    b->origin = st->origin;
    return weir_stage_emit(st->s, b);
}

/* The streaming decoder's batch, if it holds anything. */
static int unz_stream_flush(unz_split *st)
{
    weir_batch *b = st->out;
    st->out = NULL;
    if (!b) return 0;
    if (!b->len) {
        weir_batch_release(b);
        return 0;
    }
    st->uoff += b->len;
    return unz_send(st, b, UNZ_PLAIN, 0, 0);
}

/* Run buf through the streaming decoder, up to the end of the frame it is
 * in (the rest stays in buf, for whole frames). With at_end, the input has
 * ended: buf is all there is, and a frame left open is an error. */
static int unz_stream(unz_split *st, bool at_end)
{
    ZSTD_inBuffer zin = {st->buf, st->len, 0};
    int rc = 0;
    for (;;) {
        if (!at_end && zin.pos == zin.size) break;
        if (!st->out) {
            weir_batch *b;
            if ((rc = weir_stage_batch(st->s, &b)) == 0 &&
                (rc = weir_batch_reserve(b, UNZSTD_CHUNK + UNZ_TAIL)))
                weir_batch_release(b);
            if (rc) return weir_stage_errorf(st->s, rc, "out of memory");
            b->offset = st->uoff;
            st->out = b;
        }
        weir_batch *b = st->out;
        ZSTD_outBuffer out = {b->data, UNZSTD_CHUNK, b->len};
        size_t before = out.pos, in_before = zin.pos;
        size_t ret = ZSTD_decompressStream(st->dctx, &out, &zin);
        b->len = out.pos;
        if (ZSTD_isError(ret)) {
            rc = unz_failf(st, "%s: corrupt zstd data at byte %" PRIu64 ": %s",
                           unzstd_shown(st->origin), st->buf_off + zin.pos,
                           ZSTD_getErrorName(ret));
            break;
        }
        size_t took = zin.pos - in_before, keep = UNZSTD_HEADER_MAX - st->fhead_len;
        if (took < keep) keep = took;
        if (keep) memcpy(st->fhead + st->fhead_len, st->buf + in_before, keep);
        st->fhead_len += keep;
        st->fout += out.pos - before;
        st->last_ret = ret;
        if (ret == 0) { /* the frame has ended: back to whole frames */
            unsigned long long want =
                stages_zstd_legacy(st->fhead, st->fhead_len)
                    ? ZSTD_CONTENTSIZE_UNKNOWN
                    : ZSTD_getFrameContentSize(st->fhead, st->fhead_len);
            if (want != ZSTD_CONTENTSIZE_UNKNOWN && want != ZSTD_CONTENTSIZE_ERROR &&
                want != st->fout) {
                rc = unz_failf(st,
                               "%s: corrupt zstd data at byte %" PRIu64
                               ": the frame holds %" PRIu64 " bytes, its header says %llu",
                               unzstd_shown(st->origin), st->buf_off + zin.pos, st->fout,
                               want);
                break;
            }
            st->fhead_len = 0;
            st->fout = 0;
            st->streaming = false;
            rc = unz_stream_flush(st);
            break;
        }
        if (out.pos == out.size) {
            if ((rc = unz_stream_flush(st))) break;
        } else if (at_end && zin.pos == zin.size && out.pos == before) {
            /* Nothing more will come, and the frame is not complete. */
            rc = unz_failf(st, "%s: truncated zstd frame at end of input (byte %" PRIu64 ")",
                           unzstd_shown(st->origin), st->buf_off + zin.pos);
            break;
        }
    }
    memmove(st->buf, st->buf + zin.pos, st->len - zin.pos);
    st->len -= zin.pos;
    st->buf_off += zin.pos;
    return rc;
}

/* Hand out the whole frames at the start of buf; stream what cannot be.
 * With at_end, nothing more comes for this input. */
static int unz_cut(unz_split *st, bool at_end)
{
    int rc = 0;
    while (!rc && (st->len || (at_end && st->streaming))) {
        if (st->streaming) {
            rc = unz_stream(st, at_end);
            if (!rc && st->streaming) break; /* wants more input */
            continue;
        }
        /* The magic number first, whole: libzstd's streaming decoder
         * recognises a legacy (v0.5-v0.7) frame only when its first call
         * holds all four bytes, and bytes that are not zstd at all get
         * the same message however they are batched. */
        if (st->len < 4 && !at_end) break;
        uint32_t m = st->len < 4 ? 0
                                 : (uint32_t)st->buf[0] | (uint32_t)st->buf[1] << 8 |
                                       (uint32_t)st->buf[2] << 16 | (uint32_t)st->buf[3] << 24;
        if (st->len >= 4 && m != ZSTD_MAGICNUMBER &&
            (m & ZSTD_MAGIC_SKIPPABLE_MASK) != ZSTD_MAGIC_SKIPPABLE_START &&
            !stages_zstd_legacy(st->buf, st->len)) {
            /* libzstd's words, as read()'s streaming decoder gives them. */
            return unz_failf(st, "%s: corrupt zstd data at byte %" PRIu64 ": %s",
                             unzstd_shown(st->origin), st->buf_off,
                             ZSTD_getErrorString(ZSTD_error_prefix_unknown));
        }
        size_t fsize = ZSTD_findFrameCompressedSize(st->buf, st->len);
        unsigned long long usize = ZSTD_CONTENTSIZE_UNKNOWN;
        bool whole = !ZSTD_isError(fsize);
        if (whole) {
            usize = ZSTD_getFrameContentSize(st->buf, fsize);
        } else if (ZSTD_getErrorCode(fsize) == ZSTD_error_srcSize_wrong && !at_end &&
                   st->len < UNZSTD_HOLD_MAX) {
            /* Not all here yet: wait for it, unless its header already
             * says it will not be handed out whole. */
            if (st->len < UNZSTD_HEADER_MAX) break;
            unsigned long long want = ZSTD_getFrameContentSize(st->buf, st->len);
            if (want != ZSTD_CONTENTSIZE_UNKNOWN && want != ZSTD_CONTENTSIZE_ERROR &&
                want <= UNZSTD_FRAME_MAX)
                break;
        }
        if (!whole || usize == ZSTD_CONTENTSIZE_UNKNOWN || usize == ZSTD_CONTENTSIZE_ERROR ||
            usize > UNZSTD_FRAME_MAX || stages_zstd_legacy(st->buf, st->len)) {
            /* Damaged, cut short, too big, of unknown size, or legacy:
             * decode it here. */
            ZSTD_DCtx_reset(st->dctx, ZSTD_reset_session_only);
            st->streaming = true;
            st->last_ret = 1;
            st->fhead_len = 0;
            st->fout = 0;
            continue;
        }
        if ((m & ZSTD_MAGIC_SKIPPABLE_MASK) != ZSTD_MAGIC_SKIPPABLE_START) {
            weir_batch *b;
            if ((rc = weir_stage_batch(st->s, &b)) == 0 &&
                (rc = weir_batch_append(b, st->buf, fsize)))
                weir_batch_release(b);
            if (rc) return weir_stage_errorf(st->s, rc, "out of memory");
            b->offset = st->uoff;
            st->uoff += usize;
            rc = unz_send(st, b, UNZ_FRAME, st->buf_off, usize);
        }
        memmove(st->buf, st->buf + fsize, st->len - fsize);
        st->len -= fsize;
        st->buf_off += fsize;
    }
    return rc;
}

/* A failure found here, reported in input order like a replica's. */
static int unz_settle(unz_split *st, int rc)
{
    if (rc && rc != WEIR_DONE) st->dead = true;
    return inorder_settle(st->s, st->o, st->next_index, rc, st->ecode,
                          st->ecode ? st->emsg : NULL);
}

static int unz_end_input(unz_split *st)
{
    if (!st->started) return 0;
    st->started = false;
    int rc = unz_cut(st, true);
    if (!rc) rc = unz_stream_flush(st);
    return rc;
}

static int unz_split_open(weir_stage *s)
{
    unz_split *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->s = s;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    st->guess = cpus > 0 ? (int)cpus : 1;
    st->dctx = ZSTD_createDCtx();
    st->o = calloc(1, sizeof *st->o);
    if (!st->dctx || !st->o) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    inorder_init(st->o);
    return 0;
}

static int unz_split_process(weir_stage *s, weir_batch *in)
{
    unz_split *st = weir_stage_state(s);
    int rc = 0;
    if (st->dead) {
        weir_batch_release(in);
        return WEIR_DONE;
    }
    if (st->started && in->origin != st->origin) rc = unz_end_input(st);
    if (!rc && !st->started) {
        st->started = true;
        st->origin = in->origin;
        st->len = 0;
        st->buf_off = st->uoff = 0;
        st->streaming = false;
    }
    if (!rc && st->cap - st->len < in->len) {
        size_t cap = st->cap ? st->cap : (size_t)1 << 20;
        while (cap - st->len < in->len) cap *= 2;
        unsigned char *nb = realloc(st->buf, cap);
        if (!nb) rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        else st->buf = nb, st->cap = cap;
    }
    if (!rc) {
        memcpy(st->buf + st->len, in->data, in->len);
        st->len += in->len;
        rc = unz_cut(st, false);
    }
    weir_batch_release(in);
    return rc ? unz_settle(st, rc) : 0;
}

static int unz_split_finish(weir_stage *s)
{
    unz_split *st = weir_stage_state(s);
    if (st->dead) return 0;
    int rc = unz_end_input(st);
    return rc ? unz_settle(st, rc) : 0;
}

static void unz_split_close(weir_stage *s)
{
    unz_split *st = weir_stage_state(s);
    if (!st) return;
    weir_batch_release(st->out);
    ZSTD_freeDCtx(st->dctx);
    if (st->o && inorder_release(st->o)) {
        inorder_fini(st->o);
        free(st->o);
    }
    free(st->buf);
    free(st);
}

static const weir_stage_def unzstd_split_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "unzstd_split",
    .summary = "cut zstd into whole frames, for unzstd's replicas",
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .open = unz_split_open,
    .process = unz_split_process,
    .finish = unz_split_finish,
    .close = unz_split_close,
};

/* ---- the replicas ------------------------------------------------------------------------- */

typedef struct unzstd_state {
    ZSTD_DCtx *dctx;
    inorder *o; /* the node's, from the first chunk */
    char emsg[768];
} unzstd_state;

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
    unz_tail t;
    if (in->len < UNZ_TAIL ||
        (memcpy(&t, in->data + in->len - UNZ_TAIL, UNZ_TAIL), t.magic != UNZ_MAGIC)) {
        weir_batch_release(in);
        return weir_stage_errorf(s, WEIR_EINVAL, "internal error: input did not come "
                                                 "through unzstd's splitter");
    }
    if (!st->o) {
        st->o = t.o;
        inorder_retain(st->o);
        inorder_replicas(st->o, weir_stage_replicas(s));
    }
    in->len -= UNZ_TAIL;
    int rc = 0;
    const char *msg = NULL;
    if (t.flags & UNZ_PLAIN) {
        rc = weir_stage_emit(s, in);
    } else {
        weir_batch *out;
        rc = weir_stage_batch(s, &out);
        if (rc == 0 && (rc = weir_batch_reserve(out, t.usize ? t.usize : 1)))
            weir_batch_release(out);
        if (rc) {
            weir_batch_release(in);
            return weir_stage_errorf(s, rc, "out of memory");
        }
        size_t got = ZSTD_decompressDCtx(st->dctx, out->data, t.usize, in->data, in->len);
        if (ZSTD_isError(got) || got != t.usize) {
            /* At the frame's start: where libzstd's streaming decoder says
             * it too when it holds the whole frame (read() mostly does). */
            if (ZSTD_isError(got))
                snprintf(st->emsg, sizeof st->emsg,
                         "%s: corrupt zstd data at byte %" PRIu64 ": %s",
                         unzstd_shown(in->origin), t.coff, ZSTD_getErrorName(got));
            else
                snprintf(st->emsg, sizeof st->emsg,
                         "%s: corrupt zstd data at byte %" PRIu64 ": the frame holds %zu "
                         "bytes, its header says %" PRIu64,
                         unzstd_shown(in->origin), t.coff + in->len, got, t.usize);
            msg = st->emsg;
            rc = WEIR_EDATA;
            weir_batch_release(out);
        } else {
            out->len = got;
            out->origin = in->origin;
            out->offset = in->offset;
            rc = weir_stage_emit(s, out);
        }
        weir_batch_release(in);
    }
    if (rc) return inorder_settle(s, st->o, t.index, rc, WEIR_EDATA, msg);
    return inorder_done_chunk(st->o, t.index, NULL, 0);
}

static void unzstd_close(weir_stage *s)
{
    unzstd_state *st = weir_stage_state(s);
    if (!st) return;
    ZSTD_freeDCtx(st->dctx);
    if (st->o && inorder_release(st->o)) {
        inorder_fini(st->o);
        free(st->o);
    }
    free(st);
}

/* The first bytes it would produce, for a parser's plan: the upstream's
 * first bytes, decoded. */
static long unzstd_peek(weir_stage *s, void *buf, size_t size)
{
    size_t cap = size + ((size_t)64 << 10);
    unsigned char *c = malloc(cap);
    if (!c) return WEIR_ENOMEM;
    long n = weir_stage_peek(s, c, cap);
    if (n < 0) {
        free(c);
        return n;
    }
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer zin = {c, (size_t)n, 0};
    ZSTD_outBuffer out = {buf, size, 0};
    while (d && out.pos < out.size) {
        size_t before = out.pos, in_before = zin.pos;
        size_t ret = ZSTD_decompressStream(d, &out, &zin);
        if (ZSTD_isError(ret) || (ret == 0 && zin.pos == zin.size)) break;
        if (out.pos == before && zin.pos == in_before) break; /* wants more than we have */
    }
    ZSTD_freeDCtx(d);
    free(c);
    if (!d) return WEIR_ENOMEM;
    /* Damage is the run's to report; nothing decoded: cannot tell. */
    return out.pos ? (long)out.pos : WEIR_ENOTFOUND;
}

const weir_stage_def weir__stage_unzstd = {
    .abi = WEIR_ABI_VERSION,
    .name = "unzstd",
    .summary = "decompress zstd (one or several frames) into the original bytes; "
               "frames decode in parallel",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_BYTES,
    .flags = WEIR_STAGE_PARALLEL | WEIR_STAGE_KEEP_ORDER,
    .open = unzstd_open,
    .process = unzstd_process,
    .close = unzstd_close,
    .peek = unzstd_peek,
    .splitter = &unzstd_split_def,
};
