/*
 * fuzz_common.h — what the libFuzzer harnesses share: an in-memory source
 * and a capturing sink, registered as stages so that a harness builds its
 * pipelines from spec text once and re-runs them on every input.
 *
 *   fz_src(chunk=K)  bytes source: the current input (fz_in, fz_len, any
 *                    bytes, NULs included) in batches of K bytes, with
 *                    origin "fuzz" and exact offsets; peek() gives its
 *                    start, as read() does for a file
 *   fz_sink()        sink: bytes are appended as they are; rows are
 *                    appended as a length-prefixed record per row (field
 *                    count, then each field's length and bytes), so that
 *                    no field content can be mistaken for a separator
 *
 * Header-only; each harness includes it once. A run at a time.
 */
#ifndef WEIR_FUZZ_COMMON_H
#define WEIR_FUZZ_COMMON_H

#include <weir.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The input of the pipeline being run. */
static const unsigned char *fz_in;
static size_t fz_len;

/* What the sink captured. */
typedef struct fz_buf {
    unsigned char *p;
    size_t len, cap;
} fz_buf;

static fz_buf fz_out;

static void fz_put(fz_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n > cap) cap *= 2;
        unsigned char *np = realloc(b->p, cap);
        if (!np) abort(); /* the fuzzer's rss limit, not a finding */
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void fz_put_u32(fz_buf *b, uint32_t v) { fz_put(b, &v, sizeof v); }

/* ---- fz_src ----------------------------------------------------------------------------- */

typedef struct fz_src_state {
    size_t off, chunk;
} fz_src_state;

static int fz_src_open(weir_stage *s)
{
    fz_src_state *st = calloc(1, sizeof *st);
    if (!st) return WEIR_ENOMEM;
    st->chunk = (size_t)weir_stage_arg_int(s, "chunk");
    if (st->chunk == 0) st->chunk = 1;
    weir_stage_set_state(s, st);
    return 0;
}

static int fz_src_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    fz_src_state *st = weir_stage_state(s);
    if (st->off >= fz_len) return WEIR_DONE;
    size_t n = fz_len - st->off < st->chunk ? fz_len - st->off : st->chunk;
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    if ((rc = weir_batch_append(b, fz_in + st->off, n))) {
        weir_batch_release(b);
        return rc;
    }
    b->origin = "fuzz";
    b->offset = st->off;
    st->off += n;
    return weir_stage_emit(s, b);
}

static long fz_src_peek(weir_stage *s, void *buf, size_t size)
{
    (void)s;
    size_t n = fz_len < size ? fz_len : size;
    if (n) memcpy(buf, fz_in, n);
    return (long)n;
}

static void fz_src_close(weir_stage *s) { free(weir_stage_state(s)); }

static const weir_stage_def fz_src_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "fz_src",
    .summary = "fuzz: the current input's bytes, in chunks",
    .args = (const weir_arg_def[]){{"chunk", WEIR_ARG_INT, "65536", "bytes per batch"},
                                   {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .open = fz_src_open,
    .process = fz_src_process,
    .close = fz_src_close,
    .peek = fz_src_peek,
};

/* ---- fz_sink ---------------------------------------------------------------------------- */

static int fz_sink_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    if (in->kind == WEIR_KIND_BYTES) {
        fz_put(&fz_out, in->data, in->len);
    } else {
        for (uint32_t r = 0; r < in->nrows; r++) {
            fz_put_u32(&fz_out, in->ncols);
            for (uint32_t c = 0; c < in->ncols; c++) {
                /* Not weir_batch_field(): rows of empty fields may have no
                 * arena (data NULL), and NULL + 0 is undefined in C. */
                const weir_field *f = &in->fields[(size_t)r * in->ncols + c];
                fz_put_u32(&fz_out, f->len);
                if (f->len) fz_put(&fz_out, in->data + f->off, f->len);
            }
        }
    }
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def fz_sink_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "fz_sink",
    .summary = "fuzz: capture bytes, or rows length-prefixed",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_NONE,
    .process = fz_sink_process,
};

/* ---- pipelines ---------------------------------------------------------------------------- */

static void fz_register(void)
{
    static int done;
    if (done) return;
    done = 1;
    if (weir_stage_register(&fz_src_def) || weir_stage_register(&fz_sink_def)) abort();
}

/* A pipeline compiled once from spec text; a harness bug if it fails. */
static inline weir_graph *fz_compile(const char *spec)
{
    fz_register();
    weir_graph *g;
    char err[1024];
    if (weir_spec_compile(&g, spec, strlen(spec), "<fuzz>", NULL, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz harness: cannot compile '%s': %s\n", spec, err);
        abort();
    }
    return g;
}

/* One run's result: the code, the message, and what the sink captured. */
typedef struct fz_result {
    int rc;
    char err[1024];
    unsigned char *out;
    size_t len;
} fz_result;

/* Run g over data. Workers are plain threads: libFuzzer and the
 * sanitizers see every one, and no OpenMP pool outlives a run. */
static inline void fz_run(weir_graph *g, const unsigned char *data, size_t len, fz_result *r)
{
    fz_in = data;
    fz_len = len;
    fz_out.len = 0;
    weir_run_opts o = {.launcher = WEIR_LAUNCH_PTHREAD, .max_workers = 2};
    r->rc = weir_graph_run(g, NULL, &o);
    snprintf(r->err, sizeof r->err, "%s", r->rc ? weir_graph_errmsg(g) : "");
    r->out = malloc(fz_out.len + 1);
    if (!r->out) abort();
    if (fz_out.len) memcpy(r->out, fz_out.p, fz_out.len);
    r->len = fz_out.len;
}

static inline void fz_result_free(fz_result *r)
{
    free(r->out);
    r->out = NULL;
}

/* Print what differs and abort: libFuzzer saves the input as a crash. */
#define FZ_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n  ", #cond,        \
                    __FILE__, __LINE__);                                       \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

#endif
