/*
 * fuzz_zstd.c — zstd input: read() on a file holding arbitrary bytes, and
 * unzstd() on the same bytes arriving in batches of 1, 7 and all at once.
 *
 * The reference is ZSTD_decompress() on the whole buffer (every frame,
 * skippable frames skipped). Required, besides never crashing or hanging:
 *
 *   read()   a file that starts with a zstd or skippable-frame magic
 *            number decodes to exactly what ZSTD_decompress() gives, or
 *            fails with WEIR_EDATA — always when ZSTD_decompress() fails,
 *            and otherwise only when libzstd's streaming decoder refuses
 *            the input too (it is stricter in places); never a silently
 *            short result. Any other file passes through byte for byte;
 *   unzstd() the same, for every chunking, with the same error message
 *            up to the compressed byte offset it names (see
 *            cut_at_offset).
 *
 * Inputs that would decode to more than REF_CAP bytes are skipped (the
 * fuzzer's memory limit is not what is being tested). The file is a
 * memfd, reached as /proc/self/fd/N: read() opens it like any file.
 */
#include "fuzz_common.h"

#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#define REF_CAP ((size_t)8 << 20)

enum { NCHUNK = 3 };
static const size_t chunks[NCHUNK] = {1, 7, (size_t)1 << 30};
static weir_graph *g_read, *g_unzstd[NCHUNK];
static int mem_fd = -1;
static unsigned char *ref_buf, *stream_buf;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mem_fd = memfd_create("fuzz_zstd", 0);
    ref_buf = malloc(REF_CAP);
    stream_buf = malloc(REF_CAP);
    if (mem_fd < 0 || !ref_buf || !stream_buf) abort();
    char spec[256];
    snprintf(spec, sizeof spec, "read(\"/proc/self/fd/%d\") | fz_sink()", mem_fd);
    g_read = fz_compile(spec);
    for (int k = 0; k < NCHUNK; k++) {
        /* Fixed-width numbers: messages name the stage's column. */
        snprintf(spec, sizeof spec, "fz_src(chunk=%010zu) | unzstd() | fz_sink()",
                 chunks[k]);
        g_unzstd[k] = fz_compile(spec);
    }
    return 0;
}

static bool zstd_magic(const uint8_t *p, size_t n)
{
    if (n < 4) return false;
    uint32_t m = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return m == ZSTD_MAGICNUMBER || (m & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
}

/* libzstd's streaming decoder, on the whole buffer at once: it is
 * stricter than ZSTD_decompress() in places (a block longer than the
 * window allows). @return true if it accepts the input. */
static bool stream_ok(const uint8_t *data, size_t size)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) abort();
    ZSTD_inBuffer in = {data, size, 0};
    size_t ret = 0;
    bool ok = true;
    while (ok) {
        ZSTD_outBuffer out = {stream_buf, REF_CAP, 0};
        ret = ZSTD_decompressStream(d, &out, &in);
        ok = !ZSTD_isError(ret);
        if (in.pos == in.size && (ret == 0 || out.pos < out.size)) break;
    }
    ZSTD_freeDCtx(d);
    return ok && ret == 0;
}

/* The run must agree with the reference: a failure where
 * ZSTD_decompress() fails, and on success exactly its bytes. The run may
 * fail where ZSTD_decompress() succeeds only if libzstd's own streaming
 * decoder (sok) refuses the input too. */
static void expect(const fz_result *r, bool ok, const unsigned char *want, size_t wlen,
                   bool sok, const char *what)
{
    if (!ok) {
        FZ_CHECK(r->rc == WEIR_EDATA, "%s: ZSTD_decompress fails, the run gave %d (%s)",
                 what, r->rc, r->err);
        return;
    }
    if (r->rc == WEIR_EDATA && !sok) return;
    FZ_CHECK(r->rc == 0, "%s: ZSTD_decompress gives %zu bytes, the run failed: %s", what,
             wlen, r->err);
    FZ_CHECK(r->len == wlen && (wlen == 0 || memcmp(r->out, want, wlen) == 0),
             "%s: %zu bytes out, ZSTD_decompress gives %zu", what, r->len, wlen);
}

/* Where unzstd() notices damage, and which damage zstd names, can move
 * with the batch boundaries (the decoder holds a frame header or a block
 * until it is whole): messages are compared up to the offset. */
static void cut_at_offset(char *s)
{
    char *p = strstr(s, "byte ");
    if (p) *p = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t ref = ZSTD_decompress(ref_buf, REF_CAP, data, size);
    if (ZSTD_isError(ref) && ZSTD_getErrorCode(ref) == ZSTD_error_dstSize_tooSmall) return 0;
    bool ok = !ZSTD_isError(ref);
    size_t rlen = ok ? ref : 0;
    bool sok = ok && stream_ok(data, size);

    /* read(): a file with these bytes. */
    if (ftruncate(mem_fd, 0) != 0 ||
        (size && pwrite(mem_fd, data, size, 0) != (ssize_t)size))
        abort();
    fz_result r;
    fz_run(g_read, data, size, &r);
    if (zstd_magic(data, size)) {
        expect(&r, ok, ref_buf, rlen, sok, "read()");
        if (r.rc)
            FZ_CHECK(strstr(r.err, "/proc/self/fd/") && strstr(r.err, "byte "),
                     "read(): the message names no file or offset: %s", r.err);
    } else {
        expect(&r, true, data, size, true, "read() of bytes that are not zstd");
    }
    fz_result_free(&r);

    /* unzstd(): the same verdict for every chunking. */
    fz_result u[NCHUNK];
    for (int k = 0; k < NCHUNK; k++) {
        fz_run(g_unzstd[k], data, size, &u[k]);
        expect(&u[k], ok, ref_buf, rlen, sok, "unzstd()");
        cut_at_offset(u[k].err);
    }
    for (int k = 1; k < NCHUNK; k++) {
        FZ_CHECK(u[k].rc == u[0].rc, "unzstd(): chunk=1 and chunk=%zu differ: '%s' / '%s'",
                 chunks[k], u[0].err, u[k].err);
        FZ_CHECK(strcmp(u[k].err, u[0].err) == 0,
                     "unzstd(): chunk=1 and chunk=%zu say different things: '%s' / '%s'",
                     chunks[k], u[0].err, u[k].err);
    }
    for (int k = 0; k < NCHUNK; k++) fz_result_free(&u[k]);
    return 0;
}
