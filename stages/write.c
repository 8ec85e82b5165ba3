/*
 * write(path) — the sink that puts a stream into a file, or on stdout ("-").
 *
 * Bytes are written as they are. Rows are formatted by the target's
 * extension: .csv (with a header) or .jsonl, either optionally followed by
 * .zst (one zstd frame, level 3, with a checksum); on stdout, and on a
 * device or FIFO whose name has no such extension, rows are CSV.
 *
 * Data safety (DESIGN.md, "Output and data safety"): a regular file is
 * written to a temporary beside it (".NAME.weir-XXXXXX"), synced when the
 * input ends, and renamed over the target in commit(), i.e. only when the
 * whole run succeeded; after an error or a cancel, close() removes it and
 * the target is untouched. Devices and FIFOs are written directly. A
 * missing directory is an error; weir never creates one. A closed pipe
 * (EPIPE) on stdout, a FIFO or a device ends the stage quietly, like other
 * Unix tools when a `head` downstream has had enough. Waits on a pipe (for
 * its reader to open it, or to read) watch the run's context, so a cancel
 * is not held up by a slow reader.
 */
#include "stages.h"

#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* How long a wait on a pipe goes before looking at the context again. */
#define WRITE_POLL_MS 100
/* Output is gathered and written in large pieces. */
#define WRITE_BUF ((size_t)1 << 20)
/* A bytes batch at least this big goes out without a copy. */
#define WRITE_DIRECT_MIN ((size_t)64 << 10)
/* Rows formatted per step, so the buffer stays near WRITE_BUF. */
#define WRITE_ROW_STEP 1024u
#define WRITE_ZSTD_LEVEL 3

typedef enum write_mode {
    WRITE_STDOUT,
    WRITE_DIRECT, /* a device or FIFO */
    WRITE_TEMP,   /* a regular file, through a temporary */
} write_mode;

typedef enum write_fmt {
    WRITE_FMT_NONE, /* the extension names no row format */
    WRITE_FMT_CSV,
    WRITE_FMT_JSONL,
} write_fmt;

typedef struct write_state {
    const char *path; /* as the user wrote it, for messages */
    write_mode mode;
    int fd;       /* -1 once closed */
    char *target; /* WRITE_TEMP: what the temporary becomes */
    char *tmp;    /* WRITE_TEMP: the temporary, until renamed */
    write_fmt fmt;
    bool zst;            /* rows are compressed (".zst" extension) */
    weir_kind kind;      /* of the first batch; NONE before it */
    weir_schema *schema; /* rows: the columns the CSV header named */
    weir_batch *buf;     /* output gathered before a write */
    ZSTD_CCtx *cctx;     /* rows to .zst */
    unsigned char *zbuf; /* compressed output */
    size_t zcap;
    bool stopped;  /* the reader went away (EPIPE) */
    bool own_fd;   /* fd is ours to close */
    bool nonblock; /* a pipe opened O_NONBLOCK: waits happen in poll() */
    weir_ctx *ctx; /* the run's, to stop waiting on a slow reader */
} write_state;

/* The format an extension names: .csv / .jsonl, optionally + .zst. */
static write_fmt write_format_of(const char *path, bool *zst)
{
    size_t n = strlen(path);
    *zst = n > 4 && strcasecmp(path + n - 4, ".zst") == 0;
    if (*zst) n -= 4;
    if (n > 4 && strncasecmp(path + n - 4, ".csv", 4) == 0) return WRITE_FMT_CSV;
    if (n > 6 && strncasecmp(path + n - 6, ".jsonl", 6) == 0) return WRITE_FMT_JSONL;
    *zst = false;
    return WRITE_FMT_NONE;
}

static int write_format_error(weir_stage *s, const char *path)
{
    return weir_stage_errorf(s, WEIR_ESPEC,
                             "cannot tell the format of '%s': use .csv, .jsonl "
                             "(optionally .zst), or to_csv()/to_jsonl() before write",
                             path);
}

/* "/dev/stdout" is fd 1 as it is: opening it again would start a regular
 * file at offset 0, and renaming over it would replace the file the shell
 * redirected to. */
static bool write_is_stdout(const char *path)
{
    return strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0;
}

/* A device or FIFO that exists: written directly, and rows default to CSV. */
static bool write_is_special(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode);
}

static int write_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)out;
    const char *path = weir_stage_arg_str(s, "path");
    if (!path[0])
        return weir_stage_errorf(s, WEIR_ESPEC,
                                 "the path is empty (use \"-\" for stdout)");
    /* A known schema means rows; for rows of unknown schema, and for bytes,
     * the check waits for the first batch. */
    bool zst;
    if (in && !write_is_stdout(path) && write_format_of(path, &zst) == WRITE_FMT_NONE &&
        !write_is_special(path))
        return write_format_error(s, path);
    return 0;
}

/* A name for the temporary beside target, created like mkstemp(3) but
 * with mode 0666 so that the umask applies as to any new file. */
static int write_make_temp(weir_stage *s, write_state *st)
{
    const char *slash = strrchr(st->target, '/');
    const char *base = slash ? slash + 1 : st->target;
    int dirlen = slash ? (int)(slash - st->target) : 0;
    size_t size = strlen(st->target) + 32;
    st->tmp = malloc(size);
    if (!st->tmp) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    static const char alnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned char rnd[6];
        if (getentropy(rnd, sizeof rnd) != 0) {
            uint64_t t = weir_now_ns() ^ ((uint64_t)getpid() << 20) ^ (uint64_t)attempt;
            for (size_t i = 0; i < sizeof rnd; i++)
                rnd[i] = (unsigned char)(t >> (i * 7));
        }
        char x[7];
        for (size_t i = 0; i < sizeof rnd; i++)
            x[i] = alnum[rnd[i] % (sizeof alnum - 1)];
        x[6] = '\0';
        if (slash)
            snprintf(st->tmp, size, "%.*s/.%s.weir-%s", dirlen, st->target, base, x);
        else
            snprintf(st->tmp, size, ".%s.weir-%s", base, x);
        st->fd = open(st->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (st->fd >= 0) {
            st->own_fd = true;
            return 0;
        }
        if (errno != EEXIST) break;
    }
    int err = errno;
    free(st->tmp);
    st->tmp = NULL;
    return weir_stage_errorf(s, WEIR_EIO, "cannot create '%s': %s", st->path,
                             strerror(err));
}

/* A device or FIFO. A FIFO waits for its reader, as `cat > fifo` does,
 * but a cancel ends the wait: opening without blocking fails (ENXIO)
 * until a reader is there. The FIFO stays non-blocking (see write_all). */
static int write_open_direct(weir_stage *s, write_state *st, bool fifo)
{
    for (;;) {
        st->fd = open(st->path, O_WRONLY | O_CLOEXEC | (fifo ? O_NONBLOCK : 0));
        if (st->fd >= 0) break;
        if (!fifo || errno != ENXIO)
            return weir_stage_errorf(s, WEIR_EIO, "cannot open '%s': %s", st->path,
                                     strerror(errno));
        int rc = weir_ctx_wait(st->ctx, (uint64_t)WRITE_POLL_MS * 1000000u);
        if (rc != WEIR_EAGAIN) return rc;
    }
    st->own_fd = true;
    st->nonblock = fifo;
    return 0;
}

/* Where the output goes: stdout, a device or FIFO, or a temporary. */
static int write_open_target(weir_stage *s, write_state *st)
{
    if (write_is_stdout(st->path)) {
        st->mode = WRITE_STDOUT;
        st->fd = STDOUT_FILENO;
        /* A pipe whose reader stalls would block write(2) beyond a cancel.
         * Setting O_NONBLOCK on fd 1 would change it for every process
         * sharing it; a second open of the same pipe is ours alone. Where
         * that fails (no /proc), writes block as usual. */
        struct stat osb;
        if (fstat(STDOUT_FILENO, &osb) == 0 && S_ISFIFO(osb.st_mode)) {
            int fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd >= 0) {
                st->fd = fd;
                st->own_fd = st->nonblock = true;
            }
        }
        return 0;
    }
    struct stat sb;
    bool exists = stat(st->path, &sb) == 0;
    if (exists && S_ISDIR(sb.st_mode))
        return weir_stage_errorf(s, WEIR_EIO, "cannot write '%s': Is a directory",
                                 st->path);
    if (exists && !S_ISREG(sb.st_mode)) {
        st->mode = WRITE_DIRECT;
        return write_open_direct(s, st, S_ISFIFO(sb.st_mode));
    }
    st->mode = WRITE_TEMP;
    /* Through a symlink, replace the file it points to, not the link. */
    struct stat lsb;
    if (lstat(st->path, &lsb) == 0 && S_ISLNK(lsb.st_mode))
        st->target = realpath(st->path, NULL);
    if (!st->target) st->target = strdup(st->path);
    if (!st->target) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    int rc = write_make_temp(s, st);
    if (rc) return rc;
    /* A file that is replaced keeps its permissions. */
    if (exists && fchmod(st->fd, sb.st_mode & 07777) != 0)
        return weir_stage_errorf(s, WEIR_EIO, "cannot set the mode of '%s': %s", st->tmp,
                                 strerror(errno));
    return 0;
}

static int write_open(weir_stage *s)
{
    write_state *st = calloc(1, sizeof *st);
    if (!st) return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    weir_stage_set_state(s, st);
    st->fd = -1;
    st->path = weir_stage_arg_str(s, "path");
    st->ctx = weir_stage_ctx(s);
    st->fmt = write_format_of(st->path, &st->zst);
    int rc = weir_batch_create(&st->buf, WEIR_KIND_BYTES, WRITE_BUF);
    if (rc) return weir_stage_errorf(s, rc, "out of memory");
    return write_open_target(s, st);
}

/* write(2) all of p, through partial writes and EINTR.
 * @return 0, WEIR_DONE (the reader has gone) or WEIR_EIO. */
static int write_all(weir_stage *s, write_state *st, const void *p, size_t n)
{
    const unsigned char *q = p;
    while (n > 0) {
        ssize_t k = write(st->fd, q, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN && st->nonblock) {
                /* A full pipe: wait for room, but not beyond a cancel. */
                if (weir_ctx_done(st->ctx)) return weir_ctx_err(st->ctx);
                struct pollfd pfd = {.fd = st->fd, .events = POLLOUT};
                (void)poll(&pfd, 1, WRITE_POLL_MS);
                continue;
            }
            if (errno == EPIPE && st->mode != WRITE_TEMP) {
                st->stopped = true;
                return WEIR_DONE;
            }
            if (st->mode == WRITE_STDOUT)
                return weir_stage_errorf(s, WEIR_EIO, "writing to stdout: %s",
                                         strerror(errno));
            return weir_stage_errorf(s, WEIR_EIO, "write '%s': %s", st->path,
                                     strerror(errno));
        }
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Compress src (all of it) and write what comes out; ZSTD_e_end also
 * closes the frame. */
static int write_deflate(weir_stage *s, write_state *st, const void *src, size_t n,
                         ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {src, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {st->zbuf, st->zcap, 0};
        size_t left = ZSTD_compressStream2(st->cctx, &out, &in, mode);
        if (ZSTD_isError(left))
            return weir_stage_errorf(s, WEIR_EIO, "compressing '%s': %s", st->path,
                                     ZSTD_getErrorName(left));
        if (out.pos) {
            int rc = write_all(s, st, st->zbuf, out.pos);
            if (rc) return rc;
        }
        /* continue: done once the input is taken; end: once all is out. */
        if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0) return 0;
    }
}

/* Write out what the buffer holds. */
static int write_flush(weir_stage *s, write_state *st)
{
    weir_batch *b = st->buf;
    if (b->len == 0) return 0;
    int rc = st->cctx ? write_deflate(s, st, b->data, b->len, ZSTD_e_continue)
                      : write_all(s, st, b->data, b->len);
    b->len = 0;
    return rc;
}

/* The first batch tells bytes from rows; rows need a format. */
static int write_start(weir_stage *s, write_state *st, const weir_batch *in)
{
    st->kind = in->kind;
    if (in->kind != WEIR_KIND_ROWS) {
        st->zst = false; /* bytes go out as they are */
        return 0;
    }
    if (st->mode != WRITE_TEMP && st->fmt == WRITE_FMT_NONE) st->fmt = WRITE_FMT_CSV;
    if (st->fmt == WRITE_FMT_NONE) return write_format_error(s, st->path);
    if (st->zst) {
        st->cctx = ZSTD_createCCtx();
        st->zcap = ZSTD_CStreamOutSize() > WRITE_BUF ? ZSTD_CStreamOutSize() : WRITE_BUF;
        st->zbuf = malloc(st->zcap);
        if (!st->cctx || !st->zbuf)
            return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        size_t r =
            ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_compressionLevel, WRITE_ZSTD_LEVEL);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_checksumFlag, 1);
        if (ZSTD_isError(r))
            return weir_stage_errorf(s, WEIR_EINVAL, "zstd: %s", ZSTD_getErrorName(r));
    }
    return 0;
}

static int write_rows(weir_stage *s, write_state *st, const weir_batch *in)
{
    if (in->schema != st->schema) {
        if (!st->schema && st->fmt == WRITE_FMT_CSV) {
            if (weir__csv_header(st->buf, in->schema, ','))
                return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
        } else if (st->schema && st->fmt == WRITE_FMT_CSV &&
                   !weir_schema_equal(st->schema, in->schema)) {
            /* One header, so one set of columns. */
            return weir_stage_errorf(s, WEIR_EDATA,
                                     "'%s': rows from %s have other columns than the "
                                     "CSV header written",
                                     st->path, in->origin ? in->origin : "a later input");
        }
        weir_schema_release(st->schema);
        st->schema = weir_schema_retain(in->schema);
    }
    for (uint32_t r = 0; r < in->nrows; r += WRITE_ROW_STEP) {
        uint32_t to = in->nrows - r > WRITE_ROW_STEP ? r + WRITE_ROW_STEP : in->nrows;
        int rc = st->fmt == WRITE_FMT_CSV ? weir__csv_rows(st->buf, in, r, to, ',')
                                          : weir__jsonl_rows(st->buf, in, r, to);
        if (rc) return weir_stage_errorf(s, rc, "out of memory");
        if (st->buf->len >= WRITE_BUF && (rc = write_flush(s, st))) return rc;
    }
    return 0;
}

static int write_bytes(weir_stage *s, write_state *st, const weir_batch *in)
{
    int rc;
    if (in->len >= WRITE_DIRECT_MIN) {
        if ((rc = write_flush(s, st))) return rc;
        return write_all(s, st, in->data, in->len);
    }
    if (weir_batch_append(st->buf, in->data, in->len))
        return weir_stage_errorf(s, WEIR_ENOMEM, "out of memory");
    return st->buf->len >= WRITE_BUF ? write_flush(s, st) : 0;
}

static int write_process(weir_stage *s, weir_batch *in)
{
    write_state *st = weir_stage_state(s);
    int rc = 0;
    if (st->stopped)
        rc = WEIR_DONE;
    else if (st->kind == WEIR_KIND_NONE)
        rc = write_start(s, st, in);
    if (rc == 0)
        rc = in->kind == WEIR_KIND_ROWS ? write_rows(s, st, in) : write_bytes(s, st, in);
    weir_batch_release(in);
    return rc;
}

/* End of input: write the rest, end the frame, and make the temporary
 * durable, so that commit() has only to rename it. */
static int write_finish(weir_stage *s)
{
    write_state *st = weir_stage_state(s);
    if (st->stopped) return 0;
    int rc = write_flush(s, st);
    if (rc == 0 && st->cctx) rc = write_deflate(s, st, NULL, 0, ZSTD_e_end);
    if (rc == WEIR_DONE) return 0;
    if (rc) return rc;
    if (st->mode != WRITE_TEMP) return 0;
    if (fsync(st->fd) != 0)
        return weir_stage_errorf(s, WEIR_EIO, "write '%s': %s", st->path,
                                 strerror(errno));
    int fd = st->fd;
    st->fd = -1;
    st->own_fd = false;
    if (close(fd) != 0)
        return weir_stage_errorf(s, WEIR_EIO, "write '%s': %s", st->path,
                                 strerror(errno));
    return 0;
}

/* The run succeeded: the temporary becomes the target. */
static int write_commit(weir_stage *s)
{
    write_state *st = weir_stage_state(s);
    if (!st || st->mode != WRITE_TEMP || !st->tmp) return 0;
    if (st->fd >= 0) { /* finish() did not run: the data is not out yet */
        int rc = write_finish(s);
        if (rc) return rc;
    }
    if (rename(st->tmp, st->target) != 0)
        return weir_stage_errorf(s, WEIR_EIO, "cannot rename '%s' to '%s': %s", st->tmp,
                                 st->target, strerror(errno));
    free(st->tmp);
    st->tmp = NULL;
    /* Make the rename itself durable; a directory that cannot be synced
     * (some file systems refuse) is no reason to fail. */
    const char *slash = strrchr(st->target, '/');
    char *dir = slash ? strndup(st->target,
                                slash == st->target ? 1 : (size_t)(slash - st->target))
                      : strdup(".");
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
    return 0;
}

static void write_close(weir_stage *s)
{
    write_state *st = weir_stage_state(s);
    if (!st) return;
    if (st->own_fd) close(st->fd);
    if (st->tmp) unlink(st->tmp); /* not committed: the target stays as it was */
    free(st->tmp);
    free(st->target);
    weir_schema_release(st->schema);
    weir_batch_release(st->buf);
    ZSTD_freeCCtx(st->cctx);
    free(st->zbuf);
    free(st);
}

const weir_stage_def weir__stage_write = {
    .abi = WEIR_ABI_VERSION,
    .name = "write",
    .summary = "write bytes as they are, or rows as CSV/JSON Lines by extension, "
               "to a file (replaced only if the run succeeds) or stdout",
    .args =
        (const weir_arg_def[]){
            {"path", WEIR_ARG_STRING, NULL,
             "the file (rows: .csv, .jsonl, optionally + .zst), or \"-\" for stdout "
             "(rows as CSV); the directory must exist"},
            {NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_NONE,
    .open = write_open,
    .process = write_process,
    .finish = write_finish,
    .close = write_close,
    .plan = write_plan,
    .commit = write_commit,
};
