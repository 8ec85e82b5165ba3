/*
 * test_io.c — the I/O stages: read, write, zstd, unzstd, driven through
 * specs with the harness (h_src / h_rows / h_sink) and a few stages of this
 * file:
 *
 *   io_probe()            sink: records each bytes batch's origin, offset and
 *                         length (and the bytes, like h_sink)
 *   io_fail()             sink that fails on its first batch ("boom")
 *   io_raw(path, chunk)   source: a file's raw bytes, never decompressed
 *   io_peek(size)         sink whose plan() peeks at its input's first bytes
 *
 * Every test works in a fresh directory from mkdtemp, removed afterwards.
 * Tests that need the zstd command skip themselves when it is missing.
 */
#include <criterion/criterion.h>

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zstd.h>

#define IOTEST(name) Test(io, name, .timeout = 30, .init = io_setup, .fini = io_teardown)

static char dir[PATH_MAX];

static void io_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/weir-io-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static int io_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void io_teardown(void)
{
    if (dir[0]) nftw(dir, io_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* dir/name, in a static ring so that a few can be alive at once. */
static const char *P(const char *name)
{
    static char ring[8][PATH_MAX];
    static int k;
    char *p = ring[k++ % 8];
    if (snprintf(p, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) abort();
    return p;
}

static void put_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* The whole file (NUL-terminated), or NULL if it cannot be opened. */
static char *get_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    size_t k;
    while ((k = fread(p + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) p = realloc(p, (cap *= 2) + 1);
    }
    fclose(f);
    p[n] = '\0';
    *len = n;
    return p;
}

static bool exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* Deterministic pseudo-random bytes (xorshift). */
static unsigned char *random_bytes(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

/* Text that compresses and never holds a NUL: `lines` numbered CSV lines. */
static char *text_lines(size_t lines, size_t *len)
{
    size_t cap = lines * 48 + 1, n = 0;
    char *p = malloc(cap);
    for (size_t i = 0; i < lines; i++)
        n += (size_t)snprintf(p + n, cap - n, "%zu,trip-%zu,%zu.%02zu,card\n", i,
                              i * 7 % 1000, i % 97, i % 100);
    *len = n;
    return p;
}

static bool have_zstd_cli(void) { return system("command -v zstd >/dev/null 2>&1") == 0; }

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Any ".*.weir-*" temporary left in dir? */
static bool temp_left(void)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -q '^\\..*\\.weir-'", dir);
    return system(cmd) == 0;
}

/* Run spec with vars "f=<path>", "g=<path>", "o=<path>" (NULL: not set)
 * and optional "in=<text>". */
static int run4(const char *spec, const char *f, const char *g, const char *o,
                const char *in, h_result *r)
{
    char vf[PATH_MAX + 4], vg[PATH_MAX + 4], vo[PATH_MAX + 4];
    const char *vars[4];
    size_t n = 0;
    char *vin = NULL;
    if (f) snprintf(vf, sizeof vf, "f=%s", f), vars[n++] = vf;
    if (g) snprintf(vg, sizeof vg, "g=%s", g), vars[n++] = vg;
    if (o) snprintf(vo, sizeof vo, "o=%s", o), vars[n++] = vo;
    if (in) {
        vin = malloc(strlen(in) + 4);
        strcpy(vin, "in=");
        strcat(vin, in);
        vars[n++] = vin;
    }
    int rc = h_runv(spec, vars, n, r);
    free(vin);
    return rc;
}

/* ---- test stages ------------------------------------------------------------------ */

#define MAXREC 4096
typedef struct rec {
    char origin[PATH_MAX];
    uint64_t offset;
    size_t len;
} rec;
static rec recs[MAXREC];
static int nrecs;

static int probe_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    if (nrecs < MAXREC) {
        rec *x = &recs[nrecs++];
        snprintf(x->origin, sizeof x->origin, "%s", in->origin ? in->origin : "(null)");
        x->offset = in->offset;
        x->len = in->len;
    }
    h_append(in->data, in->len);
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def probe_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "io_probe",
    .summary = "test: record bytes batches' provenance",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_NONE,
    .process = probe_process,
};

static int fail_process(weir_stage *s, weir_batch *in)
{
    weir_batch_release(in);
    return weir_stage_errorf(s, WEIR_EDATA, "boom");
}

static const weir_stage_def fail_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "io_fail",
    .summary = "test: fail on the first batch",
    .args = (const weir_arg_def[]){{NULL}},
    .in_kind = WEIR_KIND_ANY,
    .out_kind = WEIR_KIND_NONE,
    .process = fail_process,
};

typedef struct raw_state {
    int fd;
    size_t chunk;
    uint64_t off;
} raw_state;

static int raw_open(weir_stage *s)
{
    raw_state *st = calloc(1, sizeof *st);
    weir_stage_set_state(s, st);
    st->fd = open(weir_stage_arg_str(s, "path"), O_RDONLY);
    st->chunk = (size_t)weir_stage_arg_int(s, "chunk");
    return st->fd < 0 ? weir_stage_errorf(s, WEIR_EIO, "io_raw: %s", strerror(errno)) : 0;
}

static int raw_process(weir_stage *s, weir_batch *in)
{
    (void)in;
    raw_state *st = weir_stage_state(s);
    weir_batch *b;
    int rc = weir_stage_batch(s, &b);
    if (rc) return rc;
    weir_batch_reserve(b, st->chunk);
    ssize_t k = read(st->fd, b->data, st->chunk);
    if (k <= 0) {
        weir_batch_release(b);
        return k == 0 ? WEIR_DONE : WEIR_EIO;
    }
    b->len = (size_t)k;
    b->origin = weir_stage_arg_str(s, "path");
    b->offset = st->off;
    st->off += (size_t)k;
    return weir_stage_emit(s, b);
}

static void raw_close(weir_stage *s)
{
    raw_state *st = weir_stage_state(s);
    if (!st) return;
    if (st->fd >= 0) close(st->fd);
    free(st);
}

static const weir_stage_def raw_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "io_raw",
    .summary = "test: a file's raw bytes",
    .args = (const weir_arg_def[]){{"path", WEIR_ARG_STRING, NULL, "file"},
                                   {"chunk", WEIR_ARG_INT, "4096", "bytes per batch"},
                                   {NULL}},
    .in_kind = WEIR_KIND_NONE,
    .out_kind = WEIR_KIND_BYTES,
    .open = raw_open,
    .process = raw_process,
    .close = raw_close,
};

static char peeked[1 << 16];
static long npeeked;

static int peek_plan(weir_stage *s, const weir_schema *in, weir_schema **out)
{
    (void)in;
    (void)out;
    size_t size = (size_t)weir_stage_arg_int(s, "size");
    npeeked = weir_stage_peek(s, peeked, size < sizeof peeked ? size : sizeof peeked);
    return 0;
}

static int drop_process(weir_stage *s, weir_batch *in)
{
    (void)s;
    weir_batch_release(in);
    return 0;
}

static const weir_stage_def peek_def = {
    .abi = WEIR_ABI_VERSION,
    .name = "io_peek",
    .summary = "test: peek at plan time",
    .args = (const weir_arg_def[]){{"size", WEIR_ARG_INT, "64", "bytes"}, {NULL}},
    .in_kind = WEIR_KIND_BYTES,
    .out_kind = WEIR_KIND_NONE,
    .process = drop_process,
    .plan = peek_plan,
};

static void io_register(void)
{
    static bool done;
    if (done) return;
    done = true;
    h_register();
    weir_stage_register(&probe_def);
    weir_stage_register(&fail_def);
    weir_stage_register(&raw_def);
    weir_stage_register(&peek_def);
}

/* A skippable frame: magic 0x184D2A5?, 4-byte size, payload. */
static size_t skippable(unsigned char *out, unsigned variant, const char *payload)
{
    uint32_t m = 0x184D2A50u + variant, n = (uint32_t)strlen(payload);
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(m >> (8 * i));
    for (int i = 0; i < 4; i++)
        out[4 + i] = (unsigned char)(n >> (8 * i));
    memcpy(out + 8, payload, n);
    return 8 + n;
}

/* Concatenate files into dst. */
static void cat_files(const char *dst, const char *const *src, size_t n)
{
    FILE *o = fopen(dst, "wb");
    cr_assert_not_null(o);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *p = get_file(src[i], &len);
        cr_assert_not_null(p, "%s", src[i]);
        fwrite(p, 1, len, o);
        free(p);
    }
    fclose(o);
}

/* ---- read ------------------------------------------------------------------------- */

IOTEST(read_file_in_chunks)
{
    io_register();
    size_t n = 3u << 20;
    unsigned char *data = random_bytes(n, 42);
    put_file(P("rand.bin"), data, n);
    nrecs = 0;
    h_result r;
    cr_assert_eq(run4("read($f) | io_probe()", P("rand.bin"), NULL, NULL, NULL, &r), 0,
                 "%s", r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, data, n) == 0, "bytes differ");
    /* Large batches, each naming the file and its offset. */
    cr_assert_eq(nrecs, 3);
    uint64_t off = 0;
    for (int i = 0; i < nrecs; i++) {
        cr_assert_str_eq(recs[i].origin, P("rand.bin"));
        cr_assert_eq(recs[i].offset, off);
        off += recs[i].len;
    }
    h_free(&r);
    free(data);
}

IOTEST(read_glob_sorted)
{
    io_register();
    put_file(P("b.txt"), "B1\nB2\n", 6);
    put_file(P("a.txt"), "A1\n", 3);
    put_file(P("c.txt"), "C1\nC2\nC3\n", 9);
    put_file(P("other.dat"), "no\n", 3);
    nrecs = 0;
    h_result r;
    cr_assert_eq(run4("read($f) | io_probe()", P("*.txt"), NULL, NULL, NULL, &r), 0, "%s",
                 r.err);
    cr_assert_str_eq(r.out, "A1\nB1\nB2\nC1\nC2\nC3\n");
    cr_assert_eq(nrecs, 3);
    const char *want[] = {"a.txt", "b.txt", "c.txt"};
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(recs[i].origin, P(want[i]));
        cr_assert_eq(recs[i].offset, 0); /* offsets start again in each file */
    }
    h_free(&r);
}

IOTEST(read_glob_no_match)
{
    io_register();
    h_result r;
    const char *pat = P("*.nothing");
    cr_assert_eq(run4("read($f) | h_sink()", pat, NULL, NULL, NULL, &r), WEIR_EIO);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "no file matches '%s'", pat);
    cr_assert(strstr(r.err, want), "message: %s", r.err);
    h_free(&r);
}

IOTEST(read_missing_file)
{
    io_register();
    h_result r;
    cr_assert_eq(run4("read($f) | h_sink()", P("missing.csv"), NULL, NULL, NULL, &r),
                 WEIR_EIO);
    cr_assert(strstr(r.err, "cannot open"), "message: %s", r.err);
    cr_assert(strstr(r.err, "missing.csv"), "message: %s", r.err);
    cr_assert(strstr(r.err, "No such file or directory"), "message: %s", r.err);
    h_free(&r);
}

IOTEST(read_empty_path_is_a_spec_error)
{
    io_register();
    h_result r;
    cr_assert_eq(h_run("read(\"\") | h_sink()", "", &r), WEIR_ESPEC);
    cr_assert(strstr(r.err, "path is empty"), "message: %s", r.err);
    h_free(&r);
}

IOTEST(read_empty_file)
{
    io_register();
    put_file(P("empty"), "", 0);
    h_result r;
    cr_assert_eq(run4("read($f) | h_sink()", P("empty"), NULL, NULL, NULL, &r), 0, "%s",
                 r.err);
    cr_assert_eq(r.len, 0);
    h_free(&r);
}

IOTEST(read_stdin)
{
    io_register();
    size_t n;
    char *text = text_lines(50000, &n);
    put_file(P("in.txt"), text, n);
    int saved = dup(STDIN_FILENO);
    int fd = open(P("in.txt"), O_RDONLY);
    dup2(fd, STDIN_FILENO);
    close(fd);
    nrecs = 0;
    h_result r;
    int rc = h_run("read(\"-\") | io_probe()", "", &r);
    dup2(saved, STDIN_FILENO);
    close(saved);
    cr_assert_eq(rc, 0, "%s", r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, text, n) == 0);
    cr_assert_str_eq(recs[0].origin, "-");
    h_free(&r);
    free(text);
}

/* ---- read: zstd ------------------------------------------------------------------- */

IOTEST(read_zstd_single_frame)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    io_register();
    size_t n;
    char *text = text_lines(200000, &n); /* ~5 MiB: several output batches */
    put_file(P("a.csv"), text, n);
    cr_assert_eq(sh("zstd -q -f '%s' -o '%s'", P("a.csv"), P("a.csv.zst")), 0);
    nrecs = 0;
    h_result r;
    cr_assert_eq(run4("read($f) | io_probe()", P("a.csv.zst"), NULL, NULL, NULL, &r), 0,
                 "%s", r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, text, n) == 0, "decompressed bytes differ");
    cr_assert_gt(nrecs, 1);
    uint64_t off = 0;
    for (int i = 0; i < nrecs; i++) { /* offsets are uncompressed */
        cr_assert_eq(recs[i].offset, off);
        off += recs[i].len;
    }
    h_free(&r);
    free(text);
}

IOTEST(read_zstd_multi_frame_and_skippable)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    io_register();
    size_t na, nb;
    char *a = text_lines(30000, &na);
    unsigned char *b = random_bytes(nb = 700000, 7); /* incompressible */
    put_file(P("a"), a, na);
    put_file(P("b"), b, nb);
    cr_assert_eq(sh("zstd -q -f '%s' -o '%s' && zstd -q -f '%s' -o '%s'", P("a"),
                    P("a.zst"), P("b"), P("b.zst")),
                 0);
    unsigned char skip[64];
    put_file(P("skip1"), skip, skippable(skip, 0, "weir test metadata"));
    put_file(P("skip2"), skip, skippable(skip, 15, ""));
    char *want = malloc(na + nb);
    memcpy(want, a, na);
    memcpy(want + na, b, nb);

    /* Two frames, one after the other. */
    const char *two[] = {P("a.zst"), P("b.zst")};
    cat_files(P("c.zst"), two, 2);
    h_result r;
    cr_assert_eq(run4("read($f) | h_sink()", P("c.zst"), NULL, NULL, NULL, &r), 0, "%s",
                 r.err);
    cr_assert_eq(r.len, na + nb);
    cr_assert(memcmp(r.out, want, na + nb) == 0);
    h_free(&r);

    /* Skippable frames first, between and last; the file starts with one. */
    const char *four[] = {P("skip1"), P("a.zst"), P("skip2"), P("b.zst"), P("skip1")};
    cat_files(P("d.zst"), four, 5);
    cr_assert_eq(run4("read($f) | h_sink()", P("d.zst"), NULL, NULL, NULL, &r), 0, "%s",
                 r.err);
    cr_assert_eq(r.len, na + nb);
    cr_assert(memcmp(r.out, want, na + nb) == 0);
    h_free(&r);
    /* The zstd tool agrees that this is one valid stream. */
    cr_assert_eq(sh("zstd -q -t '%s'", P("d.zst")), 0);
    free(a);
    free(b);
    free(want);
}

IOTEST(read_zstd_by_magic_not_name)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    io_register();
    size_t n;
    char *text = text_lines(1000, &n);
    put_file(P("t"), text, n);
    cr_assert_eq(sh("zstd -q -f '%s' -o '%s'", P("t"), P("trips.csv")), 0);
    h_result r;
    cr_assert_eq(run4("read($f) | h_sink()", P("trips.csv"), NULL, NULL, NULL, &r), 0,
                 "%s", r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, text, n) == 0);
    h_free(&r);
    /* And a file named .zst that is not zstd is read as it is. */
    put_file(P("plain.zst"), "not compressed\n", 15);
    cr_assert_eq(run4("read($f) | h_sink()", P("plain.zst"), NULL, NULL, NULL, &r), 0);
    cr_assert_str_eq(r.out, "not compressed\n");
    h_free(&r);
    free(text);
}

/* The file with its last `cut` bytes removed. */
static void truncate_copy(const char *src, const char *dst, size_t cut)
{
    size_t n;
    char *p = get_file(src, &n);
    cr_assert_not_null(p);
    cr_assert_gt(n, cut);
    put_file(dst, p, n - cut);
    free(p);
}

IOTEST(read_zstd_truncated)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    io_register();
    size_t n;
    char *text = text_lines(100000, &n);
    put_file(P("t"), text, n);
    cr_assert_eq(sh("zstd -q -f '%s' -o '%s'", P("t"), P("t.zst")), 0);
    truncate_copy(P("t.zst"), P("cut.csv.zst"), 10);
    h_result r;
    cr_assert_eq(run4("read($f) | h_sink()", P("cut.csv.zst"), NULL, NULL, NULL, &r),
                 WEIR_EDATA);
    cr_assert(strstr(r.err, P("cut.csv.zst")), "message: %s", r.err);
    cr_assert(strstr(r.err, "truncated zstd frame at end of input"), "message: %s",
              r.err);
    h_free(&r);
    /* Cut right after the magic number, and in the middle of a frame. */
    truncate_copy(P("t.zst"), P("cut2.zst"), 0);
    size_t zn;
    char *z = get_file(P("t.zst"), &zn);
    put_file(P("cut2.zst"), z, 6);
    cr_assert_eq(run4("read($f) | h_sink()", P("cut2.zst"), NULL, NULL, NULL, &r),
                 WEIR_EDATA);
    cr_assert(strstr(r.err, "truncated"), "message: %s", r.err);
    h_free(&r);
    put_file(P("cut3.zst"), z, zn / 2);
    cr_assert_eq(run4("read($f) | h_sink()", P("cut3.zst"), NULL, NULL, NULL, &r),
                 WEIR_EDATA);
    cr_assert(strstr(r.err, "truncated"), "message: %s", r.err);
    h_free(&r);
    free(z);
    free(text);
}

IOTEST(read_zstd_corrupt)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    io_register();
    size_t n;
    char *text = text_lines(100000, &n);
    put_file(P("t"), text, n);
    cr_assert_eq(sh("zstd -q -f '%s' -o '%s'", P("t"), P("t.zst")), 0);
    size_t zn;
    unsigned char *z = (unsigned char *)get_file(P("t.zst"), &zn);
    z[zn / 2] ^= 0x5a;
    put_file(P("bad.zst"), z, zn);
    h_result r;
    cr_assert_eq(run4("read($f) | h_sink()", P("bad.zst"), NULL, NULL, NULL, &r),
                 WEIR_EDATA);
    cr_assert(strstr(r.err, P("bad.zst")), "message: %s", r.err);
    const char *at = strstr(r.err, "corrupt zstd data at byte ");
    cr_assert(at, "message: %s", r.err);
    unsigned long long off =
        strtoull(at + strlen("corrupt zstd data at byte "), NULL, 10);
    cr_assert_leq(off, zn, "offset %llu beyond the file (%zu bytes)", off, zn);
    h_free(&r);
    /* Garbage after a good frame. */
    size_t k = 0;
    char junk[] = "this is not a frame";
    z[zn / 2] ^= 0x5a;
    unsigned char *y = malloc(zn + sizeof junk);
    memcpy(y, z, zn);
    memcpy(y + zn, junk, sizeof junk);
    k = zn + sizeof junk;
    put_file(P("junk.zst"), y, k);
    cr_assert_eq(run4("read($f) | h_sink()", P("junk.zst"), NULL, NULL, NULL, &r),
                 WEIR_EDATA);
    char want[64];
    snprintf(want, sizeof want, "corrupt zstd data at byte %zu", zn);
    cr_assert(strstr(r.err, want), "want '%s' in: %s", want, r.err);
    h_free(&r);
    free(y);
    free(z);
    free(text);
}

IOTEST(read_peek)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    io_register();
    size_t n;
    char *text = text_lines(20000, &n);
    put_file(P("t.csv"), text, n);
    cr_assert_eq(sh("zstd -q -f '%s' -o '%s'", P("t.csv"), P("t.csv.zst")), 0);
    h_result r;
    npeeked = 0;
    cr_assert_eq(
        run4("read($f) | io_peek(size=100)", P("t.csv.zst"), NULL, NULL, NULL, &r), 0,
        "%s", r.err);
    cr_assert_eq(npeeked, 100);
    cr_assert(memcmp(peeked, text, 100) == 0);
    h_free(&r);
    /* Plain file, more than it holds: all of it. */
    put_file(P("small"), "id,x\n1,2\n", 9);
    cr_assert_eq(run4("read($f) | io_peek(size=1000)", P("small"), NULL, NULL, NULL, &r),
                 0);
    cr_assert_eq(npeeked, 9);
    cr_assert(memcmp(peeked, "id,x\n1,2\n", 9) == 0);
    h_free(&r);
    /* A glob: its first file. */
    put_file(P("z1.txt"), "first\n", 6);
    put_file(P("z2.txt"), "second\n", 7);
    cr_assert_eq(run4("read($f) | io_peek(size=64)", P("z*.txt"), NULL, NULL, NULL, &r),
                 0);
    cr_assert_eq(npeeked, 6);
    h_free(&r);
    /* stdin cannot be peeked; a missing file is the run's error (exit 1),
     * so at plan time it only means "cannot tell", with no message. */
    const char *specs[] = {"read(\"-\") | io_peek()", "read($f) | io_peek()"};
    char vf[PATH_MAX + 4];
    snprintf(vf, sizeof vf, "f=%s", P("missing.csv"));
    const char *vars[] = {vf};
    weir_spec_opts o = {.vars = vars, .nvars = 1};
    for (int i = 0; i < 2; i++) {
        weir_graph *g;
        char err[256];
        cr_assert_eq(
            weir_spec_compile(&g, specs[i], strlen(specs[i]), "<t>", &o, err, sizeof err),
            0, "%s", err);
        npeeked = 0;
        cr_assert_eq(weir_graph_check(g, NULL), 0, "%s", weir_graph_errmsg(g));
        cr_assert_eq(npeeked, WEIR_ENOTFOUND);
        cr_assert_str_eq(weir_graph_errmsg(g), "");
        weir_graph_destroy(g);
    }
    free(text);
}

/* ---- write ------------------------------------------------------------------------ */

IOTEST(write_bytes_to_file)
{
    io_register();
    size_t n;
    char *text = text_lines(100000, &n);
    h_result r;
    cr_assert_eq(run4("h_src(text=$in, chunk=1000) | write($o)", NULL, NULL, P("out.txt"),
                      text, &r),
                 0, "%s", r.err);
    size_t len;
    char *got = get_file(P("out.txt"), &len);
    cr_assert_not_null(got);
    cr_assert_eq(len, n);
    cr_assert(memcmp(got, text, n) == 0);
    /* A new file gets the usual mode: 0666 less the umask. */
    mode_t um = umask(022);
    umask(um);
    struct stat sb;
    cr_assert_eq(stat(P("out.txt"), &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0666 & ~um);
    cr_assert_not(temp_left());
    h_free(&r);
    free(got);
    free(text);
}

IOTEST(write_big_batches_from_read)
{
    io_register();
    size_t n = (5u << 20) + 12345;
    unsigned char *data = random_bytes(n, 9);
    put_file(P("in.bin"), data, n);
    h_result r;
    cr_assert_eq(run4("read($f) | write($o)", P("in.bin"), NULL, P("copy.bin"), NULL, &r),
                 0, "%s", r.err);
    size_t len;
    char *got = get_file(P("copy.bin"), &len);
    cr_assert_eq(len, n);
    cr_assert(memcmp(got, data, n) == 0);
    h_free(&r);
    free(got);
    free(data);
}

IOTEST(write_replaces_and_keeps_mode)
{
    io_register();
    put_file(P("out.txt"), "old content\n", 12);
    chmod(P("out.txt"), 0640);
    h_result r;
    cr_assert_eq(
        run4("h_src(text=$in) | write($o)", NULL, NULL, P("out.txt"), "new\n", &r), 0,
        "%s", r.err);
    size_t len;
    char *got = get_file(P("out.txt"), &len);
    cr_assert_str_eq(got, "new\n");
    struct stat sb;
    cr_assert_eq(stat(P("out.txt"), &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0640);
    h_free(&r);
    free(got);
}

IOTEST(write_through_symlink)
{
    io_register();
    put_file(P("real.txt"), "old\n", 4);
    cr_assert_eq(symlink(P("real.txt"), P("link.txt")), 0);
    h_result r;
    cr_assert_eq(
        run4("h_src(text=$in) | write($o)", NULL, NULL, P("link.txt"), "new\n", &r), 0,
        "%s", r.err);
    struct stat sb;
    cr_assert_eq(lstat(P("link.txt"), &sb), 0);
    cr_assert(S_ISLNK(sb.st_mode), "the link was replaced by a file");
    size_t len;
    char *got = get_file(P("real.txt"), &len);
    cr_assert_str_eq(got, "new\n");
    h_free(&r);
    free(got);
}

static const char *fail_spec = "let s = h_src(text=$in, chunk=3)\n"
                               "s | write($o)\n"
                               "s | io_fail()\n";

IOTEST(write_failed_run_leaves_target_untouched)
{
    io_register();
    h_result r;
    /* No target before: none after. */
    cr_assert_eq(run4(fail_spec, NULL, NULL, P("out.txt"), "some data\n", &r),
                 WEIR_EDATA);
    cr_assert(strstr(r.err, "boom"), "message: %s", r.err);
    cr_assert_not(exists(P("out.txt")));
    cr_assert_not(temp_left(), "a temporary was left behind");
    h_free(&r);
    /* An old target keeps its content. */
    put_file(P("out.txt"), "old content\n", 12);
    cr_assert_eq(run4(fail_spec, NULL, NULL, P("out.txt"), "some data\n", &r),
                 WEIR_EDATA);
    size_t len;
    char *got = get_file(P("out.txt"), &len);
    cr_assert_str_eq(got, "old content\n");
    cr_assert_not(temp_left(), "a temporary was left behind");
    h_free(&r);
    free(got);
}

IOTEST(write_cancelled_run_leaves_nothing)
{
    io_register();
    weir_graph *g;
    char err[256];
    const char *spec = "h_src(text=\"abc\") | write($o)";
    char vo[PATH_MAX + 4];
    snprintf(vo, sizeof vo, "o=%s", P("out.txt"));
    const char *vars[] = {vo};
    weir_spec_opts o = {.vars = vars, .nvars = 1};
    cr_assert_eq(weir_spec_compile(&g, spec, strlen(spec), "<t>", &o, err, sizeof err), 0,
                 "%s", err);
    weir_ctx *ctx;
    cr_assert_eq(weir_ctx_create(&ctx, NULL), 0);
    weir_ctx_cancel(ctx, WEIR_ECANCELED);
    cr_assert_eq(weir_graph_run(g, ctx, NULL), WEIR_ECANCELED);
    cr_assert_not(exists(P("out.txt")));
    cr_assert_not(temp_left());
    weir_graph_destroy(g);
    weir_ctx_destroy(ctx);
}

IOTEST(write_missing_directory)
{
    io_register();
    h_result r;
    const char *path = P("nodir/x.csv");
    cr_assert_eq(run4("h_src(text=$in) | write($o)", NULL, NULL, path, "a\n", &r),
                 WEIR_EIO);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "cannot create '%s': No such file or directory", path);
    cr_assert(strstr(r.err, want), "message: %s", r.err);
    cr_assert_not(exists(P("nodir")), "weir created the directory");
    h_free(&r);
}

IOTEST(write_to_a_directory)
{
    io_register();
    h_result r;
    cr_assert_eq(run4("h_src(text=$in) | write($o)", NULL, NULL, dir, "a\n", &r),
                 WEIR_EIO);
    cr_assert(strstr(r.err, "Is a directory"), "message: %s", r.err);
    h_free(&r);
}

IOTEST(write_dev_full_and_dev_null)
{
    io_register();
    h_result r;
    if (exists("/dev/full")) {
        cr_assert_eq(h_run("h_src(text=$in) | write(\"/dev/full\")", "data\n", &r),
                     WEIR_EIO);
        cr_assert(strstr(r.err, "write '/dev/full': No space left on device"),
                  "message: %s", r.err);
        h_free(&r);
    }
    cr_assert_eq(h_run("h_src(text=$in) | write(\"/dev/null\")", "data\n", &r), 0, "%s",
                 r.err);
    struct stat sb;
    cr_assert_eq(stat("/dev/null", &sb), 0);
    cr_assert(S_ISCHR(sb.st_mode), "/dev/null was replaced");
    h_free(&r);
}

/* Runs spec with stdout sent to dir/stdout; returns the run's code. */
static int run_to_stdout(const char *spec, const char *in, h_result *r)
{
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(P("stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    int rc = h_run(spec, in, r);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return rc;
}

IOTEST(write_stdout_bytes)
{
    io_register();
    h_result r;
    cr_assert_eq(
        run_to_stdout("h_src(text=$in, chunk=2) | write(\"-\")", "x,y\n1,2\n", &r), 0,
        "%s", r.err);
    size_t len;
    char *got = get_file(P("stdout"), &len);
    cr_assert_str_eq(got, "x,y\n1,2\n");
    h_free(&r);
    free(got);
}

IOTEST(write_stdout_closed_pipe_ends_quietly)
{
    io_register();
    signal(SIGPIPE, SIG_IGN);
    size_t n = 4u << 20;
    unsigned char *data = random_bytes(n, 3);
    put_file(P("big"), data, n);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    close(p[0]); /* nobody will read */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(p[1], STDOUT_FILENO);
    close(p[1]);
    h_result r;
    int rc = run4("read($f) | write(\"-\")", P("big"), NULL, NULL, NULL, &r);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    cr_assert_eq(rc, 0, "rc %d: %s", rc, r.err);
    h_free(&r);
    free(data);
}

typedef struct fifo_reader {
    const char *path;
    char *got;
    size_t len;
} fifo_reader;

static void *fifo_read(void *arg)
{
    fifo_reader *fr = arg;
    fr->got = get_file(fr->path, &fr->len);
    return NULL;
}

IOTEST(write_fifo_directly)
{
    io_register();
    cr_assert_eq(mkfifo(P("fifo"), 0600), 0);
    fifo_reader fr = {.path = P("fifo")};
    pthread_t th;
    pthread_create(&th, NULL, fifo_read, &fr);
    size_t n;
    char *text = text_lines(20000, &n);
    h_result r;
    cr_assert_eq(
        run4("h_src(text=$in, chunk=5000) | write($o)", NULL, NULL, fr.path, text, &r), 0,
        "%s", r.err);
    pthread_join(th, NULL);
    cr_assert_eq(fr.len, n);
    cr_assert(memcmp(fr.got, text, n) == 0);
    struct stat sb;
    cr_assert_eq(lstat(fr.path, &sb), 0);
    cr_assert(S_ISFIFO(sb.st_mode));
    cr_assert_not(temp_left());
    h_free(&r);
    free(fr.got);
    free(text);
}

/* ---- write: rows --------------------------------------------------------------------
 */

static const char *rows_in = "id|name|fare\n1|Ann|12.5\n2|Bob, Jr.|7\n3|say \"hi\"|x\n";

IOTEST(write_rows_csv)
{
    io_register();
    h_result r;
    cr_assert_eq(
        run4("h_rows(text=$in) | write($o)", NULL, NULL, P("o.csv"), rows_in, &r), 0,
        "%s", r.err);
    size_t len;
    char *got = get_file(P("o.csv"), &len);
    cr_assert_str_eq(
        got, "id,name,fare\n1,Ann,12.5\n2,\"Bob, Jr.\",7\n3,\"say \"\"hi\"\"\",x\n");
    h_free(&r);
    free(got);
}

IOTEST(write_rows_jsonl)
{
    io_register();
    h_result r;
    cr_assert_eq(
        run4("h_rows(text=$in) | write($o)", NULL, NULL, P("o.jsonl"), rows_in, &r), 0,
        "%s", r.err);
    size_t len;
    char *got = get_file(P("o.jsonl"), &len);
    cr_assert_str_eq(got, "{\"id\":1,\"name\":\"Ann\",\"fare\":12.5}\n"
                          "{\"id\":2,\"name\":\"Bob, Jr.\",\"fare\":7}\n"
                          "{\"id\":3,\"name\":\"say \\\"hi\\\"\",\"fare\":\"x\"}\n");
    h_free(&r);
    free(got);
}

IOTEST(write_rows_csv_zst)
{
    io_register();
    h_result r;
    cr_assert_eq(
        run4("h_rows(text=$in) | write($o)", NULL, NULL, P("o.csv.zst"), rows_in, &r), 0,
        "%s", r.err);
    h_free(&r);
    /* One frame, which read() turns back into the CSV. */
    size_t zn;
    char *z = get_file(P("o.csv.zst"), &zn);
    cr_assert_eq(ZSTD_findFrameCompressedSize(z, zn), zn);
    const char *want =
        "id,name,fare\n1,Ann,12.5\n2,\"Bob, Jr.\",7\n3,\"say \"\"hi\"\"\",x\n";
    cr_assert_eq(run4("read($f) | h_sink()", P("o.csv.zst"), NULL, NULL, NULL, &r), 0,
                 "%s", r.err);
    cr_assert_str_eq(r.out, want);
    h_free(&r);
    if (have_zstd_cli()) {
        cr_assert_eq(sh("zstd -q -d -c '%s' > '%s'", P("o.csv.zst"), P("o.csv")), 0);
        size_t len;
        char *got = get_file(P("o.csv"), &len);
        cr_assert_str_eq(got, want);
        free(got);
    }
    /* .jsonl.zst too. */
    cr_assert_eq(
        run4("h_rows(text=$in) | write($o)", NULL, NULL, P("o.jsonl.zst"), rows_in, &r),
        0, "%s", r.err);
    h_free(&r);
    cr_assert_eq(run4("read($f) | h_sink()", P("o.jsonl.zst"), NULL, NULL, NULL, &r), 0);
    cr_assert(strncmp(r.out, "{\"id\":1,", 8) == 0, "got: %s", r.out);
    h_free(&r);
    free(z);
}

IOTEST(write_rows_unknown_extension)
{
    io_register();
    h_result r;
    const char *path = P("o.txt");
    cr_assert_eq(run4("h_rows(text=$in) | write($o)", NULL, NULL, path, rows_in, &r),
                 WEIR_ESPEC);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want,
             "cannot tell the format of '%s': use .csv, .jsonl (optionally .zst), or "
             "to_csv()/to_jsonl() before write",
             path);
    cr_assert(strstr(r.err, want), "message: %s", r.err);
    cr_assert_not(exists(path));
    cr_assert_not(temp_left());
    h_free(&r);
    /* ".zst" alone says nothing about the rows' format. */
    cr_assert_eq(
        run4("h_rows(text=$in) | write($o)", NULL, NULL, P("o.zst"), rows_in, &r),
        WEIR_ESPEC);
    h_free(&r);
    /* Bytes may go anywhere, as they are. */
    cr_assert_eq(run4("h_src(text=$in) | write($o)", NULL, NULL, P("o.txt"), "a\n", &r),
                 0);
    h_free(&r);
}

IOTEST(write_rows_stdout_csv)
{
    io_register();
    h_result r;
    cr_assert_eq(run_to_stdout("h_rows(text=$in) | write(\"-\")", "a|b\n1|2\n3|4\n", &r),
                 0, "%s", r.err);
    size_t len;
    char *got = get_file(P("stdout"), &len);
    cr_assert_str_eq(got, "a,b\n1,2\n3,4\n");
    h_free(&r);
    free(got);
    /* /dev/stdout is stdout as it is, and takes rows as CSV. */
    cr_assert_eq(
        run_to_stdout("h_rows(text=$in) | write(\"/dev/stdout\")", "a|b\n5|6\n", &r), 0,
        "%s", r.err);
    got = get_file(P("stdout"), &len);
    cr_assert_str_eq(got, "a,b\n5,6\n");
    h_free(&r);
    free(got);
}

/* ---- zstd and unzstd
 * ---------------------------------------------------------------------- */

static size_t count_frames(const char *path)
{
    size_t n;
    char *p = get_file(path, &n);
    cr_assert_not_null(p);
    size_t frames = 0, at = 0;
    while (at < n) {
        size_t k = ZSTD_findFrameCompressedSize(p + at, n - at);
        cr_assert_not(ZSTD_isError(k), "bad frame at %zu: %s", at, ZSTD_getErrorName(k));
        at += k;
        frames++;
    }
    free(p);
    return frames;
}

IOTEST(zstd_parallel_frames)
{
    io_register();
    size_t n;
    char *text = text_lines(5000, &n);
    h_result r;
    cr_assert_eq(
        run4("h_src(text=$in, chunk=1000) | zstd(level=3, workers=2) | write($o)", NULL,
             NULL, P("o.zst"), text, &r),
        0, "%s", r.err);
    h_free(&r);
    cr_assert_eq(count_frames(P("o.zst")), (n + 999) / 1000);
    if (have_zstd_cli()) {
        cr_assert_eq(sh("zstd -q -d -c '%s' > '%s'", P("o.zst"), P("o.out")), 0);
        size_t len;
        char *got = get_file(P("o.out"), &len);
        cr_assert_eq(len, n);
        cr_assert(memcmp(got, text, n) == 0, "zstd -d gives other bytes");
        free(got);
    }
    cr_assert_eq(run4("read($f) | h_sink()", P("o.zst"), NULL, NULL, NULL, &r), 0, "%s",
                 r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, text, n) == 0, "read() gives other bytes");
    h_free(&r);
    free(text);
}

IOTEST(zstd_levels)
{
    io_register();
    h_result r;
    size_t n;
    char *text = text_lines(3000, &n);
    const char *ok[] = {"zstd(level=1)", "zstd(level=19)", "zstd(level=-7)", "zstd(-1)",
                        "zstd()"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char spec[128];
        snprintf(spec, sizeof spec,
                 "h_src(text=$in, chunk=700) | %s | unzstd() | h_sink()", ok[i]);
        cr_assert_eq(h_run(spec, text, &r), 0, "%s: %s", ok[i], r.err);
        cr_assert_eq(r.len, n, "%s", ok[i]);
        cr_assert(memcmp(r.out, text, n) == 0, "%s", ok[i]);
        h_free(&r);
    }
    const char *bad[] = {"zstd(level=0)", "zstd(level=20)", "zstd(level=-8)"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char spec[128];
        snprintf(spec, sizeof spec, "h_src(text=$in) | %s | h_sink()", bad[i]);
        cr_assert_eq(h_run(spec, "x", &r), WEIR_ESPEC, "%s", bad[i]);
        cr_assert(strstr(r.err, "level must be 1..19"), "%s: %s", bad[i], r.err);
        h_free(&r);
    }
    free(text);
}

IOTEST(unzstd_round_trip_multi_frame)
{
    io_register();
    size_t n;
    char *text = text_lines(400000, &n); /* ~10 MiB out of small frames */
    h_result r;
    cr_assert_eq(
        h_run("h_src(text=$in, chunk=300000) | zstd(workers=2) | unzstd() | h_sink()",
              text, &r),
        0, "%s", r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, text, n) == 0);
    h_free(&r);
    free(text);
}

IOTEST(unzstd_errors)
{
    if (!have_zstd_cli()) cr_skip("the zstd command is not installed");
    io_register();
    size_t n;
    char *text = text_lines(50000, &n);
    put_file(P("t"), text, n);
    cr_assert_eq(sh("zstd -q -f '%s' -o '%s'", P("t"), P("t.zst")), 0);
    size_t zn;
    unsigned char *z = (unsigned char *)get_file(P("t.zst"), &zn);
    h_result r;
    /* Good, in small pieces, from a raw source. */
    cr_assert_eq(run4("io_raw(path=$f, chunk=777) | unzstd() | h_sink()", P("t.zst"),
                      NULL, NULL, NULL, &r),
                 0, "%s", r.err);
    cr_assert_eq(r.len, n);
    cr_assert(memcmp(r.out, text, n) == 0);
    h_free(&r);
    /* Truncated. */
    put_file(P("cut.zst"), z, zn - 10);
    cr_assert_eq(
        run4("io_raw(path=$f) | unzstd() | h_sink()", P("cut.zst"), NULL, NULL, NULL, &r),
        WEIR_EDATA);
    cr_assert(strstr(r.err, P("cut.zst")), "message: %s", r.err);
    cr_assert(strstr(r.err, "truncated zstd frame at end of input"), "message: %s",
              r.err);
    h_free(&r);
    /* Not zstd at all. */
    cr_assert_eq(
        run4("io_raw(path=$f) | unzstd() | h_sink()", P("t"), NULL, NULL, NULL, &r),
        WEIR_EDATA);
    cr_assert(strstr(r.err, "corrupt zstd data at byte 0"), "message: %s", r.err);
    cr_assert(strstr(r.err, "Unknown frame descriptor"), "message: %s", r.err);
    char *whole = strdup(strstr(r.err, P("t")));
    h_free(&r);
    /* The same words however the bytes arrive (a magic number cut in
     * two was once "truncated" here and "unknown frame" there). */
    cr_assert_eq(run4("io_raw(path=$f, chunk=1) | unzstd() | h_sink()", P("t"), NULL, NULL,
                      NULL, &r),
                 WEIR_EDATA);
    cr_assert(strstr(r.err, whole), "message: %s", r.err);
    h_free(&r);
    free(whole);
    /* A legacy (v0.6) frame holding nothing, one byte at a time: libzstd
     * decodes it only when its first call sees the whole magic number. */
    static const unsigned char legacy[] = {0x26, 0xb5, 0x2f, 0xfd, 0x0d, 0xff, 0x00, 0xff};
    put_file(P("legacy.zst"), legacy, sizeof legacy);
    cr_assert_eq(run4("io_raw(path=$f, chunk=1) | unzstd() | h_sink()", P("legacy.zst"),
                      NULL, NULL, NULL, &r),
                 0, "%s", r.err);
    cr_assert_eq(r.len, 0);
    h_free(&r);
    /* Two inputs (concat): the first one cut short is named. */
    cr_assert_eq(run4("let a = io_raw(path=$f)\nlet b = io_raw(path=$g)\n"
                      "concat(a, b) | unzstd() | h_sink()",
                      P("cut.zst"), P("t.zst"), NULL, NULL, &r),
                 WEIR_EDATA);
    cr_assert(strstr(r.err, P("cut.zst")), "message: %s", r.err);
    cr_assert(strstr(r.err, "truncated"), "message: %s", r.err);
    h_free(&r);
    /* Two good inputs. */
    cr_assert_eq(run4("let a = io_raw(path=$f)\nlet b = io_raw(path=$g)\n"
                      "concat(a, b) | unzstd() | h_sink()",
                      P("t.zst"), P("t.zst"), NULL, NULL, &r),
                 0, "%s", r.err);
    cr_assert_eq(r.len, 2 * n);
    h_free(&r);
    free(z);
    free(text);
}

/* ---- cancellation while waiting on a pipe
 * ---------------------------------------------- */

/* Run spec (vars o=<path>, f=<path>) under a 100 ms deadline: the run must
 * end by the deadline, whatever it waits for. */
static int run_with_deadline(const char *spec, const char *f, const char *o)
{
    io_register();
    char vf[PATH_MAX + 4], vo[PATH_MAX + 4];
    const char *vars[2];
    size_t n = 0;
    if (f) snprintf(vf, sizeof vf, "f=%s", f), vars[n++] = vf;
    if (o) snprintf(vo, sizeof vo, "o=%s", o), vars[n++] = vo;
    weir_spec_opts opts = {.vars = vars, .nvars = n};
    weir_graph *g;
    char err[512];
    cr_assert_eq(weir_spec_compile(&g, spec, strlen(spec), "<t>", &opts, err, sizeof err),
                 0, "%s", err);
    weir_ctx *ctx;
    cr_assert_eq(weir_ctx_create_timeout(&ctx, NULL, 100 * 1000000ull), 0);
    int rc = weir_graph_run(g, ctx, NULL);
    weir_graph_destroy(g);
    weir_ctx_destroy(ctx);
    return rc;
}

IOTEST(read_stdin_pipe_without_data_is_cancellable)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int saved = dup(STDIN_FILENO);
    dup2(p[0], STDIN_FILENO);
    close(p[0]); /* p[1] stays open: no data, no end */
    int rc = run_with_deadline("read(\"-\") | h_sink()", NULL, NULL);
    dup2(saved, STDIN_FILENO);
    close(saved);
    close(p[1]);
    cr_assert_eq(rc, WEIR_EDEADLINE);
}

IOTEST(write_fifo_without_reader_is_cancellable)
{
    cr_assert_eq(mkfifo(P("fifo"), 0600), 0);
    int rc = run_with_deadline("h_src(text=\"abc\") | write($o)", NULL, P("fifo"));
    cr_assert_eq(rc, WEIR_EDEADLINE);
}

IOTEST(write_stdout_stalled_reader_is_cancellable)
{
    signal(SIGPIPE, SIG_IGN);
    size_t n = 4u << 20;
    unsigned char *data = random_bytes(n, 5);
    put_file(P("big"), data, n);
    int p[2];
    cr_assert_eq(pipe(p), 0); /* p[0] open but never read: the pipe fills */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(p[1], STDOUT_FILENO);
    close(p[1]);
    int rc = run_with_deadline("read($f) | write(\"-\")", P("big"), NULL);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(p[0]);
    cr_assert_eq(rc, WEIR_EDEADLINE);
    free(data);
}

/* Testing doctrine: a parallel run gives the same bytes as a sequential
 * one — here frame for frame, with more workers than cores too. */
IOTEST(zstd_parallel_equals_sequential)
{
    io_register();
    size_t n;
    char *text = text_lines(40000, &n);
    h_result r;
    const char *outs[] = {"w1.zst", "w2.zst", "w5.zst"};
    const char *specs[] = {
        "h_src(text=$in, chunk=7777) | zstd(level=5, workers=1) | write($o)",
        "h_src(text=$in, chunk=7777) | zstd(level=5, workers=2) | write($o)",
        "h_src(text=$in, chunk=7777) | zstd(level=5, workers=5) | write($o)",
    };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(run4(specs[i], NULL, NULL, P(outs[i]), text, &r), 0, "%s", r.err);
        h_free(&r);
    }
    size_t l1, l2, l5;
    char *a = get_file(P("w1.zst"), &l1), *b = get_file(P("w2.zst"), &l2),
         *c = get_file(P("w5.zst"), &l5);
    cr_assert_eq(l1, l2);
    cr_assert_eq(l1, l5);
    cr_assert(memcmp(a, b, l1) == 0 && memcmp(a, c, l1) == 0, "parallel output differs");
    cr_assert_eq(count_frames(P("w5.zst")), (n + 7776) / 7777);
    free(a);
    free(b);
    free(c);
    free(text);
}
