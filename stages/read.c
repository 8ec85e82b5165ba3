/*
 * read(path) — the bytes of a file, of every file a glob matches (one after
 * another, in sorted order), or of stdin ("-").
 *
 * A file that starts with a zstd frame (the zstd magic number, or a
 * skippable frame's) is decompressed, whatever its name; several frames one
 * after another (`cat a.zst b.zst`) decode to the concatenation. A frame cut
 * short, or damaged, is an error naming the file and the compressed byte
 * offset — never a silently short result. With decompress=false the
 * compressed bytes pass on as they are, for a parallel unzstd() (this
 * stage's streaming decoder is one core's speed).
 *
 * Each batch says where it came from: origin is the file name ("-" for
 * stdin), offset the uncompressed offset of its first byte in that file.
 * A batch never spans two files.
 */
#include "stages.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* Large reads: one syscall moves a whole batch, and a batch is big enough
 * that the per-batch cost downstream is noise. */
#define READ_CHUNK ((size_t)1 << 20)
/* The compressed-side buffer of peek(): a header needs little. */
#define READ_PEEK_IN ((size_t)64 << 10)
/* How long a wait on a pipe goes before looking at the context again. */
#define READ_POLL_MS 100
/* The longest zstd frame header (magic, descriptor, window, dictionary
 * id, content size). */
#define READ_ZHEAD_MAX 18

/* One open input. */
typedef struct read_file {
    const char *name; /* the origin of its batches */
    int fd;           /* -1 when no file is open */
    bool is_zstd;
    bool eof;          /* read() has returned 0 */
    unsigned char *in; /* raw: sniffed bytes; zstd: compressed input */
    size_t in_cap;
    size_t in_len, in_pos; /* bytes in `in`, and how far they are used */
    uint64_t in_base;      /* compressed offset of in[0] */
    size_t last_ret;       /* ZSTD_decompressStream's last hint; 0 = between frames */
    /* The frame being decoded: its first bytes and its output so far, to
     * hold it to the content size its header declares. libzstd's
     * streaming decoder does not when a frame ends in an empty last block
     * and arrives in pieces (found by tests/fuzz/fuzz_zstd.c). */
    unsigned char fhead[READ_ZHEAD_MAX];
    size_t fhead_len;
    uint64_t fout;
    ZSTD_DCtx *dctx;       /* borrowed from the owner */
    weir_ctx *ctx;         /* the run's, to stop waiting on a pipe; NULL in peek */
    bool may_block;        /* a pipe, terminal or socket: reads can wait long */
    bool keep_zstd;        /* decompress=false: zstd passes on as it is */
} read_file;

typedef struct read_state {
    glob_t gl;
    bool have_glob;
    const char *one[1];       /* a single path (not a glob) */
    const char *const *files; /* sorted names; they are the batches' origins */
    size_t nfiles, next;
    uint64_t offset; /* uncompressed offset in the current file */
    uint64_t total;  /* bytes of all the files on disk; 0 if unknown (a pipe) */
    uint64_t before; /* bytes of the files already read */
    read_file f;
    unsigned char *in;
    ZSTD_DCtx *dctx;
} read_state;

static const char *read_shown(const char *name)
{
    return strcmp(name, "-") == 0 ? "stdin" : name;
}

static bool read_is_glob(const char *path) { return strpbrk(path, "*?[") != NULL; }

/* The zstd magic number, or a skippable frame's (0x184D2A5?): either one
 * starts a valid .zst stream. Little-endian on disk. */
static bool read_zstd_magic(const unsigned char *p)
{
    uint32_t m = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return m == ZSTD_MAGICNUMBER ||
           (m & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
}

/* read(2) that retries on EINTR. A pipe or terminal may keep us waiting
 * for ever, so there we wait in poll() slices and watch the run's context
 * (f->ctx; NULL at plan time): a cancel ends the wait within a slice.
 * @return the count, 0 at end, or -1 with errno (ECANCELED: cancelled). */
static ssize_t read_some(read_file *f, void *buf, size_t n)
{
    for (;;) {
        if (f->may_block && f->ctx) {
            if (weir_ctx_done(f->ctx)) {
                errno = ECANCELED;
                return -1;
            }
            struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
            int r = poll(&pfd, 1, READ_POLL_MS);
            if (r == 0 || (r < 0 && errno == EINTR)) continue;
            if (r < 0) return -1;
        }
        ssize_t k = read(f->fd, buf, n);
        if (k >= 0) return k;
        if (errno == EINTR) continue;
        /* A FIFO is opened without blocking (see read_file_open). */
        if (errno == EAGAIN && f->may_block) {
            if (!f->ctx) (void)poll(&(struct pollfd){.fd = f->fd, .events = POLLIN}, 1, -1);
            continue;
        }
        return -1;
    }
}

/* Record the error for the run — unless s is NULL: peek() only wants to
 * know that it cannot tell. @return code. */
static int read_fail(weir_stage *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int read_fail(weir_stage *s, int code, const char *fmt, ...)
{
    if (!s) return code;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return weir_stage_errorf(s, code, "%s", msg);
}

static int read_io_error(weir_stage *s, const read_file *f, int err)
{
    if (err == ECANCELED && f->ctx && weir_ctx_done(f->ctx)) return weir_ctx_err(f->ctx);
    return read_fail(s, WEIR_EIO, "%s: %s", read_shown(f->name), strerror(err));
}

/* Open f->name and look at its first bytes to tell zstd from raw bytes.
 * `in` (in_cap bytes) keeps what was read. */
static int read_file_open(weir_stage *s, read_file *f)
{
    if (strcmp(f->name, "-") == 0) {
        f->fd = STDIN_FILENO;
    } else {
        /* Opening a FIFO blocks until a writer comes, beyond any cancel;
         * without blocking it opens at once, and the reads wait in poll()
         * slices that watch the run's context. */
        f->fd = open(f->name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (f->fd < 0)
            return read_fail(s, WEIR_EIO, "cannot open '%s': %s", f->name,
                             strerror(errno));
        (void)posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    struct stat sb;
    f->may_block = fstat(f->fd, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode);
    f->eof = false;
    f->in_len = f->in_pos = 0;
    f->in_base = 0;
    f->last_ret = 0;
    /* A pipe may hand over fewer than 4 bytes at a time. */
    while (f->in_len < 4) {
        ssize_t k = read_some(f, f->in + f->in_len, f->in_cap - f->in_len);
        if (k < 0) return read_io_error(s, f, errno);
        if (k == 0) {
            f->eof = true;
            break;
        }
        f->in_len += (size_t)k;
    }
    f->is_zstd = !f->keep_zstd && f->in_len >= 4 && read_zstd_magic(f->in);
    if (f->is_zstd) {
        ZSTD_DCtx_reset(f->dctx, ZSTD_reset_session_only);
        f->last_ret = 1; /* a frame has begun */
        f->fhead_len = 0;
        f->fout = 0;
    }
    return 0;
}

static void read_file_close(read_file *f)
{
    if (f->fd > STDIN_FILENO) close(f->fd);
    f->fd = -1;
}

/* Decompress into buf[*n..cap) until it is full or the input has ended.
 * Sets *done at the clean end of the last frame. */
static int read_inflate(weir_stage *s, read_file *f, unsigned char *buf, size_t cap,
                        size_t *n, bool *done)
{
    ZSTD_outBuffer out = {buf, cap, *n};
    while (out.pos < out.size) {
        if (f->in_pos == f->in_len && !f->eof) {
            f->in_base += f->in_len;
            f->in_len = f->in_pos = 0;
            ssize_t k = read_some(f, f->in, f->in_cap);
            if (k < 0) return read_io_error(s, f, errno);
            if (k == 0) f->eof = true;
            f->in_len = (size_t)k;
            continue;
        }
        bool no_input = f->in_pos == f->in_len; /* and at end of file */
        if (no_input && f->last_ret == 0) {
            *done = true;
            break;
        }
        size_t before = out.pos;
        ZSTD_inBuffer zin = {f->in, f->in_len, f->in_pos};
        size_t ret = ZSTD_decompressStream(f->dctx, &out, &zin);
        if (ZSTD_isError(ret))
            return read_fail(
                s, WEIR_EDATA, "%s: corrupt zstd data at byte %" PRIu64 ": %s",
                read_shown(f->name), f->in_base + zin.pos, ZSTD_getErrorName(ret));
        size_t took = zin.pos - f->in_pos, keep = READ_ZHEAD_MAX - f->fhead_len;
        if (took < keep) keep = took;
        if (keep) memcpy(f->fhead + f->fhead_len, f->in + f->in_pos, keep);
        f->fhead_len += keep;
        f->fout += out.pos - before;
        f->in_pos = zin.pos;
        if (ret == 0) { /* a frame has ended */
            unsigned long long want = stages_zstd_legacy(f->fhead, f->fhead_len)
                                          ? ZSTD_CONTENTSIZE_UNKNOWN
                                          : ZSTD_getFrameContentSize(f->fhead, f->fhead_len);
            if (want != ZSTD_CONTENTSIZE_UNKNOWN && want != ZSTD_CONTENTSIZE_ERROR &&
                want != f->fout)
                return read_fail(s, WEIR_EDATA,
                                 "%s: corrupt zstd data at byte %" PRIu64
                                 ": the frame holds %" PRIu64 " bytes, its header says %llu",
                                 read_shown(f->name), f->in_base + f->in_pos, f->fout, want);
            f->fhead_len = 0;
            f->fout = 0;
        }
        f->last_ret = ret;
        /* With no input left, a call that neither ends the frame nor
         * flushes anything means the frame wants bytes that never come. */
        if (no_input && ret != 0 && out.pos == before)
            return read_fail(s, WEIR_EDATA,
                             "%s: truncated zstd frame at end of input "
                             "(byte %" PRIu64 ")",
                             read_shown(f->name), f->in_base + f->in_len);
    }
    *n = out.pos;
    return 0;
}

/* Fill buf[*n..cap) with the next bytes of f: raw bytes (what was sniffed,
 * then one read) or decompressed ones. Sets *done when f has ended. */
static int read_fill(weir_stage *s, read_file *f, unsigned char *buf, size_t cap,
                     size_t *n, bool *done)
{
    *done = false;
    if (f->is_zstd) return read_inflate(s, f, buf, cap, n, done);
    if (f->in_pos < f->in_len) {
        size_t k = f->in_len - f->in_pos;
        if (k > cap - *n) k = cap - *n;
        memcpy(buf + *n, f->in + f->in_pos, k);
        f->in_pos += k;
        *n += k;
        return 0;
    }
    if (f->eof) {
        *done = true;
        return 0;
    }
    ssize_t k = read_some(f, buf + *n, cap - *n);
    if (k < 0) return read_io_error(s, f, errno);
    if (k == 0) {
        f->eof = true;
        *done = true;
    }
    *n += (size_t)k;
    return 0;
}

/* The files the path names, sorted; the strings live in st. */
static int read_expand(weir_stage *s, const char *path, read_state *st)
{
    st->one[0] = path;
    st->files = st->one;
    st->nfiles = 1;
    if (strcmp(path, "-") == 0 || !read_is_glob(path)) return 0;
    int rc = glob(path, 0, NULL, &st->gl);
    if (rc == 0) {
        st->have_glob = true;
        st->files = (const char *const *)st->gl.gl_pathv;
        st->nfiles = st->gl.gl_pathc;
        return 0;
    }
    globfree(&st->gl);
    if (rc == GLOB_NOSPACE) return read_fail(s, WEIR_ENOMEM, "out of memory");
    /* A name that holds '*', '?' or '[' literally is still a file name. */
    if (access(path, F_OK) == 0) return 0;
    if (rc == GLOB_ABORTED)
        return read_fail(s, WEIR_EIO, "cannot read a directory for '%s'", path);
    return read_fail(s, WEIR_EIO, "no file matches '%s'", path);
}

static void read_close(weir_stage *s)
{
    read_state *st = weir_stage_state(s);
    if (!st) return;
    read_file_close(&st->f);
    if (st->have_glob) globfree(&st->gl);
    ZSTD_freeDCtx(st->dctx);
    free(st->in);
    free(st);
}

static int read_open(weir_stage *s)
{
    read_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->f.fd = -1;
    st->in = malloc(READ_CHUNK);
    st->dctx = ZSTD_createDCtx();
    if (!st->in || !st->dctx) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    st->f.in = st->in;
    st->f.in_cap = READ_CHUNK;
    st->f.dctx = st->dctx;
    st->f.ctx = weir_stage_ctx(s);
    st->f.keep_zstd = !weir_stage_arg_bool(s, "decompress");
    int rc = read_expand(s, weir_stage_arg_str(s, "path"), st);
    /* The on-disk size of all inputs, for progress (compressed bytes for
     * .zst: what is read is what is counted). */
    for (size_t i = 0; rc == 0 && i < st->nfiles; i++) {
        struct stat sb;
        if (strcmp(st->files[i], "-") == 0 || stat(st->files[i], &sb) != 0 ||
            !S_ISREG(sb.st_mode)) {
            st->total = 0;
            break;
        }
        st->total += (uint64_t)sb.st_size;
    }
    return rc;
}

/* How far the input is read, on disk. One lseek per 1 MiB batch. */
static void read_progress(weir_stage *s, read_state *st)
{
    if (!st->total) return;
    off_t pos = st->f.fd >= 0 ? lseek(st->f.fd, 0, SEEK_CUR) : 0;
    weir_stage_progress(s, st->before + (uint64_t)(pos > 0 ? pos : 0), st->total);
}

static int read_process(weir_stage *s, weir_batch *unused)
{
    (void)unused;
    read_state *st = weir_stage_state(s);
    weir_ctx *ctx = weir_stage_ctx(s);
    for (;;) {
        if (weir_ctx_done(ctx)) return weir_ctx_err(ctx);
        if (st->f.fd < 0) {
            if (st->next == st->nfiles) return WEIR_DONE;
            st->f.name = st->files[st->next];
            st->offset = 0;
            int rc = read_file_open(s, &st->f);
            if (rc) return rc;
        }
        weir_batch *b;
        int rc = weir_stage_batch(s, &b);
        if (rc) return weir_stage_errorf(s, rc, "out of memory");
        if ((rc = weir_batch_reserve(b, READ_CHUNK))) {
            weir_batch_release(b);
            return weir_stage_errorf(s, rc, "out of memory");
        }
        bool done;
        size_t n = 0;
        rc = read_fill(s, &st->f, b->data, READ_CHUNK, &n, &done);
        if (rc) {
            weir_batch_release(b);
            return rc;
        }
        b->len = n;
        b->origin = st->f.name;
        b->offset = st->offset;
        st->offset += n;
        read_progress(s, st);
        if (done) {
            struct stat sb;
            if (st->total && fstat(st->f.fd, &sb) == 0) st->before += (uint64_t)sb.st_size;
            read_file_close(&st->f);
            st->next++;
        }
        if (n == 0) {
            weir_batch_release(b);
            continue;
        }
        return weir_stage_emit(s, b);
    }
}

/* The path is looked at only when the run starts: a missing input is a
 * runtime error (exit 1), not a spec error. */
static int read_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    (void)out;
    if (!weir_stage_arg_str(s, "path")[0])
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "the path is empty (use \"-\" for stdin)");
    return 0;
}

/* The first bytes of the first file, decompressed if it is zstd.
 * A file that cannot be opened or decoded is the run's to report (exit 1,
 * a runtime error, not a spec error): here it only means "cannot tell",
 * and nothing is recorded. */
static long read_peek(weir_stage *s, void *buf, size_t size)
{
    const char *path = weir_stage_arg_str(s, "path");
    if (strcmp(path, "-") == 0) return WEIR_ENOTFOUND; /* stdin cannot be re-read */
    read_state st = {0};
    int rc = read_expand(NULL, path, &st);
    if (rc)
        return rc == WEIR_ENOMEM ? weir_stage_errorf(s, rc, "out of memory")
                                 : WEIR_ENOTFOUND;
    /* What a FIFO or device gives once is gone: the run must have it. */
    struct stat sb;
    if (stat(st.files[0], &sb) == 0 && !S_ISREG(sb.st_mode)) {
        if (st.have_glob) globfree(&st.gl);
        return WEIR_ENOTFOUND;
    }
    read_file f = {.name = st.files[0], .fd = -1, .in_cap = READ_PEEK_IN,
                   .keep_zstd = !weir_stage_arg_bool(s, "decompress")};
    f.in = malloc(f.in_cap);
    f.dctx = ZSTD_createDCtx();
    size_t n = 0;
    if (!f.in || !f.dctx) rc = weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    if (rc == 0) rc = read_file_open(NULL, &f);
    bool done = false;
    while (rc == 0 && !done && n < size)
        rc = read_fill(NULL, &f, buf, size, &n, &done);
    read_file_close(&f);
    ZSTD_freeDCtx(f.dctx);
    free(f.in);
    if (st.have_glob) globfree(&st.gl);
    if (rc == WEIR_ENOMEM) return rc;
    /* Damage further on is the run's to report; what decoded is good. */
    return rc && n == 0 ? WEIR_ENOTFOUND : (long)n;
}

const weir_stage_def weir__stage_read = {
    .abi = WEIR_ABI_VERSION,
    .name = "read",
    .summary = "bytes of a file, of the files a glob matches (sorted), or of "
               "stdin; zstd is decompressed by its magic number",
    .args =
        (const weir_arg_def[]){
            {"path", WEIR_ARG_STRING, NULL,
             "a file, a glob such as \"logs/*.csv.zst\" (every match, in sorted "
             "order), or \"-\" for stdin"},
            {"decompress", WEIR_ARG_BOOL, "true",
             "decompress zstd input here, on this stage's thread; false: pass it on "
             "compressed, for unzstd() after, which decodes the frames of "
             "multi-frame input (what zstd() writes) on every core"},
            {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .open = read_open,
    .process = read_process,
    .close = read_close,
    .plan = read_plan,
    .peek = read_peek,
};
